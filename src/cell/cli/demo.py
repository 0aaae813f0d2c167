"""`make demo` / `cell demo`: the example site as a lab, applied and probed, told for a newcomer."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bridge.classify import TAGS
from cell.explain import explain_flow, explain_topic, format_flow, format_topic
from firewall.compile import compile_ruleset, rule_count
from policies import Policy, load_policy


def example_repo() -> Path:
    """The example site shipped with Cell: inside the wheel, or beside the source tree."""
    here = Path(__file__).resolve().parent  # src/cell/cli
    for folder in (here, *here.parents[:3]):  # ... up to the checkout's root
        cand = folder / "site-config-example"
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
    if site.hub is None:
        print("  Sealed site: no hub, no bridge; nothing leaves.")
    else:
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


def show_status(info: Any, wait: float = 30.0) -> None:
    """What the daemon (`cell run`, started in the gateway) says, once every check has a result."""
    from cell.cli.status import _format
    from cell.status.checks import CHECK_NAMES
    from policies.layout import STATUS_JSON

    _say("6. The daemon's verdict (cell run in the gateway; cell status)")
    path = Path(info.layout.state) / STATUS_JSON
    deadline = time.monotonic() + wait
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError):
            doc = {}
        if doc.get("verdict") == "sovereign" or (
            doc and all(n in doc.get("checks", {}) for n in CHECK_NAMES) and doc["reasons"]
            and time.monotonic() > deadline - wait / 2
        ):  # fmt: skip
            break
        time.sleep(0.5)
    if not doc:
        print("  the daemon published no status")
        return
    print("\n".join("  " + line for line in _format(doc, CHECK_NAMES).splitlines()))
    print("\n  The same document is retained on the gateway's broker as cell/status (user `cell`).")


def signed_copy(src: Path, tmp: Path) -> tuple[Path, Path]:
    """The site as a Git repo with one commit signed by a fresh demo key, and the key's
    allowed_signers line to enroll: so the demo goes through the trust gate like a Cell."""
    import shutil
    import subprocess

    key = tmp / "demo-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    kind, blob = key.with_suffix(".pub").read_text().split()[:2]
    signers = tmp / "allowed_signers"
    signers.write_text(f'demo@cell namespaces="git" {kind} {blob}\n')
    repo = tmp / "site-config"
    shutil.copytree(src, repo, ignore=shutil.ignore_patterns(".git"))
    shutil.copy(signers, repo / "allowed_signers")

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git(
        "-c", "user.name=Cell demo", "-c", "user.email=demo@cell", "-c", "gpg.format=ssh",
        "-c", f"user.signingkey={key}", "commit", "-q", "-S", "-m", "the example site",
    )  # fmt: skip
    return repo, signers


def _cell(*args: str) -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "cell.cli", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"cell {args[0]} failed: {r.stderr.strip()}")


def run_demo(repo: str | None, keep: bool = False) -> int:
    import shutil
    import tempfile

    from cell.cli.lab import gateway_services
    from cell.lab import lab_down, lab_up
    from cell.run.labdaemon import start_daemon
    from cell.verify.prober import Env, format_results, probe_timeout, run_probes
    from firewall.probes import compile_probes

    path = Path(repo) if repo else example_repo()
    policy = load_policy(path)
    summary(policy, path)
    explain_some(policy)
    _say("3. Build the site as a lab; apply a signed commit of it to the gateway")
    print("  Network namespaces: the gateway (the Cell), one per VLAN, and a closed WAN with the")
    print("  hub broker, an outside resolver and a phone-home server. Nothing leaves this machine.")
    print("  The policy is committed and signed with a demo key, the key enrolled, and the commit")
    print("  applied through the trust gate (cell enroll, cell apply); then `cell run` starts.")
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="cell-demo-"))
    signed, signers = signed_copy(path, tmp)
    info = lab_up(load_policy(signed), services=gateway_services())
    try:
        _cell("enroll", "--signers", str(signers), "--repo", str(signed))
        _cell("apply", "--repo", str(signed))
        start_daemon(str(signed), info.gateway, info.layout.state, Path(info.root) / "log")
        print(
            f"  up and applied in {time.monotonic() - t0:.1f} s: nftables, DNS sinkhole, mosquitto + bridge"
        )
        _say("4. Prove it with real packets (cell probe)")
        print("  Allowed flows must be answered. Dropped flows must go unanswered AND raise their")
        print("  named drop counter: silence alone proves nothing.\n")
        env = Env(info.gateway, info.vlan_netns, info.outside, timeout=probe_timeout(policy))
        run = run_probes(compile_probes(policy), env)
        print(format_results(run))
        leaks = [r for r in run.results if r.expect == "drop" and r.got == "accept"]
        cams = [r for r in run.results if r.source.startswith("cam") and r.expect == "drop"]
        _say("5. What this shows")
        verdict = "◆ DATA · SOVEREIGN ◆" if run.ok else "✗ NOT SOVEREIGN: see the ✗ rows above"
        print(f"  {verdict}")
        print(
            f"  {len(cams)} attempts from a camera to leave its VLAN were dropped and counted; {len(leaks)} leaks."
        )
        show_status(info)
        import sys

        if sys.stdout.isatty() and sys.stdin.isatty():
            from cell.cli.console import open_on_lab

            print("\n  Opening the console on the lab (q leaves it; the lab is removed then).")
            open_on_lab(str(path))
        if keep:
            print(
                f"\n  The lab is still up. Look around:  ip netns exec {info.gateway} nft list ruleset"
            )
            print(f"  The signed copy of the site: {signed}")
            print(f"  Its verdict:  .venv/bin/cell status --repo {signed}")
            print(f"  Remove it with:  .venv/bin/cell lab down --repo {path}")
        return 0 if run.ok else 3
    finally:
        if not keep:
            lab_down(policy.site.site.id)
            shutil.rmtree(tmp, ignore_errors=True)
            print("\n  The lab was removed (run `cell demo --keep` to keep it up and look around).")
