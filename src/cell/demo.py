"""`make demo` / `cell demo`: validate and render the embedded example site, and say what it means."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path

from bridge.classify import TAGS
from cell.render import MANIFEST, render_all, write_tree
from firewall.compile import compile_ruleset, rule_count
from policies import load_policy


def example_repo() -> Path:
    """The example site shipped with Cell: inside the wheel, or beside the source tree."""
    here = Path(__file__).resolve().parent
    for cand in (here / "site-config-example", here.parents[1] / "site-config-example"):
        if (cand / "site.yaml").exists():
            return cand
    raise FileNotFoundError("site-config-example not found next to the cell package")


def run_demo(repo: str | None) -> int:
    path = Path(repo) if repo else example_repo()
    policy = load_policy(path)
    files = render_all(policy)
    out = Path(tempfile.mkdtemp(prefix="cell-demo-"))
    write_tree(out, files)
    site = policy.site
    print(f"◆ Cell demo: site {site.site.id} ({site.site.name}), policy from {path}\n")
    print("Network")
    for v in policy.network.vlans:
        n = sum(1 for h in policy.network.hosts if h.vlan == v.name)
        net = "Internet allowed by flows only" if v.internet else "NO Internet egress"
        print(f"  VLAN {v.id:<4} {v.name:<10} {v.subnet:<16} {n:>3} hosts  {net}")
    print(f"  {len(policy.network.flows)} flows allowed; everything else is dropped and counted.\n")
    print("MQTT bridge policy")
    for r in policy.mqtt.topics:
        print(f"  {TAGS[r.direction]:<16} {r.pattern}")
    counts = Counter(r.direction for r in policy.mqtt.topics)
    print(f"  default: {policy.mqtt.bridge.default}; {dict(sorted(counts.items()))}\n")
    print(f"Rendered to {out} ({rule_count(compile_ruleset(policy))} nftables rules)")
    for name, dig in json.loads(files[MANIFEST])["files"].items():
        print(f"  {dig[:12]}  {name}")
    return 0
