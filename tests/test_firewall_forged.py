"""Forged packets against the forward chain, in a lab of the example site (root).

Each attack is sent as an attacker on a VLAN would send it: hand-made with scapy, written to a raw
socket inside the VLAN's namespace, routed by the kernel to the Cell. What the attacker gets is
read where it matters: a sniffer on the WAN namespace's one link must see none of it, and the
drop counter that names the attack must rise. Each test also shows that its packet is a real
attack: under the old head of the forward chain (`ct state established,related accept` first,
no anti-spoofing) the very same packet reaches the WAN.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from cell.deploy.install import apply_lab
from cell.lab import LabInfo, lab_down, lab_up
from firewall import netns
from firewall import nft as fw
from labsite import make_site, new_id
from policies import Policy, load_policy

pytestmark = pytest.mark.root

scapy_all = pytest.importorskip("scapy.all")
IP, TCP, ICMP, Raw = scapy_all.IP, scapy_all.TCP, scapy_all.ICMP, scapy_all.Raw
WAN_LINK = "site"  # the WAN namespace's link to the gateway (cell.lab.plan.WAN_LINK)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Policy, LabInfo]]:
    site_id = new_id()
    repo = make_site(tmp_path_factory.mktemp("forged"), site_id)
    policy = load_policy(repo)
    try:
        yield policy, lab_up(policy, apply=apply_lab)
    finally:
        lab_down(site_id)


@pytest.fixture
def restore(lab: tuple[Policy, LabInfo]) -> Iterator[None]:
    """Put the applied ruleset back after a test that loosened it."""
    _, info = lab
    yield
    fw.apply(Path(info.layout.config, "nftables/ruleset.json").read_bytes(), info.gateway)


# --- the attacker's tools ---------------------------------------------------------------------


def _send(ns: str, packet: bytes) -> None:
    """Write a whole IPv4 packet (any source) to a raw socket in `ns`; the kernel routes it."""

    def go() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
            dst = socket.inet_ntoa(packet[16:20])
            s.sendto(packet, (dst, 0))

    netns.with_ns(ns, go)


class Sniffer:
    """Every frame on the WAN namespace's link, from a packet socket opened inside it."""

    def __init__(self, ns: str) -> None:
        self.frames: list[bytes] = []
        self._stop = threading.Event()
        self._sock = netns.with_ns(ns, self._open)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _open() -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        s.bind((WAN_LINK, 0))
        s.settimeout(0.05)
        return s

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                self.frames.append(self._sock.recv(65535))

    def seen(self, marker: bytes) -> list[bytes]:
        return [f for f in self.frames if marker in f]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


@contextlib.contextmanager
def sniffing(info: LabInfo) -> Iterator[Sniffer]:
    sniffer = Sniffer(info.wan)
    try:
        yield sniffer
    finally:
        sniffer.close()


def _counter(info: LabInfo, name: str) -> int:
    return fw.backend(info.gateway).read_counters().get(name, 0)


def _attack(
    info: LabInfo, sniffer: Sniffer, ns: str, packet: Callable[[bytes], bytes], counter: str
) -> tuple[list[bytes], int]:
    """Send one forged packet (carrying a fresh marker); what reached the WAN, and the rise."""
    marker = f"EXFIL-{uuid.uuid4().hex}".encode()
    before = _counter(info, counter)
    _send(ns, packet(marker))
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and not sniffer.seen(marker):
        if _counter(info, counter) > before:
            time.sleep(0.2)  # the counter rose: a leak would have been sniffed by now too
            break
        time.sleep(0.02)
    return sniffer.seen(marker), _counter(info, counter) - before


def _old_forward_head(info: LabInfo) -> None:
    """The forward chain as it was: conntrack first, whatever the interfaces; no anti-spoofing."""
    netns.run(info.gateway, ["nft", "flush", "chain", "inet", "cell", "prerouting"], check=True)
    netns.run(
        info.gateway,
        ["nft", "insert", "rule", "inet", "cell", "forward", "ct", "state",
         "established,related", "accept"],
        check=True,
    )  # fmt: skip


# --- connections to pretend to belong to -------------------------------------------------------


def _tcp_peer(ns: str, remote: tuple[str, int], timeout: float = 20) -> int | None:
    """The local port of an established TCP connection to `remote` in `ns` (its /proc view)."""
    want = f"{socket.inet_aton(remote[0])[::-1].hex().upper()}:{remote[1]:04X}"

    def look() -> int | None:
        for line in Path("/proc/thread-self/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[2] == want and fields[3] == "01":
                return int(fields[1].split(":")[1], 16)
        return None

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        port = netns.with_ns(ns, look)
        if port is not None:
            return port
        time.sleep(0.2)
    return None


@contextlib.contextmanager
def open_connection(ns: str, src: str, dst: tuple[str, int]) -> Iterator[int]:
    sock = netns.with_ns(ns, partial(socket.create_connection, dst, 3, (src, 0)))
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def _bridge_port(policy: Policy, info: LabInfo) -> int:
    assert policy.site.hub is not None
    port = _tcp_peer(info.gateway, (info.outside["hub"], policy.site.hub.bridge.port))
    assert port is not None, "the Cell's bridge never connected to the lab hub"
    return port


def _icmp_error(
    outer_src: str, hub: str, hub_port: int, wan_addr: str, port: int
) -> Callable[[bytes], bytes]:
    """An ICMP 'fragmentation needed' from `outer_src` to the hub about a packet the hub sent to
    the Cell on the bridge connection: conntrack calls it RELATED to that connection."""

    def build(marker: bytes) -> bytes:
        inner = IP(src=hub, dst=wan_addr) / TCP(sport=hub_port, dport=port, flags="A") / Raw(marker)
        return bytes(IP(src=outer_src, dst=hub) / ICMP(type=3, code=4, nexthopmtu=576) / inner)

    return build


# --- the attacks -------------------------------------------------------------------------------


def test_forged_icmp_error_on_the_bridge_connection_stays_in(
    lab: tuple[Policy, LabInfo], restore: None
) -> None:
    policy, info = lab
    assert policy.site.hub is not None
    port = _bridge_port(policy, info)
    hub, hub_port, wan_addr = (
        info.outside["hub"],
        policy.site.hub.bridge.port,
        info.wan_link["gateway"],
    )
    cam = info.hosts["cam-01"]
    laptop = info.hosts["laptop"]
    with sniffing(info) as sniffer:
        # From the cameras (no Internet): stopped before conntrack is asked.
        forged = _icmp_error(cam["address"], hub, hub_port, wan_addr, port)
        seen, rose = _attack(info, sniffer, cam["netns"], forged, "drop_cameras.wan")
        assert not seen and rose >= 1
        # From ops (which has Internet, but no flow to the hub): the pair rule refuses it.
        forged = _icmp_error(laptop["address"], hub, hub_port, wan_addr, port)
        seen, rose = _attack(info, sniffer, laptop["netns"], forged, "drop_ops.wan")
        assert not seen and rose >= 1
        # The same packets are a real attack: the old head of the chain lets them out.
        _old_forward_head(info)
        forged = _icmp_error(cam["address"], hub, hub_port, wan_addr, port)
        seen, _ = _attack(info, sniffer, cam["netns"], forged, "drop_cameras.wan")
        assert seen, "control: under the old ruleset the forged ICMP error should leak"


def _handshake(sniffer: Sniffer, server: tuple[str, int], nat_addr: str) -> tuple[int, int]:
    """(next client seq, next server seq) of the latest handshake with `server` on the WAN
    link: what an attacker who can see or guess the flow's sequence numbers knows. Conntrack
    files a packet under a TCP connection only inside its window."""
    frames = [scapy_all.Ether(f) for f in list(sniffer.frames)]
    tcp = [f for f in frames if f.haslayer(TCP) and f.haslayer(IP)]
    syns = [f for f in tcp if f[IP].src == nat_addr and f[TCP].dport == server[1]
            and f[IP].dst == server[0] and f[TCP].flags == "S"]  # fmt: skip
    assert syns, "the laptop's SYN never reached the WAN"
    syn = syns[-1]
    acks = [f for f in tcp if f[IP].src == server[0] and f[TCP].dport == syn[TCP].sport
            and f[TCP].flags == "SA"]  # fmt: skip
    assert acks, "no SYN-ACK on the WAN link"
    return int(syn[TCP].seq) + 1, int(acks[-1][TCP].seq) + 1


def test_forged_packet_of_another_hosts_flow_stays_in(
    lab: tuple[Policy, LabInfo], restore: None
) -> None:
    _, info = lab
    laptop, cam = info.hosts["laptop"], info.hosts["cam-01"]
    internet = (info.outside["internet"], 443)
    with (
        sniffing(info) as sniffer,
        open_connection(laptop["netns"], laptop["address"], internet) as port,
    ):
        time.sleep(0.1)
        seq, ack = _handshake(sniffer, internet, info.wan_link["gateway"])

        def forged(marker: bytes) -> bytes:  # the laptop's HTTPS flow, sent by a camera
            tcp = TCP(sport=port, dport=internet[1], flags="PA", seq=seq, ack=ack, window=502)
            return bytes(IP(src=laptop["address"], dst=internet[0]) / tcp / Raw(marker))

        seen, rose = _attack(info, sniffer, cam["netns"], forged, "drop_spoofed_cameras")
        assert not seen and rose >= 1
        # Without anti-spoofing (the ruleset's, and the kernel's strict reverse-path filter that
        # the apply also sets), the cameras' WAN rule still holds, whatever conntrack says.
        netns.run(info.gateway, ["nft", "flush", "chain", "inet", "cell", "prerouting"], check=True)
        rp = [
            f"/proc/sys/net/ipv4/conf/{n}/rp_filter"
            for n in ("all", info.vlans["cameras"]["interface"])
        ]
        before = netns.with_ns(info.gateway, lambda: [Path(f).read_text() for f in rp])
        netns.with_ns(info.gateway, lambda: [Path(f).write_text("0") for f in rp])
        try:
            seen, rose = _attack(info, sniffer, cam["netns"], forged, "drop_cameras.wan")
            assert not seen and rose >= 1
            _old_forward_head(info)
            seen, _ = _attack(info, sniffer, cam["netns"], forged, "drop_cameras.wan")
            assert seen, "control: under the old ruleset the forged flow should leak"
        finally:
            netns.with_ns(
                info.gateway,
                lambda: [Path(f).write_text(v) for f, v in zip(rp, before, strict=True)],
            )


def test_spoofed_sources_are_dropped_and_counted(lab: tuple[Policy, LabInfo]) -> None:
    _, info = lab
    laptop, nvr = info.hosts["laptop"], info.hosts["nvr"]
    internet = info.outside["internet"]
    free = "10.40.0.77"  # in the ops subnet, no host of the policy: ops' own flow to wan:443

    def syn(src: str) -> Callable[[bytes], bytes]:
        def build(marker: bytes) -> bytes:
            return bytes(
                IP(src=src, dst=internet) / TCP(sport=40000, dport=443, flags="S") / Raw(marker)
            )

        return build

    with sniffing(info) as sniffer:
        # An ops host pretending to be a camera (which may not reach the WAN).
        seen, rose = _attack(info, sniffer, laptop["netns"], syn("10.10.0.11"), "drop_spoofed_ops")
        assert not seen and rose >= 1
        # ... or an outside address.
        seen, rose = _attack(
            info, sniffer, laptop["netns"], syn("198.51.100.1"), "drop_spoofed_ops"
        )
        assert not seen and rose >= 1
        # Control: its own subnet's address passes, and leaves with the Cell's WAN address.
        seen, _ = _attack(info, sniffer, laptop["netns"], syn(free), "drop_spoofed_ops")
        assert seen
        out = scapy_all.Ether(seen[0])
        assert out[IP].src == info.wan_link["gateway"] and out[IP].dst == internet

        # From the WAN, a site address is a lie.
        def from_wan(marker: bytes) -> bytes:
            pkt = IP(src=nvr["address"], dst=info.wan_link["gateway"]) / TCP(dport=22, flags="S")
            return bytes(pkt / Raw(marker))

        _, rose = _attack(info, sniffer, info.wan, from_wan, "drop_spoofed_wan")
        assert rose >= 1


def test_what_a_flow_lets_out_arrives_from_the_cells_wan_address(
    lab: tuple[Policy, LabInfo],
) -> None:
    """NAT: the laptop's HTTPS flow reaches a WAN server, which sees only the Cell's WAN address
    (it has no route to the site), and the reply comes back through conntrack."""
    _, info = lab
    laptop = info.hosts["laptop"]
    log = Path(info.logs["internet"])
    before = log.read_text() if log.exists() else ""
    with open_connection(laptop["netns"], laptop["address"], (info.outside["internet"], 443)):
        pass  # connected: the SYN-ACK came back to the laptop
    deadline = time.monotonic() + 2
    while log.read_text() == before and time.monotonic() < deadline:
        time.sleep(0.02)
    new = log.read_text()[len(before) :]
    assert f'"src": "{info.wan_link["gateway"]}:' in new, new
    assert laptop["address"] not in new
