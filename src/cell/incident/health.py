"""Step 3: the VLAN segregation test history: every probe run in the window (from the store, as
`cell probe` and the daemon's schedule keep them), with each failed flow and its evidence (what
came back, the drop counter that did or did not rise). A failed run is a finding."""

from __future__ import annotations

from datetime import UTC, datetime

from cell.incident.model import Step
from cell.incident.sources import Sources
from cell.store import open_store
from cell.store.probes import probe_runs_between
from cell.timeparse import iso_z


def health_step(src: Sources) -> Step:
    from cell.verify.site import retention_of

    with open_store(src.state.root, retention_of(src.policy)) as store:
        runs = probe_runs_between(store, src.since.timestamp(), src.until.timestamp())
    rows, findings = [], []
    for run in runs:
        when = iso_z(datetime.fromtimestamp(run.ts, UTC))
        failed = [r for r in run.results if not r.get("ok")]
        rows.append(
            {
                "run": run.id,
                "time": when,
                "commit": run.commit,
                "ok": run.ok,
                "flows": run.flows,
                "failed": run.failed,
                "failures": failed,
            }
        )
        if not run.ok:
            shown = "; ".join(
                f"{r.get('id') or r.get('from')}: expected {r.get('expect')}, got {r.get('got')}"
                + (f" ({r['evidence']})" if r.get("evidence") else "")
                for r in failed[:5]
            )
            more = f" (+{len(failed) - 5} more)" if len(failed) > 5 else ""
            findings.append(
                f"{when} probe run {run.id}: {len(failed)} of {run.flows} flows failed: {shown}{more}"
            )
    notes = [] if runs else ["no probe run in the window: segregation was not tested in it"]
    return Step(
        name="health",
        findings=findings,
        notes=notes,
        summary={"runs": len(runs), "failed_runs": sum(1 for r in runs if not r.ok)},
        rows=rows,
    )
