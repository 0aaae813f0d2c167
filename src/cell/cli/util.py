"""Shared pieces of the `cell` command line: defaults, common flags, policy loading, output.

Each area registers its own subcommands (`cell.cli.apply`, `cell.cli.lab`, ...) with these, so
every command reads `--repo` and prints `--json` the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from cell import paths


def repo(args: argparse.Namespace) -> str:
    return paths.repo_dir(getattr(args, "repo", None))


def state_dir(args: argparse.Namespace) -> str:
    return paths.state_dir(getattr(args, "state_dir", None))


def load(args: argparse.Namespace) -> Any:
    """Load and validate the policy named by `--repo`; print its warnings to stderr."""
    from policies import load_policy

    policy = load_policy(repo(args))
    for w in policy.warnings:
        print(w, file=sys.stderr)
    return policy


def emit(args: argparse.Namespace, doc: Any, text: str) -> None:
    print(json.dumps(doc, indent=2, ensure_ascii=False) if getattr(args, "json", False) else text)


def add_repo(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--repo", help=paths.REPO_HELP)


def add_json(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--json", action="store_true", help="machine-readable output")


def add_state_dir(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--state-dir", help=paths.STATE_HELP)


MAX_OPERATOR_FILE = 1 << 20
"""Files an operator points a command at (signers, keys, passwords) are small: reading more
than this is refused, so a mistaken path (a device, a log) cannot exhaust memory."""


def read_operator_file(path: str, flag: str, limit: int = MAX_OPERATOR_FILE) -> bytes:
    """The bytes of a regular file named on the command line, or a one-line UsageError."""
    import stat

    from cell.errors import UsageError

    try:
        with open(path, "rb") as fh:  # noqa: PTH123 (one fstat on the open file, no race)
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise UsageError(f"{flag} {path}: not a regular file")
            data = fh.read(limit + 1)
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot read it ({e.strerror})") from None
    if len(data) > limit:
        raise UsageError(f"{flag} {path}: larger than {limit} bytes; is it the right file?")
    return data
