"""Forwarding throughput across the Cell with its 1,000-camera ruleset, against no ruleset.

On a lab of the example site, iperf3 runs over an allowed flow: the NVR (VLAN `cell`) pulls from
a camera's RTSP port (VLAN `cameras`), through the gateway, with the links as `cell apply`
makes them. Three conditions alternate over several rounds (the machine is noisy), their order
rotated each round so none always runs first: the 1,000-camera ruleset (NAT and anti-spoofing
on, the real-box path), a minimal stateful ruleset (`ct state established,related accept` and
one accept: the cost of conntrack itself) and none (the bare kernel). Per-round ratios against
the bare kernel, and of the full ruleset against the minimal one, with min/median/max.
Targets (issues 3 and 12): ratio >= 0.95; applying the 1,000-camera ruleset < 0.5 s.

    .venv/bin/python bench/forwarding.py [--rounds 5] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cell.deploy.install import apply_lab_links
from cell.lab import lab_down, lab_up
from firewall import netns
from firewall import nft as fw
from firewall.compile import compile_ruleset, render_json, rule_count
from policies import load_policy
from sitegen import EXAMPLE, make_site

PORT = 554


def iperf(client_ns: str, src: str, dst: str, seconds: int) -> float:
    r = netns.run(
        client_ns,
        ["iperf3", "-c", dst, "-B", src, "-p", str(PORT), "-t", str(seconds), "-J"],
        timeout=seconds + 30,
    )
    doc = json.loads(r.stdout or b"{}")
    if "error" in doc or r.returncode != 0:
        raise RuntimeError(f"iperf3 failed: {doc.get('error') or r.stderr.decode()}")
    return float(doc["end"]["sum_received"]["bits_per_second"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=3)
    args = ap.parse_args()

    site_id = f"bench-{uuid.uuid4().hex[:6]}"
    tmp = Path(tempfile.mkdtemp(prefix="cell-bench-"))
    repo = tmp / "example"
    shutil.copytree(EXAMPLE, repo)
    text = (repo / "site.yaml").read_text().replace("id: lisbon-01", f"id: {site_id}")
    (repo / "site.yaml").write_text(text)
    big = make_site(tmp / "big", 1000, 5000)
    doc = json.loads(render_json(compile_ruleset(load_policy(big))))
    small_rules = rule_count(compile_ruleset(load_policy(repo)))
    server = None
    try:
        info = lab_up(load_policy(repo), apply=apply_lab_links)  # routes, no firewall
        cam = info.hosts["cam-01"]
        nvr = info.hosts["nvr"]
        for name, proc in info.processes.items():
            if name == "responder.cameras":  # it holds 0.0.0.0:554; iperf3 takes the port
                os.kill(proc.pid, signal.SIGKILL)
        server = netns.popen(
            cam["netns"],
            ["iperf3", "-s", "-B", cam["address"], "-p", str(PORT)],
            stdout=-3,
            stderr=-3,
        )
        wait_listening(cam["netns"], cam["address"], PORT)

        apply_times = []
        for _ in range(5):
            fw.delete_table(info.gateway)
            t0 = time.perf_counter()
            fw.apply(doc, info.gateway)
            apply_times.append(time.perf_counter() - t0)

        conditions = {"full": doc, "minimal": minimal_ruleset(), "bare": None}
        rates: dict[str, list[float]] = {name: [] for name in conditions}
        names = list(conditions)
        for i in range(args.rounds):
            for name in names[i % 3 :] + names[: i % 3]:  # rotate the order each round
                fw.delete_table(info.gateway)
                if conditions[name] is not None:
                    fw.apply(conditions[name], info.gateway)
                rates[name].append(
                    iperf(nvr["netns"], nvr["address"], cam["address"], args.seconds)
                )
        fw.delete_table(info.gateway)
        print(
            f"ruleset: 1,000 cameras + 5,000 topics, {rule_count(doc_objects(doc))} rules "
            f"(example: {small_rules}), {elements(doc)} set elements"
        )
        print(
            f"apply time (incl. check pass), median of 5: {statistics.median(apply_times) * 1000:.0f} ms "
            f"(target < 500 ms)"
        )
        print(f"iperf3 nvr -> cam-01:{PORT}/tcp, {args.rounds} rotated rounds of {args.seconds} s")
        for name in names:
            print(f"  {name:8} median {statistics.median(rates[name]) / 1e9:.2f} Gbit/s")
        for a, b in (("full", "bare"), ("minimal", "bare"), ("full", "minimal")):
            ratios = [x / y for x, y in zip(rates[a], rates[b], strict=True)]
            print(
                f"  {a}/{b}: min {min(ratios):.3f}  median {statistics.median(ratios):.3f}  "
                f"max {max(ratios):.3f}"
                + ("  (target >= 0.95)" if (a, b) == ("full", "bare") else "")
            )
    finally:
        if server is not None:
            server.kill()
            server.wait()
        lab_down(site_id)
        shutil.rmtree(tmp, ignore_errors=True)


def wait_listening(ns: str, address: str, port: int, timeout: float = 10.0) -> None:
    """Until iperf3 holds the port (the killed responder may still have it for a moment)."""
    import socket

    def probe() -> bool:
        try:
            socket.create_connection((address, port), timeout=0.5).close()
        except OSError:
            return False
        return True

    deadline = time.monotonic() + timeout
    while not netns.with_ns(ns, probe):
        if time.monotonic() > deadline:
            raise RuntimeError(f"iperf3 is not listening on {address}:{port}")
        time.sleep(0.1)


def minimal_ruleset() -> dict:
    """Conntrack and nothing else: what any stateful firewall pays."""
    t = {"family": "inet", "table": "cell"}
    state = {
        "match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}
    }
    forward = {
        **t,
        "name": "forward",
        "type": "filter",
        "hook": "forward",
        "prio": 0,
        "policy": "drop",
    }
    return {
        "nftables": [
            {"add": {"table": {"family": "inet", "name": "cell"}}},
            {"add": {"chain": forward}},
            {"add": {"rule": {**t, "chain": "forward", "expr": [state, {"accept": None}]}}},
            {"add": {"rule": {**t, "chain": "forward", "expr": [{"accept": None}]}}},
        ]
    }


def elements(doc: dict) -> int:
    return sum(len(o["set"].get("elem", [])) for o in doc_objects(doc) if "set" in o)


def doc_objects(doc: dict) -> list[dict]:
    return [c["add"] for c in doc["nftables"] if "add" in c]


if __name__ == "__main__":
    main()
