"""Issue 10, class 8: input that looks right and is not. Invisible characters and look-alike
letters in topic filters and names are refused where they stand (FILE:LINE:COL), a bad value is
echoed in its error, and a path that is not what a command expects is one line and exit 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from conftest import EXAMPLE, Site
from policies import PolicyError, load_policy
from policies.lookalike import problem


def errors(site: Site) -> list[str]:
    with pytest.raises(PolicyError) as exc:
        load_policy(site.root)
    return [str(d) for d in exc.value.diagnostics]


NEVER = '"site/+/snapshots/#"'


@pytest.mark.parametrize(
    ("new", "needle"),
    [
        ('"site/+/snap\u200bshots/#"', "U+200B ZERO WIDTH SPACE"),
        ('"site/+/snapshots\u2060/#"', "U+2060 WORD JOINER"),
        ('"site/+/\u202esnapshots/#"', "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ('"\ufeffsite/+/snapshots/#"', "U+FEFF ZERO WIDTH NO-BREAK SPACE"),
        ('"site/+/snap\u0455hots/#"', "U+0455 CYRILLIC SMALL LETTER DZE"),  # ѕ for s
        ('"site/+/sn\u0430pshots/#"', "U+0430 CYRILLIC SMALL LETTER A"),  # а for a
        ('"site/+/snapsh\u03bfts/#"', "GREEK SMALL LETTER OMICRON"),  # ο for o
        ('"site/+/\uff53napshots/#"', "FULLWIDTH LATIN SMALL LETTER S"),
        ('"site/+/cafe\u0301/#"', "NFC"),
    ],
)
def test_a_never_rule_that_only_looks_right_is_refused_where_it_stands(
    site: Site, new: str, needle: str
) -> None:
    line = site.line_of("mqtt.yaml", NEVER)
    col = site.text("mqtt.yaml").splitlines()[line - 1].index(NEVER) + 1
    site.edit("mqtt.yaml", NEVER, new)
    found = [e for e in errors(site) if needle in e]
    assert found, errors(site)
    assert found[0].startswith(f"{site.root}/mqtt.yaml:{line}:{col}: topics[")
    assert ".pattern: " in found[0]


def test_a_foreign_letter_in_a_name_is_named(site: Site) -> None:
    site.edit("mqtt.yaml", "name: hub", "name: hu\u0431")
    (err,) = [e for e in errors(site) if "bridge.name" in e]
    assert "U+0431 CYRILLIC SMALL LETTER BE at offset 2" in err


def test_a_client_filter_with_an_invisible_character_is_refused(site: Site) -> None:
    site.edit("mqtt.yaml", 'publish: ["site/cam-02/#"]', 'publish: ["site/cam-02\u200c/#"]')
    assert any("clients[" in e and "U+200C ZERO WIDTH NON-JOINER" in e for e in errors(site))


def test_a_reason_cannot_hide_text_with_bidi_controls(site: Site) -> None:
    site.edit("mqtt.yaml", "reason: raw imagery", "reason: raw \u2066imagery\u2069")
    assert any(".reason: " in e and "U+2066" in e for e in errors(site))


def test_real_words_in_one_script_are_accepted(site: Site) -> None:
    site.edit("mqtt.yaml", NEVER, '"site/+/снимки/#"')  # Cyrillic, one script per level
    load_policy(site.root)
    assert problem("évènements/café/カメラ映像") is None  # Latin with accents; Japanese
    assert unicodedata.is_normalized("NFC", "café")


def test_a_bad_value_is_echoed_with_its_place(site: Site) -> None:
    old = '{pattern: "health/#",                direction: up,'
    text = site.text("mqtt.yaml")
    assert old in text, "the example changed: update this test"
    site.edit("mqtt.yaml", old, old.replace("direction: up,", "direction: sideways,"))
    line = site.line_of("mqtt.yaml", "sideways")
    col = site.text("mqtt.yaml").splitlines()[line - 1].index("sideways") + 1
    index = next(
        i
        for i, ln in enumerate(
            ln for ln in site.text("mqtt.yaml").splitlines() if "{pattern:" in ln
        )
        if "sideways" in ln
    )
    want = (
        f"{site.root}/mqtt.yaml:{line}:{col}: topics[{index}].direction: 'sideways' is not one "
        "of up, down, local, never"
    )
    assert want in errors(site)


def cell(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cell.cli", *args], capture_output=True, text=True, timeout=60
    )


def _one_line_exit_2(r: subprocess.CompletedProcess[str], needle: str) -> None:
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert needle in r.stderr and "internal error" not in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["validate", "--repo", "/dev/null"], "--repo /dev/null: is a device"),
        (["validate", "--repo", "{file}"], "expected a directory"),
        (["render", "--repo", str(EXAMPLE), "--out", "{file}"], "--out"),
        (["render", "--repo", str(EXAMPLE), "--out", "/dev/null"], "--out /dev/null"),
        (["render", "--repo", str(EXAMPLE), "--out", "/proc"], "not a place this command can use"),
        (["drift", "--state-dir", "{file}"], "--state-dir"),
        (["drift", "--state-dir", "{file}/below"], "a part of the path is a file"),
        (["log", "--state-dir", "/dev/null"], "--state-dir /dev/null"),
        (["audit", "verify", "--state-dir", "{file}"], "--state-dir"),
        (["apply", "--repo", str(EXAMPLE), "--state-dir", "/dev/zero"], "--state-dir"),
        (["bridge", "status", "--repo", "/dev/null"], "--repo"),
        (["pcap", "--since", "-1h", "--out", "/dev/null", "--state-dir", "{dir}"], "--out"),
        (["pcap", "--since", "-1h", "--out", "{dir}", "--state-dir", "{dir}"], "a directory"),
        (["enroll", "--signers", "/dev/null", "--state-dir", "{dir}/s"], "not a regular file"),
        (["enroll", "--signers", "{dir}", "--state-dir", "{dir}/s"], "--signers"),
        (["enroll", "--signers", "{fifo}", "--state-dir", "{dir}/s"], "not a regular file"),
        (["drift", "--state-dir", "{fifo}"], "a device or special file"),
    ],
)
def test_a_path_that_is_not_what_the_command_expects(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    file, fifo = tmp_path / "a-file", tmp_path / "a-fifo"
    file.write_text("x")
    os.mkfifo(fifo)  # opening it to read would wait for a writer: never done
    filled = [a.format(file=file, dir=tmp_path, fifo=fifo) for a in args]
    _one_line_exit_2(cell(*filled), needle)


def test_an_environment_path_is_checked_too(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "cell.cli", "log"],
        capture_output=True,
        text=True,
        env={**os.environ, "CELL_STATE_DIR": "/dev/null"},
    )
    _one_line_exit_2(r, "$CELL_STATE_DIR /dev/null")


def test_an_invisible_character_in_a_key_is_shown(site: Site) -> None:
    site.edit("mqtt.yaml", "\ntopics:", "\ntop\u200bics:")
    assert any(
        "unknown key 'top\\u200bics'" in e and "did you mean 'topics'" in e for e in errors(site)
    )
