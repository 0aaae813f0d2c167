"""What the services share: a periodic loop over the current site, and making a `Check`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from cell.status.checks import Check
from policies.clock import iso

if TYPE_CHECKING:
    from cell.run.service import Context
    from cell.run.site import Site, SiteRef


def check(
    ok: bool,
    detail: str,
    fresh_for: float,
    evidence: list[str] | None = None,
    ts: float | None = None,
) -> Check:
    return Check(
        ok=ok,
        ts=iso(time.time() if ts is None else ts),
        detail=detail,
        fresh_for=fresh_for,
        evidence=evidence or [],
    )


class Periodic:
    """`once(ctx, site)` every `interval(site)` seconds until stopped."""

    name = "periodic"
    deadline = 30.0
    checks: tuple[str, ...] = ()

    def __init__(self, ref: SiteRef) -> None:
        self.ref = ref

    def interval(self, site: Site) -> float:
        return 5.0

    def once(self, ctx: Context, site: Site) -> None:
        raise NotImplementedError

    def setup(self, ctx: Context) -> None:
        """Before the first cycle (open a store, ...)."""

    def teardown(self) -> None:
        """After the last one, also after a crash."""

    again_on_apply = False
    """Run again as soon as what is applied changes, not only when the interval is up (an
    answer about the ruleset before an apply says nothing about the one after it)."""

    def run(self, ctx: Context) -> None:
        self.setup(ctx)
        try:
            while not ctx.stop.is_set():
                site = self.ref.site
                self.once(ctx, site)
                if self._wait(ctx, site):
                    break
        finally:
            self.teardown()

    def _wait(self, ctx: Context, site: Site) -> bool:
        """Wait out the interval (cut short by an apply, with `again_on_apply`); True: stop."""
        if not self.again_on_apply:
            return ctx.wait(self.interval(site))
        end = time.monotonic() + self.interval(site)
        while (left := end - time.monotonic()) > 0:
            if ctx.wait(min(left, 1.0)):
                return True
            if applied_id(self.ref.site) != applied_id(site):
                return False
        return ctx.stop.is_set()


def applied_id(site: Site) -> str | None:
    return site.entry.id if site.entry else None
