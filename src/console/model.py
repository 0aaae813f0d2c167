"""What the console knows from the status bus: the latest of each retained document and the
recent events. Pure: `BusState.apply` takes one message (topic, payload) and says what it was.

A document that does not parse is not shown as if it did: it is kept as a problem (shown as a
notification) and the last good document stays, which its own freshness deadline then judges.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Final, Literal

from pydantic import ValidationError

from cell.status.checks import Check
from cell.status.document import Availability, Event, StatusDoc
from cell.status.topics import AVAILABILITY_TOPIC, EVENT_TOPIC, STATUS_TOPIC
from policies.record import first_error

CONNECTING: Final = "connecting"
"""The `link` of a reader that has not reached the bus yet (as opposed to one that lost it)."""

CHECK_PREFIX: Final = "cell/check/"
EVENTS_KEPT: Final = 500

Applied = Literal["status", "availability", "check", "event", "ignored", "problem"]


@dataclass
class BusState:
    """The bus as last seen. `link` is None while connected, else why not."""

    status: StatusDoc | None = None
    availability: Availability | None = None
    checks: dict[str, Check] = field(default_factory=dict)
    """Full detail (with evidence) from `cell/check/<name>`."""
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))
    problems: deque[str] = field(default_factory=lambda: deque(maxlen=50))
    link: str | None = CONNECTING
    where: str = ""
    """Which bus: `HOST:PORT` or the recorded file's path."""
    received: int = 0

    def apply(self, topic: str, payload: bytes) -> Applied:
        """Take one message; return what it was (`problem`: it did not parse, nothing changed)."""
        self.received += 1
        if not payload and topic != EVENT_TOPIC:
            # An empty retained message clears the topic: the document is gone, not unchanged.
            if topic == STATUS_TOPIC:
                self.status = None
                return "status"
            if topic == AVAILABILITY_TOPIC:
                self.availability = None
                return "availability"
            if topic.startswith(CHECK_PREFIX):
                self.checks.pop(topic[len(CHECK_PREFIX) :], None)
                return "check"
            return "ignored"
        try:
            doc = json.loads(payload)
            if topic == STATUS_TOPIC:
                self.status = StatusDoc.model_validate(doc)
                return "status"
            if topic == AVAILABILITY_TOPIC:
                self.availability = Availability.model_validate(doc)
                return "availability"
            if topic.startswith(CHECK_PREFIX):
                self.checks[topic[len(CHECK_PREFIX) :]] = Check.model_validate(doc)
                return "check"
            if topic == EVENT_TOPIC:
                self.events.appendleft(Event.model_validate(doc))
                return "event"
        except ValidationError as e:
            self.problems.appendleft(
                f"{topic}: not a document this console reads ({first_error(e)})"
            )
            return "problem"
        except ValueError as e:
            self.problems.appendleft(f"{topic}: not JSON ({e})")
            return "problem"
        return "ignored"

    def check(self, name: str) -> Check | None:
        """A check in full detail if the bus has it, else as the summary carries it."""
        if name in self.checks:
            return self.checks[name]
        return self.status.checks.get(name) if self.status else None
