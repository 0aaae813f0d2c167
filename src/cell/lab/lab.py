"""`lab_up`, `lab_down`, `lab_status`: a whole site in network namespaces, and back to nothing.

`lab_up` builds in this order: PKI, namespaces and links, WAN services and responders (all started
at once, then awaited together), then the caller's `apply` (the real Cell on the gateway). Any
failure, or Ctrl-C, tears everything down before the error is raised: there is never half a lab.

`lab_down` trusts nothing it did not check: it kills the processes the state file names (if they
are still the ones the lab started) and every process living in one of the site's namespaces
(found by /proc/PID/ns/net, so the gateway's broker started by `apply`, or whatever a crashed `up`
left, goes too), then removes the namespaces by name prefix (their links go with them) and the
lab's directory. No lab link ever exists in the host's namespace (see `topology`).
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bridge.render import MONITOR_USER, bridge_client_id
from cell.errors import UsageError
from cell.lab import topology
from cell.lab.errors import LabError, LabNotUp
from cell.lab.plan import (
    INTERNET_IP,
    LAB_BASE,
    PHONE_HOME_IP,
    LabPlan,
    lab_root,
    ns_prefix,
    plan_lab,
)
from cell.lab.processes import netns_id, pids_in, stop, wait_ready
from cell.lab.state import LabInfo, read_state, write_state
from cell.lab.tls import Pki, install, make_pki
from cell.lab.wan import Started, responder, start_wan_services
from firewall import netns
from policies import Policy
from policies.layout import Layout

Apply = Callable[[Policy, LabInfo], None]
GatewayService = Callable[[Policy, str, str, str, Path], list[Started]]
"""Starts one of the Cell's own services in the gateway (policy, gateway namespace, WAN
interface, state directory, log directory): the caller chooses which (the lab knows none of
them; e.g. `cell.verify.labcapture.start_lab_capture`)."""
_SITE_ID = re.compile(r"[a-z0-9-]{1,32}")


def lab_up(
    policy: Policy,
    *,
    apply: Apply | None = None,
    services: Sequence[GatewayService] = (),
    after_apply: Sequence[GatewayService] = (),
) -> LabInfo:
    """Build (or rebuild from scratch) the lab of `policy`'s site; with `apply`, make it live.

    `after_apply` start once the policy is applied (the daemon, `cell run`: the CLI passes it,
    tests that want it ask for it; nothing by default, so a lab test pays only for what it uses).

    Returns when every lab service listens and `apply` has returned. Raises `LabError` after
    removing everything it made. The returned `LabInfo` carries the lab's MQTT passwords: lab
    credentials, for the lab alone (a real Cell never prints a secret).
    """
    site = policy.site.site.id
    lab_down(site)
    step = "planning it"
    try:
        plan = plan_lab(policy)
        step = "preparing its directory"
        root = Path(plan.root)
        # 0755: the gateway's services that `apply` starts may drop to an unprivileged user. The
        # secrets inside are 0600 themselves (state file, keys) or in 0700 directories (pki).
        root.mkdir(mode=0o755, parents=True)
        step = "making its PKI with openssl"
        pki = _pki(policy, plan, root)
        step = "building its namespaces and links"
        topology.build(plan)
        info = _info(policy, plan, pki)
        write_state(info)
        step = "starting its services"
        started = start_wan_services(plan, pki, root) + _responders(plan, root)
        for service in services:
            started += service(
                policy, plan.gateway, plan.wan_interface, info.layout.state, root / "log"
            )
        info.processes = {proc.name: proc for proc, _ in started}
        write_state(info)
        wait_ready(started)
        if apply is not None:
            step = "applying the policy to the gateway"
            apply(policy, info)
        if after_apply:
            step = "starting its gateway services"
            for service in after_apply:
                for proc, _ in service(
                    policy, plan.gateway, plan.wan_interface, info.layout.state, root / "log"
                ):
                    info.processes[proc.name] = proc
            write_state(info)
        return info
    except BaseException as e:
        _teardown_quietly(site)
        if not isinstance(e, Exception):
            raise
        why = str(e) if isinstance(e, LabError) else f"{type(e).__name__}: {e}".rstrip(": ")
        raise LabError(
            f"lab up for site {site} failed while {step}: {why} (the lab was removed)"
        ) from e


def lab_down(site_id: str) -> None:
    """Remove every namespace, link, process and file of the site's lab; nothing to do is fine."""
    _check_site(site_id)
    prefix = ns_prefix(site_id)
    try:
        info = read_state(site_id)
    except LabError:
        info = None
    ours = [n for n in netns.names() if n.startswith(prefix)]
    ids = {i for i in map(netns_id, ours) if i is not None}
    pids = {p.pid for p in info.processes.values() if p.running()} if info else set()
    for _ in range(5):  # a dying process may have forked; look again until nothing is left
        pids |= set(pids_in(ids)) if ids else set()
        if not pids:
            break
        stop(pids)
        pids = set()
    for name in ours:
        try:
            netns.remove(name)
        except OSError as e:
            raise LabError(f"cannot remove namespace {name}: {e}") from e
    shutil.rmtree(lab_root(site_id), ignore_errors=True)
    with contextlib.suppress(OSError):
        Path(LAB_BASE).rmdir()
    left = [n for n in netns.names() if n.startswith(prefix)]
    for _ in range(10):  # a killed `up` may still have a namespace half made: sweep again
        if not left:
            break
        time.sleep(0.1)
        for name in left:
            with contextlib.suppress(OSError):
                netns.remove(name)
        left = [n for n in netns.names() if n.startswith(prefix)]
    if left:
        raise LabError(
            f"namespaces of site {site_id} are still there after lab down: {', '.join(left)}"
        )


def lab_status(site_id: str) -> LabInfo | None:
    """The running lab of `site_id`, or None when there is none (no state, or no gateway)."""
    _check_site(site_id)
    info = read_state(site_id)
    if info is None or info.gateway not in netns.names():
        return None
    return info


def phone_home_count(site_id: str) -> int:
    """Connections and datagrams the lab's phone-home server has received since `lab up`."""
    info = lab_status(site_id)
    if info is None:
        raise LabNotUp(f"no lab is up for site {site_id}")
    try:
        with Path(info.phone_home_log).open(encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())
    except FileNotFoundError:
        return 0


def _check_site(site_id: str) -> None:
    """Site ids name directories and namespaces: nothing else may get that far."""
    if not _SITE_ID.fullmatch(site_id):
        raise UsageError(f"not a site id: {site_id!r} (expected [a-z0-9-], 1..32 chars)")


def _teardown_quietly(site: str) -> None:
    with contextlib.suppress(Exception):  # the original error is the one to report
        lab_down(site)


def _pki(policy: Policy, plan: LabPlan, root: Path) -> Pki | None:
    """The lab PKI; the Cell's files go to the policy's TLS paths under the gateway root."""
    hub = policy.site.hub
    if hub is None or hub.bridge.tls is None or hub.bridge.insecure:
        return None  # a sealed site has no bridge: its lab hub listens in plain MQTT
    tls = hub.bridge.tls
    pki = make_pki(
        root / "pki",
        site=plan.site,
        hub_dns=[plan.hub_hostname] if plan.hub_hostname else [],
        hub_ips=[plan.hub[0]],
        cell_cn=bridge_client_id(policy),
    )
    layout = Layout(root=plan.layout_root)
    install(pki.ca, layout.path(tls.cafile))
    install(pki.cell_cert, layout.path(tls.certfile))
    install(pki.cell_key, layout.path(tls.keyfile), private=True)
    return pki


def _responders(plan: LabPlan, root: Path) -> list[Started]:
    """One responder per namespace, on every address ("0.0.0.0") of it: the gateway's answers the
    allowed gateway ports the apply step does not serve (53 and the broker port are apply's)."""
    logs = root / "log"
    out = []
    if plan.gateway_ports:
        out.append(
            responder(
                "responder.gw",
                plan.gateway,
                [("0.0.0.0", p, t) for p, t in plan.gateway_ports],
                logs,
            )
        )
    for v in plan.vlans:
        out.append(
            responder(f"responder.{v.name}", v.netns, [("0.0.0.0", p, t) for p, t in v.ports], logs)
        )
    return out


def _info(policy: Policy, plan: LabPlan, pki: Pki | None) -> LabInfo:
    logs = f"{plan.root}/log"
    site_hub = policy.site.hub
    users = [c.username for c in policy.mqtt.clients] + [MONITOR_USER]
    hub: dict[str, Any] = {
        "netns": plan.wan,
        "host": plan.hub[0],
        "port": plan.hub[1],
        "hostname": plan.hub_hostname or plan.hub[0],
        "cafile": pki.ca if pki else None,
        "certfile": pki.observer_cert if pki else None,
        "keyfile": pki.observer_key if pki else None,
        "prefix": site_hub.bridge.remote_prefix if site_hub else "",
        "log": f"{logs}/hub.log",
    }
    return LabInfo(
        site=plan.site,
        root=plan.root,
        layout_root=plan.layout_root,
        gateway=plan.gateway,
        wan=plan.wan,
        namespaces=list(plan.namespaces),
        vlans={
            v.name: {
                "netns": v.netns,
                "interface": v.interface,
                "port": v.port,
                "gateway": v.gateway,
                "subnet": v.subnet,
                "addresses": list(v.addresses),
            }
            for v in plan.vlans
        },
        hosts={
            name: {"netns": f"{ns_prefix(plan.site)}v-{vlan}", "address": addr, "vlan": vlan}
            for name, (vlan, addr) in plan.hosts.items()
        },
        mqtt={
            "site": {"netns": plan.gateway, "host": "127.0.0.1", "port": policy.mqtt.listener.port},
            "hub": hub,
            "clients": {u: {"password": secrets.token_urlsafe(18)} for u in users},
        },
        outside={
            "resolver": plan.resolvers[0],
            "resolvers": list(plan.resolvers),
            "hub": plan.hub[0],
            "management": [a for a, _ in plan.management],
            "management_endpoints": [
                {"host": m.address, "address": a, "port": p}
                for m, (a, p) in zip(
                    site_hub.management if site_hub else [], plan.management, strict=True
                )
            ],
            "names": dict(plan.names),
            "internet": INTERNET_IP,
            "phone_home": PHONE_HOME_IP,
        },
        wan_link={
            "interface": plan.wan_interface,
            "gateway": plan.wan_gateway_side,
            "wan": plan.wan_side,
            "prefixlen": plan.wan_prefixlen,
        },
        phone_home_log=f"{logs}/phone-home.log",
        logs={
            "hub": f"{logs}/hub.log",
            "resolver": f"{logs}/resolver.log",
            "internet": f"{logs}/internet.log",
            "management": f"{logs}/management.log",
            **{f"responder.{v.name}": f"{logs}/responder.{v.name}.log" for v in plan.vlans},
            "responder.gw": f"{logs}/responder.gw.log",
        },
    )
