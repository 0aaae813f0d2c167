"""Apply and read back Cell's nftables table through libnftables' JSON API. Thin: touches the kernel.

One document, one transaction (firewalld's way): the rendered document deletes and re-adds only
`table inet cell`, so either all of it is in force or, on any error, the old table stays exactly
as it was; other tables are never named. A dry-run pass (`nft --check`) comes first.

Hub sets filled at run time by dnsmasq (`nftset=`) would be emptied by the replace; their current
elements are carried into the same transaction so the bridge does not lose its route to the hub.

Everything runs in a child process that entered the target namespace (`firewall.netns.with_ns`),
because libnftables' netlink socket binds to the namespace of the thread that opens it.
"""

from __future__ import annotations

import ctypes
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

import nftables

from firewall import netns as ns
from policies.errors import CellError

FAMILY, TABLE = "inet", "cell"
DYNAMIC_SETS = re.compile(r"hub_bridge|hub_mgmt_\d+")
T = TypeVar("T")


class FirewallError(CellError):
    """nftables refused a check or an apply. `part` is the offending piece of the document."""

    exit_code = 1

    def __init__(self, message: str, part: Any = None) -> None:
        self.part = part
        shown = f"\n  offending part: {json.dumps(part)[:600]}" if part is not None else ""
        super().__init__(f"{message}{shown}")


class _Nft(nftables.Nftables):  # type: ignore[misc]
    """libnftables with dry-run, which the pip-nftables copy of the binding does not expose."""

    def __init__(self) -> None:
        super().__init__()
        self.set_json_output(True)
        self.set_handle_output(True)

    def set_dry_run(self, on: bool) -> None:
        lib = ctypes.CDLL("libnftables.so.1")
        fn = lib.nft_ctx_set_dry_run
        fn.argtypes = [ctypes.c_void_p, ctypes.c_bool]
        fn(self._Nftables__ctx, on)


def _in(netns: str | None, fn: Callable[[], T]) -> T:
    return fn() if netns is None else ns.with_ns(netns, fn)


def _run(doc: dict[str, Any], *, dry: bool) -> tuple[int, str]:
    nft = _Nft()
    nft.set_dry_run(dry)
    rc, _, err = nft.json_cmd(doc)
    return int(rc), str(err)


def _locate(doc: dict[str, Any]) -> Any:
    """The first command of the document that nftables refuses, found by dry-running prefixes.

    libnftables' JSON errors say what is wrong but not where; every prefix of our document is
    itself a valid transaction, so a binary search over prefixes finds the culprit in a few
    dry runs. Runs in the namespace of the failed call.
    """
    cmds = doc.get("nftables", [])
    lo, hi = 1, len(cmds)
    if _run({"nftables": cmds}, dry=True)[0] == 0:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if _run({"nftables": cmds[: mid + 1]}, dry=True)[0] == 0:
            lo = mid + 1
        else:
            hi = mid
    return cmds[lo]


def check(document: bytes | dict[str, Any], netns: str | None = None) -> None:
    """Dry-run the document in the namespace; raises `FirewallError` if nftables refuses it."""
    doc = json.loads(document) if isinstance(document, bytes) else document

    def go() -> tuple[int, str, Any]:
        rc, err = _run(doc, dry=True)
        return rc, err, _locate(doc) if rc != 0 else None

    rc, err, part = _in(netns, go)
    if rc != 0:
        raise FirewallError(f"nftables check failed: {err.strip() or 'rc ' + str(rc)}", part)


def apply(document: bytes | dict[str, Any], netns: str | None = None) -> None:
    """Check, then replace `table inet cell` in one transaction, keeping resolver-filled sets."""
    doc = json.loads(document) if isinstance(document, bytes) else document

    def go() -> tuple[str, int, str, Any]:
        full = _with_dynamic_elements(doc, _dynamic_elements())
        rc, err = _run(full, dry=True)
        if rc != 0:
            return "check", rc, err, _locate(full)
        rc, err = _run(full, dry=False)
        return "apply", rc, err, _locate(full) if rc != 0 else None

    stage, rc, err, part = _in(netns, go)
    if rc != 0:
        raise FirewallError(
            f"nftables {stage} failed, the previous ruleset stays in force: {err.strip()}",
            part,
        )


def _dynamic_elements() -> dict[str, list[Any]]:
    nft = _Nft()
    rc, out, _ = nft.json_cmd(
        {"nftables": [{"list": {"table": {"family": FAMILY, "name": TABLE}}}]}
    )
    if rc != 0 or not isinstance(out, dict):
        return {}
    found: dict[str, list[Any]] = {}
    for item in out.get("nftables", []):
        s = item.get("set")
        if s and DYNAMIC_SETS.fullmatch(s["name"]) and s.get("elem"):
            found[s["name"]] = s["elem"]
    return found


def _with_dynamic_elements(doc: dict[str, Any], elements: dict[str, list[Any]]) -> dict[str, Any]:
    """Carry resolver-filled elements only into sets the new document leaves empty (a hub by
    hostname): a set that now holds the policy's literal address must hold exactly that."""
    names = {
        c["add"]["set"]["name"]
        for c in doc["nftables"]
        if "set" in c.get("add", {}) and not c["add"]["set"].get("elem")
    }
    extra = [
        {"add": {"element": {"family": FAMILY, "table": TABLE, "name": n, "elem": e}}}
        for n, e in sorted(elements.items())
        if n in names
    ]
    return {"nftables": [*doc["nftables"], *extra]}


def read_table(netns: str | None = None) -> list[dict[str, Any]] | None:
    """The live `table inet cell` as libnftables JSON objects (None if the table is absent)."""

    def go() -> tuple[int, Any]:
        rc, out, _ = _Nft().json_cmd(
            {"nftables": [{"list": {"table": {"family": FAMILY, "name": TABLE}}}]}
        )
        return int(rc), out

    rc, out = _in(netns, go)
    if rc != 0 or not isinstance(out, dict):
        return None
    return [o for o in out.get("nftables", []) if "metainfo" not in o]


def canonical(objects: list[dict[str, Any]] | None) -> bytes:
    """A listing in comparable form: no handles, no counter values, no resolver-filled elements.

    Two tables with the same canonical bytes enforce the same policy; `live == applied` is a
    plain comparison of these bytes.
    """
    if objects is None:
        return b"null\n"
    out = []
    for obj in objects:
        ((kind, body),) = obj.items()
        body = {k: v for k, v in body.items() if k != "handle"}
        if kind == "counter":
            body.pop("packets", None)
            body.pop("bytes", None)
        if kind == "set" and DYNAMIC_SETS.fullmatch(body.get("name", "")):
            body.pop("elem", None)
        if kind == "rule":
            body["expr"] = [_zero_counters(e) for e in body.get("expr", [])]
        out.append({kind: body})
    return (json.dumps(out, indent=1, sort_keys=True) + "\n").encode()


def _zero_counters(expr: Any) -> Any:
    if isinstance(expr, dict) and "counter" in expr and isinstance(expr["counter"], dict):
        c = dict(expr["counter"])
        if "packets" in c:
            c["packets"] = c["bytes"] = 0
        return {"counter": c}
    return expr


def read_counters(netns: str | None = None) -> dict[str, int]:
    """Packets seen by each named counter of Cell's table."""
    return {
        o["counter"]["name"]: int(o["counter"].get("packets", 0))
        for o in read_table(netns) or []
        if "counter" in o
    }


def expected_canonical(document: bytes | dict[str, Any]) -> bytes:
    """The canonical form the kernel gives for a rendered document, by loading it in a scratch
    namespace. This is what read-back of a correctly applied ruleset must equal."""
    with ns.scratch("cell-c") as scratch:
        apply(document, scratch)
        return canonical(read_table(scratch))


def delete_table(netns: str | None = None) -> None:
    """Remove Cell's table (used by tests and `lab down`); absent is fine."""

    def go() -> int:
        rc, _, _ = _Nft().json_cmd(
            {"nftables": [{"delete": {"table": {"family": FAMILY, "name": TABLE}}}]}
        )
        return int(rc)

    _in(netns, go)


def objects_of(document: bytes | dict[str, Any]) -> list[dict[str, Any]]:
    """The objects a rendered document adds after replacing the table: what `read_table` must
    list back once it is applied (compare with `canonical`)."""
    doc = json.loads(document) if isinstance(document, bytes) else document
    cmds = doc["nftables"]
    start = max((i for i, c in enumerate(cmds) if "delete" in c), default=-1) + 1
    return [c["add"] for c in cmds[start:] if "add" in c]


def restore_document(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """A document that puts a table back exactly as `read_table` listed it: the same objects in the
    same order, counter values and set elements included. Handles are the kernel's to give."""
    table = {"table": {"family": FAMILY, "name": TABLE}}
    body = [
        {"add": {kind: {k: v for k, v in fields.items() if k != "handle"}}}
        for obj in objects
        for kind, fields in obj.items()
    ]
    return {"nftables": [{"add": table}, {"delete": table}, *body]}


def read_table_text(netns: str | None = None) -> str | None:
    """The live table as nft itself prints it (stateless, with `# handle N` after each rule):
    the printer of last resort for rules written by hand in syntax our printer does not know."""

    def go() -> tuple[int, str]:
        nft = nftables.Nftables()
        nft.set_handle_output(True)
        nft.set_stateless_output(True)
        rc, out, _ = nft.cmd(f"list table {FAMILY} {TABLE}")
        return int(rc), str(out)

    rc, out = _in(netns, go)
    return out if rc == 0 else None


def other_tables(netns: str | None = None) -> dict[str, str]:
    """Every table in the namespace except Cell's, as `family name` -> its listing in nft syntax.

    Cell never touches them, but any of them could accept or forward what Cell's table drops
    (a netdev ingress `fwd`, an `ip` table with a hook of its own), so the drift watcher shows them.
    """

    def go() -> dict[str, str]:
        nft = nftables.Nftables()
        nft.set_json_output(True)
        rc, out, _ = nft.cmd("list tables")
        if rc != 0:
            return {}
        found: dict[str, str] = {}
        for item in json.loads(out or "{}").get("nftables", []):
            t = item.get("table")
            if not t or (t["family"], t["name"]) == (FAMILY, TABLE):
                continue
            text = nftables.Nftables()
            text.set_stateless_output(True)
            _, listing, _ = text.cmd(f"list table {t['family']} {t['name']}")
            found[f"{t['family']} {t['name']}"] = str(listing)
        return found

    return _in(netns, go)
