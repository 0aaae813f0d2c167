"""Pure work on libnftables JSON documents: Cell's table as objects, in comparable form, and back.

No kernel here: `firewall.nft` applies and lists, these functions say what a document adds, what
two listings have in common, and how to put a listed table back exactly.
"""

from __future__ import annotations

import json
import re
from typing import Any

FAMILY, TABLE = "inet", "cell"
DYNAMIC_SETS = re.compile(r"hub_bridge|hub_mgmt_\d+")
"""Sets that dnsmasq fills at run time (`nftset=`): their elements are not the policy's."""

Json = dict[str, Any]
Document = bytes | Json
"""A ruleset document: rendered bytes (nftables/ruleset.json) or the parsed `{"nftables": [...]}`."""


def as_dict(document: Document) -> Json:
    parsed = json.loads(document) if isinstance(document, bytes) else document
    if not isinstance(parsed, dict) or not isinstance(parsed.get("nftables"), list):
        raise ValueError('an nftables document is an object {"nftables": [commands]}')
    return parsed


def objects_of(document: Document) -> list[Json]:
    """The objects a rendered document adds after replacing the table: what a listing must give
    back once it is applied (compare with `canonical`)."""
    cmds = as_dict(document)["nftables"]
    start = max((i for i, c in enumerate(cmds) if "delete" in c), default=-1) + 1
    return [c["add"] for c in cmds[start:] if "add" in c]


def canonical(objects: list[Json] | None) -> bytes:
    """A listing in comparable form: no handles, no counter values, no resolver-filled elements.

    Two tables with the same canonical bytes enforce the same policy; `live == applied` is a
    plain comparison of these bytes.
    """
    if objects is None:
        return b"null\n"
    return (json.dumps(canonical_objects(objects), indent=1, sort_keys=True) + "\n").encode()


def canonical_objects(objects: list[Json]) -> list[Json]:
    """The objects of `canonical`, before they are serialised."""
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
    return out


def _zero_counters(expr: Any) -> Any:
    if isinstance(expr, dict) and "counter" in expr and isinstance(expr["counter"], dict):
        c = dict(expr["counter"])
        if "packets" in c:
            c["packets"] = c["bytes"] = 0
        return {"counter": c}
    return expr


def restore_document(objects: list[Json]) -> Json:
    """A document that puts a table back exactly as it was listed: the same objects in the same
    order, counter values and set elements included. Handles are the kernel's to give."""
    table = {"table": {"family": FAMILY, "name": TABLE}}
    body = [
        {"add": {kind: {k: v for k, v in fields.items() if k != "handle"}}}
        for obj in objects
        for kind, fields in obj.items()
    ]
    return {"nftables": [{"add": table}, {"delete": table}, *body]}


def dynamic_elements(listing: list[Json] | None) -> dict[str, list[Any]]:
    """The resolver-filled elements of a listed table, by set name."""
    found: dict[str, list[Any]] = {}
    for item in listing or []:
        s = item.get("set")
        if s and DYNAMIC_SETS.fullmatch(s["name"]) and s.get("elem"):
            found[s["name"]] = s["elem"]
    return found


def with_dynamic_elements(doc: Json, elements: dict[str, list[Any]]) -> Json:
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


def counters_of(listing: list[Json] | None) -> dict[str, int]:
    """Packets seen by each named counter of a listed table."""
    return {
        o["counter"]["name"]: int(o["counter"].get("packets", 0))
        for o in listing or []
        if "counter" in o
    }
