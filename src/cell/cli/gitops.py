"""`cell enroll|confirm|rollback|drift|audit verify|history|log`: the GitOps side of the CLI.

Handlers return an exit code and raise `CellError`s; `cell.cli.main` prints those (DESIGN.md).
`cell apply` itself lives in `cell.cli.apply`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cell.cli.util import add_json, add_repo, add_state_dir, emit, read_operator_file
from cell.errors import UsageError


def _state(args: argparse.Namespace) -> Any:
    from cell.deploy.place import state_for

    return state_for(getattr(args, "state_dir", None), getattr(args, "repo", None))


def cmd_enroll(args: argparse.Namespace) -> int:
    from cell.deploy.place import site_of
    from cell.gitops.enroll import enroll

    state = _state(args)
    ssh = read_operator_file(args.signers, "--signers")
    pgp = read_operator_file(args.pgp_keys, "--pgp-keys") if args.pgp_keys else None
    site = (site_of(args.repo) if args.repo else None) or "cell"
    done = enroll(state, ssh, args.signers, pgp, args.pgp_keys or "", site=site, reset=args.reset)
    note = (
        "\nnote: this Cell has applied commits already; from now on trust flows through the "
        "repo's allowed_signers, and the enrolled file would only anchor a first apply"
        if done.late
        else ""
    )
    doc = {
        "ok": True,
        "state": str(state.root),
        "principals": done.principals,
        "pgp": done.pgp,
        "evidence_key": done.evidence_key,
        "reset": done.reset,
    }
    emit(
        args,
        doc,
        f"enrolled {done.keys} SSH keys ({', '.join(done.principals)})"
        + (f" and {len(done.pgp)} OpenPGP keys" if done.pgp else "")
        + f" in {state.trust}{note}\nevidence key: {done.evidence_key}",
    )
    return 0


def cmd_confirm(args: argparse.Namespace) -> int:
    from cell.gitops.lifecycle import confirm

    doc = confirm(_state(args))
    emit(args, {"ok": True, **doc}, f"confirmed {doc['commit'][:12]}: it stays applied")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from cell.gitops.lifecycle import rollback

    out = rollback(_state(args))
    e, prev = out.entry, out.previous
    doc = {
        "ok": True,
        "commit": e.commit,
        "from": prev.commit if prev else None,
        "changed": out.changes.changed,
        "notes": out.notes,
    }
    emit(
        args,
        doc,
        "\n".join(
            [
                *out.notes,
                f"rolled back from {prev.commit[:12] if prev else '?'} "
                f'to {e.commit[:12]} "{e.subject}"',
            ]
        ),
    )
    return 0


def cmd_drift(args: argparse.Namespace) -> int:
    from cell.drift.report import format_report
    from cell.gitops.driftcheck import check_once
    from cell.gitops.watch import watch

    state = _state(args)
    if args.watch:
        return watch(state, repo=args.repo, as_json=args.json, interval=args.interval)
    done = check_once(state, args.repo, reconcile=args.reconcile)
    report = done.report
    doc = {**report.doc().to_doc(), "notes": done.notes, "reconciled": done.reconciled}
    text = format_report(report)
    if done.reconciled:
        text += f"\nreconciled: re-applied {done.reconciled[:12]} (drift.mode or --reconcile)"
    emit(args, doc, "\n".join([*done.notes, text]))
    return 0 if report.in_sync else 3


def _anchor(text: str) -> tuple[int, str]:
    seq, sep, digest = text.partition(":")
    if not sep or not seq.isdigit() or len(digest) != 64:
        raise UsageError(f"--anchor {text!r}: expected SEQ:HASH (a ledger head, e.g. 41:9f2c...)")
    return int(seq), digest.lower()


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from cell.store.ledger import verify

    state = _state(args)
    count, problems = verify(state, tuple(_anchor(a) for a in args.anchor or ()))
    doc = {
        "ok": not problems,
        "ledger": str(state.ledger),
        "entries": count,
        "problems": [str(p) for p in problems],
    }
    text = (
        f"{state.ledger}: {count} entries, chain intact"
        if not problems
        else f"{state.ledger}: TAMPERED\n" + "\n".join(f"  {p}" for p in problems)
    )
    emit(args, doc, text)
    return 0 if not problems else 3


def cmd_audit_ack(args: argparse.Namespace) -> int:
    from cell.store.ledger import ack

    entry = ack(_state(args), args.seq, args.note)
    emit(args, {"ok": True, **entry}, f"acknowledged the repair at seq {args.seq}")
    return 0


def cmd_audit_head(args: argparse.Namespace) -> int:
    from cell.store.ledger import read_head

    state = _state(args)
    head = read_head(state)
    if head is None:
        raise UsageError(f"{state.ledger_head}: no ledger head (nothing recorded yet)")
    emit(args, head, f"{head['seq']}:{head['hash']}" + ("  (signed)" if "sig" in head else ""))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from cell.store.history import applied_at, parse_at, render_at

    state = _state(args)
    entry = applied_at(state, parse_at(args.at))
    sig = entry.get("signature") or {}
    lines = [
        f'at {args.at}: commit {entry["commit"]} "{entry.get("subject", "")}"',
        f"  applied {entry['time']} ({entry['kind']}), signed by "
        f"{sig.get('signer') or sig.get('key')} ({sig.get('format')}, {sig.get('status')})",
        *(f"  {d[:12]}  {n}" for n, d in sorted(entry.get("digests", {}).items())),
    ]
    doc: dict[str, Any] = {"at": args.at, **entry}
    code = 0
    if args.render:
        r = render_at(entry, Path(args.render), args.repo, state)
        doc["render"] = r
        code = 0 if not r["differ"] else 3
        lines.append(
            f"re-rendered from {r['source']} into {r['out']}: "
            + ("every digest matches" if not r["differ"] else f"DIFFER: {', '.join(r['differ'])}")
        )
    emit(args, doc, "\n".join(lines))
    return code


def cmd_log(args: argparse.Namespace) -> int:
    from cell.store.history import applies, format_entry

    entries = list(reversed(applies(_state(args))))[: args.n]
    emit(args, entries, "\n".join(format_entry(e) for e in entries) or "nothing applied yet")
    return 0


def add_gitops_commands(sub: Any) -> None:
    def command(name: str, handler: Any, help: str) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
        add_repo(sp)
        add_state_dir(sp)
        add_json(sp)
        sp.set_defaults(handler=handler)
        return sp

    sp = command("enroll", cmd_enroll, "anchor trust: the allowed_signers for the first apply")
    sp.add_argument("--signers", required=True, help="OpenSSH allowed_signers file")
    sp.add_argument("--pgp-keys", help="armored OpenPGP public keys also trusted (optional)")
    sp.add_argument(
        "--reset",
        metavar="REASON",
        help="replace the trust of a Cell that is enrolled already (recorded in the ledger)",
    )
    command("confirm", cmd_confirm, "keep the commit applied with --confirm (before its deadline)")
    command("rollback", cmd_rollback, "go back to the previously applied commit")
    sp = command("drift", cmd_drift, "compare live state with what was applied (exit 3: drift)")
    sp.add_argument("--watch", action="store_true", help="stream drift events until Ctrl-C")
    sp.add_argument("--reconcile", action="store_true", help="re-apply the applied commit on drift")
    sp.add_argument(
        "--interval", type=float, help="seconds between full comparisons (default: drift.interval)"
    )
    audit = sub.add_parser("audit", help="the audit ledger")
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    sp = actions.add_parser("verify", help="check the ledger's hash chain (exit 3: tampered)")
    sp.add_argument(
        "--anchor",
        action="append",
        metavar="SEQ:HASH",
        help="a head kept elsewhere (e.g. at the hub): it must still be in the chain",
    )
    sp.set_defaults(handler=cmd_audit_verify)
    ack = actions.add_parser("ack", help="acknowledge a recorded ledger repair")
    ack.add_argument("seq", type=int, help="the seq of the ledger-repair entry")
    ack.add_argument("--note", default="", help="why it happened (recorded)")
    ack.set_defaults(handler=cmd_audit_ack)
    head = actions.add_parser("head", help="the ledger's head (SEQ:HASH) and its signature")
    head.set_defaults(handler=cmd_audit_head)
    for each in (sp, ack, head):
        add_repo(each)
        add_state_dir(each)
        add_json(each)
    sp = command("history", cmd_history, "the commit that was applied at an instant")
    sp.add_argument("--at", required=True, help="ISO 8601 time, UTC unless it has an offset")
    sp.add_argument("--render", help="re-render that commit into DIR and check its digests")
    sp = command("log", cmd_log, "applies and rollbacks: who signed, when, what changed")
    sp.add_argument("-n", type=int, default=50, help="at most N entries (default 50)")
