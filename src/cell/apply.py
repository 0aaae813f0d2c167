"""Apply a policy to a gateway: render, check every artifact, install, load, start, read back. Thin.

Order: render (pure) -> check (nft dry run, a mosquitto config test, dnsmasq --test) -> snapshot
-> install files -> one nftables transaction -> dnsmasq -> mosquitto -> read back (table, files,
services). A failure before the install changes nothing; after it, the snapshot goes back: old
files byte for byte, the old table object for object (counters and resolver-filled sets too), and
each service restarted or reloaded again on the old files (only its pid is new). The trust gate,
journal and timed confirm wrap this (`cell.gitops`).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bridge.render import PASSWD_RELATIVE
from cell import procs, services
from cell.checks import check_artifacts, write_passwd
from cell.errors import ApplyError
from cell.render import digest, render_all, write_tree
from cell.target import DNS_CONFS, RULESET, Target, read_file
from firewall import apply as fw
from policies import Policy
from policies.errors import CellError

if TYPE_CHECKING:
    from cell.lab import LabInfo


@dataclass
class Report:
    changed: list[str]
    broker: str
    dnsmasq: str


@dataclass
class _Snapshot:
    """The live state an apply may change, taken right before it changes anything."""

    files: dict[str, bytes | None]
    passwd: bytes | None
    table: list[dict[str, Any]] | None
    running: dict[str, bool]
    touched: dict[str, str] = field(default_factory=dict)
    """Service -> what this apply did to it ('restarted', 'reloaded', 'started', 'unknown')."""


def apply_policy(
    policy: Policy,
    target: Target,
    *,
    files: dict[str, bytes] | None = None,
    baseline: dict[str, str] | None = None,
    checked: bool = False,
) -> Report:
    """Make `policy` live on `target`, or raise `ApplyError` with the target as it was.

    `files`: the rendered artifacts, when the caller has them. `baseline`: the digests of what is
    believed to be running (the journal's); services restart for artifacts that differ from it or
    from the files on disk, so a tampered or half-installed file never hides a needed restart.
    `checked`: the caller already ran `check_artifacts`.
    """
    files = files if files is not None else render_all(policy, target.layout)
    if not checked:
        check_artifacts(files, target, policy)
    services.adopt_strays(target)
    snap = _snapshot(files, target)
    changed = sorted(
        n
        for n, data in files.items()
        if snap.files[n] != data or (baseline is not None and baseline.get(n) != digest(data))
    ) + [n for n in snap.files if n not in files]
    try:
        _install(files, target)
        from cell.verify.drops import poll_before_apply

        poll_before_apply(target.state, target.netns, policy)  # the old table's last counts
        fw.apply(files[RULESET], target.netns)
        dns = services.update_dnsmasq(target, set(changed), snap.touched)
        snap.touched["broker"] = "unknown"
        broker = services.broker_for(policy, target).update(
            set(changed) | {"mosquitto/passwd"} if target.credentials else set(changed)
        )
        snap.touched["broker"] = broker
        read_back(files, target)
    except (CellError, OSError, subprocess.SubprocessError) as e:
        trouble = _restore(snap, target, policy)
        tail = (
            "previous configuration restored"
            if not trouble
            else "restoring the previous configuration failed too: " + "; ".join(trouble)
        )
        raise ApplyError(f"apply failed, {tail}: {e}") from None
    return Report(changed, broker, dns)


def read_back(files: dict[str, bytes], target: Target) -> None:
    """The live system is what was rendered: table, installed files, running services."""
    live = fw.canonical(fw.read_table(target.netns))
    if live != fw.canonical(fw.objects_of(files[RULESET])):
        raise ApplyError("read-back: the live nftables table differs from the rendered ruleset")
    for name, data in files.items():
        if read_file(target.config / name) != data:
            raise ApplyError(f"read-back: {target.config / name} is not the rendered file")
    down = [s for s, pid in services.service_pids(target).items() if pid is None]
    if down:
        raise ApplyError(f"read-back: not running after the apply: {', '.join(down)}")


INCLUDE_DIR = "mosquitto/conf.d"


def _extras(files: dict[str, bytes], target: Target) -> list[str]:
    """Files in mosquitto's include_dir that this render does not have: mosquitto would load
    them all the same (a second bridge, say), so an apply removes them."""
    folder = target.config / INCLUDE_DIR
    if not folder.is_dir():
        return []
    names = (f"{INCLUDE_DIR}/{p.name}" for p in folder.iterdir() if p.is_file())
    return sorted(n for n in names if n not in files)


def _snapshot(files: dict[str, bytes], target: Target) -> _Snapshot:
    names = [*files, *_extras(files, target)]
    return _Snapshot(
        files={name: read_file(target.config / name) for name in names},
        passwd=read_file(target.state / PASSWD_RELATIVE),
        table=fw.read_table(target.netns),
        running={s: pid is not None for s, pid in services.service_pids(target).items()},
    )


def _install(files: dict[str, bytes], target: Target) -> None:
    for extra in _extras(files, target):
        (target.config / extra).unlink()
    write_tree(target.config, files)
    for sub in ("mosquitto", "dnsmasq"):
        (target.state / sub).mkdir(parents=True, exist_ok=True)
    if target.netns:
        (target.state / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    if target.credentials:
        write_passwd(target.state / PASSWD_RELATIVE, target.credentials)


def _restore(snap: _Snapshot, target: Target, policy: Policy) -> list[str]:
    """Put the snapshot back; what could not be restored, for the error message."""
    trouble: list[str] = []
    try:
        for name, data in snap.files.items():
            path = target.config / name
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(data)
        passwd = target.state / PASSWD_RELATIVE
        if snap.passwd is not None:
            passwd.write_bytes(snap.passwd)
    except OSError as e:
        trouble.append(f"files: {e}")
    try:
        if snap.table is None:
            fw.delete_table(target.netns)
        else:
            from cell.verify.drops import poll_before_apply, rebase_after_restore

            poll_before_apply(target.state, target.netns, policy)  # the failed table's counts
            fw.apply(fw.restore_document(snap.table), target.netns)
            rebase_after_restore(target.state, target.netns, policy)  # old values: counted
    except CellError as e:
        trouble.append(f"nftables: {e}")
    for service in ("sinkhole", "resolver"):
        if service in snap.touched:
            try:
                procs.stop(services.pidfile(target, service))
                if snap.running[service]:
                    services.start_dnsmasq(target, service)
            except (OSError, subprocess.SubprocessError) as e:
                trouble.append(f"dnsmasq {service}: {e}")
    action = snap.touched.get("broker")
    if action is not None and action != "unchanged":
        broker = services.broker_for(policy, target)
        try:
            if action == "reloaded":
                broker.runner.hup(broker.pidfile)
            else:
                broker.stop()
                if snap.running["broker"]:
                    broker.start()
        except (CellError, OSError, subprocess.SubprocessError) as e:
            trouble.append(f"mosquitto: {e}")
    return trouble


def lab_target(info: LabInfo) -> Target:
    """A lab gateway: its namespace, its file root, and the lab's generated MQTT credentials."""
    return Target(netns=info.gateway, layout=info.layout, credentials=info.credentials)


def apply_lab(policy: Policy, info: LabInfo) -> None:
    """The hook `cell lab up` calls: apply the policy to the lab's gateway namespace."""
    apply_policy(policy, lab_target(info))


__all__ = [
    "DNS_CONFS",
    "RULESET",
    "ApplyError",
    "Report",
    "Target",
    "apply_lab",
    "apply_policy",
    "check_artifacts",
    "lab_target",
]
