"""Shared pieces of the `cell` command line: defaults, common flags, policy loading, output.

Each area registers its own subcommands (`cell.cli.apply`, `cell.cli.lab`, ...) with these, so
every command reads `--repo` and prints `--json` the same way.
"""

from __future__ import annotations

import argparse
import json
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
