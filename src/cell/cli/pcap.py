"""`cell pcap --since --until --out FILE` and `cell pcap destinations --since --until [--json]`.

Handlers parse and format; the work is in `cell.verify` (ring, coverage, pcapwindow,
destinations). Where: `--state-dir` / $CELL_STATE_DIR, else the lab's gateway when a lab of the
repo's site is up, else /var/lib/cell; the ring is its `capture/` directory.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cell.cli.util import add_json, add_repo, add_state_dir, emit, load, repo
from cell.timeparse import parse_time
from cell.verify.coverage import (
    Coverage,
    iso,
)
from cell.verify.errors import PcapUsage
from cell.verify.hubsets import hub_addresses
from cell.verify.pcapwindow import Extracted, RingWindow, extract, ring_window
from cell.verify.ring import CAPTURE_DIR


def add_pcap_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = sub.add_parser(
        "pcap",
        help="a window of the WAN capture ring as one pcapng; or its destinations vs the policy",
        description="`cell pcap --since T --until T --out FILE` writes exactly the WAN packets of "
        "[since, until). `cell pcap destinations ...` lists every remote endpoint in the window "
        "with the policy's verdict (exit 3: an unexpected one, or a gap in the capture). TIME: "
        "ISO 8601 (UTC unless it says otherwise) or relative (-2h, -30m, now).",
    )
    sp.add_argument("what", nargs="?", choices=["destinations"], help="list the destinations")
    sp.add_argument("--since", required=True, help="start of the window (inclusive)")
    sp.add_argument("--until", default="now", help="end of the window (exclusive; default: now)")
    sp.add_argument("--out", help="the pcapng file to write (for the window itself)")
    add_repo(sp)
    add_state_dir(sp)
    add_json(sp)
    sp.set_defaults(handler=cmd_pcap, out_kind="file")


@dataclass(frozen=True)
class Window(RingWindow):
    """The ring's window, and the lab it was captured in (None: this box)."""

    lab: Any = None


def _window(args: argparse.Namespace) -> Window:
    from cell.deploy.place import lab_of, site_of, state_for

    now = datetime.now(UTC)
    since = parse_time(args.since, now=now, what="--since")
    until = parse_time(args.until, now=now, what="--until")
    if since >= until:
        raise PcapUsage(f"empty window: --since {iso(since)} is not before --until {iso(until)}")
    state = state_for(args.state_dir, repo(args)).root
    if not Path(state).is_dir():
        raise PcapUsage(f"state directory {state} does not exist (--state-dir, or `cell lab up`)")
    w = ring_window(Path(state) / CAPTURE_DIR, since, until, now)
    return Window(w.ring, since, until, w.files, w.coverage, w.events, lab_of(site_of(repo(args))))


def _gap_text(cov: Coverage) -> str:
    if not cov.gaps:
        return "coverage: complete"
    gaps = ", ".join(f"{iso(a)}..{iso(b)}" for a, b in cov.gaps[:5])
    more = f" (+{len(cov.gaps) - 5} more)" if len(cov.gaps) > 5 else ""
    return f"coverage: GAPS, the capture was not running or its files are gone: {gaps}{more}"


def _drops_text(cov: Coverage) -> str:
    d = cov.dropped
    if d is None:
        return "kernel drops: unknown (dumpcap reports them when a run stops; a run here has not)"
    return f"kernel drops: {d}"


def _comment(w: Window) -> str:
    return (
        f"cell pcap window {iso(w.since)}..{iso(w.until)}; {_gap_text(w.coverage)}; "
        f"{_drops_text(w.coverage)}"
    )


def cmd_pcap(args: argparse.Namespace) -> int:
    if args.what == "destinations":
        return _destinations(args)
    if not args.out:
        raise PcapUsage("cell pcap: --out FILE is required (or `cell pcap destinations`)")
    w = _window(args)
    got = extract(w.ring, w.files, w.since, w.until, Path(args.out), comment=_comment(w))
    doc = _doc(w, got)
    text = (
        f"wrote {got.out}: {got.packets} packets, {got.bytes} bytes of "
        f"{iso(w.since)}..{iso(w.until)} from {len(got.files)} ring files\n"
        f"{_gap_text(w.coverage)}\n{_drops_text(w.coverage)}"
    )
    emit(args, doc, text)
    return 0


def _doc(w: Window, got: Extracted) -> dict[str, Any]:
    return {
        "ok": True,
        "out": str(got.out),
        "since": iso(w.since),
        "until": iso(w.until),
        "packets": got.packets,
        "bytes": got.bytes,
        "files": got.files,
        "coverage": w.coverage.to_json(),
    }


def _destinations(args: argparse.Namespace) -> int:
    from cell.verify.destinations import decide_destinations, sites_of
    from cell.verify.pcapread import read_packets

    policy = load(args)
    w = _window(args)
    gateway = set(w.gateway_addresses)
    netns = None
    if w.lab is not None:
        gateway.add(str(w.lab.wan_link["gateway"]))
        netns = w.lab.gateway
    with tempfile.TemporaryDirectory(prefix="cell-pcap-") as tmp:
        got = extract(w.ring, w.files, w.since, w.until, Path(tmp) / "window.pcapng")
        doc = decide_destinations(
            policy, read_packets(got.out), sites_of(policy, gateway), hub_addresses(netns)
        )
    for row in doc["destinations"] + doc["inbound"]:
        row["first"] = iso(datetime.fromtimestamp(row["first"] / 1e9, UTC))
        row["last"] = iso(datetime.fromtimestamp(row["last"] / 1e9, UTC))
    complete = not w.coverage.gaps
    ok = doc["unexpected"] == 0 and complete
    doc = {
        "ok": ok,
        "since": iso(w.since),
        "until": iso(w.until),
        "packets": got.packets,
        **doc,
        "coverage": w.coverage.to_json(),
    }
    emit(args, doc, format_destinations(doc, w.coverage))
    return 0 if ok else 3


def format_destinations(doc: dict[str, Any], cov: Coverage) -> str:
    lines = [f"WAN destinations {doc['since']}..{doc['until']} ({doc['packets']} packets)"]
    for r in doc["destinations"] + [r for r in doc["inbound"] if r["verdict"] == "unexpected"]:
        mark = "✓" if r["verdict"] == "allowed" else "✗"
        port = f":{r['port']}" if r["port"] is not None else ""
        src = r["source"]["name"]
        why = (
            f"{r['rule']['file']}:{r['rule']['line']}"
            if r["rule"]
            else "no flow in network.yaml admits it"
        )
        lines.append(
            f"  {mark} {src} -> {r['address']}{port}/{r['proto']} ({r['endpoint']}): "
            f"{r['verdict'].upper() if r['verdict'] != 'allowed' else 'allowed'}, "
            f"{r['packets']} packets, {r['bytes']} bytes; {why}"
        )
    if not doc["destinations"]:
        lines.append("  (no connection from the site in this window)")
    noise = sum(1 for r in doc["inbound"] if r["verdict"] != "unexpected")
    if noise:
        lines.append(f"  {noise} inbound endpoints from outside (not answered by the site)")
    lines.append(_gap_text(cov))
    lines.append(_drops_text(cov))
    if doc["unexpected"]:
        lines.append(f"FINDING: {doc['unexpected']} unexpected destinations")
    return "\n".join(lines)
