"""Applying the ruleset: one transaction, only Cell's table, the old one intact on failure."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from conftest import Site
from firewall import netns
from firewall import nft as fw
from firewall.compile import compile_ruleset, render_json
from policies import load_policy

pytestmark = pytest.mark.root


@pytest.fixture
def doc(example: Path) -> dict:
    return json.loads(render_json(compile_ruleset(load_policy(example))))


def _listing(ns: str) -> str:
    return netns.run(ns, ["nft", "list", "ruleset"], check=True).stdout.decode()


def test_apply_then_read_back_equals_compile(doc: dict, example: Path) -> None:
    objects = compile_ruleset(load_policy(example))
    with netns.scratch() as ns:
        fw.apply(doc, ns)
        assert fw.canonical(fw.read_table(ns)) == fw.canonical(objects)


def test_invalid_ruleset_leaves_old_one_byte_for_byte(doc: dict) -> None:
    broken = copy.deepcopy(doc)
    rule = next(c for c in broken["nftables"] if "rule" in c.get("add", {}))
    rule["add"]["rule"]["expr"].append({"jump": {"target": "no-such-chain"}})
    with netns.scratch() as ns:
        fw.apply(doc, ns)
        before = _listing(ns)
        with pytest.raises(fw.FirewallError) as exc:
            fw.apply(broken, ns)
        assert "previous ruleset stays in force" in str(exc.value)
        assert "no-such-chain" in str(exc.value)  # the error carries the offending part
        assert _listing(ns) == before


def test_check_refuses_without_touching_anything(doc: dict) -> None:
    broken = copy.deepcopy(doc)
    broken["nftables"].append(
        {"add": {"rule": {"family": "inet", "table": "cell", "chain": "nope", "expr": []}}}
    )
    with netns.scratch() as ns:
        with pytest.raises(fw.FirewallError):
            fw.check(broken, ns)
        assert fw.read_table(ns) is None


def test_other_tables_untouched(doc: dict) -> None:
    with netns.scratch() as ns:
        netns.run(
            ns,
            ["nft", "add table ip keepme; add chain ip keepme c; add rule ip keepme c counter"],
            check=True,
        )
        other = netns.run(ns, ["nft", "list", "table", "ip", "keepme"], check=True).stdout
        fw.apply(doc, ns)
        fw.apply(doc, ns)
        assert netns.run(ns, ["nft", "list", "table", "ip", "keepme"], check=True).stdout == other


def test_counters_read_back_by_name(doc: dict) -> None:
    with netns.scratch() as ns:
        fw.apply(doc, ns)
        counters = fw.read_counters(ns)
        assert counters["drop_cameras.wan"] == 0
        assert len(counters) > 10


def test_resolver_filled_elements_do_not_outlive_a_literal_hub(doc: dict, site: Site) -> None:
    site.edit("site.yaml", "address: hub.example.eu", "address: 198.51.100.7")
    literal = json.loads(render_json(compile_ruleset(load_policy(site.root))))
    with netns.scratch() as ns:
        fw.apply(doc, ns)  # the hub by hostname: dnsmasq would fill hub_bridge
        netns.run(ns, ["nft", "add element inet cell hub_bridge { 6.6.6.6 }"], check=True)
        fw.apply(doc, ns)  # same hostname: the learned address is kept
        assert "6.6.6.6" in netns.run(ns, ["nft", "list set inet cell hub_bridge"]).stdout.decode()
        fw.apply(literal, ns)  # now a literal address: only that one
        listing = netns.run(ns, ["nft", "list set inet cell hub_bridge"]).stdout.decode()
        assert "198.51.100.7" in listing and "6.6.6.6" not in listing
