"""Step 4: WAN egress in the window. The capture ring's packets of [since, until) are cut into
the pack (`capture/window.pcapng`, with its coverage in the file's comment), and every remote
endpoint in it is judged against the policy, as `cell pcap destinations` does. An unexpected
destination is a finding, and so is a gap in the capture: what was not captured cannot be
shown not to have left. A window the ring does not reach at all is bad input.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cell.incident.errors import IncidentUsage
from cell.incident.model import Step
from cell.incident.sources import Sources
from cell.verify.coverage import (
    Coverage,
    iso,
)
from cell.verify.errors import NoCapture
from cell.verify.pcapwindow import extract, ring_window
from cell.verify.ring import CAPTURE_DIR

PCAP = "capture/window.pcapng"


def _gaps(cov: Coverage) -> list[str]:
    return [f"{iso(a)}..{iso(b)}" for a, b in cov.gaps]


def egress_step(src: Sources, out: Path, now: datetime | None = None) -> Step:
    """Write the window's packets to `out/PCAP` and judge them."""
    from cell.verify.destinations import decide_destinations, sites_of
    from cell.verify.hubsets import hub_addresses
    from cell.verify.pcapread import Packet, read_packets

    now = now or datetime.now(UTC)
    try:
        window = ring_window(src.state.root / CAPTURE_DIR, src.since, src.until, now)
    except NoCapture as e:
        needs = "; the egress step needs it" if e.empty else ""
        raise IncidentUsage(f"{e}{needs}") from None
    cov = window.coverage
    gaps = _gaps(cov)
    comment = f"cell incident window {iso(src.since)}..{iso(src.until)}; " + (
        "coverage: complete" if not gaps else f"coverage: GAPS {', '.join(gaps[:5])}"
    )
    target = out / PCAP
    target.parent.mkdir(parents=True, exist_ok=True)
    got = extract(
        window.ring, window.files, src.since, src.until, target, comment=comment, count=False
    )
    gateway = window.gateway_addresses | set(src.gateway_addresses)
    seen = [0, 0]

    def counted() -> Iterator[Packet]:
        for p in read_packets(got.out):
            seen[0] += 1
            seen[1] += p[3]
            yield p

    doc = decide_destinations(
        src.policy, counted(), sites_of(src.policy, gateway), hub_addresses(src.netns)
    )
    rows: list[dict[str, Any]] = []
    for way, table in (("out", doc["destinations"]), ("in", doc["inbound"])):
        for row in table:
            row["first"] = iso(datetime.fromtimestamp(row["first"] / 1e9, UTC))
            row["last"] = iso(datetime.fromtimestamp(row["last"] / 1e9, UTC))
            rows.append({"way": way, **row})
    findings = [
        f"{r['source']['name'] or r['source']['address']} -> {r['address']}"
        + (f":{r['port']}" if r["port"] is not None else "")
        + f"/{r['proto']}: UNEXPECTED, no flow in network.yaml admits it "
        f"({r['packets']} packets, {r['bytes']} bytes, {r['first']}..{r['last']})"
        for r in rows
        if r["verdict"] == "unexpected"
    ]
    findings += [f"the capture has a gap {g}: what crossed then cannot be shown" for g in gaps]
    notes = []
    if cov.dropped is None:
        notes.append("kernel drops unknown: the capture run has not stopped and reported them")
    elif cov.dropped:
        findings.append(f"the capture dropped {cov.dropped} packets in the kernel")
    return Step(
        name="egress",
        findings=findings,
        notes=notes,
        summary={
            "packets": seen[0],
            "bytes": seen[1],
            "ring_files": got.files,
            "destinations": len(doc["destinations"]),
            "unexpected": doc["unexpected"],
            "coverage": cov.to_json(),
            "pcap": PCAP,
        },
        rows=rows,
    )
