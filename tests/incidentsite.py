"""A Cell's state directory made by hand for incident tests and the bench (no root, no lab):
a capture ring of synthetic packets with its coverage log, a broker log, probe runs and DNS
events in the store, an evidence key, and an audit ledger with a signed apply whose commit's
tree is in the Cell's store. `plant` adds one incident of each kind at a given instant."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bridge.render import bridge_local_client_id
from cell.artifacts import render_all
from cell.gitops.recovery import summary
from cell.status.probe import ProbeResult
from cell.store import evidencekey, ledger, open_store
from cell.store.dns import DnsEvent, Position, record_dns
from cell.store.journal import Entry, Journal, write_journal
from cell.store.probes import record_probe_run
from cell.store.statedir import State
from pcapgen import frame, write_pcapng
from policies import Policy
from policies.layout import MOSQUITTO_LOG, Layout

RUN = "aaaaaaaa"
WAN = "198.51.100.2"
RESOLVER = "203.0.113.53"
PHONE_HOME = "203.0.113.99"
CAM = "10.10.0.11"
COMMIT = "c" * 40


@dataclass
class Cell:
    policy: Policy
    repo: Path
    state: State
    start: datetime
    """When the capture started (the ring covers from here)."""


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ns(t: datetime) -> int:
    return int(t.timestamp()) * 10**9 + t.microsecond * 1000


def ring_file(
    state: State, seq: int, start: datetime, packets: Iterable[tuple[int, bytes]]
) -> Path:
    ring = state.root / "capture"
    ring.mkdir(parents=True, exist_ok=True)
    path = ring / f"wan.{RUN}_{seq:05d}_{start:%Y%m%d%H%M%S}.pcapng"
    write_pcapng(path, packets)
    return path


def quiet_packets(start: datetime, seconds: int, per_second: int = 1) -> list[tuple[int, bytes]]:
    """The Cell's own DNS lookups to its resolver: allowed (implied by wan.resolvers)."""
    base = _ns(start)
    out = []
    for s in range(seconds):
        for k in range(per_second):
            ts = base + s * 10**9 + k * (10**9 // per_second)
            out.append((ts, frame(WAN, RESOLVER, "udp", 40000 + k, 53, payload=30)))
    return out


def make_cell(
    policy: Policy,
    repo: Path,
    root: Path,
    start: datetime,
    seconds: int,
    incident: datetime | None = None,
    per_second: int = 1,
) -> Cell:
    """A Cell whose capture ran (and stopped cleanly) from `start` for `seconds`, with one
    signed apply at `start` and a probe run that passed; with one of each incident at
    `incident` (`plant`)."""
    state = State(root)
    root.mkdir(parents=True, exist_ok=True)
    site = policy.site.site.id
    evidencekey.ensure_key(state, site)
    ledger.append(state, "enroll", time=_iso(start - timedelta(seconds=5)), principals=["ana@ops"])
    layout = Layout(state_dir=str(root))
    files = render_all(policy, layout)
    digests = json.loads(files["manifest.json"])["files"]
    state.store_tree(COMMIT, lambda dest: shutil.copytree(repo, dest))
    entry = Entry(
        commit=COMMIT,
        subject="bridge: add events",
        signature={"status": "good", "format": "ssh", "signer": "ana@ops", "key": "SHA256:x"},
        digests=digests,
        rendered=state.store_rendered(files),
        site=site,
        netns=None,
        layout={"root": "/", "config_dir": "/etc/cell/live", "state_dir": str(root)},
        repo=str(repo),
        time=_iso(start + timedelta(seconds=1)),
        id="0123456789abcdef",
    )
    write_journal(state, Journal(applied=entry))
    ledger.append(
        state,
        "apply",
        **summary(entry),
        time=entry.time,
        changed=["mosquitto/conf.d/bridge.conf", "nftables/ruleset.nft"],
        rules={"added": ["accept"], "removed": []},
    )
    packets = quiet_packets(start, seconds, per_second)
    if incident is not None:
        packets = sorted(packets + phone_home_packets(incident))
    ring_file(state, 1, start, packets)
    log = root / "capture" / "coverage.jsonl"
    end = start + timedelta(seconds=seconds)
    events = [
        {"event": "start", "ts": _iso(start), "run": RUN, "addresses": [WAN], "interface": "eth1"},
        {"event": "stop", "ts": _iso(end), "run": RUN, "received": 1, "dropped": 0, "clean": True},
    ]
    log.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in events))
    broker = root / MOSQUITTO_LOG
    broker.parent.mkdir(parents=True, exist_ok=True)
    t = int(start.timestamp())
    broker.write_text(f"{t}: mosquitto version 2.0.11 starting\n")
    probe(state, start + timedelta(seconds=2), ok=True)
    cell = Cell(policy, repo, state, start)
    if incident is not None:
        plant(cell, incident)
    return cell


def probe(state: State, when: datetime, ok: bool) -> None:
    result = ProbeResult.model_validate(
        {
            "from": "cam-01",
            "to": "wan:443/tcp",
            "expect": "drop",
            "got": "drop" if ok else "accept",
            "ok": ok,
            "evidence": "drop_cameras.wan +1" if ok else "answered; drop_cameras.wan +0",
            "id": "cam-01>wan:443/tcp",
            "counter": "drop_cameras.wan",
        }
    )
    with open_store(state.root) as store:
        record_probe_run(store, when.timestamp(), COMMIT, [result])


def plant(cell: Cell, when: datetime) -> None:
    """One incident of each kind at `when` (the ring's phone-home packets are written by
    `make_cell`): a never topic sent to the hub, a failed probe, a camera's DNS query for a
    phone-home name, a drift event, a refused commit."""
    prefix = cell.policy.site.hub.bridge.remote_prefix
    bridge = bridge_local_client_id(cell.policy)
    t = int(when.timestamp())
    with (cell.state.root / MOSQUITTO_LOG).open("a") as f:
        f.write(
            f"{t}: Sending PUBLISH to {bridge} (d0, q1, r0, m7, "
            f"'{prefix}site/cam-01/snapshots/1', ... (5 bytes))\n"
        )
        f.write(
            f"{t}: Sending PUBLISH to {bridge} (d0, q1, r0, m8, "
            f"'{prefix}site/cam-01/events/motion', ... (5 bytes))\n"
        )
    probe(cell.state, when, ok=False)
    with open_store(cell.state.root) as store:
        events = [
            DnsEvent(when.timestamp() + i, CAM, "phone.vendor.example", "A") for i in range(3)
        ]
        record_dns(store, "sinkhole", events, Position(0, 0), UTC, when.timestamp())
    ledger.append(
        cell.state,
        "drift",
        time=_iso(when),
        source="watch",
        keys=["nftables"],
        findings=[{"kind": "nftables", "what": "table inet cell: a rule was added (accept)"}],
    )
    ledger.append(
        cell.state,
        "refusal",
        time=_iso(when),
        reason="unsigned",
        commit="d" * 40,
        subject="open the cameras",
        message="commit dddddddddddd is not signed",
    )


def phone_home_packets(when: datetime, count: int = 5) -> list[tuple[int, bytes]]:
    base = _ns(when)
    return [
        (base + i * 10**6, frame(CAM, PHONE_HOME, "udp", 50555, 9999, payload=20))
        for i in range(count)
    ]
