"""Where a command looks by default: the one place that reads `--repo`, `--state-dir` and their
environment variables. Most specific first: the flag, then the environment, then the standard
place on a Cell (`/etc/cell/site-config`, `/var/lib/cell`). Commands that act on a gateway go one
step further (a lab of the repo's site, when one is up): see `cell.deploy.place`.
"""

from __future__ import annotations

import os

from policies.layout import DEFAULT_REPO, DEFAULT_STATE, REPO_ENV, STATE_ENV

REPO_HELP = f"site-config repo (default: ${REPO_ENV} or {DEFAULT_REPO})"
STATE_HELP = f"state directory (default: ${STATE_ENV}, a lab's gateway, or {DEFAULT_STATE})"
MONITOR_PASSWORD_ENV = "CELL_MONITOR_PASSWORD"
"""The bridge monitor's (`cell`) password, when the Cell's own state does not give it."""
CONSOLE_BROKER = "127.0.0.1:1883"
"""Where `cell console` looks for the status bus without `--broker` or a lab: this Cell's own
mosquitto on loopback."""


def repo_dir(flag: str | None = None) -> str:
    """The site-config repo: `--repo`, else $CELL_REPO, else /etc/cell/site-config."""
    return flag or os.environ.get(REPO_ENV) or DEFAULT_REPO


def explicit_state_dir(flag: str | None = None) -> str | None:
    """The state directory the operator named (`--state-dir` or $CELL_STATE_DIR), if any."""
    return flag or os.environ.get(STATE_ENV) or None


def state_dir(flag: str | None = None) -> str:
    """The state directory: the one named, else /var/lib/cell."""
    return explicit_state_dir(flag) or DEFAULT_STATE


FLEET_TOPIC = "sites/+"
"""`cell fleet --topic`: where sites are at the hub (the example's `remote_prefix`, `+` the id)."""
FLEET_WAIT = 5.0
"""`cell fleet --wait`: the longest a snapshot waits for the hub's retained messages (seconds)."""
METRICS_DEFAULT = "127.0.0.1:9817"
"""Where `cell run` serves Prometheus metrics: loopback only (of the gateway's namespace)."""
METRICS_ENV = "CELL_METRICS"
METRICS_HELP = (
    f"Prometheus metrics: ADDR:PORT to serve (default ${METRICS_ENV} or {METRICS_DEFAULT}), "
    "file:PATH for a node_exporter textfile, or off"
)


def metrics(flag: str | None = None) -> str:
    return flag or os.environ.get(METRICS_ENV) or METRICS_DEFAULT
