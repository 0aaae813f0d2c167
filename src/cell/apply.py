"""Apply a policy to a gateway: render, check every artifact, install, load, start. Thin.

Order: render (pure) -> check all (nft dry run, dnsmasq --test) -> install files -> one nftables
transaction -> dnsmasq -> mosquitto (restart or reload, whichever is enough). A failure before the
install changes nothing; a failure after it puts the previous files and ruleset back, so the live
system ends as it was. The trust gate, journal and timed confirm wrap this (GitOps issue).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.broker import Broker, BrokerError
from bridge.render import PASSWD_RELATIVE
from cell import procs
from cell.render import render_all
from cell.runner import NetnsRunner
from firewall import apply as fw
from policies import Policy
from policies.errors import CellError
from policies.layout import Layout

if TYPE_CHECKING:
    from cell.lab import LabInfo

DNS_CONFS = ("dnsmasq/sinkhole.conf", "dnsmasq/resolver.conf")


class ApplyError(CellError):
    """A step of the apply failed; nothing (or the previous state) is in force."""

    exit_code = 1


@dataclass
class Target:
    """Where to apply: a network namespace (None: this host) and a file layout."""

    netns: str | None
    layout: Layout
    credentials: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return Path(self.layout.config)

    @property
    def state(self) -> Path:
        return Path(self.layout.state)

    @property
    def resolv_conf(self) -> str | None:
        """Inside a lab namespace, processes resolve through the gateway's own resolver."""
        return str(self.state / "resolv.conf") if self.netns else None


@dataclass
class Report:
    changed: list[str]
    broker: str
    dnsmasq: str


def apply_policy(policy: Policy, target: Target) -> Report:
    files = render_all(policy, target.layout)
    check_artifacts(files, target)
    old = {name: _read(target.config / name) for name in files}
    changed = sorted(n for n, data in files.items() if old[n] != data)
    old_table = fw.read_table(target.netns)
    try:
        _install(files, target)
        fw.apply(files["nftables/ruleset.json"], target.netns)
        dns = _dnsmasq(target, set(changed))
        broker = _broker(policy, target).update(
            set(changed) | {"mosquitto/passwd"} if target.credentials else set(changed)
        )
    except (CellError, OSError, subprocess.SubprocessError) as e:
        _restore(old, target, old_table is not None)
        raise ApplyError(f"apply failed, previous configuration restored: {e}") from None
    return Report(changed, broker, dns)


def check_artifacts(files: dict[str, bytes], target: Target) -> None:
    """Every artifact must be accepted by its component before anything is installed."""
    fw.check(files["nftables/ruleset.json"], target.netns)
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


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _install(files: dict[str, bytes], target: Target) -> None:
    from cell.render import write_tree

    write_tree(target.config, files)
    for sub in ("mosquitto", "dnsmasq"):
        (target.state / sub).mkdir(parents=True, exist_ok=True)
    if target.netns:
        (target.state / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    if target.credentials:
        _write_passwd(target.state / PASSWD_RELATIVE, target.credentials)


def _write_passwd(path: Path, credentials: dict[str, str]) -> None:
    """Generate the broker's password file (hashed by mosquitto_passwd); never hand-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".passwd.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        for user, password in sorted(credentials.items()):
            fh.write(f"{user}:{password}\n")
    subprocess.run(
        ["mosquitto_passwd", "-U", str(tmp)], check=True, capture_output=True, timeout=30
    )
    tmp.replace(path)


def _dns_pidfile(target: Target, name: str) -> Path:
    return target.state / "dnsmasq" / f"{Path(name).stem}.run.pid"


def _dnsmasq(target: Target, changed: set[str]) -> str:
    actions = []
    for name in DNS_CONFS:
        pidfile = _dns_pidfile(target, name)
        if name in changed or procs.read_pid(pidfile) is None:
            procs.stop(pidfile)
            conf = target.config / name
            log = target.state / "dnsmasq" / f"{Path(name).stem}.out"
            procs.start(
                ["dnsmasq", "--keep-in-foreground", "-C", str(conf)], pidfile, log, target.netns
            )
            actions.append(f"{Path(name).stem} restarted")
    return ", ".join(actions) or "unchanged"


def _broker(policy: Policy, target: Target) -> Broker:
    return Broker(
        NetnsRunner(target.netns, target.resolv_conf),
        conf=target.config / "mosquitto" / "mosquitto.conf",
        pidfile=target.state / "mosquitto" / "mosquitto.run.pid",
        log=target.state / "mosquitto" / "mosquitto.out",
        port=policy.mqtt.listener.port,
    )


def _restore(old: dict[str, bytes | None], target: Target, had_table: bool) -> None:
    for name, data in old.items():
        path = target.config / name
        if data is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(data)
    try:
        previous = old.get("nftables/ruleset.json")
        if previous is not None:
            fw.apply(previous, target.netns)
        elif not had_table:
            fw.delete_table(target.netns)
    except CellError:
        pass


def stop_services(target: Target) -> None:
    """Stop the gateway's dnsmasq instances and broker (lab down, tests)."""
    for name in DNS_CONFS:
        procs.stop(_dns_pidfile(target, name))
    procs.stop(target.state / "mosquitto" / "mosquitto.run.pid")


def lab_target(info: LabInfo) -> Target:
    """A lab gateway: its namespace, its file root, and the lab's generated MQTT credentials."""
    return Target(netns=info.gateway, layout=info.layout, credentials=info.credentials)


def apply_lab(policy: Policy, info: LabInfo) -> None:
    """The hook `cell lab up` calls: apply the policy to the lab's gateway namespace."""
    apply_policy(policy, lab_target(info))


__all__ = [
    "ApplyError",
    "BrokerError",
    "Report",
    "Target",
    "apply_lab",
    "apply_policy",
    "stop_services",
]
