"""Guards for writing config lines (mosquitto, dnsmasq), shared by every renderer.

Validation already guarantees that no policy value can break a config line. These guards are
defense in depth at the point of writing: a model built without validation (`model_construct`)
still cannot inject a directive, and comments are wrapped the same way in every file.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable

_UNSAFE = re.compile(r"[\s\"\x00-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
WIDTH = 96


def safe(value: str) -> str:
    """`value`, if it is one token that cannot break a config line; else ValueError."""
    if not value or _UNSAFE.search(value):
        raise ValueError(f"refusing to render {value[:60]!r}: empty, whitespace, quote or control")
    return value


def no_control(text: str) -> str:
    """`text`, if it holds no control character (it stays on its line); else ValueError."""
    if _CONTROL.search(text):
        raise ValueError(f"refusing to render text with a control character: {text[:60]!r}")
    return text


def why(*sentences: str) -> list[str]:
    """A comment paragraph, wrapped the same way every time."""
    text = no_control(" ".join(sentences))
    return ["# " + line for line in textwrap.wrap(text, WIDTH - 2, break_on_hyphens=False)]


def lines(rows: Iterable[str]) -> bytes:
    """The file's bytes: one row a line, a final newline."""
    return ("\n".join(rows) + "\n").encode()
