"""`make demo` / `cell demo`: the example site as a lab, applied and probed, told for a newcomer."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from bridge.classify import TAGS
from cell.explain import explain_flow, explain_topic, format_flow, format_topic
from firewall.compile import compile_ruleset, rule_count
from policies import Policy, load_policy


def example_repo() -> Path:
    """The example site shipped with Cell: inside the wheel, or beside the source tree."""
    here = Path(__file__).resolve().parent
    for cand in (here / "site-config-example", here.parents[1] / "site-config-example"):
        if (cand / "site.yaml").exists():
            return cand
    raise FileNotFoundError("site-config-example not found next to the cell package")


def _say(title: str) -> None:
    print(f"\n── {title} " + "─" * max(0, 70 - len(title)))


def summary(policy: Policy, path: Path) -> None:
    site = policy.site
    print(f"◆ Cell demo: site {site.site.id} ({site.site.name}), policy from {path}")
    _say("1. The policy (validated: every rule checked, every value safe for a config line)")
    for v in policy.network.vlans:
        n = sum(1 for h in policy.network.hosts if h.vlan == v.name)
        net = "may reach the Internet where a flow says" if v.internet else "NO Internet, by rule"
        print(f"  VLAN {v.id:<4} {v.name:<10} {v.subnet:<16} {n:>3} hosts  {net}")
    print(f"  {len(policy.network.flows)} flows allowed; everything else is dropped and counted.")
    print(f"  Bridge to the hub ({site.hub.bridge.address}:{site.hub.bridge.port}):")
    for r in policy.mqtt.topics:
        print(f"    {TAGS[r.direction]:<16} {r.pattern}")
    counts = Counter(r.direction for r in policy.mqtt.topics)
    print(
        f"    anything else: {TAGS[policy.mqtt.bridge.default]}   ({dict(sorted(counts.items()))})"
    )
    print(
        f"  nftables: {rule_count(compile_ruleset(policy))} rules; hosts live in sets, not rules."
    )


def explain_some(policy: Policy) -> None:
    _say("2. Ask it why (cell explain)")
    for topic in (
        "site/cam-01/events/motion",
        "site/cam-01/snapshots/0001.jpg",
        "site/cam-01/debug/x",
    ):
        print("  " + format_topic(explain_topic(policy, topic)))
    for src, dst in (
        ("nvr", "cam-01:554/tcp"),
        ("cam-01", "wan:443/tcp"),
        ("gateway", "hub.bridge"),
    ):
        print("  " + format_flow(explain_flow(policy, src, dst)))


def run_demo(repo: str | None, keep: bool = False) -> int:
    from cell.cli.lab import GATEWAY_SERVICES
    from cell.deploy.install import apply_lab
    from cell.lab import lab_down, lab_up
    from cell.verify.prober import Env, format_results, run_probes
    from firewall.probes import compile_probes

    path = Path(repo) if repo else example_repo()
    policy = load_policy(path)
    summary(policy, path)
    explain_some(policy)
    _say("3. Build the site as a lab and apply the policy to its gateway (cell lab up)")
    print("  Network namespaces: the gateway (the Cell), one per VLAN, and a closed WAN with the")
    print("  hub broker, an outside resolver and a phone-home server. Nothing leaves this machine.")
    t0 = time.monotonic()
    info = lab_up(policy, apply=apply_lab, services=GATEWAY_SERVICES)
    try:
        print(
            f"  up and applied in {time.monotonic() - t0:.1f} s: nftables, DNS sinkhole, mosquitto + bridge"
        )
        _say("4. Prove it with real packets (cell probe)")
        print("  Allowed flows must be answered. Dropped flows must go unanswered AND raise their")
        print("  named drop counter: silence alone proves nothing.\n")
        run = run_probes(compile_probes(policy), Env(info.gateway, info.vlan_netns, info.outside))
        print(format_results(run))
        leaks = [r for r in run.results if r.expect == "drop" and r.got == "accept"]
        cams = [r for r in run.results if r.source.startswith("cam") and r.expect == "drop"]
        _say("5. What this shows")
        verdict = "◆ DATA · SOVEREIGN ◆" if run.ok else "✗ NOT SOVEREIGN: see the ✗ rows above"
        print(f"  {verdict}")
        print(
            f"  {len(cams)} attempts from a camera to leave its VLAN were dropped and counted; {len(leaks)} leaks."
        )
        import sys

        if sys.stdout.isatty() and sys.stdin.isatty():
            from cell.cli.console import open_on_lab

            print("\n  Opening the console on the lab (q leaves it; the lab is removed then).")
            open_on_lab(str(path))
        if keep:
            print(
                f"\n  The lab is still up. Look around:  ip netns exec {info.gateway} nft list ruleset"
            )
            print(f"  Remove it with:  .venv/bin/cell lab down --repo {path}")
        return 0 if run.ok else 3
    finally:
        if not keep:
            lab_down(policy.site.site.id)
            print("\n  The lab was removed (run `cell demo --keep` to keep it up and look around).")
