"""Where an apply goes: a network namespace (None: this host) and a file layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
