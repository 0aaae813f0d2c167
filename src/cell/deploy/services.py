"""The gateway's services (two dnsmasq instances, mosquitto): pid files, starting, stopping,
and the processes a killed apply may have left running. Thin: touches processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from bridge.broker import Broker
from cell import procfs
from cell.deploy import daemons as procs
from cell.deploy.runner import NetnsRunner
from cell.deploy.target import Target
from policies import Policy
from policies.layout import DNS_CONFS, MOSQUITTO_CONF, MOSQUITTO_RUN_PID, dnsmasq_run_pid

SERVICES = ("sinkhole", "resolver", "broker")


def pidfile(target: Target, service: str) -> Path:
    if service == "broker":
        return target.state / MOSQUITTO_RUN_PID
    return target.state / dnsmasq_run_pid(service)


def service_argv(target: Target) -> dict[str, list[str]]:
    """The command line each service must be running with (drift compares /proc/PID/cmdline)."""
    argv = {
        Path(name).stem: ["dnsmasq", "--keep-in-foreground", "-C", str(target.config / name)]
        for name in DNS_CONFS
    }
    argv["broker"] = ["mosquitto", "-c", str(target.config / MOSQUITTO_CONF)]
    return argv


def service_pids(target: Target) -> dict[str, int | None]:
    """Pid of each service the apply runs (None: not running)."""
    return {s: procs.read_pid(pidfile(target, s)) for s in SERVICES}


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
                if service and procfs.alive(int(entry.name)):
                    found[service].append(int(entry.name))
    known = service_pids(target)
    return {s: [p for p in pids if p != known[s]] for s, pids in found.items()}


def adopt_strays(target: Target) -> None:
    """Record a stray as its service's process when none is recorded; stop any other, so a new
    start can bind its ports (the next steps then restart or keep it as for any process)."""
    known = service_pids(target)
    for service, pids in service_strays(target).items():
        if known[service] is None and pids:
            pidfile(target, service).write_text(f"{pids.pop(0)}\n")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def start_dnsmasq(target: Target, service: str) -> None:
    log = target.state / "dnsmasq" / f"{service}.out"
    procs.start(service_argv(target)[service], pidfile(target, service), log, target.netns)


def update_dnsmasq(target: Target, changed: set[str], touched: dict[str, str]) -> str:
    """Restart each dnsmasq instance whose config changed or that is not running."""
    actions = []
    for name in DNS_CONFS:
        service = Path(name).stem
        if name in changed or procs.read_pid(pidfile(target, service)) is None:
            touched[service] = "restarted"
            procs.stop(pidfile(target, service))
            start_dnsmasq(target, service)
            actions.append(f"{service} restarted")
    return ", ".join(actions) or "unchanged"


def broker_for(policy: Policy, target: Target) -> Broker:
    return Broker(
        NetnsRunner(target.netns, target.resolv_conf),
        conf=target.config / "mosquitto" / "mosquitto.conf",
        pidfile=pidfile(target, "broker"),
        log=target.state / "mosquitto" / "mosquitto.out",
        port=policy.mqtt.listener.port,
        socket=target.layout.mqtt_socket,
    )


def stop_services(target: Target) -> None:
    """Stop the gateway's dnsmasq instances and broker (lab down, tests)."""
    for service in SERVICES:
        procs.stop(pidfile(target, service))
