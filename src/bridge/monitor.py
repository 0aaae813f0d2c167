"""The bridge monitor's brain: counts per direction class and rule, the link, unexpected publishes.

`MonitorCore` is pure: it is fed what the observer saw on the local bus (`observe`, `link_state`)
and what the broker log says crossed (`feed_log`), and `snapshot` turns that into a
`BridgeStatus`. The same core replays a log on its own (`replay_log`): that is how `cell bridge
status` works on a Cell where no monitor runs. The I/O (paho, following the file, writing the
snapshot) is in `bridge.observer`, and thin.

What counts as an *unexpected publish* (a sovereignty incident): anything the log shows the
bridge SENDING to the hub whose local topic the policy does not classify `up`, or that lacks the
site's remote prefix; and anything the bridge RECEIVED from the hub whose topic the policy does
not classify `down`. The classifier is `bridge.classify.Classifier`, the one `cell explain topic`
uses, so what Cell explains is what it counts.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from bridge.classify import Classifier
from bridge.logparse import Dropping, Event, Link, LogParser, Publish, Start
from bridge.render import bridge_client_id, bridge_local_client_id
from bridge.status import (
    BridgeEnds,
    BridgeStatus,
    Evidence,
    LinkState,
    RuleCounts,
    RuleRef,
    UnexpectedPublish,
    zero_counts,
)
from policies import Policy
from policies.busnames import bridge_state_topic
from policies.fsutil import atomic_write

KEEP_UNEXPECTED = 100
"""Unexpected publishes kept in a snapshot (the most recent); `unexpected_total` counts all."""


class MonitorCore:
    """Counts and evidence for one site's bridge. Not thread-safe: the caller serialises.

    `source` "monitor": `seen` comes from `observe` (the observer on the bus). `source` "log":
    `seen` comes from the log's `Received PUBLISH` lines, and restarts with the broker."""

    def __init__(self, policy: Policy, *, log: str = "", source: str = "monitor") -> None:
        self.policy = policy
        self.classifier = Classifier(policy)
        hub = policy.site.hub.bridge if policy.site.hub is not None else None  # None: sealed
        self.prefix = hub.remote_prefix if hub else ""
        self.local_id = bridge_local_client_id(policy)
        self.state_topic = bridge_state_topic(policy)
        self.parser = LogParser(self.local_id, every_publish=source == "log")
        self.log = log
        self.source = source
        self.refs = [self._ref(i) for i in range(len(self.classifier.rules))]
        self.default_ref = RuleRef(index=None, pattern=None, direction=self.classifier.default)
        self._remote = f"{hub.address}:{hub.port}" if hub else "none (sealed)"
        self.seen_since: float | None = None
        self.log_since: float | None = None
        self.link = LinkState()
        self.unexpected: deque[UnexpectedPublish] = deque(maxlen=KEEP_UNEXPECTED)
        self.unexpected_total = 0
        self.observer_id: str | None = None
        """The observer's client id, so that the broker dropping ITS messages is noticed."""
        self.bridge_dropping = 0
        self.monitor_dropping = 0
        self._reset_seen()
        self._reset_crossed()

    def _ref(self, i: int) -> RuleRef:
        rule = self.classifier.rules[i]
        file, line, _ = self.policy.where("mqtt.yaml", ("topics", i))
        return RuleRef(
            index=i, pattern=rule.pattern, direction=rule.direction, file=file, line=line
        )

    def _reset_seen(self) -> None:
        self.seen = zero_counts()
        self.seen_rule = [0] * len(self.refs)
        self.seen_default = 0
        self.sys = 0

    def _reset_crossed(self) -> None:
        self.crossed = {"up": 0, "down": 0}
        self.crossed_rule = [0] * len(self.refs)
        self.crossed_default = 0
        self.denied = 0

    # --- the observer ------------------------------------------------------------------------

    def start_seen(self, now: float) -> None:
        """The observer (re)subscribed: `seen` counts from now."""
        if self.seen_since is None:
            self.seen_since = now

    def observe(self, topic: str, payload: bytes, retained: bool, now: float) -> None:
        """A message the observer received. A retained one is an old message replayed to a new
        subscription, not traffic: of those only the bridge's state topic is read."""
        if topic == self.state_topic:  # the broker's own notification, not traffic
            self.link_state(payload == b"1", now)
            return
        if topic[:1] == "$":
            if not retained:
                self.sys += 1
            return
        if not retained:
            self._count_seen(topic)

    def link_state(self, up: bool, now: float) -> None:
        """The broker's own word on the link (`bridge_state_topic` is 1 or 0)."""
        state = "up" if up else "down"
        if self.link.state != state:
            self.link.state = state
            self.link.since = now

    def _count_seen(self, topic: str) -> None:
        verdict = self.classifier.classify(topic)
        self.seen[verdict.direction] += 1
        if verdict.rule is None:
            self.seen_default += 1
        else:
            self.seen_rule[verdict.rule] += 1

    # --- the log -----------------------------------------------------------------------------

    def feed_log(self, lines: Iterable[str], first: int = 1) -> list[UnexpectedPublish]:
        """Complete log lines (numbered from `first`); returns the unexpected publishes in them."""
        found = []
        for event in self.parser.events(lines, first):
            hit = self.on_event(event)
            if hit is not None:
                found.append(hit)
        return found

    def on_event(self, event: Event) -> UnexpectedPublish | None:
        if isinstance(event, Publish):
            return self._publish(event)
        if isinstance(event, Link):
            self._link(event)
        elif isinstance(event, Dropping):
            if event.client == self.local_id:
                self.bridge_dropping += 1
            elif event.client == self.observer_id:
                self.monitor_dropping += 1
        elif isinstance(event, Start):
            self.log_since = event.time
            self._reset_crossed()
            if self.source == "log":
                self._reset_seen()
                self.seen_since = event.time
            self.link = LinkState(state="down", since=event.time)
            self.bridge_dropping = 0
        return None

    def _link(self, event: Link) -> None:
        if event.connecting:
            self.link.attempts += 1
            return
        if event.up:
            self.link.connects += 1
        elif self.link.state == "up":
            self.link.disconnects += 1
        self.link_state(event.up, event.time)

    def _publish(self, event: Publish) -> UnexpectedPublish | None:
        if event.client != self.local_id:
            if event.kind == "denied":
                self.denied += 1
            elif event.kind == "received" and self.source == "log":
                if event.topic[:1] == "$":
                    self.sys += 1
                else:
                    self._count_seen(event.topic)
            return None
        if event.kind == "received":  # from the hub, prefix already stripped
            if self.source == "log":
                self._count_seen(event.topic)
            return self._crossed("down", event.topic, event.topic, True, event)
        if event.kind == "sent":
            prefixed = event.topic.startswith(self.prefix)
            local = event.topic[len(self.prefix) :] if prefixed else event.topic
            return self._crossed("up", local, event.topic, prefixed, event)
        return None

    def _crossed(
        self, way: str, topic: str, remote: str, prefixed: bool, event: Publish
    ) -> UnexpectedPublish | None:
        self.crossed[way] += 1
        verdict = self.classifier.classify(topic) if topic else None
        if verdict is None or verdict.rule is None:
            self.crossed_default += 1
            ref = self.default_ref
        else:
            self.crossed_rule[verdict.rule] += 1
            ref = self.refs[verdict.rule]
        direction = verdict.direction if verdict else self.classifier.default
        if direction == way and prefixed:
            return None
        hit = UnexpectedPublish(
            time=event.time,
            way=way,
            topic=topic,
            remote_topic=remote,
            direction=direction,
            rule=ref,
            evidence=Evidence(log=self.log, line=event.line, text=event.text),
            prefixed=prefixed,
        )
        self.unexpected.append(hit)
        self.unexpected_total += 1
        return hit

    # --- the result --------------------------------------------------------------------------

    def snapshot(self, now: float, monitor_pid: int | None = None) -> BridgeStatus:
        rules = [
            RuleCounts.of(ref, self.seen_rule[i], self.crossed_rule[i])
            for i, ref in enumerate(self.refs)
        ]
        link = self.link.model_copy(update={"for_seconds": self.link.duration(now)})
        return BridgeStatus(
            site=self.policy.site.site.id,
            bridge=BridgeEnds(
                connection=self.policy.mqtt.bridge.name,
                client_id=bridge_client_id(self.policy),
                remote=self._remote,
                prefix=self.prefix,
            ),
            source=self.source,
            updated=now,
            link=link,
            seen_since=self.seen_since,
            log_since=self.log_since,
            seen=dict(self.seen),
            sys=self.sys,
            crossed=dict(self.crossed),
            denied=self.denied,
            rules=rules,
            default=RuleCounts.of(self.default_ref, self.seen_default, self.crossed_default),
            unexpected=list(self.unexpected),
            unexpected_total=self.unexpected_total,
            log=self.log,
            monitor_pid=monitor_pid,
            bridge_dropping=self.bridge_dropping,
            monitor_dropping=self.monitor_dropping,
        )


def replay_log(policy: Policy, log: Path, now: float) -> BridgeStatus:
    """The bridge's status from its broker log alone: no monitor needed. Counts are since the
    last broker start in the file; unexpected publishes are every one in the file."""
    core = MonitorCore(policy, log=str(log), source="log")
    try:
        with log.open(encoding="utf-8", errors="replace", newline="\n") as f:
            core.feed_log(f)
    except FileNotFoundError:
        pass
    return core.snapshot(now)


def write_snapshot(status: BridgeStatus, path: Path) -> None:
    """Atomically (write, then rename): a reader sees the old snapshot or the new one."""
    data = json.dumps(status.to_doc(), ensure_ascii=False) + "\n"
    atomic_write(path, data.encode(), durable=False)


def read_snapshot(path: Path) -> BridgeStatus | None:
    """The monitor's last snapshot, or None when there is none or it cannot be read."""
    try:
        return BridgeStatus.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
