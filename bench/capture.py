"""The WAN capture ring: its cost on forwarding, its drops, and incident windows from 1 GiB.

1. On a bare lab of the example site, iperf3 from the laptop (VLAN ops) to an iperf3 server in
   the WAN namespace crosses the gateway and its WAN link. Rounds alternate with and without
   dumpcap capturing that link (the Cell's own `Capture`, full packets, the policy's ring
   settings); each capture run reports dumpcap's own kernel drop counts when it stops.
   Unlimited rate, then a fixed rate (--rate) like a site's uplink.
2. A synthetic ring of at least 1 GiB (--ring-gib, hourly files, ~1 KB packets of several flows)
   in a temporary state directory: time `cell pcap` for a 1-hour window (across two files) and
   `cell pcap destinations` for it, end to end through the CLI. The ring is deleted afterwards.

    .venv/bin/python bench/capture.py [--rounds 3] [--seconds 3] [--rate 1G] [--ring-gib 1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cell.deploy.install import apply_lab_links
from cell.lab import lab_down, lab_up
from cell.lab.processes import stop
from cell.verify.capture import Capture, CaptureConfig
from cell.verify.coverage import CoverageLog
from cell.verify.labcapture import start_lab_capture
from cell.verify.pruner import Limits, chunk_for
from cell.verify.ring import ring_path
from firewall import antispoof, nat, netns
from firewall import nft as fw
from firewall.compile import TABLE, TABLE_FAMILY, render_json
from pcapgen import SYN, dns_response, epb, frame, header, udp_frame
from policies import Policy, load_policy
from policies.types import duration_seconds

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "site-config-example"
PORT = 5201


def nat_only(policy: Policy) -> bytes:
    """Table inet cell with only its NAT chain (and the set that rule reads): no filtering."""
    sets = [o for o in antispoof.antispoof_sets(policy) if o["set"]["name"] == antispoof.SITE_NETS]
    table = {"table": {"family": TABLE_FAMILY, "name": TABLE}}
    return render_json([table, *sets, nat.nat_chain(), *nat.nat_rules(policy)])


def iperf(ns: str, src: str, dst: str, seconds: int, rate: str | None) -> float:
    argv = ["iperf3", "-c", dst, "-B", src, "-p", str(PORT), "-t", str(seconds), "-J"]
    if rate:
        argv += ["-b", rate]
    r = netns.run(ns, argv, timeout=seconds + 30)
    doc = json.loads(r.stdout or b"{}")
    if "error" in doc or r.returncode != 0:
        raise RuntimeError(f"iperf3 failed: {doc.get('error') or r.stderr.decode()}")
    return float(doc["end"]["sum_received"]["bits_per_second"])


def throughput(args: argparse.Namespace, tmp: Path) -> None:
    site_id = f"bench-{uuid.uuid4().hex[:6]}"
    repo = tmp / "site"
    shutil.copytree(EXAMPLE, repo)
    text = (repo / "site.yaml").read_text().replace("id: lisbon-01", f"id: {site_id}")
    (repo / "site.yaml").write_text(text)
    policy = load_policy(repo)
    cw = policy.network.capture.wan
    server = None
    try:
        info = lab_up(policy, apply=apply_lab_links, services=(start_lab_capture,))
        # The lab's WAN has no route to the site (like an ISP): the laptop reaches it only through
        # the Cell's NAT. A bare lab has no ruleset, so load just the NAT part of it.
        fw.apply(nat_only(policy), info.gateway)
        if "capture" in info.processes:  # the lab's own ring; this bench runs its own
            stop([info.processes["capture"].pid])
        laptop, target = info.hosts["laptop"], info.outside["internet"]
        server = netns.popen(
            info.wan, ["iperf3", "-s", "-B", target, "-p", str(PORT)], stdout=-3, stderr=-3
        )
        time.sleep(0.5)
        ring = tmp / "ring"
        max_disk = 64 << 30  # the bench measures drops, not the pruner: room for every round
        cap = Capture(
            CaptureConfig(
                ring,
                info.wan_link["interface"],
                duration_seconds(cw.rotate),
                Limits(
                    timedelta(seconds=duration_seconds(cw.retention)),
                    max_disk,
                    1 << 30,
                    chunk_for(
                        max_disk, duration_seconds(cw.retention), duration_seconds(cw.rotate)
                    ),
                ),
                netns=info.gateway,
            )
        )
        for rate in (None, args.rate):
            ratios, on, off, drops, received = [], [], [], [], []
            for _ in range(args.rounds):
                cap.start()
                a = iperf(laptop["netns"], laptop["address"], target, args.seconds, rate)
                st = cap.stop().last_stop or {}
                shutil.rmtree(ring, ignore_errors=True)
                b = iperf(laptop["netns"], laptop["address"], target, args.seconds, rate)
                on.append(a)
                off.append(b)
                ratios.append(a / b)
                d = st.get("drops") or {}
                drops.append(int(d.get("drop", -1)))
                received.append(int(d.get("recv", 0)))
            label = f"at {rate}bit/s" if rate else "unlimited"
            print(
                f"iperf3 laptop -> wan {target}:{PORT}/tcp, {label}, {args.rounds} alternating rounds of {args.seconds} s"
            )
            print(f"  with capture    median {statistics.median(on) / 1e9:.2f} Gbit/s")
            print(f"  without capture median {statistics.median(off) / 1e9:.2f} Gbit/s")
            print(
                f"  per-round ratios {', '.join(f'{r:.3f}' for r in ratios)}; median {statistics.median(ratios):.3f}"
            )
            lost = [
                f"{d}/{r} ({100 * d / r:.2f} %)" if r else "?"
                for d, r in zip(drops, received, strict=True)
            ]
            print(f"  dumpcap drops (dropped/received per round): {', '.join(lost)}")
    finally:
        if server is not None:
            server.kill()
            server.wait()
        lab_down(site_id)


def synthesize(state: Path, gib: float, now: datetime) -> tuple[int, datetime, int]:
    """Hourly ring files of ~1 KB packets ending at the last full hour; returns (bytes, start
    of the first file, files)."""
    ring = state / "capture"
    ring.mkdir(parents=True)
    per_file = 128 << 20
    files = max(2, int(gib * (1 << 30) // per_file + (1 if gib * (1 << 30) % per_file else 0)))
    end = now.replace(minute=0, second=0, microsecond=0)
    first = end - timedelta(hours=files)
    flows = [
        frame("198.18.0.2", "198.19.0.10", "tcp", 40000, 8883, payload=1000),
        frame("198.19.0.10", "198.18.0.2", "tcp", 8883, 40000, payload=200),
        frame("198.18.0.2", "198.19.0.20", "tcp", 40001, 443, payload=1000),
        frame("10.40.0.50", "198.19.0.80", "tcp", 50000, 443, payload=1000),
        frame("198.18.0.2", "203.0.113.53", "udp", 5353, 53, payload=40),
    ]
    leak = frame("10.10.0.11", "198.19.0.99", "tcp", 40002, 443, flags=SYN)
    # The Cell's resolver answering the hub names, once per file (as after a reconnect).
    answers = [
        udp_frame(
            "203.0.113.53", "198.18.0.2", 53, 5353, dns_response("hub.example.eu", ["198.19.0.10"])
        ),
        udp_frame(
            "203.0.113.53",
            "198.18.0.2",
            53,
            5353,
            dns_response("api.balena-cloud.com", ["198.19.0.20"]),
        ),
    ]
    total = 0
    run = "be0c4a9e"
    for i in range(files):
        start = first + timedelta(hours=i)
        path = Path(
            str(ring_path(ring, run)).replace(
                ".pcapng", f"_{i + 1:05d}_{start:%Y%m%d%H%M%S}.pcapng"
            )
        )
        t0 = int(start.timestamp()) * 10**9
        size = 0
        n = 0
        with path.open("wb") as f:
            f.write(header())
            # Packets spread evenly over the hour; one leak per file. Timestamps vary, bytes do not.
            mean = sum(len(epb(0, fr)) for fr in flows) / len(flows)
            count = int(per_file // mean)
            step = 3600 * 10**9 // count
            buf = bytearray()
            for k in range(count):
                ts = t0 + k * step
                fr = flows[k % len(flows)]
                if k == count // 2:
                    fr = leak
                elif k % (count // 4) < 2:
                    fr = answers[k % 2]
                buf += epb(ts, fr)
                n += 1
                if len(buf) > 1 << 22:
                    f.write(buf)
                    buf.clear()
            f.write(buf)
            size = f.tell()
        total += size
    log = CoverageLog(ring)
    log.append("start", ts=first, run=run, interface="eth1", addresses=["198.18.0.2"])
    log.append("stop", ts=end, run=run, received=0, dropped=0, clean=True)
    return total, first, files


def windows(args: argparse.Namespace, tmp: Path) -> None:
    state = tmp / "state"
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    total, first, files = synthesize(state, args.ring_gib, now)
    made = time.perf_counter() - t0
    since = first + timedelta(hours=files // 2, minutes=30)
    until = since + timedelta(hours=1)
    iso = lambda t: t.isoformat().replace("+00:00", "Z")  # noqa: E731
    common = [
        "--since",
        iso(since),
        "--until",
        iso(until),
        "--state-dir",
        str(state),
        "--repo",
        str(EXAMPLE),
    ]
    cell = [sys.executable, "-m", "cell.cli", "pcap"]
    t0 = time.perf_counter()
    r = subprocess.run(
        [*cell, *common, "--out", str(tmp / "w.pcapng"), "--json"], capture_output=True, text=True
    )
    took_pcap = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    got = json.loads(r.stdout)
    t0 = time.perf_counter()
    r = subprocess.run([*cell, "destinations", *common, "--json"], capture_output=True, text=True)
    took_dest = time.perf_counter() - t0
    dest = json.loads(r.stdout)
    print(f"ring: {total / (1 << 30):.2f} GiB in {files} hourly files, synthesised in {made:.1f} s")
    print(
        f"cell pcap, 1-hour window across 2 files: {took_pcap:.2f} s, {got['packets']} packets, {got['bytes'] / (1 << 20):.0f} MiB"
    )
    print(
        f"cell pcap destinations, same window: {took_dest:.2f} s, exit {r.returncode}, "
        f"{len(dest['destinations'])} destinations, {dest['unexpected']} unexpected"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--rate", default="1G")
    ap.add_argument("--ring-gib", type=float, default=1.0)
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cell-bench-capture-"))
    try:
        if not args.skip_throughput:
            throughput(args, tmp)
        windows(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
