"""Builders of libnftables JSON objects and expressions (libnftables-json(5)) for table `inet cell`.

Pure and small: the compiler's modules (`compile`, `antispoof`, `ctpairs`, `nat`, `counters`)
build every rule from these, so each object has the one shape the kernel lists back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Json = dict[str, Any]

TABLE_FAMILY = "inet"
TABLE = "cell"
BASE: Json = {"family": TABLE_FAMILY, "table": TABLE}
IF_ADDR = ["ifname", "ipv4_addr"]
PROTO_PORT = ["inet_proto", "inet_service"]


def meta(key: str) -> Json:
    return {"meta": {"key": key}}


def payload(protocol: str, name: str) -> Json:
    return {"payload": {"protocol": protocol, "field": name}}


def ct(key: str) -> Json:
    return {"ct": {"key": key}}


def match(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def key(*exprs: Json) -> Json:
    return exprs[0] if len(exprs) == 1 else {"concat": list(exprs)}


IIFNAME, OIFNAME = meta("iifname"), meta("oifname")
SADDR, DADDR = payload("ip", "saddr"), payload("ip", "daddr")
PROTO, DPORT = meta("l4proto"), payload("th", "dport")
ACCEPT: Json = {"accept": None}
DROP: Json = {"drop": None}


def rule(chain: str, *expr: Json, comment: str | None = None) -> Json:
    body: Json = {**BASE, "chain": chain, "expr": list(expr)}
    if comment is not None:
        body["comment"] = comment
    return {"rule": body}


def base_chain(name: str, hook: str, prio: int, policy: str, kind: str = "filter") -> Json:
    return {
        "chain": {**BASE, "name": name, "type": kind, "hook": hook, "prio": prio, "policy": policy}
    }


def set_(name: str, types: Sequence[str], elems: Sequence[Any], *, interval: bool = True) -> Json:
    body: Json = {**BASE, "name": name, "type": types[0] if len(types) == 1 else list(types)}
    if interval:
        body["flags"] = ["interval"]
    if elems:
        body["elem"] = list(elems)
    return {"set": body}


def map_(name: str, types: Sequence[str], data: str, elems: Sequence[tuple[Any, Any]]) -> Json:
    """A named map; `elems` are (key, value) pairs, a key being a scalar or a `concat`.

    Interval-flagged like the sets, so that the kernel lists the elements back in the sorted
    order they were given in (a hash set lists in hash order, which no comparison survives)."""
    body: Json = {
        **BASE,
        "name": name,
        "type": types[0] if len(types) == 1 else list(types),
        "map": data,
        "flags": ["interval"],
    }
    if elems:
        body["elem"] = [[k, v] for k, v in elems]
    return {"map": body}


def concat(*fields: Any) -> Any:
    return fields[0] if len(fields) == 1 else {"concat": list(fields)}


def tcp(port: int) -> Json:
    return match(payload("tcp", "dport"), port)


def fresh(value: Any) -> Any:
    """A deep copy of JSON data: rules share expression dicts while being built."""
    if isinstance(value, dict):
        return {k: fresh(v) for k, v in value.items()}
    if isinstance(value, list):
        return [fresh(v) for v in value]
    return value
