"""Parse dnsmasq's `log-queries=extra` lines (pure).

With `log-facility=FILE`, dnsmasq writes each line as

    Dec  2 09:50:59 dnsmasq[7116]: 6 10.10.0.11/32939 query[PTR] 4.3.2.1.in-addr.arpa from 10.10.0.11
    Dec  2 09:50:59 dnsmasq[7118]: 1 10.20.0.2/45576 forwarded x.example to 203.0.113.53

`extra` adds the query's serial number and the client's address/port to every line about it, so
a `forwarded` line names the client that asked. The time stamp is the process's local time with
no year: the year is the one that puts it closest before `now` (a log spans far less than a year).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

_LINE = re.compile(
    r"(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<hms>\d\d:\d\d:\d\d) dnsmasq\[(?P<pid>\d+)\]: "
    r"(?P<serial>\d+) (?P<addr>[0-9A-Fa-f.:]+)/\d+ (?P<what>query|forwarded)(?P<rest>.*)"
)
_QUERY = re.compile(r"\[(?P<type>[^\]]+)\] (?P<name>\S+) from \S+")
_FORWARDED = re.compile(r" (?P<name>\S+) to (?P<server>\S+)")
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1
    )
}


@dataclass(frozen=True)
class LogQuery:
    """A `query[TYPE] NAME from ADDR` line (forwarded=False) or a `forwarded NAME to SERVER` one."""

    ts: float
    pid: int
    serial: int
    client: str
    name: str
    qtype: str
    forwarded: bool = False
    server: str = ""


class Clock:
    """Turns dnsmasq's `Mon dd HH:MM:SS` (local time of `tz`) into epoch seconds, cached."""

    def __init__(self, now: datetime, tz: tzinfo) -> None:
        self.now = now.astimezone(tz)
        self.tz = tz
        self._cache: dict[tuple[str, str, str], float] = {}

    def __call__(self, mon: str, day: str, hms: str) -> float | None:
        key = (mon, day, hms)
        if key not in self._cache:
            month = _MONTHS.get(mon)
            if month is None:
                return None
            h, m, s = (int(x) for x in hms.split(":"))
            try:
                t = datetime(self.now.year, month, int(day), h, m, s, tzinfo=self.tz)
                if t > self.now + timedelta(days=1):
                    t = t.replace(year=t.year - 1)
            except ValueError:  # Feb 29 of another year, a bad day
                return None
            self._cache[key] = t.timestamp()
        return self._cache[key]


def parse_line(line: str, clock: Clock) -> LogQuery | None:
    """The query or forward a line reports; None for any other line (startup, replies...)."""
    if " query[" not in line and " forwarded " not in line:  # most lines: cheap to skip
        return None
    m = _LINE.match(line)
    if m is None:
        return None
    ts = clock(m["mon"], m["day"], m["hms"])
    if ts is None:
        return None
    base = (ts, int(m["pid"]), int(m["serial"]), m["addr"])
    if m["what"] == "query":
        q = _QUERY.match(m["rest"])
        return LogQuery(*base, name=q["name"].lower(), qtype=q["type"]) if q else None
    f = _FORWARDED.match(m["rest"])
    if f is None:
        return None
    return LogQuery(*base, name=f["name"].lower(), qtype="", forwarded=True, server=f["server"])


def parse_chunk(text: str, clock: Clock) -> list[LogQuery]:
    """Every query and forward in `text` (whole lines), in order, as `parse_line` would find
    them; split by whitespace rather than matched by a regex: a busy log is millions of lines."""
    out = []
    for line in text.split("\n"):
        w = line.split()
        if len(w) < 9 or not w[3].startswith("dnsmasq[") or "/" not in w[5]:
            continue
        if w[6].startswith("query[") and w[6].endswith("]") and w[8] == "from":
            name, qtype, forwarded, server = w[7], w[6][6:-1], False, ""
        elif w[6] == "forwarded" and w[8] == "to":
            name, qtype, forwarded, server = w[7], "", True, w[9] if len(w) > 9 else ""
        else:
            continue
        ts = clock(w[0], w[1], w[2])
        if ts is None or not w[4].isdigit() or not w[3][8:-2].isdigit():
            continue
        addr = w[5].partition("/")[0]
        out.append(
            LogQuery(ts, int(w[3][8:-2]), int(w[4]), addr, name.lower(), qtype, forwarded, server)
        )
    return out
