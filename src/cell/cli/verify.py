"""`cell dns stats|log`, `cell drops`, `cell probe history`: the verifier's counts and history.

Each command first reads what is new (the dnsmasq logs, the drop counters) into the store, so it
works without the daemon. Where: `--state-dir`/`$CELL_STATE_DIR`; else the lab's gateway when a
lab of `--repo`'s site is up (its state dir and namespace); else /var/lib/cell on this host.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from cell.cli.util import add_json, add_repo, add_state_dir, emit, load, repo
from cell.errors import UsageError
from cell.timeparse import iso_z, parse_day, parse_time

if TYPE_CHECKING:
    from cell.status.probe import ProbeRun
    from cell.store import Store
    from policies import Policy
    from policies.layout import Layout

FINDING = 3


@dataclass
class Where:
    policy: Policy
    tz: ZoneInfo
    state: Path
    netns: str | None
    layout: Layout


def _where(args: argparse.Namespace) -> Where:
    from cell.deploy.place import lab_of, site_of, state_for
    from cell.verify.site import site_zone
    from policies.layout import Layout

    policy = load(args)
    state = state_for(getattr(args, "state_dir", None), repo(args))
    lab = None if args.state_dir else lab_of(site_of(repo(args)))
    if not Path(state.root).is_dir():
        raise UsageError(
            f"state directory {state.root} does not exist: point --state-dir (or $CELL_STATE_DIR)"
            " at the Cell's, or bring the lab up (`cell lab up`)"
        )
    layout = lab.layout if lab else Layout(state_dir=str(state.root))
    return Where(policy, site_zone(policy), Path(state.root), lab.gateway if lab else None, layout)


def _open(w: Where) -> Store:
    from cell.store import open_store
    from cell.verify.site import retention_of

    return open_store(w.state, retention_of(w.policy))


def _day(args: argparse.Namespace, w: Where, store: Store) -> tuple[str, bool]:
    """The day asked for (default: today in the site's zone) and whether it is today."""
    today = datetime.now(w.tz).date()
    if not args.day:
        return today.isoformat(), True
    day = parse_day(args.day)
    first = datetime.fromtimestamp(store.created(), w.tz).date()
    if day > today or day < first:
        raise UsageError(
            f"--day {args.day}: no data for that day; this store holds {first} to {today}"
            f" ({w.tz.key})"
        )
    return day.isoformat(), day == today


def _when(day: str, today: bool) -> str:
    return "today" if today else f"on {day}"


def cmd_dns_stats(args: argparse.Namespace) -> int:
    from cell.store.dns import day_clients, day_names, day_totals
    from cell.verify.sinkhole import ingest
    from cell.verify.site import attribute, log_sources

    w = _where(args)
    with _open(w) as store:
        ingest(store, log_sources(w.policy, w.layout), w.tz)
        store.prune()
        day, today = _day(args, w, store)
        blocked, forwarded = day_totals(store, day)
        clients = []
        for address, b, f in day_clients(store, day):
            host, vlan = attribute(w.policy, address)
            clients.append(
                {"address": address, "host": host, "vlan": vlan, "blocked": b, "forwarded": f}
            )
        names = [
            {"name": n, "blocked": b, "forwarded": f, "first_seen": iso_z(_utc(first))}
            for n, b, f, first in day_names(store, day)
        ]
    doc = {
        "day": day,
        "timezone": w.tz.key,
        "blocked": blocked,
        "forwarded": forwarded,
        "clients": clients,
        "names": names,
    }
    emit(args, doc, _format_stats(doc, today))
    return FINDING if forwarded else 0


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _who(c: dict[str, Any]) -> str:
    host = c["host"] or "unknown host"
    return f"{host} ({c['vlan'] or 'unknown VLAN'}) {c['address']}"


def _format_stats(doc: dict[str, Any], today: bool) -> str:
    rows = [
        f"DNS BLK {doc['blocked']} calls {_when(doc['day'], today)} ({doc['day']}, {doc['timezone']})"
    ]
    if doc["forwarded"]:
        rows.append(
            f"FINDING: {doc['forwarded']} queries from sinkhole VLANs were forwarded upstream"
        )
    else:
        rows.append("forwarded from sinkhole VLANs: 0")
    if doc["clients"]:
        rows.append("clients:")
        width = max(len(_who(c)) for c in doc["clients"])
        rows += [f"  {_who(c):<{width}}  {c['blocked']:>8}" for c in doc["clients"]]
    if doc["names"]:
        rows.append("names:")
        width = max(len(n["name"]) for n in doc["names"])
        rows += [
            f"  {n['name']:<{width}}  {n['blocked']:>8}  first seen {n['first_seen']}"
            for n in doc["names"]
        ]
    return "\n".join(rows)


def _clients(policy: Policy, text: str | None) -> list[str] | None:
    import ipaddress

    if text is None:
        return None
    if text in policy.hosts:
        return [policy.hosts[text].address]
    try:
        return [str(ipaddress.IPv4Address(text))]
    except ValueError:
        raise UsageError(
            f"--client '{text}': not a host of network.yaml nor an IPv4 address;"
            f" hosts: {', '.join(sorted(policy.hosts)) or 'none'}"
        ) from None


def cmd_dns_log(args: argparse.Namespace) -> int:
    from cell.store.dns import recent_events
    from cell.verify.sinkhole import ingest
    from cell.verify.site import attribute, log_sources

    w = _where(args)
    since = parse_time(args.since, tz=w.tz, what="--since")
    clients = _clients(w.policy, args.client)
    if args.limit < 1:
        raise UsageError(f"--limit {args.limit}: must be at least 1")
    with _open(w) as store:
        ingest(store, log_sources(w.policy, w.layout), w.tz)
        events = recent_events(store, since.timestamp(), clients, args.limit)
    rows: list[dict[str, Any]] = []
    for e in events:
        host, vlan = attribute(w.policy, e.client)
        rows.append(
            {
                "ts": iso_z(_utc(e.ts)),
                "client": e.client,
                "host": host,
                "vlan": vlan,
                "name": e.name,
                "type": e.qtype,
                "action": "forwarded" if e.forwarded else "blocked",
                "count": e.count,
            }
        )
    doc = {"since": iso_z(since), "events": rows}
    text = "\n".join(
        f"{r['ts']}  {r['host'] or 'unknown'}/{r['vlan'] or '?'} {r['client']:<15} {r['type']:<6}"
        f" {r['name']}"
        + (f" ×{r['count']}" if r["count"] > 1 else "")
        + ("  FORWARDED" if r["action"] == "forwarded" else "")
        for r in rows
    )
    emit(args, doc, text or f"no queries since {iso_z(since)}")
    return FINDING if any(r["action"] == "forwarded" for r in rows) else 0


def cmd_drops(args: argparse.Namespace) -> int:
    from cell.store.drops import day_drops
    from cell.verify.drops import poll_drops

    w = _where(args)
    with _open(w) as store:
        poll_drops(store, w.netns, w.tz)
        store.prune()
        day, today = _day(args, w, store)
        drops = [
            {"source": s, "dest": d, "packets": p, "bytes": b}
            for s, d, p, b in day_drops(store, day)
        ]
    doc = {"day": day, "timezone": w.tz.key, "drops": drops}
    when = _when(day, today)
    text = "\n".join(f"{r['source']} → {r['dest']}: {r['packets']} dropped {when}" for r in drops)
    emit(args, doc, text or f"nothing dropped {when} ({day}, {w.tz.key})")
    return 0


def cmd_probe_history(args: argparse.Namespace) -> int:
    from cell.store.probes import probe_changes, probe_runs

    w = _where(args)
    since = parse_time(args.since, tz=w.tz, what="--since") if args.since else None
    with _open(w) as store:
        runs = probe_runs(store, since.timestamp() if since else 0.0)
        changes = probe_changes(store, since.timestamp() if since else 0.0)
    doc: dict[str, list[dict[str, Any]]] = {
        "runs": [
            {
                "ts": iso_z(_utc(r.ts)),
                "commit": r.commit,
                "ok": r.ok,
                "flows": r.flows,
                "failed": r.failed,
            }
            for r in runs
        ],
        "changes": [
            {"ts": iso_z(_utc(ts)), "flow": flow, "holds": holds, "evidence": evidence}
            for ts, flow, holds, evidence in changes
        ],
    }
    text = "\n".join(
        f"{r['ts']}  {(r['commit'] or 'unknown')[:12]:<12}  {r['flows']} flows  "
        + ("all hold" if r["ok"] else f"{len(r['failed'])} FAILED: {', '.join(r['failed'])}")
        for r in doc["runs"]
    )
    emit(args, doc, text or "no probe runs recorded")
    return 0


def record_probe(args: argparse.Namespace, run: ProbeRun) -> None:
    """Keep a `cell probe` run in the store of the Cell it probed (with its applied commit)."""
    from cell.deploy.place import state_for
    from cell.store import open_store
    from cell.store.journal import read_journal
    from cell.store.probes import record_probe_run

    state = state_for(getattr(args, "state_dir", None), repo(args))
    applied = read_journal(state).applied
    with open_store(state.root) as store:
        record_probe_run(store, time.time(), applied.commit if applied else None, run.results)


def add_verify_commands(sub: Any) -> None:
    def common(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        add_repo(sp)
        add_json(sp)
        add_state_dir(sp)
        return sp

    dns = sub.add_parser("dns", help="phone-home DNS attempts the sinkhole answered")
    dsub = dns.add_subparsers(dest="what", required=True, metavar="WHAT")
    sp = common(dsub.add_parser("stats", help="per day, client and name (exit 3: a forward)"))
    sp.add_argument("--day", help="YYYY-MM-DD in the site's time zone (default: today)")
    sp.set_defaults(handler=cmd_dns_stats)
    sp = common(dsub.add_parser("log", help="recent queries, newest first"))
    sp.add_argument("--since", default="-1h", help="ISO 8601 or relative (-2h); default -1h")
    sp.add_argument("--client", help="a host of network.yaml or an address")
    sp.add_argument("--limit", type=int, default=200, help="at most this many (default 200)")
    sp.set_defaults(handler=cmd_dns_log)
    sp = common(sub.add_parser("drops", help="drops per (source VLAN, destination class)"))
    sp.add_argument("--day", help="YYYY-MM-DD in the site's time zone (default: today)")
    sp.set_defaults(handler=cmd_drops)


def add_probe_history(probe: argparse.ArgumentParser) -> None:
    """`cell probe history`: a positional word on `cell probe`, which keeps its own flags."""
    probe.add_argument("action", nargs="?", choices=["history"], help="history: past runs")
    probe.add_argument("--since", help="with history: ISO 8601 or relative (-7d)")
    add_state_dir(probe)


def probe_history_requested(args: argparse.Namespace) -> bool:
    return getattr(args, "action", None) == "history"


def probe_paths(policy: Policy, lab: Any) -> list[dict[str, Any]]:
    """The paths around the firewall on the gateway a probe ran on (`cell.drift.paths`, against
    the policy's own links): a failed probe says that something is wrong, these say what."""
    from cell.deploy.install import lab_target
    from cell.deploy.target import Target
    from cell.drift.paths import check_paths
    from firewall.links import render_links
    from policies.layout import LINKS, Layout

    target = lab_target(lab) if lab else Target(netns=None, layout=Layout())
    return [f.to_doc() for f in check_paths({LINKS: render_links(policy)}, target)]


def format_paths(found: list[dict[str, Any]]) -> str:
    if not found:
        return ""
    rows = [f"  {f['kind']}: {f['what']}" for f in found]
    return "\n\npaths around the firewall on the gateway:\n" + "\n".join(rows)
