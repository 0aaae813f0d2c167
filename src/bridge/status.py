"""What the bridge monitor knows, as typed records: the link, the counts, the unexpected publishes.

These models are what `cell bridge status` prints, what the monitor writes to its snapshot file and
what the console shows. They import nothing heavy (no paho, no Textual), and round-trip through
JSON unchanged (`model_dump(mode="json")` / `model_validate`).
"""

from __future__ import annotations

from pydantic import Field, computed_field

from policies.record import Record

CLASSES = ("up", "down", "local", "never")
"""The direction classes of the policy, in the order people read them."""


def zero_counts() -> dict[str, int]:
    return dict.fromkeys(CLASSES, 0)


class RuleRef(Record):
    """A rule of mqtt.yaml, by index and place (index None: the policy's default)."""

    index: int | None = Field(
        description="Position of the rule in mqtt.yaml topics; None: the default."
    )
    pattern: str | None = Field(description="The rule's topic filter; None for the default.")
    direction: str = Field(description="up, down, local or never.")
    file: str = Field(default="", description="mqtt.yaml as the operator names it.")
    line: int = Field(default=0, description="Line of the rule in that file (0: the default).")

    def where(self) -> str:
        if self.index is None:
            return "the default (mqtt.yaml bridge.default)"
        return f"rule '{self.pattern}' at {self.file}:{self.line}"


class Evidence(Record):
    """The log record that shows the crossing: which file, which record, its exact text."""

    log: str = Field(description="The broker log file.")
    line: int = Field(description="Line number of the record in that file.")
    text: str = Field(description="The record, exactly as mosquitto wrote it.")


class UnexpectedPublish(Record):
    """A message that crossed the bridge against the policy: a sovereignty incident."""

    time: int = Field(description="When the broker logged it (seconds since the epoch).")
    way: str = Field(description='How it crossed: "up" (to the hub) or "down" (from it).')
    topic: str = Field(description="The topic on the site's side.")
    remote_topic: str = Field(description="The topic on the hub's side.")
    direction: str = Field(description="What the policy says of the topic (never, local, ...).")
    rule: RuleRef = Field(description="The rule (or default) that decides the topic.")
    evidence: Evidence = Field(description="The broker log record that shows the crossing.")
    prefixed: bool = Field(
        default=True, description="False when it went up without the site's prefix."
    )


class LinkState(Record):
    """The bridge's connection and how often it connected and dropped."""

    state: str = Field(default="unknown", description="up, down or unknown (nothing seen yet).")
    since: float | None = Field(default=None, description="Since when (epoch s); None: unknown.")
    for_seconds: float | None = Field(
        default=None, description="How long it has been in `state` when the snapshot was taken."
    )
    connects: int = Field(default=0, description="Connections made since the monitor started.")
    disconnects: int = Field(default=0, description="Connections lost since then.")
    attempts: int = Field(default=0, description="Connection attempts since then.")

    def duration(self, now: float) -> float | None:
        return None if self.since is None else max(0.0, now - self.since)


class RuleCounts(RuleRef):
    """Per rule: messages seen on the local bus, and messages that crossed the bridge."""

    seen: int = Field(default=0, description="Messages published on the local bus.")
    crossed: int = Field(default=0, description="Messages that crossed the bridge.")

    @classmethod
    def of(cls, rule: RuleRef, seen: int = 0, crossed: int = 0) -> RuleCounts:
        return cls(**rule.model_dump(), seen=seen, crossed=crossed)

    @property
    def rule(self) -> RuleRef:
        return RuleRef(**self.model_dump(exclude={"seen", "crossed"}))


class BridgeEnds(Record):
    """The one bridge: its name in the config, its client id, the hub, the topic prefix."""

    connection: str = Field(description="The bridge's `connection` name.")
    client_id: str = Field(description="The client id the bridge uses at the hub.")
    remote: str = Field(description="The hub, HOST:PORT.")
    prefix: str = Field(description="remote_prefix: prepended to every topic that goes up.")


class BridgeStatus(Record):
    """A snapshot of the bridge.

    `seen` counts messages published on the local bus per direction class, since `seen_since`:
    from the monitor's observer (`source` "monitor") or from the broker log's `Received PUBLISH`
    lines since the broker started (`source` "log"). `$SYS` messages are the broker talking about
    itself, not data: they are counted apart (`sys`). `crossed` counts what the log shows going to
    the hub ("up") and coming from it ("down") since the broker started (`log_since`).
    `unexpected` lists every crossing against the policy found in the current log file."""

    site: str = Field(description="The site id.")
    bridge: BridgeEnds = Field(description="Which bridge this is.")
    source: str = Field(description='Where `seen` comes from: "monitor" or "log".')
    updated: float = Field(description="When the snapshot was taken (epoch s).")
    link: LinkState = Field(default_factory=LinkState, description="The bridge's connection.")
    seen_since: float | None = Field(default=None, description="Start of the `seen` counts.")
    log_since: float | None = Field(default=None, description="Start of the broker log read.")
    seen: dict[str, int] = Field(
        default_factory=zero_counts, description="Local messages per direction class."
    )
    sys: int = Field(default=0, description="$SYS messages seen (not data).")
    crossed: dict[str, int] = Field(
        default_factory=lambda: {"up": 0, "down": 0}, description="Messages that crossed, per way."
    )
    denied: int = Field(default=0, description="Publishes the ACL refused.")
    rules: list[RuleCounts] = Field(default_factory=list, description="Counts per topic rule.")
    default: RuleCounts | None = Field(default=None, description="Counts of the default.")
    unexpected: list[UnexpectedPublish] = Field(
        default_factory=list, description="Crossings against the policy in the current log."
    )
    unexpected_total: int = Field(default=0, description="All crossings against the policy.")
    log: str = Field(default="", description="The broker log file read.")
    monitor_pid: int | None = Field(default=None, description="The monitor process, if running.")
    bridge_dropping: int = Field(
        default=0,
        description="Times the broker's queue for the bridge overflowed since start: QoS 1 lost.",
    )
    monitor_dropping: int = Field(
        default=0,
        description="Times the queue for the monitor's observer overflowed: `seen` is incomplete.",
    )

    @computed_field(description="No crossing against the policy was seen.")  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return self.unexpected_total == 0
