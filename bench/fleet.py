"""The fleet view at scale, against a real mosquitto hub on loopback (no root).

1. Live: SITES simulated sites each publish their retained `cell/status` (the daemon's schema,
   every check in it) every PERIOD seconds for SECONDS, from publisher processes; the fleet
   view's own client (`cell.fleet.client.HubClient`) feeds its model in this process. Reported:
   updates per second ingested against published, the lag from a document's `ts` (set when it
   is published) to the moment the model holds it (p50/p99/max), and whether a backlog remained
   (messages published but not ingested when the publishers stop, and the time to drain them).
2. Memory: the model's own allocations (tracemalloc) per site, with every site's latest
   document held.
3. Snapshot: the time and peak memory of one `cell fleet --json` process (start, connect,
   collect every retained message, judge, print, exit) for each fleet size.

Goals (issue 16): no backlog at 1,000 sites x 1 update/s, p99 lag under 1 s, under 20 kB/site.

    .venv/bin/python bench/fleet.py [--sites 1000] [--period 1] [--seconds 60]
                                    [--snapshot-sizes 1000,10000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from cell.fleet.client import HubClient, HubOptions
from cell.fleet.model import FleetModel
from cell.status.checks import CHECK_NAMES, Check
from cell.status.document import LedgerHead, StatusDoc
from policies.clock import iso, parse_iso

TS = "2000-01-01T00:00:00.000Z"


def template(site: str, fresh_for: float = 60.0) -> str:
    """A full status document (every check, a ledger head) with TS where each time goes."""
    checks = {
        n: Check(ok=True, ts=TS, detail=f"{n}: holds as the policy says", fresh_for=fresh_for)
        for n in CHECK_NAMES
    }
    doc = StatusDoc(
        site=site,
        ts=TS,
        verdict="sovereign",
        reasons=[],
        commit="0123456789abcdef0123456789abcdef01234567",
        dns_blocked_today=847,
        checks=checks,
        ledger=LedgerHead(
            seq=1234, hash="ab" * 32, sig="-----BEGIN SSH SIGNATURE-----" + "x" * 300
        ),
        session="run-0123456789",
        services=dict.fromkeys(("drift", "bridge", "probes", "sinkhole", "capture"), "running"),
        fresh_for=fresh_for,
    )
    return json.dumps(doc.to_doc())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_hub(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = tmp / "hub.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n"
        "max_queued_messages 1000000\nmax_inflight_messages 1000\n"
    )
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the hub broker never listened")


def publisher(port: int, sites: list[str], period: float, until: float, counter: mp.Value) -> None:  # type: ignore[valid-type]
    """Publish each site's document every `period` s, spread evenly, until `until`."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{sites[0]}")
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    docs = [(f"sites/{s}/cell/status", template(s)) for s in sites]
    step = period / len(docs)
    start = time.time()
    sent = 0
    while time.time() < until:
        for i, (topic, text) in enumerate(docs):
            due = start + sent // len(docs) * period + i * step
            if (wait := due - time.time()) > 0:
                time.sleep(wait)
            c.publish(topic, text.replace(TS, iso()), qos=1, retain=True)
            sent += 1
            if time.time() >= until:
                break
    counter.value += sent  # type: ignore[attr-defined]
    time.sleep(1)
    c.disconnect()
    c.loop_stop()


class TimedModel(FleetModel):
    """The fleet model, noting for each status document how late it reached the model."""

    def __init__(self) -> None:
        super().__init__()
        self.lags: list[float] = []

    def ingest(self, topic: str, payload: bytes, now: float = 0.0) -> str | None:
        site = super().ingest(topic, payload, now)
        st = self.sites.get(site or "")
        if st is not None and st.status is not None and topic.endswith("/status"):
            self.lags.append(time.time() - parse_iso(st.status.ts).timestamp())
        return site


def live(port: int, n: int, period: float, seconds: float, procs: int) -> None:
    model = TimedModel()
    client = HubClient(HubOptions("127.0.0.1", port), model)
    client.start()
    time.sleep(0.5)
    names = [f"site-{i:05d}" for i in range(n)]
    until = time.time() + seconds
    counter = mp.Value("q", 0)
    workers = [
        mp.Process(target=publisher, args=(port, names[k::procs], period, until, counter))
        for k in range(procs)
    ]
    t0 = time.time()
    for w in workers:
        w.start()
    time.sleep(max(0.0, until - time.time()))
    with client.lock:
        at_stop = client.messages
    for w in workers:
        w.join()
    published = int(counter.value)
    drained = time.time()
    while client.messages < published and time.time() - drained < 30:
        time.sleep(0.05)
    drain = time.time() - drained
    client.stop()
    lags = sorted(model.lags)
    p = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]  # noqa: E731
    dur = until - t0
    print(
        f"live: {n} sites x 1 update / {period:g} s for {seconds:g} s ({procs} publisher processes)"
    )
    print(
        f"  published {published} ({published / dur:,.0f}/s), ingested {client.messages} "
        f"({client.messages / dur:,.0f}/s); behind at the publishers' stop: "
        f"{max(0, published - at_stop)}; drained in {drain:.2f} s"
    )
    print(
        f"  lag publish -> model: p50 {p(0.5) * 1000:.0f} ms, p99 {p(0.99) * 1000:.0f} ms, "
        f"max {lags[-1] * 1000:.0f} ms ({len(lags)} documents)"
    )
    print(
        f"  sites in the model: {len(model.sites)}; judging all of them: "
        f"{timed(lambda: model.snapshot(time.time())) * 1000:.0f} ms"
    )


def timed(fn: object) -> float:
    t = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t


def ingest_cost(n: int = 2000, rounds: int = 5) -> float:
    """Seconds of one thread's time per status document the model ingests (best of `rounds`):
    what the model costs, apart from the broker and the machine's load."""
    docs = [
        (f"sites/s-{i:05d}/cell/status", template(f"s-{i:05d}").replace(TS, iso()).encode())
        for i in range(n)
    ]
    model = FleetModel()
    best = float("inf")
    for _ in range(rounds):
        t = time.thread_time()
        for topic, body in docs:
            model.ingest(topic, body, 0.0)
        best = min(best, (time.thread_time() - t) / n)
    return best


def load() -> str:
    return "load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])


def memory(n: int) -> float:
    """Bytes the model holds per site, with every site's document (tracemalloc)."""
    docs = [
        (f"sites/site-{i:05d}/cell/status", template(f"site-{i:05d}").replace(TS, iso()).encode())
        for i in range(n)
    ]
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    model = FleetModel()
    for topic, body in docs:
        model.ingest(topic, body, 0.0)
        model.ingest(topic.replace("/status", "/bridge"), b"1", 0.0)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(model.sites) == n
    return used / n


def snapshot(port: int, n: int) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fill-{n}")
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    prefix = f"snap{n}"
    infos = []
    for i in range(n):
        s = f"s-{i:05d}"
        infos.append(
            c.publish(
                f"{prefix}/{s}/cell/status",
                template(s, 3600).replace(TS, iso()),
                qos=1,
                retain=True,
            )
        )
        infos.append(c.publish(f"{prefix}/{s}/cell/bridge", b"1", qos=1, retain=True))
    for info in infos:
        info.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()
    size = len(template("s-00000"))
    argv = [
        sys.executable,
        "-m",
        "cell.cli",
        "fleet",
        "--hub",
        f"127.0.0.1:{port}",
        "--topic",
        f"{prefix}/+",
        "--json",
        "--wait",
        "30",
    ]
    times = []
    for _ in range(3):
        t = time.perf_counter()
        r = subprocess.run(argv, capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        doc = json.loads(r.stdout)
        assert doc["total"] == n and doc["sovereign"] == n and r.returncode == 0, r.stderr
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    base = timed(
        lambda: subprocess.run(
            [sys.executable, "-m", "cell.cli", "fleet", "--help"], capture_output=True
        )
    )
    print(
        f"snapshot: {n} sites ({2 * n} retained messages, documents of {size} bytes): "
        f"`cell fleet --json` {statistics.median(times):.2f} s median of 3 "
        f"(of which the 0.5 s quiet wait; process start alone {base:.2f} s), peak RSS {rss:.0f} MiB"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sites", type=int, default=1000)
    ap.add_argument("--period", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--snapshot-sizes", default="1000,10000")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hub, port = start_hub(Path(tmp))
        try:
            print(f"start: {load()} on {os.cpu_count()} CPUs")
            cost = ingest_cost()
            print(
                f"ingest: {cost * 1e6:.0f} µs of CPU per status document "
                f"(one core: {1 / cost:,.0f} documents/s)"
            )
            live(port, args.sites, args.period, args.seconds, args.procs)
            print(f"after the live run: {load()}")
            print(
                f"memory: {memory(args.sites) / 1024:.1f} kB per site in the model "
                f"({args.sites} sites, each with its latest status document and link state)"
            )
            for n in (int(x) for x in args.snapshot_sizes.split(",") if x):
                snapshot(port, n)
        finally:
            hub.terminate()
            hub.wait(timeout=10)


if __name__ == "__main__":
    main()
