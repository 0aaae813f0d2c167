"""Paths around the firewall in the gateway's own network stack: drift too.

nftables judges what the kernel routes through it. A packet can be moved past `table inet cell`
without touching it: a tc filter that redirects a VLAN's frames straight out of the WAN link, an
XDP program, a route or a policy-routing rule that sends a VLAN's traffic elsewhere, a link that
is not the Cell's (or one of the Cell's links enslaved to a bridge), a flipped forwarding or
rp_filter sysctl. Each is a finding here, against the applied commit's links/links.json:

- `link`: a link of the plan missing, of another kind, enslaved, down, with other addresses;
  a link that is not the plan's and is up or addressed (one down and without address carries
  nothing and is not reported, so a spare NIC of a box is no noise);
- `route`: a route the kernel did not make for one of the plan's addresses, other than the
  default route out of the WAN link (the plan's, or the uplink's DHCP's); any table but
  local/main/default with a route in it;
- `rule`: a policy-routing rule beyond the kernel's three (local, main, default);
- `tc`: an ingress or clsact qdisc, and every filter (with its mirred target, named);
- `bpf`: an XDP program attached to a link (a tc BPF program is a `tc` filter);
- `sysctl`: one of the plan's sysctls with another value.

Read through the target's links seam (`cell.deploy.netstack`); pure comparison after that.
"""

from __future__ import annotations

from cell.deploy.target import Target
from cell.drift.finding import Finding
from firewall.links import LinkPlan, LiveLink, Stack, compare_links, load_links
from policies.layout import LINKS

KERNEL_RULES = {(255, 0), (254, 32766), (253, 32767)}
"""(table, priority) of the rules every namespace starts with."""
LOCAL, MAIN, DEFAULT = 255, 254, 253
HOLDERS = {"ingress", "clsact"}
"""Qdiscs that exist only to hold filters."""


def compare_stack(plan: LinkPlan, stack: Stack, stand_in: str | None) -> list[Finding]:
    """Pure: every path around the firewall that `stack` has and `plan` does not."""
    out = [Finding(_kind_of(d), d) for d in compare_links(plan, stack.net, stand_in)]
    wanted = plan.by_name()
    ours = set(wanted) | {"lo"}
    for name, link in sorted(stack.net.links.items()):
        if name not in ours and (link.up or link.addresses):
            out.append(Finding("link", f"link {name} ({_what(link)}) is not one of the Cell's"))
        if link.xdp:
            out.append(
                Finding("bpf", f"XDP program {link.xdp} is attached to {name}: it sees (and can "
                        "redirect) packets before nftables does")
            )  # fmt: skip
    out += _routes(plan, stack)
    for table, prio, what in sorted(stack.rules):
        if (table, prio) not in KERNEL_RULES or what != "all":
            out.append(Finding("rule", f"policy-routing rule {prio}: {what} lookup table {table}"))
    for dev, tc in sorted(stack.tc.items()):
        for kind in tc.qdiscs:
            if kind in HOLDERS:
                out.append(Finding("tc", f"tc qdisc {kind} on {dev}: it holds filters that act "
                                   "before nftables"))  # fmt: skip
        for line in tc.filters:
            out.append(Finding("tc", f"tc {line} on {dev}: packets it moves bypass nftables"))
    return out


def _routes(plan: LinkPlan, stack: Stack) -> list[Finding]:
    out = []
    links = plan.by_name()
    static = {(r.gateway, r.dev) for r in plan.routes}
    for r in stack.routes:
        if r.table in (LOCAL, MAIN) and r.kernel and r.dev in (*links, "lo"):
            continue  # what the kernel made for an address of the plan (or loopback)
        default = r.table == MAIN and r.dst == "0.0.0.0/0" and r.dev == plan.wan
        if default and (not static or (r.gateway, r.dev) in static):
            continue  # the plan's default route, or the uplink's DHCP's
        via = f" via {r.gateway}" if r.gateway else ""
        table = {MAIN: "main", LOCAL: "local", DEFAULT: "default"}.get(r.table, str(r.table))
        out.append(
            Finding("route", f"route {r.dst}{via} dev {r.dev} in table {table} is not the Cell's")
        )
    return out


def _kind_of(difference: str) -> str:
    return difference.split(" ", 1)[0] if difference.startswith(("sysctl", "link")) else "route"


def _what(link: LiveLink) -> str:
    state = "up" if link.up else "down"
    addrs = f", {', '.join(link.addresses)}" if link.addresses else ""
    return f"{link.kind or 'device'}, {state}{addrs}"


def check_paths(files: dict[str, bytes], target: Target) -> list[Finding]:
    """The applied commit's links against the gateway's live stack (nothing to compare for a
    commit applied before the Cell owned its links)."""
    if LINKS not in files:
        return []
    plan = load_links(files[LINKS])
    stack = target.links.read_stack(plan)
    return compare_stack(plan, stack, target.stand_in)
