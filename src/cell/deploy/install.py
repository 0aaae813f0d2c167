"""Apply a policy to a gateway in stages: prepare (render, check), then install (files, table,
services) and read back. Thin: touches files, nftables and processes.

`prepare` renders and checks every artifact on the target (nft dry run, a mosquitto config test,
dnsmasq --test) and changes nothing live. `install` snapshots the live state, writes the files,
loads the table in one nftables transaction, restarts what must restart (dnsmasq, then
mosquitto) and reads everything back. A failure in any of those puts the snapshot back: old
files byte for byte, the old table object for object (counters and resolver-filled sets too),
and each service restarted or reloaded again on the old files (only its pid is new). The trust
gate, the journal and the timed confirm wrap these stages (`cell.gitops.lifecycle`).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from cell.artifacts import digest, render_all, write_tree
from cell.deploy import daemons as procs
from cell.deploy import services
from cell.deploy.checks import check_artifacts, ensure_cell_login, write_passwd
from cell.deploy.target import Target, read_file
from cell.errors import ApplyError
from cell.status.apply import ServiceReport
from firewall.document import Json, as_dict, canonical, objects_of, restore_document
from firewall.links import LinkPlan, LiveNet, compare_links, load_links
from policies import Policy
from policies.errors import CellError
from policies.layout import (
    LINKS,
    MANIFEST,
    MOSQUITTO_INCLUDE_DIR,
    PASSWD,
    RESOLV_CONF,
    RULESET_JSON,
)

if TYPE_CHECKING:
    from cell.lab import LabInfo

Report = ServiceReport
"""What an install did (the name callers know)."""


@dataclass(frozen=True)
class Prepared:
    """A policy made ready for one target: rendered and checked there, nothing live touched."""

    policy: Policy
    target: Target
    """The gateway the artifacts were checked on, and the only one they may be installed on."""
    files: dict[str, bytes]
    """Relative path -> rendered bytes, manifest included."""
    digests: dict[str, str]
    """Relative path -> sha256 of each artifact (the manifest's, which the journal records)."""
    ruleset: Json
    """The nftables document that replaces `table inet cell`."""
    links: LinkPlan | None = None
    """The gateway's own links, addresses and sysctls (None: a stored commit from before the
    Cell owned its links)."""


@dataclass
class _Snapshot:
    """The live state an install may change, taken right before it changes anything."""

    files: dict[str, bytes | None]
    passwd: bytes | None
    table: list[dict[str, Any]] | None
    running: dict[str, bool]
    net: LiveNet | None = None
    """The links, addresses, default routes and sysctls before the apply."""
    touched: dict[str, str] = field(default_factory=dict)
    """Service -> what this install did to it ('restarted', 'reloaded', 'started', 'unknown')."""


def prepare(policy: Policy, target: Target, files: dict[str, bytes] | None = None) -> Prepared:
    """Render (unless `files` are given: a stored commit's exact bytes) and check every artifact
    on `target`; raises `ApplyError`/`FirewallError` naming what a component refused."""
    files = files if files is not None else render_all(policy, target.layout)
    check_artifacts(files, target, policy)
    digests = {n: digest(data) for n, data in sorted(files.items()) if n != MANIFEST}
    links = load_links(files[LINKS]) if LINKS in files else None
    return Prepared(policy, target, files, digests, as_dict(files[RULESET_JSON]), links)


class CounterKeeper(Protocol):
    """Keeps the drop counters' history across the table's replacement (a new table starts at
    zero): `cell.verify.drops.DropKeeper`. Best effort: it never makes an apply fail."""

    def before_replace(self, netns: str | None) -> None: ...

    def after_restore(self, netns: str | None) -> None: ...


def install(
    prepared: Prepared,
    *,
    baseline: dict[str, str] | None = None,
    keeper: CounterKeeper | None = None,
) -> ServiceReport:
    """Make a prepared policy live on its target, or raise `ApplyError` with the target as it was.

    `baseline`: the digests of what is believed to be running (the journal's); services restart
    for artifacts that differ from it or from the files on disk, so a tampered or half-installed
    file never hides a needed restart. `{}`: everything counts as changed.
    """
    target, files = prepared.target, prepared.files
    services.adopt_strays(target)
    snap = _snapshot(files, target)
    if prepared.links is not None:
        snap.net = target.links.read(prepared.links)
    changed = sorted(
        n
        for n, data in files.items()
        if snap.files[n] != data or (baseline is not None and baseline.get(n) != digest(data))
    ) + [n for n in snap.files if n not in files]
    try:
        if prepared.links is not None:  # first: the services bind the gateway's addresses
            target.links.apply(prepared.links, target.stand_in)
        login = _write_files(files, target)
        if keeper is not None:
            keeper.before_replace(target.netns)  # the old table's last counts
        target.nft.apply(prepared.ruleset)
        dns = services.update_dnsmasq(target, set(changed), snap.touched)
        snap.touched["broker"] = "unknown"
        broker = services.broker_for(prepared.policy, target).update(
            set(changed) | {PASSWD} if target.credentials or login else set(changed)
        )
        snap.touched["broker"] = broker
        read_back(prepared)
    except (CellError, OSError, subprocess.SubprocessError) as e:
        trouble = []
        if snap.net is not None and prepared.links is not None:
            try:  # first: the old services come back on the old addresses
                target.links.restore(snap.net, prepared.links)
            except (CellError, OSError) as again:
                trouble.append(f"links: {again}")
        trouble += _restore(snap, target, prepared.policy, keeper)
        tail = (
            "previous configuration restored"
            if not trouble
            else "restoring the previous configuration failed too: " + "; ".join(trouble)
        )
        raise ApplyError(f"apply failed, {tail}: {e}") from None
    return ServiceReport(changed=changed, broker=broker, dnsmasq=dns)


def apply_policy(
    policy: Policy,
    target: Target,
    *,
    files: dict[str, bytes] | None = None,
    baseline: dict[str, str] | None = None,
    keeper: CounterKeeper | None = None,
) -> ServiceReport:
    """Prepare, then install: `policy` live on `target` (the lab and tests call this)."""
    return install(prepare(policy, target, files), baseline=baseline, keeper=keeper)


def read_back(prepared: Prepared) -> None:
    """The live system is what was prepared: table, installed files, running services."""
    target, files = prepared.target, prepared.files
    if prepared.links is not None:
        differ = compare_links(prepared.links, target.links.read(prepared.links), target.stand_in)
        if differ:
            raise ApplyError(f"read-back: {'; '.join(differ)}")
    live = canonical(target.nft.list_table())
    if live != canonical(objects_of(prepared.ruleset)):
        raise ApplyError("read-back: the live nftables table differs from the rendered ruleset")
    for name, data in files.items():
        if read_file(target.config / name) != data:
            raise ApplyError(f"read-back: {target.config / name} is not the rendered file")
    down = [s for s, pid in services.service_pids(target).items() if pid is None]
    if down:
        raise ApplyError(f"read-back: not running after the apply: {', '.join(down)}")


INCLUDE_DIR = MOSQUITTO_INCLUDE_DIR


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
        passwd=read_file(target.state / PASSWD),
        table=target.nft.list_table(),
        running={s: pid is not None for s, pid in services.service_pids(target).items()},
    )


def _write_files(files: dict[str, bytes], target: Target) -> bool:
    """Install the files; True when the password file changed (the Cell's own login)."""
    for extra in _extras(files, target):
        (target.config / extra).unlink()
    write_tree(target.config, files)
    for sub in ("mosquitto", "dnsmasq"):
        (target.state / sub).mkdir(parents=True, exist_ok=True)
    if target.netns:
        (target.state / RESOLV_CONF).write_text("nameserver 127.0.0.1\n")
    if target.credentials:
        write_passwd(target.state / PASSWD, target.credentials)
        return False
    return ensure_cell_login(target.state, target.state / PASSWD)


def _restore(
    snap: _Snapshot, target: Target, policy: Policy, keeper: CounterKeeper | None
) -> list[str]:
    """Put the snapshot back; what could not be restored, for the error message."""
    trouble: list[str] = []
    try:
        for name, data in snap.files.items():
            path = target.config / name
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(data)
        passwd = target.state / PASSWD
        if snap.passwd is not None:
            passwd.write_bytes(snap.passwd)
    except OSError as e:
        trouble.append(f"files: {e}")
    try:
        if snap.table is None:
            target.nft.delete_table()
        else:
            if keeper is not None:
                keeper.before_replace(target.netns)  # the failed table's counts
            target.nft.apply(restore_document(snap.table))
            if keeper is not None:
                keeper.after_restore(target.netns)  # the old values: counted already
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
    return Target(
        netns=info.gateway, layout=info.layout, credentials=info.credentials, stand_in="veth"
    )


def apply_lab(policy: Policy, info: LabInfo) -> None:
    """The hook `cell lab up` calls: apply the policy to the lab's gateway namespace."""
    apply_policy(policy, lab_target(info))


def apply_lab_links(policy: Policy, info: LabInfo) -> None:
    """Only the gateway's links, addresses and sysctls: a lab that routes without a firewall
    (the lab's own tests of the bare site)."""
    from firewall.links import compile_links

    target = lab_target(info)
    target.links.apply(compile_links(policy), target.stand_in)


__all__ = [
    "ApplyError",
    "Prepared",
    "Report",
    "Target",
    "apply_lab",
    "apply_policy",
    "check_artifacts",
    "install",
    "lab_target",
    "prepare",
]
