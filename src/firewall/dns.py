"""Render the Cell's DNS: a sinkhole for the untrusted VLANs and the Cell's own resolver.

`render_dnsmasq` is pure and byte-for-byte deterministic. It returns two dnsmasq configs, relative
to the layout's config directory, each for its own dnsmasq process:

- `dnsmasq/sinkhole.conf` answers every query from the `dns.sinkhole` VLANs locally and forwards
  nothing, ever: unknown names get 0.0.0.0 (A) and :: (AAAA), `local_names` their address, any
  other type NODATA. Each query is logged with its client, so the verifier counts phone-home
  attempts per day, client and name.
- `dnsmasq/resolver.conf` serves the Cell itself (127.0.0.1) and any other VLAN with a DNS flow
  to the gateway; it forwards to `wan.resolvers` and puts the addresses it gets for the hub's
  hostnames into the nftables sets the firewall admits (`inet cell hub_bridge`, `hub_mgmt_<i>`;
  names from `firewall.compile`, so the two cannot drift apart).

Why two processes: dnsmasq's upstream servers and `address=` answers are global to a process, not
per listening address, so one instance cannot both forward (for the Cell) and never forward (for
the cameras). Separate processes bound to disjoint addresses make "the sinkhole forwards nothing"
true by construction and checkable from its file alone: it has no `server=` line at all.
"""

from __future__ import annotations

import ipaddress
import re
import textwrap
from collections.abc import Iterable
from typing import TYPE_CHECKING

from firewall.compile import HUB_BRIDGE_SET, TABLE, TABLE_FAMILY, hub_mgmt_set
from policies.flows import GATEWAY, flow_ports, resolve

if TYPE_CHECKING:
    from policies import Policy
    from policies.layout import Layout

SINKHOLE = "dnsmasq/sinkhole.conf"
RESOLVER = "dnsmasq/resolver.conf"
LOOPBACK = "127.0.0.1"

_UNSAFE = re.compile(r"[\s\"\x00-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_WIDTH = 96


def log_relative(instance: str) -> str:
    """The query log of `instance` ('sinkhole' or 'resolver'), relative to `layout.state`."""
    return f"dnsmasq/{instance}.log"


def pid_relative(instance: str) -> str:
    return f"dnsmasq/{instance}.pid"


def sinkhole_addresses(policy: Policy) -> list[str]:
    """The gateway addresses the sinkhole answers on: one per `dns.sinkhole` VLAN."""
    return [policy.vlans[name].gateway for name in policy.network.dns.sinkhole]


def resolver_addresses(policy: Policy) -> list[str]:
    """127.0.0.1, then the gateway of each non-sinkhole VLAN with a flow to the gateway on 53/udp.

    A flow from a host counts for the host's VLAN: the resolver listens on the VLAN's gateway and
    the firewall keeps deciding who may reach it.
    """
    sinkholed = set(policy.network.dns.sinkhole)
    users: set[str] = set()
    for flow in policy.network.flows:
        if flow.to != GATEWAY or (53, "udp") not in flow_ports(policy, flow):
            continue
        src = resolve(policy, flow.source)
        if src is not None and src.vlan is not None and src.vlan not in sinkholed:
            users.add(src.vlan)
    return [LOOPBACK] + [v.gateway for v in policy.network.vlans if v.name in users]


def hub_nftsets(policy: Policy) -> dict[str, list[str]]:
    """Hub hostname -> the sets its A records go into. IP literals need no resolver: omitted."""
    hub = policy.site.hub
    named = [(hub.bridge.address, HUB_BRIDGE_SET)]
    named += [(m.address, hub_mgmt_set(i)) for i, m in enumerate(hub.management)]
    out: dict[str, list[str]] = {}
    for address, nftset in named:
        if not _is_ip(address):
            out.setdefault(address, []).append(nftset)
    return out


def render_dnsmasq(policy: Policy, layout: Layout) -> dict[str, bytes]:
    """Both dnsmasq configs (relative path -> contents). Raises ValueError on an unsafe value."""
    return {
        SINKHOLE: _lines(_sinkhole(policy, layout)),
        RESOLVER: _lines(_resolver(policy, layout)),
    }


def _safe(value: str) -> str:
    """`value`, if it is one token that cannot break a config line; else ValueError.

    Validation already guarantees this for every policy value. This is defense in depth: a model
    built without validation (`model_construct`) still cannot inject a directive.
    """
    if not value or _UNSAFE.search(value):
        raise ValueError(f"refusing to render {value[:60]!r}: empty, whitespace, quote or control")
    return value


def _ip(value: str) -> str:
    """An IPv4 address in its canonical form; ValueError otherwise (no '/' or '#' can slip in)."""
    return str(ipaddress.IPv4Address(_safe(value)))


def _name(value: str) -> str:
    """A DNS name as it may stand between the slashes of `address=/NAME/`."""
    if "/" in _safe(value) or "#" in value or "," in value:
        raise ValueError(f"refusing to render DNS name {value[:60]!r}")
    return value


def _is_ip(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def _why(*sentences: str) -> list[str]:
    text = " ".join(sentences)
    if _CONTROL.search(text):
        raise ValueError(f"refusing to render a comment with a control character: {text[:60]!r}")
    return ["# " + line for line in textwrap.wrap(text, _WIDTH - 2, break_on_hyphens=False)]


def _lines(lines: Iterable[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _common(policy: Policy, layout: Layout, instance: str, what: str, port: int = 53) -> list[str]:
    state = _safe(layout.state)
    return [
        *_why(what),
        *_why(
            f"Generated by Cell from the signed policy of site {_safe(policy.site.site.id)}.",
            "Do not edit: `cell apply` rewrites this file and the drift watcher reports any",
            "change.",
            "The Cell runs two dnsmasq processes on disjoint addresses, because upstream servers",
            "and `address=` answers are global to a process: one instance could not forward for",
            "the Cell and never forward for the cameras.",
        ),
        "",
        *_why(
            "Only the addresses below, bound one by one (several instances share port 53), and",
            "bound as they appear, so a VLAN link that comes up late is still served.",
        ),
        "bind-dynamic",
        f"port={port}",
        *_why("No /etc/hosts: only this file decides the answers."),
        "no-hosts",
        *_why("No DHCP: there is no dhcp-range; addresses on the site are static (network.yaml)."),
        "",
        *_why(
            "Each query on one line with a serial number and the client's address (`extra`), in",
            "the Cell's state directory. Rotate by copy-truncate: after dropping root the process",
            "may not be able to create the file again.",
        ),
        "log-queries=extra",
        f"log-facility={state}/{log_relative(instance)}",
        f"pid-file={state}/{pid_relative(instance)}",
        *_why(
            "Drop root after binding: this process parses packets from the site's devices.",
            "(dnsmasq keeps CAP_NET_ADMIN when it has nftsets to fill.)",
        ),
        "user=nobody",
        "",
    ]


def _sinkhole(policy: Policy, layout: Layout) -> list[str]:
    what = (
        "sinkhole.conf: DNS for the sinkhole VLANs. It forwards NOTHING: there is no server= line."
    )
    if not policy.network.dns.sinkhole:
        # Without a listen-address dnsmasq would serve every interface: disable DNS instead.
        return [
            *_common(policy, layout, "sinkhole", what, port=0),
            *_why("No VLAN is sinkholed (dns.sinkhole is empty): port=0 disables DNS here."),
            "no-resolv",
        ]
    out = _common(policy, layout, "sinkhole", what)
    for name in policy.network.dns.sinkhole:
        vlan = policy.vlans[name]
        out += _why(f"VLAN {_safe(vlan.name)} ({_safe(vlan.interface)}): its gateway address.")
        out.append(f"listen-address={_ip(vlan.gateway)}")
    out += [
        "",
        *_why("No upstream at all: not /etc/resolv.conf, not polled, no server= line."),
        "no-resolv",
        "no-poll",
        "",
        *_why(
            "Every unknown name exists and points nowhere: A gets 0.0.0.0 and AAAA gets ::, the",
            "same answer for both families, so a device does not retry elsewhere as it might on",
            "an NXDOMAIN, and its connection goes to itself (that is what 0.0.0.0 and :: reach),",
            "never off the device. Every other type gets NODATA",
            "(local=/#/), so no query is ever refused or sent anywhere. TTL 0 (local-ttl): each",
            "attempt comes back here and is counted.",
        ),
        "address=/#/0.0.0.0",
        "address=/#/::",
        "local=/#/",
        "local-ttl=0",
    ]
    names = policy.network.dns.local_names
    if names:
        out += [
            "",
            *_why(
                "local_names: the more specific domain wins over /#/. A name covers its",
                "subdomains too (dnsmasq's domain match). local=/NAME/ makes its AAAA and",
                "other types NODATA instead of ::.",
            ),
        ]
    for name in sorted(names):
        out.append(f"address=/{_name(name)}/{_ip(names[name])}")
        out.append(f"local=/{_name(name)}/")
    return out


def _resolver(policy: Policy, layout: Layout) -> list[str]:
    what = "resolver.conf: the Cell's own resolver, forwarding to the WAN resolvers of the policy."
    out = _common(policy, layout, "resolver", what)
    out += _why("The Cell itself, and the gateway of each non-sinkhole VLAN with a DNS flow here.")
    out += [f"listen-address={_ip(a)}" for a in resolver_addresses(policy)]
    out.append("")
    resolvers = policy.network.wan.resolvers
    if resolvers:
        out += _why("Only the policy's resolvers (wan.resolvers), which the firewall admits on 53.")
        out += ["no-resolv", "no-poll"]
        out += [f"server={_ip(r)}" for r in resolvers]
    else:
        out += [
            *_why(
                "wan.resolvers is empty: use the nameservers the WAN's DHCP client wrote, re-read",
                "when the file changes. dnsmasq skips any that is one of its own addresses, so a",
                "resolv.conf pointing back at this resolver cannot make a loop.",
            ),
            f"resolv-file={_safe(layout.path('/etc/resolv.conf'))}",
        ]
    out += [
        *_why(
            "Never forward plain names (domain-needed) nor reverse lookups of private ranges",
            "(bogus-priv): the site's own names and addresses are nobody's business upstream.",
        ),
        "domain-needed",
        "bogus-priv",
        *_why(
            "No cache: dnsmasq fills an nftset only from an upstream answer, so with a cache a set",
            "emptied by a firewall re-apply would stay empty (the bridge cut off) until the TTL",
            "ran out. The Cell makes few lookups; each one goes upstream and refills the set.",
        ),
        "cache-size=0",
    ]
    sets = hub_nftsets(policy)
    if sets:
        out += [
            "",
            *_why(
                "The hub's hostnames: the A records of each answer go into the firewall's sets,",
                "the only addresses the Cell may reach for that endpoint. A name covers its",
                "subdomains too (dnsmasq's domain match); only the Cell's own processes and the",
                "VLANs listed above can ask. A forged answer only admits an address that the",
                "bridge or the management client then fails to authenticate over TLS.",
            ),
        ]
    for host, nftsets in sets.items():
        specs = ",".join(f"4#{TABLE_FAMILY}#{TABLE}#{_safe(s)}" for s in nftsets)
        out.append(f"nftset=/{_name(host)}/{specs}")
    return out
