"""`cell bridge status|policy|monitor`: what the bridge carries, and what it is doing.

Where the bridge lives: the lab's gateway when a lab of the site is up (found by the site id of
`--repo`), else this host's state directory (`--state-dir`). `status` prints the monitor's snapshot
when a monitor is running, and otherwise replays the broker's log: it needs no daemon.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import TYPE_CHECKING, Any

from bridge.classify import TAGS
from cell.cli.util import add_json, add_repo, add_state_dir, emit, load, read_password_file
from cell.errors import UsageError
from cell.paths import MONITOR_PASSWORD_ENV as PASSWORD_ENV
from policies.clock import human

if TYPE_CHECKING:
    from bridge.status import BridgeStatus, UnexpectedPublish

# --- text -----------------------------------------------------------------------------------


def _when(t: float | None) -> str:
    if t is None:
        return "unknown"
    return human(t)


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _at(file: str, line: int) -> str:
    return f"{file}:{line}" if file else ""


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def format_unexpected(u: UnexpectedPublish) -> str:
    way = "went UP to the hub" if u.way == "up" else "came DOWN from the hub"
    prefix = "" if u.prefixed else " WITHOUT the site prefix"
    return (
        f"  {_when(u.time)}  '{u.topic}' {way}{prefix} as '{u.remote_topic}': "
        f"policy says {u.direction} ({TAGS.get(u.direction, u.direction)}) by {u.rule.where()}\n"
        f"    evidence: {u.evidence.log}:{u.evidence.line}: {u.evidence.text}"
    )


def format_status(st: BridgeStatus) -> str:
    from bridge.status import CLASSES

    link = st.link
    state = {"up": "UP", "down": "DOWN"}.get(link.state, "UNKNOWN")
    lines = [
        f"bridge '{st.bridge.connection}' of site {st.site} to {st.bridge.remote} (as {st.bridge.client_id}): "
        f"{state} for {_span(link.duration(st.updated))} (since {_when(link.since)}; "
        f"{_n(link.connects, 'connect')}, {_n(link.disconnects, 'drop')} since broker start)"
    ]
    if st.source == "monitor":
        lines.append(f"source: the bridge monitor (pid {st.monitor_pid}), {_when(st.updated)}")
    else:
        lines.append(f"source: the broker log {st.log} (no monitor running)")
    seen = "   ".join(f"{TAGS[c]} {st.seen[c]}" for c in CLASSES)
    lines.append(f"seen on the local bus since {_when(st.seen_since)}:  {seen}   ($SYS {st.sys})")
    lines.append(
        f"crossed the bridge since broker start ({_when(st.log_since)}): "
        f"up {st.crossed['up']}, down {st.crossed['down']}; publishes refused by the ACL: {st.denied}"
    )
    counted = [*st.rules, *([st.default] if st.default else [])]
    cells = [
        (TAGS[r.rule.direction], r.rule.pattern or "(default)", _at(r.rule.file, r.rule.line))
        for r in counted
    ]
    if cells:
        w = [max(len(row[c]) for row in cells) for c in range(3)]
        lines.append("per rule:")
        for (tag, pattern, where), r in zip(cells, counted, strict=True):
            lines.append(
                f"  {tag:<{w[0]}}  {pattern:<{w[1]}}  {where:<{w[2]}}  "
                f"seen {r.seen:>7}  crossed {r.crossed:>7}"
            )
    if st.bridge_dropping:
        lines.append(
            f"QUEUE OVERFLOW: the broker dropped messages queued for the bridge "
            f"{_n(st.bridge_dropping, 'time')} since start: QoS 1 messages to the hub were lost"
        )
    if st.monitor_dropping:
        lines.append(
            "the broker dropped messages for the monitor (it fell behind): `seen` is incomplete"
        )
    if st.ok:
        lines.append("unexpected publishes: none")
    else:
        shown = len(st.unexpected)
        more = f" (the last {shown} shown)" if shown < st.unexpected_total else ""
        lines.append(
            f"UNEXPECTED PUBLISHES: {st.unexpected_total}{more}: data crossed the bridge "
            "against the policy (a sovereignty incident)"
        )
        lines += [format_unexpected(u) for u in st.unexpected]
    return "\n".join(lines)


# --- commands -------------------------------------------------------------------------------


def cmd_policy(args: argparse.Namespace) -> int:
    from bridge.table import format_policy_table, policy_table

    doc = policy_table(load(args))
    emit(args, doc, format_policy_table(doc))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from cell.cli.applied import applied_place, applied_policy

    policy, entry = applied_policy(args)  # what runs, never the work tree
    from cell.verify.bridgeplace import current_status

    st = current_status(policy, applied_place(args, policy, entry))
    emit(args, st.to_doc(), format_status(st))
    return 0 if st.ok else 3


def cmd_monitor(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from bridge.observer import Monitor, Observer
    from cell.cli.applied import applied_place, applied_policy
    from firewall import netns

    policy, entry = applied_policy(args)  # what runs, never the work tree
    place = applied_place(args, policy, entry)
    password = place.password
    if password is None and args.password_file:
        password = read_password_file(args.password_file)
    if not password:
        raise UsageError(
            f"no password for the monitor's login 'cell': set ${PASSWORD_ENV} or --password-file"
        )
    if args.seconds is not None and args.seconds <= 0:
        raise UsageError(f"--seconds must be positive, not {args.seconds}")

    def report(u: UnexpectedPublish) -> None:
        print(json.dumps(u.to_doc()) if args.json else format_unexpected(u), flush=True)

    if place.netns is not None:
        netns.enter(place.netns)  # before paho makes its socket and thread: both inherit it
    own = Path(place.layout.mqtt_socket)  # beside the daemon's, not instead of it
    where = Observer(
        "127.0.0.1",
        policy.mqtt.listener.port,
        password,
        place.log,
        place.snapshot,
        unix=str(own) if own.exists() else None,
    )
    monitor = Monitor(policy, where, on_unexpected=report)
    signal.signal(signal.SIGTERM, lambda *_: monitor.stop.set())
    if not args.json:
        print(f"monitoring the bridge of site {policy.site.site.id}; snapshot: {where.snapshot}")
        sys.stdout.flush()
    try:
        final = monitor.run(args.seconds)
    except KeyboardInterrupt:
        monitor.stop.set()
        final = monitor.status()
    if not args.json:
        print(format_status(final))
    return 0 if final.ok else 3


def add_bridge_commands(sub: Any) -> None:
    bridge = sub.add_parser(
        "bridge",
        help="the MQTT bridge to the hub: its policy, its state, its monitor",
        description="What may cross the bridge (policy), what is crossing (status), and the "
        "monitor that watches it. On a lab of the site, the lab's gateway; else this host.",
    )
    actions = bridge.add_subparsers(dest="bridge_command", required=True, metavar="ACTION")
    policy = actions.add_parser(
        "policy", help="every topic rule with its tag (↑hub ↓hub ✗ stays local ✗ never bridged)"
    )
    policy.set_defaults(handler=cmd_policy)
    status = actions.add_parser(
        "status",
        help="link state, per-class counts since start, unexpected publishes (exit 3: some)",
    )
    status.set_defaults(handler=cmd_status)
    monitor = actions.add_parser(
        "monitor",
        help="watch the bridge in the foreground; writes the snapshot `status` reads",
    )
    monitor.add_argument("--seconds", type=float, help="stop after this long (default: never)")
    monitor.add_argument(
        "--password-file", help=f"the 'cell' login's password (default: ${PASSWORD_ENV}; lab: own)"
    )
    monitor.set_defaults(handler=cmd_monitor)
    for sp in (policy, status, monitor):
        add_repo(sp)
        add_json(sp)
    for sp in (status, monitor):
        add_state_dir(sp)
