"""The outside world of the lab, inside the closed WAN namespace: hub broker, resolver, endpoints.

- the hub broker: mosquitto with mutual TLS from the lab CA, `use_identity_as_username` (the
  certificate's CN is the login), logging everything, so tests see what crossed the bridge;
- the outside resolver: dnsmasq on the resolver address(es); the hub and management hostnames get
  their lab addresses, every other name the phone-home address, and every query is logged;
- the management listener, "the Internet" and the phone-home server: responders
  (`cell.lab.responder`), each logging one line per connection; the phone-home log is the counter.

`render_*` are pure (plan in, text out); `start_*` start processes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from cell.lab.plan import INTERNET_IP, PHONE_HOME_IP, PHONE_HOME_PORTS, LabPlan, PortProto
from cell.lab.processes import Listen, Proc, start
from cell.lab.tls import Pki

Started = tuple[Proc, list[Listen]]
"""A started process and what it must be listening on before the lab is ready."""


def render_hub_conf(plan: LabPlan, pki: Pki | None, log: str) -> str:
    address, port = plan.hub
    lines = [
        "# The lab's hub broker (mosquitto), in the closed WAN namespace. By `cell lab up`.",
        "per_listener_settings false",
        "persistence false",
        "# Like the site's broker: a burst of commands queued for a reconnecting bridge is kept,",
        "# not dropped at mosquitto's default of 1,000 (which the load bench would trip).",
        "max_queued_messages 200000",
        "max_queued_bytes 268435456",
        f"log_dest file {log}",
        "log_type all",
        "log_timestamp true",
        "connection_messages true",
        "# Root owns the lab's keys (0600) under /run.",
        "user root",
        "",
        f"listener {port} {address}",
        "socket_domain ipv4",
    ]
    if pki is None:
        return "\n".join(
            [
                *lines,
                "# The policy's bridge is `insecure: true`: plain MQTT.",
                "allow_anonymous true",
                "",
            ]
        )
    return "\n".join(
        [
            *lines,
            "# Mutual TLS: a client without a certificate from the lab CA fails the handshake,",
            "# and the certificate's CN is the client's username.",
            f"cafile {pki.ca}",
            f"certfile {pki.hub_cert}",
            f"keyfile {pki.hub_key}",
            "require_certificate true",
            "use_identity_as_username true",
            "allow_anonymous false",
            "",
        ]
    )


def render_resolver_conf(plan: LabPlan, log: str) -> str:
    lines = [
        "# The lab's outside resolver (dnsmasq), in the closed WAN namespace. By `cell lab up`.",
        "# It knows no real name: the hub and management hostnames get their lab addresses, every",
        "# other name the phone-home server's, so a leaked lookup ends in a counted connection.",
        "port=53",
        *(f"listen-address={a}" for a in plan.resolvers),
        "bind-interfaces",
        "no-resolv",
        "no-hosts",
        "user=root",
        "pid-file=",
        "log-queries",
        f"log-facility={log}",
        *(f"address=/{name}/{addr}" for name, addr in sorted(plan.names.items())),
        f"address=/#/{PHONE_HOME_IP}",
        "",
    ]
    return "\n".join(lines)


def responder(name: str, ns: str, specs: Sequence[tuple[str, int, str]], logs: Path) -> Started:
    """Start `cell.lab.responder` in `ns`: its connection log is logs/NAME.log."""
    argv = [sys.executable, "-m", "cell.lab.responder", "--log", str(logs / f"{name}.log")]
    argv += [f"{a}:{p}/{t}" for a, p, t in specs]
    return start(name, ns, argv, logs / f"{name}.out"), list(specs)


def _on(address: str, ports: Sequence[PortProto]) -> list[Listen]:
    return [(address, p, t) for p, t in ports]


def start_wan_services(plan: LabPlan, pki: Pki | None, root: Path) -> list[Started]:
    """Start every WAN service; the caller waits for them to listen (in parallel with the rest)."""
    wan, logs, conf = plan.wan, root / "log", root / "wan"
    conf.mkdir(parents=True, exist_ok=True)
    hub_conf = conf / "hub-mosquitto.conf"
    hub_conf.write_text(render_hub_conf(plan, pki, str(logs / "hub.log")))
    dns_conf = conf / "resolver-dnsmasq.conf"
    dns_conf.write_text(render_resolver_conf(plan, str(logs / "resolver.log")))
    hub_addr, hub_port = plan.hub
    started = [
        (
            start("hub", wan, ["mosquitto", "-c", str(hub_conf)], logs / "hub.out"),
            [(hub_addr, hub_port, "tcp")],
        ),
        (
            start(
                "resolver",
                wan,
                ["dnsmasq", "--keep-in-foreground", f"--conf-file={dns_conf}"],
                logs / "resolver.out",
            ),
            [(a, 53, t) for a in plan.resolvers for t in ("udp", "tcp")],
        ),
        responder("phone-home", wan, _on(PHONE_HOME_IP, PHONE_HOME_PORTS), logs),
        responder("internet", wan, _on(INTERNET_IP, plan.internet_ports), logs),
    ]
    mgmt = sorted({(a, p, "tcp") for a, p in plan.management} - {(hub_addr, hub_port, "tcp")})
    if mgmt:
        started.append(responder("management", wan, mgmt, logs))
    return started
