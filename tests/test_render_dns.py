"""firewall.dns: the two dnsmasq configs, checked as text and then by a real dnsmasq 2.90.

The root tests run the rendered sinkhole and resolver in a fresh network namespace and ask them
real questions over UDP (a hand-made DNS query: dnspython is not installed), with a second
dnsmasq playing the WAN resolver and real nftables sets for the resolver to fill.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from conftest import EXAMPLE
from firewall import netns
from firewall.dns import hub_nftsets, render_dnsmasq, resolver_addresses, sinkhole_addresses
from policies import Policy, load_policy
from policies.layout import RESOLVER_CONF, SINKHOLE_CONF, Layout, dnsmasq_log
from policies.model import Endpoint, Flow

ROOT = Layout(root="/srv/gw")
A, AAAA, TXT = 1, 28, 16


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(EXAMPLE)


def lines(policy: Policy, name: str, layout: Layout = ROOT) -> list[str]:
    body = render_dnsmasq(policy, layout)[name].decode()
    return [line for line in body.splitlines() if line and not line.startswith("#")]


def with_network(policy: Policy, **update: Any) -> Policy:
    return dataclasses.replace(policy, network=policy.network.model_copy(update=update))


def with_hub(policy: Policy, **update: Any) -> Policy:
    hub = policy.site.hub.model_copy(update=update)
    return dataclasses.replace(policy, site=policy.site.model_copy(update={"hub": hub}))


def with_dns(policy: Policy, **update: Any) -> Policy:
    return with_network(policy, dns=policy.network.dns.model_copy(update=update))


def with_bridge(policy: Policy, **update: Any) -> Policy:
    return with_hub(policy, bridge=policy.site.hub.bridge.model_copy(update=update))


# --- the text -------------------------------------------------------------------------------


def test_sinkhole_of_the_example(policy: Policy) -> None:
    got = lines(policy, SINKHOLE_CONF)
    assert [g for g in got if g.startswith("listen-address=")] == [
        "listen-address=10.10.0.1",
        "listen-address=10.30.0.1",
    ]
    assert not [g for g in got if g.startswith(("server=", "resolv-file=", "nftset=", "dhcp"))]
    for want in ("no-resolv", "no-poll", "no-hosts", "bind-dynamic", "port=53", "user=nobody"):
        assert want in got
    catch_all = ["address=/#/0.0.0.0", "address=/#/::", "local=/#/", "local-ttl=0"]
    names = [
        "address=/mqtt.site.internal/10.10.0.1",
        "local=/mqtt.site.internal/",
        "address=/ntp.site.internal/10.10.0.1",
        "local=/ntp.site.internal/",
    ]
    assert got[-8:] == catch_all + names
    assert "log-queries=extra" in got
    assert "log-facility=/srv/gw/var/lib/cell/dnsmasq/sinkhole.log" in got
    assert "pid-file=/srv/gw/var/lib/cell/dnsmasq/sinkhole.pid" in got


def test_resolver_of_the_example(policy: Policy) -> None:
    got = lines(policy, RESOLVER_CONF)
    assert [g for g in got if g.startswith("listen-address=")] == ["listen-address=127.0.0.1"]
    assert [g for g in got if g.startswith("server=")] == ["server=203.0.113.53"]
    assert [g for g in got if g.startswith("nftset=")] == [
        "nftset=/hub.example.eu/4#inet#cell#hub_bridge",
        "nftset=/api.balena-cloud.com/4#inet#cell#hub_mgmt_0",
    ]
    for want in ("no-resolv", "no-poll", "cache-size=0", "domain-needed", "bogus-priv"):
        assert want in got
    assert not [g for g in got if g.startswith("address=")]
    assert "log-facility=/srv/gw/var/lib/cell/dnsmasq/resolver.log" in got


def test_the_two_instances_never_share_an_address(policy: Policy) -> None:
    assert not set(sinkhole_addresses(policy)) & set(resolver_addresses(policy))


def test_resolver_serves_non_sinkhole_vlans_with_a_dns_flow(policy: Policy) -> None:
    flows = [
        *policy.network.flows,
        Flow.model_validate({"from": "laptop", "to": "gateway", "service": "dns"}),
        Flow.model_validate({"from": "cameras", "to": "gateway", "service": "dns"}),
        Flow.model_validate({"from": "cell", "to": "gateway", "service": "ntp"}),
    ]
    p = with_network(policy, flows=flows)
    # ops through its host `laptop`; cameras are sinkholed; cell has no 53/udp flow.
    assert resolver_addresses(p) == ["127.0.0.1", "10.40.0.1"]
    assert "listen-address=10.40.0.1" in lines(p, RESOLVER_CONF)


def test_resolver_without_wan_resolvers_reads_a_resolv_file(policy: Policy) -> None:
    p = with_network(policy, wan=policy.network.wan.model_copy(update={"resolvers": []}))
    got = lines(p, RESOLVER_CONF)
    assert "resolv-file=/srv/gw/etc/resolv.conf" in got
    assert not [g for g in got if g.startswith("server=") or g in ("no-resolv", "no-poll")]


def test_nftsets_only_for_hostnames_with_their_index(policy: Policy) -> None:
    p = with_hub(
        with_bridge(policy, address="198.51.100.7"),
        management=[
            Endpoint(address="192.0.2.10", port=443),
            Endpoint(address="api.balena-cloud.com", port=443),
            Endpoint(address="mgmt.example.eu", port=443),
        ],
    )
    assert [g for g in lines(p, RESOLVER_CONF) if g.startswith("nftset=")] == [
        "nftset=/api.balena-cloud.com/4#inet#cell#hub_mgmt_1",
        "nftset=/mgmt.example.eu/4#inet#cell#hub_mgmt_2",
    ]


def test_one_hostname_for_two_endpoints_is_one_line(policy: Policy) -> None:
    p = with_hub(policy, management=[Endpoint(address="hub.example.eu", port=443)])
    assert hub_nftsets(p) == {"hub.example.eu": ["hub_bridge", "hub_mgmt_0"]}
    assert "nftset=/hub.example.eu/4#inet#cell#hub_bridge,4#inet#cell#hub_mgmt_0" in lines(
        p, RESOLVER_CONF
    )


def test_no_sinkhole_vlan_means_dns_off_not_everywhere(policy: Policy) -> None:
    got = lines(with_dns(policy, sinkhole=[]), SINKHOLE_CONF)
    assert "port=0" in got and "port=53" not in got
    assert not [g for g in got if g.startswith(("listen-address=", "address=", "server="))]


def test_render_is_deterministic(policy: Policy) -> None:
    first = render_dnsmasq(policy, ROOT)
    assert first == render_dnsmasq(load_policy(EXAMPLE), ROOT)
    assert list(first) == [SINKHOLE_CONF, RESOLVER_CONF]


UNSAFE: dict[str, Callable[[Policy], Policy]] = {
    "newline-in-local-name": lambda p: with_dns(
        p, local_names={"a.b\naddress=/#/6.6.6.6": "10.0.0.1"}
    ),
    "slash-in-local-name": lambda p: with_dns(p, local_names={"a/#": "10.0.0.1"}),
    "newline-in-resolver": lambda p: with_network(
        p, wan=p.network.wan.model_copy(update={"resolvers": ["1.2.3.4\nserver=6.6.6.6"]})
    ),
    "not-an-ip-in-local-names": lambda p: with_dns(p, local_names={"x.site": "10.0.0.1#53"}),
    "space-in-hub-name": lambda p: with_bridge(p, address="hub.example.eu nftset=/x/y"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_guard_refuses_unsafe_values(policy: Policy, case: str) -> None:
    """Validation stops these at load time; the renderer refuses them again (model_copy)."""
    with pytest.raises(ValueError):
        render_dnsmasq(UNSAFE[case](policy), ROOT)


def test_guard_refuses_an_unsafe_layout(policy: Policy) -> None:
    with pytest.raises(ValueError, match="refusing"):
        render_dnsmasq(policy, Layout(root="/srv/gw\nserver=6.6.6.6"))


# --- a real dnsmasq -------------------------------------------------------------------------


def install(policy: Policy, layout: Layout) -> dict[str, Path]:
    (Path(layout.state) / "dnsmasq").mkdir(parents=True, exist_ok=True)
    out = {}
    for rel, body in render_dnsmasq(policy, layout).items():
        path = Path(layout.config) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        out[rel] = path
    return out


def dnsmasq_test(path: Path) -> subprocess.CompletedProcess[str]:
    argv = ["dnsmasq", "--test", "-C", str(path)]
    return subprocess.run(argv, check=False, capture_output=True, text=True)


def test_dnsmasq_accepts_both_files(policy: Policy, tmp_path: Path) -> None:
    for path in install(policy, Layout(root=str(tmp_path))).values():
        r = dnsmasq_test(path)
        assert r.returncode == 0, r.stderr
        assert "syntax check OK" in r.stderr


def test_dnsmasq_refuses_a_broken_file(policy: Policy, tmp_path: Path) -> None:
    path = install(policy, Layout(root=str(tmp_path)))[SINKHOLE_CONF]
    path.write_text(path.read_text() + "bogus-directive=1\n")
    r = dnsmasq_test(path)
    assert r.returncode != 0
    assert "bad option at line" in r.stderr


def query(server: str, name: str, qtype: int) -> tuple[int, list[str]]:
    """(rcode, addresses in the answer) for one question over UDP."""
    qid = random.randrange(1 << 16)
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(packet, (server, 53))
        reply = s.recv(4096)
    rid, flags, _qd, count, _ns, _ar = struct.unpack(">HHHHHH", reply[:12])
    assert rid == qid
    at = 12 + len(qname) + 4
    found = []
    for _ in range(count):
        at += 2 if reply[at] & 0xC0 else reply.index(b"\0", at) + 1 - at
        rtype, _cls, _ttl, size = struct.unpack(">HHIH", reply[at : at + 10])
        data = reply[at + 10 : at + 10 + size]
        at += 10 + size
        if rtype in (A, AAAA):
            found.append(str(ipaddress.ip_address(data)))
    return flags & 0xF, found


def add_addresses(ns: str, *addresses: str) -> None:
    def add() -> None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            lo = ipr.link_lookup(ifname="lo")[0]
            for a in addresses:
                ipr.addr("add", index=lo, address=a, prefixlen=32)

    netns.with_ns(ns, add)


@contextmanager
def dnsmasq(ns: str, conf: Path) -> Iterator[subprocess.Popen[bytes]]:
    """dnsmasq in the foreground (-k), so that it dies with the test, not with the namespace."""
    argv = ["dnsmasq", "-k", "-C", str(conf)]
    proc = netns.popen(ns, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()
        yield proc
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def ask(ns: str, server: str, name: str, qtype: int = A) -> tuple[int, list[str]]:
    return netns.with_ns(ns, lambda: query(server, name, qtype))


@pytest.mark.root
def test_sinkhole_answers_everything_and_logs_it(policy: Policy, tmp_path: Path) -> None:
    layout = Layout(root=str(tmp_path))
    conf = install(policy, layout)[SINKHOLE_CONF]
    with netns.scratch() as ns:
        add_addresses(ns, "10.10.0.1", "10.30.0.1")
        with dnsmasq(ns, conf):
            assert ask(ns, "10.10.0.1", "telemetry.vendor.example") == (0, ["0.0.0.0"])
            assert ask(ns, "10.30.0.1", "telemetry.vendor.example", AAAA) == (0, ["::"])
            assert ask(ns, "10.10.0.1", "ntp.site.internal") == (0, ["10.10.0.1"])
            assert ask(ns, "10.10.0.1", "ntp.site.internal", AAAA) == (0, [])
            assert ask(ns, "10.10.0.1", "telemetry.vendor.example", TXT) == (0, [])
            # It listens on the sinkhole gateways only: not on the Cell's own 127.0.0.1.
            with pytest.raises(OSError):
                ask(ns, "127.0.0.1", "telemetry.vendor.example")
    log = (Path(layout.state) / dnsmasq_log("sinkhole")).read_text()
    assert "query[A] telemetry.vendor.example from 10.10.0.1" in log
    assert "config telemetry.vendor.example is 0.0.0.0" in log
    assert "forwarded" not in log


NFT_SETS = {
    "nftables": [
        {"add": {"table": {"family": "inet", "name": "cell"}}},
        {
            "add": {
                "set": {
                    "family": "inet",
                    "table": "cell",
                    "name": "hub_bridge",
                    "type": "ipv4_addr",
                }
            }
        },
        {
            "add": {
                "set": {
                    "family": "inet",
                    "table": "cell",
                    "name": "hub_mgmt_0",
                    "type": "ipv4_addr",
                }
            }
        },
    ]
}


def nft(ns: str, command: str | dict[str, Any]) -> str:
    def run() -> str:
        import nftables

        n = nftables.Nftables()
        n.set_json_output(True)
        rc, out, err = n.json_cmd(command) if isinstance(command, dict) else n.cmd(command)
        assert rc == 0, err
        return str(out)

    return netns.with_ns(ns, run)


def elements(ns: str, name: str) -> list[str]:
    import json

    for item in json.loads(nft(ns, f"list set inet cell {name}"))["nftables"]:
        if "set" in item:
            return [str(e) for e in item["set"].get("elem", [])]
    return []


@pytest.mark.root
def test_resolver_forwards_and_fills_the_hub_sets(policy: Policy, tmp_path: Path) -> None:
    layout = Layout(root=str(tmp_path))
    conf = install(policy, layout)[RESOLVER_CONF]
    upstream = tmp_path / "upstream.conf"
    upstream.write_text(
        "listen-address=203.0.113.53\nbind-interfaces\nno-resolv\nno-hosts\n"
        "address=/hub.example.eu/198.51.100.7\naddress=/api.balena-cloud.com/198.51.100.8\n"
        f"pid-file={tmp_path}/upstream.pid\nlocal-ttl=600\n"
    )
    with netns.scratch() as ns:
        add_addresses(ns, "203.0.113.53", "10.10.0.1")
        nft(ns, NFT_SETS)
        with dnsmasq(ns, upstream), dnsmasq(ns, conf):
            assert ask(ns, "127.0.0.1", "hub.example.eu") == (0, ["198.51.100.7"])
            assert ask(ns, "127.0.0.1", "api.balena-cloud.com") == (0, ["198.51.100.8"])
            assert elements(ns, "hub_bridge") == ["198.51.100.7"]
            assert elements(ns, "hub_mgmt_0") == ["198.51.100.8"]
            # A firewall re-apply empties the set; the next lookup (no cache) fills it again.
            nft(ns, "flush set inet cell hub_bridge")
            assert elements(ns, "hub_bridge") == []
            assert ask(ns, "127.0.0.1", "hub.example.eu") == (0, ["198.51.100.7"])
            assert elements(ns, "hub_bridge") == ["198.51.100.7"]
            # A sinkhole VLAN's gateway is not served here, even where the address exists.
            with pytest.raises(OSError):
                ask(ns, "10.10.0.1", "hub.example.eu")
    log = (Path(layout.state) / dnsmasq_log("resolver")).read_text()
    assert "nftset add 4 inet cell hub_bridge 198.51.100.7 hub.example.eu" in log
