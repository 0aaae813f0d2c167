"""Generate large but valid sites from the example, for benchmarks and scale tests."""

from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "site-config-example"


def make_site(root: Path, cameras: int, topics: int) -> Path:
    """Copy the example to `root`, with `cameras` extra cameras (hosts, ACL clients) and
    `topics` topic rules in all four directions that do not overlap across bridging."""
    shutil.copytree(EXAMPLE, root)
    net = (root / "network.yaml").read_text()
    net = net.replace("subnet: 10.10.0.0/24", "subnet: 10.10.0.0/16")
    hosts = []
    base = ipaddress.IPv4Address("10.10.1.0")
    for i in range(cameras):
        hosts.append(f"  - {{name: gen-cam-{i:04d}, vlan: cameras, address: {base + i}}}\n")
    net = net.replace("hosts:\n", "hosts:\n" + "".join(hosts), 1)
    # One flow per camera (the AI box reads each camera's ONVIF events): host-level elements in
    # the firewall's sets, so a bigger site really means a bigger ruleset, not more rules.
    flows = [f"  - {{from: ai, to: gen-cam-{i:04d}, service: onvif}}\n" for i in range(cameras)]
    net = net.replace("flows:\n", "flows:\n" + "".join(flows), 1)
    (root / "network.yaml").write_text(net)

    mqtt = (root / "mqtt.yaml").read_text()
    rules = []
    kinds = [
        ("up", "events/#", 1),
        ("never", "raw/#", None),
        ("local", "debug/#", None),
        ("down", "cmd/#", 1),
    ]
    for i in range(topics):
        direction, tail, qos = kinds[i % 4]
        zone = f"hub/zone{i:05d}" if direction == "down" else f"zone{i:05d}"
        extra = f", qos: {qos}" if qos is not None else ""
        rules.append(f'  - {{pattern: "{zone}/{tail}", direction: {direction}{extra}}}\n')
    mqtt = mqtt.replace("topics:\n", "topics:\n" + "".join(rules), 1)
    clients = [
        f'  - {{username: gen-cam-{i:04d}, publish: ["site/gen-cam-{i:04d}/#"], '
        f'subscribe: ["hub/commands/gen-cam-{i:04d}/#"]}}\n'
        for i in range(cameras)
    ]
    mqtt = mqtt.replace("clients:\n", "clients:\n" + "".join(clients), 1)
    (root / "mqtt.yaml").write_text(mqtt)
    return root
