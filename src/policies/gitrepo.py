"""The site-config repo, through `git` itself: HEAD, cleanliness, pull, files at a commit, export.

Thin: every function runs one `git` command. Signatures and trust are `policies.trust`'s business.
`git` is run with a fixed environment (no pager, no prompt, C locale) so its output is parseable
and a command never waits for a password.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

from policies.errors import CellError

_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0"}


class GitError(CellError):
    """`git` failed on the site-config repo (not a repo, no commits, a pull that did not go)."""

    exit_code = 1


class NotARepo(GitError):
    exit_code = 2


def git(
    repo: str | Path,
    *args: str,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 60,
) -> subprocess.CompletedProcess[bytes]:
    """Run `git -C repo ARGS`; with `check`, a failure is a `GitError` carrying git's words."""
    full_env = {**os.environ, **_ENV, **(env or {})}
    try:
        r = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            env=full_env,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise GitError(f"{repo}: cannot run git {args[0] if args else ''}: {e}") from None
    if check and r.returncode != 0:
        said = r.stderr.decode(errors="replace").strip() or f"exit {r.returncode}"
        raise GitError(f"{repo}: git {' '.join(args[:2])} failed: {said}")
    return r


def head(repo: str | Path) -> str:
    """The full SHA of HEAD. `NotARepo` if `repo` is no Git work tree or has no commit yet."""
    if not Path(repo).is_dir():
        raise NotARepo(f"{repo}: no such directory (expected the site-config Git repo)")
    r = git(repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False)
    if r.returncode != 0:
        inside = git(repo, "rev-parse", "--is-inside-work-tree", check=False)
        if inside.returncode != 0:
            raise NotARepo(f"{repo}: not a Git repository (the site config must be one: git init)")
        raise NotARepo(f"{repo}: the repository has no commit yet (commit the policy, signed)")
    return r.stdout.decode().strip()


def dirty(repo: str | Path) -> list[str]:
    """`git status --porcelain` lines: modified, staged and untracked (not ignored) files."""
    out = git(repo, "status", "--porcelain=v1", "--untracked-files=all").stdout.decode()
    return [line for line in out.splitlines() if line.strip()]


def upstream(repo: str | Path) -> str | None:
    """The branch HEAD tracks (e.g. `origin/main`), or None when no remote is configured for it."""
    r = git(repo, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}", check=False)
    if r.returncode != 0:
        return None
    return r.stdout.decode().strip() or None


def pull(repo: str | Path) -> None:
    """Fast-forward to the upstream; a diverged history is an error, never a merge we make."""
    git(repo, "pull", "--ff-only", "--quiet", timeout=120)


def show(repo: str | Path, commit: str, path: str) -> bytes | None:
    """The bytes of `path` as it stands in `commit`, or None when the commit has no such file."""
    r = git(repo, "cat-file", "blob", f"{commit}:{path}", check=False)
    return r.stdout if r.returncode == 0 else None


def parents(repo: str | Path, commit: str) -> list[str]:
    return git(repo, "rev-list", "--parents", "-n", "1", commit).stdout.decode().split()[1:]


def between(repo: str | Path, base: str, tip: str) -> list[str]:
    """Commits reachable from `tip` but not from `base`, oldest first (parents before children)."""
    out = git(repo, "rev-list", "--reverse", "--topo-order", f"{base}..{tip}").stdout.decode()
    return out.split()


def is_ancestor(repo: str | Path, ancestor: str, commit: str) -> bool:
    return git(repo, "merge-base", "--is-ancestor", ancestor, commit, check=False).returncode == 0


def exists(repo: str | Path, commit: str) -> bool:
    r = git(repo, "cat-file", "-e", f"{commit}^{{commit}}", check=False)
    return r.returncode == 0


def subject(repo: str | Path, commit: str) -> str:
    return git(repo, "log", "-1", "--format=%s", commit).stdout.decode(errors="replace").strip()


def raw_commit(repo: str | Path, commit: str) -> bytes:
    """The commit object as git stores it (headers, signature, message)."""
    return git(repo, "cat-file", "commit", commit).stdout


def signature_headers(raw: bytes) -> list[str]:
    """The signature headers (`gpgsig`, `gpgsig-sha256`) a raw commit object carries, in order."""
    head = raw.split(b"\n\n", 1)[0].split(b"\n")
    return [ln.split(b" ", 1)[0].decode() for ln in head if ln.startswith(_SIG_HEADERS)]


_SIG_HEADERS = (b"gpgsig ", b"gpgsig-sha256 ")


def signature_block(raw: bytes) -> tuple[str | None, bytes]:
    """('ssh' | 'gpg' | 'x509' | None, the armored signature) from a raw commit object."""
    lines = raw.split(b"\n\n", 1)[0].split(b"\n")
    block: list[bytes] = []
    for i, line in enumerate(lines):
        if line.startswith(_SIG_HEADERS):
            block = [line.split(b" ", 1)[1]]
            block += [ln[1:] for ln in lines[i + 1 :] if ln.startswith(b" ")]
            break
    if not block:
        return None, b""
    text = b"\n".join(block)
    if b"BEGIN SSH SIGNATURE" in block[0]:
        return "ssh", text
    if b"BEGIN PGP SIGNATURE" in block[0]:
        return "gpg", text
    return "x509", text


def git_dir(repo: str | Path) -> Path:
    return Path(git(repo, "rev-parse", "--absolute-git-dir").stdout.decode().strip())


def export(repo: str | Path, commit: str, dest: Path) -> None:
    """Write the tree of `commit` (exactly what was signed, not the work tree) under `dest`."""
    data = git(repo, "archive", "--format=tar", commit, timeout=120).stdout
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
