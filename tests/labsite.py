"""Sites for lab tests: a copy of the example with its own site id, and inspection helpers.

Every test uses its own site id (`t-<random>`), so it never touches a person's lab.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cell.lab.plan import ns_prefix
from conftest import EXAMPLE
from firewall import netns


def make_site(root: Path, site_id: str) -> Path:
    repo = root / site_id
    shutil.copytree(EXAMPLE, repo)
    text = (repo / "site.yaml").read_text()
    text = text.replace("id: lisbon-01", f"id: {site_id}").replace(
        "sites/lisbon-01/", f"sites/{site_id}/"
    )
    (repo / "site.yaml").write_text(text)
    return repo


def new_id() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def ours(site_id: str) -> list[str]:
    return [n for n in netns.names() if n.startswith(ns_prefix(site_id))]


def ip_json(*args: str) -> list[dict[str, Any]]:
    """`ip -j ...`: tests only inspect with `ip`; the lab itself never runs it."""
    out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out) if out.strip() else []


def host_links() -> set[str]:
    return {str(link["ifname"]) for link in ip_json("link")}


@contextlib.contextmanager
def tc_redirect(gateway: str, dev: str = "eth0.10", to: str = "eth1") -> Iterator[None]:
    """An insider's bypass, as one would type it: everything entering `dev` (the cameras' link)
    is sent out of `to` (the WAN link) by a tc mirred action, before nftables sees it."""
    netns.run(gateway, ["tc", "qdisc", "add", "dev", dev, "ingress"], check=True)
    try:
        netns.run(
            gateway,
            ["tc", "filter", "add", "dev", dev, "ingress", "protocol", "all", "u32",
             "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", to],
            check=True,
        )  # fmt: skip
        yield
    finally:
        netns.run(gateway, ["tc", "qdisc", "del", "dev", dev, "ingress"], check=True)
