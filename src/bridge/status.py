"""What the bridge monitor knows, as plain data: the link, the counts, the unexpected publishes.

These models are what `cell bridge status` prints, what the monitor writes to its snapshot file and
what the console will show. They import nothing but the standard library (no paho, no Textual), and
round-trip through JSON (`to_json`/`from_json`) unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CLASSES = ("up", "down", "local", "never")
"""The direction classes of the policy, in the order people read them."""


def zero_counts() -> dict[str, int]:
    return dict.fromkeys(CLASSES, 0)


@dataclass
class RuleRef:
    """A rule of mqtt.yaml, by index and place (index None: the policy's default)."""

    index: int | None
    pattern: str | None
    direction: str
    file: str = ""
    line: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "pattern": self.pattern,
            "direction": self.direction,
            "file": self.file,
            "line": self.line,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RuleRef:
        return cls(doc["index"], doc["pattern"], doc["direction"], doc["file"], doc["line"])

    def where(self) -> str:
        if self.index is None:
            return "the default (mqtt.yaml bridge.default)"
        return f"rule '{self.pattern}' at {self.file}:{self.line}"


@dataclass
class Evidence:
    """The log record that shows the crossing: which file, which record, its exact text."""

    log: str
    line: int
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"log": self.log, "line": self.line, "text": self.text}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Evidence:
        return cls(doc["log"], doc["line"], doc["text"])


@dataclass
class UnexpectedPublish:
    """A message that crossed the bridge against the policy: a sovereignty incident.

    `way` is how it crossed ("up": to the hub, "down": from it); `direction` is what the policy
    says of its topic (never, local, down for something that went up, ...). `remote_topic` is the
    topic on the hub's side; `prefixed` is False when it went up without the site's prefix."""

    time: int
    way: str
    topic: str
    remote_topic: str
    direction: str
    rule: RuleRef
    evidence: Evidence
    prefixed: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "way": self.way,
            "topic": self.topic,
            "remote_topic": self.remote_topic,
            "direction": self.direction,
            "prefixed": self.prefixed,
            "rule": self.rule.to_json(),
            "evidence": self.evidence.to_json(),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> UnexpectedPublish:
        return cls(
            time=doc["time"],
            way=doc["way"],
            topic=doc["topic"],
            remote_topic=doc["remote_topic"],
            direction=doc["direction"],
            rule=RuleRef.from_json(doc["rule"]),
            evidence=Evidence.from_json(doc["evidence"]),
            prefixed=doc.get("prefixed", True),
        )


@dataclass
class LinkState:
    """The bridge's connection: `state` up, down or unknown (nothing seen yet), since when
    (seconds since the epoch; None: unknown), and how often it connected and dropped."""

    state: str = "unknown"
    since: float | None = None
    connects: int = 0
    disconnects: int = 0
    attempts: int = 0

    def duration(self, now: float) -> float | None:
        return None if self.since is None else max(0.0, now - self.since)

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "state": self.state,
            "since": self.since,
            "for_seconds": self.duration(now),
            "connects": self.connects,
            "disconnects": self.disconnects,
            "attempts": self.attempts,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LinkState:
        return cls(
            doc["state"], doc["since"], doc["connects"], doc["disconnects"], doc.get("attempts", 0)
        )


@dataclass
class RuleCounts:
    """Per rule: messages seen on the local bus, and messages that crossed the bridge."""

    rule: RuleRef
    seen: int = 0
    crossed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {**self.rule.to_json(), "seen": self.seen, "crossed": self.crossed}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RuleCounts:
        return cls(RuleRef.from_json(doc), doc["seen"], doc["crossed"])


@dataclass
class BridgeStatus:
    """A snapshot of the bridge.

    `seen` counts messages published on the local bus per direction class, since `seen_since`:
    from the monitor's observer (`source` "monitor") or from the broker log's `Received PUBLISH`
    lines since the broker started (`source` "log"). `$SYS` messages are the broker talking about
    itself, not data: they are counted apart (`sys`). `crossed` counts what the log shows going to
    the hub ("up") and coming from it ("down") since the broker started (`log_since`).
    `unexpected` lists every crossing against the policy found in the current log file."""

    site: str
    connection: str
    client_id: str
    remote: str
    prefix: str
    source: str
    updated: float
    link: LinkState = field(default_factory=LinkState)
    seen_since: float | None = None
    log_since: float | None = None
    seen: dict[str, int] = field(default_factory=zero_counts)
    sys: int = 0
    crossed: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})
    denied: int = 0
    rules: list[RuleCounts] = field(default_factory=list)
    default: RuleCounts | None = None
    unexpected: list[UnexpectedPublish] = field(default_factory=list)
    unexpected_total: int = 0
    log: str = ""
    monitor_pid: int | None = None
    bridge_dropping: int = 0
    """Times the broker's queue for the bridge overflowed since start: QoS 1 messages lost."""
    monitor_dropping: int = 0
    """Times the broker's queue for the monitor's observer overflowed: `seen` is incomplete."""

    @property
    def ok(self) -> bool:
        """No crossing against the policy was seen."""
        return self.unexpected_total == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "site": self.site,
            "bridge": {
                "connection": self.connection,
                "client_id": self.client_id,
                "remote": self.remote,
                "prefix": self.prefix,
            },
            "source": self.source,
            "updated": self.updated,
            "link": self.link.to_json(self.updated),
            "seen_since": self.seen_since,
            "log_since": self.log_since,
            "seen": dict(self.seen),
            "sys": self.sys,
            "crossed": dict(self.crossed),
            "denied": self.denied,
            "rules": [r.to_json() for r in self.rules],
            "default": self.default.to_json() if self.default else None,
            "unexpected": [u.to_json() for u in self.unexpected],
            "unexpected_total": self.unexpected_total,
            "log": self.log,
            "monitor_pid": self.monitor_pid,
            "bridge_dropping": self.bridge_dropping,
            "monitor_dropping": self.monitor_dropping,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> BridgeStatus:
        bridge = doc["bridge"]
        return cls(
            site=doc["site"],
            connection=bridge["connection"],
            client_id=bridge["client_id"],
            remote=bridge["remote"],
            prefix=bridge["prefix"],
            source=doc["source"],
            updated=doc["updated"],
            link=LinkState.from_json(doc["link"]),
            seen_since=doc["seen_since"],
            log_since=doc["log_since"],
            seen={k: int(v) for k, v in doc["seen"].items()},
            sys=doc["sys"],
            crossed={k: int(v) for k, v in doc["crossed"].items()},
            denied=doc["denied"],
            rules=[RuleCounts.from_json(r) for r in doc["rules"]],
            default=RuleCounts.from_json(doc["default"]) if doc["default"] else None,
            unexpected=[UnexpectedPublish.from_json(u) for u in doc["unexpected"]],
            unexpected_total=doc["unexpected_total"],
            log=doc.get("log", ""),
            monitor_pid=doc.get("monitor_pid"),
            bridge_dropping=doc.get("bridge_dropping", 0),
            monitor_dropping=doc.get("monitor_dropping", 0),
        )
