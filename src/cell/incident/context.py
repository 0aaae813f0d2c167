"""Around the four steps: the DNS phone-home attempts the sinkhole counted in the window, and the
drift events the ledger recorded in it.

A blocked phone-home is the sinkhole doing its job: counted, not a finding. A query from a
sinkhole VLAN that was forwarded upstream is one (a camera's question left the site), and so
is every drift event (live state that differed from what was applied).
"""

from __future__ import annotations

from typing import Any

from cell.incident.model import Step
from cell.incident.sources import Sources
from cell.store import ledger, open_store
from cell.store.dns import window_counts
from policies.clock import parse_iso

DRIFT_KINDS = ("drift", "drift-transaction", "drift-resolved")


def dns_step(src: Sources) -> Step:
    from cell.verify.sinkhole import ingest
    from cell.verify.site import attribute, log_sources, retention_of, site_zone

    with open_store(src.state.root, retention_of(src.policy)) as store:
        ingest(store, log_sources(src.policy, src.layout), site_zone(src.policy))
        counts = window_counts(store, src.since.timestamp(), src.until.timestamp())
    rows = []
    for client, name, blocked, forwarded in counts:
        host, vlan = attribute(src.policy, client)
        rows.append(
            {
                "client": client,
                "host": host,
                "vlan": vlan,
                "name": name,
                "blocked": blocked,
                "forwarded": forwarded,
            }
        )
    findings = [
        f"{r['host'] or r['client']} ({r['vlan']}): {r['forwarded']} queries for {r['name']!r} "
        "were forwarded upstream from a sinkhole VLAN"
        for r in rows
        if r["forwarded"]
    ]
    return Step(
        name="dns",
        findings=findings,
        summary={
            "blocked": sum(r["blocked"] for r in rows),
            "forwarded": sum(r["forwarded"] for r in rows),
            "clients": len({r["client"] for r in rows}),
            "names": len({r["name"] for r in rows}),
        },
        rows=rows,
    )


def _what(e: dict[str, Any]) -> str:
    found = e.get("findings") or []
    parts = [str(f.get("what") if isinstance(f, dict) else f) for f in found[:3]]
    more = f" (+{len(found) - 3} more)" if len(found) > 3 else ""
    return "; ".join(parts) + more


def drift_step(src: Sources) -> Step:
    rows, findings = [], []
    for e in ledger.read(src.state):
        if e.get("kind") not in DRIFT_KINDS:
            continue
        try:
            ts = parse_iso(str(e["time"])).timestamp()
        except (KeyError, ValueError):
            continue
        if not src.holds(ts):
            continue
        rows.append(e)
        if e["kind"] != "drift-resolved":
            findings.append(f"{e['time']} {e['kind']} (ledger seq {e.get('seq')}): {_what(e)}")
    return Step(
        name="drift",
        findings=findings,
        summary={"events": len(findings), "resolved": len(rows) - len(findings)},
        rows=rows,
    )
