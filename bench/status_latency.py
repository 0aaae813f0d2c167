"""Time from an out-of-band change on a lab gateway to `cell/status` saying `at_risk` at a
subscriber of the status bus (issue 13: p99 under 1 s).

Builds a lab of the example site (signed repo, `cell enroll`, `cell apply`), starts `cell run` in
its gateway and a subscriber of `cell/status` (mosquitto_sub as the console login), then makes
CHANGES hand-inserted nft rules, one at a time: insert a rule (latency: until the subscriber
reads `at_risk` naming drift), delete it again (until `sovereign`). Every change goes the whole
way: kernel -> netlink -> drift watcher -> supervisor board -> publisher -> broker -> subscriber.
bench/drift_latency.py measures the watcher alone (to its event line): the difference is what
the daemon and the bus add.

    .venv/bin/python bench/status_latency.py [CHANGES]
"""

from __future__ import annotations

import re
import sys
import time

from daemonlab import BusReader, daemon_lab
from drift_latency import percentile

TIMEOUT = 5.0


def main(count: int = 50) -> int:
    with daemon_lab() as lab:
        gw = lab.info.gateway
        from firewall import netns

        def nft(*args: str) -> str:
            return netns.run(gw, ["nft", *args], check=True).stdout.decode()

        bus = BusReader(lab.info, "cell/status")
        try:
            if bus.wait(lambda d: d["verdict"] == "sovereign", 60) is None:
                raise SystemExit("the daemon never said sovereign")
            risk: list[float] = []
            back: list[float] = []
            missed = 0
            for i in range(count):
                t0 = time.time()
                nft(
                    "insert",
                    "rule",
                    "inet",
                    "cell",
                    "input",
                    "tcp",
                    "dport",
                    str(2000 + i),
                    "accept",
                )
                seen = bus.wait(
                    lambda d: d["verdict"] == "at_risk" and d["reasons"][0].startswith("drift:"),
                    TIMEOUT,
                )
                if seen is None:
                    missed += 1
                else:
                    risk.append(seen - t0)
                listing = nft("-a", "list", "chain", "inet", "cell", "input")
                handle = re.search(rf"dport {2000 + i} accept # handle (\d+)", listing)
                assert handle, "the hand-made rule is gone"
                t1 = time.time()
                nft("delete", "rule", "inet", "cell", "input", "handle", handle.group(1))
                seen = bus.wait(lambda d: d["verdict"] == "sovereign", TIMEOUT)
                if seen is not None:
                    back.append(seen - t1)
        finally:
            bus.close()
    print(f"status latency, {count} hand-inserted nft rules, kernel -> cell/status subscriber:")
    for label, vs in (("to at_risk (drift)", risk), ("back to sovereign", back)):
        if vs:
            print(
                f"  {label:<20} n={len(vs):<3} p50 {percentile(vs, 50) * 1000:6.1f} ms  "
                f"p99 {percentile(vs, 99) * 1000:6.1f} ms  max {max(vs) * 1000:6.1f} ms"
            )
    print(f"  detected {len(risk)}/{count}" + (f"; missed {missed}" if missed else ""))
    ok = not missed and bool(risk) and percentile(risk, 99) < 1.0
    print("target (p99 < 1 s, every change seen):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50))
