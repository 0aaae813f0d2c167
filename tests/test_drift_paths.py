"""Every path around the firewall is drift: a tc mirred redirect from the cameras' link to the
WAN link, a policy-routing rule or a route that sends a VLAN's traffic elsewhere, an XDP
program, a link that is not the Cell's, a flipped forwarding or rp_filter sysctl. Each is made
by hand in the lab gateway (pyroute2, as an intruder would with `ip`/`tc`), reported by
`cell drift` (exit 3), and gone from the report once undone.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cell.lab import LabInfo
from firewall import netns
from labsite import tc_redirect
from test_drift import Watch, drift, lab, site, watching  # noqa: F401  (the drift lab, its site)
from test_lifecycle import Site
from test_trust import Keys

pytestmark = pytest.mark.root


def in_gateway(info: LabInfo, fn: Callable[[Any], None]) -> None:
    def run() -> None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            fn(ipr)

    netns.with_ns(info.gateway, run)


def index(ipr: Any, name: str) -> int:
    return int(ipr.link_lookup(ifname=name)[0])


@contextlib.contextmanager
def tampered(
    site: Site, info: LabInfo, do: Callable[[Any], None], undo: Callable[[Any], None]
) -> Iterator[list[dict[str, Any]]]:
    in_gateway(info, do)  # on a site just applied (the fixture), so in sync before
    try:
        code, doc = drift(site)
        assert code == 3, doc
        yield doc["findings"]
    finally:
        in_gateway(info, undo)
    code, doc = drift(site)
    assert code == 0, doc


def test_tc_mirred_redirect_to_the_wan_is_drift(site: Site, lab: tuple[str, LabInfo, Keys]) -> None:
    _, info, _ = lab

    def do(ipr: Any) -> None:
        cams, wan = index(ipr, "eth0.10"), index(ipr, "eth1")
        ipr.tc("add", "ingress", cams)
        ipr.tc(
            "add-filter", "u32", cams, parent=0xFFFF0000, protocol=0x0003, target=0x1,
            keys=["0x0/0x0+0"],
            action={"kind": "mirred", "direction": "egress", "action": "redirect", "ifindex": wan},
        )  # fmt: skip

    with tampered(site, info, do, lambda ipr: ipr.tc("del", "ingress", index(ipr, "eth0.10"))) as f:
        tc = [x["what"] for x in f if x["kind"] == "tc"]
        assert any("ingress on eth0.10" in w for w in tc)
        assert any("redirects to eth1" in w and "bypass nftables" in w for w in tc)


def test_a_rule_and_a_route_that_send_a_vlan_elsewhere_are_drift(
    site: Site, lab: tuple[str, LabInfo, Keys]
) -> None:
    _, info, _ = lab
    wan_side = str(info.wan_link["wan"])

    def do(ipr: Any) -> None:
        ipr.route("add", dst="0.0.0.0/0", gateway=wan_side, table=100)
        ipr.rule("add", table=100, priority=100, src="10.10.0.0", src_len=24)
        ipr.route("add", dst="10.40.0.0/25", gateway=wan_side)

    def undo(ipr: Any) -> None:
        ipr.rule("del", table=100, priority=100, src="10.10.0.0", src_len=24)
        ipr.route("del", dst="0.0.0.0/0", gateway=wan_side, table=100)
        ipr.route("del", dst="10.40.0.0/25", gateway=wan_side)

    with tampered(site, info, do, undo) as f:
        whats = {x["kind"]: [] for x in f}
        for x in f:
            whats[x["kind"]].append(x["what"])
        assert whats["rule"] == ["policy-routing rule 100: from 10.10.0.0/24 lookup table 100"]
        assert any("10.40.0.0/25" in w and "table main" in w for w in whats["route"])
        assert any("0.0.0.0/0" in w and "table 100" in w for w in whats["route"])


def test_flipped_sysctls_are_drift(site: Site, lab: tuple[str, LabInfo, Keys]) -> None:
    _, info, _ = lab

    def write(path: str, value: str) -> Callable[[Any], None]:
        return lambda _ipr: Path("/proc/sys", path).write_text(value + "\n")

    with tampered(
        site, info, write("net/ipv4/ip_forward", "0"), write("net/ipv4/ip_forward", "1")
    ) as f:
        assert [x["what"] for x in f if x["kind"] == "sysctl"] == [
            "sysctl net.ipv4.ip_forward is 0, not 1"
        ]
    rp = "net/ipv4/conf/eth0.10/rp_filter"
    with tampered(site, info, write(rp, "0"), write(rp, "1")) as f:
        assert any("rp_filter is 0, not 1" in x["what"] for x in f)


def _xdp_pass() -> int:
    """A two-instruction XDP program (return XDP_PASS), loaded with bpf(2): its fd."""
    insns = ctypes.create_string_buffer(bytes.fromhex("b7000000020000009500000000000000"), 16)
    lic = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("IIQQ", attr, 0, 6, 2, ctypes.addressof(insns), ctypes.addressof(lic))
    libc = ctypes.CDLL(None, use_errno=True)
    fd = int(libc.syscall(321, 5, attr, 128))  # SYS_bpf (x86_64), BPF_PROG_LOAD
    if fd < 0:
        pytest.skip(f"cannot load a BPF program here: {os.strerror(ctypes.get_errno())}")
    return fd


def test_an_xdp_program_and_a_stranger_link_are_drift(
    site: Site, lab: tuple[str, LabInfo, Keys]
) -> None:
    _, info, _ = lab
    fd = _xdp_pass()
    try:
        with tampered(
            site,
            info,
            lambda ipr: ipr.link("set", index=index(ipr, "vlan10"), xdp_fd=fd),
            lambda ipr: ipr.link("set", index=index(ipr, "vlan10"), xdp_fd=-1),
        ) as f:
            assert any(x["kind"] == "bpf" and "attached to vlan10" in x["what"] for x in f)
    finally:
        os.close(fd)

    def do(ipr: Any) -> None:
        ipr.link("add", ifname="sneak0", kind="veth", peer={"ifname": "sneak1"})
        ipr.link("set", index=index(ipr, "sneak0"), state="up")

    with tampered(site, info, do, lambda ipr: ipr.link("del", index=index(ipr, "sneak0"))) as f:
        assert any(
            x["kind"] == "link"
            and "sneak0 (veth, up" in x["what"]
            and "not one of the Cell's" in x["what"]
            for x in f
        )


def test_watch_reports_a_redirect_a_route_and_a_sysctl_within_a_second(
    site: Site, watching: Watch, lab: tuple[str, LabInfo, Keys]
) -> None:
    _, info, _ = lab
    gw = info.gateway

    def paths(status: str) -> Callable[[dict[str, Any]], bool]:
        return lambda e: e["kind"] == "paths" and e["status"] == status

    t0 = time.monotonic()
    with tc_redirect(gw):
        e = watching.next(paths("drift"))
        assert time.monotonic() - t0 < 1.0
        by = e["new"][0]["by"]  # the kernel said who (the netlink port id of `tc`: its pid)
        assert by["pid"] > 0 and by["name"] in ("tc", None)
    watching.next(lambda e: e["kind"] == "paths" and e["status"] == "in-sync" and e["resolved"])

    t0 = time.monotonic()
    via = str(info.wan_link["wan"])
    netns.run(gw, ["ip", "route", "add", "10.10.0.0/25", "via", via], check=True)
    try:
        e = watching.next(paths("drift"))
        assert time.monotonic() - t0 < 1.0 and "10.10.0.0/25" in e["new"][0]["what"]
        by = e["new"][0]["by"]  # `ip` may be gone before its name is read: its pid stays
        assert by["pid"] > 0 and by["name"] in ("ip", None)
    finally:
        netns.run(gw, ["ip", "route", "del", "10.10.0.0/25"], check=True)
    watching.next(paths("in-sync"))

    forward = "net/ipv4/ip_forward"
    t0 = time.monotonic()
    netns.with_ns(gw, lambda: Path("/proc/sys", forward).write_text("0\n"))
    try:
        e = watching.next(paths("drift"))
        assert time.monotonic() - t0 < 1.0 and "ip_forward is 0" in e["new"][0]["what"]
    finally:
        netns.with_ns(gw, lambda: Path("/proc/sys", forward).write_text("1\n"))
    watching.next(paths("in-sync"))
