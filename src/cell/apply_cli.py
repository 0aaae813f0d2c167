"""`cell apply`: render, check and apply the policy to a gateway (a lab's, or this host)."""

from __future__ import annotations

import argparse
from typing import Any

from cell.cliutil import add_json, add_repo, add_state_dir, emit, load, state_dir


def cmd_apply(args: argparse.Namespace) -> int:
    from cell.apply import Target, apply_policy, lab_target
    from cell.lab import lab_status
    from policies.layout import Layout

    policy = load(args)
    lab = lab_status(policy.site.site.id)
    if lab is not None and args.netns in (None, lab.gateway):
        target = lab_target(lab)
    else:
        target = Target(netns=args.netns, layout=Layout(state_dir=state_dir(args)))
    report = apply_policy(policy, target)
    doc = {
        "ok": True,
        "netns": target.netns,
        "changed": report.changed,
        "broker": report.broker,
        "dnsmasq": report.dnsmasq,
    }
    text = (
        f"applied site {policy.site.site.id} to {target.netns or 'this host'}: "
        f"{len(report.changed)} files changed; broker {report.broker}; dnsmasq {report.dnsmasq}"
    )
    emit(args, doc, text)
    return 0


def add_apply_commands(sub: Any) -> None:
    sp = sub.add_parser(
        "apply", help="render, check and apply the policy to a gateway (lab or this host)"
    )
    add_repo(sp)
    add_json(sp)
    add_state_dir(sp)
    sp.add_argument(
        "--netns",
        help="the gateway's network namespace (default: the lab's, if up; else this host)",
    )
    sp.set_defaults(handler=cmd_apply)
