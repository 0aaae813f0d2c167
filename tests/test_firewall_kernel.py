"""Kernel tests (root) for the compiled ruleset: `nft --check` of both forms, a real load of each into
a fresh namespace with equal listings (equal to the compiled objects too), other tables left alone,
and real packets through two veth-linked hosts.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from firewall import netns
from firewall.compile import (
    compile_ruleset,
    drop_counter_for,
    render_json,
    rule_count,
)
from firewall.nfttext import render_text
from firewall_sites import EXAMPLE, grow, literal_hub, seal, tricky_names
from policies import Policy, load_policy

if TYPE_CHECKING:
    from conftest import Site


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(EXAMPLE)


# --- the kernel (root) --------------------------------------------------------------------------

VARIANTS = {
    "example": lambda site: load_policy(site.root),
    "literal_hub": literal_hub,
    "tricky_names": tricky_names,
    "600_cameras": lambda site: grow(site, 600),
    "sealed": lambda site: load_policy(seal(site.root)),
}


def _files(tmp_path: Path, policy: Policy) -> tuple[Path, Path]:
    objects = compile_ruleset(policy)
    text, doc = tmp_path / "ruleset.nft", tmp_path / "ruleset.json"
    text.write_bytes(render_text(objects))
    doc.write_bytes(render_json(objects))
    return text, doc


def _nft(ns: str, *args: str) -> str:
    done = netns.run(ns, ["nft", *args])
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def _strip(o: Any, drop: tuple[str, ...] = ("handle",)) -> Any:
    if isinstance(o, dict):
        return {k: _strip(v, drop) for k, v in o.items() if k not in drop}
    if isinstance(o, list):
        return [_strip(v, drop) for v in o]
    return o


def _listing(ns: str, *what: str) -> list[Any]:
    doc = json.loads(_nft(ns, "-j", "list", *what))["nftables"]
    return [_strip(o) for o in doc if "metainfo" not in o]


@pytest.mark.root
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_both_forms_check_and_load_the_same_table(tmp_path: Path, site: Site, variant: str) -> None:
    p = VARIANTS[variant](site)
    text, doc = _files(tmp_path, p)
    with netns.scratch() as a, netns.scratch() as b:
        _nft(a, "--check", "-f", str(text))
        _nft(b, "-j", "--check", "-f", str(doc))
        assert _nft(a, "list", "ruleset") == _nft(b, "list", "ruleset") == ""  # checks load nothing
        _nft(a, "-f", str(text))
        _nft(b, "-j", "-f", str(doc))
        from_text = _listing(a, "table", "inet", "cell")
        from_json = _listing(b, "table", "inet", "cell")
    assert from_text == from_json
    # ... and the kernel reads back exactly what was compiled (what drift detection relies on)
    live = _strip(from_json, ("handle", "packets", "bytes"))
    assert live == compile_ruleset(p)


@pytest.mark.root
def test_loading_leaves_other_tables_alone(tmp_path: Path, policy: Policy) -> None:
    text, doc = _files(tmp_path, policy)
    other = tmp_path / "other.nft"
    other.write_text(
        "table inet other {\n  chain c {\n    type filter hook input priority 10; policy accept;\n"
        '    tcp dport 22 counter accept comment "not ours"\n  }\n}\n'
    )
    with netns.scratch() as ns:
        _nft(ns, "-f", str(other))
        before = _listing(ns, "table", "inet", "other")
        for _ in range(2):
            _nft(ns, "-f", str(text))
            _nft(ns, "-j", "-f", str(doc))
        assert _listing(ns, "table", "inet", "other") == before
        tables = [o["table"]["name"] for o in _listing(ns, "tables") if "table" in o]
        assert sorted(tables) == ["cell", "other"]
        live = _listing(ns, "table", "inet", "cell")
        assert rule_count(live) == rule_count(compile_ruleset(policy))


# --- real packets: the NVR may pull video from a camera, the camera may not call back -------------

_SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
while True:
    s.accept()[0].close()
"""


def _link(gw: str, ifname: str, gw_addr: str, peer_ns: str, peer_addr: str) -> None:
    """A veth from the gateway namespace (`ifname`) to `peer_ns` (`host0`), addressed, routed."""
    from pyroute2 import IPRoute

    def gateway_side() -> None:
        with IPRoute() as ipr:
            ipr.link("add", ifname=ifname, kind="veth", peer="host0")
            peer = ipr.link_lookup(ifname="host0")[0]
            ipr.link("set", index=peer, net_ns_fd=peer_ns)
            idx = ipr.link_lookup(ifname=ifname)[0]
            ipr.addr("add", index=idx, address=gw_addr, prefixlen=24)
            ipr.link("set", index=idx, state="up")
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")

    def host_side() -> None:
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname="host0")[0]
            ipr.addr("add", index=idx, address=peer_addr, prefixlen=24)
            ipr.link("set", index=idx, state="up")
            ipr.route("add", dst="0.0.0.0/0", gateway=gw_addr)

    netns.with_ns(gw, gateway_side)
    netns.with_ns(peer_ns, host_side)


def _connects(ns: str, addr: str, port: int) -> bool:
    def attempt() -> bool:
        try:
            socket.create_connection((addr, port), timeout=1).close()
        except OSError:
            return False
        return True

    return netns.with_ns(ns, attempt)


def _packets(ns: str, counter: str) -> int:
    doc = json.loads(_nft(ns, "-j", "list", "counter", "inet", "cell", counter))["nftables"]
    return int(next(o["counter"]["packets"] for o in doc if "counter" in o))


@pytest.mark.root
def test_real_packets_follow_the_flows(tmp_path: Path, policy: Policy) -> None:
    text, _ = _files(tmp_path, policy)
    cam, nvr = policy.hosts["cam-01"], policy.hosts["nvr"]
    servers: list[subprocess.Popen[bytes]] = []
    with netns.scratch() as gw, netns.scratch() as cam_ns, netns.scratch() as nvr_ns:
        try:
            _link(gw, policy.vlans["cameras"].interface, "10.10.0.1", cam_ns, cam.address)
            _link(gw, policy.vlans["cell"].interface, "10.20.0.1", nvr_ns, nvr.address)
            _nft(gw, "-f", str(text))
            for ns in (cam_ns, nvr_ns):
                for port in ("554", "80"):
                    proc = netns.popen(
                        ns, [sys.executable, "-c", _SERVER, port], stdout=subprocess.PIPE
                    )
                    servers.append(proc)
                    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
            assert _connects(nvr_ns, cam.address, 554)  # cell -> cameras rtsp
            assert _connects(nvr_ns, cam.address, 80)  # nvr -> cameras onvif
            assert not _connects(cam_ns, nvr.address, 554)  # nothing lets a camera call out
            assert _packets(gw, drop_counter_for(policy, "cam-01", "nvr")) >= 1
            assert not _connects(cam_ns, "10.10.0.1", 22)
            assert _packets(gw, drop_counter_for(policy, "cam-01", "gateway")) >= 1
            assert _packets(gw, drop_counter_for(policy, "nvr", "cam-01")) == 0
        finally:
            for proc in servers:
                proc.kill()
                proc.wait()
