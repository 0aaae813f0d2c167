"""`cell console`: the operator's TUI (package `console`), pointed at a Cell.

Where it looks, most specific first: `--recorded FILE` (a recording of the bus); `--broker
HOST:PORT` with an operator login from mqtt.yaml (`--user`, `--password-file`, `--cafile` for
TLS from a laptop); `--lab`, or a lab of `--repo`'s site when one is up (it finds the broker in
the lab's gateway, a login that may read `cell/#`, and the lab's state directory); else this
Cell's own broker on loopback. `--once` prints every panel as text and exits 0 when sovereign,
3 otherwise. Textual is imported only when the console starts.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from cell import paths
from cell.cli.util import add_login, add_repo, add_state_dir, read_login, repo
from cell.errors import UsageError

if TYPE_CHECKING:
    from cell.lab import LabInfo
    from console.config import BrokerConfig, ConsoleConfig

EXIT_NOT_SOVEREIGN = 3


def parse_broker(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--broker {text!r}: expected HOST:PORT, e.g. cell.example.net:8883")
    return host.strip("[]"), int(port)


def lab_login(lab: LabInfo, repo_dir: str) -> tuple[str, str]:
    """A login of the lab's broker that may read `cell/#`: an operator client of mqtt.yaml
    when the policy has one, else the Cell's own user `cell`."""
    from bridge.render import MONITOR_USER
    from policies import load_policy
    from policies.errors import CellError
    from policies.topics import matches

    creds = lab.credentials
    try:
        clients = load_policy(repo_dir).mqtt.clients
    except CellError:
        clients = []
    for c in clients:
        if c.username in creds and any(matches(f, "cell/status") for f in c.subscribe):
            return c.username, creds[c.username]
    if MONITOR_USER not in creds:
        raise UsageError(f"the lab of site {lab.site} has no login that may read cell/#")
    return MONITOR_USER, creds[MONITOR_USER]


def resolve(args: argparse.Namespace) -> tuple[ConsoleConfig, str | None]:
    """The console's configuration, and the network namespace to enter first (a lab's)."""
    from cell.deploy.place import lab_of, site_of
    from console.config import BrokerConfig, ConsoleConfig

    repo_dir = repo(args)
    state = paths.explicit_state_dir(args.state_dir)
    if args.recorded:
        return ConsoleConfig(recorded=args.recorded, state_dir=state, repo=repo_dir), None
    lab = None
    if not args.broker:
        lab = lab_of(site_of(repo_dir))
        if args.lab and lab is None:
            raise UsageError(
                f"no lab is up for the site of {repo_dir}: run `cell lab up --repo {repo_dir}`"
            )
    if lab is not None:
        user, secret = lab_login(lab, repo_dir)
        site = lab.mqtt["site"]
        broker = BrokerConfig(str(site["host"]), int(site["port"]), user, secret)
        config = ConsoleConfig(
            broker=broker,
            state_dir=state or lab.layout.state,
            repo=repo_dir,
        )
        return config, lab.gateway
    host, port = parse_broker(args.broker or paths.CONSOLE_BROKER)
    login = read_login(args, user_needs_password=True)
    broker_cfg: BrokerConfig = BrokerConfig(
        host, port, login.user, login.password, login.cafile, login.certfile, login.keyfile
    )
    if state is None:
        from pathlib import Path

        default = paths.state_dir()
        state = default if Path(default).is_dir() else None
    return ConsoleConfig(broker=broker_cfg, state_dir=state, repo=repo_dir), None


def cmd_console(args: argparse.Namespace) -> int:
    config, netns = resolve(args)
    if netns is not None:
        from firewall import netns as ns

        try:
            ns.enter(netns)  # before any socket or thread: the console lives in the lab's gateway
        except OSError as e:
            raise UsageError(
                f"cannot enter the lab's gateway namespace {netns} ({e.strerror or e}): "
                "the lab's console needs root, like the lab"
            ) from None
    if args.once:
        import asyncio

        from console.once import snapshot
        from console.text import render_text

        view, banner = asyncio.run(snapshot(config, wait=args.wait))
        print(render_text(view, width=args.width), end="")
        return 0 if banner.kind == "sovereign" else EXIT_NOT_SOVEREIGN
    from console.sources import ReaderProcess, make_source

    source = make_source(config, isolated=True)
    if isinstance(source, ReaderProcess):
        source.start()  # the bus reader connects while Textual loads: the first banner sooner
    from console.app import make_app

    app = make_app(config, source)
    app.run()
    return app.return_code or 0


def add_console_commands(sub: Any) -> None:
    sp = sub.add_parser(
        "console",
        help="the operator's console (TUI): the banner, SYNOPSIS MQTT CAMS GITOPS HEALTH",
        description="The operator's console: what the daemon says on the status bus and what "
        "the Cell recorded. Read-only. Keys: 1-5 panels, enter evidence, / filter, ? help, q quit.",
    )
    sp.add_argument("--lab", action="store_true", help="the lab of --repo's site (must be up)")
    sp.add_argument(
        "--broker", help=f"HOST:PORT of the Cell's broker (default {paths.CONSOLE_BROKER})"
    )
    add_login(
        sp,
        user="an operator login of mqtt.yaml that may read cell/#",
        cafile="TLS: the CA that signed the broker's certificate",
    )
    sp.add_argument("--recorded", help="replay a recorded bus (JSON lines {topic, payload})")
    sp.add_argument(
        "--once",
        action="store_true",
        help="print every panel as text and exit (0 sovereign, 3 not)",
    )
    sp.add_argument("--width", type=int, default=100, help="with --once: line width (default 100)")
    sp.add_argument(
        "--wait",
        type=float,
        default=3.0,
        help="with --once: seconds to wait for the status (default 3)",
    )
    add_repo(sp)
    add_state_dir(sp)
    sp.set_defaults(handler=cmd_console)


def open_on_lab(repo_dir: str) -> int:
    """`cell demo` on a terminal: the console on the lab, in a process of its own (it enters
    the lab's gateway namespace; the demo, which removes the lab afterwards, stays outside)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "cell.cli", "console", "--lab", "--repo", repo_dir]
    )
    return done.returncode
