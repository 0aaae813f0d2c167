"""Time to load, validate and render sites of growing size, and the nftables rule count.

Target (issue 2): 1,000 cameras and 5,000 topic rules in under 1 s on a 2-core machine, with the
same rule count at every size. Each size runs several times; the best run is reported (the
machine is noisy), with its ratio to the smallest site measured in the same run.

    .venv/bin/python bench/compile.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cell.artifacts import render_all
from firewall.compile import compile_ruleset, rule_count
from policies import load_policy
from sitegen import make_site

SIZES = [(10, 50), (100, 500), (1000, 5000)]
RUNS = 5


def measure(repo: Path) -> tuple[float, float, int]:
    best_load = best_render = float("inf")
    rules = 0
    for _ in range(RUNS):
        t0 = time.perf_counter()
        policy = load_policy(repo)
        t1 = time.perf_counter()
        render_all(policy)
        t2 = time.perf_counter()
        best_load, best_render = min(best_load, t1 - t0), min(best_render, t2 - t1)
        rules = rule_count(compile_ruleset(policy))
    return best_load, best_render, rules


def main() -> None:
    print(
        f"{'cameras':>8} {'topics':>7} {'load+validate':>14} {'render':>9} {'total':>9} {'x smallest':>10} {'rules':>6}"
    )
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        for cams, topics in SIZES:
            repo = make_site(Path(tmp) / f"s{cams}", cams, topics)
            load, render, rules = measure(repo)
            total = load + render
            base = base or total
            print(
                f"{cams:>8} {topics:>7} {load * 1000:>11.1f} ms {render * 1000:>6.1f} ms "
                f"{total * 1000:>6.1f} ms {total / base:>9.1f}x {rules:>6}"
            )


if __name__ == "__main__":
    main()
