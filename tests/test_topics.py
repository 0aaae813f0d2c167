"""Tests for policies.topics: examples, plus brute force over a tiny alphabet.

The brute force is the real specification: over levels {'a', 'b', '$s', ''} any
intersection of two filters has a witness made of those levels (a free level can
always be 'a'), so enumerating every topic up to one level deeper than the
deeper filter decides intersection exactly.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.topics import (
    FilterTrie,
    filter_error,
    intersects,
    matches,
    topic_error,
    witness,
)

ALPHABET = ["a", "b", "$s", ""]


def ref_matches(pattern: str, topic: str) -> bool:
    """Straightforward recursive reference matcher, written from the spec."""
    p = pattern.split("/")
    t = topic.split("/")
    if t[0].startswith("$") and p[0] in ("+", "#"):
        return False

    def go(i: int, j: int) -> bool:
        if i == len(p):
            return j == len(t)
        if p[i] == "#":
            return True
        if j == len(t):
            return False
        return (p[i] == "+" or p[i] == t[j]) and go(i + 1, j + 1)

    return go(0, 0)


def all_topics(max_depth: int, alphabet: list[str] = ALPHABET) -> list[str]:
    """Every valid topic over `alphabet` with 1..max_depth levels."""
    out = []
    for depth in range(1, max_depth + 1):
        for levels in itertools.product(alphabet, repeat=depth):
            topic = "/".join(levels)
            if topic:  # "" is not a valid topic name
                out.append(topic)
    return out


TOPICS_BY_DEPTH = {d: all_topics(d) for d in range(1, 6)}


def depth(f: str) -> int:
    return f.count("/") + 1


def brute_intersects(a: str, b: str) -> bool:
    """Is there a topic over ALPHABET plus the filters' own literals matching both?"""
    n = max(depth(a), depth(b)) + 1
    known = [*ALPHABET, "+", "#"]
    extra = sorted({lv for lv in a.split("/") + b.split("/") if lv not in known})
    candidates = all_topics(n, ALPHABET + extra) if extra else TOPICS_BY_DEPTH[n]
    return any(ref_matches(a, t) and ref_matches(b, t) for t in candidates)


@st.composite
def filters(draw: st.DrawFn, max_depth: int = 4) -> str:
    n = draw(st.integers(1, max_depth))
    levels = draw(st.lists(st.sampled_from([*ALPHABET, "+"]), min_size=n, max_size=n))
    if draw(st.booleans()):
        levels[-1] = "#"
    f = "/".join(levels)
    return f if f else "+"


@st.composite
def topics(draw: st.DrawFn, max_depth: int = 5) -> str:
    n = draw(st.integers(1, max_depth))
    t = "/".join(draw(st.lists(st.sampled_from(ALPHABET), min_size=n, max_size=n)))
    return t if t else "a"


SMALL_FILTERS = [
    f
    for d in (1, 2)
    for levels in itertools.product([*ALPHABET, "+", "#"], repeat=d)
    if "#" not in levels[:-1] and (f := "/".join(levels))
]


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "pattern",
    ["#", "+", "/", "//", "a//b", "/a", "a/", "+/+", "a/+/#", "$SYS/#", "+/#", "/#", "x" * 65535],
)
def test_valid_filters(pattern: str) -> None:
    assert filter_error(pattern) is None


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("", "empty filter"),
        ("a+/b", "'+' must be a whole level (like 'a/+/b')"),
        ("a/++", "'+' must be a whole level"),
        ("+a", "'+' must be a whole level"),
        ("a/#/b", "'#' must be the last level (like 'a/b/#')"),
        ("#/a", "'#' must be the last level"),
        ("a/b#", "'#' must be a whole level"),
        ("##", "'#' must be a whole level"),
        ("a/\0", "must not contain NUL"),
        ("x" * 65536, "too long"),
        ("é" * 32768, "too long"),  # 65536 bytes of UTF-8
        ("a/\ud800", "UTF-8"),
    ],
)
def test_invalid_filters(pattern: str, fragment: str) -> None:
    err = filter_error(pattern)
    assert err is not None
    assert fragment in err


@pytest.mark.parametrize("topic", ["a", "/", "a//b", "/a", "a/", "$SYS/x", "é" * 32767])
def test_valid_topics(topic: str) -> None:
    assert topic_error(topic) is None


@pytest.mark.parametrize(
    ("topic", "fragment"),
    [
        ("", "empty topic"),
        ("a/+", "'+' or '#'"),
        ("#", "'+' or '#'"),
        ("a#", "'+' or '#'"),
        ("a\0b", "NUL"),
        ("x" * 65536, "too long"),
    ],
)
def test_invalid_topics(topic: str, fragment: str) -> None:
    err = topic_error(topic)
    assert err is not None
    assert fragment in err


@given(filters())
def test_generated_filters_are_valid(f: str) -> None:
    assert filter_error(f) is None


@given(st.text(alphabet="ab/+#$\0", max_size=8))
def test_filter_error_agrees_with_definition(text: str) -> None:
    levels = text.split("/")
    ok = (
        text != ""
        and "\0" not in text
        and all(lv in ("+", "#") or ("+" not in lv and "#" not in lv) for lv in levels)
        and "#" not in levels[:-1]
    )
    assert (filter_error(text) is None) == ok
    assert (topic_error(text) is None) == (text != "" and not set(text) & {"\0", "+", "#"})


# ---------------------------------------------------------------- matches


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        ("a/+", "a/b", True),
        ("a/+", "a", False),
        ("a/+", "a/", True),  # '+' matches an empty level
        ("a/+", "a/b/c", False),
        ("a/#", "a", True),  # '#' matches zero levels: the parent
        ("a/#", "a/b/c", True),
        ("a/#", "ab", False),
        ("#", "a", True),
        ("#", "/", True),
        ("+", "a", True),
        ("+", "/a", False),
        ("+/+", "/a", True),
        ("/#", "/", True),
        ("a//b", "a//b", True),
        ("a//b", "a/b", False),
        ("#", "$SYS/x", False),  # the $ rule
        ("+/x", "$SYS/x", False),
        ("+", "$", False),
        ("$SYS/#", "$SYS/x", True),
        ("$SYS/#", "$SYS", True),
        ("$SYS/+", "$SYS/x", True),
        ("a/#", "a/$x", True),  # the $ rule is about the first level only
        ("+/+", "a/$x", True),
    ],
)
def test_matches_examples(pattern: str, topic: str, expected: bool) -> None:
    assert matches(pattern, topic) is expected
    assert ref_matches(pattern, topic) is expected


@settings(max_examples=500)
@given(filters(), topics())
def test_matches_against_reference(pattern: str, topic: str) -> None:
    assert matches(pattern, topic) == ref_matches(pattern, topic)


# ---------------------------------------------------------------- intersects / witness


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("registry/#", "+/+/snapshots/#", True),
        ("#", "$SYS/#", False),
        ("a/+", "a", False),
        ("a/#", "a", True),
        ("+/#", "$x", False),
        ("$SYS/+", "$SYS/#", True),
        ("#", "#", True),
        ("+", "+", True),
        ("#", "+", True),
        ("a/b", "a/c", False),
        ("a/+/c", "a/b/+", True),
        ("a/+", "a/+/+", False),
        ("a/+/#", "a", False),
        ("a//b", "a/+/b", True),
        ("+", "/#", False),  # the only candidate would be the invalid empty topic
        ("#", "/#", True),
        ("/#", "/#", True),
        ("+/#", "/#", True),
        ("+", "/+", False),
    ],
)
def test_intersects_examples(a: str, b: str, expected: bool) -> None:
    assert intersects(a, b) is expected
    assert intersects(b, a) is expected
    assert brute_intersects(a, b) is expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("registry/#", "+/+/snapshots/#", "registry/x/snapshots"),
        ("a/#", "a", "a"),
        ("$SYS/+", "$SYS/#", "$SYS/x"),
        ("#", "#", "x"),
        ("/#", "#", "/x"),
        ("a/+/c", "+/b/+", "a/b/c"),
        ("#", "$SYS/#", None),
    ],
)
def test_witness_examples(a: str, b: str, expected: str | None) -> None:
    assert witness(a, b) == expected


def test_witness_respects_length_limit() -> None:
    a, b = "A" * 40000 + "/+", "+/" + "B" * 40000
    assert filter_error(a) is None and filter_error(b) is None
    assert witness(a, b) is None and not intersects(a, b)
    # Filling with 'x' would be one byte too long; empty free levels still fit.
    a, b = "A" * 32767 + "/+/+", "+/+/" + "B" * 32766
    w = witness(a, b)
    assert w == "A" * 32767 + "//" + "B" * 32766
    assert topic_error(w) is None and matches(a, w) and matches(b, w)
    trie: FilterTrie[int] = FilterTrie()
    trie.add("A" * 40000 + "/+", 0)
    trie.add("+/" + "B" * 32766, 1)
    trie.add("+/x", 2)
    assert trie.intersecting("+/" + "B" * 40000) == []
    assert trie.intersecting("A" * 32767 + "/+") == [1, 2]


def check_pair(a: str, b: str) -> None:
    expected = brute_intersects(a, b)
    assert intersects(a, b) == expected, (a, b)
    assert intersects(b, a) == expected, (a, b)
    w = witness(a, b)
    assert (w is not None) == expected, (a, b, w)
    if w is not None:
        assert topic_error(w) is None, (a, b, w)
        assert ref_matches(a, w) and ref_matches(b, w), (a, b, w)


@settings(max_examples=400, deadline=None)
@given(filters(), filters())
def test_intersects_brute_force(a: str, b: str) -> None:
    check_pair(a, b)


def test_intersects_exhaustive_small() -> None:
    assert len(SMALL_FILTERS) == 35
    for a in SMALL_FILTERS:
        for b in SMALL_FILTERS:
            check_pair(a, b)


# ---------------------------------------------------------------- FilterTrie


def test_trie_examples() -> None:
    trie: FilterTrie[str] = FilterTrie()
    for f in ["a/b", "#", "a/+", "a/#", "+/#", "$SYS/#", "a/b", "+", "/#", "a//b", "a/+/+"]:
        trie.add(f, f)
    assert len(trie) == 11
    assert trie.match("a/b") == ["a/b", "#", "a/+", "a/#", "+/#", "a/b"]
    assert trie.match("a") == ["#", "a/#", "+/#", "+"]
    assert trie.match("$SYS/x") == ["$SYS/#"]
    assert trie.match("$SYS") == ["$SYS/#"]
    assert trie.match("$other") == []
    assert trie.match("a//b") == ["#", "a/#", "+/#", "a//b", "a/+/+"]
    assert trie.match("/") == ["#", "+/#", "/#"]
    assert trie.intersecting("$SYS/+") == ["$SYS/#"]
    assert trie.intersecting("+") == ["#", "a/#", "+/#", "+"]  # not '/#'
    assert trie.intersecting("/#") == ["#", "+/#", "/#"]  # not '+'
    assert trie.intersecting("a/b/c") == ["#", "a/#", "+/#", "a/+/+"]
    everything_but_sys = ["a/b", "#", "a/+", "a/#", "+/#", "a/b", "+", "/#", "a//b", "a/+/+"]
    assert trie.intersecting("#") == everything_but_sys
    assert trie.intersecting("+/#") == everything_but_sys
    assert trie.intersecting("$SYS") == ["$SYS/#"]


def test_trie_rejects_invalid() -> None:
    trie: FilterTrie[int] = FilterTrie()
    with pytest.raises(ValueError, match="must be the last level"):
        trie.add("a/#/b", 1)
    with pytest.raises(ValueError, match="empty filter"):
        trie.add("", 1)
    assert len(trie) == 0
    assert trie.match("a") == []
    assert trie.intersecting("#") == []


def test_trie_deep_filters() -> None:
    trie: FilterTrie[int] = FilterTrie()
    deep = "/" * 40000
    trie.add(deep, 0)
    trie.add(deep + "#", 1)
    assert trie.match(deep) == [0, 1]
    assert trie.intersecting("#") == [0, 1]
    assert trie.intersecting("+/#") == [0, 1]


@settings(max_examples=200, deadline=None)
@given(st.lists(filters(), max_size=25), st.lists(topics(), min_size=1, max_size=10))
def test_trie_match_against_loop(pats: list[str], tops: list[str]) -> None:
    trie: FilterTrie[int] = FilterTrie()
    for i, f in enumerate(pats):
        trie.add(f, i)
    for t in tops:
        assert trie.match(t) == [i for i, f in enumerate(pats) if matches(f, t)]


@settings(max_examples=200, deadline=None)
@given(st.lists(filters(), max_size=25), st.lists(filters(), min_size=1, max_size=10))
def test_trie_intersecting_against_loop(pats: list[str], queries: list[str]) -> None:
    trie: FilterTrie[int] = FilterTrie()
    for i, f in enumerate(pats):
        trie.add(f, i)
    for q in queries:
        assert trie.intersecting(q) == [i for i, f in enumerate(pats) if intersects(q, f)]


def test_trie_exhaustive_small() -> None:
    trie: FilterTrie[str] = FilterTrie()
    for f in SMALL_FILTERS:
        trie.add(f, f)
    for q in SMALL_FILTERS:
        assert trie.intersecting(q) == [f for f in SMALL_FILTERS if intersects(q, f)], q
    for t in TOPICS_BY_DEPTH[3]:
        assert trie.match(t) == [f for f in SMALL_FILTERS if matches(f, t)], t
