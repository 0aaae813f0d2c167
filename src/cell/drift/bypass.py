"""Drift that goes around Cell's own table and files: another nftables table, an address added
by hand to a resolver-filled hub set, a config file Cell did not render in a directory a component
reads whole. Each could let data leave the site while `table inet cell` and Cell's files are
untouched, so each is drift.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from cell.deploy.target import Target
from cell.drift.finding import Finding, mtime
from cell.verify import dnsquery as dnsq
from firewall import netns as ns
from firewall.document import DYNAMIC_SETS
from policies.layout import CONFIG_DIRS, MOSQUITTO_INCLUDE_DIR, RESOLVER_CONF

if TYPE_CHECKING:
    from cell.drift.expected import Expected


_NFTSET = re.compile(r"nftset=/([^/]+)/(\S+)")


def check_hub_sets(
    exp: Expected, live: list[dict[str, Any]] | None, target: Target
) -> list[Finding]:
    """The hub sets admit the gateway's egress, so a hand-added address there opens a way out.

    A set the policy fills with a literal address must hold exactly that; a set filled by the
    Cell's resolver may hold only addresses that resolver returns for the hub name now (asked
    again here, which also refreshes the set).
    """
    rendered = {o["set"]["name"]: o["set"].get("elem", []) for o in exp.objects if "set" in o}
    names: dict[str, list[str]] = {}
    for host, sets in _NFTSET.findall(exp.files.get(RESOLVER_CONF, b"").decode()):
        for spec in sets.split(","):
            names.setdefault(spec.rsplit("#", 1)[-1], []).append(host)
    out = []
    for obj in live or []:
        body = obj.get("set")
        if not body or not DYNAMIC_SETS.fullmatch(body["name"]):
            continue
        have = sorted(str(e) for e in body.get("elem", []))
        want = sorted(str(e) for e in rendered.get(body["name"], []))
        if want:
            if have != want:
                out.append(
                    Finding(
                        "nftables",
                        f"set {body['name']} holds {', '.join(have) or 'nothing'}, not the policy's {', '.join(want)}",
                    )
                )
            continue
        hosts = names.get(body["name"], [])
        if not have or not hosts:
            continue
        answers = _resolve_all(hosts, target.netns)
        stray = [a for a in have if a not in answers]
        if stray:
            out.append(
                Finding(
                    "nftables",
                    f"set {body['name']} admits {', '.join(stray)}, which the Cell's resolver does "
                    f"not return for {', '.join(hosts)} (it returns {', '.join(answers) or 'nothing'})",
                )
            )
    return out


def _resolve_all(hosts: list[str], netns: str | None) -> list[str]:
    """The addresses the Cell's own resolver (127.0.0.1 in the gateway) returns for `hosts`."""

    def ask() -> list[str]:
        return sorted({a for h in hosts for a in dnsq.resolve("127.0.0.1", h)})

    return ns.call(netns, ask)


def check_other_tables(target: Target) -> list[Finding]:
    """Any nftables table beside Cell's: it could accept or forward what Cell's table drops."""
    return [
        Finding(
            "nftables",
            f"table {name} exists beside table inet cell: it could let through what Cell drops",
            listing.strip()[:4000],
        )
        for name, listing in sorted(target.nft.other_tables().items())
    ]


# Directories whose every file a component reads (mosquitto's include_dir): a file that Cell did
# not render there is live configuration all the same.
WATCHED_DIRS = CONFIG_DIRS


_TEMP = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]+)\.tmp")


def _writing(name: str) -> bool:
    """A temporary file of an atomic write (`.NAME.PID.tmp`, in progress, or left by a killed
    apply and pruned by the next): no component reads a `.tmp` file. Every other file counts,
    dot-files too: mosquitto loads `.hidden.conf` like any `*.conf`."""
    return _TEMP.fullmatch(name) is not None


def check_extra_files(exp: Expected, target: Target) -> list[Finding]:
    out = []
    for sub in WATCHED_DIRS:
        folder = target.config / sub
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            rel = f"{sub}/{path.name}"
            if path.is_file() and rel not in exp.files and not _writing(path.name):
                what = f"{path} is not a file Cell rendered for commit {exp.entry.commit[:12]}"
                if sub == MOSQUITTO_INCLUDE_DIR:
                    what += ": mosquitto loads every file in this directory"
                out.append(Finding("file", what, since=mtime(path)))
    return out
