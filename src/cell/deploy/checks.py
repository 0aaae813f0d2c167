"""Check every artifact before anything is installed: nftables (a dry run in the target namespace),
dnsmasq (`--test`), and mosquitto (a config test in a namespace of its own). And the password
file, which is generated, never hand-written. Touches no live file, port or table.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

from bridge.broker import BrokerError, check_config
from bridge.render import MONITOR_USER, render_mosquitto
from cell.artifacts import write_tree
from cell.deploy.target import Target, read_file
from cell.errors import ApplyError
from policies import Policy
from policies.fsutil import atomic_write
from policies.layout import CELL_MQTT_SECRET, DNS_CONFS, PASSWD, RULESET_JSON, Layout


def check_artifacts(files: dict[str, bytes], target: Target, policy: Policy | None = None) -> None:
    """Every artifact must be accepted by its component before anything is installed: nftables
    (a dry run in the target namespace), dnsmasq (`--test`), and, given the policy, mosquitto."""
    target.nft.check(files[RULESET_JSON])
    scratch = target.state / "check"
    scratch.mkdir(parents=True, exist_ok=True)
    for name in DNS_CONFS:
        conf = scratch / Path(name).name
        conf.write_bytes(files[name])
        r = subprocess.run(
            ["dnsmasq", "--test", "-C", str(conf)], capture_output=True, text=True, timeout=30
        )
        if r.returncode != 0:
            raise ApplyError(f"dnsmasq refused {name}: {r.stderr.strip()}")
    if policy is not None:
        _check_mosquitto(policy, target)


def _check_mosquitto(policy: Policy, target: Target, timeout: float = 5.0) -> None:
    """mosquitto 2.0 has no config-test flag, so run it on the candidate config until it listens.

    The candidate is rendered again with its paths (config, ACL, password file, log, pid file)
    under STATE/check, so the test never touches a live file, and it runs in a network namespace
    of its own (unshare in the child: gone with the process, even if we are killed), so it binds
    no live port and its bridge reaches nothing.
    """
    base = f"{target.layout.state_dir}/check/mosquitto"
    layout = Layout(root=target.layout.root, config_dir=f"{base}/config", state_dir=f"{base}/state")
    write_tree(Path(layout.config), render_mosquitto(policy, layout))
    passwd = Path(layout.state) / PASSWD
    live = read_file(target.state / PASSWD)
    if target.credentials:
        write_passwd(passwd, target.credentials)
    else:
        passwd.parent.mkdir(parents=True, exist_ok=True)
        passwd.write_bytes(live or b"")
        ensure_cell_login(target.state, passwd)
    conf = Path(layout.config) / "mosquitto" / "mosquitto.conf"
    log = Path(layout.state) / "mosquitto" / "mosquitto.log"
    try:
        check_config(conf, policy.mqtt.listener.port, log, timeout, layout.mqtt_socket)
    except BrokerError as e:
        raise ApplyError(str(e)) from None


def ensure_cell_login(state: Path, passwd: Path) -> bool:
    """On a box (no generated credentials), the Cell's own broker login `cell`: a random secret
    kept in STATE/mosquitto/cell.secret (0600, made once), and its hashed line in the password
    file, whose other lines are the operator's. True when the password file changed (the broker
    must reload it). The daemon reads the secret; it is never printed nor in the policy."""
    secret_path = state / CELL_MQTT_SECRET
    made = False
    if not secret_path.exists():
        secret_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(secret_path, (secrets.token_urlsafe(24) + "\n").encode(), 0o600)
        made = True
    secret = secret_path.read_text().strip()
    old = passwd.read_text() if passwd.exists() else ""
    others = [ln for ln in old.splitlines() if ln and not ln.startswith(f"{MONITOR_USER}:")]
    if not made and len(others) < len([ln for ln in old.splitlines() if ln]):
        return False  # the line is there, for this secret
    tmp = passwd.with_name(f".{passwd.name}.cell.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{MONITOR_USER}:{secret}\n")
    subprocess.run(
        ["mosquitto_passwd", "-U", str(tmp)], check=True, capture_output=True, timeout=30
    )
    hashed = tmp.read_text().strip()
    tmp.unlink()
    atomic_write(passwd, ("\n".join([*others, hashed]) + "\n").encode(), 0o600)
    return True


def write_passwd(path: Path, credentials: dict[str, str]) -> None:
    """Generate the broker's password file (hashed by mosquitto_passwd); never hand-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        for user, password in sorted(credentials.items()):
            fh.write(f"{user}:{password}\n")
    subprocess.run(
        ["mosquitto_passwd", "-U", str(tmp)], check=True, capture_output=True, timeout=30
    )
    tmp.replace(path)
