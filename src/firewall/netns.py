"""Network namespaces through pyroute2: create, enter, run a call or a process inside, remove.

The lab, the probes, the nftables seam and the integration tests all need "run this in that
namespace". Names are registered under /run/netns like `ip netns add` does, so operators can
inspect them with `ip`; nothing shells out to `ip netns exec`.

How calls run in a namespace (the choice, for a long-running threaded or asyncio daemon):
- A call (`with_ns`, `submit`, `call`) runs on one of a few threads dedicated to that namespace
  (`Namespace`): each entered it once with `setns(CLONE_NEWNET)`, which moves only the calling
  thread, and stays in it. Sockets they open (netlink, libnftables, UDP) live in that namespace.
  No fork per call (forking a process that has threads copies their held locks) and the caller's
  own thread never changes namespace. An asyncio caller awaits `asyncio.wrap_future(submit(...))`.
  A call that may block for seconds (a probe) gets a thread of its own instead (`spawn`).
- The threads are pinned to the namespace's identity (device and inode of /run/netns/NAME): if the
  name is removed and made again, even by another process, the next call gets fresh threads in the
  new one; `remove` lets ours leave first, so they never keep a deleted namespace alive.
- Processes (`popen`, `run`) are started from one of those threads, so the child is born in the
  namespace and nothing runs between fork and exec (`preexec_fn` is unsafe with threads); only a
  child that needs a private /etc/resolv.conf still enters and mounts in a `preexec_fn`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from pyroute2 import netns as _netns

T = TypeVar("T")


def create(name: str) -> None:
    """Create the namespace `name` (with its loopback up); an existing one is kept."""
    if name not in _netns.listnetns():
        _netns.create(name)
    with_ns(name, _lo_up)


def remove(name: str) -> None:
    """Remove the namespace `name`, if it exists (our threads in it leave first)."""
    _forget(name)
    if name in _netns.listnetns():
        _netns.remove(name)


def names() -> list[str]:
    return sorted(_netns.listnetns())


def _lo_up() -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname="lo")
        if idx:
            ipr.link("set", index=idx[0], state="up")


def enter(name: str, resolv_conf: str | None = None) -> None:
    _netns.setns(name, flags=0)
    if resolv_conf:
        _private_resolv_conf(resolv_conf)


_CLONE_NEWNS = 0x00020000
_MS_REC, _MS_PRIVATE, _MS_BIND = 0x4000, 0x40000, 0x1000


def _private_resolv_conf(path: str) -> None:
    """Give this process its own mount namespace in which /etc/resolv.conf is `path`.

    What `ip netns exec` does with /etc/netns/NAME/resolv.conf: a process in a lab gateway must
    resolve through the gateway's own resolver, not the host's.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) failed")
    if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "making / private failed")
    if libc.mount(path.encode(), b"/etc/resolv.conf", None, _MS_BIND, None) != 0:
        raise OSError(ctypes.get_errno(), f"bind-mounting {path} on /etc/resolv.conf failed")


def popen(
    name: str, argv: Sequence[str], *, resolv_conf: str | None = None, **kw: Any
) -> subprocess.Popen[bytes]:
    """Start `argv` inside namespace `name` (optionally with its own /etc/resolv.conf).

    Started from one of the namespace's threads, the child is born in the namespace: no code
    runs between fork and exec. Only a private resolv.conf needs that (a mount namespace of the
    child's own), so only then does a `preexec_fn` enter the namespace and mount it.
    """
    if resolv_conf is None:
        return with_ns(name, lambda: subprocess.Popen(list(argv), **kw))
    return subprocess.Popen(list(argv), preexec_fn=lambda: enter(name, resolv_conf), **kw)  # noqa: PLW1509


def run(
    name: str,
    argv: Sequence[str],
    *,
    timeout: float = 30,
    check: bool = False,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run `argv` inside namespace `name` and wait for it (`subprocess.run`'s contract)."""
    pipe = subprocess.PIPE
    with popen(
        name, argv, stdin=pipe if input is not None else None, stdout=pipe, stderr=pipe
    ) as p:
        try:
            out, err = p.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise
    done = subprocess.CompletedProcess(list(argv), p.returncode, out, err)
    if check:
        done.check_returncode()
    return done


class Namespace:
    """A few threads that entered one network namespace and stay in it, for running calls there.

    `setns(CLONE_NEWNET)` moves only the calling thread, and a netlink or libnftables socket binds
    to the namespace of the thread that opens it, so work for a namespace runs on these threads
    and on no other. The namespace is pinned by the identity (device, inode) of /run/netns/NAME
    seen when the threads were made: each thread checks it again before it enters.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = f"{NETNS_RUN}/{name}"
        self.ident = _ident(self.path)
        self._pool = ThreadPoolExecutor(
            max_workers=WORKERS, thread_name_prefix=f"netns-{name}", initializer=self._enter
        )

    def _enter(self) -> None:
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != self.ident:
                raise FileNotFoundError(errno.ENOENT, "network namespace was replaced", self.path)
            if _libc().setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns: {os.strerror(err)}", self.path)
            _here.ident = self.ident
        finally:
            os.close(fd)

    def current(self) -> bool:
        """Whether /run/netns/NAME is still the namespace these threads are in."""
        try:
            return _ident(self.path) == self.ident
        except OSError:
            return False

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        if getattr(_here, "ident", None) == self.ident:
            # Already on a thread in this namespace: run here, rather than wait for a free
            # thread (which could be this one's caller: a deadlock).
            done: Future[T] = Future()
            try:
                done.set_result(fn())
            except BaseException as e:
                done.set_exception(e)
            return done
        return self._pool.submit(fn)

    def close(self, wait: bool = True) -> None:
        """Let the threads finish what they run and leave (so the namespace can go away)."""
        mine = threading.current_thread().name.startswith(f"netns-{self.name}_")
        self._pool.shutdown(wait=wait and not mine)


WORKERS = 4
"""Threads per namespace: enough that a probe waiting for its answer does not hold up the counter
reads that watch it."""
NETNS_RUN = "/run/netns"
CLONE_NEWNET = 0x40000000
_spaces: dict[str, Namespace] = {}
_lock = threading.Lock()
_here = threading.local()
"""`ident`: the namespace this thread entered (threads of a `Namespace`, or `spawn`)."""


def _ident(path: str) -> tuple[int, int]:
    st = Path(path).stat()
    return st.st_dev, st.st_ino


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def space(name: str) -> Namespace:
    """The threads of namespace `name`, made on first use and remade if the name now points to
    another namespace (removed and created again, by us or by another process)."""
    with _lock:
        held = _spaces.get(name)
        if held is not None and held.current():
            return held
        if held is not None:
            held.close(wait=False)
        _spaces[name] = made = Namespace(name)  # raises FileNotFoundError if there is none
        return made


def _forget(name: str) -> None:
    with _lock:
        held = _spaces.pop(name, None)
    if held is not None:
        held.close()


def submit(name: str, fn: Callable[[], T]) -> Future[T]:
    """Start `fn` on a thread inside namespace `name`; its future."""
    return space(name).submit(fn)


def with_ns(name: str, fn: Callable[[], T]) -> T:
    """Call `fn` inside namespace `name` (on one of its threads) and return its result.

    Exceptions come back as they were raised. No fork: safe in a threaded or asyncio daemon.
    """
    return submit(name, fn).result()


def spawn(name: str, fn: Callable[[], T]) -> Future[T]:
    """Run `fn` on a new daemon thread inside namespace `name`, for a call that may block long
    (a probe waiting out its timeout): it holds none of the namespace's threads, and a caller
    that stops waiting for it does not hold up the process's exit."""
    here = space(name)
    done: Future[T] = Future()

    def run() -> None:
        try:
            here._enter()
            done.set_result(fn())
        except BaseException as e:  # the caller's future carries it
            done.set_exception(e)

    threading.Thread(target=run, name=f"netns-{name}-once", daemon=True).start()
    return done


def call(name: str | None, fn: Callable[[], T]) -> T:
    """`fn` inside namespace `name`, or right here for None (this host)."""
    return fn() if name is None else with_ns(name, fn)


@contextmanager
def scratch(prefix: str = "cell-t") -> Iterator[str]:
    """A fresh, empty namespace for the duration of a block; removed even on failure."""
    name = f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    create(name)
    try:
        yield name
    finally:
        remove(name)
