"""The fleet model: one row per site from the retained messages the hub holds, worst first.

Pure: `FleetModel.ingest(topic, payload)` is fed what the hub broker delivered (by
`cell.fleet.client`, or a test), and `snapshot(now)` judges every site at `now`. The verdicts:

- `at_risk`: the site's own document says so (a stale at_risk stays at_risk: nothing has shown
  it recovered), it runs another commit than `--expect` says, or its document names another site;
- `stale`: its status is older than the document's own freshness deadline (`ts + fresh_for`), or
  its daemon's will (`cell/availability` offline) came after it: never its last green value;
- `unknown`: the document says unknown, cannot be read, or there is none (yet);
- `sovereign`: a fresh document that says so.

Rows come in that order (worst first), then by site id. The hub layout is a topic filter with one
`+` for the site id (`sites/+` by default, the example's `remote_prefix`); under it each site has
`cell/status`, `cell/availability` (bridged from the site's bus) and `cell/bridge` (the link state
its bridge publishes at the hub, 0 being the bridge's will: `policies.busnames.bridge_state_topic`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, TypeVar

from pydantic import Field, ValidationError

from cell.status.checks import CHECK_NAMES
from cell.status.document import Availability, StatusDoc
from cell.status.topics import AVAILABILITY_TOPIC, STATUS_TOPIC
from policies.clock import iso, parse_iso
from policies.record import Record, first_error

FleetVerdict = Literal["at_risk", "stale", "unknown", "sovereign"]
RANK: Final[dict[str, int]] = {"at_risk": 0, "stale": 1, "unknown": 2, "sovereign": 3}
"""Worst first: the order of rows."""

BRIDGE_TOPIC: Final = "cell/bridge"
"""The bridge's link state under the site's prefix at the hub (1 up, 0 down: its will)."""
KINDS: Final = {STATUS_TOPIC: "status", AVAILABILITY_TOPIC: "availability", BRIDGE_TOPIC: "bridge"}


class SiteRow(Record):
    """One site as the fleet view shows it (`cell fleet --json` prints `to_row()`)."""

    site: str = Field(description="The site id, from its place at the hub.")
    verdict: FleetVerdict = Field(description="at_risk, stale, unknown or sovereign (module doc).")
    reason: str | None = Field(description="The first reason it is not sovereign; None if it is.")
    bridge: Literal["up", "down"] | None = Field(
        description="The site's bridge as the hub knows it; None: no link state at the hub."
    )
    last_seen: str | None = Field(description="The `ts` of its latest status document.")
    commit: str | None = Field(description="The commit the site says it runs.")
    dns_blocked_today: int | None = Field(description="Sinkholed DNS queries today (the doc's).")
    failing: list[str] = Field(default_factory=list, description="Checks not ok, by name.")
    expected: str | None = Field(default=None, description="The commit `--expect` names.")
    runs_expected: bool | None = Field(
        default=None, description="It runs the expected commit; None without --expect."
    )

    def to_row(self, with_expect: bool = False) -> dict[str, object]:
        """The issue's row, in its order; the --expect keys only when there was an --expect."""
        doc = self.to_doc()
        if not with_expect:
            doc.pop("expected")
            doc.pop("runs_expected")
        return doc


class Fleet(Record):
    """Every site at one moment, worst first."""

    ts: str = Field(description="The moment the rows were judged at (ISO 8601).")
    sites: list[SiteRow] = Field(description="One row per site, worst first.")

    @property
    def total(self) -> int:
        return len(self.sites)

    @property
    def sovereign(self) -> int:
        return sum(1 for r in self.sites if r.verdict == "sovereign")

    @property
    def ok(self) -> bool:
        """Every site is sovereign (and there is at least one: an empty fleet proves nothing)."""
        return self.total > 0 and self.sovereign == self.total

    def to_json(self, with_expect: bool = False) -> dict[str, object]:
        return {
            "total": self.total,
            "sovereign": self.sovereign,
            "sites": [r.to_row(with_expect) for r in self.sites],
        }


def banner(fleet: Fleet) -> str:
    """`◆ FLEET · N/N SOVEREIGN ◆`, else `▲ FLEET · K AT RISK ▲` (K: every site not sovereign:
    stale and unknown included, since their sovereignty cannot be shown)."""
    if fleet.ok:
        return f"◆ FLEET · {fleet.sovereign}/{fleet.total} SOVEREIGN ◆"
    if fleet.total == 0:
        return "▲ FLEET · NO SITE AT THE HUB ▲"
    return f"▲ FLEET · {fleet.total - fleet.sovereign} AT RISK ▲"


@dataclass(frozen=True)
class HubLayout:
    """Where sites are at the hub: a topic filter with one `+` standing for the site id."""

    pattern: str

    def __post_init__(self) -> None:
        levels = self.pattern.split("/")
        if levels.count("+") != 1 or "#" in self.pattern or "" in levels:
            raise ValueError(
                f"topic pattern {self.pattern!r}: want levels with exactly one '+' for the site "
                "id and no '#', e.g. 'sites/+'"
            )
        if self.pattern.startswith("$"):
            raise ValueError(f"topic pattern {self.pattern!r}: a $ topic is the broker's own")

    def filters(self) -> list[str]:
        """What the fleet view subscribes to."""
        return [f"{self.pattern}/{t}" for t in KINDS]

    def parse(self, topic: str) -> tuple[str, str] | None:
        """(site, kind) of a topic under the layout, None for any other topic."""
        want = self.pattern.split("/")
        got = topic.split("/")
        if len(got) != len(want) + 2 or "/".join(got[-2:]) not in KINDS:
            return None
        site = ""
        for w, g in zip(want, got, strict=False):
            if w == "+":
                site = g
            elif w != g:
                return None
        return (site, KINDS["/".join(got[-2:])]) if site else None


@dataclass
class SiteState:
    """What the hub holds for one site: the latest of each document (None: nothing retained)."""

    status: StatusDoc | None = None
    status_raw: bytes | None = None
    status_error: str | None = None
    availability: Availability | None = None
    bridge: bool | None = None
    updated: float = 0.0
    """When this model last ingested a message for the site (the caller's clock)."""


@dataclass
class FleetModel:
    """Every site the hub told us about. Not thread-safe: the client serialises `ingest`."""

    layout: HubLayout = field(default_factory=lambda: HubLayout("sites/+"))
    expect: Mapping[str, str] | None = None
    sites: dict[str, SiteState] = field(default_factory=dict)

    def ingest(self, topic: str, payload: bytes, now: float = 0.0) -> str | None:
        """One message from the hub; returns the site it was about (None: not ours). An empty
        payload is a retained message being cleared."""
        where = self.layout.parse(topic)
        if where is None:
            return None
        site, kind = where
        st = self.sites.setdefault(site, SiteState())
        st.updated = now
        if kind == "bridge":
            st.bridge = {b"1": True, b"0": False}.get(bytes(payload))
        elif kind == "availability":
            st.availability = _parse(Availability, payload)[0]
        else:
            st.status, st.status_error = _parse(StatusDoc, payload)
            st.status_raw = bytes(payload) if payload else None
        if not payload and st == SiteState(updated=now):
            del self.sites[site]  # everything cleared: the site is gone from the hub
        return site

    def snapshot(self, now: float) -> Fleet:
        names = set(self.sites) | set(self.expect or {})
        rows = [judge(n, self.sites.get(n), now, self.expect) for n in names]
        rows.sort(key=lambda r: (RANK[r.verdict], r.site))
        return Fleet(ts=iso(now), sites=rows)


T = TypeVar("T", bound=Record)


def _parse(cls: type[T], payload: bytes) -> tuple[T | None, str | None]:
    if not payload:
        return None, None
    try:
        return cls.model_validate_json(payload), None
    except ValidationError as e:
        return None, first_error(e)


def short(commit: str | None) -> str:
    return "nothing" if commit is None else commit[:12]


def runs(commit: str | None, expected: str) -> bool:
    """The site runs `expected` (a full sha, or an abbreviation of at least 7 digits)."""
    return commit is not None and len(expected) >= 7 and commit.lower().startswith(expected.lower())


def judge(
    site: str, st: SiteState | None, now: float, expect: Mapping[str, str] | None = None
) -> SiteRow:
    """One site's row at `now` (module doc for the verdicts)."""
    doc = st.status if st else None
    verdict: FleetVerdict
    reason: str | None
    if st is None or (doc is None and st.status_error is None):
        verdict, reason = "unknown", "status: none at the hub" if st else "never seen at the hub"
    elif doc is None:
        verdict, reason = "unknown", f"status: unreadable document ({st.status_error})"
    else:
        verdict, reason = _from_doc(site, st, doc, now)
    # Built from values judged here, not read from outside: no validation (5x faster, and the
    # TUI re-judges every site every second).
    row = SiteRow.model_construct(
        site=site,
        verdict=verdict,
        reason=reason,
        bridge=None if st is None or st.bridge is None else ("up" if st.bridge else "down"),
        last_seen=doc.ts if doc else None,
        commit=doc.commit if doc else None,
        dns_blocked_today=doc.dns_blocked_today if doc else None,
        failing=[n for n in _order(doc.checks) if not doc.checks[n].ok] if doc else [],
    )
    if expect is None:
        return row
    want = expect.get(site)
    if want is None:
        return row
    ok = runs(row.commit, want)
    update: dict[str, object] = {"expected": want, "runs_expected": ok}
    if not ok and row.verdict != "at_risk" and doc is not None:  # no document: unknown
        update |= {
            "verdict": "at_risk",
            "reason": f"commit: runs {short(row.commit)}, expected {short(want)}",
        }
    return row.model_copy(update=update)


def _from_doc(
    site: str, st: SiteState, doc: StatusDoc, now: float
) -> tuple[FleetVerdict, str | None]:
    first = doc.reasons[0] if doc.reasons else None
    if doc.site != site:
        return "at_risk", f"status: the document under site {site} names site {doc.site}"
    if doc.verdict == "at_risk":
        return "at_risk", first or "at_risk (no reason given)"
    made = parse_iso(doc.ts).timestamp()
    deadline = made + doc.fresh_for
    if now > deadline:
        return "stale", (
            f"stale: no status since {doc.ts} (deadline {iso(deadline, 'seconds')}, "
            f"last said {doc.verdict})"
        )
    gone = st.availability
    # The will carries the run's start time, so it is older than the run's last status: the run
    # it names (its session) is what says the status's author is gone.
    if (
        gone is not None
        and gone.state == "offline"
        and (
            (doc.session is not None and gone.session == doc.session)
            or parse_iso(gone.ts).timestamp() >= made
        )
    ):
        return "stale", f"availability: the daemon that wrote this status went offline ({gone.ts})"
    if doc.verdict == "unknown":
        return "unknown", first or "unknown (no reason given)"
    return "sovereign", None


def _order(checks: Mapping[str, object]) -> list[str]:
    """Check names in the order people read them, then any this code does not know."""
    return [n for n in CHECK_NAMES if n in checks] + sorted(set(checks) - set(CHECK_NAMES))
