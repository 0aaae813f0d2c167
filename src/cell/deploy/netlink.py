"""The links seam: read the gateway's links, apply a `LinkPlan`, put a snapshot back. Thin.

Everything runs on a thread inside the gateway's namespace (`firewall.netns.call`; None: this
host), through pyroute2; nothing shells out to `ip`. `firewall`-style: `LinkBackend` is the
protocol, `Links` the kernel's, `cell.deploy.fakelinks.FakeLinks` the unit tests'.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Protocol

from cell.errors import ApplyError
from firewall import netns as ns
from firewall.links import (
    ALIAS,
    MACVLAN_MODE,
    LinkPlan,
    LinkSpec,
    LiveLink,
    LiveNet,
    Stack,
    kind_matches,
)

MAIN_TABLE = 254


class LinkBackend(Protocol):
    def read(self, plan: LinkPlan) -> LiveNet: ...

    def apply(self, plan: LinkPlan, stand_in: str | None) -> None: ...

    def restore(self, snapshot: LiveNet, plan: LinkPlan) -> None: ...

    def read_stack(self, plan: LinkPlan) -> Stack: ...


class Links:
    """The kernel's links in namespace `netns` (None: this host)."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns

    def read(self, plan: LinkPlan) -> LiveNet:
        return ns.call(self.netns, lambda: read_net(plan.sysctls))

    def apply(self, plan: LinkPlan, stand_in: str | None) -> None:
        ns.call(self.netns, lambda: _apply(plan, stand_in))

    def read_stack(self, plan: LinkPlan) -> Stack:
        from cell.deploy.netstack import read_stack

        return ns.call(self.netns, lambda: read_stack(plan))

    def restore(self, snapshot: LiveNet, plan: LinkPlan) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            ns.call(self.netns, lambda: _restore(snapshot, plan))
        except NetlinkError as e:
            raise ApplyError(f"links: restoring: {e.args[-1] if e.args else e}") from None


def read_sysctl(path: str) -> str | None:
    try:
        return Path("/proc/sys", path).read_text().strip()
    except OSError:
        return None


def _write_sysctl(path: str, value: str) -> None:
    try:
        Path("/proc/sys", path).write_text(value + "\n")
    except OSError as e:
        raise ApplyError(f"cannot set sysctl {path.replace('/', '.')} = {value}: {e}") from None


def read_net(sysctls: dict[str, str] | None = None) -> LiveNet:
    """Runs inside the namespace: every link, the main table's default routes, the sysctls."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        links = read_links(ipr)
        names = {lk["index"]: lk.get_attr("IFLA_IFNAME") for lk in ipr.get_links()}
        defaults = [
            (r.get_attr("RTA_GATEWAY"), names.get(r.get_attr("RTA_OIF")))
            for r in ipr.get_routes(family=2, table=MAIN_TABLE)
            if r["dst_len"] == 0
        ]
    values = {p: read_sysctl(p) for p in sysctls or {}}
    return LiveNet(links=links, default_routes=defaults, sysctls=values)


def read_links(ipr: Any) -> dict[str, LiveLink]:
    raw = list(ipr.get_links())
    names = {lk["index"]: str(lk.get_attr("IFLA_IFNAME")) for lk in raw}
    addrs: dict[int, list[str]] = {}
    for a in ipr.get_addr(family=2):
        addrs.setdefault(a["index"], []).append(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
    out = {}
    for lk in raw:
        info = lk.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info else None
        data = info.get_attr("IFLA_INFO_DATA") if info else None
        parent_ix = lk.get_attr("IFLA_LINK")
        other_ns = lk.get_attr("IFLA_LINK_NETNSID") is not None
        xdp = lk.get_attr("IFLA_XDP")
        master = lk.get_attr("IFLA_MASTER")
        name = names[lk["index"]]
        out[name] = LiveLink(
            name=name,
            kind=kind,
            parent=None if other_ns or parent_ix in (None, lk["index"]) else names.get(parent_ix),
            vlan_id=data.get_attr("IFLA_VLAN_ID") if data is not None and kind == "vlan" else None,
            mode=data.get_attr("IFLA_MACVLAN_MODE") if data is not None and kind == "macvlan" else None,
            addresses=sorted(addrs.get(lk["index"], [])),
            up=bool(lk["flags"] & 1),
            alias=lk.get_attr("IFLA_IFALIAS"),
            master=names.get(master) if master else None,
            netns_peer=other_ns,
            xdp=(xdp.get_attr("IFLA_XDP_PROG_ID") if xdp is not None else None) or None,
        )  # fmt: skip
    return out


def _apply(plan: LinkPlan, stand_in: str | None) -> None:
    """Runs inside the namespace: make `plan` the live state, lower links first."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    # The sysctls of links that exist already (a VLAN's port: arp_ignore) go first: otherwise a
    # host that asks for the gateway while its address is being added can learn the port's MAC,
    # and its packets then arrive on the wrong link until that ARP entry expires.
    for path, value in plan.sysctls.items():
        if Path("/proc/sys", path).exists():
            _write_sysctl(path, value)
    step = "reading the links"
    try:
        with IPRoute() as ipr:
            for spec in plan.links:
                if spec.role == "trunk" and stand_in:
                    continue  # the lab has no trunk: a veth stands in for each subinterface
                step = f"setting up {spec.name}"
                index = _ensure(ipr, spec, stand_in)
                if spec.addresses is not None:
                    _addresses(ipr, index, spec.addresses)
                ipr.link("set", index=index, state="up")
            step = "removing links of an earlier apply"
            wanted = plan.by_name()
            for name, have in sorted(read_links(ipr).items(), key=lambda kv: -len(kv[0])):
                if (have.alias or "").startswith(ALIAS) and name not in wanted:
                    ipr.link("del", index=ipr.link_lookup(ifname=name)[0])
            for route in plan.routes:
                step = f"setting the default route via {route.gateway}"
                dev = ipr.link_lookup(ifname=route.dev)[0]
                ipr.route("replace", dst="0.0.0.0/0", gateway=route.gateway, oif=dev)
    except NetlinkError as e:
        raise ApplyError(f"links: {step}: {e.args[-1] if e.args else e}") from None
    for path, value in plan.sysctls.items():
        _write_sysctl(path, value)


def _ensure(ipr: Any, spec: LinkSpec, stand_in: str | None) -> int:
    """The index of `spec`'s link, made (or remade, if it is ours and wrong) as needed."""
    live = read_links(ipr)
    have = live.get(spec.name)
    if spec.kind == "given" or (spec.kind == "vlan" and stand_in):
        if have is None:
            what = "the lab makes it" if stand_in else "it is the box's own link"
            if spec.role == "port" and not stand_in:
                what += (
                    f"; for VLAN {spec.vlan}: `links.trunk` in network.yaml makes it an 802.1Q "
                    "subinterface, or `port:` names the link that carries the VLAN"
                )
            raise ApplyError(f"links: {spec.name} ({spec.role}) is missing ({what})")
        return int(ipr.link_lookup(ifname=spec.name)[0])
    if have is not None and not kind_matches(spec, have, stand_in):
        if not (have.alias or "").startswith(ALIAS):
            raise ApplyError(
                f"links: {spec.name} exists as {have.kind or 'a plain link'}, and not by the "
                f"Cell's hand; the policy wants a {spec.kind} on {spec.parent}: remove or rename it"
            )
        ipr.link("del", index=ipr.link_lookup(ifname=spec.name)[0])
        have = None
    if have is None:
        parent = ipr.link_lookup(ifname=spec.parent)
        if not parent:
            raise ApplyError(f"links: {spec.name} needs {spec.parent}, which is missing")
        extra: dict[str, Any] = (
            {"vlan_id": spec.vlan_id} if spec.kind == "vlan" else {"macvlan_mode": MACVLAN_MODE}
        )
        ipr.link("add", ifname=spec.name, kind=spec.kind, link=parent[0], **extra)
    index = int(ipr.link_lookup(ifname=spec.name)[0])
    ipr.link("set", index=index, ifalias=f"{ALIAS}{spec.role} of VLAN {spec.vlan}")
    return index


def _addresses(ipr: Any, index: int, want: list[str]) -> None:
    have = {
        f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(family=2, index=index)
    }
    for extra in sorted(have - set(want)):
        addr, plen = extra.split("/")
        ipr.addr("del", index=index, address=addr, prefixlen=int(plen))
    for missing in sorted(set(want) - have):
        addr, plen = missing.split("/")
        ipr.addr("add", index=index, address=addr, prefixlen=int(plen))


def _restore(snap: LiveNet, plan: LinkPlan) -> None:
    """Runs inside the namespace: the snapshot's links, addresses and sysctls, as they were."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        now = read_links(ipr)
        for name, have in sorted(now.items(), key=lambda kv: -len(kv[0])):
            if name not in snap.links and (have.alias or "").startswith(ALIAS):
                with contextlib.suppress(Exception):
                    ipr.link("del", index=ipr.link_lookup(ifname=name)[0])
        for name, was in snap.links.items():
            if name in now or not (was.alias or "").startswith(ALIAS) or not was.parent:
                continue
            parent = ipr.link_lookup(ifname=was.parent)
            if parent and was.kind in ("vlan", "macvlan"):
                extra: dict[str, Any] = (
                    {"vlan_id": was.vlan_id} if was.kind == "vlan" else {"macvlan_mode": was.mode}
                )
                ipr.link("add", ifname=name, kind=was.kind, link=parent[0], **extra)
                ipr.link("set", index=ipr.link_lookup(ifname=name)[0], ifalias=was.alias)
        for name, was in snap.links.items():
            found = ipr.link_lookup(ifname=name)
            if not found:
                continue
            _addresses(ipr, found[0], was.addresses)
            ipr.link("set", index=found[0], state="up" if was.up else "down")
        names = {lk["index"]: lk.get_attr("IFLA_IFNAME") for lk in ipr.get_links()}
        for r in ipr.get_routes(family=2, table=MAIN_TABLE):
            if r["dst_len"] == 0:
                key = (r.get_attr("RTA_GATEWAY"), names.get(r.get_attr("RTA_OIF")))
                if key not in snap.default_routes:
                    with contextlib.suppress(Exception):
                        ipr.route("del", dst="0.0.0.0/0", gateway=key[0])
        for gateway, dev in snap.default_routes:
            oif = ipr.link_lookup(ifname=dev) if dev else []
            if gateway and oif:
                with contextlib.suppress(Exception):
                    ipr.route("replace", dst="0.0.0.0/0", gateway=gateway, oif=oif[0])
    for path, value in snap.sysctls.items():
        if value is not None:
            with contextlib.suppress(ApplyError):
                _write_sysctl(path, value)
