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

    def run(self, ctx: Context) -> None:
        self.setup(ctx)
        try:
            while not ctx.stop.is_set():
                site = self.ref.site
                self.once(ctx, site)
                if ctx.wait(self.interval(site)):
                    break
        finally:
            self.teardown()
