"""The daemon for a while on the lab: probes every 10 s, steady DNS load on the sinkhole; RSS over
time (goal: flat, under 150 MB) and CPU share of the daemon process (issue 13).

    .venv/bin/python bench/soak.py [SECONDS]     (default 600: ten minutes)

DNS load: a thread in the cameras' namespace asks the sinkhole for phone-home names at `QPS`
queries a second (a few names, as cameras do), so the counter, the store and the status's
`dns_blocked_today` work all along. RSS is the daemon's VmRSS (its dumpcap child apart);
CPU share is (utime + stime) / wall time of the daemon process, one core = 100%.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

from daemonlab import daemon_lab

QPS = 50
SAMPLE = 10.0
VERIFY = "verify:\n  probe_interval: 10s\n"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dns_load(netns_name: str, src: str, server: str, stop: threading.Event) -> int:
    from cell.verify.dnsquery import query
    from firewall import netns

    sent = [0]

    def loop() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((src, 0))
            s.settimeout(0.5)
            names = [f"telemetry{i}.vendor-cloud.example" for i in range(5)]
            while not stop.is_set():
                s.sendto(query(names[sent[0] % len(names)], sent[0] & 0xFFFF), (server, 53))
                sent[0] += 1
                with contextlib.suppress(OSError):
                    s.recv(512)
                time.sleep(1 / QPS)

    netns.spawn(netns_name, loop).result()
    return sent[0]


def main(seconds: float = 600.0) -> int:
    with daemon_lab(VERIFY) as lab:
        info, pid = lab.info, lab.daemon.pid
        cams = info.vlans["cameras"]
        cam = next(h for h in info.hosts.values() if h["vlan"] == "cameras")
        stop = threading.Event()
        sent: list[int] = []
        load = threading.Thread(
            target=lambda: sent.append(
                dns_load(cams["netns"], cam["address"], cams["gateway"], stop)
            ),
            daemon=True,
        )
        load.start()
        t0, c0 = time.monotonic(), cpu_s(pid)
        samples: list[tuple[float, float]] = []
        while (elapsed := time.monotonic() - t0) < seconds:
            samples.append((elapsed, rss_mb(pid)))
            time.sleep(min(SAMPLE, max(0.0, seconds - elapsed)))
        wall, cpu = time.monotonic() - t0, cpu_s(pid) - c0
        samples.append((wall, rss_mb(pid)))
        stop.set()
        load.join(5)
        status = json.loads((Path(info.layout.state) / "status.json").read_text())
        restarts = sum(status.get("restarts", {}).values())
    print(f"soak: the daemon for {wall:.0f} s on the lab, probes every 10 s, {QPS} DNS q/s")
    for t, mb in samples[:: max(1, len(samples) // 12)]:
        print(f"  t={t:6.0f} s  RSS {mb:6.1f} MB")
    first = samples[1][1] if len(samples) > 1 else samples[0][1]
    last, peak = samples[-1][1], max(mb for _, mb in samples)
    print(f"  RSS: after warm-up {first:.1f} MB, end {last:.1f} MB, peak {peak:.1f} MB")
    print(f"  CPU share: {100 * cpu / wall:.1f}% of one core ({cpu:.1f} s in {wall:.0f} s)")
    print(f"  DNS queries sent: {sent[0] if sent else '?'}; service restarts: {restarts}")
    ok = peak < 150 and last - first < 20 and restarts == 0
    print("goal (flat, under 150 MB):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 600.0))
