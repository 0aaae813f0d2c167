"""Read the gateway's whole IPv4 stack for drift: links, every table's routes, the rules, tc
qdiscs and filters of every link, and the plan's sysctls. Runs inside the namespace (the links
seam calls it there), through pyroute2."""

from __future__ import annotations

from typing import Any

from cell.deploy.netlink import read_links, read_sysctl
from firewall.links import LinkPlan, LiveNet, Route, Stack, Tc

MAIN = 254
RTPROT_KERNEL = 2
_MIRRED = {
    1: "redirects to",
    2: "mirrors to",
    3: "redirects (ingress) to",
    4: "mirrors (ingress) to",
}


def read_stack(plan: LinkPlan) -> Stack:
    """Runs inside the namespace."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        links = read_links(ipr)
        names = {lk["index"]: str(lk.get_attr("IFLA_IFNAME")) for lk in ipr.get_links()}
        routes = [
            Route(
                table=int(r.get_attr("RTA_TABLE") or r["table"]),
                dst=f"{r.get_attr('RTA_DST') or '0.0.0.0'}/{r['dst_len']}",
                gateway=r.get_attr("RTA_GATEWAY"),
                dev=names.get(r.get_attr("RTA_OIF")),
                kernel=r["proto"] == RTPROT_KERNEL,
            )
            for r in ipr.route("dump", family=2)
        ]
        rules = [
            (
                int(r.get_attr("FRA_TABLE") or r["table"]),
                int(r.get_attr("FRA_PRIORITY") or 0),
                _selects(r),
            )
            for r in ipr.get_rules(family=2)
        ]
        tc = {name: _tc(ipr, index, name, names) for index, name in names.items()}
    defaults = [(r.gateway, r.dev) for r in routes if r.table == MAIN and r.dst == "0.0.0.0/0"]
    net = LiveNet(links, defaults, {p: read_sysctl(p) for p in plan.sysctls})
    return Stack(net, routes, rules, tc)


def _selects(rule: Any) -> str:
    parts = []
    for attr, word in (("FRA_SRC", "from"), ("FRA_DST", "to")):
        value = rule.get_attr(attr)
        if value:
            key = "src_len" if attr == "FRA_SRC" else "dst_len"
            parts.append(f"{word} {value}/{rule[key]}")
    for attr, word in (("FRA_IIFNAME", "iif"), ("FRA_OIFNAME", "oif"), ("FRA_FWMARK", "fwmark")):
        value = rule.get_attr(attr)
        if value:
            parts.append(f"{word} {value}")
    return " ".join(parts) or "all"


def _tc(ipr: Any, index: int, dev: str, names: dict[int, str]) -> Tc:
    out = Tc(dev)
    parents = set()
    for q in ipr.get_qdiscs(index=index):
        kind = str(q.get_attr("TCA_KIND"))
        out.qdiscs.append(kind)
        parents.add(int(q["handle"]))
        if kind == "clsact":
            parents |= {0xFFFFFFF2, 0xFFFFFFF3}
    seen = set()
    for parent in sorted(parents):
        for f in ipr.get_filters(index=index, parent=parent):
            kind = str(f.get_attr("TCA_KIND"))
            acts = _actions(f, names)
            opts = f.get_attr("TCA_OPTIONS")
            if not acts and kind == "u32" and (opts is None or not opts.get_attr("TCA_U32_SEL")):
                continue  # u32's own hash tables, listed beside its filters
            line = f"filter {kind}" + (f" ({', '.join(acts)})" if acts else "")
            if line not in seen:
                seen.add(line)
                out.filters.append(line)
    return out


def _actions(msg: Any, names: dict[int, str]) -> list[str]:
    """What a filter's actions do (mirred: where to; a BPF program: its id), found anywhere in
    the message (u32, flower, matchall and bpf each nest their actions differently)."""
    out: list[str] = []
    for name, value in _attrs(msg):
        if name == "TCA_MIRRED_PARMS" and isinstance(value, dict):
            verb = _MIRRED.get(int(value.get("eaction", 0)), "sends to")
            out.append(f"{verb} {names.get(int(value.get('ifindex', 0)), 'another link')}")
        elif name == "TCA_BPF_ID":
            out.append(f"runs BPF program {value}")
        elif name == "TCA_ACT_KIND" and value not in ("mirred",):
            out.append(f"acts: {value}")
    return out


def _attrs(msg: Any) -> list[tuple[str, Any]]:
    """Every (name, value) in a netlink message, nested ones too (pyroute2's `nla_slot`s)."""
    found: list[tuple[str, Any]] = []
    stack = [msg]
    while stack:
        node = stack.pop()
        for item in node.get("attrs") or []:
            if isinstance(item, tuple):
                name, value, nested = item[0], item[1], item[1]
            else:
                name, value, nested = item.name, item.value, item.nla
            found.append((str(name), value))
            if isinstance(nested, dict):
                stack.append(nested)
    return found
