"""inotify(7) through ctypes: directory watches whose events a selector can wait on.

Directories, not files, are watched: Cell (and editors, and git) replace files by renaming a new
one over them, which a watch on the old inode would never see.
"""

from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass
from pathlib import Path

MODIFY, ATTRIB, CLOSE_WRITE = 0x2, 0x4, 0x8
MOVED_FROM, MOVED_TO, CREATE, DELETE = 0x40, 0x80, 0x100, 0x200
DELETE_SELF, MOVE_SELF, Q_OVERFLOW, IGNORED = 0x400, 0x800, 0x4000, 0x8000
CHANGES = MODIFY | ATTRIB | CLOSE_WRITE | MOVED_FROM | MOVED_TO | CREATE | DELETE
SELF = DELETE_SELF | MOVE_SELF
_NONBLOCK, _CLOEXEC = 0o4000, 0o2000000
_HEADER = struct.Struct("iIII")


@dataclass(frozen=True)
class Event:
    path: Path
    """The watched directory (Path() for a queue overflow: anything may have changed)."""
    name: str
    mask: int

    @property
    def overflow(self) -> bool:
        return bool(self.mask & Q_OVERFLOW)


class Inotify:
    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(_NONBLOCK | _CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.fd: int = fd
        self.paths: dict[int, Path] = {}

    def fileno(self) -> int:
        return self.fd

    def add(self, path: Path, mask: int = CHANGES | SELF) -> bool:
        """Watch the directory `path`; False if it does not exist (yet)."""
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            return False
        self.paths[wd] = path
        return True

    def read(self) -> list[Event]:
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        out, off = [], 0
        while off + _HEADER.size <= len(data):
            wd, mask, _, size = _HEADER.unpack_from(data, off)
            name = data[off + _HEADER.size : off + _HEADER.size + size].rstrip(b"\0")
            off += _HEADER.size + size
            path = self.paths.get(wd, Path())
            if mask & IGNORED:
                self.paths.pop(wd, None)
            out.append(Event(path, os.fsdecode(name), mask))
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
