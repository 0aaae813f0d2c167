"""The documents the daemon publishes on the site's own MQTT bus, and every reader parses
(`cell status`, the console, the fleet view at the hub).

Topics (all under `cell/`, published by the reserved user `cell`, QoS 1):

| topic | retained | document |
|---|---|---|
| `cell/status` | yes | `StatusDoc`: the summary; no client address, no DNS name (it is bridged up) |
| `cell/availability` | yes | `Availability`; the offline one is the MQTT will |
| `cell/check/<name>` | yes | one `Check` in full detail, with evidence (stays on site) |
| `cell/event` | no | `Event`: drift found, probe failed, unexpected publish, new name, apply, ... |
| `evidence/manifests/<id>` | yes | an incident pack's manifest (`evidence_manifest`), bridged up |

Every document is versioned by `schema`; readers ignore keys they do not know, so a newer Cell
can add keys without breaking an older console or hub.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field

from policies.record import Record

from .checks import Check
from .topics import AVAILABILITY_SCHEMA, EVENT_SCHEMA, MANIFEST_SCHEMA, STATUS_SCHEMA
from .verdict import VerdictName


class LedgerHead(Record):
    """The audit ledger's head, signed by the Cell's evidence key: an anchor the hub keeps."""

    model_config = ConfigDict(extra="ignore")

    seq: int = Field(description="The newest entry's sequence number.")
    hash: str = Field(description="The newest entry's hash (sha256 of its line).")
    sig: str | None = Field(
        default=None,
        description="SSH signature (namespace cell-ledger) over `cell.store.ledger.head_text`.",
    )


class StatusDoc(Record):
    """`cell/status` and `cell status --json`."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    schema_: Literal["cell.status/1"] = Field(
        default=STATUS_SCHEMA, alias="schema", description="The document's version."
    )
    site: str = Field(description="The site id (site.yaml).")
    ts: str = Field(description="When the verdict was made (ISO 8601, UTC, `Z`).")
    verdict: VerdictName = Field(description="sovereign, at_risk or unknown.")
    reasons: list[str] = Field(description="Why not sovereign, each `check: what`.")
    commit: str | None = Field(description="The applied commit's sha (None before any apply).")
    dns_blocked_today: int = Field(
        ge=0, description="Sinkholed DNS queries counted since midnight UTC."
    )
    checks: dict[str, Check] = Field(description="Every check by name, in summary form.")
    ledger: LedgerHead | None = Field(default=None, description="The audit ledger's signed head.")
    mode: str = Field(default="normal", description="The site's mode: normal or sealed.")
    session: str | None = Field(default=None, description="The id of the daemon's run.")
    fresh_for: float = Field(
        default=60.0,
        gt=0,
        description="Seconds after `ts` for which this document may be believed; a reader "
        "shows an older one as stale, never as its last verdict.",
    )
    services: dict[str, str] = Field(
        default_factory=dict,
        description="Each supervised service's state (running, restarting, failed, hung).",
    )
    restarts: dict[str, int] = Field(
        default_factory=dict,
        description="Times each supervised service was started again after a crash or a hang, "
        "since the daemon started.",
    )


class Availability(Record):
    """`cell/availability`: is the daemon on the bus. The offline document is its will."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    schema_: Literal["cell.availability/1"] = Field(
        default=AVAILABILITY_SCHEMA, alias="schema", description="The document's version."
    )
    state: Literal["online", "offline"] = Field(description="online while the daemon runs.")
    ts: str = Field(
        description="online: when this run started; offline: when a clean stop wrote it, or, for "
        "the will, when the run started (a reader matches `session`, not the time)."
    )
    session: str = Field(description="The id of the daemon's run that wrote it.")


EventKind = Literal[
    "drift",
    "probe_failed",
    "unexpected_publish",
    "never_seen",
    "new_name",
    "apply",
    "refusal",
    "rollback",
    "confirm",
    "service",
    "verdict",
]


class Event(Record):
    """`cell/event` (not retained): something happened that an operator may want to see now."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    schema_: Literal["cell.event/1"] = Field(
        default=EVENT_SCHEMA, alias="schema", description="The document's version."
    )
    kind: EventKind = Field(description="What happened.")
    ts: str = Field(description="When (ISO 8601, UTC, `Z`).")
    text: str = Field(description="One line for people.")
    check: str | None = Field(default=None, description="The check it bears on, if any.")
    data: dict[str, Any] = Field(default_factory=dict, description="Details, by kind.")


def evidence_manifest(entry: Mapping[str, Any], site: str) -> dict[str, Any]:
    """The manifest of the incident pack an `evidence-pack` ledger entry records, as the daemon
    publishes it on `MANIFEST_TOPIC`: what lets the hub (and a customer) pin the pack's digest
    the moment it exists. The same fields as `cell.incident.pack.manifest_doc`."""
    return {
        "schema": MANIFEST_SCHEMA,
        "id": entry["pack"],
        "site": site,
        "since": entry.get("since"),
        "until": entry.get("until"),
        "findings": entry.get("findings"),
        "encrypted": entry.get("encrypted"),
        "digest": entry.get("digest"),
    }


def manifest_text(doc: Mapping[str, Any]) -> bytes:
    """What a manifest's `sig` signs (the evidence key, namespace `cell-manifest`): the pack's
    id, site and digest, as lines a third party can type (docs/incident.md)."""
    return f"cell-evidence-manifest\nid {doc['id']}\nsite {doc['site']}\ndigest {doc['digest']}\n".encode()
