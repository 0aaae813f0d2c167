"""`cell enroll|confirm|rollback|drift|audit verify|history|log`: the GitOps side of the CLI.

Handlers return an exit code and raise `CellError`s; `cell.cli.main` prints those (DESIGN.md).
`cell apply` itself lives in `cell.apply_cli`.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

from cell.cli.util import add_json, add_repo, add_state_dir, emit
from cell.errors import UsageError


def _state(args: argparse.Namespace) -> Any:
    from cell.deploy.place import state_for

    return state_for(getattr(args, "state_dir", None), getattr(args, "repo", None))


def cmd_enroll(args: argparse.Namespace) -> int:
    from cell.store import ledger
    from cell.store.journal import read_journal
    from cell.store.statedir import atomic_write
    from policies.signers import parse_signers
    from policies.trust import PGP_KEYS, SSH_SIGNERS, pgp_fingerprints

    state = _state(args)
    ssh = _read(args.signers, "--signers")
    signers, problems = parse_signers(ssh, args.signers)
    if problems:
        from policies.errors import PolicyError

        raise PolicyError(problems)
    pgp = _read(args.pgp_keys, "--pgp-keys") if args.pgp_keys else None
    fprs = pgp_fingerprints(pgp) if pgp else []
    if pgp and not fprs:
        raise UsageError(f"{args.pgp_keys}: no OpenPGP public key in it (gpg --armor --export)")
    atomic_write(state.trust / SSH_SIGNERS, ssh)
    if pgp:
        atomic_write(state.trust / PGP_KEYS, pgp)
    else:
        (state.trust / PGP_KEYS).unlink(missing_ok=True)
    people = sorted({p for s in signers for p in s.principals})
    digest = hashlib.sha256(ssh).hexdigest()
    ledger.append(state, "enroll", principals=people, pgp=fprs, sha256=digest)
    late = read_journal(state).applied is not None
    note = (
        "\nnote: this Cell has applied commits already; from now on trust flows through the "
        "repo's allowed_signers, and the enrolled file would only anchor a first apply"
        if late
        else ""
    )
    doc = {"ok": True, "state": str(state.root), "principals": people, "pgp": fprs}
    emit(
        args,
        doc,
        f"enrolled {len(signers)} SSH keys ({', '.join(people)})"
        + (f" and {len(fprs)} OpenPGP keys" if fprs else "")
        + f" in {state.trust}{note}",
    )
    return 0


def _read(path: str, flag: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot read it ({e.strerror})") from None


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
    from cell.deploy.place import target_of
    from cell.drift.compare import compare_all
    from cell.drift.report import format_report, record
    from cell.drift.watch import watch
    from cell.gitops import lifecycle
    from cell.store.journal import read_journal

    state = _state(args)
    if args.watch:
        return watch(state, repo=args.repo, as_json=args.json, interval=args.interval)
    notes = lifecycle.settle(state)
    journal = read_journal(state)
    if journal.applied is None:
        raise UsageError(f"{state.root}: nothing was applied with `cell apply` yet (no journal)")
    target = target_of(journal.applied)
    report = compare_all(state, journal.applied, journal.pending, target, args.repo)
    record(state, report.findings, "check")
    reconciled = None
    live = [f for f in report.findings if f.kind != "repo"]
    if live and (args.reconcile or journal.applied.drift_mode == "reconcile"):
        out = lifecycle.reconcile(state)
        reconciled = out.entry.commit
        after = compare_all(state, out.entry, None, target, args.repo)
        record(state, after.findings, "reconcile")
    doc = {**report.to_json(), "notes": notes, "reconciled": reconciled}
    text = format_report(report)
    if reconciled:
        text += f"\nreconciled: re-applied {reconciled[:12]} (drift.mode or --reconcile)"
    emit(args, doc, "\n".join([*notes, text]))
    return 0 if report.in_sync else 3


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from cell.store.ledger import verify

    state = _state(args)
    count, problems = verify(state)
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
    add_repo(sp)
    add_state_dir(sp)
    add_json(sp)
    sp.set_defaults(handler=cmd_audit_verify)
    sp = command("history", cmd_history, "the commit that was applied at an instant")
    sp.add_argument("--at", required=True, help="ISO 8601 time, UTC unless it has an offset")
    sp.add_argument("--render", help="re-render that commit into DIR and check its digests")
    sp = command("log", cmd_log, "applies and rollbacks: who signed, when, what changed")
    sp.add_argument("-n", type=int, default=50, help="at most N entries (default 50)")
