"""Topic classification speed: the classifier's trie against a naive loop over the patterns.

The naive loop asks paho's `topic_matches_sub` about every rule in file order, then applies the
same precedence as the classifier (never beats local, else the first match). Both classify the
same mixed topics (matching up/down/never/local rules, the example's own topics, `$SYS`, and
topics no rule matches); every answer of the loop is checked against the trie's.

Target (issue 4): at least 300k classifications per second at 5,000 rules.

    .venv/bin/python bench/classify.py [--topics N] [--naive-seconds S]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paho.mqtt.client import topic_matches_sub

from bridge.classify import Classifier, Verdict
from policies import Policy, load_policy
from sitegen import make_site

SIZES = (50, 500, 5000)
RUNS = 5


def topics_for(n_rules: int, count: int, rng: random.Random) -> list[str]:
    """A mix like a site's bus: mostly matching some rule, some $SYS, some matching none."""
    zones = max(1, n_rules)
    out = []
    for _ in range(count):
        z = rng.randrange(zones)
        cam = f"cam-{rng.randrange(1, 5):02d}"
        out.append(
            rng.choice(
                [
                    f"zone{z:05d}/events/motion/{rng.randrange(100)}",
                    f"zone{z:05d}/raw/frame",
                    f"zone{z:05d}/debug",
                    f"hub/zone{z:05d}/cmd/reboot",
                    f"zone{z:05d}/other/thing",
                    f"site/{cam}/events/motion",
                    f"site/{cam}/snapshots/{rng.randrange(1000)}",
                    f"site/{cam}/state",
                    f"site/{cam}/telemetry/raw/imu",
                    "$SYS/broker/uptime",
                    f"unmatched/{rng.randrange(100)}/x",
                ]
            )
        )
    return out


def naive(policy: Policy) -> tuple[list[tuple[str, str]], str]:
    return [(r.pattern, r.direction) for r in policy.mqtt.topics], policy.mqtt.bridge.default


def naive_classify(rules: list[tuple[str, str]], default: str, topic: str) -> Verdict:
    hits = [i for i, (pattern, _) in enumerate(rules) if topic_matches_sub(pattern, topic)]
    if not hits:
        return Verdict(default, None)
    best = hits[0]
    if rules[best][1] != "never":
        best = next((i for i in hits if rules[i][1] == "never"), best)
    return Verdict(rules[best][1], best)


def rate_trie(classifier: Classifier, topics: list[str]) -> float:
    best = float("inf")
    classify = classifier.classify
    for _ in range(RUNS):
        t0 = time.perf_counter()
        for t in topics:
            classify(t)
        best = min(best, time.perf_counter() - t0)
    return len(topics) / best


def rate_naive(policy: Policy, topics: list[str], budget: float) -> tuple[float, list[Verdict]]:
    """Classifications per second of the loop within `budget` seconds, and its answers."""
    rules, default = naive(policy)
    answers = []
    t0 = time.perf_counter()
    for t in topics:
        answers.append(naive_classify(rules, default, t))
        if time.perf_counter() - t0 > budget:
            break
    return len(answers) / (time.perf_counter() - t0), answers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--topics", type=int, default=200_000, help="topics classified per size")
    ap.add_argument("--naive-seconds", type=float, default=2.0, help="time budget of the loop")
    args = ap.parse_args()
    rng = random.Random(4)
    print(f"{'rules':>6} {'trie/s':>12} {'naive loop/s':>13} {'speed-up':>9} {'agree':>12}  target")
    with tempfile.TemporaryDirectory() as tmp:
        for size in SIZES:
            # The generated rules plus the example's own (13), as a real site would have.
            policy = load_policy(make_site(Path(tmp) / f"s{size}", 4, size - 13))
            classifier = Classifier(policy)
            topics = topics_for(size, args.topics, rng)
            trie = rate_trie(classifier, topics)
            loop, answers = rate_naive(policy, topics, args.naive_seconds)
            wrong = sum(
                1 for t, a in zip(topics, answers, strict=False) if classifier.classify(t) != a
            )
            target = "" if size != 5000 else ("ok" if trie >= 300_000 else "MISSED (300k/s)")
            print(
                f"{len(policy.mqtt.topics):>6} {trie:>12,.0f} {loop:>13,.0f} {trie / loop:>8,.0f}x "
                f"{len(answers) - wrong:>5}/{len(answers):<6}  {target}"
            )
            if wrong:
                raise SystemExit(f"the trie and the loop disagree on {wrong} topics")


if __name__ == "__main__":
    main()
