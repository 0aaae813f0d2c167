"""The fleet model, pure: rows from hub messages, worst first, stale by the document's own
deadline (never its last green), --expect, the banner, the hub layout and the --expect file."""

from __future__ import annotations

import time

import pytest

from cell.errors import UsageError
from cell.fleet.expect import load_expect
from cell.fleet.model import FleetModel, HubLayout, banner
from cell.status.document import Availability
from fleetdocs import COMMIT, offline, online, payload, status
from policies.clock import iso

NOW = time.time()


def model_of(docs: dict[str, bytes], **kw: object) -> FleetModel:
    m = FleetModel(**kw)  # type: ignore[arg-type]
    for topic, body in docs.items():
        m.ingest(topic, body, NOW)
    return m


def test_rows_worst_first_with_the_issue_shape() -> None:
    m = model_of(
        {
            "sites/zz-good/cell/status": payload(status("zz-good", ts=NOW, blocked=847)),
            "sites/zz-good/cell/bridge": b"1",
            "sites/aa-good/cell/status": payload(status("aa-good")),
            "sites/mm-risk/cell/status": payload(status("mm-risk", failed="drift")),
            "sites/mm-risk/cell/bridge": b"0",
            "sites/bb-old/cell/status": payload(status("bb-old", ts=NOW - 120)),
            "sites/cc-unk/cell/status": payload(status("cc-unk", missing="capture")),
        }
    )
    fleet = m.snapshot(NOW)
    assert [(r.site, r.verdict) for r in fleet.sites] == [
        ("mm-risk", "at_risk"),
        ("bb-old", "stale"),
        ("cc-unk", "unknown"),
        ("aa-good", "sovereign"),
        ("zz-good", "sovereign"),
    ]
    doc = fleet.to_json()
    assert (doc["total"], doc["sovereign"]) == (5, 2)
    rows = doc["sites"]
    assert isinstance(rows, list)
    assert list(rows[0]) == [
        "site", "verdict", "reason", "bridge", "last_seen", "commit", "dns_blocked_today", "failing"
    ]  # fmt: skip
    assert rows[0]["reason"] == "drift: drift broken" and rows[0]["bridge"] == "down"
    assert rows[0]["failing"] == ["drift"]
    assert rows[2]["reason"] == "capture: no result yet"
    assert rows[4] == {
        "site": "zz-good",
        "verdict": "sovereign",
        "reason": None,
        "bridge": "up",
        "last_seen": status("x", ts=NOW).ts,
        "commit": COMMIT,
        "dns_blocked_today": 847,
        "failing": [],
    }
    assert banner(fleet) == "▲ FLEET · 3 AT RISK ▲" and not fleet.ok


def test_stale_is_the_documents_own_deadline_never_its_last_green() -> None:
    m = model_of({"sites/s/cell/status": payload(status("s", ts=NOW - 50, fresh_for=60))})
    assert m.snapshot(NOW).sites[0].verdict == "sovereign"
    later = m.snapshot(NOW + 10.5).sites[0]
    assert later.verdict == "stale" and later.reason is not None
    assert (
        later.reason.startswith("stale: no status since") and "last said sovereign" in later.reason
    )
    # A failure stays a failure when old: nothing has shown it recovered.
    m.ingest("sites/s/cell/status", payload(status("s", ts=NOW - 500, failed="sinkhole")), NOW)
    assert m.snapshot(NOW).sites[0].verdict == "at_risk"


def test_the_daemons_will_makes_a_fresh_document_stale() -> None:
    m = model_of(
        {
            "sites/s/cell/status": payload(status("s", ts=NOW - 5)),
            "sites/s/cell/availability": payload(online(NOW - 100)),
        }
    )
    assert m.snapshot(NOW).sites[0].verdict == "sovereign"
    m.ingest("sites/s/cell/availability", payload(offline(NOW - 1)), NOW)
    row = m.snapshot(NOW).sites[0]
    assert row.verdict == "stale" and row.reason is not None and "offline" in row.reason
    # An older will (a previous run) does not outweigh a newer status.
    m.ingest("sites/s/cell/availability", payload(offline(NOW - 10)), NOW)
    assert m.snapshot(NOW).sites[0].verdict == "sovereign"


def test_no_document_unreadable_document_and_a_document_of_another_site() -> None:
    m = model_of(
        {
            "sites/only-bridge/cell/bridge": b"0",
            "sites/junk/cell/status": b"{not json",
            "sites/liar/cell/status": payload(status("lisbon-01")),
            "sites/x/cell/other": b"ignored",
            "elsewhere/x/cell/status": b"ignored",
        }
    )
    rows = {r.site: r for r in m.snapshot(NOW).sites}
    assert set(rows) == {"only-bridge", "junk", "liar"}
    assert rows["only-bridge"].verdict == "unknown" and rows["only-bridge"].bridge == "down"
    assert rows["junk"].verdict == "unknown" and "unreadable" in (rows["junk"].reason or "")
    assert rows["liar"].verdict == "at_risk" and "names site lisbon-01" in (
        rows["liar"].reason or ""
    )


def test_cleared_retained_messages_remove_a_site() -> None:
    m = model_of({"sites/s/cell/status": payload(status("s")), "sites/s/cell/bridge": b"1"})
    m.ingest("sites/s/cell/status", b"", NOW)
    assert m.snapshot(NOW).sites[0].verdict == "unknown"
    m.ingest("sites/s/cell/bridge", b"", NOW)
    assert m.snapshot(NOW).sites == []


def test_expect_compares_commits_and_names_the_missing() -> None:
    other = "b" * 40
    expect = {"right": COMMIT[:7], "wrong": other, "absent": other}
    m = model_of(
        {
            "sites/right/cell/status": payload(status("right")),
            "sites/wrong/cell/status": payload(status("wrong")),
            "sites/free/cell/status": payload(status("free")),
        },
        expect=expect,
    )
    fleet = m.snapshot(NOW)
    rows = {r.site: r for r in fleet.sites}
    assert rows["right"].verdict == "sovereign" and rows["right"].runs_expected is True
    assert rows["wrong"].verdict == "at_risk" and rows["wrong"].runs_expected is False
    assert rows["wrong"].reason == f"commit: runs {COMMIT[:12]}, expected {other[:12]}"
    assert rows["absent"].verdict == "unknown" and rows["absent"].reason == "never seen at the hub"
    assert rows["free"].runs_expected is None  # not in the file: nothing to compare
    row = fleet.to_json(with_expect=True)["sites"][0]  # type: ignore[index]
    assert row["expected"] == other and row["runs_expected"] is False


def test_banner() -> None:
    m = model_of({f"sites/s{i}/cell/status": payload(status(f"s{i}")) for i in range(3)})
    assert banner(m.snapshot(NOW)) == "◆ FLEET · 3/3 SOVEREIGN ◆" and m.snapshot(NOW).ok
    assert banner(FleetModel().snapshot(NOW)) == "▲ FLEET · NO SITE AT THE HUB ▲"
    assert not FleetModel().snapshot(NOW).ok  # an empty fleet proves nothing


def test_hub_layout() -> None:
    lay = HubLayout("tenants/acme/+")
    assert lay.filters() == [
        "tenants/acme/+/cell/status",
        "tenants/acme/+/cell/availability",
        "tenants/acme/+/cell/bridge",
    ]
    assert lay.parse("tenants/acme/s1/cell/bridge") == ("s1", "bridge")
    assert lay.parse("tenants/other/s1/cell/bridge") is None
    assert lay.parse("tenants/acme/s1/cell/check/drift") is None
    for bad in ("sites", "sites/+/+", "sites/#", "$SYS/+", "sites//+"):
        with pytest.raises(ValueError):
            HubLayout(bad)


def test_expect_file_formats_and_errors() -> None:
    text = "# release 42\nlisbon-01 abcdef1\nporto-02: ABCDEF1234  # pinned\n\n"
    assert load_expect(text, "e.txt") == {"lisbon-01": "abcdef1", "porto-02": "abcdef1234"}
    assert load_expect('{"a": "1234567"}', "e.json") == {"a": "1234567"}
    with pytest.raises(UsageError) as e:
        load_expect("ok 1234567\nbad\n  x zz\nok 7654321\n", "e.txt")
    assert str(e.value).splitlines() == [
        "e.txt:2:1: want 'SITE COMMIT', got 'bad'",
        "e.txt:3:5: commit 'zz': want a sha (7 to 64 hex digits)",
        "e.txt:4:1: site 'ok': named twice",
    ]
    with pytest.raises(UsageError, match=r"e.json:1:2: not JSON"):
        load_expect("{x", "e.json")


def test_the_will_of_the_run_that_wrote_the_status_makes_it_stale() -> None:
    """A will carries its run's start time, so it is older than that run's last status: the
    session it names is what says the status's author is gone (a killed daemon, not a clean stop)."""
    doc = status("s", ts=NOW - 5).model_copy(update={"session": "s-1"})
    m = model_of({"sites/s/cell/status": payload(doc)})
    assert m.snapshot(NOW).sites[0].verdict == "sovereign"
    m.ingest("sites/s/cell/availability", payload(offline(NOW - 100)), NOW)  # s-1's will
    row = m.snapshot(NOW).sites[0]
    assert row.verdict == "stale" and row.reason is not None and "offline" in row.reason
    older = Availability(state="offline", ts=iso(NOW - 200), session="s-0")  # an earlier run's
    m.ingest("sites/s/cell/availability", payload(older), NOW)
    assert m.snapshot(NOW).sites[0].verdict == "sovereign"
