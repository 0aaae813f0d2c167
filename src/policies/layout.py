"""Every file name the Cell renders or keeps, spelled once, and where those files live.

Rendering is pure, but a mosquitto config names its ACL file and a dnsmasq config its log file,
so the renderers need to know the paths. `root` prefixes every absolute path the configs mention,
the policy's TLS paths included: a lab gateway uses `root=/run/cell-lab/SITE/gw` and the same
policy, and a real Cell uses `/`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

# Rendered artifacts, relative to the config directory (and to `cell render --out`).
RULESET_JSON = "nftables/ruleset.json"
RULESET_NFT = "nftables/ruleset.nft"
MOSQUITTO_CONF = "mosquitto/mosquitto.conf"
MOSQUITTO_INCLUDE_DIR = "mosquitto/conf.d"
"""mosquitto loads every file in it: anything there is listener or bridge configuration."""
BRIDGE_CONF = f"{MOSQUITTO_INCLUDE_DIR}/bridge.conf"
ACL = "mosquitto/acl"
SINKHOLE_CONF = "dnsmasq/sinkhole.conf"
RESOLVER_CONF = "dnsmasq/resolver.conf"
DNS_CONFS = (SINKHOLE_CONF, RESOLVER_CONF)
PROBES = "probes.json"
LINKS = "links/links.json"
"""The Cell's own links, addresses, routes and sysctls (`firewall.links`)."""
MANIFEST = "manifest.json"
CONFIG_DIRS = (MOSQUITTO_INCLUDE_DIR, "mosquitto", "dnsmasq", "nftables")
"""The directories of the config tree whose contents the Cell owns (drift watches them)."""

# Runtime state of the services, relative to the state directory.
PASSWD = "mosquitto/passwd"
MOSQUITTO_LOG = "mosquitto/mosquitto.log"
MOSQUITTO_PID = "mosquitto/mosquitto.pid"
MOSQUITTO_RUN_PID = "mosquitto/mosquitto.run.pid"
RUN_PID_SUFFIX = ".run.pid"
RESOLV_CONF = "resolv.conf"
BRIDGE_SNAPSHOT = "bridge/monitor.json"


def dnsmasq_log(instance: str) -> str:
    """The query log of `instance` ('sinkhole' or 'resolver')."""
    return f"dnsmasq/{instance}.log"


def dnsmasq_pid(instance: str) -> str:
    return f"dnsmasq/{instance}.pid"


def dnsmasq_run_pid(instance: str) -> str:
    return f"dnsmasq/{instance}{RUN_PID_SUFFIX}"


# GitOps state, relative to the state directory (see `cell.store.statedir`).
JOURNAL = "journal.json"
LEDGER = "ledger.jsonl"
LEDGER_HEAD = "ledger.head"
CONFIRM = "confirm.json"
TRUST_DIR = "trust"
STORED_TREES = "store/trees"
STORED_RENDERED = "store/rendered"
LOCKS_DIR = "locks"
GIT_MIRROR = "git/site-config.git"
"""The Cell's own bare mirror of the site-config repo: trust is read from it alone."""

# Where a real Cell keeps things, and how a command is pointed elsewhere.
DEFAULT_REPO = "/etc/cell/site-config"
DEFAULT_CONFIG = "/etc/cell/live"
DEFAULT_STATE = "/var/lib/cell"
REPO_ENV = "CELL_REPO"
STATE_ENV = "CELL_STATE_DIR"


SOCKET_DIR = "/run/cell"
"""Where the brokers' own unix sockets are (`Layout.mqtt_socket`)."""


@dataclass(frozen=True)
class Layout:
    root: str = "/"
    config_dir: str = DEFAULT_CONFIG
    state_dir: str = DEFAULT_STATE

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

    @property
    def mqtt_socket(self) -> str:
        """The broker's unix-socket listener for the Cell's own clients (the daemon's status
        publisher, the bridge monitor): root only, reached from no VLAN, and a client keeps its
        own id there, so two `cell` connections do not take each other's session
        (docs/daemon.md). Under the layout's /run/cell, named by the state directory: one per
        broker (the live one, the apply check's), and short (a socket path has 108 bytes at
        most). mosquitto makes the socket but not its directory: whoever starts it does."""
        digest = hashlib.sha256(self.state.encode()).hexdigest()[:12]
        return f"{self.path(SOCKET_DIR)}/mqtt-{digest}.sock"

    def dns_log(self, instance: str) -> str:
        """The query log of dnsmasq `instance` ('sinkhole' or 'resolver'), read by the Cell."""
        return f"{self.state}/{dnsmasq_log(instance)}"


DEFAULT_LAYOUT = Layout()

# The daemon (`cell run`), relative to the state directory.
STATUS_JSON = "status.json"
"""The status document as last published (written atomically each publish): `cell status`."""
CELL_MQTT_SECRET = "mosquitto/cell.secret"
"""The password of the Cell's own broker login `cell` on a real box (0600, made by `cell apply`;
a lab's comes from the lab's credentials)."""
DAEMON_LOG = "run.log"
"""The lab's `cell run` output, in the lab's log directory."""
