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
from cell.run.site import JournalMark, Site, journal_mark
from cell.status.probe import ProbeResult

if TYPE_CHECKING:
    from cell.verify.prober import Env
    from firewall.probes import Probe

PROBE_SLACK = 120.0
"""A run may take this long on top of its interval before its answer goes stale."""


SETTLE_TRIES = 3
"""Runs in a row that an apply may cut across before the round is given up (reported next)."""


class ProbeService(Periodic):
    name = "probes"
    deadline = 30.0
    checks: tuple[str, ...] = ("segregation",)
    again_on_apply = True

    def interval(self, site: Site) -> float:
        return site.seconds("probe_interval")

    def once(self, ctx: Context, site: Site) -> None:
        """One run, on one ruleset: a run that an apply or rollback cut across (the journal
        changed under it; a replaced ruleset also restarts its counters, so a drop would read
        as uncounted) is thrown away and run again on what is applied now."""
        for _ in range(SETTLE_TRIES):
            mark = journal_mark(site.state)
            if self._probe(ctx, site, mark):
                return
            if ctx.wait(1.0):
                return
            site = self.ref.site

    def _probe(self, ctx: Context, site: Site, mark: JournalMark) -> bool:
        """Probe and report, if the journal is still at `mark` when the run ends. False: it
        is not (nothing was recorded or reported)."""
        from cell.store import open_store
        from cell.store.probes import record_probe_run
        from cell.verify.prober import Env, probe_timeout
        from firewall.probes import compile_probes

        fresh = 2 * self.interval(site) + PROBE_SLACK
        wait = probe_timeout(site.policy)
        t0, ts = time.monotonic(), time.time()
        results: list[ProbeResult] | None
        if site.lab is not None:
            lab = site.lab
            env = Env(lab.gateway, lab.vlan_netns, lab.outside, timeout=wait)
            results = self._run(ctx, compile_probes(site.policy), env)
        else:
            from cell.verify.inplace import box_outside, probe_segments
            from firewall.probes import inplace_probes
            from policies.errors import CellError

            try:
                with probe_segments(site.policy, site.netns) as vlans:
                    env = Env(site.netns, vlans, box_outside(site.policy), timeout=wait)
                    results = self._run(ctx, inplace_probes(site.policy), env)
            except CellError as e:
                ctx.report(
                    "segregation", check(False, f"cannot probe in place: {e}", fresh, [], ts)
                )
                return True
        if results is None:
            return True  # stopped
        if journal_mark(site.state) != mark:
            return False
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
                    f"flow {r.source} -> {r.to} does not hold: {_what(r)}",
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
                f"{_what(r)}{more}"
            )
            ctx.report("segregation", check(False, detail, fresh, evidence, ts))
        else:
            ctx.report(
                "segregation",
                check(True, f"all {len(results)} flows hold, with proof", fresh, evidence, ts),
            )
        return True

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


def _what(r: ProbeResult) -> str:
    """What went wrong with a flow: a drop that no counter proves says so, not `got drop`."""
    said = f"expected {r.expect}, got {r.got}"
    return f"{said} ({r.evidence})" if r.got == r.expect else said
