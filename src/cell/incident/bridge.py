"""Step 1: every publish that crossed the bridge against the policy in the window, with the
broker log record that shows it. The broker's log and its rotated files (`log.N` ... `log.1`,
oldest first) are replayed through the bridge monitor's own core, so what `cell bridge status`
calls unexpected is what this step finds. Topics are judged by the policy in the repo now."""

from __future__ import annotations

from pathlib import Path

from bridge.monitor import MonitorCore
from bridge.status import UnexpectedPublish
from cell.incident.model import Step
from cell.incident.sources import Sources
from cell.timeparse import iso_z

MAX_ROTATED = 9


def log_files(log: Path) -> list[Path]:
    """The broker log and its rotated files, oldest first."""
    rotated = [log.with_name(f"{log.name}.{i}") for i in range(MAX_ROTATED, 0, -1)]
    return [p for p in [*rotated, log] if p.is_file()]


def replay(src: Sources, files: list[Path]) -> list[UnexpectedPublish]:
    hits: list[UnexpectedPublish] = []
    for path in files:
        core = MonitorCore(src.policy, log=str(path), source="log")
        with path.open(encoding="utf-8", errors="replace", newline="\n") as fh:
            hits += core.feed_log(fh)
    return [h for h in hits if src.holds(h.time)]


def describe(u: UnexpectedPublish) -> str:
    from datetime import UTC, datetime

    way = "to the hub" if u.way == "up" else "from the hub"
    why = f"{u.direction}" + ("" if u.prefixed else ", without the site's prefix")
    return (
        f"{iso_z(datetime.fromtimestamp(u.time, UTC))} {u.topic!r} crossed {way} ({why}; "
        f"{u.rule.where()}); evidence {u.evidence.log}:{u.evidence.line}"
    )


def bridge_step(src: Sources) -> Step:
    files = log_files(src.broker_log)
    if not files:
        return Step(
            name="bridge",
            notes=[f"no broker log at {src.broker_log}: what crossed the bridge cannot be shown"],
            summary={"unexpected": 0, "never": 0, "logs": []},
        )
    hits = replay(src, files)
    never = sum(1 for h in hits if h.direction == "never")
    return Step(
        name="bridge",
        findings=[describe(h) for h in hits],
        summary={"unexpected": len(hits), "never": never, "logs": [str(p) for p in files]},
        rows=[h.to_doc() for h in hits],
    )
