"""Policy variants for the firewall tests: a grown site, literal hub addresses, tricky VLAN names."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from policies import Policy, load_policy

if TYPE_CHECKING:
    from conftest import Site

EXAMPLE = Path(__file__).resolve().parents[1] / "site-config-example"
Json = dict[str, Any]


def grow(site: Site, cameras: int) -> Policy:
    """The example with `cameras` more cameras, each with its own flow (so its own element)."""
    site.edit("network.yaml", "subnet: 10.10.0.0/24", "subnet: 10.10.0.0/16")
    base = ipaddress.IPv4Address("10.10.1.0")
    hosts = "".join(
        f"  - {{name: gen-{i:04d}, vlan: cameras, address: {base + i}}}\n" for i in range(cameras)
    )
    flows = "".join(f"  - {{from: nvr, to: gen-{i:04d}, service: https}}\n" for i in range(cameras))
    site.edit("network.yaml", "hosts:\n", "hosts:\n" + hosts)
    site.edit("network.yaml", "flows:\n", "flows:\n" + flows)
    return load_policy(site.root)


def literal_hub(site: Site) -> Policy:
    """Hub endpoints as IPv4 literals, an ops host allowed to the bridge, a gateway wan flow."""
    site.edit("site.yaml", "address: hub.example.eu", "address: 198.51.100.10")
    site.edit(
        "site.yaml",
        "{address: api.balena-cloud.com, port: 443}",
        "{address: 198.51.100.20, port: 443}",
    )
    site.edit(
        "network.yaml",
        "  - {from: gateway, to: hub.bridge}\n",
        "  - {from: gateway, to: hub.bridge}\n  - {from: laptop, to: hub.bridge}\n"
        "  - {from: ops, to: hub.management}\n  - {from: gateway, to: wan, service: ntp}\n"
        "  - {from: gateway, to: cell, service: ssh}\n"
        "  - {from: cameras, to: gateway, service: ssh}\n"
        "  - {from: cam-01, to: gateway, service: ssh}\n",
    )
    site.edit("network.yaml", "resolvers: [203.0.113.53]", "resolvers: []")
    return load_policy(site.root)


TRICKY = ["a_b", "c", "a", "b_c", "other", "forward", "invalid", "input", "x-1"]


def tricky_names(site: Site) -> Policy:
    """VLAN names that collide under a '_'-joined counter scheme, or look like fixed names."""
    vlans = "".join(
        f"  - {{name: {n}, id: {100 + i}, interface: v{i}.x-{n[:4]}, "
        f"subnet: 10.{100 + i}.0.0/24, gateway: 10.{100 + i}.0.1}}\n"
        for i, n in enumerate(TRICKY)
    )
    site.edit("network.yaml", "vlans:\n", "vlans:\n" + vlans)
    site.edit("network.yaml", "flows:\n", "flows:\n  - {from: x-1, to: a_b, service: ssh}\n")
    return load_policy(site.root)


def sets_of(objects: list[Json]) -> dict[str, list[Any]]:
    return {o["set"]["name"]: o["set"].get("elem", []) for o in objects if "set" in o}


def seal(root: Path) -> Path:
    """Turn a copy of the example at `root` into a sealed site: no hub, no bridge, no up/down
    topic, no flow out, no upstream resolver (site.mode: sealed). Returns `root`."""
    site = (root / "site.yaml").read_text()
    head = site.split("\nhub:", 1)[0]
    (root / "site.yaml").write_text(head.replace("  name: ", "  mode: sealed\n  name: ", 1) + "\n")
    net = (root / "network.yaml").read_text()
    net = net.replace("  resolvers: [203.0.113.53]\n", "")
    keep = [ln for ln in net.splitlines() if not any(w in ln for w in WAN_FLOWS)]
    (root / "network.yaml").write_text("\n".join(keep) + "\n")
    mqtt = (root / "mqtt.yaml").read_text()
    mqtt = mqtt.replace("bridge:\n  name: hub\n", "").replace("  default: local\n", "")
    mqtt = mqtt.replace("direction: up,", "direction: local,")
    mqtt = mqtt.replace("direction: down,", "direction: local,")
    (root / "mqtt.yaml").write_text(mqtt)
    return root


WAN_FLOWS = ("to: wan,", "to: hub.bridge}", "to: hub.management}")
