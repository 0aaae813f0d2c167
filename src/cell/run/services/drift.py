"""The drift check: the event-driven drift watcher (`cell.gitops.watch.Watcher`), supervised.

The watcher reports each change of findings at once; this service keeps the current findings as
the `drift` check (renewed every second while the watcher runs) and publishes each change as a
`drift` event. Repo findings (HEAD moved to an untrusted commit) are news, not live drift: they
are events and evidence, and do not fail the check. The watcher also settles an overdue confirm
deadline, and re-applies when `drift.mode` is reconcile.
"""

from __future__ import annotations

import time
from typing import Any

from cell.run.service import Context
from cell.run.services.base import check
from cell.run.site import SiteRef
from cell.store.journal import read_journal

LIVE = ("nftables", "file", "process")


def _who(f: Any) -> str:
    by = f.by
    return f" by {by.get('name') or '?'} (pid {by.get('pid')})" if by else ""


class DriftService:
    name = "drift"
    deadline = 20.0
    checks: tuple[str, ...] = ("drift",)

    def __init__(self, ref: SiteRef) -> None:
        self.ref = ref

    def run(self, ctx: Context) -> None:
        from cell.gitops.watch import Watcher

        while read_journal(self.ref.state).applied is None:  # nothing to compare with yet
            ctx.report(
                "drift",
                check(False, "nothing applied with `cell apply` yet: no state to compare", 10.0),
            )
            if ctx.wait(1.0):
                return
        site = self.ref.site
        fresh = 3 * site.seconds("publish_interval")
        watcher: Watcher | None = None

        def out(event: dict[str, Any]) -> None:
            status = event.get("status")
            if status in ("drift", "in-sync"):
                new = [f.get("what", "") for f in event.get("new", [])]
                if new or event.get("resolved"):
                    text = (
                        f"drift ({event.get('kind')}): {new[0]}"
                        if new
                        else f"back in sync ({event.get('kind')})"
                    )
                    ctx.event("drift", text, "drift", event)
            elif status in ("rollback", "reconciled", "reconcile-failed"):
                text = str(event.get("note") or event.get("error") or status)
                ctx.event("rollback" if status == "rollback" else "apply", text, None, event)
            elif status == "error":
                ctx.event("drift", f"drift check failed: {event.get('error')}", "drift", event)
            if watcher is not None:
                report(watcher)

        last = [0.0]

        def report(w: Watcher) -> None:
            last[0] = time.monotonic()
            live = [f for kind in LIVE for f in w.last[kind].values()]
            repo = [f.what for f in w.last["repo"].values()]
            evidence = [f"{f.kind}: {f.what}{_who(f)}" for f in live] + [f"repo: {r}" for r in repo]
            if live:
                first = live[0]
                more = f" (and {len(live) - 1} more)" if len(live) > 1 else ""
                detail = f"{first.what}{_who(first)}{more}"
                ctx.report("drift", check(False, detail, fresh, evidence))
            else:
                ctx.report(
                    "drift",
                    check(True, "live equals the applied commit", fresh, evidence),
                )

        def beat() -> None:
            ctx.beat()
            if watcher is not None and time.monotonic() - last[0] >= 1.0:
                report(watcher)

        watcher = Watcher(site.state, None, out)
        try:
            watcher.run(ctx.stop, beat)
        finally:
            watcher.close()
