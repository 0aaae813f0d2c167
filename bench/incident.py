"""Bench: `cell incident` for a 24 h window over a day of records (goal: under 60 s on 2 cores).

A hand-made Cell state (no root needed): a capture ring of 24 hourly files of at least 1 GiB in
all (the hub bridge's traffic, the Cell's DNS), a full broker log (32 MiB of bridge PUBLISH
lines), a day of sinkhole DNS events (cameras phoning home every 2 s) and of probe runs (one a
minute), a signed apply and its stored tree. Prints the time of `cell incident --since -24h`,
the pack's size, and, as a same-run baseline, `cell pcap destinations` over the same window
(the egress step alone). Everything is made in a temporary folder and removed.

    .venv/bin/python bench/incident.py [--gib 1.0] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bridge.render import bridge_local_client_id
from cell.status.probe import ProbeResult
from cell.store import open_store
from cell.store.dns import DnsEvent, Position, record_dns
from cell.store.probes import record_probe_run
from incidentsite import CAM, RESOLVER, RUN, WAN, make_cell
from labsite import make_site
from pcapgen import ACK, dns_response, epb, frame, header, udp_frame
from policies import load_policy
from policies.layout import MOSQUITTO_LOG

HUB = "203.0.113.10"
HOUR = 3600


def write_ring(ring: Path, start: datetime, total: int) -> int:
    """24 hourly files of about `total` bytes in all; returns the packets written."""
    for old in ring.glob("wan.*"):
        old.unlink()
    out = frame(WAN, HUB, "tcp", 50000, 8883, flags=ACK, payload=1400)
    back = frame(HUB, WAN, "tcp", 8883, 50000, flags=ACK, payload=60)
    average = (7 * len(epb(0, out)) + len(epb(0, back))) / 8
    per_hour = max(1, int(total / 24 / average) + 1)
    step = HOUR * 10**9 // per_hour
    answer = udp_frame(RESOLVER, WAN, 53, 40000, dns_response("hub.example.eu", [HUB]))
    packets = 0
    for h in range(24):
        t0 = int((start + timedelta(hours=h)).timestamp()) * 10**9
        path = ring / f"wan.{RUN}_{h + 1:05d}_{start + timedelta(hours=h):%Y%m%d%H%M%S}.pcapng"
        with path.open("wb") as f:
            f.write(header())
            f.write(epb(t0, answer))
            for i in range(per_hour):
                ts = t0 + 1000 + i * step
                f.write(epb(ts, out if i % 8 else back))
            packets += per_hour + 1
    return packets


def day_of_dns(state: Path, start: datetime) -> int:
    names = ["telemetry.camvendor.example", "ntp.camvendor.example"]
    cams = [CAM, "10.10.0.12", "10.10.0.13", "10.10.0.14"]
    t = start.timestamp()
    n = 0
    with open_store(state) as store:
        batch: list[DnsEvent] = []
        for s in range(0, 24 * HOUR, 2):
            batch += [DnsEvent(t + s, c, name, "A") for c in cams for name in names]
            if len(batch) >= 20_000:
                record_dns(store, "sinkhole", batch, Position(0, 0), UTC, t + s)
                n += len(batch)
                batch = []
        record_dns(store, "sinkhole", batch, Position(0, 0), UTC, t + 24 * HOUR)
        n += len(batch)
    return n


def day_of_probes(state: Path, start: datetime) -> int:
    results = [
        ProbeResult.model_validate(
            {
                "from": f"cam-0{i % 4 + 1}",
                "to": "wan:443/tcp",
                "expect": "drop",
                "got": "drop",
                "ok": True,
                "evidence": "drop_cameras.wan +1",
                "id": f"flow-{i}",
            }
        )
        for i in range(50)
    ]
    with open_store(state) as store:
        for m in range(24 * 60):
            record_probe_run(store, start.timestamp() + m * 60, "c" * 40, results)
    return 24 * 60


def broker_log(state: Path, policy_prefix: str, local: str, start: datetime) -> int:
    log = state / MOSQUITTO_LOG
    t = int(start.timestamp())
    lines = []
    size = 0
    i = 0
    while size < 32 * 1024 * 1024:
        line = (
            f"{t + i // 3}: Sending PUBLISH to {local} (d0, q1, r0, m{i % 65535 + 1}, "
            f"'{policy_prefix}site/cam-01/events/motion', ... (120 bytes))\n"
        )
        lines.append(line)
        size += len(line)
        i += 1
    log.write_text("".join(lines))
    return i


def cli(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    t = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "cell.cli", *args], capture_output=True, text=True, timeout=1800
    )
    return time.monotonic() - t, r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=1.0, help="ring size in GiB (default 1)")
    ap.add_argument("--keep", action="store_true", help="leave the folder (prints where)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cell-bench-incident-", dir="/var/tmp"))
    try:
        repo = make_site(tmp, "t-bench")
        policy = load_policy(repo)
        now = datetime.now(UTC).replace(microsecond=0)
        start = now - timedelta(hours=24, minutes=1)
        state = tmp / "state"
        make_cell(policy, repo, state, start, 60)
        t = time.monotonic()
        packets = write_ring(state / "capture", start, int(args.gib * (1 << 30)))
        ring = sum(p.stat().st_size for p in (state / "capture").glob("wan.*"))
        log = state / "capture" / "coverage.jsonl"
        text = log.read_text().replace(
            (start + timedelta(seconds=60))
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            (start + timedelta(hours=24)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        )
        log.write_text(text)
        queries = day_of_dns(state, start)
        runs = day_of_probes(state, start)
        lines = broker_log(
            state, policy.site.hub.bridge.remote_prefix, bridge_local_client_id(policy), start
        )
        made = time.monotonic() - t
        print(
            f"state: ring {ring / (1 << 30):.2f} GiB in 24 files ({packets:,} packets), "
            f"{queries:,} DNS events, {runs:,} probe runs, broker log {lines:,} lines "
            f"(made in {made:.0f} s)"
        )
        where = ["--repo", str(repo), "--state-dir", str(state)]
        since, until = start + timedelta(seconds=30), start + timedelta(hours=24)
        window = [
            "--since",
            since.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "--until",
            until.strftime("%Y-%m-%dT%H:%M:%SZ"),
        ]
        base_s, base = cli("pcap", "destinations", *window, *where)
        inc_s, inc = cli("incident", *window, "--out", str(tmp / "pack"), *where)
        if inc.returncode not in (0, 3):
            print(inc.stderr, file=sys.stderr)
            raise SystemExit(1)
        pack = sum(p.stat().st_size for p in (tmp / "pack").rglob("*") if p.is_file())
        ver_s, ver = cli("incident", "verify", str(tmp / "pack"))
        print(
            f"cell pcap destinations (baseline, the egress step alone): {base_s:.1f} s (exit {base.returncode})"
        )
        print(
            f"cell incident, 24 h window: {inc_s:.1f} s (goal < 60 s; exit {inc.returncode}), "
            f"pack {pack / (1 << 20):.0f} MiB; ratio to baseline {inc_s / base_s:.2f}"
        )
        print(f"cell incident verify: {ver_s:.1f} s (exit {ver.returncode})")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
