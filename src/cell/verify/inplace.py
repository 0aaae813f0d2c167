"""Probes in place: `cell probe` on the Cell itself, from inside each VLAN's own segment.

For each VLAN a probe namespace joins the VLAN's layer-2 segment with a macvlan (bridge mode) of
the VLAN's port, the same lower link the gateway's own interface (also a macvlan) sits on, and
takes the VLAN's reserved probe address (`policies.flows.reserved_probe`). A probe sent from
there enters the Cell through the VLAN's interface and is judged by the live ruleset, exactly as
a host on that VLAN would be (docs/links.md says why macvlan). Nothing of it stays: the
namespaces go at the end, even on failure, and a later run sweeps what a killed one left.

Before an address is taken, an ARP probe (RFC 5227) asks the segment who holds it: an address
in use is refused, never taken over. The probe's MAC is derived from the site and the VLAN, so
every run looks the same to the hosts' and the gateway's neighbour caches.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from cell.verify.errors import ProbeRefused
from firewall import netns as ns
from firewall.links import compile_links
from policies import Policy
from policies.flows import reserved_probe

PROBE_LINK = "probe0"
BOX_OUTSIDE: dict[str, Any] = {
    "real_site": True,
    "phone_home": "192.0.2.99",
    "resolver": "198.51.100.53",
}
"""Outside targets on a real site: documentation addresses (RFC 5737), which no Internet
router forwards; an allowed probe to the Internet is not sent at all (it would leave)."""


def probe_ns(site: str, vlan: str, pid: int | None = None) -> str:
    """`cell-SITE.probe-PID-VLAN`: under the lab's prefix, so `cell lab down` sweeps it too."""
    return f"cell-{site}.probe-{pid or os.getpid()}-{vlan}"


def probe_mac(site: str, vlan: str) -> str:
    """A locally administered unicast MAC, the same for every run of one site's VLAN."""
    raw = hashlib.sha256(f"cell-probe:{site}:{vlan}".encode()).digest()[:5]
    return ":".join(f"{b:02x}" for b in (0x02, *raw))


def box_outside(policy: Policy) -> dict[str, Any]:
    resolvers = policy.network.wan.resolvers
    return {**BOX_OUTSIDE, **({"resolver": resolvers[0]} if resolvers else {})}


@contextlib.contextmanager
def probe_segments(policy: Policy, gateway: str | None) -> Iterator[dict[str, str]]:
    """VLAN -> its probe namespace, joined to the VLAN's segment, for the length of a block."""
    site = policy.site.site.id
    _sweep(site)
    plan = compile_links(policy)
    ports = plan.ports()
    made: list[str] = []
    try:
        for v in policy.network.vlans:
            addr = reserved_probe(policy, v.name)
            prefix = ipaddress.IPv4Network(v.subnet).prefixlen
            mac = probe_mac(site, v.name)
            ns.call(gateway, partial(_check, v.interface, ports[v.name]))
            name = probe_ns(site, v.name)
            ns.create(name)
            made.append(name)
            ns.with_ns(name, _no_ipv6)
            ns.call(gateway, partial(_macvlan, ports[v.name], name, mac))
            holder = ns.with_ns(name, partial(_arp_probe, addr, mac))
            if holder is not None:
                raise ProbeRefused(
                    f"the probe address {addr} of VLAN {v.name} is in use on {v.interface}: "
                    f"{holder} answers for it; reserve a free one with `probe:` in network.yaml"
                )
            ns.with_ns(name, partial(_address, addr, prefix, v.gateway))
        yield {v.name: probe_ns(site, v.name) for v in policy.network.vlans}
    finally:
        for name in made:
            with contextlib.suppress(OSError):
                ns.remove(name)


def _sweep(site: str) -> None:
    """Probe namespaces of this site whose run is over (its process gone)."""
    prefix = f"cell-{site}.probe-"
    for name in ns.names():
        if name.startswith(prefix):
            pid = name[len(prefix) :].split("-", 1)[0]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                with contextlib.suppress(OSError):
                    ns.remove(name)


def _no_ipv6() -> None:
    Path("/proc/sys/net/ipv6/conf/default/disable_ipv6").write_text("1\n")


def _check(interface: str, port: str) -> None:
    """Runs in the gateway: the VLAN's links are there."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for link in (port, interface):
            if not ipr.link_lookup(ifname=link):
                raise ProbeRefused(
                    f"the VLAN link {link} is not here: is this the Cell, and applied? "
                    "(`cell apply` makes it; for the lab, `cell lab up`)"
                )


def _arp_probe(address: str, mac: str, tries: int = 2, wait: float = 0.15) -> str | None:
    """Runs in the probe namespace, before the address is taken: an RFC 5227 ARP probe
    ("who has ADDRESS?", sender address 0.0.0.0) on the segment; the MAC that answers, if any."""
    me = bytes.fromhex(mac.replace(":", ""))
    target = socket.inet_aton(address)
    frame = b"\xff" * 6 + me + b"\x08\x06"
    frame += struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + me + b"\0" * 4 + b"\0" * 6 + target
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806)) as s:
        s.bind((PROBE_LINK, 0x0806))
        for _ in range(tries):
            s.send(frame)
            deadline = time.monotonic() + wait
            while (left := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select([s], [], [], left)
                if not ready:
                    break
                got = s.recv(128)
                op, sha, spa = struct.unpack_from("!H6s4s", got, 20)
                if op == 2 and spa == target and sha != me:
                    return ":".join(f"{b:02x}" for b in sha)
    return None


def _macvlan(port: str, into: str, mac: str) -> None:
    """Runs in the gateway: a macvlan (bridge mode) of `port`, made straight inside `into`."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link(
            "add",
            state="up",
            ifname=PROBE_LINK,
            kind="macvlan",
            link=ipr.link_lookup(ifname=port)[0],
            macvlan_mode="bridge",
            address=mac,
            net_ns_fd=into,
        )


def _address(address: str, prefixlen: int, gateway: str) -> None:
    """Runs in the probe namespace."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=PROBE_LINK)[0]
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
        ipr.link("set", index=index, state="up")
        ipr.route("add", dst="0.0.0.0/0", gateway=gateway)
