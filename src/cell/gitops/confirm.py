"""Timed confirm: `cell apply --confirm 5m` arms a deadline; without `cell confirm` before it, the
Cell rolls back to the previously applied commit by itself.

The deadline lives in STATE/confirm.json (written atomically), not in a process, so it survives
the process that set it. Two things act on it: a detached waiter (`python -m cell.gitops.waiter`,
its own session, started by the apply) sleeps until the deadline and rolls back; and, should the
waiter be gone (killed, a reboot), every later `cell apply|drift|confirm` and the drift watcher
settle an overdue deadline first (`lifecycle.settle`); `cell rollback` does the same rollback and
clears it. Whichever comes first holds the apply lock; the others find nothing left to do.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from cell.procfs import start_time
from cell.store.journal import Entry
from cell.store.statedir import State, dump
from policies.clock import iso, now_iso
from policies.errors import CellError
from policies.fsutil import atomic_write, fsync_dir
from policies.types import duration_seconds


class ConfirmError(CellError):
    """Nothing to confirm, a deadline already passed, or a bad duration."""

    exit_code = 2


def parse_duration(text: str) -> int:
    """`90s`, `5m`, `1h` -> seconds (the policy's duration syntax)."""
    import re

    if not re.fullmatch(r"[1-9][0-9]{0,6}[smhd]", text or ""):
        raise ConfirmError(
            f"--confirm {text!r}: expected a duration like 30s, 5m or 1h (digits, then s/m/h/d)"
        )
    return duration_seconds(text)


def read(state: State) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads(state.confirm.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        # A torn file cannot happen (atomic writes); an unreadable one must not hide a deadline.
        return {"commit": "", "deadline_unix": 0.0, "deadline": "unknown", "unreadable": True}
    return doc


def overdue(doc: dict[str, Any], now: float | None = None) -> bool:
    return float(doc.get("deadline_unix", 0)) <= (time.time() if now is None else now)


def arm(state: State, entry: Entry, fallback: Entry, seconds: int) -> dict[str, Any]:
    """Persist the deadline, then start the waiter that acts on it."""
    deadline = time.time() + seconds
    doc: dict[str, Any] = {
        "id": entry.id,
        "commit": entry.commit,
        "fallback": fallback.commit,
        "deadline": iso(deadline, "seconds"),
        "deadline_unix": deadline,
        "set_at": now_iso(),
        "set_by": os.getpid(),
    }
    atomic_write(state.confirm, dump(doc))
    doc["waiter"] = spawn_waiter(state)
    atomic_write(state.confirm, dump(doc))
    return doc


def spawn_waiter(state: State) -> dict[str, int]:
    """A detached process (own session, no inherited descriptors) that outlives this one."""
    log = state.root / "confirm.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cell.gitops.waiter", str(state.root)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
        )
    return {"pid": proc.pid, "start": start_time(proc.pid) or 0}


def clear(state: State) -> None:
    """Disarm: remove the deadline and stop its waiter (if it is still the process we started)."""
    doc = read(state)
    with contextlib.suppress(FileNotFoundError):
        state.confirm.unlink()
        fsync_dir(state.root)
    waiter = (doc or {}).get("waiter") or {}
    pid = int(waiter.get("pid", 0))
    if pid and pid != os.getpid() and start_time(pid) == waiter.get("start"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
