"""What /proc says about a process: its state and its start time (the pid's identity)."""

from __future__ import annotations

from pathlib import Path


def stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (which may hold spaces and parentheses): field 3
    (state) is item 0, field 22 (start time) is item 19. None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(") ", 1)[1].split()


def start_time(pid: int) -> int | None:
    """Start time in clock ticks since boot: with the pid, it names one process for good."""
    fields = stat_fields(pid)
    return int(fields[19]) if fields else None


def alive(pid: int) -> bool:
    """Running: it exists and is neither a zombie nor dead."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def tgid(pid: int) -> int | None:
    """The process a thread id belongs to (the kernel names threads in some messages)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Tgid:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None
