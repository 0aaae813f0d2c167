"""The bridge policy as a table people read: every rule with its tag and place, and the default.

Pure. `cell bridge policy` prints it, and the console's MQTT panel will show the same rows, tagged
`↑hub`, `↓hub`, `✗ stays local` and `✗ never bridged` (classify.TAGS).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge.classify import TAGS
from bridge.render import bridge_client_id

if TYPE_CHECKING:
    from policies import Policy


def policy_table(policy: Policy) -> dict[str, Any]:
    """{site, connection, client_id, remote, prefix, rules: [...], default: {...}}."""
    hub = policy.site.hub.bridge if policy.site.hub is not None else None  # None: sealed
    rules = []
    for i, rule in enumerate(policy.mqtt.topics):
        file, line, _ = policy.where("mqtt.yaml", ("topics", i))
        bridged = rule.direction in ("up", "down")
        rules.append(
            {
                "index": i,
                "pattern": rule.pattern,
                "direction": rule.direction,
                "tag": TAGS[rule.direction],
                "qos": rule.qos if bridged else None,
                "tier": rule.tier,
                "reason": rule.reason,
                "file": file,
                "line": line,
            }
        )
    default = policy.mqtt.bridge.default
    file, line, _ = policy.where("mqtt.yaml", ("bridge", "default"))
    return {
        "site": policy.site.site.id,
        "connection": policy.mqtt.bridge.name,
        "client_id": bridge_client_id(policy),
        "remote": f"{hub.address}:{hub.port}" if hub else None,
        "prefix": hub.remote_prefix if hub else None,
        "rules": rules,
        "default": {"direction": default, "tag": TAGS[default], "file": file, "line": line},
    }


def format_policy_table(doc: dict[str, Any]) -> str:
    rows = [
        (
            r["tag"],
            r["pattern"],
            "" if r["qos"] is None else f"qos {r['qos']}",
            f"{r['file']}:{r['line']}",
            _note(r),
        )
        for r in doc["rules"]
    ]
    d = doc["default"]
    rows.append((d["tag"], "(any other topic)", "", f"{d['file']}:{d['line']}", "the default"))
    widths = [max(len(row[c]) for row in rows) for c in range(4)]
    head = (
        f"bridge '{doc['connection']}' of site {doc['site']} to {doc['remote']} "
        f"(as {doc['client_id']}; topics at the hub under {doc['prefix']})"
    )
    lines = [head, ""]
    for row in rows:
        cells = [row[c].ljust(widths[c]) for c in range(4)]
        lines.append(("  " + "  ".join(cells) + ("  " + row[4] if row[4] else "")).rstrip())
    return "\n".join(lines)


def _note(rule: dict[str, Any]) -> str:
    parts = []
    if rule["tier"]:
        parts.append(f"tier {rule['tier']}")
    if rule["reason"]:
        parts.append(str(rule["reason"]))
    return ", ".join(parts)
