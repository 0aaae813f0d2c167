"""`cell apply`: the GitOps lifecycle, from the repo's HEAD to the live gateway (a lab's, or this
host). Exit 0 applied, 2 refused (trust gate, invalid policy, a pending confirm), 1 failed with the
live system as it was."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cell.cli.util import add_json, add_repo, add_state_dir, emit, repo


def cmd_apply(args: argparse.Namespace) -> int:
    from cell.deploy.place import state_for, target_for
    from cell.gitops.confirm import parse_duration
    from cell.gitops.lifecycle import apply_head

    source = Path(repo(args))
    state = state_for(args.state_dir, source)
    target = target_for(source, args.netns, state)
    seconds = parse_duration(args.confirm) if args.confirm else None
    out = apply_head(state, source, target, confirm_s=seconds)  # refusals: cli.main prints them
    entry, r = out.entry, out.report
    doc = {
        "ok": True,
        "commit": entry.commit,
        "subject": entry.subject,
        "signature": entry.signature,
        "netns": target.netns,
        "state": str(state.root),
        "checked": [v.to_doc() for v in out.verdicts],
        "previous": out.previous.commit if out.previous else None,
        "changed": out.changes.changed,
        "rules": out.changes.rules.model_dump(),
        "broker": r.broker,
        "dnsmasq": r.dnsmasq,
        "confirm": out.confirm,
        "notes": out.notes,
    }
    sig = entry.signature
    rules = out.changes.rules
    lines = [
        *out.notes,
        f'applied {entry.commit[:12]} "{entry.subject}" to {target.netns or "this host"}',
        f"  signed by {sig.get('signer') or sig.get('key')} ({sig.get('format')} key "
        f"{sig.get('key')}); commits checked by the trust gate: {len(out.verdicts)}",
        f"  changed: {', '.join(out.changes.changed) or 'nothing'}; rules "
        f"+{len(rules.added)} -{len(rules.removed)}",
        f"  broker {r.broker}; dnsmasq {r.dnsmasq}",
    ]
    if out.confirm:
        lines.append(
            f"  run `cell confirm` before {out.confirm['deadline']}, or the Cell rolls back to "
            f"{out.confirm['fallback'][:12]} by itself"
        )
    emit(args, doc, "\n".join(lines))
    return 0


def add_apply_commands(sub: Any) -> None:
    sp = sub.add_parser(
        "apply",
        help="trust gate, render, check, apply atomically, journal (lab or this host)",
        description="Apply the repo's HEAD: pull (if a remote is configured), check that every "
        "commit since the applied one is signed by a trusted key, render, check every artifact, "
        "apply, read back, journal. Exit 0 applied, 2 refused, 1 failed (nothing changed).",
    )
    add_repo(sp)
    add_json(sp)
    add_state_dir(sp)
    sp.add_argument(
        "--netns",
        help="the gateway's network namespace (default: the lab's, if up; else this host)",
    )
    sp.add_argument(
        "--confirm",
        metavar="DURATION",
        help="roll back by itself unless `cell confirm` comes within DURATION (e.g. 5m)",
    )
    sp.set_defaults(handler=cmd_apply)
