"""Text that looks right and is not (issue 10, class 8): invisible format characters, mixed
scripts inside one word, and text that is not in Unicode NFC.

A `never` rule for `site/+/snapshots/#` with a zero-width space inside guards nothing that a camera
publishes, yet reads the same on every screen; so does `rеgistry/#` with a Cyrillic `е`. Topic
filters, prefixes and paths are refused when they hold any of these; names are ASCII already, and
their errors say which character is foreign.
"""

from __future__ import annotations

import unicodedata

_SAME_SCRIPT = {"HIRAGANA": "CJK", "KATAKANA": "CJK", "HANGUL": "CJK", "CJK": "CJK"}


def describe(ch: str) -> str:
    """`U+200B ZERO WIDTH SPACE`."""
    return f"U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed character')}"


def _script(ch: str) -> str | None:
    """A letter's script, from its Unicode name (LATIN, CYRILLIC, GREEK, FULLWIDTH, ...)."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    word = unicodedata.name(ch, "UNKNOWN").split(" ", 1)[0]
    return _SAME_SCRIPT.get(word, word)


def problem(value: str, *, words: str = "/") -> str | None:
    """Why `value` only looks like what it says (None: it is what it looks like).

    Refused: format characters (Cf: zero-width, bidi controls, BOM), private-use, unassigned or
    surrogate code points, text not in NFC, and a word (split on `words`) mixing scripts.
    """
    for i, ch in enumerate(value):
        cat = unicodedata.category(ch)
        if cat == "Cf":
            return (
                f"contains the invisible format character {describe(ch)} at offset {i}: the text "
                "does not say what it shows; delete it"
            )
        if cat in ("Co", "Cn", "Cs"):
            return f"contains {describe(ch)} (private-use or unassigned) at offset {i}"
    if unicodedata.normalize("NFC", value) != value:
        return (
            "is not in Unicode NFC form (a letter and its accent stored apart): it looks like, "
            "but is not, the same text typed normally; retype it"
        )
    for word in value.split(words) if words else [value]:
        scripts: dict[str, str] = {}
        for ch in word:
            s = _script(ch)
            if s is not None:
                scripts.setdefault(s, ch)
        if len(scripts) > 1:
            shown = ", ".join(f"{s.lower()} ({describe(c)})" for s, c in scripts.items())
            return (
                f"mixes scripts in {word[:40]!r}: {shown}: a look-alike of another word; use one "
                "script per level"
            )
    return None


def foreign(value: str) -> str | None:
    """For an ASCII-only field: the first non-ASCII character, named (None: all ASCII)."""
    for i, ch in enumerate(value):
        if ord(ch) > 127:
            kind = (
                "an invisible format character" if unicodedata.category(ch) == "Cf" else "not ASCII"
            )
            return f"contains {describe(ch)} at offset {i} ({kind}; a look-alike?)"
    return None
