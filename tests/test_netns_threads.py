"""Namespace calls on dedicated threads: the right namespace from any thread, no fork, and a
name removed and made again gets threads in the new namespace (what a daemon relies on)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from firewall import netns
from firewall.nft import backend

pytestmark = pytest.mark.root


def _here() -> int:
    return Path("/proc/thread-self/ns/net").stat().st_ino


def _ino(name: str) -> int:
    return Path(f"/run/netns/{name}").stat().st_ino


def test_calls_run_in_the_namespace_from_any_thread_without_forking() -> None:
    mine = _here()
    with netns.scratch() as a, netns.scratch() as b:
        calls = [a, b] * 20
        with ThreadPoolExecutor(8) as pool:
            seen = list(
                pool.map(lambda n: (n, netns.with_ns(n, _here), netns.with_ns(n, os.getpid)), calls)
            )
        assert {(n, ino) for n, ino, _ in seen} == {(a, _ino(a)), (b, _ino(b))}
        assert {pid for _, _, pid in seen} == {os.getpid()}  # a thread, not a child process
        assert _here() == mine  # the caller never moved
        # A call made from inside the namespace runs in place instead of waiting for a thread.
        assert netns.with_ns(a, lambda: netns.with_ns(a, _here)) == _ino(a)
        with pytest.raises(ZeroDivisionError):
            netns.with_ns(a, lambda: 1 // 0)


def test_a_name_made_again_gets_threads_in_the_new_namespace() -> None:
    name = f"cell-t-{os.getpid()}-again"
    netns.create(name)
    try:
        assert netns.with_ns(name, _here) == _ino(name)
        backend(name).apply({"nftables": [{"add": {"table": {"family": "inet", "name": "cell"}}}]})
        assert backend(name).list_table() is not None
        netns.remove(name)
        assert not [t for t in threading.enumerate() if t.name.startswith(f"netns-{name}_")]
        netns.create(name)
        assert netns.with_ns(name, _here) == _ino(name)
        assert backend(name).list_table() is None  # the new namespace has no table
    finally:
        netns.remove(name)
    with pytest.raises(FileNotFoundError):
        netns.with_ns(name, _here)


def test_a_name_made_again_by_another_process_is_noticed() -> None:
    import subprocess
    import sys

    name = f"cell-t-{os.getpid()}-other"
    netns.create(name)
    try:
        backend(name).apply({"nftables": [{"add": {"table": {"family": "inet", "name": "cell"}}}]})
        held = netns.with_ns(name, _here)  # our threads are in it, and keep it alive
        code = (
            "import sys; from firewall import netns; "
            "netns.remove(sys.argv[1]); netns.create(sys.argv[1])"
        )
        subprocess.run([sys.executable, "-c", code, name], check=True, timeout=30)
        assert _ino(name) != held
        assert netns.with_ns(name, _here) == _ino(name)
        assert backend(name).list_table() is None
    finally:
        netns.remove(name)
