"""`cell fleet --expect FILE`: which commit each site should run.

The file is either a JSON object (`{"lisbon-01": "<sha>", ...}`) or one site a line,
`SITE COMMIT` or `SITE: COMMIT`, with `#` comments and blank lines (what a release script
writes, and what a person edits). A commit is a full sha or an abbreviation of 7 digits or more.
Errors name their place: `FILE:LINE:COL: message`. Pure: text in, mapping out.
"""

from __future__ import annotations

import json
import re
from typing import Final

from cell.errors import UsageError

SITE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
COMMIT: Final = re.compile(r"[0-9a-fA-F]{7,64}\Z")


def load_expect(text: str, name: str) -> dict[str, str]:
    """Site id -> expected commit, or a UsageError naming every bad line (FILE:LINE:COL)."""
    if text.lstrip().startswith("{"):
        return _json(text, name)
    errors: list[str] = []
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        col = len(line) - len(line.lstrip()) + 1
        parts = line.replace(":", " ", 1).split()
        if len(parts) != 2:
            errors.append(f"{name}:{n}:{col}: want 'SITE COMMIT', got {line.strip()!r}")
            continue
        site, commit = parts
        problem = _check(site, commit, out)
        if problem:
            at = col if problem.startswith("site") else raw.index(commit, col - 1) + 1
            errors.append(f"{name}:{n}:{at}: {problem}")
        else:
            out[site] = commit.lower()
    if errors:
        raise UsageError("\n".join(errors))
    return out


def _json(text: str, name: str) -> dict[str, str]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{name}:{e.lineno}:{e.colno}: not JSON: {e.msg}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{name}:1:1: want an object of site id -> commit")
    out: dict[str, str] = {}
    errors = []
    for site, commit in doc.items():
        problem = _check(site, commit, out) if isinstance(commit, str) else "commit: not a string"
        if problem:
            errors.append(f"{name}: site {site!r}: {problem}")
        else:
            out[site] = commit.lower()
    if errors:
        raise UsageError("\n".join(errors))
    return out


def _check(site: str, commit: str, seen: dict[str, str]) -> str | None:
    if not SITE.match(site):
        return f"site {site!r}: not a site id (letters, digits, '.', '_', '-')"
    if site in seen:
        return f"site {site!r}: named twice"
    if not COMMIT.match(commit):
        return f"commit {commit!r}: want a sha (7 to 64 hex digits)"
    return None
