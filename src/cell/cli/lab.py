"""`cell lab up|down|status`: the command-line side of the lab. Handlers return an exit code and
raise `CellError`s; `cell.cli.main` prints those and exits (DESIGN.md's contract)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from cell import paths
from cell.lab.errors import LabNotUp

if TYPE_CHECKING:
    from collections.abc import Callable


def gateway_services() -> tuple[Callable[..., Any], ...]:
    """What `cell lab up` starts in the gateway besides what `apply` starts. (Imported here,
    not at the top: every `cell` command builds this parser, and netlink costs start-up.)"""
    from cell.verify.labcapture import start_lab_capture

    return (start_lab_capture,)


def after_apply() -> tuple[Callable[..., Any], ...]:
    """What it starts once the policy is applied: the daemon (`--no-daemon` to skip)."""
    from cell.run.labdaemon import start_lab_daemon

    return (start_lab_daemon,)


def add_lab_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lab = sub.add_parser(
        "lab",
        help="the site as a lab: network namespaces on this machine",
        description="Build the site that the policy describes in network namespaces (gateway, "
        "one per VLAN, a closed WAN with hub, resolver and phone-home server), or remove it.",
    )
    actions = lab.add_subparsers(dest="lab_command", required=True, metavar="ACTION")
    up = actions.add_parser(
        "up", help="build (or rebuild) the lab and apply the policy to its gateway"
    )
    up.add_argument(
        "--no-apply",
        action="store_true",
        help="build the bare site; leave the gateway unconfigured",
    )
    up.add_argument(
        "--no-daemon",
        action="store_true",
        help="do not start the daemon (`cell run`) in the gateway",
    )
    up.set_defaults(handler=cmd_lab_up)
    down = actions.add_parser(
        "down", help="remove every namespace, link, process and file of the lab"
    )
    down.set_defaults(handler=cmd_lab_down)
    status = actions.add_parser(
        "status", help="the running lab: namespaces, addresses, brokers (exit 3: none)"
    )
    status.set_defaults(handler=cmd_lab_status)
    for sp in (up, down, status):
        sp.add_argument("--repo", help=paths.REPO_HELP)
        sp.add_argument("--json", action="store_true", help="machine-readable output")
    for sp in (down, status):
        sp.add_argument("--site", help="site id (default: the id in the repo's site.yaml)")


def _load(args: argparse.Namespace) -> Any:
    from policies import load_policy

    policy = load_policy(paths.repo_dir(args.repo))
    for w in policy.warnings:
        print(w, file=sys.stderr)
    return policy


def _site(args: argparse.Namespace) -> str:
    return str(args.site) if args.site else str(_load(args).site.site.id)


def _apply_hook() -> Any:
    """The real apply (`cell.apply.apply_lab`) when it is there; else the lab stays bare."""
    try:
        from cell.deploy.install import apply_lab
    except ImportError:
        return None
    return apply_lab


def cmd_lab_up(args: argparse.Namespace) -> int:
    from cell.lab.lab import lab_up

    policy = _load(args)
    hook = None if args.no_apply else _apply_hook()
    t0 = time.monotonic()
    after = () if args.no_daemon or hook is None else after_apply()
    info = lab_up(policy, apply=hook, services=gateway_services(), after_apply=after)
    took = time.monotonic() - t0
    if args.json:
        print(json.dumps({**info.to_doc(), "applied": hook is not None}, indent=2))
        return 0
    applied = (
        "the policy is applied to the gateway" if hook else "bare: nothing applied to the gateway"
    )
    if after:
        applied += "; the daemon (`cell run`) runs in it: `cell status` reads it"
    print(f"lab for site {info.site} is up in {took:.1f} s; {applied}\n")
    print(format_info(info))
    return 0


def cmd_lab_down(args: argparse.Namespace) -> int:
    from cell.lab.lab import lab_down

    site = _site(args)
    lab_down(site)
    if args.json:
        print(json.dumps({"site": site, "up": False}))
    else:
        print(f"lab for site {site}: removed (no namespace, process or file of it is left)")
    return 0


def cmd_lab_status(args: argparse.Namespace) -> int:
    from cell.lab.lab import lab_status

    site = _site(args)
    info = lab_status(site)
    if info is None:
        raise LabNotUp(f"no lab is up for site {site} (start one with `cell lab up`)")
    alive = {name: p.running() for name, p in info.processes.items()}
    if args.json:
        print(json.dumps({**info.to_doc(), "alive": alive}, indent=2))
        return 0
    print(f"lab for site {info.site} is up ({info.root})\n")
    print(format_info(info))
    dead = sorted(n for n, ok in alive.items() if not ok)
    print(
        "\nprocesses: "
        + (f"NOT RUNNING: {', '.join(dead)}" if dead else f"all {len(alive)} running")
    )
    return 0


def format_info(info: Any) -> str:
    """A person's view of a lab. Passwords are not shown: `--json` has them (lab only)."""
    out = [f"  gateway  {info.gateway}"]
    for name, v in info.vlans.items():
        hosts = [f"{h} {d['address']}" for h, d in info.hosts.items() if d["vlan"] == name]
        who = ", ".join(hosts) if hosts else f"probe address {v['addresses'][0]}"
        out.append(
            f"  VLAN     {name:<10} {v['interface']:<9} gw {v['gateway']:<12} {v['netns']}: {who}"
        )
    o, hub = info.outside, info.mqtt["hub"]
    out.append(f"  WAN      {info.wan}  (closed: nothing leaves this machine)")
    tls = "mutual TLS, lab CA" if hub["cafile"] else "plain MQTT (policy says insecure)"
    out.append(f"    hub broker   {hub['hostname']} = {hub['host']}:{hub['port']} ({tls})")
    for m in o["management_endpoints"]:
        name = f"{m['host']} = " if m["host"] != m["address"] else ""
        out.append(f"    management   {name}{m['address']}:{m['port']}")
    out.append(f"    resolver     {', '.join(o['resolvers'])} (every unknown name -> phone-home)")
    out.append(f"    internet     {o['internet']}")
    out.append(f"    phone-home   {o['phone_home']} (log: {info.phone_home_log})")
    site = info.mqtt["site"]
    out.append(
        f"  local broker {site['host']}:{site['port']} in {site['netns']}; "
        f"{len(info.mqtt['clients'])} lab logins (`cell lab status --json`)"
    )
    out.append(f"  try: ip netns exec {info.gateway} nft list ruleset")
    return "\n".join(out)
