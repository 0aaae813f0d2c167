"""The Cell's GitOps state directory: layout, atomic writes, locks, and the store of applied commits.

    STATE/journal.json        what is applied (and what an interrupted apply was applying)
    STATE/ledger.jsonl        the audit ledger (append-only, hash-chained); ledger.head anchors it
    STATE/confirm.json        a pending `--confirm` deadline, if any
    STATE/trust/              the enrolled allowed_signers (+ allowed_signers.asc)
    STATE/store/trees/SHA/    the policy files of each applied commit, as signed
    STATE/store/rendered/MANIFEST-SHA256/   the artifacts rendered from them, as installed
    STATE/git/site-config.git the Cell's bare mirror of the repo: every commit is read from it
    STATE/locks/              flock files: one apply at a time; ledger appends one at a time

The store makes rollback, reconcile and drift independent of the repo: what was applied can be
put back, and compared with, even if the repo was rewritten or is gone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from policies.errors import CellError
from policies.layout import (
    CONFIRM,
    GIT_MIRROR,
    JOURNAL,
    LEDGER,
    LEDGER_HEAD,
    LOCKS_DIR,
    MANIFEST,
    STORED_RENDERED,
    STORED_TREES,
    TRUST_DIR,
)


class StateError(CellError):
    """The state directory is unusable (unreadable journal, a lock that never frees)."""

    exit_code = 1


class StateFull(StateError):
    """The state directory's filesystem is full (or over quota): nothing more can be recorded."""


def full_disk(path: Path, e: OSError) -> StateFull | None:
    """A `StateFull` for an ENOSPC/EDQUOT error while writing `path` (None: another error)."""
    if e.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    try:
        st = os.statvfs(path.parent if not path.is_dir() else path)
        free = f"{st.f_bavail * st.f_frsize} bytes free"
    except OSError:
        free = "free space unknown"
    return StateFull(
        f"{path}: cannot write, the filesystem is full ({free}); free space on it (an attacker "
        "filling it is a finding in itself), or give the state directory a filesystem of its own"
    )


class Busy(StateError):
    """Another `cell` holds the apply lock."""


def dump(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


class State:
    """One state directory. Cheap to construct; nothing is created until something is written."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.journal = self.root / JOURNAL
        self.ledger = self.root / LEDGER
        self.ledger_head = self.root / LEDGER_HEAD
        self.confirm = self.root / CONFIRM
        self.trust = self.root / TRUST_DIR
        self.trees = self.root / STORED_TREES
        self.rendered = self.root / STORED_RENDERED
        self.mirror = self.root / GIT_MIRROR

    def __repr__(self) -> str:
        return f"State({str(self.root)!r})"

    @contextlib.contextmanager
    def lock(self, name: str = "apply", timeout: float = 120.0) -> Iterator[None]:
        """Hold `STATE/locks/NAME` (flock): released by the kernel even if we are killed."""
        path = self.root / LOCKS_DIR / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # who holds it: `holder`
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise Busy(
                            f"{self.root}: another cell command holds the {name} lock "
                            f"(waited {timeout:.0f} s); try again when it is done"
                        ) from None
                    time.sleep(0.02)
            yield
        finally:
            os.close(fd)

    def holder(self, name: str = "apply") -> int | None:
        """The pid of the process that holds the lock now (None: nobody holds it)."""
        if not self.busy(name):
            return None
        try:
            return int((self.root / LOCKS_DIR / name).read_text().strip())
        except (OSError, ValueError):
            return None

    def busy(self, name: str = "apply") -> bool:
        """Is someone holding the lock right now? (The drift watcher waits out an apply.)"""
        path = self.root / LOCKS_DIR / name
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    # --- the store --------------------------------------------------------------------------

    def store_tree(self, commit: str, fill: Any) -> Path:
        """The stored policy tree of `commit`, made once by `fill(dest)` (e.g. a git export)."""
        dest = self.trees / commit
        if (dest / ".complete").exists():
            return dest
        tmp = self.trees / f".{commit}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        fill(tmp)
        (tmp / ".complete").write_text(commit + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
        return dest

    def store_rendered(self, files: dict[str, bytes]) -> str:
        """Keep a copy of rendered artifacts; returns its key (sha256 of manifest.json)."""
        key = hashlib.sha256(files[MANIFEST]).hexdigest()
        dest = self.rendered / key
        if (dest / ".complete").exists():
            return key
        from cell.artifacts import write_tree

        tmp = self.rendered / f".{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        write_tree(tmp, files)
        (tmp / ".complete").write_text(key + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
        return key

    def load_rendered(self, key: str) -> dict[str, bytes]:
        """The stored artifacts under `key`, checked against their manifest."""
        root = self.rendered / key
        try:
            manifest = (root / MANIFEST).read_bytes()
            names = json.loads(manifest)["files"]
            files = {name: (root / name).read_bytes() for name in names}
        except (OSError, ValueError, KeyError) as e:
            raise StateError(f"{root}: the stored artifacts are unreadable ({e})") from None
        if hashlib.sha256(manifest).hexdigest() != key or any(
            hashlib.sha256(data).hexdigest() != names[n] for n, data in files.items()
        ):
            raise StateError(f"{root}: the stored artifacts do not match their manifest")
        return {**files, MANIFEST: manifest}

    def prune(self, keep_commits: set[str], keep_rendered: set[str]) -> None:
        """Drop stored trees and artifacts that no journal entry refers to any more, and the
        temporary files of writers that were killed before their rename."""
        for base, keep in ((self.trees, keep_commits), (self.rendered, keep_rendered)):
            if not base.is_dir():
                continue
            for child in base.iterdir():
                if child.name.startswith(".") and not _stale(child.name):
                    continue
                if child.name not in keep:
                    shutil.rmtree(child, ignore_errors=True)
        for child in self.root.glob(".*.tmp"):
            if _stale(child.name):
                child.unlink(missing_ok=True)


def _stale(name: str) -> bool:
    """`.NAME.PID.tmp` whose writer is gone."""
    parts = name.split(".")
    if len(parts) < 4 or parts[-1] != "tmp" or not parts[-2].isdigit():
        return False
    return not Path(f"/proc/{parts[-2]}").exists()
