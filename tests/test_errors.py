"""The exception tree drawn in `policies.errors` is the tree in the code: every class, its base
and its exit code, and no CellError left undrawn."""

from __future__ import annotations

import importlib
import pkgutil
import re

import policies.errors
from policies.errors import CellError

ROW = re.compile(
    r"^(?P<indent>[ │├└─]*?)(?:[├└]── )?(?P<name>\w+) \((?P<code>\d)\)\s+(?P<mod>[\w.]+)"
)


def drawn() -> list[tuple[int, str, int, str]]:
    rows = []
    for line in (policies.errors.__doc__ or "").splitlines():
        m = ROW.match(line.strip("\n")[4:]) if line.startswith("    ") else None
        if m:
            depth = len(m.group("indent")) // 4 + (0 if m.group("name") == "CellError" else 1)
            rows.append((depth, m.group("name"), int(m.group("code")), m.group("mod")))
    return rows


def all_errors() -> set[type]:
    for pkg in ("policies", "bridge", "firewall", "cell"):
        mod = importlib.import_module(pkg)
        for info in pkgutil.walk_packages(mod.__path__, f"{pkg}."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
    seen: set[type] = set()
    todo: list[type] = [CellError]
    while todo:
        cls = todo.pop()
        seen.add(cls)
        todo.extend(cls.__subclasses__())
    return seen


def test_the_drawn_tree_is_the_code() -> None:
    rows = drawn()
    assert rows[0][1] == "CellError"
    parents: dict[int, type] = {}
    for depth, name, code, mod in rows:
        cls = getattr(importlib.import_module(mod), name)
        assert cls.exit_code == code, f"{name}: drawn with exit {code}, is {cls.exit_code}"
        if depth:
            assert cls.__bases__[0] is parents[depth - 1], f"{name}: drawn under the wrong base"
        parents[depth] = cls


def test_every_cell_error_is_drawn() -> None:
    names = {(mod, name) for _, name, _, mod in drawn()}
    undrawn = sorted(
        f"{c.__module__}.{c.__name__}"
        for c in all_errors()
        if (c.__module__, c.__name__) not in names and not c.__module__.startswith("tests")
    )
    assert not undrawn, f"draw these in policies/errors.py: {undrawn}"
