"""The DNS sinkhole counter at dnsmasq's own saturation rate.

Builds its own lab of the example site, then drives the sinkhole from the cameras VLAN (both
cameras, one sender process each, 64 queries in flight each) as fast as dnsmasq answers, for
SECONDS (default 30), with a mix of 500 names and the types A, AAAA, TXT, HTTPS, MX, PTR, ANY.
Meanwhile the counter runs as the daemon would run it: an ingest every second into the store.
Reports the answer rate, counted/sent (goal: exactly 1.0: every query dnsmasq received is in
the store once), the ingest rate of the backlog, and the store's size per million queries.
The lab is removed at the end.

    .venv/bin/python bench/dns_counter.py [SECONDS]
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from cell.deploy.install import apply_lab  # noqa: E402
from cell.lab import lab_down, lab_up  # noqa: E402
from cell.store import open_store  # noqa: E402
from cell.store.dns import day_totals  # noqa: E402
from cell.verify.sinkhole import ingest  # noqa: E402
from cell.verify.site import log_sources, site_zone  # noqa: E402
from firewall import netns  # noqa: E402
from policies import load_policy  # noqa: E402
from verify_lab import TYPES, blast  # noqa: E402

NAMES = [f"t{i}.vendor{i % 17}.example" for i in range(500)]
WINDOW = 16
"""Queries in flight per sender: enough to keep dnsmasq busy, few enough for its socket buffer."""
MIX = [(n, t) for n in NAMES for t in TYPES.values()]


def sender(ns: str, src: str, server: str, seconds: float, out: Any) -> None:
    netns.enter(ns)
    sent = answered = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        s, a = blast(src, server, MIX[:2000], window=WINDOW)
        sent, answered = sent + s, answered + a
        MIX.append(MIX.pop(0))
    out.put((sent, answered))


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    site = f"b-{uuid.uuid4().hex[:6]}"
    tmp = Path(tempfile.mkdtemp(prefix="cell-bench-dns-"))
    repo = tmp / "repo"
    shutil.copytree(ROOT / "site-config-example", repo)
    text = (repo / "site.yaml").read_text().replace("lisbon-01", site)
    (repo / "site.yaml").write_text(text)
    policy = load_policy(repo)
    try:
        info = lab_up(policy, apply=apply_lab)
        sources = log_sources(policy, info.layout)
        tz = site_zone(policy)
        store_dir = tmp / "state"
        with open_store(store_dir) as store:
            ingest(store, sources, tz)  # the lab's startup queries: not part of the run
            base = day_totals(store, datetime.now(tz).date().isoformat())[0]
            size0 = store.size()
        gw = policy.vlans["cameras"].gateway
        ctx = mp.get_context("fork")
        results: Any = ctx.Queue()
        procs = [
            ctx.Process(target=sender, args=(h["netns"], h["address"], gw, seconds, results))
            for name, h in sorted(info.hosts.items())
            if h["vlan"] == "cameras"
        ]
        stop = threading.Event()
        lag: list[float] = []

        def reader() -> None:
            with open_store(store_dir) as s:
                while not stop.wait(1.0):
                    t0 = time.monotonic()
                    ingest(s, sources, tz)
                    lag.append(time.monotonic() - t0)

        t = threading.Thread(target=reader)
        t0 = time.monotonic()
        for p in procs:
            p.start()
        t.start()
        totals = [results.get() for _ in procs]
        elapsed = time.monotonic() - t0
        for p in procs:
            p.join()
        stop.set()
        t.join()
        sent = sum(s for s, _ in totals)
        answered = sum(a for _, a in totals)
        with open_store(store_dir) as store:
            t1 = time.monotonic()
            ingest(store, sources, tz)
            tail = time.monotonic() - t1
            counted = day_totals(store, datetime.now(tz).date().isoformat())[0] - base
            store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            size = store.size() - size0
        print(f"senders: {len(procs)} (cameras VLAN), {elapsed:.1f} s, {WINDOW} in flight each")
        print(f"sent {sent:,}, answered {answered:,} ({answered / elapsed:,.0f} answers/s)")
        print(
            f"counted/sent {counted / sent:.6f}, counted/answered {counted / max(answered, 1):.6f}"
            f" (counted {counted:,})"
        )
        print(
            f"ingest while running: {len(lag)} passes, longest {max(lag or [0]):.2f} s;"
            f" the rest after the run: {tail:.2f} s"
        )
        per_million = size / max(counted, 1) * 1e6
        print(
            f"store: {size / 1e6:.1f} MB for {counted:,} queries (raw events kept),"
            f" {per_million / 1e6:.1f} MB per million queries"
        )
        return 0 if counted == sent else 1
    finally:
        lab_down(site)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
