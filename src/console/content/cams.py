"""CAMS: the phone-home attempts the DNS sinkhole answered today, per camera and per name, the
names first seen today, and the drops per VLAN."""

from __future__ import annotations

from console.content.synopsis import check_evidence, check_state
from console.view import MARKS, Row, View, aligned, head, stamp

SHOWN = 40


def _counter(src: str, dst: str) -> str:
    """The nft counter a (source, destination class) pair is counted by (`split_counter`)."""
    return f"drop_{src}_{dst}" if src in ("other", "invalid") else f"drop_{src}.{dst}"


def rows(view: View) -> list[Row]:
    rec, bus, now = view.records, view.bus, view.now
    out: list[Row] = []
    if rec is None:
        return [Row("reading the Cell's records…", "dim")]
    dns = rec.dns
    out.append(Row(f"DNS BLK {dns.blocked} calls today ({rec.day}, {rec.timezone})", "head"))
    check = bus.check("sinkhole")
    tone, word = check_state(check, now)
    fw = (
        f"{dns.forwarded} queries from sinkhole VLANs FORWARDED upstream"
        if dns.forwarded
        else "forwarded from sinkhole VLANs: 0"
    )
    out.append(
        Row(
            f"{MARKS.get(tone, '?')} sinkhole check {word} · {fw}",
            "bad" if dns.forwarded else tone,
            check_evidence("sinkhole", check, now),
            "check sinkhole",
        )
    )
    out.append(head("per camera (client)"))
    by_client: dict[str, list[str]] = {}
    for client, name, b, f in dns.pairs:
        by_client.setdefault(client, []).append(f"{b:>7}  {name}" + ("  FORWARDED" if f else ""))
    cells = [
        [rec.host_of(a), f"{b} blocked", f"{f} forwarded" if f else ""] for a, b, f in dns.clients
    ]
    for (a, _, f), line in zip(dns.clients[:SHOWN], aligned(cells[:SHOWN]), strict=False):
        ev = f"{rec.host_of(a)} today ({rec.day}):\n\n" + "\n".join(by_client.get(a, []))
        out.append(Row(line, "bad" if f else "plain", ev, f"DNS {a}"))
    if not dns.clients:
        out.append(Row("  no sinkholed queries today", "dim"))
    out.append(head("per name"))
    cells = []
    for name, b, _, first in dns.names[:SHOWN]:
        new = "NEW TODAY" if first >= rec.day_start else ""
        cells.append([name, f"{b}", f"first seen {stamp(first)}", new])
    for (name, _, f, _), line in zip(dns.names[:SHOWN], aligned(cells), strict=False):
        who = [f"{b:>7}  {rec.host_of(c)}" for c, n, b, _ in dns.pairs if n == name]
        out.append(Row(line, "bad" if f else "plain", f"{name} today:\n\n" + "\n".join(who), name))
    new_names = [n for n in dns.names if n[3] >= rec.day_start]
    out.append(head(f"names first seen today: {len(new_names)}"))
    for name, b, _, first in new_names[:SHOWN]:
        out.append(Row(f"  {stamp(first)}  {name}  ({b} calls)"))
    out.append(head("dropped today, per VLAN"))
    for src, dst, packets, nbytes in rec.drops:
        out.append(
            Row(
                f"  {src} → {dst}: {packets} dropped today",
                "plain",
                f"counter {_counter(src, dst)}: {packets} packets, {nbytes} bytes on {rec.day} "
                f"({rec.timezone}); totals survive re-applies",
                f"drops {src} → {dst}",
            )
        )
    if not rec.drops:
        out.append(Row("  nothing dropped today", "dim"))
    return out
