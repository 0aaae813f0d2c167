"""What a running lab is: `LabInfo`, kept in /run/cell-lab/SITE/lab.json (0600).

The state file holds the lab's MQTT passwords: lab credentials, for the lab alone. A real Cell
never prints a secret; `cell lab status --json` does, because a test or a person driving the lab
needs them to log in to its brokers.

`LabInfo.to_json()` is a contract other tools read (`cell probe --lab`, tests, the console):
extend it, never rename or drop a key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cell.lab.errors import LabError
from cell.lab.plan import lab_root
from cell.lab.processes import Proc
from policies.fsutil import atomic_write
from policies.layout import Layout

STATE = "lab.json"
VERSION = 1


@dataclass
class LabInfo:
    site: str
    root: str
    """The lab's directory: /run/cell-lab/SITE (configs, logs, PKI, state)."""
    layout_root: str
    """The gateway's file root: `Layout(root=layout_root)` is where `apply` installs the Cell."""
    gateway: str
    wan: str
    namespaces: list[str]
    vlans: dict[str, dict[str, Any]]
    """VLAN -> {netns, interface, gateway, subnet, addresses}."""
    hosts: dict[str, dict[str, str]]
    """Host -> {netns, address, vlan}."""
    mqtt: dict[str, Any]
    """{site: {netns, host, port}, hub: {netns, host, port, hostname, cafile, certfile, keyfile,
    prefix}, clients: {USERNAME: {password}}}."""
    outside: dict[str, Any]
    """{resolver, resolvers, hub, management, management_endpoints, names, internet, phone_home}:
    addresses in the WAN namespace. `internet` answers for the policy's `wan`; `phone_home` is
    where every unknown name leads, and what it receives is counted."""
    wan_link: dict[str, Any]
    """{interface, gateway, wan, prefixlen}: the gateway's link to the WAN namespace."""
    processes: dict[str, Proc] = field(default_factory=dict)
    phone_home_log: str = ""
    """One JSON line per connection or datagram the phone-home server got: `phone_home_count`."""
    logs: dict[str, str] = field(default_factory=dict)

    @property
    def state_file(self) -> str:
        return f"{self.root}/{STATE}"

    @property
    def layout(self) -> Layout:
        return Layout(root=self.layout_root)

    @property
    def credentials(self) -> dict[str, str]:
        """Username -> password for the gateway's broker (the `cell` monitor included)."""
        return {user: str(c["password"]) for user, c in self.mqtt["clients"].items()}

    @property
    def vlan_netns(self) -> dict[str, str]:
        return {name: str(v["netns"]) for name, v in self.vlans.items()}

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.processes.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "site": self.site,
            "root": self.root,
            "layout_root": self.layout_root,
            "state_file": self.state_file,
            "gateway": self.gateway,
            "wan": self.wan,
            "namespaces": list(self.namespaces),
            "vlans": self.vlans,
            "hosts": self.hosts,
            "mqtt": self.mqtt,
            "outside": self.outside,
            "wan_link": self.wan_link,
            "pids": self.pids,
            "processes": {name: p.to_json() for name, p in self.processes.items()},
            "phone_home_log": self.phone_home_log,
            "logs": self.logs,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LabInfo:
        return cls(
            site=doc["site"],
            root=doc["root"],
            layout_root=doc["layout_root"],
            gateway=doc["gateway"],
            wan=doc["wan"],
            namespaces=list(doc["namespaces"]),
            vlans=doc["vlans"],
            hosts=doc["hosts"],
            mqtt=doc["mqtt"],
            outside=doc["outside"],
            wan_link=doc["wan_link"],
            processes={n: Proc.from_json(n, p) for n, p in doc.get("processes", {}).items()},
            phone_home_log=doc.get("phone_home_log", ""),
            logs=doc.get("logs", {}),
        )


def state_path(site_id: str) -> Path:
    return Path(lab_root(site_id)) / STATE


def write_state(info: LabInfo) -> None:
    """Atomically, 0600 from the first byte (it holds passwords)."""
    data = (json.dumps(info.to_json(), indent=2) + "\n").encode()
    atomic_write(Path(info.state_file), data, 0o600)


def read_state(site_id: str) -> LabInfo | None:
    path = state_path(site_id)
    try:
        return LabInfo.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise LabError(
            f"{path}: unreadable lab state ({e}); `cell lab down` removes the lab anyway"
        ) from e
