"""MQTT topic names and topic filters (MQTT 3.1.1 / 5 semantics).

Policy rules are topic filters, so the policy layer needs what a broker never
offers: validation with actionable messages, exact filter-vs-filter intersection
(to find overlapping rules, with an example topic for the operator), and a
matcher fast enough for the per-message path.  Rules, per the specification:
levels are '/'-separated and may be empty; '+' is a whole level matching one
level; '#' is a whole, final level matching zero or more levels ("a/#" matches
"a"); a filter whose first level is a wildcard never matches a topic whose first
level starts with '$' (the $ rule); names and filters are non-empty, NUL-free and
at most 65535 bytes of UTF-8.

`matches`, `intersects` and `witness` assume valid inputs (validate once with
`filter_error` / `topic_error`, not on every hot-path call); `FilterTrie.add`
validates, so a bad rule cannot slip silently into a table.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")

MAX_BYTES = 65535
"""Longest topic name or filter MQTT can carry (2-byte length prefix)."""

_FILL = "x"
"""What a '+' (or a level under '#') becomes in a witness: short and not '$'."""


def _common_error(text: str, what: str) -> str | None:
    """Checks shared by names and filters, so both report them identically."""
    if not text:
        return f"empty {what}"
    if "\0" in text:
        return "must not contain NUL"
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return "must be valid UTF-8 (no lone surrogates)"
    if size > MAX_BYTES:
        return f"too long: {size} bytes of UTF-8, at most {MAX_BYTES} allowed"
    return None


def filter_error(pattern: str) -> str | None:
    """None if `pattern` is a valid topic filter, else what is wrong and what is right.

    Messages are meant to be shown verbatim to whoever wrote the rule, so each one
    says what the correct form looks like rather than just "invalid".
    """
    err = _common_error(pattern, "filter")
    if err is not None:
        return err
    levels = pattern.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if "#" in level:
            if level != "#":
                return f"'#' must be a whole level (like 'a/#'), not {level!r}"
            if i != last:
                return "'#' must be the last level (like 'a/b/#')"
        if "+" in level and level != "+":
            return f"'+' must be a whole level (like 'a/+/b'), not {level!r}"
    return None


def topic_error(topic: str) -> str | None:
    """None if `topic` is a valid concrete topic name, else what is wrong.

    Wildcards are refused outright: a published name containing them would be
    ambiguous to every subscriber, and the broker rejects it anyway.
    """
    err = _common_error(topic, "topic")
    if err is not None:
        return err
    if "+" in topic or "#" in topic:
        return "a topic name must not contain '+' or '#' (those are only for filters)"
    return None


def matches(pattern: str, topic: str) -> bool:
    """Does the (valid) filter `pattern` match the (valid) topic name `topic`?

    Implements the $ rule: a leading wildcard never matches a '$' topic, so that
    "#" subscribers do not see broker-internal $SYS traffic.
    """
    plevels = pattern.split("/")
    tlevels = topic.split("/")
    if topic[:1] == "$" and plevels[0] in ("+", "#"):
        return False
    ntop = len(tlevels)
    for i, p in enumerate(plevels):
        if p == "#":
            return True  # zero or more remaining levels, including none ("a/#" ~ "a")
        if i >= ntop or (p != "+" and p != tlevels[i]):
            return False
    return len(plevels) == ntop


def witness(a: str, b: str) -> str | None:
    """A concrete topic matching both (valid) filters, or None if there is none.

    Used for error messages ("overlaps, e.g. registry/x/snapshots/y"), and as the
    single definition of intersection: `intersects` is "a witness exists".  The
    shortest level count is used, '+' (and levels under '#') become 'x'.
    """
    la = a.split("/")
    lb = b.split("/")
    hash_a = la[-1] == "#"
    hash_b = lb[-1] == "#"
    fixed_a = la[:-1] if hash_a else la  # levels before any '#'
    fixed_b = lb[:-1] if hash_b else lb
    na, nb = len(fixed_a), len(fixed_b)
    # Level count m of the topic: exactly n for a filter without '#', >= n with it.
    m = max(na, nb, 1)
    if (not hash_a and na != m) or (not hash_b and nb != m):
        return None
    # Per level: a literal both agree on, or None where either side is free.
    levels: list[str | None] = []
    for i in range(m):
        x = fixed_a[i] if i < na else "+"
        y = fixed_b[i] if i < nb else "+"
        if x == "+":
            levels.append(None if y == "+" else y)
        elif y in ("+", x):
            levels.append(x)
        else:
            return None
    first = levels[0]
    wild_first = la[0] in ("+", "#") or lb[0] in ("+", "#")
    if first is not None and first[:1] == "$" and wild_first:
        return None  # the $ rule: a leading wildcard never matches a '$' level
    if m == 1 and first == "":
        # The only candidate would be "", which is not a valid topic name
        # (this is exactly the pair '/#' and '+'); one more level fixes it if allowed.
        if not (hash_a and hash_b):
            return None
        levels.append(None)
    text = "/".join(_FILL if level is None else level for level in levels)
    if len(text.encode("utf-8")) > MAX_BYTES:
        # Only reachable with huge filters: retry with the shortest possible fill.
        # With two or more levels every free level may be empty; with one level
        # the text is short, so this branch never needs a non-empty fill.
        text = "/".join("" if level is None else level for level in levels)
        if len(text.encode("utf-8")) > MAX_BYTES:
            return None
    return text


def intersects(a: str, b: str) -> bool:
    """True iff some valid topic name matches both (valid) filters `a` and `b`.

    This is exact filter intersection, not text comparison: 'registry/#' and
    '+/+/snapshots/#' intersect, '#' and '$SYS/#' do not (the $ rule).
    """
    return witness(a, b) is not None


class _Node:
    """One trie level.  Ids are insertion sequence numbers, kept ascending per list."""

    __slots__ = ("children", "ends", "hashes", "plus", "subtree")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}  # literal next level
        self.plus: _Node | None = None  # '+' next level
        self.hashes: list[int] = []  # filters with '#' right below this node
        self.ends: list[int] = []  # filters ending exactly at this node
        self.subtree: list[int] | None = None  # cache of every id at/below here

    def all_ids(self) -> list[int]:
        """Every id stored at or below this node (cached: overlap checks repeat it)."""
        ids = self.subtree
        if ids is None:
            ids = []
            stack = [self]  # iterative: a filter may have ~32k levels
            while stack:
                node = stack.pop()
                if node.subtree is not None:
                    ids += node.subtree
                    continue
                ids += node.ends
                ids += node.hashes
                stack.extend(node.children.values())
                if node.plus is not None:
                    stack.append(node.plus)
            self.subtree = ids
        return ids


class FilterTrie(Generic[T]):
    """A trie of topic filters, each carrying a value (e.g. a rule index).

    Built once, queried many times.  Queries walk level by level (literal child,
    '+' child, '#' list), so their cost depends on the topic's depth and on how
    many filters can actually match, not on how many filters are stored.
    """

    __slots__ = ("_blen", "_maxlen", "_patterns", "_root", "_values")

    def __init__(self) -> None:
        self._root = _Node()
        self._values: list[T] = []
        self._patterns: list[str] = []
        self._blen: list[int] = []  # UTF-8 size per filter, for the length edge case
        self._maxlen = 0

    def __len__(self) -> int:
        return len(self._values)

    def add(self, pattern: str, value: T) -> None:
        """Store `value` under filter `pattern`; raises ValueError if it is invalid."""
        err = filter_error(pattern)
        if err is not None:
            raise ValueError(f"invalid topic filter {pattern!r}: {err}")
        ident = len(self._values)
        self._values.append(value)
        self._patterns.append(pattern)
        size = len(pattern.encode("utf-8"))
        self._blen.append(size)
        self._maxlen = max(self._maxlen, size)
        node = self._root
        node.subtree = None
        levels = pattern.split("/")
        hashed = levels[-1] == "#"
        if hashed:
            levels.pop()
        for level in levels:
            if level == "+":
                nxt = node.plus
                if nxt is None:
                    nxt = node.plus = _Node()
            else:
                nxt = node.children.get(level)
                if nxt is None:
                    nxt = node.children[level] = _Node()
            node = nxt
            node.subtree = None
        (node.hashes if hashed else node.ends).append(ident)

    def match(self, topic: str) -> list[T]:
        """Values of every filter matching the (valid) topic, in insertion order.

        Hot path (hundreds of thousands of calls per second): follow one path down
        the trie, remembering a '+' branch on a small stack only where a literal
        child also exists, so a typical call allocates just the split and result.
        """
        levels = topic.split("/")
        n = len(levels)
        found: list[int] = []
        node = self._root
        i = 0
        if topic[:1] == "$":  # the $ rule: skip the root's '+' and '#'
            child = node.children.get(levels[0])
            if child is None:
                return []
            node, i = child, 1
        stack: list[tuple[_Node, int]] | None = None
        while True:
            if node.hashes:
                found += node.hashes  # '#' here matches the rest, even nothing
            if i == n:
                if node.ends:
                    found += node.ends
            else:
                plus = node.plus
                child = node.children.get(levels[i])
                i += 1
                if child is not None:
                    if plus is not None:
                        if stack is None:
                            stack = [(plus, i)]
                        else:
                            stack.append((plus, i))
                    node = child
                    continue
                if plus is not None:
                    node = plus
                    continue
            if not stack:
                return self._collect(found)
            node, i = stack.pop()

    def _collect(self, found: list[int]) -> list[T]:
        """Ids to values, in insertion order (ids are insertion sequence numbers)."""
        if not found:
            return []
        if len(found) > 1:
            found.sort()
        values = self._values
        return [values[i] for i in found]

    def intersecting(self, pattern: str) -> list[T]:
        """Values of every stored filter that intersects (valid) `pattern`, in insertion order.

        Walks the trie and the pattern together, so that checking every rule of a
        policy against all others is near-linear for realistic rule sets.  Agrees
        exactly with `intersects`, including the $ rule and the corner cases.
        """
        plevels = pattern.split("/")
        n = len(plevels)
        root = self._root
        found: list[int] = []
        # State: (trie node at depth i, i).  Each node is visited at most once.
        # At the root the $ rule applies: a literal '$...' level never meets a
        # wildcard, whichever of the two filters the wildcard is in.
        stack = [(root, 0)]
        while stack:
            node, i = stack.pop()
            if i == n:  # pattern exhausted: same-length ends and any '#' here
                found += node.ends
                found += node.hashes
                continue
            p = plevels[i]
            if p == "#":  # everything at or below this node intersects
                if node is not root:
                    found += node.all_ids()
                    continue
                found += root.hashes
                for key, child in root.children.items():
                    if key[:1] != "$":
                        found += child.all_ids()
                if root.plus is not None:
                    found += root.plus.all_ids()
                continue
            if p == "+":
                stack.extend(
                    (child, i + 1)
                    for key, child in node.children.items()
                    if node is not root or key[:1] != "$"
                )
            else:
                nxt = node.children.get(p)
                if nxt is not None:
                    stack.append((nxt, i + 1))
                if node is root and p[:1] == "$":
                    continue
            found += node.hashes  # a stored '#' here covers the pattern's remaining levels
            if node.plus is not None:
                stack.append((node.plus, i + 1))
        return self._collect(self._exact(pattern, found))

    def _exact(self, pattern: str, found: list[int]) -> list[int]:
        """Drop the rare structural matches that `witness` rules out.

        Two cases escape the level-by-level walk: the pair '+' / '/#' (whose only
        common topic would be the invalid empty name), and pairs so long that no
        common topic fits in 65535 bytes (possible only when their sizes sum past
        that, since a witness is never longer than both filters together).
        """
        other = {"+": "/#", "/#": "+"}.get(pattern)
        size = len(pattern.encode("utf-8"))
        if other is None and size + self._maxlen <= MAX_BYTES:
            return found
        patterns, blen = self._patterns, self._blen
        return [
            i
            for i in found
            if patterns[i] != other
            and (size + blen[i] <= MAX_BYTES or intersects(pattern, patterns[i]))
        ]
