"""The counters that go into the store: the DNS sinkhole counter (and the `sinkhole` check) and
the drop poller. Both record how far they got in the same transaction as what they counted
(cell.store.db), so a kill -9 at any instant loses nothing already counted and counts nothing
twice: the next run starts where the store says.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cell.run.service import Context
from cell.run.services.base import Periodic, check
from cell.run.site import Site

if TYPE_CHECKING:
    from cell.store import Store

PRUNE_EVERY = 3600.0


class _StoreService(Periodic):
    def __init__(self, ref: Any) -> None:
        super().__init__(ref)
        self.store: Store | None = None
        self.pruned = 0.0

    def open(self, site: Site) -> Store:
        from cell.store import open_store
        from cell.verify.site import retention_of

        if self.store is None:
            self.store = open_store(site.state.root, retention_of(site.policy))
        if time.monotonic() - self.pruned > PRUNE_EVERY:
            self.pruned = time.monotonic()
            self.store.prune()
        return self.store

    def teardown(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None


class DnsService(_StoreService):
    """Reads dnsmasq's query logs into the store (the logs are rotated by `logrotate`; the
    reader finishes a rotated file before the new one)."""

    name = "sinkhole"
    deadline = 60.0
    checks: tuple[str, ...] = ("sinkhole",)

    def interval(self, site: Site) -> float:
        return site.seconds("dns_interval")

    def once(self, ctx: Context, site: Site) -> None:
        from cell.store.dns import day_totals
        from cell.verify.sinkhole import ingest
        from cell.verify.site import log_sources, site_zone

        store = self.open(site)
        tz = site_zone(site.policy)
        sources = log_sources(site.policy, site.target.layout)
        got = ingest(store, sources, tz)
        ctx.board.count("dns_blocked", None, got.queries)
        ctx.board.count("dns_forwarded", None, got.forwarded)
        for pair in got.new_pairs:
            ctx.event(
                "new_name",
                f"{pair.client} asked for {pair.name} for the first time",
                "sinkhole",
                {"client": pair.client, "name": pair.name},
            )
        blocked, forwarded = day_totals(store, datetime.now(tz).date().isoformat())
        ctx.figure("dns_blocked_today", blocked)
        fresh = max(3 * site.seconds("publish_interval"), 3 * self.interval(site))
        evidence = [f"{blocked} queries answered by the sinkhole today ({tz.key})"] + [
            f"lost: {why}" for why in got.lost
        ]
        if forwarded:
            ctx.report(
                "sinkhole",
                check(
                    False,
                    f"{forwarded} queries from sinkhole VLANs were forwarded upstream today",
                    fresh,
                    [*evidence, "`cell dns log` shows them"],
                ),
            )
        else:
            ctx.report(
                "sinkhole",
                check(
                    True,
                    f"no sinkhole-VLAN query forwarded today; {blocked} answered locally",
                    fresh,
                    evidence,
                ),
            )


class DropService(_StoreService):
    """Polls the named drop counters of `table inet cell` into the store."""

    name = "drops"
    deadline = 60.0
    checks: tuple[str, ...] = ()

    def interval(self, site: Site) -> float:
        return site.seconds("drops_interval")

    def once(self, ctx: Context, site: Site) -> None:
        from cell.verify.drops import poll_drops
        from cell.verify.site import site_zone

        store = self.open(site)
        for pair, n in poll_drops(store, site.netns, site_zone(site.policy)).items():
            ctx.board.count("drops", pair, n)
