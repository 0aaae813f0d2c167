"""Drift: every difference between the live system and what the journal says is applied.

Five comparisons, each usable alone (the watcher runs the one its event concerns):
- nftables: the live `table inet cell` against the applied ruleset, as canonical objects (a plain
  comparison); the diff is printed in nft syntax, one line per rule, set element, chain, counter;
- files: every installed artifact against the stored bytes that were applied;
- processes: dnsmasq (sinkhole, resolver) and mosquitto running, with the applied command line;
- paths: the gateway's links, routes, rules, tc and sysctls against the applied links/links.json
  (`paths`: every way around the firewall);
- repo: HEAD is the applied commit, and every commit after it would pass the trust gate.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from cell.deploy.services import service_argv, service_pids, service_strays
from cell.deploy.target import Target
from cell.drift.bypass import check_extra_files, check_hub_sets, check_other_tables
from cell.drift.expected import Expected as Expected  # noqa: PLC0414 (re-exported)
from cell.drift.finding import Finding as Finding  # noqa: PLC0414 (re-exported for report, watch)
from cell.drift.finding import mtime
from cell.drift.paths import check_paths
from cell.store.journal import Entry
from cell.store.statedir import State
from firewall.diff import diff_lines, handles_of, printable
from firewall.document import canonical
from firewall.nft import NftBackend
from policies import gitmirror, gitrepo
from policies.record import Record
from policies.trust import TrustRefused, check_range

MAX_DIFF = 80
"""Lines of diff kept per finding: enough to read, bounded for the ledger."""
_SERVICE = {
    "sinkhole": "dnsmasq (sinkhole)",
    "resolver": "dnsmasq (resolver)",
    "broker": "mosquitto",
}


class TableState(Record):
    """Which commit the live table is, wholly (one kernel transaction), if any."""

    state: str = Field(
        description="applied, pending (an interrupted apply's commit), other, absent."
    )
    commit: str | None = Field(description="The commit whose table is live, if it is one of ours.")

    def __init__(self, state: str, commit: str | None) -> None:
        fields: dict[str, Any] = {"state": state, "commit": commit}
        super().__init__(**fields)


class EntryBrief(Record):
    """A journal entry as `cell drift --json` names it."""

    commit: str = Field(description="The commit (full SHA).")
    subject: str = Field(description="Its subject line.")
    signer: str = Field(description="Who signed it.")
    time: str = Field(description="When it was applied (UTC).")
    via: str = Field(description="apply, rollback, reconcile, recovered.")

    @classmethod
    def of(cls, entry: Entry | None) -> EntryBrief | None:
        if entry is None:
            return None
        return cls(
            commit=entry.commit,
            subject=entry.subject,
            signer=entry.signer,
            time=entry.time,
            via=entry.via,
        )


class DriftDoc(Record):
    """What `cell drift --json` prints (and the daemon's drift check carries)."""

    in_sync: bool = Field(description="Live equals applied: no finding.")
    applied: EntryBrief | None = Field(description="The commit the journal says is applied.")
    pending: EntryBrief | None = Field(description="An interrupted apply's commit, if any.")
    table: TableState | None = Field(description="Which commit the live table is.")
    findings: list[dict[str, Any]] = Field(description="Every difference (see `Finding`).")


def check_table(
    exp: Expected, target: Target, pending: Expected | None = None
) -> tuple[TableState, Finding | None]:
    live = target.nft.list_table()
    state, finding = _compare_table(exp, target, pending, live)
    if finding is None and state.state == "applied":
        extra = check_hub_sets(exp, live, target)
        if extra:
            return state, extra[0]
    return state, finding


def _compare_table(
    exp: Expected, target: Target, pending: Expected | None, live: list[dict[str, Any]] | None
) -> tuple[TableState, Finding | None]:
    canon = canonical(live)
    c12 = exp.entry.commit[:12]
    if canon == exp.canonical:
        return TableState("applied", exp.entry.commit), None
    if pending is not None and canon == pending.canonical:
        state = TableState("pending", pending.entry.commit)
        what = (
            f"table inet cell is wholly the interrupted apply's commit "
            f"{pending.entry.commit[:12]}, not the applied {c12}"
        )
    elif live is None:
        return TableState("absent", None), Finding("nftables", "table inet cell was deleted")
    else:
        state = TableState("other", None)
        what = f"table inet cell differs from the applied commit {c12}"
    diff = table_diff(exp.objects, live or [], target.nft, f"applied {c12}")
    changes = sum(1 for ln in diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---"))
    return state, Finding("nftables", f"{what} ({changes} lines differ)", diff)


def table_diff(
    expected: list[dict[str, Any]], live: list[dict[str, Any]], nft: NftBackend, label: str
) -> str:
    """A unified diff, in nft syntax, from the applied table to the live one (`firewall.diff`)."""
    fallback: dict[int, str] = {}
    if not printable(live):
        # A rule our printer cannot write (hand-made syntax): nft itself prints it, by handle.
        fallback = handles_of(nft.list_text() or "")
    out = diff_lines(expected, live, expected_label=label, fallback=fallback)
    if len(out) > MAX_DIFF:
        out = [*out[:MAX_DIFF], f"... {len(out) - MAX_DIFF} more lines"]
    return "\n".join(out)


def check_files(exp: Expected, target: Target) -> list[Finding]:
    out = check_extra_files(exp, target)
    c12 = exp.entry.commit[:12]
    for name, want in sorted(exp.files.items()):
        path = target.config / name
        try:
            have = path.read_bytes()
            since = mtime(path)
        except OSError:
            out.append(Finding("file", f"{path} is missing (applied commit {c12} installed it)"))
            continue
        if have != want:
            diff = difflib.unified_diff(
                want.decode(errors="replace").splitlines(),
                have.decode(errors="replace").splitlines(),
                f"applied {c12}: {name}",
                f"live: {path}",
                n=1,
                lineterm="",
            )
            shown = "\n".join(list(diff)[:MAX_DIFF])
            what = f"{path} differs from the applied commit {c12}"
            out.append(Finding("file", what, shown, since=since))
    return out


def check_processes(target: Target) -> list[Finding]:
    out = []
    argv = service_argv(target)
    strays = service_strays(target)
    for service, pid in service_pids(target).items():
        name = _SERVICE[service]
        if strays[service]:
            pids = ", ".join(map(str, strays[service]))
            out.append(
                Finding(
                    "process",
                    f"{name} runs as pid {pids}, which Cell did not record "
                    "(left by an interrupted apply?)",
                )
            )
        if pid is None:
            if not strays[service]:
                out.append(Finding("process", f"{name} is not running"))
            continue
        try:
            have = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        except OSError:
            continue
        running = [a.decode(errors="replace") for a in have]
        if running != argv[service]:
            what = f"{name} (pid {pid}) runs {' '.join(running)!r}, not the applied"
            out.append(Finding("process", f"{what} {' '.join(argv[service])!r}"))
    return out


def check_repo(state: State, repo: str | Path, entry: Entry) -> list[Finding]:
    """The clone's HEAD (fast-forwarded to the upstream last fetched), read through the Cell's
    mirror: not the applied commit, or a commit after it that the trust gate would refuse."""
    mirror = state.mirror
    try:
        with state.lock("mirror"):
            head = gitmirror.sync(mirror, repo, pull=False).head
    except (gitrepo.GitError, TrustRefused) as e:
        return [Finding("repo", f"the site-config repo is unreadable: {e}")]
    if head == entry.commit:
        return []
    said = gitrepo.subject(mirror, head)[:60]
    out = [
        Finding("repo", f'repo HEAD is {head[:12]} "{said}", not the applied {entry.commit[:12]}')
    ]
    try:
        verdicts = check_range(mirror, entry.commit, head, None)
    except TrustRefused as e:
        return [*out, Finding("repo", str(e).removeprefix("refused: "))]
    for v in verdicts:
        if not v.ok:
            label = "unsigned" if v.reason == "unsigned" else f"untrusted ({v.reason})"
            out.append(Finding("repo", f"local {label} commit {v.commit[:12]}", v.explain()))
    return out


def compare_entry(
    state: State, entry: Entry, target: Target, pending: Entry | None = None
) -> list[Finding]:
    """Live versus one entry: table, files, processes (not the repo)."""
    exp = Expected(state, entry)
    _, table = check_table(exp, target, Expected(state, pending) if pending else None)
    findings = [f for f in (table,) if f] + check_other_tables(target)
    findings += check_paths(exp.files, target)
    return findings + check_files(exp, target) + check_processes(target)


@dataclass
class Report:
    """One full comparison: what is applied, what the table is, and every finding."""

    applied: Entry | None
    pending: Entry | None
    table: TableState | None
    findings: list[Finding]

    @property
    def in_sync(self) -> bool:
        return self.applied is not None and not self.findings

    def doc(self) -> DriftDoc:
        return DriftDoc(
            in_sync=self.in_sync,
            applied=EntryBrief.of(self.applied),
            pending=EntryBrief.of(self.pending),
            table=self.table,
            findings=[f.to_doc() for f in self.findings],
        )


def check_nftables(
    exp: Expected, target: Target, pending: Expected | None = None
) -> tuple[TableState, list[Finding]]:
    """Everything nftables: Cell's table against the applied ruleset, and any other table or
    base chain that could let through what Cell drops. One-shot drift and the watcher both run
    this, so they never check different things."""
    table, finding = check_table(exp, target, pending)
    return table, [*([finding] if finding else []), *check_other_tables(target)]


def compare_all(
    state: State, applied: Entry, pending: Entry | None, target: Target, repo: str | Path | None
) -> Report:
    """Everything, once: `cell drift`, and the watcher's periodic safety net."""
    exp = Expected(state, applied)
    table, findings = check_nftables(exp, target, Expected(state, pending) if pending else None)
    findings += check_paths(exp.files, target)
    findings += check_files(exp, target) + check_processes(target)
    findings += check_repo(state, repo or applied.repo, applied)
    return Report(applied, pending, table, findings)
