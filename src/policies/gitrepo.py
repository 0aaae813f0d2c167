"""The site-config repo, through `git` itself, run so that nothing in a repo or the environment
steers it: commits, trees and blobs object by object, never through an export that filters.

Thin: every function runs one `git` command. Signatures are `policies.sigcheck`'s business (the
Cell's own `ssh-keygen`/`gpg`, never git's configured signing programs), trust `policies.trust`'s.

`git` runs hermetically (issue 10, class 1): an environment built from nothing (no `GIT_DIR`,
`GIT_CONFIG_*` or `HOME` of the caller; no system or global config; no replace objects, grafts or
system attributes) and `-c` overrides for every setting a repository's own config could use to run
a program or change what is read (`core.fsmonitor`, hooks, `core.sshCommand`, protocols, ...).
The repository's config is still read by git, so the Cell reads trust only from a bare mirror it
owns (`policies.gitmirror`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from policies.errors import CellError

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OVERRIDES = (
    "core.fsmonitor=false",
    "core.hooksPath=/dev/null",
    "core.sshCommand=ssh",
    "core.pager=cat",
    "core.attributesFile=/dev/null",
    "core.excludesFile=/dev/null",
    "core.useReplaceRefs=false",
    "core.untrackedCache=false",
    "core.splitIndex=false",
    "core.sparseCheckout=false",
    "core.symlinks=false",
    "core.protectNTFS=true",
    "core.protectHFS=true",
    "credential.helper=",
    "protocol.allow=never",
    "protocol.file.allow=always",
    "protocol.ssh.allow=always",
    "protocol.https.allow=always",
    "protocol.http.allow=always",
    "protocol.git.allow=always",
    "fetch.fsckObjects=true",
    "transfer.fsckObjects=true",
    "core.commitGraph=false",
    "log.showSignature=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "safe.directory=*",
)
"""`-c` settings for every git the Cell runs: command-line config wins over the repository's."""

_home: list[str] = []


def _empty_home() -> str:
    if not _home:
        home = tempfile.mkdtemp(prefix="cell-git-home-")
        atexit.register(shutil.rmtree, home, True)
        _home.append(home)
    return _home[0]


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every git (and signature program) the Cell runs: built from nothing."""
    home = _empty_home()
    env = {
        "PATH": PATH,
        "HOME": home,
        "XDG_CONFIG_HOME": f"{home}/.config",
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_GRAFT_FILE": "/dev/null",
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_PAGER": "cat",
        "GIT_OPTIONAL_LOCKS": "0",
        "GIT_PROTOCOL_FROM_USER": "0",
    }
    if "SSH_AUTH_SOCK" in os.environ:  # an upstream fetch over ssh may use the Cell's agent
        env["SSH_AUTH_SOCK"] = os.environ["SSH_AUTH_SOCK"]
    return {**env, **(extra or {})}


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
    data: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run `git -C repo ARGS` hermetically; with `check`, a failure is a `GitError` with git's words."""
    overrides = [a for o in OVERRIDES for a in ("-c", o)]
    try:
        r = subprocess.run(
            ["git", *overrides, "-C", str(repo), *args],
            capture_output=True,
            env=environment(env),
            timeout=timeout,
            input=data,
            stdin=None if data is not None else subprocess.DEVNULL,
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


def show(repo: str | Path, commit: str, path: str) -> bytes | None:
    """The bytes of `path` as it stands in `commit`, or None when the commit has no such file."""
    r = git(repo, "cat-file", "blob", f"{commit}:{path}", check=False)
    return r.stdout if r.returncode == 0 else None


def parents(repo: str | Path, commit: str) -> list[str]:
    """The parents a commit object names (read from the object: no graft or commit-graph)."""
    head = raw_commit(repo, commit).split(b"\n\n", 1)[0]
    return [ln[7:].decode() for ln in head.split(b"\n") if ln.startswith(b"parent ")]


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
    """The first paragraph of the message, on one line (git's %s), read from the object."""
    return subject_of(raw_commit(repo, commit))


def subject_of(raw: bytes) -> str:
    parts = raw.split(b"\n\n", 1)
    text = parts[1].decode(errors="replace") if len(parts) > 1 else ""
    return " ".join(text.strip().split("\n\n", 1)[0].split()) if text.strip() else ""


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
            for ln in lines[i + 1 :]:
                if not ln.startswith(b" "):
                    break
                block.append(ln[1:])
            break
    if not block:
        return None, b""
    text = b"\n".join(block) + b"\n"
    if b"BEGIN SSH SIGNATURE" in block[0]:
        return "ssh", text
    if b"BEGIN PGP SIGNATURE" in block[0]:
        return "gpg", text
    return "x509", text


def payload(raw: bytes) -> bytes:
    """What was signed: the commit object without its signature headers (as git strips them)."""
    head, sep, body = raw.partition(b"\n\n")
    kept: list[bytes] = []
    inside = False
    for line in head.split(b"\n"):
        if line.startswith(_SIG_HEADERS):
            inside = True
            continue
        if inside and line.startswith(b" "):
            continue
        inside = False
        kept.append(line)
    return b"\n".join(kept) + sep + body


def git_dir(repo: str | Path) -> Path:
    return Path(git(repo, "rev-parse", "--absolute-git-dir").stdout.decode().strip())


FILE_MODES = {"100644": 0o644, "100755": 0o755}
_BAD_NAMES = {"", ".", "..", ".git"}


def tree(repo: str | Path, commit: str) -> list[tuple[str, str, str, str]]:
    """(mode, type, object, path) of every entry of `commit`'s tree, recursively, as stored."""
    out = git(repo, "ls-tree", "-r", "-z", "--full-tree", f"{commit}^{{tree}}").stdout
    entries = []
    for rec in out.split(b"\0"):
        if rec:
            meta, _, path = rec.partition(b"\t")
            mode, kind, obj = meta.decode().split(" ")
            entries.append((mode, kind, obj, path.decode("utf-8", errors="surrogateescape")))
    return entries


def unsafe_entries(repo: str | Path, commit: str) -> list[str]:
    """Entries a policy tree must not hold: symlinks, submodules, odd modes or names."""
    bad = []
    for mode, _, _, path in tree(repo, commit):
        parts = path.split("/")
        if mode == "120000":
            bad.append(f"{path!r} is a symbolic link")
        elif mode == "160000":
            bad.append(f"{path!r} is a submodule (gitlink)")
        elif mode not in FILE_MODES:
            bad.append(f"{path!r} has mode {mode} (expected a plain file, 100644 or 100755)")
        elif any(p in _BAD_NAMES or p.lower() == ".git" for p in parts):
            bad.append(f"{path!r} has a path component git itself refuses")
        elif not path.isprintable():
            bad.append(f"{path!r} has a name with control or undecodable characters")
    return bad


def export(repo: str | Path, commit: str, dest: Path) -> None:
    """Write the tree of `commit` (exactly the signed blobs, no filter or attribute) under `dest`.

    Object by object: `ls-tree`, then `cat-file --batch`; a tree `unsafe_entries` names is an error.
    """
    bad = unsafe_entries(repo, commit)
    if bad:
        raise GitError(f"commit {commit[:12]}: refused tree: {'; '.join(bad)}")
    entries = tree(repo, commit)
    wanted = b"".join(f"{obj}\n".encode() for _, _, obj, _ in entries)
    out = git(repo, "cat-file", "--batch", data=wanted, timeout=120).stdout
    pos = 0
    dest.mkdir(parents=True, exist_ok=True)
    for mode, _, obj, path in entries:
        nl = out.index(b"\n", pos)
        got, kind, size = out[pos:nl].decode().split(" ")
        if got != obj or kind != "blob":
            raise GitError(f"commit {commit[:12]}: {path}: object {obj[:12]} is not a blob")
        body = out[nl + 1 : nl + 1 + int(size)]
        pos = nl + 1 + int(size) + 1
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
        target.chmod(FILE_MODES[mode])
