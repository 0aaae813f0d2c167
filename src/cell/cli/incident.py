"""`cell incident --since T [--until T] --out DIR`, `cell incident verify PACK`, `cell evidence-key`.

Handlers parse and format; the search and the pack are in `cell.incident`. Where: `--state-dir`
/ $CELL_STATE_DIR, else the lab's gateway when a lab of the repo's site is up, else /var/lib/cell.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cell.cli.util import add_json, add_repo, add_state_dir, emit, load, repo
from cell.errors import UsageError

FOUND = 3


def cmd_incident(args: argparse.Namespace) -> int:
    if args.what == "verify":
        return _verify(args)
    if args.pack:
        raise UsageError(f"cell incident: unexpected argument {args.pack!r} (did you mean verify?)")
    if not args.since or not args.out:
        raise UsageError("cell incident: --since TIME and --out DIR are required")
    from cell.incident.pack import check_out
    from cell.incident.search import write_incident
    from cell.incident.sources import locate
    from cell.timeparse import parse_time
    from cell.verify.site import site_zone

    policy = load(args)
    now = datetime.now(UTC)
    tz = site_zone(policy)
    since = parse_time(args.since, now=now, tz=tz, what="--since")
    until = parse_time(args.until, now=now, tz=tz, what="--until")
    out = Path(args.out).absolute()
    check_out(out)
    src = locate(policy, repo(args), args.state_dir, since, until)
    done = write_incident(src, out, Path(args.tar) if args.tar else None)
    recipients = policy.site.evidence.recipients
    report = (out / "report.md").read_text() if not done.encrypted else ""
    doc: dict[str, Any] = {
        "ok": done.findings == 0,
        "out": str(out),
        "id": done.id,
        "digest": done.digest,
        "encrypted": done.encrypted,
        "findings": done.findings,
    }
    if not done.encrypted:
        import json

        doc["report"] = json.loads((out / "report.json").read_bytes())
    where = (
        f"evidence pack {out} (id {done.id}), encrypted with age to {len(recipients)} "
        "recipients: only they can read it"
        if done.encrypted
        else f"evidence pack {out} (id {done.id})"
    )
    text = (
        f"{report}\n{where}\nSHA256SUMS sha256 {done.digest}, signed by the Cell's evidence key\n"
        f"check it: cell incident verify {out}   (or the commands in {out}/VERIFY.txt)"
    )
    if done.encrypted:
        text = f"{done.findings} findings in {src.window}\n" + text.lstrip("\n")
    emit(args, doc, text.lstrip("\n"))
    return FOUND if done.findings else 0


def _verify(args: argparse.Namespace) -> int:
    from cell.incident.check import verify_pack

    if not args.pack:
        raise UsageError("cell incident verify PACK: name the pack folder (or its tar)")
    signers = Path(args.signers) if args.signers else None
    identity = Path(args.identity) if args.identity else None
    for flag, p in (("--signers", signers), ("--identity", identity)):
        if p is not None and not p.is_file():
            raise UsageError(f"{flag} {p}: no such file")
    problems = verify_pack(Path(args.pack), signers=signers, identity=identity)
    pinned = "the pinned key" if signers else "the pack's own allowed_signers (pin it: --signers)"
    doc = {"ok": not problems, "pack": args.pack, "problems": problems, "key": pinned}
    text = (
        f"{args.pack}: every file matches SHA256SUMS and its signature is good ({pinned})"
        if not problems
        else f"{args.pack}: {len(problems)} problems\n" + "\n".join(f"  ✗ {p}" for p in problems)
    )
    emit(args, doc, text)
    return 0 if not problems else FOUND


def cmd_evidence_key(args: argparse.Namespace) -> int:
    from cell.deploy.place import state_for
    from cell.store import evidencekey

    state = state_for(args.state_dir, repo(args))
    line = evidencekey.public_line(state)
    emit(args, {"allowed_signers": line, "state": str(state.root)}, line)
    return 0


def add_incident_commands(sub: Any) -> None:
    sp = sub.add_parser(
        "incident",
        help="the four-step incident search over a window, and its signed evidence pack",
        description="`cell incident --since T [--until T] --out DIR` searches the window "
        "(bridge, gitops, health, egress; DNS phone-homes and drift) and writes a signed "
        "evidence pack to DIR: exit 0 nothing found, 3 something found, 2 bad input. "
        "`cell incident verify PACK` checks a pack. TIME: ISO 8601 (the site's zone unless it "
        "says otherwise) or relative (-24h, -30m, now).",
    )
    sp.add_argument("what", nargs="?", choices=["verify"], help="check a pack instead")
    sp.add_argument("pack", nargs="?", help="(verify) the pack folder or its tar")
    sp.add_argument("--since", help="start of the window (inclusive)")
    sp.add_argument("--until", default="now", help="end of the window (exclusive; default: now)")
    sp.add_argument("--out", help="the folder to write the pack to (must not exist)")
    sp.add_argument("--tar", help="also write the pack's deterministic tar to this file")
    sp.add_argument("--signers", help="(verify) the pinned allowed_signers line of the Cell")
    sp.add_argument("--identity", help="(verify) an age identity: decrypt and check inside")
    add_repo(sp)
    add_state_dir(sp)
    add_json(sp)
    sp.set_defaults(handler=cmd_incident)
    key = sub.add_parser(
        "evidence-key",
        help="the Cell's evidence key as an allowed_signers line (pin it to check its packs)",
    )
    add_repo(key)
    add_state_dir(key)
    add_json(key)
    key.set_defaults(handler=cmd_evidence_key)
