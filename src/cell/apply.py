"""Apply a policy to a gateway: render, check every artifact, install, load, start, read back. Thin.

Order: render (pure) -> check (nft dry run, a mosquitto config test, dnsmasq --test) -> snapshot
-> install files -> one nftables transaction -> dnsmasq -> mosquitto -> read back (table, files,
services). A failure before the install changes nothing; after it, the snapshot goes back: old
files byte for byte, the old table object for object (counters and resolver-filled sets too), and
each service restarted or reloaded again on the old files (only its pid is new). The trust gate,
journal and timed confirm wrap this (`cell.gitops`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.broker import Broker
from bridge.render import PASSWD_RELATIVE, render_mosquitto
from cell import procs
from cell.render import digest, render_all, write_tree
from cell.runner import NetnsRunner
from firewall import apply as fw
from policies import Policy
from policies.errors import CellError
from policies.layout import Layout

if TYPE_CHECKING:
    from cell.lab import LabInfo

RULESET = "nftables/ruleset.json"
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
    _adopt_strays(target)
    snap = _snapshot(files, target)
    changed = sorted(
        n
        for n, data in files.items()
        if snap.files[n] != data or (baseline is not None and baseline.get(n) != digest(data))
    )
    try:
        _install(files, target)
        fw.apply(files[RULESET], target.netns)
        dns = _dnsmasq(target, set(changed), snap)
        snap.touched["broker"] = "unknown"
        broker = _broker(policy, target).update(
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


def check_artifacts(files: dict[str, bytes], target: Target, policy: Policy | None = None) -> None:
    """Every artifact must be accepted by its component before anything is installed: nftables
    (a dry run in the target namespace), dnsmasq (`--test`), and, given the policy, mosquitto."""
    fw.check(files[RULESET], target.netns)
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
    passwd = Path(layout.state) / PASSWD_RELATIVE
    live = _read(target.state / PASSWD_RELATIVE)
    if target.credentials:
        write_passwd(passwd, target.credentials)
    else:
        passwd.parent.mkdir(parents=True, exist_ok=True)
        passwd.write_bytes(live or b"")
    conf = Path(layout.config) / "mosquitto" / "mosquitto.conf"
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(conf)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_own_netns,  # noqa: PLW1509
    )
    try:
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            if _listens(proc.pid, policy.mqtt.listener.port):
                return
            time.sleep(0.01)
        said = b"" if proc.poll() is None else (proc.stdout.read() if proc.stdout else b"")
        log = _read(Path(layout.state) / "mosquitto" / "mosquitto.log") or b""
        why = (said or log).decode(errors="replace").strip().splitlines()[-3:]
        raise ApplyError(f"mosquitto refused the candidate config {conf}: {' | '.join(why)}")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()


def _own_netns() -> None:
    if ctypes.CDLL(None, use_errno=True).unshare(0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")


def _listens(pid: int, port: int) -> bool:
    """A TCP socket in LISTEN on `port` in the namespace of `pid` (/proc/PID/net/tcp)."""
    with contextlib.suppress(OSError):
        for row in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


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


def read_back(files: dict[str, bytes], target: Target) -> None:
    """The live system is what was rendered: table, installed files, running services."""
    live = fw.canonical(fw.read_table(target.netns))
    if live != fw.canonical(fw.objects_of(files[RULESET])):
        raise ApplyError("read-back: the live nftables table differs from the rendered ruleset")
    for name, data in files.items():
        if _read(target.config / name) != data:
            raise ApplyError(f"read-back: {target.config / name} is not the rendered file")
    down = [s for s, pid in service_pids(target).items() if pid is None]
    if down:
        raise ApplyError(f"read-back: not running after the apply: {', '.join(down)}")


def service_pids(target: Target) -> dict[str, int | None]:
    """Pid of each service the apply runs (None: not running)."""
    return {s: procs.read_pid(_pidfile(target, s)) for s in ("sinkhole", "resolver", "broker")}


def service_strays(target: Target) -> dict[str, list[int]]:
    """Processes running a service's exact command line that its pid file does not name: what an
    apply killed between starting a service and recording its pid leaves behind."""
    argv = service_argv(target)
    wanted = {"\0".join(a).encode(): s for s, a in argv.items()}
    found: dict[str, list[int]] = {s: [] for s in argv}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                service = wanted.get(Path(entry.path, "cmdline").read_bytes().rstrip(b"\0"))
                if service and procs.alive(int(entry.name)):
                    found[service].append(int(entry.name))
    known = service_pids(target)
    return {s: [p for p in pids if p != known[s]] for s, pids in found.items()}


def _adopt_strays(target: Target) -> None:
    """Record a stray as its service's process when none is recorded; stop any other, so a new
    start can bind its ports (the next steps then restart or keep it as for any process)."""
    known = service_pids(target)
    for service, pids in service_strays(target).items():
        if known[service] is None and pids:
            _pidfile(target, service).write_text(f"{pids.pop(0)}\n")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def service_argv(target: Target) -> dict[str, list[str]]:
    """The command line each service must be running with (drift compares /proc/PID/cmdline)."""
    argv = {
        Path(name).stem: ["dnsmasq", "--keep-in-foreground", "-C", str(target.config / name)]
        for name in DNS_CONFS
    }
    argv["broker"] = ["mosquitto", "-c", str(target.config / "mosquitto" / "mosquitto.conf")]
    return argv


def _snapshot(files: dict[str, bytes], target: Target) -> _Snapshot:
    return _Snapshot(
        files={name: _read(target.config / name) for name in files},
        passwd=_read(target.state / PASSWD_RELATIVE),
        table=fw.read_table(target.netns),
        running={s: pid is not None for s, pid in service_pids(target).items()},
    )


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _install(files: dict[str, bytes], target: Target) -> None:
    write_tree(target.config, files)
    for sub in ("mosquitto", "dnsmasq"):
        (target.state / sub).mkdir(parents=True, exist_ok=True)
    if target.netns:
        (target.state / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    if target.credentials:
        write_passwd(target.state / PASSWD_RELATIVE, target.credentials)


def _pidfile(target: Target, service: str) -> Path:
    if service == "broker":
        return target.state / "mosquitto" / "mosquitto.run.pid"
    return target.state / "dnsmasq" / f"{service}.run.pid"


def _start_dnsmasq(target: Target, service: str) -> None:
    log = target.state / "dnsmasq" / f"{service}.out"
    procs.start(service_argv(target)[service], _pidfile(target, service), log, target.netns)


def _dnsmasq(target: Target, changed: set[str], snap: _Snapshot) -> str:
    actions = []
    for name in DNS_CONFS:
        service = Path(name).stem
        if name in changed or procs.read_pid(_pidfile(target, service)) is None:
            snap.touched[service] = "restarted"
            procs.stop(_pidfile(target, service))
            _start_dnsmasq(target, service)
            actions.append(f"{service} restarted")
    return ", ".join(actions) or "unchanged"


def _broker(policy: Policy, target: Target) -> Broker:
    return Broker(
        NetnsRunner(target.netns, target.resolv_conf),
        conf=target.config / "mosquitto" / "mosquitto.conf",
        pidfile=_pidfile(target, "broker"),
        log=target.state / "mosquitto" / "mosquitto.out",
        port=policy.mqtt.listener.port,
    )


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
            fw.apply(fw.restore_document(snap.table), target.netns)
    except CellError as e:
        trouble.append(f"nftables: {e}")
    for service in ("sinkhole", "resolver"):
        if service in snap.touched:
            try:
                procs.stop(_pidfile(target, service))
                if snap.running[service]:
                    _start_dnsmasq(target, service)
            except (OSError, subprocess.SubprocessError) as e:
                trouble.append(f"dnsmasq {service}: {e}")
    action = snap.touched.get("broker")
    if action is not None and action != "unchanged":
        broker = _broker(policy, target)
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


def stop_services(target: Target) -> None:
    """Stop the gateway's dnsmasq instances and broker (lab down, tests)."""
    for service in ("sinkhole", "resolver", "broker"):
        procs.stop(_pidfile(target, service))


def lab_target(info: LabInfo) -> Target:
    """A lab gateway: its namespace, its file root, and the lab's generated MQTT credentials."""
    return Target(netns=info.gateway, layout=info.layout, credentials=info.credentials)


def apply_lab(policy: Policy, info: LabInfo) -> None:
    """The hook `cell lab up` calls: apply the policy to the lab's gateway namespace."""
    apply_policy(policy, lab_target(info))
