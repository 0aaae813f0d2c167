"""Load YAML into plain Python data while keeping where every value came from.

PyYAML's composer (libyaml when available) gives nodes with start marks; we walk them ourselves so
that each path into the document (`("vlans", 0, "subnet")`) maps to its line and column. That
keeps loading fast for large sites and lets every later check point at the exact spot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from policies.errors import Diagnostic, PolicyError

try:
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_NODES = 2_000_000  # alias bombs expand far past this long before they exhaust memory

Path = tuple[str | int, ...]


@dataclass
class Source:
    """Positions (1-based line, column) of every value and mapping key of one YAML file."""

    file: str
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def at(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """The position of `path`, or of its nearest ancestor that has one."""
        table = self.keys if key else self.values
        while True:
            if path in table:
                return table[path]
            if key and path in self.values:
                return self.values[path]
            if not path:
                return (1, 1)
            path = path[:-1]

    def diag(
        self, path: Path, message: str, *, key: bool = False, warning: bool = False
    ) -> Diagnostic:
        line, col = self.at(path, key=key)
        return Diagnostic(self.file, line, col, message, warning)


_SCALAR = yaml.constructor.SafeConstructor()
_BOOLS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
# The constructor's int and bool readers are slow enough to matter for a 1,000-camera site;
# these cover the plain spellings, and anything else falls back to PyYAML.
_FAST: dict[str, Any] = {
    "tag:yaml.org,2002:int": lambda v: int(v, 10),
    "tag:yaml.org,2002:bool": lambda v: _BOOLS[v.lower()],
    "tag:yaml.org,2002:null": lambda v: None,
}


def load_yaml(text: bytes, file: str) -> tuple[Any, Source]:
    """Parse one YAML document. Raises `PolicyError` with a position for anything unreadable."""
    src = Source(file)
    if len(text) > MAX_FILE_BYTES:
        raise PolicyError(
            [Diagnostic(file, 1, 1, f"file is {len(text)} bytes; the limit is {MAX_FILE_BYTES}")]
        )
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as e:
        before = text[: e.start]
        line = before.count(b"\n") + 1
        col = e.start - (before.rfind(b"\n") + 1) + 1
        raise PolicyError(
            [Diagnostic(file, line, col, "not UTF-8 text (is this a YAML file?)")]
        ) from None
    if "\x00" in decoded:
        i = decoded.index("\x00")
        line = decoded.count("\n", 0, i) + 1
        col = i - (decoded.rfind("\n", 0, i) + 1) + 1
        raise PolicyError([Diagnostic(file, line, col, "NUL byte in file (is this a YAML file?)")])
    try:
        node = yaml.compose(decoded, Loader=_Loader)
    except RecursionError:
        raise PolicyError([Diagnostic(file, 1, 1, "document nests too deep")]) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(x for x in (e.context, e.problem) if x)
        raise PolicyError([Diagnostic(file, line, col, f"YAML syntax error: {what}")]) from None
    except yaml.YAMLError as e:
        raise PolicyError([Diagnostic(file, 1, 1, f"YAML error: {e}")]) from None
    if node is None:
        return None, src
    walker = _Walker(src)
    try:
        data = walker.convert(node, ())
    except RecursionError:  # a self-referencing alias, or thousands of nested levels
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        raise PolicyError(
            [Diagnostic(file, line, col, "document nests too deep (or an alias refers to itself)")]
        ) from None
    if walker.errors:
        raise PolicyError(walker.errors)
    return data, src


class _Walker:
    def __init__(self, src: Source) -> None:
        self.src = src
        self.errors: list[Diagnostic] = []
        self.count = 0

    def convert(self, node: yaml.Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise PolicyError([self._diag(node, "document too large (too many values or aliases)")])
        self.src.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for knode, vnode in node.value:
                if not isinstance(knode, yaml.ScalarNode) or knode.tag != "tag:yaml.org,2002:str":
                    self.errors.append(self._diag(knode, "mapping keys must be plain names"))
                    continue
                key = knode.value
                if key in out:
                    self.errors.append(self._diag(knode, f"duplicate key '{key[:64]}'"))
                    continue
                self.src.keys[(*path, key)] = (
                    knode.start_mark.line + 1,
                    knode.start_mark.column + 1,
                )
                out[key] = self.convert(vnode, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(v, (*path, i)) for i, v in enumerate(node.value)]
        tag = node.tag
        if tag == "tag:yaml.org,2002:str":
            return node.value
        fast = _FAST.get(tag)
        if fast is not None:
            try:
                return fast(node.value)
            except (ValueError, KeyError):
                pass  # unusual spellings (0x1F, 1_000, 0o17): let PyYAML read them
        try:
            return _SCALAR.construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as e:
            self.errors.append(self._diag(node, f"cannot read value: {e}"))
            return None

    def _diag(self, node: yaml.Node, message: str) -> Diagnostic:
        m = node.start_mark
        return Diagnostic(self.src.file, m.line + 1, m.column + 1, message)
