"""libnftables through python-nftables, with the one call that binding lacks. Thin: touches the
kernel.

python-nftables (`nftables.Nftables`) runs commands and JSON documents and sets output flags, but
binds no `nft_ctx_set_dry_run` (what `nft --check` uses). Rather than reach into its context at
every call site, this module does it once: `Context` wraps one `Nftables` and binds that one
function with ctypes against the same library, on the same context. A context is not
thread-safe, and its netlink socket belongs to the namespace of the thread that uses it:
`firewall.nft` keeps one per thread, and runs a namespace's work on that namespace's own threads
(`firewall.netns`).
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Any

import nftables

SONAME = "libnftables.so.1"
HANDLE, JSON, STATELESS = 1 << 3, 1 << 4, 1 << 2
"""Output flags (libnftables.h: NFT_CTX_OUTPUT_HANDLE, _JSON, _STATELESS)."""


@cache
def _set_dry_run() -> Any:
    fn = ctypes.CDLL(SONAME).nft_ctx_set_dry_run
    fn.restype, fn.argtypes = None, [ctypes.c_void_p, ctypes.c_bool]
    return fn


class Context:
    """One libnftables context (a python-nftables `Nftables`) with buffered output and error."""

    def __init__(self) -> None:
        self._nft = nftables.Nftables(sofile=SONAME)
        # The binding keeps its context pointer private; the dry run needs it, here only.
        self._ptr = self._nft._Nftables__ctx

    def run(self, command: str, *, flags: int = 0, dry: bool = False) -> tuple[int, str, str]:
        """Run one buffer of commands (nft syntax, or JSON with the JSON flag): rc, out, err."""
        self._nft.nft_ctx_output_set_flags(self._ptr, flags)
        _set_dry_run()(self._ptr, dry)
        rc, out, err = self._nft.cmd(command)
        return int(rc), out or "", err or ""

    def json(self, doc: dict[str, Any], *, dry: bool = False) -> tuple[int, Any, str]:
        """Run a JSON document (with handles in the output): rc, parsed output (or None), err."""
        self._nft.nft_ctx_output_set_flags(self._ptr, JSON | HANDLE)
        _set_dry_run()(self._ptr, dry)
        rc, out, err = self._nft.json_cmd(doc)
        return int(rc), out or None, err or ""
