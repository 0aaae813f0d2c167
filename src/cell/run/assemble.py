"""From what the services reported to the six checks and the status document. Pure.

A check whose service is down (crashed, hung, restarting) is believed only up to the moment the
service went down: its `fresh_for` is cut there, so the verdict turns `unknown` at once instead
of showing a green nobody is renewing. The summary (`cell/status`, bridged to the hub) carries no
evidence and no address; the full checks (`cell/check/<name>`) stay on site.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from cell.run.service import ServiceStatus
from cell.run.supervisor import down_text
from cell.status.checks import CHECK_NAMES, Check
from cell.status.document import LedgerHead, StatusDoc
from cell.status.verdict import verdict
from policies.clock import iso

_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?:/\d{1,2})?\b")
MIN_FRESH = 0.001


def scrub(text: str) -> str:
    """No address in a line that leaves the site (a rule's text may name one)."""
    return _IPV4.sub("<address>", text)


def assemble(
    reported: Mapping[str, Check],
    owners: Mapping[str, str],
    services: Mapping[str, ServiceStatus],
) -> dict[str, Check]:
    """Every check that has a result, cut short where its service is down."""
    out: dict[str, Check] = {}
    for name in CHECK_NAMES:
        check = reported.get(name)
        if check is None:
            continue
        owner = services.get(owners.get(name, ""))
        if owner is not None and owner.down_since is not None and owner.state != "running":
            fresh = max(MIN_FRESH, min(check.fresh_for, owner.down_since - check.established))
            check = check.model_copy(
                update={
                    "fresh_for": fresh,
                    "evidence": [*check.evidence, down_text(owner)],
                }
            )
        out[name] = check
    return out


def status_doc(
    *,
    site: str,
    now: float,
    checks: Mapping[str, Check],
    commit: str | None,
    dns_blocked_today: int,
    ledger: LedgerHead | None,
    session: str,
    services: Mapping[str, ServiceStatus],
    fresh_for: float,
    mode: str = "normal",
) -> StatusDoc:
    """The summary document: verdict and reasons over every check, nothing that names a client."""
    v = verdict(checks, now)
    summary = {
        n: c.summary().model_copy(update={"detail": scrub(c.detail)}) for n, c in checks.items()
    }
    return StatusDoc(
        site=site,
        ts=iso(now),
        verdict=v.verdict,
        reasons=[scrub(r) for r in v.reasons],
        commit=commit,
        dns_blocked_today=dns_blocked_today,
        checks=summary,
        ledger=ledger,
        mode=mode,
        session=session,
        fresh_for=fresh_for,
        services={n: s.state for n, s in services.items()},
        restarts={n: s.restarts for n, s in services.items()},
    )
