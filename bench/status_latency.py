"""Time from an out-of-band change on a lab gateway to `cell/status` saying `at_risk` at a
subscriber of the status bus (issue 13: p99 under 1 s).

Builds a lab of the example site (signed repo, `cell enroll`, `cell apply`), starts `cell run` in
its gateway and a subscriber of `cell/status` (mosquitto_sub as the console login), then makes
CHANGES hand-inserted nft rules, one at a time: insert a rule (latency: until the subscriber
reads `at_risk` naming drift), delete it again (until `sovereign`). Every change goes the whole
way: kernel -> netlink -> drift watcher -> supervisor board -> publisher -> broker -> subscriber.
bench/drift_latency.py measures the watcher alone (to its event line): the difference is what
the daemon and the bus add.

With `--load RATE`, the same changes run twice in the same lab: first on a quiet bus (the
baseline), then while publishers send RATE messages a second on the site's bus as the `nvr` and
`ai` logins, from their hosts' VLANs (70 % QoS 0 on a local topic, 30 % QoS 1 events that the
bridge carries up). The daemon's one `cell` connection reads the whole bus (`#`, for the bridge monitor) and
sends the status on it, so this is what a busy site costs the status.

    .venv/bin/python bench/status_latency.py [CHANGES] [--load RATE]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections.abc import Callable

from bridge_load import spawn
from cell.lab import LabInfo
from daemonlab import BusReader, daemon_lab
from drift_latency import percentile

TIMEOUT = 5.0
LOGINS = ("nvr", "ai")
"""One publisher per login: with `use_username_as_clientid`, two connections of one login take
the session from each other."""


def start_load(info: LabInfo, rate: int) -> list[subprocess.Popen[bytes]]:
    procs = []
    for user in LOGINS:
        host = info.hosts[user]
        spec = {
            "user": user,
            "password": info.credentials[user],
            "host": info.vlans[host["vlan"]]["gateway"],
            "port": 1883,
            "seconds": 3600,
            "mix": [(7, f"site/{user}/load/{{id}}", 0), (3, f"site/{user}/events/{{id}}", 1)],
            "p": user,
            "rate": rate / len(LOGINS),
        }
        procs.append(spawn(host["netns"], spec))
    return procs


def measure(
    nft: Callable[..., str], bus: BusReader, count: int, first_port: int
) -> tuple[list[float], list[float], int]:
    risk: list[float] = []
    back: list[float] = []
    missed = 0
    for i in range(count):
        port = str(first_port + i)
        t0 = time.time()
        nft("insert", "rule", "inet", "cell", "input", "tcp", "dport", port, "accept")
        seen = bus.wait(
            lambda d: d["verdict"] == "at_risk" and d["reasons"][0].startswith("drift:"),
            TIMEOUT,
        )
        if seen is None:
            missed += 1
        else:
            risk.append(seen - t0)
        listing = nft("-a", "list", "chain", "inet", "cell", "input")
        handle = re.search(rf"dport {port} accept # handle (\d+)", listing)
        assert handle, "the hand-made rule is gone"
        t1 = time.time()
        nft("delete", "rule", "inet", "cell", "input", "handle", handle.group(1))
        seen = bus.wait(lambda d: d["verdict"] == "sovereign", TIMEOUT)
        if seen is not None:
            back.append(seen - t1)
    return risk, back, missed


def main(count: int = 50, load: int = 0) -> int:
    rounds = [("quiet bus", 0)] + ([(f"{load:,} msg/s on the bus", load)] if load else [])
    results = []
    with daemon_lab() as lab:
        gw = lab.info.gateway
        from firewall import netns

        def nft(*args: str) -> str:
            return netns.run(gw, ["nft", *args], check=True).stdout.decode()

        bus = BusReader(lab.info, "cell/status")
        try:
            if bus.wait(lambda d: d["verdict"] == "sovereign", 60) is None:
                raise SystemExit("the daemon never said sovereign")
            for n, (label, rate) in enumerate(rounds):
                procs = start_load(lab.info, rate) if rate else []
                try:
                    time.sleep(2 if rate else 0)  # the load running before the first change
                    results.append((label, *measure(nft, bus, count, 2000 + n * count)))
                finally:
                    for proc in procs:
                        proc.kill()
                        proc.wait()
                bus.wait(lambda d: d["verdict"] == "sovereign", TIMEOUT)
        finally:
            bus.close()
    ok = True
    print(f"status latency, {count} hand-inserted nft rules, kernel -> cell/status subscriber:")
    for label, risk, back, missed in results:
        print(f" {label}:")
        for what, vs in (("to at_risk (drift)", risk), ("back to sovereign", back)):
            if vs:
                print(
                    f"  {what:<20} n={len(vs):<3} p50 {percentile(vs, 50) * 1000:6.1f} ms  "
                    f"p99 {percentile(vs, 99) * 1000:6.1f} ms  max {max(vs) * 1000:6.1f} ms"
                )
        print(f"  detected {len(risk)}/{count}" + (f"; missed {missed}" if missed else ""))
        ok = ok and not missed and bool(risk) and percentile(risk, 99) < 1.0
    if len(results) == 2 and results[0][1] and results[1][1]:
        ratio = percentile(results[1][1], 99) / percentile(results[0][1], 99)
        print(f"p99 to at_risk, loaded / quiet (same run): {ratio:.2f}")
    print("target (p99 < 1 s, every change seen):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("changes", nargs="?", type=int, default=50)
    ap.add_argument("--load", type=int, default=0, help="messages a second on the bus meanwhile")
    a = ap.parse_args()
    sys.exit(main(a.changes, a.load))
