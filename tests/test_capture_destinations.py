"""Destinations of a window against the policy (pure; synthetic packets, the example site)."""

from __future__ import annotations

from pathlib import Path

from cell.explain import explain_flow
from cell.verify.destinations import decide_destinations, sites_of
from cell.verify.pcapread import read_packets
from conftest import EXAMPLE
from pcapgen import ACK, SYN, dns_response, frame, udp_frame, write_pcapng
from policies import load_policy

GW, HUB, MGMT, PHONE, RESOLVER = (
    "198.18.0.2",
    "198.19.0.10",
    "198.19.0.20",
    "198.19.0.99",
    "203.0.113.53",
)


def _doc(tmp_path: Path, frames: list[bytes]) -> dict:
    path = tmp_path / "w.pcapng"
    write_pcapng(path, ((10**18 + i * 10**6, f) for i, f in enumerate(frames)))
    policy = load_policy(EXAMPLE)
    hubs = {HUB: "hub.bridge", MGMT: "hub.management"}
    return decide_destinations(policy, read_packets(path), sites_of(policy, [GW]), hubs)


def test_verdicts_agree_with_explain_flow_and_name_the_rule(tmp_path: Path) -> None:
    doc = _doc(
        tmp_path,
        [
            frame(GW, HUB, "tcp", 40000, 8883, flags=SYN),
            frame(HUB, GW, "tcp", 8883, 40000, flags=SYN | ACK),
            frame(GW, HUB, "tcp", 40000, 8883, payload=100),
            frame(GW, MGMT, "tcp", 40001, 443, flags=SYN),
            frame(GW, RESOLVER, "udp", 5353, 53, payload=30),
            frame("10.40.0.50", "198.19.0.80", "tcp", 50000, 443, flags=SYN),
            frame("10.10.0.11", PHONE, "udp", 40000, 9999, payload=10),
            frame("10.10.0.11", PHONE, "udp", 40000, 9999, payload=10),
        ],
    )
    rows = {(r["source"]["name"], r["address"], r["port"]): r for r in doc["destinations"]}
    policy = load_policy(EXAMPLE)
    hub = rows[("gateway", HUB, 8883)]
    assert hub["verdict"] == "allowed" and hub["packets"] == 3 and hub["endpoint"] == "hub.bridge"
    want = explain_flow(policy, "gateway", "hub.bridge:8883/tcp")["rule"]
    assert (hub["rule"]["file"], hub["rule"]["line"]) == (want["file"], want["line"])
    assert rows[("gateway", MGMT, 443)]["verdict"] == "allowed"
    dns = rows[("gateway", RESOLVER, 53)]
    assert dns["verdict"] == "allowed" and dns["rule"]["to"] == "wan.resolvers"
    assert dns["endpoint"] == "wan.resolvers"
    laptop = rows[("laptop", "198.19.0.80", 443)]
    assert laptop["verdict"] == "allowed" and laptop["rule"]["service"] == "https"
    leak = rows[("cam-01", PHONE, 9999)]
    assert leak["verdict"] == "unexpected" and leak["rule"] is None and leak["packets"] == 2
    assert leak["source"] == {"address": "10.10.0.11", "name": "cam-01", "vlan": "cameras"}
    assert explain_flow(policy, "cam-01", f"{PHONE}:9999/udp")["verdict"] == "drop"
    assert doc["unexpected"] == 1 and doc["destinations"][0] is leak  # findings first


def test_the_gateway_to_the_hub_on_another_port_or_to_the_wan_is_unexpected(tmp_path: Path) -> None:
    doc = _doc(
        tmp_path,
        [
            frame(GW, HUB, "tcp", 40000, 22, flags=SYN),
            # Not 443: behind NAT the Cell's address also carries ops' flow to wan:443.
            frame(GW, "198.19.0.80", "tcp", 1, 8443, flags=SYN),
        ],
    )
    assert {r["verdict"] for r in doc["destinations"]} == {"unexpected"} and doc["unexpected"] == 2


def test_inbound_noise_is_no_leak_but_an_answer_to_it_is(tmp_path: Path) -> None:
    doc = _doc(tmp_path, [frame("198.51.100.7", GW, "tcp", 55555, 22, flags=SYN)])
    assert doc["destinations"] == [] and doc["unexpected"] == 0
    assert doc["inbound"][0]["verdict"] == "ignored"
    doc = _doc(
        tmp_path,
        [
            frame("198.51.100.7", GW, "tcp", 55555, 22, flags=SYN),
            frame(GW, "198.51.100.7", "tcp", 22, 55555, flags=SYN | ACK),
        ],
    )
    assert doc["inbound"][0]["verdict"] == "unexpected" and doc["unexpected"] == 1


def test_a_connection_seen_mid_stream_is_put_on_the_side_that_opened_it(tmp_path: Path) -> None:
    doc = _doc(tmp_path, [frame(HUB, GW, "tcp", 8883, 40000, payload=50)])  # a reply first
    assert [(r["address"], r["port"], r["verdict"]) for r in doc["destinations"]] == [
        (HUB, 8883, "allowed")
    ]
    assert doc["inbound"] == []


def test_hub_addresses_come_from_the_gateways_own_dns_answers_in_the_window(tmp_path: Path) -> None:
    path = tmp_path / "w.pcapng"
    answer = dns_response("hub.example.eu", [HUB])
    frames = [
        udp_frame("10.40.0.50", "198.51.100.1", 5000, 53, b""),
        udp_frame("198.51.100.1", "10.40.0.50", 53, 5000, dns_response("hub.example.eu", [PHONE])),
        udp_frame(RESOLVER, GW, 53, 5353, answer),
        frame(GW, HUB, "tcp", 40000, 8883, flags=SYN),
        frame(GW, PHONE, "tcp", 40001, 8883, flags=SYN),
    ]
    write_pcapng(path, ((10**18 + i, f) for i, f in enumerate(frames)))
    policy = load_policy(EXAMPLE)
    doc = decide_destinations(policy, read_packets(path), sites_of(policy, [GW]), {})
    rows = {(r["address"], r["port"]): r for r in doc["destinations"]}
    assert rows[(HUB, 8883)]["verdict"] == "allowed"
    assert rows[(HUB, 8883)]["endpoint"] == "hub.bridge"
    # An answer to a laptop is not what the firewall's hub set is filled from.
    assert rows[(PHONE, 8883)]["verdict"] == "unexpected"


def test_behind_nat_a_site_flow_is_allowed_and_a_leak_is_not(tmp_path: Path) -> None:
    """With NAT (the default) the WAN sees only the Cell's address: a connection is allowed when
    some site source may open it (ops -> wan:443), and a leak stays unexpected."""
    doc = _doc(
        tmp_path,
        [
            frame(GW, "198.19.0.80", "tcp", 50000, 443, flags=SYN),
            frame(GW, PHONE, "udp", 40000, 9999, payload=10),
        ],
    )
    rows = {(r["address"], r["port"]): r for r in doc["destinations"]}
    web = rows[("198.19.0.80", 443)]
    assert web["verdict"] == "allowed" and web["rule"]["from"] == "ops"
    assert web["source"] == {"address": GW, "name": "site (NAT)", "vlan": None}
    leak = rows[(PHONE, 9999)]
    assert leak["verdict"] == "unexpected" and leak["source"]["name"] == "gateway"
