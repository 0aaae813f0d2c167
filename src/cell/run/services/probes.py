"""The segregation check: the probe matrix with real packets every `verify.probe_interval`,
each run kept in the store (cell.store.probes) and each flow that stops holding an event.

With a lab up, probes are sent from the lab's VLAN namespaces (its hosts' own addresses). On a
box, they run in place, as `cell probe` does without `--lab`: a probe namespace per VLAN joins
the VLAN's own segment (a macvlan of its port) with the VLAN's reserved probe address, so every
packet enters the Cell through that VLAN's link and is judged by the live ruleset
(cell.verify.inplace, docs/links.md). A probe segment that cannot be made (a missing link, a
probe address someone else answers for) fails the check with the reason: the Cell cannot show
that segregation holds, and says why.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from cell.run.service import Context
from cell.run.services.base import Periodic, check
from cell.run.site import Site
from cell.status.probe import ProbeResult

if TYPE_CHECKING:
    from cell.verify.prober import Env
    from firewall.probes import Probe

PROBE_SLACK = 120.0
"""A run may take this long on top of its interval before its answer goes stale."""


class ProbeService(Periodic):
    name = "probes"
    deadline = 30.0
    checks: tuple[str, ...] = ("segregation",)

    def interval(self, site: Site) -> float:
        return site.seconds("probe_interval")

    def once(self, ctx: Context, site: Site) -> None:
        from cell.store import open_store
        from cell.store.probes import record_probe_run
        from cell.verify.prober import Env
        from firewall.probes import compile_probes

        fresh = 2 * self.interval(site) + PROBE_SLACK
        t0, ts = time.monotonic(), time.time()
        results: list[ProbeResult] | None
        if site.lab is not None:
            lab = site.lab
            env = Env(lab.gateway, lab.vlan_netns, lab.outside)
            results = self._run(ctx, compile_probes(site.policy), env)
        else:
            from cell.verify.inplace import box_outside, probe_segments
            from firewall.probes import inplace_probes
            from policies.errors import CellError

            try:
                with probe_segments(site.policy, site.netns) as vlans:
                    env = Env(site.netns, vlans, box_outside(site.policy))
                    results = self._run(ctx, inplace_probes(site.policy), env)
            except CellError as e:
                ctx.report(
                    "segregation", check(False, f"cannot probe in place: {e}", fresh, [], ts)
                )
                return
        if results is None:
            return  # stopped
        took = time.monotonic() - t0
        failed = [r for r in results if not r.ok]
        commit = site.entry.commit if site.entry else None
        with open_store(site.state.root) as store:
            _, changes = record_probe_run(store, ts, commit, results)
        for flow, holds in changes:
            if not holds:
                r = next(x for x in results if x.id == flow)
                ctx.event(
                    "probe_failed",
                    f"flow {r.source} -> {r.to} does not hold: expected {r.expect}, got {r.got}",
                    "segregation",
                    {"flow": flow, "evidence": r.evidence},
                )
        ctx.board.count("probe_runs", "ok" if not failed else "failed", 1)
        ctx.figure("probe_duration", took)
        ctx.figure("probe_failed", len(failed))
        evidence = [
            f"{'ok' if r.ok else 'FAILED'} {r.source} -> {r.to}: {r.expect}/{r.got}, {r.evidence}"
            for r in results
        ]
        if failed:
            r = failed[0]
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            detail = (
                f"{len(failed)} of {len(results)} flows do not hold: {r.source} -> {r.to} "
                f"expected {r.expect}, got {r.got}{more}"
            )
            ctx.report("segregation", check(False, detail, fresh, evidence, ts))
        else:
            ctx.report(
                "segregation",
                check(True, f"all {len(results)} flows hold, with proof", fresh, evidence, ts),
            )

    @staticmethod
    def _run(ctx: Context, probes: list[Probe], env: Env) -> list[ProbeResult] | None:
        from cell.verify.prober import run_probe

        results: list[ProbeResult] = []
        for probe in probes:
            if ctx.stop.is_set():
                return None
            results.append(run_probe(probe, env))
            ctx.beat()
        return results
