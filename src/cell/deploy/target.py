"""Where an apply goes: a network namespace (None: this host) and a file layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cell.deploy.netlink import LinkBackend, Links
from firewall.nft import NftBackend, backend
from policies.layout import RESOLV_CONF, Layout


@dataclass
class Target:
    """Where to apply: a network namespace (None: this host) and a file layout."""

    netns: str | None
    layout: Layout
    credentials: dict[str, str] = field(default_factory=dict)
    firewall: NftBackend | None = field(default=None, compare=False, repr=False)
    """The nftables seam for `netns`; None: the kernel's (`firewall.nft.backend`). Unit tests pass
    a `firewall.fake.FakeNft`."""

    stand_in: str | None = None
    """The link kind that stands in for an 802.1Q subinterface (the lab: "veth", which the lab
    makes); None: a real box, where `cell apply` makes the subinterfaces on the trunk."""
    link_backend: LinkBackend | None = field(default=None, compare=False, repr=False)
    """The links seam for `netns`; None: the kernel's. Unit tests pass a `FakeLinks`."""

    @property
    def links(self) -> LinkBackend:
        return self.link_backend if self.link_backend is not None else Links(self.netns)

    @property
    def nft(self) -> NftBackend:
        return self.firewall if self.firewall is not None else backend(self.netns)

    @property
    def config(self) -> Path:
        return Path(self.layout.config)

    @property
    def state(self) -> Path:
        return Path(self.layout.state)

    @property
    def resolv_conf(self) -> str | None:
        """Inside a lab namespace, processes resolve through the gateway's own resolver."""
        return str(self.state / RESOLV_CONF) if self.netns else None


def read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
