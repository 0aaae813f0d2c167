"""The lifecycle's stages and recovery after a kill, on the fake nftables backend, without root.

test_crash.py kills real applies at random instants in a lab; these pin each branch: the stages
promote only after the read-back, a failure leaves no pending entry and one ledger `failure`, and
recovery names as applied exactly the commit whose table is in force.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from cell.artifacts import MANIFEST, render_all
from cell.errors import ApplyError
from cell.gitops import lifecycle
from cell.gitops.recovery import recover
from cell.status.apply import ApplyOutcome
from cell.store import ledger
from cell.store.journal import Entry, read_journal, write_journal
from cell.store.statedir import State
from conftest import Site
from fakegateway import Gateway, fake_gateway
from firewall.document import canonical, objects_of
from policies import Policy, load_policy
from policies.layout import RULESET_JSON as RULESET


@pytest.fixture
def gw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Gateway:
    return fake_gateway(tmp_path, monkeypatch)


@pytest.fixture
def state(tmp_path: Path) -> State:
    return State(tmp_path / "state")


def _plan(state: State, gw: Gateway, policy: Policy, commit: str, **kw: object) -> lifecycle.Plan:
    files = render_all(policy, gw.target.layout)
    entry = Entry(
        commit=commit * 40,
        subject=f"commit {commit}",
        signature={"status": "good"},
        digests=json.loads(files[MANIFEST])["files"],
        rendered=state.store_rendered(files),
        site=policy.site.site.id,
        netns=None,
        layout=asdict(gw.target.layout),
        repo="/repo",
    )
    return lifecycle.Plan("apply", entry, policy, files, gw.target, **kw)  # type: ignore[arg-type]


def _second(site: Site) -> Policy:
    """The example without the cameras' NTP flow: one element fewer in a set of the table."""
    site.edit("network.yaml", "  - {from: cameras, to: gateway, service: ntp}\n", "")
    return load_policy(site.root)


def _table(gw: Gateway) -> bytes:
    return canonical(gw.nft.list_table())


def _rendered(plan: lifecycle.Plan) -> bytes:
    return canonical(objects_of(plan.files[RULESET]))


def test_the_stages_promote_after_the_read_back(state: State, gw: Gateway, site: Site) -> None:
    first = _plan(state, gw, load_policy(site.root), "a")
    out = lifecycle._run(state, read_journal(state), first)
    journal = read_journal(state)
    assert journal.applied == first.entry and journal.pending is None
    assert _table(gw) == _rendered(first)
    record = out.record()
    assert isinstance(record, ApplyOutcome) and record.previous is None
    assert record.commit == "a" * 40 and record.services.broker == "started"
    assert RULESET in record.changes.changed and record.changes.rules.added
    assert [e["kind"] for e in ledger.read(state)] == ["apply"]

    second = _plan(state, gw, _second(site), "b")
    out = lifecycle._run(state, read_journal(state), second)
    assert out.previous == first.entry and read_journal(state).previous == [first.entry]
    assert any("10.10.0.1 . udp . 123" in line for line in out.changes.rules.removed)
    assert _table(gw) == _rendered(second)


def test_a_failed_stage_leaves_no_pending_entry(state: State, gw: Gateway, site: Site) -> None:
    first = _plan(state, gw, load_policy(site.root), "a")
    lifecycle._run(state, read_journal(state), first)
    second = _plan(state, gw, _second(site), "b")
    gw.nft.fail_apply("Error: Could not process rule: Device or resource busy")
    with pytest.raises(ApplyError, match="previous configuration restored"):
        lifecycle._run(state, read_journal(state), second)
    journal = read_journal(state)
    assert journal.applied == first.entry and journal.pending is None
    assert _table(gw) == _rendered(first)
    last = ledger.read(state)[-1]
    assert last["kind"] == "failure" and last["step"] == "apply"
    assert last["commit"] == "b" * 40 and "Device or resource busy" in last["message"]

    gw.nft.fail_check("Error: syntax error")  # refused while preparing: the journal never moved
    with pytest.raises(Exception, match="nftables check failed: Error: syntax error"):
        lifecycle._run(state, read_journal(state), second)
    assert read_journal(state).pending is None and _table(gw) == _rendered(first)


def _killed_mid_apply(state: State, gw: Gateway, site: Site, *, table_took: bool) -> Entry:
    """An applied commit a, then an apply of b killed after its pending entry was written."""
    first = _plan(state, gw, load_policy(site.root), "a")
    lifecycle._run(state, read_journal(state), first)
    second = _plan(state, gw, _second(site), "b")
    journal = read_journal(state)
    journal.pending = second.entry
    write_journal(state, journal)
    if table_took:
        gw.nft.apply(second.files[RULESET])
    return second.entry


def test_recovery_names_the_commit_whose_table_is_in_force(
    state: State, gw: Gateway, site: Site
) -> None:
    pending = _killed_mid_apply(state, gw, site, table_took=True)
    journal, notes = read_journal(state), []
    assert recover(state, journal, notes, target_for=lambda e: gw.target) is True
    on_disk = read_journal(state)
    assert on_disk.applied is not None and on_disk.applied.commit == pending.commit
    assert on_disk.applied.via == "recovered" and on_disk.pending is None
    assert notes == [
        f"an interrupted apply of {pending.commit[:12]} was completed "
        "(table in force; services redone)"
    ]
    last = ledger.read(state)[-1]
    assert last["kind"] == "recovery" and last["commit"] == pending.commit
    assert any("not running" in f for f in last["findings"])  # the fake services left no pids


def test_recovery_drops_a_pending_commit_whose_table_never_took(
    state: State, gw: Gateway, site: Site
) -> None:
    pending = _killed_mid_apply(state, gw, site, table_took=False)
    journal, notes = read_journal(state), []
    assert recover(state, journal, notes, target_for=lambda e: gw.target) is True
    assert journal.pending is None and journal.applied is not None
    assert journal.applied.commit == "a" * 40
    # Dropped in memory only: the next apply writes the journal with its own pending entry.
    assert read_journal(state).pending == pending
    assert notes == [f"an interrupted apply of {pending.commit[:12]} was abandoned"]
    last = ledger.read(state)[-1]
    assert (last["kind"], last["outcome"], last["commit"]) == ("recovery", "abandoned", "b" * 40)


def test_nothing_pending_means_nothing_to_recover(state: State, gw: Gateway, site: Site) -> None:
    lifecycle._run(state, read_journal(state), _plan(state, gw, load_policy(site.root), "a"))
    calls = list(gw.nft.calls)
    assert recover(state, read_journal(state), [], target_for=lambda e: gw.target) is False
    assert gw.nft.calls == calls  # not even a listing
