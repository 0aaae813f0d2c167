"""`cell status [--json]` and `cell run`: the daemon and what it last said.

`cell status` reads STATE/status.json, which the daemon rewrites atomically on every publish
(the same document as `cell/status` on the bus). A document older than its `fresh_for` is shown
`unknown`: a daemon that stopped publishing is never read as its last verdict. Exit 0 only when
sovereign and fresh, 3 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from cell import paths
from cell.cli.util import add_json, add_repo, add_state_dir, repo

FINDING = 3


def cmd_status(args: argparse.Namespace) -> int:
    from cell.deploy.place import state_for
    from cell.status.checks import CHECK_NAMES
    from cell.status.document import StatusDoc
    from policies.layout import STATUS_JSON

    state = state_for(getattr(args, "state_dir", None), repo(args))
    path = state.root / STATUS_JSON
    try:
        doc = StatusDoc.model_validate_json(path.read_bytes())
    except (OSError, ValueError) as e:
        why = "no status yet" if isinstance(e, FileNotFoundError) else f"unreadable ({e})"
        text = f"{path}: {why}: is the daemon running (`cell run`, systemd unit cell.service)?"
        print(text, file=sys.stderr)
        if args.json:
            print(json.dumps({"ok": False, "exit": FINDING, "error": text}, indent=2))
        return FINDING
    out: dict[str, Any] = doc.to_doc()
    age = time.time() - _epoch(doc.ts)
    stale = age > doc.fresh_for
    if stale:
        # Nothing the document says is confirmed any more. Each reason names its check (the
        # contract), so each check that had not failed says it is unconfirmed, and why.
        why = f"the daemon last published {age:.0f} s ago (fresh for {doc.fresh_for:g} s)"
        failed = {r.split(":", 1)[0] for r in doc.reasons}
        out["verdict"], out["stale"] = "unknown", True
        out["reasons"] = [
            *doc.reasons,
            *(f"{n}: unconfirmed, {why}" for n in CHECK_NAMES if n not in failed),
        ]
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        print(_format(out, CHECK_NAMES))
    return 0 if out["verdict"] == "sovereign" else FINDING


def _epoch(ts: str) -> float:
    from policies.clock import parse_iso

    return parse_iso(ts).timestamp()


def _format(doc: dict[str, Any], names: tuple[str, ...]) -> str:
    mark = {"sovereign": "◆ SOVEREIGN", "at_risk": "✗ AT RISK", "unknown": "? UNKNOWN"}
    commit = (doc.get("commit") or "")[:12] or "(nothing applied)"
    lines = [
        f"{mark[doc['verdict']]}  site {doc['site']}  commit {commit}  at {doc['ts']}",
        *(f"  {r}" for r in doc["reasons"]),
        "",
    ]
    checks = doc.get("checks", {})
    for name in names:
        c = checks.get(name)
        if c is None:
            lines.append(f"  ?  {name:<12} no result yet")
        else:
            lines.append(f"  {'✓' if c['ok'] else '✗'}  {name:<12} {c['detail']}")
    lines.append(f"\n  DNS blocked today: {doc.get('dns_blocked_today', 0)}")
    services = doc.get("services", {})
    if services:
        down = {n: s for n, s in services.items() if s != "running"}
        restarts = {n: r for n, r in doc.get("restarts", {}).items() if r}
        lines.append(
            "  services: "
            + (", ".join(f"{n} {s}" for n, s in sorted(down.items())) if down else "all running")
            + (f" (restarts: {restarts})" if restarts else "")
        )
    ledger = doc.get("ledger")
    if ledger:
        lines.append(f"  ledger head: {ledger['seq']}:{ledger['hash'][:16]}")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    from cell.deploy.place import state_for
    from cell.run.daemon import Options, run_daemon

    if args.netns:
        from firewall import netns

        netns.enter(args.netns)  # before any thread: every thread is born in it
    state = state_for(getattr(args, "state_dir", None), repo(args))
    opts = Options(str(state.root), repo(args), args.netns, paths.metrics(args.metrics))
    return run_daemon(opts)


def add_status_commands(sub: Any) -> None:
    sp = sub.add_parser("status", help="the Cell's status document (exit 0 sovereign, 3 otherwise)")
    add_repo(sp)
    add_json(sp)
    add_state_dir(sp)
    sp.set_defaults(handler=cmd_status)
    sp = sub.add_parser(
        "run",
        help="the daemon: supervise every watcher, keep the verdict, publish the status bus",
        description="Run in the foreground (systemd Type=notify) until SIGTERM.",
    )
    add_repo(sp)
    add_state_dir(sp)
    sp.add_argument("--netns", help="run inside this network namespace (the gateway's)")
    sp.add_argument("--metrics", help=paths.METRICS_HELP)
    sp.set_defaults(handler=cmd_run)
