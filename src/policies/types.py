"""Constrained value types for the policy model.

Every value that can reach a line of a generated config file (mosquitto, dnsmasq, nftables) is
checked here, so that no policy string can inject a line, a quote or a directive: names, paths,
hostnames, topic filters and prefixes are free of whitespace, quotes, control characters and NUL.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, Field

from policies.lookalike import foreign, problem
from policies.topics import filter_error

_UNSAFE = re.compile(r"[\s\"'`\\\x00-\x1f\x7f]")


def _safe(value: str) -> str:
    bad = _UNSAFE.search(value)
    if bad:
        raise ValueError(
            f"contains {bad.group()!r} at offset {bad.start()}; whitespace, quotes, backslashes "
            "and control characters are not allowed (they would break a config line)"
        )
    return value


def _regex(pattern: str, what: str) -> AfterValidator:
    rx = re.compile(pattern)

    def check(value: str) -> str:
        if not rx.fullmatch(value):
            shown = value if len(value) <= 40 else value[:40] + "..."
            odd = foreign(value)
            raise ValueError(f"{shown!r} is not a valid {what}{': ' + odd if odd else ''}")
        return value

    return AfterValidator(check)


def ipv4_or_none(text: str) -> str | None:
    """`text` as a normalised IPv4 address if it is an IPv4 literal, else None (a hostname)."""
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        return None


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"{value[:40]!r} is not an IPv4 address (like 10.10.0.11)") from None


def _ipv4_net(value: str) -> str:
    try:
        return str(ipaddress.IPv4Network(value, strict=True))
    except ValueError as e:
        raise ValueError(f"{value[:40]!r} is not an IPv4 subnet like 10.10.0.0/24 ({e})") from None


_HOSTNAME = re.compile(
    r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
)


def _host_or_ip(value: str) -> str:
    ip = ipv4_or_none(value)
    if ip is not None:
        return ip
    if not _HOSTNAME.fullmatch(value) or value.replace(".", "").isdigit():
        raise ValueError(
            f"{value[:40]!r} is neither an IPv4 address nor a DNS hostname (like hub.example.eu)"
        )
    return value


def _hostname(value: str) -> str:
    if not _HOSTNAME.fullmatch(value):
        raise ValueError(
            f"{value[:40]!r} is not a DNS name (lowercase labels a-z, 0-9, '-', dot-separated)"
        )
    return value


def _looks_right(value: str) -> None:
    why = problem(value)
    if why:
        raise ValueError(f"{value[:60]!r} {why}")


def _topic_filter(value: str) -> str:
    _safe(value)
    _looks_right(value)
    bad = filter_error(value)
    if bad:
        raise ValueError(f"invalid topic filter {value[:60]!r}: {bad}")
    return value


def _prefix(value: str) -> str:
    _safe(value)
    _looks_right(value)
    if "+" in value or "#" in value or not value.endswith("/") or value.startswith("$"):
        raise ValueError(
            f"{value[:60]!r} is not a topic prefix: no wildcards, no leading '$', and it ends "
            "with '/' (like sites/lisbon-01/)"
        )
    return value


def _abs_path(value: str) -> str:
    _safe(value)
    _looks_right(value)
    if not value.startswith("/") or "/../" in value + "/":
        raise ValueError(
            f"{value[:60]!r} must be an absolute path without '..' (like /etc/cell/tls/hub-ca.pem)"
        )
    return value


def _port_proto(value: str) -> str:
    m = re.fullmatch(r"(\d{1,5})/(tcp|udp)", value)
    if not m or not 1 <= int(m.group(1)) <= 65535:
        raise ValueError(
            f"{value[:40]!r} is not PORT/PROTO with PORT 1..65535 and PROTO tcp or udp (like 554/tcp)"
        )
    return value


def _free_text(value: str) -> str:
    bad = re.search(r"[\x00-\x1f\x7f]", value)
    if bad:
        raise ValueError(
            f"control character {bad.group()!r} at offset {bad.start()} (text must be one line)"
        )
    why = problem(value, words=" ")
    if why and "mixes scripts" not in why:  # prose may quote another script; never hide text
        raise ValueError(f"{value[:60]!r} {why}")
    return value


SiteId = Annotated[
    str, Field(max_length=32), _regex(r"[a-z0-9-]{1,32}", "site id ([a-z0-9-], 1..32 chars)")
]
Name = Annotated[
    str,
    Field(max_length=32),
    _regex(
        r"[a-z][a-z0-9_-]{0,31}", "name (starts with a-z; then a-z, 0-9, '_' or '-'; at most 32)"
    ),
]
Username = Annotated[
    str,
    Field(max_length=64),
    _regex(
        r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}",
        "username (letters, digits, '_', '.', '@', '-'; at most 64)",
    ),
]
IfName = Annotated[
    str,
    Field(max_length=15),
    _regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,14}", "interface name (at most 15 of A-Z a-z 0-9 . _ -)"),
]
IPv4 = Annotated[str, Field(max_length=15), AfterValidator(_ipv4)]
IPv4Net = Annotated[str, Field(max_length=18), AfterValidator(_ipv4_net)]
HostOrIP = Annotated[str, Field(max_length=253), AfterValidator(_host_or_ip)]
Hostname = Annotated[str, Field(max_length=253), AfterValidator(_hostname)]
Port = Annotated[int, Field(ge=1, le=65535)]
PortProto = Annotated[str, Field(max_length=9), AfterValidator(_port_proto)]
TopicFilter = Annotated[str, Field(max_length=1024), AfterValidator(_topic_filter)]
TopicPrefix = Annotated[str, Field(max_length=256), AfterValidator(_prefix)]
AbsPath = Annotated[str, Field(max_length=1024), AfterValidator(_abs_path)]
FreeText = Annotated[str, Field(max_length=200), AfterValidator(_free_text)]
Duration = Annotated[
    str, Field(max_length=12), _regex(r"[1-9][0-9]{0,6}[smhd]", "duration (like 30m, 1h, 24h, 7d)")
]
Size = Annotated[
    str,
    Field(max_length=12),
    _regex(r"[1-9][0-9]{0,6}(B|KiB|MiB|GiB|TiB)", "size (like 500MiB or 2GiB)"),
]


def duration_seconds(value: str) -> int:
    """`24h` -> 86400. The value has already been validated as a `Duration`."""
    return int(value[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[value[-1]]


def size_bytes(value: str) -> int:
    """`2GiB` -> 2147483648. The value has already been validated as a `Size`."""
    num = re.match(r"\d+", value)
    assert num is not None
    unit = value[num.end() :]
    return (
        int(num.group())
        * {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[unit]
    )


def _timezone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_+/-]{0,63}", value) or ".." in value:
            raise ValueError
        ZoneInfo(value)
    except (ValueError, ZoneInfoNotFoundError):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise ValueError(
            f"{shown!r} is not an IANA time zone (like UTC, Europe/Lisbon, America/New_York)"
        ) from None
    return value


TimeZone = Annotated[str, Field(max_length=64), AfterValidator(_timezone)]
