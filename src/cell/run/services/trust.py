"""The trust check: the applied commit was signed by a trusted key (the trust gate said so when
it was applied, and the journal keeps that verdict) and it is the one running: no apply was
left half done (journal `pending` with nobody holding the apply lock)."""

from __future__ import annotations

from cell.run.service import Context
from cell.run.services.base import Periodic, check
from cell.run.site import Site
from cell.store.journal import read_journal
from policies.errors import CellError


class TrustService(Periodic):
    name = "trust"
    deadline = 30.0
    checks: tuple[str, ...] = ("trust",)

    def interval(self, site: Site) -> float:
        return 2.0

    def fresh_for(self, site: Site) -> float:
        return 3 * site.seconds("publish_interval")

    def once(self, ctx: Context, site: Site) -> None:
        fresh = self.fresh_for(site)
        try:
            journal = read_journal(site.state)
        except CellError as e:
            ctx.report("trust", check(False, f"the journal cannot be read: {e}", fresh))
            return
        applied = journal.applied
        if applied is None:
            ctx.report(
                "trust",
                check(False, "no signed commit applied yet (`cell apply` has not run)", fresh),
            )
            return
        sig = applied.signature
        evidence = [
            f"commit {applied.commit}",
            f"signature: {sig.get('status')} {sig.get('format') or ''} by {applied.signer}",
            f"applied {applied.time} via {applied.via}",
        ]
        if sig.get("status") != "good":
            ctx.report(
                "trust",
                check(
                    False,
                    f"commit {applied.commit[:12]} is not signed by a trusted key"
                    f" ({sig.get('status')})",
                    fresh,
                    evidence,
                ),
            )
            return
        if journal.pending is not None and not site.state.busy():
            ctx.report(
                "trust",
                check(
                    False,
                    f"an apply of {journal.pending.commit[:12]} was interrupted: the live state "
                    "may be either commit (`cell drift` says which)",
                    fresh,
                    evidence,
                ),
            )
            return
        ctx.report(
            "trust",
            check(
                True,
                f"commit {applied.commit[:12]} signed by a trusted key, applied {applied.time}",
                fresh,
                evidence,
            ),
        )
