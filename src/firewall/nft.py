"""The nftables seam: one backend object per namespace, `Nft(netns)`. Thin: touches the kernel.

One document, one transaction (firewalld's way): the rendered document deletes and re-adds only
`table inet cell`, so either all of it is in force or, on any error, the old table stays exactly
as it was; other tables are never named. A dry run (`nft --check`) comes first, and when
nftables refuses a document, a bisection over its prefixes names the offending command.

Hub sets filled at run time by dnsmasq (`nftset=`) would be emptied by the replace; their current
elements are carried into the same transaction so the bridge does not lose its route to the hub.

`backend(netns)` gives the one `Nft` of a namespace (None: this host). Its work runs on that
namespace's own threads (`firewall.netns`), each with its own libnftables context, because the
netlink socket binds to the namespace of the thread that opens it. Code that takes an
`NftBackend` runs just as well on `firewall.fake.FakeNft`, without root.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from firewall import netns as ns
from firewall.document import (
    DYNAMIC_SETS,
    FAMILY,
    TABLE,
    Document,
    Json,
    as_dict,
    canonical,
    counters_of,
    dynamic_elements,
    objects_of,
    restore_document,
    with_dynamic_elements,
)
from firewall.libnft import HANDLE, JSON, STATELESS, Context
from policies.errors import CellError

T = TypeVar("T")
_TABLE_CMD = {"table": {"family": FAMILY, "name": TABLE}}


class FirewallError(CellError):
    """nftables refused a check or an apply. `part` is the offending piece of the document."""

    exit_code = 1

    def __init__(self, message: str, part: Any = None) -> None:
        self.part = part
        shown = f"\n  offending part: {json.dumps(part)[:600]}" if part is not None else ""
        super().__init__(f"{message}{shown}")


class NftBackend(Protocol):
    """What Cell asks of nftables in one namespace. `Nft` is the kernel; `FakeNft` is memory."""

    netns: str | None

    def check(self, document: Document) -> None:
        """Dry-run the document; raises `FirewallError` (naming the offending part) if refused."""
        ...

    def apply(self, document: Document) -> None:
        """Check, then replace `table inet cell` in one transaction (resolver-filled sets kept)."""
        ...

    def list_table(self) -> list[Json] | None:
        """The live `table inet cell` as libnftables JSON objects (None if it is absent)."""
        ...

    def list_text(self) -> str | None:
        """The live table as nft prints it (stateless, `# handle N` after each rule)."""
        ...

    def other_tables(self) -> dict[str, str]:
        """Every other table, as `family name` -> its listing in nft syntax."""
        ...

    def read_counters(self) -> dict[str, int]:
        """Packets seen by each named counter of Cell's table."""
        ...

    def delete_table(self) -> None:
        """Remove Cell's table; absent is fine."""
        ...


def _parse(document: Document) -> Json:
    try:
        return as_dict(document)
    except ValueError as e:
        raise FirewallError(f"not an nftables document: {e}") from None


class Nft:
    """libnftables in one network namespace (None: this host)."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"Nft({self.netns!r})"

    def _ctx(self) -> Context:
        """This thread's context: libnftables contexts are not thread-safe."""
        ctx: Context | None = getattr(self._local, "ctx", None)
        if ctx is None:
            ctx = self._local.ctx = Context()
        return ctx

    def _in(self, fn: Callable[[], T]) -> T:
        return ns.call(self.netns, fn)

    def _dry(self, cmds: list[Json]) -> int:
        return self._ctx().json({"nftables": cmds}, dry=True)[0]

    def _locate(self, doc: Json) -> Any:
        """The first command of the document that nftables refuses, found by dry-running prefixes.

        libnftables' JSON errors say what is wrong but not where; every prefix of our document is
        itself a valid transaction, so a binary search over prefixes finds the culprit in a few
        dry runs. Runs on the namespace's thread, like the failed call.
        """
        cmds = doc.get("nftables", [])
        if not cmds or self._dry(cmds) == 0:
            return None
        lo, hi = 1, len(cmds)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._dry(cmds[: mid + 1]) == 0:
                lo = mid + 1
            else:
                hi = mid
        return cmds[min(lo, len(cmds) - 1)]

    def check(self, document: Document) -> None:
        doc = _parse(document)

        def go() -> tuple[int, str, Any]:
            rc, _, err = self._ctx().json(doc, dry=True)
            return rc, err, self._locate(doc) if rc != 0 else None

        rc, err, part = self._in(go)
        if rc != 0:
            raise FirewallError(f"nftables check failed: {err.strip() or 'rc ' + str(rc)}", part)

    def apply(self, document: Document) -> None:
        doc = _parse(document)

        def go() -> tuple[str, int, str, Any]:
            full = with_dynamic_elements(doc, dynamic_elements(self._list()))
            rc, _, err = self._ctx().json(full, dry=True)
            if rc != 0:
                return "check", rc, err, self._locate(full)
            rc, _, err = self._ctx().json(full)
            return "apply", rc, err, self._locate(full) if rc != 0 else None

        stage, rc, err, part = self._in(go)
        if rc != 0:
            raise FirewallError(
                f"nftables {stage} failed, the previous ruleset stays in force: {err.strip()}",
                part,
            )

    def _list(self) -> list[Json] | None:
        rc, out, _ = self._ctx().json({"nftables": [{"list": _TABLE_CMD}]})
        if rc != 0 or not isinstance(out, dict):
            return None
        return [o for o in out.get("nftables", []) if "metainfo" not in o]

    def list_table(self) -> list[Json] | None:
        return self._in(self._list)

    def list_text(self) -> str | None:
        """The printer of last resort for rules written by hand in syntax our printer does not
        know."""

        def go() -> tuple[int, str]:
            rc, out, _ = self._ctx().run(f"list table {FAMILY} {TABLE}", flags=HANDLE | STATELESS)
            return rc, out

        rc, out = self._in(go)
        return out if rc == 0 else None

    def other_tables(self) -> dict[str, str]:
        """Cell never touches them, but any of them could accept or forward what Cell's table
        drops (a netdev ingress `fwd`, an `ip` table with a hook of its own), so drift shows them.
        """

        def go() -> dict[str, str]:
            rc, out, _ = self._ctx().run("list tables", flags=JSON)
            if rc != 0:
                return {}
            found: dict[str, str] = {}
            for item in json.loads(out or "{}").get("nftables", []):
                t = item.get("table")
                if not t or (t["family"], t["name"]) == (FAMILY, TABLE):
                    continue
                cmd = f"list table {t['family']} {t['name']}"
                found[f"{t['family']} {t['name']}"] = self._ctx().run(cmd, flags=STATELESS)[1]
            return found

        return self._in(go)

    def read_counters(self) -> dict[str, int]:
        return counters_of(self.list_table())

    def delete_table(self) -> None:
        self._in(lambda: self._ctx().json({"nftables": [{"delete": _TABLE_CMD}]}))


def _conforms(nft: Nft) -> NftBackend:
    return nft  # mypy checks that Nft honours the protocol


_backends: dict[str | None, Nft] = {}
_lock = threading.Lock()


def backend(netns: str | None = None) -> Nft:
    """The one `Nft` of a namespace (None: this host), made on first use and reused."""
    with _lock:
        found = _backends.get(netns)
        if found is None:
            found = _backends[netns] = Nft(netns)
        return found


# One-line conveniences for tests, benches and scripts that name a namespace.


def check(document: Document, netns: str | None = None) -> None:
    backend(netns).check(document)


def apply(document: Document, netns: str | None = None) -> None:
    backend(netns).apply(document)


def read_table(netns: str | None = None) -> list[Json] | None:
    return backend(netns).list_table()


def read_table_text(netns: str | None = None) -> str | None:
    return backend(netns).list_text()


def other_tables(netns: str | None = None) -> dict[str, str]:
    return backend(netns).other_tables()


def read_counters(netns: str | None = None) -> dict[str, int]:
    return backend(netns).read_counters()


def delete_table(netns: str | None = None) -> None:
    backend(netns).delete_table()


__all__ = [
    "DYNAMIC_SETS",
    "FAMILY",
    "TABLE",
    "FirewallError",
    "Nft",
    "NftBackend",
    "backend",
    "canonical",
    "objects_of",
    "restore_document",
]
