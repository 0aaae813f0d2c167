"""`cell fleet`: every Cell's sovereignty at the hub, worst first (docs/fleet.md).

`--json` prints one snapshot (exit 0 every site sovereign, 3 otherwise or no site at all); on a
terminal it opens the fleet TUI (`console.fleet`); piped, it prints the banner and the rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from cell import paths
from cell.cli.util import add_login, read_login, read_operator_file
from cell.errors import UsageError

if TYPE_CHECKING:
    from cell.fleet.model import Fleet

HELP = "every site's sovereignty at the hub broker, worst first (exit 3: not all sovereign)"


def add_fleet_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = sub.add_parser("fleet", help=HELP, description=HELP)
    sp.add_argument("--hub", required=True, metavar="HOST:PORT", help="the hub's MQTT broker")
    add_login(
        sp, user="login at the hub", cafile="CA to check the hub's certificate (turns on TLS)"
    )
    sp.add_argument(
        "--topic",
        default=paths.FLEET_TOPIC,
        metavar="PATTERN",
        help=f"where sites are at the hub, one '+' for the site id (default {paths.FLEET_TOPIC})",
    )
    sp.add_argument("--expect", metavar="FILE", help="site id -> the commit it should run")
    sp.add_argument(
        "--wait",
        type=float,
        default=paths.FLEET_WAIT,
        metavar="S",
        help=f"at most this long for the retained messages (default {paths.FLEET_WAIT:g} s)",
    )
    sp.add_argument("--json", action="store_true", help="one snapshot as JSON, then exit")
    sp.set_defaults(handler=cmd_fleet)


def hub_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--hub {text}: want HOST:PORT, e.g. hub.example.eu:8883")
    return host, int(port)


def cmd_fleet(args: argparse.Namespace) -> int:
    from cell.fleet.client import HubOptions, snapshot
    from cell.fleet.expect import load_expect
    from cell.fleet.model import FleetModel, HubLayout

    host, port = hub_address(args.hub)
    login = read_login(args, user_needs_password=False)
    if not args.wait > 0:
        raise UsageError(f"--wait {args.wait:g}: want a number of seconds above 0")
    opts = HubOptions(
        host, port, login.cafile, login.certfile, login.keyfile, login.user, login.password
    )
    try:
        layout = HubLayout(args.topic)
    except ValueError as e:
        raise UsageError(f"--topic: {e}") from None
    expect = None
    if args.expect:
        text = read_operator_file(args.expect, "--expect").decode(errors="replace")
        expect = load_expect(text, args.expect)
    model = FleetModel(layout=layout, expect=expect)
    if not args.json and sys.stdout.isatty():
        from console.fleet.app import run_live

        run_live(opts, model)
        return 0
    fleet = snapshot(opts, model, args.wait)
    if args.json:
        print(json.dumps(fleet.to_json(expect is not None), indent=2, ensure_ascii=False))
    else:
        print(format_fleet(fleet))
    if fleet.total == 0:
        print(f"cell fleet: no site under {args.topic} at {opts.where}", file=sys.stderr)
    return 0 if fleet.ok else 3


def format_fleet(fleet: Fleet) -> str:
    from cell.fleet.model import banner

    lines = [banner(fleet), ""]
    lines.append(
        f"{'SITE':<20} {'VERDICT':<10} {'BRIDGE':<6} {'LAST SEEN':<24} {'COMMIT':<12}  REASON"
    )
    for r in fleet.sites:
        commit = (r.commit or "-")[:12]
        if r.runs_expected is False:
            commit += "≠"
        lines.append(
            f"{r.site:<20} {r.verdict.upper():<10} {r.bridge or '-':<6} "
            f"{r.last_seen or '-':<24} {commit:<12}  {r.reason or ''}"
        )
    return "\n".join(lines)
