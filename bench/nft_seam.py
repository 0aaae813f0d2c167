"""Cost of one nftables call in a namespace: the Nft seam on its namespace's thread, against the
fork-per-call way it replaced (a child that enters the namespace, opens a fresh libnftables
context, lists the table and sends it back), measured in the same run on the same table.

The drift watcher and the probes list the table and read counters many times a second, so this
is their floor. Best of several rounds (the machine is shared).

    .venv/bin/python bench/nft_seam.py
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from firewall import netns
from firewall.compile import compile_ruleset, render_json
from firewall.libnft import Context
from firewall.nft import FAMILY, TABLE, backend
from policies import load_policy

EXAMPLE = Path(__file__).resolve().parents[1] / "site-config-example"
CALLS, ROUNDS = 50, 5


def forked_list(name: str) -> Any:
    """The old way: fork, setns in the child, a fresh context, one listing, pickled back."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)

    def target() -> None:
        netns.enter(name)
        cmd = {"nftables": [{"list": {"table": {"family": FAMILY, "name": TABLE}}}]}
        child.send(Context().json(cmd)[1])

    proc = ctx.Process(target=target)
    proc.start()
    out = parent.recv()
    proc.join()
    return out


def best_ms(fn: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        for _ in range(CALLS):
            fn()
        best = min(best, (time.perf_counter() - t0) / CALLS)
    return best * 1000


def main() -> None:
    doc = json.loads(render_json(compile_ruleset(load_policy(EXAMPLE))))
    with netns.scratch("cell-b") as name:
        nft = backend(name)
        nft.apply(doc)
        assert nft.list_table() is not None
        seam = best_ms(nft.list_table)
        counters = best_ms(nft.read_counters)
        forked = best_ms(lambda: forked_list(name))
    print(f"list_table, fork per call (baseline): {forked:7.2f} ms")
    print(f"list_table, Nft seam:                 {seam:7.2f} ms  ({forked / seam:5.1f}x faster)")
    print(f"read_counters, Nft seam:              {counters:7.2f} ms")


if __name__ == "__main__":
    main()
