"""The few libnftables calls Cell makes, bound with ctypes. Thin: touches the kernel.

Our own binding, so that the context pointer is ours and the dry run (`nft --check`) is a plain
call, not a reach into another binding's private attribute. A `Context` is not thread-safe, and
its netlink socket belongs to the namespace of the thread that uses it: `firewall.nft` keeps one
per thread, and runs a namespace's work on that namespace's own threads (`firewall.netns`).
"""

from __future__ import annotations

import ctypes
import json
from functools import cache
from typing import Any

SONAME = "libnftables.so.1"
HANDLE, JSON, STATELESS = 1 << 3, 1 << 4, 1 << 2
"""Output flags (libnftables.h: NFT_CTX_OUTPUT_HANDLE, _JSON, _STATELESS)."""


@cache
def _lib() -> ctypes.CDLL:
    lib = ctypes.CDLL(SONAME)
    p, c = ctypes.c_void_p, ctypes.c_char_p
    for name, res, args in (
        ("nft_ctx_new", p, [ctypes.c_uint32]),
        ("nft_ctx_free", None, [p]),
        ("nft_ctx_output_set_flags", None, [p, ctypes.c_uint]),
        ("nft_ctx_set_dry_run", None, [p, ctypes.c_bool]),
        ("nft_ctx_buffer_output", ctypes.c_int, [p]),
        ("nft_ctx_buffer_error", ctypes.c_int, [p]),
        ("nft_ctx_get_output_buffer", c, [p]),
        ("nft_ctx_get_error_buffer", c, [p]),
        ("nft_run_cmd_from_buffer", ctypes.c_int, [p, c]),
    ):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


class Context:
    """One libnftables context with buffered output and error."""

    def __init__(self) -> None:
        self._lib = _lib()
        self._ctx = self._lib.nft_ctx_new(0)
        if not self._ctx:
            raise OSError("libnftables: nft_ctx_new failed")
        self._lib.nft_ctx_buffer_output(self._ctx)
        self._lib.nft_ctx_buffer_error(self._ctx)

    def __del__(self) -> None:
        ctx, self._ctx = getattr(self, "_ctx", None), None
        if ctx:
            self._lib.nft_ctx_free(ctx)

    def run(self, command: str, *, flags: int = 0, dry: bool = False) -> tuple[int, str, str]:
        """Run one buffer of commands (nft syntax, or JSON with the JSON flag): rc, out, err."""
        self._lib.nft_ctx_output_set_flags(self._ctx, flags)
        self._lib.nft_ctx_set_dry_run(self._ctx, dry)
        rc = self._lib.nft_run_cmd_from_buffer(self._ctx, command.encode())
        out = self._lib.nft_ctx_get_output_buffer(self._ctx) or b""
        err = self._lib.nft_ctx_get_error_buffer(self._ctx) or b""
        return int(rc), out.decode(), err.decode()

    def json(self, doc: dict[str, Any], *, dry: bool = False) -> tuple[int, Any, str]:
        """Run a JSON document (with handles in the output): rc, parsed output (or None), err."""
        rc, out, err = self.run(json.dumps(doc), flags=JSON | HANDLE, dry=dry)
        return rc, json.loads(out) if out.strip() else None, err
