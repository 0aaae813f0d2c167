"""The Cell's own bare mirror of the site-config repo (STATE/git/site-config.git): the only
repository trust is read from (issue 10, class 1).

The operator's clone is a place to fetch from, never to read from: its `.git` (config, hooks,
replace refs, grafts, alternates, attributes, even its object files) is writable by whoever can
write the clone. A fetch into a repository the Cell owns re-hashes every object it receives
(`index-pack`, with `fsckObjects`), takes only the refs named here (no `refs/replace/`), and runs
with `policies.gitrepo`'s hermetic environment and overrides. The Cell never writes the clone: a
pull is a fetch of the clone's upstream into the mirror, fast-forward only.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from policies import gitrepo
from policies.trust import TrustRefused

CLONE_REF = "refs/cell/clone"
UPSTREAM_REF = "refs/cell/upstream"
_FOREIGN = (
    "objects/info/alternates",
    "objects/info/http-alternates",
    "objects/info/commit-graph",
    "info/grafts",
    "shallow",
)
"""Files no fetch of ours makes: whatever put them there, the mirror does not keep them."""
_UPLOAD_PACK = "git --no-replace-objects -c 'safe.directory=*' upload-pack"
"""upload-pack for a fetch from a path: git clears our -c settings for a local transport, and the
clone may belong to an operator rather than to root."""
_FETCH = ("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules")


@dataclass(frozen=True)
class Synced:
    """What the mirror holds after a sync: the commit to judge, and where it came from."""

    head: str
    clone: str
    upstream: str | None = None


def ensure(mirror: Path) -> None:
    """Create the bare mirror if need be; drop what no fetch of ours would have made."""
    if not (mirror / "HEAD").is_file():
        mirror.mkdir(parents=True, exist_ok=True)
        gitrepo.git(mirror, "init", "--bare", "--quiet", str(mirror))
    for rel in _FOREIGN:
        (mirror / rel).unlink(missing_ok=True)


def sync(mirror: Path, clone: str | Path, *, pull: bool = True, clean: bool = False) -> Synced:
    """Fetch the clone's HEAD (and with `pull`, its upstream) into the mirror; the commit that a
    fast-forward-only pull would leave at HEAD. Without `pull`, the upstream last fetched.
    With `clean`, a dirty work tree is refused before any upstream is fetched."""
    gitrepo.head(clone)  # NotARepo, with its words, before anything else
    ensure(mirror)
    local = _fetch_clone(mirror, clone)
    if clean:
        refuse_dirty(mirror, clone, local)
    found = upstream_of(clone)
    up = None
    if found and pull:
        url, ref = found
        local_path = url.startswith(("/", "file://"))
        pack = [f"--upload-pack={_UPLOAD_PACK}"] if local_path else []
        r = gitrepo.git(
            mirror, *_FETCH, *pack, "--", url, f"+{ref}:{UPSTREAM_REF}", check=False, timeout=120
        )
        if r.returncode != 0:
            said = r.stderr.decode(errors="replace").strip().splitlines()
            raise gitrepo.GitError(
                f"{clone}: cannot pull {ref} from its upstream {url}: "
                f"{said[0] if said else f'git fetch exit {r.returncode}'}"
            )
        up = rev(mirror, UPSTREAM_REF)
    elif found:
        up = rev(mirror, UPSTREAM_REF)
    return Synced(_ff(mirror, clone, local, up), local, up)


def _fetch_clone(mirror: Path, clone: str | Path) -> str:
    source = str(Path(clone).resolve())
    r = gitrepo.git(
        mirror,
        *_FETCH,
        f"--upload-pack={_UPLOAD_PACK}",
        "--",
        source,
        f"+HEAD:{CLONE_REF}",
        check=False,
        timeout=120,
    )
    if r.returncode != 0:
        said = r.stderr.decode(errors="replace").strip().splitlines()
        first = next((ln for ln in said if ln.startswith(("fatal:", "error:"))), "")
        raise TrustRefused(
            "bad-objects",
            f"{clone}: the clone's objects cannot be fetched into the Cell's mirror "
            f"({first or (said[-1] if said else 'git fetch failed')}): objects that do not "
            "hash to their names, or a broken repository; re-clone it from the operators' remote",
        )
    found = rev(mirror, CLONE_REF)
    assert found is not None
    return found


def _ff(mirror: Path, clone: str | Path, local: str, up: str | None) -> str:
    if up is None or up == local or gitrepo.is_ancestor(mirror, up, local):
        return local
    if gitrepo.is_ancestor(mirror, local, up):
        return up
    raise gitrepo.GitError(
        f"{clone}: cannot pull: HEAD {local[:12]} and its upstream {up[:12]} have diverged; the "
        "Cell never merges: push the clone's commits or reset it to the upstream"
    )


def rev(mirror: Path, ref: str) -> str | None:
    r = gitrepo.git(mirror, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    return r.stdout.decode().strip() or None if r.returncode == 0 else None


def upstream_of(clone: str | Path) -> tuple[str, str] | None:
    """(url, ref) of the branch the clone's HEAD tracks; None without one. Read as data only."""

    def get(key: str) -> str | None:
        r = gitrepo.git(clone, "config", "--get", key, check=False)
        return r.stdout.decode(errors="replace").strip() or None if r.returncode == 0 else None

    r = gitrepo.git(clone, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    branch = r.stdout.decode(errors="replace").strip()
    if r.returncode != 0 or not branch:
        return None
    remote, ref = get(f"branch.{branch}.remote"), get(f"branch.{branch}.merge")
    if not remote or not ref or remote == ".":
        return None
    url = get(f"remote.{remote}.url") or remote
    if "://" not in url and not url.startswith("/") and ":" not in url.split("/", 1)[0]:
        url = str((Path(clone) / url).resolve())  # a path relative to the clone
    return url, ref


def dirty(mirror: Path, clone: str | Path, commit: str) -> list[str]:
    """`git status` lines of the clone's work tree against `commit`, judged with the mirror's
    config and a private index: no filter, fsmonitor or hook of the clone's runs."""
    with tempfile.TemporaryDirectory(prefix="cell-status-") as tmp:
        env = {"GIT_INDEX_FILE": f"{tmp}/index"}
        where = [
            "-c",
            "core.bare=false",
            f"--git-dir={mirror}",
            f"--work-tree={Path(clone).resolve()}",
        ]
        gitrepo.git(tmp, *where, "read-tree", commit, env=env)
        gitrepo.git(tmp, *where, "update-index", "-q", "--refresh", env=env, check=False)
        changed = gitrepo.git(
            tmp, *where, "diff-index", "--name-status", "--no-renames", commit, env=env
        )
        new = gitrepo.git(tmp, *where, "ls-files", "--others", "--exclude-standard", env=env)
        out = changed.stdout.decode(errors="replace").replace("\t", " ")
        out += "".join(f"?? {n}\n" for n in new.stdout.decode(errors="replace").splitlines())
    return [line for line in out.splitlines() if line.strip()]


def refuse_dirty(mirror: Path, clone: str | Path, commit: str) -> None:
    """A Cell applies commits, never files a person has not committed (and signed)."""
    changes = dirty(mirror, clone, commit)
    if changes:
        shown = ", ".join(c.strip() for c in changes[:5]) + (" ..." if len(changes) > 5 else "")
        subject = gitrepo.subject(mirror, commit)
        raise TrustRefused(
            "dirty",
            f'commit {commit[:12]} "{subject[:60]}": the working tree of {clone} is dirty '
            f"({shown}): commit the change (signed) or discard it; the Cell applies commits, "
            "never uncommitted files",
            commit=commit,
            subject=subject,
        )
