"""Shared pieces of the `cell` command line: defaults, common flags, policy loading, output.

Each area registers its own subcommands (`cell.cli.apply`, `cell.cli.lab`, ...) with these, so
every command reads `--repo` and prints `--json` the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
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
        # O_NONBLOCK: opening a FIFO must not wait for a writer; one fstat on the open file.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise UsageError(f"{flag} {path}: not a regular file")
            data = fh.read(limit + 1)
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot read it ({e.strerror})") from None
    if len(data) > limit:
        raise UsageError(f"{flag} {path}: larger than {limit} bytes; is it the right file?")
    return data


@dataclass(frozen=True)
class Login:
    """An MQTT login and TLS files from the command line (`cell console`, `cell fleet`)."""

    user: str | None
    password: str | None
    cafile: str | None
    certfile: str | None
    keyfile: str | None


def add_login(sp: argparse.ArgumentParser, *, user: str, cafile: str) -> None:
    """`--user --password-file --cafile --certfile --keyfile`; `user`, `cafile`: their help."""
    sp.add_argument("--user", help=user)
    sp.add_argument("--password-file", help="file whose first line is that login's password")
    sp.add_argument("--cafile", help=cafile)
    sp.add_argument("--certfile", help="TLS: this client's certificate, if the broker wants one")
    sp.add_argument("--keyfile", help="TLS: its key (with --certfile)")


def read_login(args: argparse.Namespace, *, user_needs_password: bool) -> Login:
    """The login the flags give, checked now (a clear error, not a TLS or MQTT one later): the
    password file and every TLS file readable, --certfile with --keyfile, a password with a
    user (and, with `user_needs_password`, a user with a password)."""
    from cell.errors import UsageError

    if (args.certfile is None) != (args.keyfile is None):
        raise UsageError("--certfile and --keyfile go together (mutual TLS)")
    if args.password_file and not args.user:
        raise UsageError("--password-file needs --user")
    if user_needs_password and args.user and not args.password_file:
        raise UsageError(f"--user {args.user} needs --password-file (the login's password)")
    for flag in ("cafile", "certfile", "keyfile"):
        value = getattr(args, flag)
        if value:
            read_operator_file(value, f"--{flag}")
    password = read_password_file(args.password_file) if args.password_file else None
    return Login(args.user, password, args.cafile, args.certfile, args.keyfile)


def read_password_file(path: str) -> str:
    """`--password-file`: the file's first line, stripped (a trailing newline or a comment
    line after it is not part of the password)."""
    lines = read_operator_file(path, "--password-file").decode(errors="replace").splitlines()
    return lines[0].strip() if lines else ""


DIR_FLAGS = {"repo": "--repo", "state_dir": "--state-dir", "render": "--render"}
"""Flags that always name a directory (it may not exist yet: a command creates it)."""


def check_paths(args: argparse.Namespace) -> None:
    """Every path flag is what its command expects, or one UsageError line (issue 10, class 8):
    a directory flag names a directory (or nothing yet), `--out` what the command's
    `out_kind` says; a device, a FIFO or /dev/null is never either."""
    from cell.errors import UsageError

    wanted = {a: ("dir", f) for a, f in DIR_FLAGS.items()}
    wanted["out"] = (getattr(args, "out_kind", "dir"), "--out")
    from policies.layout import REPO_ENV, STATE_ENV

    env = {"repo": REPO_ENV, "state_dir": STATE_ENV}
    for attr, (kind, flag) in wanted.items():
        if not hasattr(args, attr):
            continue
        value, named = getattr(args, attr), flag
        if value is None and attr in env and os.environ.get(env[attr]):
            value, named = os.environ[env[attr]], f"${env[attr]}"
        if not value:
            continue
        problem = _path_problem(str(value), kind)
        if problem:
            raise UsageError(f"{named} {value}: {problem}")


def _path_problem(path: str, kind: str) -> str | None:
    import stat

    try:
        mode = Path(path).stat().st_mode
    except FileNotFoundError:
        return None  # made by the command (or reported by it, with its own words)
    except NotADirectoryError:
        return "a part of the path is a file, not a directory"
    except OSError as e:
        return f"cannot be examined ({e.strerror})"
    if kind == "dir" and not stat.S_ISDIR(mode):
        what = "a regular file" if stat.S_ISREG(mode) else "a device or special file"
        return f"is {what}, expected a directory"
    if kind == "file" and not stat.S_ISREG(mode):
        what = "a directory" if stat.S_ISDIR(mode) else "a device or special file"
        return f"is {what}, expected a regular file (or a new name)"
    return None
