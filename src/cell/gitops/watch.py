"""`cell drift --watch`: drift as it happens. Events first, a full pass behind; one selector:
- the nftables netlink monitor (`firewall.monitor`, in the gateway's namespace): a transaction touching
  `table inet cell` -> compare the table; the kernel names the process that committed it;
- inotify on the installed config directories -> compare the files;
- inotify on the services' pid files, and a pidfd per running service -> compare the processes;
- inotify on the repo's HEAD, packed-refs, logs/HEAD and every directory under refs/heads (new
  ones as they appear: `git checkout -b ops/fix` makes one) -> compare the repo (HEAD, untrusted
  local commits);
- rtnetlink (links, addresses, routes, rules, tc) in the gateway's namespace, and a 0.2 s poll of
  the router's sysctls (`watchpaths`) -> compare the paths around the firewall;
- inotify on the journal -> someone applied: reload what is expected, compare everything;
- timers: the full comparison every `drift.interval` (the safety net) and the confirm deadline.
An event is printed when a kind's findings change (new drift, or back in sync), then recorded in
the ledger. While an apply holds the lock, comparisons wait: an apply in progress is not drift.
With `drift.mode: reconcile` the watcher re-applies the applied commit, and says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cell import procfs
from cell.deploy.place import target_of
from cell.drift.compare import (
    Expected,
    Finding,
    check_files,
    check_nftables,
    check_processes,
    check_repo,
)
from cell.drift.paths import check_paths
from cell.drift.report import format_event, record, transaction_event, transaction_finding
from cell.gitops import confirm as confirmation
from cell.gitops import inotify, lifecycle
from cell.gitops.inotify import Inotify
from cell.gitops.watchpaths import PathsSource
from cell.store import ledger
from cell.store.journal import read_journal
from cell.store.statedir import State
from firewall.monitor import Change, NftMonitor
from policies import gitrepo
from policies.clock import iso, now_iso
from policies.errors import CellError
from policies.layout import JOURNAL, RUN_PID_SUFFIX

KINDS = ("nftables", "file", "process", "paths", "repo")
ISDIR = 0x40000000
"""IN_ISDIR: the event's subject is a directory."""
SETTLE = {"nftables": 0.0, "file": 0.005, "process": 0.02, "paths": 0.01, "repo": 0.02}
"""Seconds to let a burst of events finish before comparing (an editor's save, a git commit)."""


class WatchError(CellError):
    """The watcher cannot start (the gateway's namespace is gone, no netlink access)."""

    exit_code = 1


def watch(state: State, *, repo: str | None, as_json: bool, interval: float | None) -> int:
    def out(event: dict[str, Any]) -> None:
        text = json.dumps(event, ensure_ascii=False) if as_json else format_event(event)
        print(text, flush=True)

    watcher = Watcher(state, repo, out, interval)
    try:
        watcher.run()
    except KeyboardInterrupt:
        pass
    finally:
        watcher.close()
    return 0


class Watcher:
    def __init__(
        self,
        state: State,
        repo: str | None,
        out: Callable[[dict[str, Any]], None],
        interval: float | None = None,
    ) -> None:
        self.state, self.repo_flag, self.out, self.interval_flag = state, repo, out, interval
        self.sel = selectors.DefaultSelector()
        self.notify: Inotify | None = None
        self.nft: NftMonitor | None = None
        self.paths: PathsSource | None = None
        self.pidfds: dict[int, int] = {}
        self.last: dict[str, dict[str, Finding]] = {k: {} for k in KINDS}
        self.due: dict[str, float] = {}
        self.cause: dict[str, str] = {}
        self.by: dict[str, Any] | None = None
        self.paths_by: dict[str, Any] | None = None
        self.since: float | None = None
        self.settle_after = 0.0
        self.reload()

    # --- setup ------------------------------------------------------------------------------

    def reload(self) -> None:
        journal = read_journal(self.state)
        if journal.applied is None:
            raise lifecycle.NothingToDo(
                f"{self.state.root}: nothing was applied with `cell apply` yet (no journal)"
            )
        self.entry, self.pending = journal.applied, journal.pending
        self.exp = Expected(self.state, self.entry)
        self.pexp = Expected(self.state, self.pending) if self.pending else None
        self.target = target_of(self.entry)
        self.repo = self.repo_flag or self.entry.repo
        self.interval = self.interval_flag or float(self.entry.drift_interval)
        if self.nft is None:
            try:
                self.nft = NftMonitor(self.target.netns)
            except OSError as e:
                where = self.target.netns or "this host"
                raise WatchError(f"cannot watch nftables in {where}: {e}") from None
            self.sel.register(self.nft, selectors.EVENT_READ, "nft")
        if self.paths is None:
            try:
                self.paths = PathsSource(self.target.netns)
            except OSError as e:
                raise WatchError(f"cannot watch the links of {self.target.netns}: {e}") from None
            self.sel.register(self.paths.monitor, selectors.EVENT_READ, "rt")
        self.paths.expect(self.exp)
        self._watch_dirs()
        self._watch_pids()

    def _watch_dirs(self) -> None:
        if self.notify is not None:
            self.sel.unregister(self.notify)
            self.notify.close()
        self.notify = Inotify()
        self.roles: dict[Path, set[str]] = {}
        config = self.target.config
        for d in {config, *(config / Path(n).parent for n in self.exp.files)}:
            self._add(d, "config")
        for sub in ("dnsmasq", "mosquitto"):
            self._add(self.target.state / sub, "pids")
        self._add(self.state.root, "state")
        with contextlib.suppress(CellError):
            git = gitrepo.git_dir(self.repo)
            self._add(git, "git")
            self._add(git / "logs", "logs")
            self._watch_refs(git / "refs" / "heads")
        self.sel.register(self.notify, selectors.EVENT_READ, "inotify")

    def _watch_refs(self, top: Path) -> None:
        """`top` and every directory below it (a branch `ops/fix` lives in refs/heads/ops/)."""
        for d in [top, *top.rglob("*")]:
            if d.is_dir() and "refs" not in self.roles.get(d, set()):
                self._add(d, "refs")

    def _add(self, path: Path, role: str) -> None:
        assert self.notify is not None
        if self.notify.add(path):
            self.roles.setdefault(path, set()).add(role)

    def _watch_pids(self) -> None:
        for fd in list(self.pidfds):
            self.sel.unregister(fd)
            os.close(fd)
        self.pidfds = {}
        from cell.deploy.services import service_pids

        for pid in service_pids(self.target).values():
            if pid is None:
                continue
            with contextlib.suppress(OSError):
                fd = os.pidfd_open(pid)
                self.pidfds[fd] = pid
                self.sel.register(fd, selectors.EVENT_READ, "pidfd")

    def close(self) -> None:
        for thing in (self.notify, self.nft, self.paths):
            if thing is not None:
                thing.close()
        for fd in self.pidfds:
            os.close(fd)
        self.sel.close()

    # --- the loop ---------------------------------------------------------------------------

    def run(self, stop: Any = None, beat: Callable[[], None] | None = None) -> None:
        """Watch until `stop` (a `threading.Event`; None: forever) is set, calling `beat` at
        least once a second (the daemon's heartbeat)."""
        self.check(KINDS, "start", force=True)
        next_full = time.monotonic() + self.interval
        while stop is None or not stop.is_set():
            if beat is not None:
                beat()
            now = time.monotonic()
            deadline = self._confirm_in()
            poll = self.paths.next_poll if self.paths else next_full
            wake = min([next_full, poll, *self.due.values(), now + deadline])
            if stop is not None:
                wake = min(wake, now + 1.0)
            for key, _ in self.sel.select(max(0.0, wake - now)):
                self._dispatch(key.data, key.fileobj)
            now = time.monotonic()
            changed = self.paths.poll(now) if self.paths else None
            if changed:
                self._due("paths", now, changed)
            if deadline <= 0 and now >= self.settle_after:
                self._settle()
            if now >= next_full:
                next_full = now + self.interval
                self._settle()
                self.guarded(KINDS, "periodic")
            ready = [k for k, t in self.due.items() if t <= now]
            if ready:
                if self.state.busy():
                    for k in ready:
                        self.due[k] = now + 0.05
                    continue
                for k in ready:
                    self.due.pop(k)
                self.guarded(ready, self.cause.pop(ready[0], "event"))

    def _dispatch(self, what: str, fileobj: Any) -> None:
        now = time.monotonic()
        if what == "nft":
            assert self.nft is not None
            for change in self.nft.read():
                if not self._ours(change):
                    self._transaction(change)
                self.by = change.by() or self.by
                what = ", ".join(change.what[:3])
                more = f" and {len(change.what) - 3} more" if len(change.what) > 3 else ""
                self._due("nftables", now, f"netlink: {what}{more}", change.at)
        elif what == "rt":
            assert self.paths is not None
            told = self.paths.events()
            if told is not None:
                cause, self.paths_by, at = told
                self._due("paths", now, cause, at)
        elif what == "pidfd":
            self.sel.unregister(fileobj)
            os.close(fileobj)
            self.pidfds.pop(fileobj, None)
            self._due("process", now, "a service exited")
        elif what == "inotify":
            assert self.notify is not None
            for ev in self.notify.read():
                self._inotify(ev, now)

    def _inotify(self, ev: inotify.Event, now: float) -> None:
        roles = self.roles.get(ev.path, set())
        if ev.overflow:
            for kind in KINDS:
                self._due(kind, now, "inotify overflow")
            return
        if "state" in roles and ev.name == JOURNAL and ev.mask & inotify.MOVED_TO:
            self.reload()
            for kind in KINDS:
                self._due(kind, now, "journal changed")
        if "config" in roles:
            self._due("file", now, f"inotify: {ev.path / ev.name}")
            if ev.mask & (inotify.IGNORED | inotify.SELF):
                self._watch_dirs()
        if "pids" in roles and ev.name.endswith(RUN_PID_SUFFIX):
            self._due("process", now, f"inotify: {ev.path / ev.name}")
        if "refs" in roles and ev.mask & inotify.IGNORED:
            roles.discard("refs")  # the directory went (a branch deleted): it may come back
        if "refs" in roles and ev.mask & ISDIR and ev.mask & (inotify.CREATE | inotify.MOVED_TO):
            # A new branch directory: watch it (and what was made in it before the watch took).
            self._watch_refs(ev.path / ev.name)
        if (
            ("git" in roles and ev.name in ("HEAD", "packed-refs"))
            or ("logs" in roles and ev.name == "HEAD")
            or ("refs" in roles and not ev.name.endswith(".lock"))
        ):
            self._due("repo", now, f"inotify: {ev.path / ev.name}")

    def _ours(self, change: Change) -> bool:
        """Made by the Cell's own apply: the process that holds the apply lock (or this one,
        reconciling). The kernel names the committing thread; its process is what counts."""
        if change.pid is None:
            return False
        owner = procfs.tgid(change.pid) or change.pid
        return owner == os.getpid() or owner == self.state.holder()

    def _transaction(self, change: Change) -> None:
        """Every nftables transaction the Cell did not make is drift, even when the end state
        is what was applied: a hole opened and closed in a millisecond let packets through."""
        f = transaction_finding(change)
        self.out(transaction_event(f, self.entry.commit))
        with contextlib.suppress(CellError, OSError):  # report first, record second
            ledger.append(self.state, "drift-transaction", findings=[f.to_doc()])

    def _due(self, kind: str, now: float, cause: str, at: float | None = None) -> None:
        if kind not in self.due:
            self.due[kind] = now + SETTLE[kind]
            self.cause.setdefault(kind, cause)
        if kind == "nftables" and self.since is None:
            self.since = at or time.time()  # when the kernel told us: the change's own time

    def _confirm_in(self) -> float:
        doc = confirmation.read(self.state)
        return 3600.0 if doc is None else float(doc["deadline_unix"]) - time.time()

    def _settle(self) -> None:
        try:
            for note in lifecycle.settle(self.state):
                self.out(
                    {"time": now_iso(), "status": "rollback", "source": "confirm", "note": note}
                )
        except CellError as e:
            # Tell, and try again a period later rather than in a tight loop.
            self.settle_after = time.monotonic() + self.interval
            self.out({"time": now_iso(), "status": "error", "source": "confirm", "error": str(e)})

    # --- comparing and reporting ------------------------------------------------------------

    def guarded(self, kinds: Any, source: str) -> None:
        """A comparison that fails (the namespace gone, a file unreadable) is reported, and the
        watcher keeps watching: the next event or period tries again."""
        try:
            self.check(kinds, source)
        except (CellError, OSError) as e:
            self.out({"time": now_iso(), "status": "error", "source": source, "error": str(e)})

    def check(self, kinds: Any, source: str, *, force: bool = False) -> None:
        """Compare the given kinds now; print what changed; reconcile if the policy says so."""
        found: dict[str, list[Finding]] = {}
        for kind in kinds:
            if kind == "nftables":
                _, fs = check_nftables(self.exp, self.target, self.pexp)
                for f in fs:
                    f.by, f.since = self.by, None if self.since is None else iso(self.since)
                found[kind] = fs
            elif kind == "file":
                found[kind] = check_files(self.exp, self.target)
            elif kind == "process":
                found[kind] = check_processes(self.target)
                self._watch_pids()
            elif kind == "paths":
                found[kind] = check_paths(self.exp.files, self.target)
                for f in found[kind]:
                    f.by = f.by or self.paths_by
                self.paths_by = None
            else:
                found[kind] = check_repo(self.state, self.repo, self.entry)
        self.by, self.since = None, None
        fresh: list[Finding] = []
        told = False
        for kind, findings in found.items():
            now = {f.key: f for f in findings}
            new = [f for k, f in now.items() if k not in self.last[kind]]
            gone = [f.what for k, f in self.last[kind].items() if k not in now]
            self.last[kind] = now
            if new or gone:
                self._event(kind, source, new, gone)
                fresh += new
                told = True
        if force and not told:
            self._event("all", source, [], [])
        if any(f.kind != "repo" for f in fresh) and self.entry.drift_mode == "reconcile":
            self._reconcile()

    def _event(self, kind: str, source: str, new: list[Finding], gone: list[str]) -> None:
        every = [f for fs in self.last.values() for f in fs.values()]
        self.out(
            {
                "time": now_iso(),
                "status": "drift" if every else "in-sync",
                "kind": kind,
                "source": source,
                "commit": self.entry.commit,
                "new": [f.to_doc() for f in new],
                "resolved": gone,
            }
        )
        record(self.state, every, source)

    def _reconcile(self) -> None:
        try:
            out = lifecycle.reconcile(self.state)
        except CellError as e:
            self.out({"time": now_iso(), "status": "reconcile-failed", "error": str(e)})
            return
        self.out(
            {
                "time": now_iso(),
                "status": "reconciled",
                "commit": out.entry.commit,
                "note": "drift.mode is reconcile: re-applied the applied commit",
            }
        )
        self.reload()
        self.check(KINDS, "reconcile")
