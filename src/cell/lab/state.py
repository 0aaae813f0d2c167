"""What a running lab is: `LabInfo`, kept in /run/cell-lab/SITE/lab.json (0600).

The state file holds the lab's MQTT passwords: lab credentials, for the lab alone. A real Cell
never prints a secret; `cell lab status --json` does, because a test or a person driving the lab
needs them to log in to its brokers.

`LabInfo.to_doc()` is a contract other tools read (`cell probe --lab`, tests, the console):
extend it, never rename or drop a key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, computed_field

from cell.lab.errors import LabError
from cell.lab.plan import lab_root
from cell.lab.processes import Proc
from policies.fsutil import atomic_write
from policies.layout import Layout
from policies.record import Record, first_error

STATE = "lab.json"
VERSION = 1


class LabInfo(Record):
    """A running lab: its namespaces, addresses, logins and processes."""

    version: int = Field(default=VERSION, description="The state file's format version.")
    site: str = Field(description="The site id.")
    root: str = Field(description="The lab's directory: /run/cell-lab/SITE (configs, logs, PKI).")
    layout_root: str = Field(
        description="The gateway's file root: `Layout(root=layout_root)` is where `apply` installs."
    )
    gateway: str = Field(description="The gateway's network namespace (the Cell).")
    wan: str = Field(description="The WAN namespace (the closed outside world).")
    namespaces: list[str] = Field(description="Every namespace of the lab.")
    vlans: dict[str, dict[str, Any]] = Field(
        description="VLAN -> {netns, interface, gateway, subnet, addresses}."
    )
    hosts: dict[str, dict[str, str]] = Field(description="Host -> {netns, address, vlan}.")
    mqtt: dict[str, Any] = Field(
        description="{site: {netns, host, port}, hub: {netns, host, port, hostname, cafile, "
        "certfile, keyfile, prefix}, clients: {USERNAME: {password}}}."
    )
    outside: dict[str, Any] = Field(
        description="{resolver, resolvers, hub, management, management_endpoints, names, "
        "internet, phone_home}: addresses in the WAN namespace. `internet` answers for the "
        "policy's `wan`; `phone_home` is where every unknown name leads, and what it receives "
        "is counted."
    )
    wan_link: dict[str, Any] = Field(
        description="{interface, gateway, wan, prefixlen}: the gateway's link to the WAN namespace."
    )
    processes: dict[str, Proc] = Field(
        default_factory=dict, description="The lab's processes, by name."
    )
    phone_home_log: str = Field(
        default="",
        description="One JSON line per connection or datagram the phone-home server got.",
    )
    logs: dict[str, str] = Field(default_factory=dict, description="Log files, by process name.")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def state_file(self) -> str:
        return f"{self.root}/{STATE}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.processes.items()}

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


def state_path(site_id: str) -> Path:
    return Path(lab_root(site_id)) / STATE


def write_state(info: LabInfo) -> None:
    """Atomically, 0600 from the first byte (it holds passwords)."""
    data = (json.dumps(info.to_doc(), indent=2) + "\n").encode()
    atomic_write(Path(info.state_file), data, 0o600)


def read_state(site_id: str) -> LabInfo | None:
    path = state_path(site_id)
    try:
        return LabInfo.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValidationError as e:
        raise LabError(
            f"{path}: unreadable lab state ({first_error(e)}); `cell lab down` removes the lab anyway"
        ) from None
    except OSError as e:
        raise LabError(
            f"{path}: unreadable lab state ({e}); `cell lab down` removes the lab anyway"
        ) from e
