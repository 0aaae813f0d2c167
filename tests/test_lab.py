"""The lab: a whole site in network namespaces, with real mosquitto, dnsmasq and sockets.

Every test uses its own site id (`t-<random>`), so it never touches a person's lab, and removes its
lab in a fixture's `finally`, even when it fails.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from cell.deploy.install import apply_lab_links
from cell.lab import LabInfo, lab_down, lab_up, phone_home_count
from cell.lab.plan import WAN_LINK, ns_prefix, plan_lab
from conftest import EXAMPLE
from firewall import netns
from labsite import ip_json, make_site, new_id, ours
from policies import Policy, load_policy

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Policy, LabInfo]]:
    """One lab shared by the read-only tests (routing, hub, resolver, phone-home)."""
    site_id = new_id()
    policy = load_policy(make_site(tmp_path_factory.mktemp("lab"), site_id))
    try:
        yield policy, lab_up(policy, apply=apply_lab_links)
    finally:
        lab_down(site_id)


# --- clients run inside namespaces -----------------------------------------------------------


def tcp_connect(src: str, dst: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        s.bind((src, 0))
        try:
            s.connect((dst, port))
        except OSError:
            return False
        return True


def udp_echo(src: str | None, dst: str, port: int) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        if src:
            s.bind((src, 0))
        s.connect((dst, port))  # a reply from another source address would be dropped here
        s.send(b"ping")
        return s.recv(100)


def dns_a(server: str, name: str) -> list[str]:
    """A hand-built DNS query for the A records of `name` (dnspython is not installed)."""
    qid = 0x4C42
    query = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    query += struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(query, (server, 53))
        data = s.recv(2048)
    rid, _flags, qd, an = struct.unpack(">HHHH", data[:8])
    assert rid == qid and qd == 1
    pos = 12
    while data[pos]:
        pos += data[pos] + 1
    pos += 5
    out = []
    for _ in range(an):
        pos += 2 if data[pos] & 0xC0 == 0xC0 else len(name) + 2
        rtype, _cls, _ttl, size = struct.unpack(">HHIH", data[pos : pos + 10])
        pos += 10
        if rtype == 1:
            out.append(socket.inet_ntoa(data[pos : pos + size]))
        pos += size
    return out


def read_sysctl(path: str) -> str:
    return Path(path).read_text().strip()


# --- the shape of the lab --------------------------------------------------------------------


def test_up_builds_namespaces_links_and_addresses(lab: tuple[Policy, LabInfo]) -> None:
    policy, info = lab
    site = policy.site.site.id
    assert sorted(ours(site)) == sorted(info.namespaces)
    assert len(info.namespaces) == 2 + len(policy.network.vlans)
    assert all(n.startswith(ns_prefix(site)) for n in info.namespaces)

    gw = {str(link["ifname"]): link for link in ip_json("-n", info.gateway, "addr")}
    for v in policy.network.vlans:
        assert v.interface in gw
        assert any(a["local"] == v.gateway for a in gw[v.interface]["addr_info"])
    assert policy.network.wan.interface in gw
    assert netns.with_ns(info.gateway, partial(read_sysctl, "/proc/sys/net/ipv4/ip_forward")) == "1"

    cell_ns = info.hosts["nvr"]["netns"]
    addrs = {a["local"] for link in ip_json("-n", cell_ns, "addr") for a in link["addr_info"]}
    assert {"10.20.0.2", "10.20.0.3"} <= addrs  # every host of the VLAN, so probes can bind any
    assert not [a for a in addrs if ":" in str(a) and a != "::1"]  # no IPv6 noise on lab links
    routes = ip_json("-n", cell_ns, "route")
    assert any(r["dst"] == "default" and r["gateway"] == "10.20.0.1" for r in routes)


def test_wan_namespace_is_closed(lab: tuple[Policy, LabInfo]) -> None:
    _, info = lab
    links = {str(link["ifname"]) for link in ip_json("-n", info.wan, "link")}
    assert links == {"lo", WAN_LINK}
    gw_ifindex = {int(link["ifindex"]) for link in ip_json("-n", info.gateway, "link")}
    (peer,) = [link for link in ip_json("-n", info.wan, "link") if link["ifname"] == WAN_LINK]
    assert peer["link_index"] in gw_ifindex  # its one link leads to the gateway, nowhere else
    routes = ip_json("-n", info.wan, "route")
    assert not [r for r in routes if r["dst"] == "default"]
    assert all(r.get("gateway") in (None, info.wan_link["gateway"]) for r in routes)
    # Like an ISP uplink: no route to the site's subnets (what leaves the site arrives by NAT).
    subnets = [ipaddress.IPv4Network(v["subnet"]) for v in info.vlans.values()]
    for r in routes:
        dst = ipaddress.IPv4Network(r["dst"])
        assert not any(dst.overlaps(s) for s in subnets), r
    lo = {
        a["local"]
        for link in ip_json("-n", info.wan, "addr", "show", "lo")
        for a in link["addr_info"]
    }
    o = info.outside
    assert {o["resolver"], o["hub"], *o["management"], o["phone_home"], o["internet"]} <= lo


# --- traffic without any firewall ------------------------------------------------------------


def test_routing_nvr_reaches_camera_responder(lab: tuple[Policy, LabInfo]) -> None:
    _, info = lab
    nvr, cam = info.hosts["nvr"], info.hosts["cam-01"]
    assert netns.with_ns(nvr["netns"], partial(tcp_connect, nvr["address"], cam["address"], 554))
    log, deadline = "", time.monotonic() + 2
    while f'"dst": "{cam["address"]}:554"' not in log and time.monotonic() < deadline:
        time.sleep(0.02)  # the responder logs the connection just after accepting it
        log = Path(info.logs["responder.cameras"]).read_text()
    assert f'"src": "{nvr["address"]}:' in log and f'"dst": "{cam["address"]}:554"' in log
    # UDP echo to the gateway's NTP stand-in comes back from the address it was sent to.
    cam2 = info.hosts["cam-02"]
    gw_addr = info.vlans["cameras"]["gateway"]
    assert netns.with_ns(cam2["netns"], partial(udp_echo, cam2["address"], gw_addr, 123)) == b"ping"


def test_hub_broker_requires_the_lab_client_certificate(lab: tuple[Policy, LabInfo]) -> None:
    policy, info = lab
    hub = info.mqtt["hub"]
    base = ["-h", hub["host"], "-p", str(hub["port"]), "--cafile", hub["cafile"]]
    observer = [*base, "--cert", hub["certfile"], "--key", hub["keyfile"]]
    sub = netns.popen(
        info.wan,
        [
            "mosquitto_sub",
            *observer,
            "-i",
            "lab-observer-sub",
            "-t",
            "lab/test",
            "-C",
            "1",
            "-W",
            "10",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 5
        while "lab-observer-sub 0 lab/test" not in Path(hub["log"]).read_text():
            assert time.monotonic() < deadline, "the observer's subscription never reached the hub"
            time.sleep(0.05)
        tls = policy.site.hub.bridge.tls
        assert tls is not None
        cell = [
            *base,
            "--cert",
            info.layout.path(tls.certfile),
            "--key",
            info.layout.path(tls.keyfile),
        ]
        pub = netns.run(info.wan, ["mosquitto_pub", *cell, "-t", "lab/test", "-m", "hello"])
        assert pub.returncode == 0, pub.stderr
        out, err = sub.communicate(timeout=10)
        assert out.strip() == b"hello", err
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    bare = netns.run(info.wan, ["mosquitto_pub", *base, "-t", "lab/test", "-m", "x"], timeout=15)
    assert bare.returncode != 0
    assert f"u'cell-{policy.site.site.id}'" in Path(hub["log"]).read_text()  # the CN is the login


def test_outside_resolver_answers_lab_addresses(lab: tuple[Policy, LabInfo]) -> None:
    _, info = lab
    o = info.outside
    ask = partial(netns.with_ns, info.gateway)
    assert ask(partial(dns_a, o["resolver"], "hub.example.eu")) == [o["hub"]]
    assert ask(partial(dns_a, o["resolver"], "api.balena-cloud.com")) == o["management"]
    assert ask(partial(dns_a, o["resolver"], "telemetry.vendor.example")) == [o["phone_home"]]
    assert "telemetry.vendor.example" in Path(info.logs["resolver"]).read_text()


def test_phone_home_counter_rises(lab: tuple[Policy, LabInfo]) -> None:
    policy, info = lab
    site = policy.site.site.id
    before = phone_home_count(site)
    gw_side = info.wan_link["gateway"]
    assert netns.with_ns(
        info.gateway, partial(tcp_connect, gw_side, info.outside["phone_home"], 443)
    )
    assert (
        netns.with_ns(info.gateway, partial(udp_echo, None, info.outside["phone_home"], 123))
        == b"ping"
    )
    deadline = time.monotonic() + 2
    while phone_home_count(site) < before + 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert phone_home_count(site) == before + 2


def test_plan_is_pure_and_stable() -> None:
    policy = load_policy(EXAMPLE)
    plan = plan_lab(policy)
    assert plan == plan_lab(policy)
    assert plan.gateway == "cell-lisbon-01.gw" and plan.wan == "cell-lisbon-01.wan"
    assert plan.names == {"hub.example.eu": "198.19.0.10", "api.balena-cloud.com": "198.19.0.20"}
    assert plan.resolvers == ("203.0.113.53",)
    assert (554, "tcp") in next(v for v in plan.vlans if v.name == "cameras").ports
    assert plan.gateway_ports == ((22, "tcp"), (123, "udp"))  # 53 and 1883 are apply's
    assert (443, "tcp") in plan.internet_ports
