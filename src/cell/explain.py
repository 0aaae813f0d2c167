"""`cell explain`: which rule decides a topic or a flow, with its file and line. Pure."""

from __future__ import annotations

import re
from typing import Any

from bridge.classify import TAGS, Classifier
from cell.errors import UsageError
from policies import Policy
from policies.flows import decide, resolve
from policies.topics import topic_error


def explain_topic(policy: Policy, topic: str) -> dict[str, Any]:
    problem = topic_error(topic)
    if problem:
        raise UsageError(f"'{topic[:80]}' is not a topic name: {problem}")
    verdict = Classifier(policy).classify(topic)
    rule = None
    if verdict.rule is not None:
        file, line, _ = policy.where("mqtt.yaml", ("topics", verdict.rule))
        rule = {"file": file, "line": line, "pattern": policy.mqtt.topics[verdict.rule].pattern}
    return {"topic": topic, "direction": verdict.direction, "rule": rule}


def format_topic(doc: dict[str, Any]) -> str:
    tag = TAGS[doc["direction"]]
    if doc["rule"] is None:
        return f"{doc['topic']}: {doc['direction']} ({tag}) by default: no rule matches (mqtt.yaml bridge.default)"
    r = doc["rule"]
    return f"{doc['topic']}: {doc['direction']} ({tag}) by rule '{r['pattern']}' at {r['file']}:{r['line']}"


_TARGET = re.compile(r"(?P<ep>.+?)(?::(?P<port>\d{1,5})/(?P<proto>tcp|udp))?")


def explain_flow(policy: Policy, source: str, target: str) -> dict[str, Any]:
    m = _TARGET.fullmatch(target)
    if not m:
        raise UsageError(
            f"--to '{target[:80]}': expected ENDPOINT or ENDPOINT:PORT/PROTO (like cameras:554/tcp)"
        )
    src, dst = resolve(policy, source), resolve(policy, m["ep"])
    known = "a host, a VLAN, gateway, wan, hub.bridge, hub.management or an IPv4 address"
    for flag, word, ep in (("--from", source, src), ("--to", m["ep"], dst)):
        if ep is None:
            raise UsageError(f"{flag} '{word[:80]}' is not {known}")
    assert src is not None and dst is not None
    port = None
    if m["port"]:
        if not 1 <= int(m["port"]) <= 65535:
            raise UsageError(f"--to port {m['port']} is outside 1..65535")
        port = (int(m["port"]), m["proto"])
    d = decide(policy, src, dst, port)
    rule = None
    if d.flow is not None:
        f = policy.network.flows[d.flow]
        file, line, _ = policy.where("network.yaml", ("flows", d.flow))
        rule = {"file": file, "line": line, "from": f.source, "to": f.to, "service": f.service}
    return {
        "from": source,
        "to": target,
        "verdict": d.verdict,
        "rule": rule,
        "ports": [f"{p}/{proto}" for p, proto in d.ports],
    }


def format_flow(doc: dict[str, Any]) -> str:
    if doc["rule"] is None:
        return (
            f"drop: {doc['from']} -> {doc['to']}: default deny (no flow in network.yaml admits it)"
        )
    r = doc["rule"]
    service = f", service: {r['service']}" if r["service"] else ""
    return (
        f"accept: {doc['from']} -> {doc['to']} by flow {{from: {r['from']}, to: {r['to']}{service}}} "
        f"at {r['file']}:{r['line']} (ports {', '.join(doc['ports'])})"
    )
