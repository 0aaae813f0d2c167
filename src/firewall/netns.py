"""Network namespaces through pyroute2: create, enter, run a process inside, remove.

The lab, the probes and the integration tests all need "run this in that namespace". Processes are
started with `setns` in the child before exec, so nothing shells out to `ip netns exec`. Names are
registered under /run/netns like `ip netns add` does, so operators can inspect them with `ip`.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from pyroute2 import netns as _netns

T = TypeVar("T")


def create(name: str) -> None:
    """Create the namespace `name` (with its loopback up); an existing one is kept."""
    if name not in _netns.listnetns():
        _netns.create(name)
    with_ns(name, _lo_up)


def remove(name: str) -> None:
    """Remove the namespace `name`, if it exists."""
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
    import ctypes

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
    """Start `argv` inside namespace `name` (optionally with its own /etc/resolv.conf)."""
    return subprocess.Popen(list(argv), preexec_fn=lambda: enter(name, resolv_conf), **kw)  # noqa: PLW1509


def run(
    name: str,
    argv: Sequence[str],
    *,
    timeout: float = 30,
    check: bool = False,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run `argv` inside namespace `name` and wait for it."""
    return subprocess.run(
        list(argv),
        preexec_fn=lambda: enter(name),
        capture_output=True,
        timeout=timeout,
        check=check,
        input=input,
    )


def with_ns(name: str, fn: Callable[[], T]) -> T:
    """Call `fn` in a forked child that has entered namespace `name`; return its (picklable) result.

    Netlink and libnftables sockets bind to the namespace of the thread that opens them, so a child
    process keeps the caller's own namespace untouched.
    """
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)

    def target() -> None:
        try:
            enter(name)
            child.send((True, fn()))
        except BaseException as e:  # the parent re-raises it
            child.send((False, e))

    proc = ctx.Process(target=target)
    proc.start()
    ok, value = parent.recv()
    proc.join()
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


@contextmanager
def scratch(prefix: str = "cell-t") -> Iterator[str]:
    """A fresh, empty namespace for the duration of a block; removed even on failure."""
    name = f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    create(name)
    try:
        yield name
    finally:
        remove(name)
