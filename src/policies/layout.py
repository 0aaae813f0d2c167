"""Where rendered files live on a Cell, as written into configs that point at each other.

Rendering is pure, but a mosquitto config names its ACL file and a dnsmasq config its log file,
so the renderers need to know the paths. `root` prefixes every absolute path the configs mention,
the policy's TLS paths included: a lab gateway uses `root=/run/cell-lab/SITE/gw` and the same
policy, and a real Cell uses `/`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    root: str = "/"
    config_dir: str = "/etc/cell/live"
    state_dir: str = "/var/lib/cell"

    def path(self, absolute: str) -> str:
        """`absolute` as seen from inside this layout's root."""
        if self.root in ("", "/"):
            return absolute
        return self.root.rstrip("/") + absolute

    @property
    def config(self) -> str:
        """The directory the rendered artifacts are installed into."""
        return self.path(self.config_dir)

    @property
    def state(self) -> str:
        """The directory for runtime state (password file, logs, pid files, counters)."""
        return self.path(self.state_dir)

    def dns_log(self, instance: str) -> str:
        """The query log of dnsmasq `instance` ('sinkhole' or 'resolver'), read by the Cell."""
        return f"{self.state}/{DNS_LOG.format(instance=instance)}"


DNS_LOG = "dnsmasq/{instance}.log"
"""Where each dnsmasq instance logs its queries (`log-facility`), relative to the state dir."""

DEFAULT_LAYOUT = Layout()
