"""The segregation check: the probe matrix with real packets every `verify.probe_interval`,
each run kept in the store (cell.store.probes) and each flow that stops holding an event.

Probes are sent from inside the VLANs, so they need a namespace per VLAN: the lab has them. On a
box without them the check is not established (the verdict stays `unknown`, saying why):
probing from the VLANs of a real site needs probe agents there (docs/daemon.md).
"""

from __future__ import annotations

import time

from cell.run.service import Context
from cell.run.services.base import Periodic, check
from cell.run.site import Site
from cell.status.probe import ProbeResult

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
        from cell.verify.prober import Env, run_probe
        from firewall.probes import compile_probes

        if site.lab is None:
            return  # no probe namespaces: the check stays missing, `unknown` says so
        fresh = 2 * self.interval(site) + PROBE_SLACK
        lab = site.lab
        env = Env(lab.gateway, lab.vlan_netns, lab.outside)
        t0, ts = time.monotonic(), time.time()
        results: list[ProbeResult] = []
        for probe in compile_probes(site.policy):
            if ctx.stop.is_set():
                return
            results.append(run_probe(probe, env))
            ctx.beat()
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
