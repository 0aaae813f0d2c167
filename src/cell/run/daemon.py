"""`cell run`: the main loop. Services under the supervisor write to the board; the loop turns the
board into the six checks, the verdict and the status document, and publishes them on a change
(at once: the latency budget is a second) and at least every `verify.publish_interval`. Each
publish also goes to STATE/status.json (atomically), which `cell status` reads.

systemd: READY=1 once the first status is on the bus (or, with the broker unreachable, once it
is in the state file after `READY_GRACE`: the daemon must not wait for a broker it watches);
WATCHDOG=1 only while every service meets its deadline; STOPPING=1 on SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cell.run.assemble import assemble, status_doc
from cell.run.board import Board
from cell.run.metrics import Exporter, Metrics
from cell.run.notify import notify, watchdog_interval
from cell.run.publisher import Bus, Publisher
from cell.run.service import Service
from cell.run.site import SiteRef
from cell.run.supervisor import Supervisor
from cell.status.checks import Check
from cell.status.document import LedgerHead, StatusDoc
from cell.store.statedir import State
from policies.clock import now_iso
from policies.fsutil import atomic_write
from policies.layout import STATUS_JSON

TICK = 0.2
READY_GRACE = 10.0


@dataclass(frozen=True)
class Options:
    state_dir: str
    repo: str
    netns: str | None
    metrics: str


def _ledger(state: State) -> LedgerHead | None:
    from cell.store.ledger import read_head

    with contextlib.suppress(Exception):
        head = read_head(state)
        if head is not None:
            return LedgerHead.model_validate(head)
    return None


def _key(doc: StatusDoc, checks: dict[str, Check]) -> Any:
    """What a change is: anything but the time stamps."""
    return (
        doc.verdict,
        tuple(doc.reasons),
        doc.commit,
        doc.dns_blocked_today,
        tuple(sorted(doc.services.items())),
        tuple(sorted((n, c.ok, c.detail, c.deadline < time.time()) for n, c in checks.items())),
        doc.ledger.seq if doc.ledger else None,
    )


class Daemon:
    def __init__(self, opts: Options, services: list[Service] | None = None) -> None:
        from cell.run.services import all_services

        self.opts = opts
        self.state = State(opts.state_dir)
        self.ref = SiteRef(self.state, opts.repo, opts.netns)
        self.board = Board()
        self.session = uuid.uuid4().hex[:12]
        self.supervisor = Supervisor(
            services if services is not None else all_services(self.ref), self.board
        )
        site = self.ref.site
        socket = site.target.layout.mqtt_socket
        self.publisher = Publisher(
            Bus("127.0.0.1", site.policy.mqtt.listener.port, site.mqtt_password(), unix=socket),
            self.session,
        )
        self.metrics = Metrics()
        self.exporter = Exporter(self.metrics, opts.metrics)
        self.stop = threading.Event()
        self.last: StatusDoc | None = None
        entry = self.ref.site.entry
        self.applied_id = entry.id if entry else None
        head = _ledger(self.state)
        self.ledger_seq = head.seq if head else None

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())
        self._evidence_key()
        self.exporter.start()
        self.publisher.start()
        self.supervisor.start()
        started = time.monotonic()
        ready = False
        wd_every = watchdog_interval()
        wd_last = 0.0
        last_key: Any = None
        last_pub = 0.0
        seen = -1
        try:
            while not self.stop.is_set():
                seen = self.board.wait(seen, TICK)
                try:
                    self.supervisor.tick()
                    if self.ref.refresh():
                        self._applied()
                    site = self.ref.site
                    for event in self.board.take_events():
                        self.publisher.event(event)
                    self.metrics.add(self._counts())
                    now = time.time()
                    doc, checks = self.compose(now)
                    if doc.ledger is not None and doc.ledger.seq != self.ledger_seq:
                        self._refused(self.ledger_seq)
                        self._manifest(self.ledger_seq, site.site_id)
                        self.ledger_seq = doc.ledger.seq
                    key = _key(doc, checks)
                    mono = time.monotonic()
                    if key != last_key or mono - last_pub >= site.seconds("publish_interval"):
                        self.publish(doc, checks, now)
                        last_key, last_pub = key, mono
                    if not ready and (
                        self.publisher.published.is_set() or mono - started > READY_GRACE
                    ):
                        ready = True
                        notify(f"READY=1\nSTATUS={doc.verdict}")
                    if (
                        ready  # systemd hears READY=1 first
                        and wd_every is not None
                        and mono - wd_last >= wd_every
                        and self.supervisor.healthy()
                    ):
                        notify("WATCHDOG=1")
                        wd_last = mono
                except Exception as e:  # the loop itself must not die of one bad tick
                    print(f"cell run: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                    self.stop.wait(1.0)  # and no watchdog ping: systemd restarts us if it lasts
        finally:
            notify("STOPPING=1")
            self.supervisor.stop()
            self.publisher.stop()
            self.exporter.stop()
        return 0

    def _applied(self) -> None:
        """The journal changed: say what is applied now (an apply, a rollback, a reconcile)."""
        from cell.status.document import Event

        entry = self.ref.site.entry
        if entry is None or entry.id == self.applied_id:
            return  # the journal changed, but not what is applied (an apply began: pending)
        self.applied_id = entry.id
        kind = "rollback" if entry.via == "rollback" else "apply"
        text = f"{entry.via}: commit {entry.commit[:12]} applied at {entry.time}"
        data = {"commit": entry.commit, "via": entry.via, "id": entry.id}
        self.board.event(Event(kind=kind, ts=now_iso(), text=text, check="trust", data=data))

    def _refused(self, since: int | None) -> None:
        """The ledger grew: a refusal (the trust gate, an invalid policy) since `since` is news."""
        from cell.status.document import Event
        from cell.store.ledger import last_of

        with contextlib.suppress(OSError, ValueError):
            entry = last_of(self.state, ("refusal",))
            if entry is None or since is None or int(entry.get("seq", -1)) <= since:
                return
            why = entry.get("message") or entry.get("reason") or "refused"
            text = f"apply refused: {str(why).splitlines()[0][:200]}"
            self.board.event(
                Event(kind="refusal", ts=now_iso(), text=text, check="trust", data=entry)
            )

    def _manifest(self, since: int | None, site: str) -> None:
        """The ledger grew by incident packs: their manifests go on the bus (and up to the hub)."""
        from cell.status.document import evidence_manifest, manifest_text
        from cell.status.topics import MANIFEST_TOPIC
        from cell.store import evidencekey
        from cell.store.ledger import read

        with contextlib.suppress(OSError, ValueError, KeyError):
            after = -1 if since is None else since
            for entry in read(self.state):
                if entry.get("kind") == "evidence-pack" and int(entry.get("seq", -1)) > after:
                    doc = evidence_manifest(entry, site)
                    doc["sig"] = self._sign(manifest_text(doc), evidencekey.MANIFEST_NAMESPACE)
                    self.publisher.retain(MANIFEST_TOPIC.format(id=doc["id"]), doc)

    def _evidence_key(self) -> None:
        """A Cell never enrolled gets its evidence key now: what it publishes is signed."""
        from cell.gitops.enroll import first_key
        from policies.errors import CellError

        try:
            key = first_key(self.state, self.ref.site.site_id)
        except (CellError, OSError) as e:
            print(f"cell run: no evidence key: {e}", file=sys.stderr, flush=True)
            return
        if key is not None:
            print(
                f"cell run: made the evidence key (never enrolled): {key}",
                file=sys.stderr,
                flush=True,
            )

    def _sign(self, text: bytes, namespace: str) -> str | None:
        """The evidence key's signature of `text` (None without a key, or if ssh-keygen fails:
        the manifest still goes out). Signed, a manifest cannot be passed off as the Cell's by a
        local client that may publish evidence/manifests/# (the example's NVR may)."""
        from cell.store import evidencekey
        from policies.errors import CellError

        if not evidencekey.has_key(self.state):
            return None
        try:
            return evidencekey.sign(self.state, text, namespace)
        except CellError:
            return None

    def _counts(self) -> dict[str, Any]:
        counts = self.board.take_counts()
        return {
            "drops": counts.get("drops", {}),
            "dns_blocked": sum(counts.get("dns_blocked", {}).values()),
            "dns_forwarded": sum(counts.get("dns_forwarded", {}).values()),
            "probe_runs": counts.get("probe_runs", {}),
        }

    def compose(self, now: float) -> tuple[StatusDoc, dict[str, Check]]:
        site = self.ref.site
        services = self.supervisor.statuses()
        checks = assemble(self.board.checks(), self.supervisor.owners(), services)
        figures = self.board.figures()
        doc = status_doc(
            site=site.site_id,
            now=now,
            checks=checks,
            commit=site.entry.commit if site.entry else None,
            dns_blocked_today=int(figures.get("dns_blocked_today") or 0),
            ledger=_ledger(self.state),
            session=self.session,
            services=services,
            fresh_for=3 * site.seconds("publish_interval"),
        )
        return doc, checks

    def publish(self, doc: StatusDoc, checks: dict[str, Check], now: float) -> None:
        self.publisher.publish(doc, checks)
        data = (json.dumps(doc.to_doc(), indent=2, ensure_ascii=False) + "\n").encode()
        with contextlib.suppress(OSError):
            atomic_write(self.state.root / STATUS_JSON, data)
        self.metrics.observe(doc, checks, self.supervisor.statuses(), now)
        figures = self.board.figures()
        m = self.metrics
        m.probe_duration.set(float(figures.get("probe_duration") or 0))
        m.probe_flows_failed.set(float(figures.get("probe_failed") or 0))
        m.capture_coverage.set(float(figures.get("capture_coverage") or 0))
        m.capture_drops.set(float(figures.get("capture_drops") or 0))
        self.exporter.flush()
        self.last = doc
        if self.last.verdict != "sovereign":
            notify(f"STATUS={doc.verdict}: {'; '.join(doc.reasons)[:200]}")
        else:
            notify(f"STATUS=sovereign since {now_iso()}")


def run_daemon(opts: Options) -> int:
    return Daemon(opts).run()
