"""`cell probe`: run the expected-flow matrix (probes.json) with real packets.

Each probe is sent from inside the namespace of its source, bound to the source's address: a TCP
connect, a UDP exchange or a DNS query. An allowed flow must get an answer. A dropped flow must get
no answer *and* its named drop counter must rise: a timeout alone proves nothing (the target might
simply be down), while the counter proves the Cell's firewall saw the packet and dropped it.
Because the counter is the proof, a drop is confirmed as soon as it rises; no waiting out timeouts.
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cell.status.probe import ProbeResult, ProbeRun
from cell.verify import dnsquery as dnsq
from firewall import netns as ns
from firewall.nft import NftBackend, backend
from firewall.probes import Probe, ProbeEnd
from policies.types import duration_seconds

if TYPE_CHECKING:
    from policies.model import Policy

TIMEOUT = 2.0
GRACE = 0.15  # after the counter rises, how long we still listen for a (leaked) answer


@dataclass(frozen=True)
class Env:
    """Where probes run: the gateway namespace, a namespace per VLAN, and outside addresses."""

    gateway: str | None
    """The gateway's namespace (None: this host, a real Cell)."""
    vlans: dict[str, str]
    outside: dict[str, Any]
    firewall: NftBackend | None = field(default=None, compare=False)
    """The gateway's nftables seam, whose drop counters prove a drop (None: the kernel's)."""
    timeout: float = TIMEOUT
    """How long a probe waits for an answer (the policy's `verify.probe_timeout`)."""

    @property
    def nft(self) -> NftBackend:
        return self.firewall if self.firewall is not None else backend(self.gateway)


def _client(kind: str, src: str | None, dst: str, port: int, timeout: float) -> str:
    """Runs inside the source namespace. Returns what came back ('' for nothing).

    A `dst` of `name:RESOLVER@HOSTNAME` is first resolved through the Cell's resolver,
    like the bridge or the management agent would: the firewall admits only addresses that
    resolver returned, so this probes the whole path, not just the rule.
    """
    if dst.startswith("name:"):
        server, _, name = dst[5:].partition("@")
        resolved = dnsq.resolve(server, name)
        if not resolved:
            return ""
        dst = resolved[0]
    stype = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, stype) as s:
        s.settimeout(timeout)
        if src:
            s.bind((src, 0))
        try:
            if kind == "tcp":
                s.connect((dst, port))
                return "connected"
            s.connect((dst, port))
            s.send(dnsq.query("probe.cell.invalid") if kind == "dns" else b"cell-probe\n")
            data = s.recv(2048)
            return f"{'dns answer' if kind == 'dns' else 'udp reply'} ({len(data)} bytes)"
        except ConnectionRefusedError:
            return "refused (reached the target)"
        except (TimeoutError, OSError):
            return ""


def _spawn(
    netns: str | None, kind: str, src: str | None, dst: str, port: int, timeout: float
) -> Future[str]:
    """The probe's client, started on a thread of its own inside the source namespace (None:
    this host's)."""

    def client() -> str:
        try:
            return _client(kind, src, dst, port, timeout)
        except Exception as e:
            return f"error: {e}"

    if netns is None:
        here: Future[str] = Future()
        threading.Thread(target=lambda: here.set_result(client()), daemon=True).start()
        return here
    try:
        return ns.spawn(netns, client)
    except OSError as e:  # no such namespace: reported like any client error
        failed: Future[str] = Future()
        failed.set_result(f"error: {e}")
        return failed


def _address(probe_end: ProbeEnd, env: Env, expect: str) -> str | None:
    """The concrete address of a probe's target; outside ones come from the environment.

    An allowed flow to `wan` goes to an ordinary Internet host; a flow that must be dropped goes to
    the phone-home server, whose own connection log then shows any leak a second time.
    """
    if probe_end.address:
        return probe_end.address
    if probe_end.hostname:
        return f"name:{probe_end.resolver or '127.0.0.1'}@{probe_end.hostname}"
    name = probe_end.name
    out = env.outside
    if name == "wan" and expect == "accept":
        key = "internet"
    elif name == "outside-resolver":
        key = "resolver"
    elif name == "hub.bridge":
        key = "hub"
    elif name == "hub.management":
        return str((out.get("management") or [""])[0]) or None
    else:
        key = "phone_home"
    return str(out[key]) if out.get(key) else None


def run_probe(probe: Probe, env: Env) -> ProbeResult:
    src, dst = probe.source, probe.to
    gateway = src.name == "gateway"
    netns = env.gateway if gateway else env.vlans.get(str(src.vlan), "")
    dst_addr = _address(dst, env, probe.expect)

    def result(got: str, ok: bool, evidence: str) -> ProbeResult:
        to = probe.id.split(">", 1)[1]
        return ProbeResult(
            source=src.name, to=to, expect=probe.expect, got=got, ok=ok, evidence=evidence,
            id=probe.id, counter=probe.counter,
        )  # fmt: skip

    outside = dst.vlan is None and probe.expect == "accept"
    if outside and not dst_addr and env.outside.get("real_site"):
        return result(
            "not run", True, "not sent: on a real site an allowed probe to the Internet leaves it"
        )
    if (not netns and not gateway) or not dst_addr:
        return result("not run", False, "no namespace or address for this probe")
    counter = probe.counter
    nft = env.nft
    before = nft.read_counters().get(counter, 0) if counter else 0
    t0 = time.monotonic()
    answer_of = _spawn(
        netns,
        probe.kind,
        src.address if src.name != "gateway" else None,
        dst_addr,
        probe.port,
        env.timeout,
    )
    answer, rose_at, after = "", None, before
    while True:
        try:
            answer = answer_of.result(timeout=0.02)
            break
        except TimeoutError:
            pass
        except Exception as e:  # the thread could not enter the namespace
            answer = f"error: {e}"
            break
        if counter and rose_at is None:
            after = nft.read_counters().get(counter, 0)
            if after > before:
                rose_at = time.monotonic()
        if rose_at is not None and time.monotonic() - rose_at > GRACE:
            break
        if time.monotonic() - t0 > env.timeout + 0.5:
            break
    # A client still waiting is left to end at its own socket timeout, on its own thread.
    ms = (time.monotonic() - t0) * 1000
    if counter and rose_at is None:
        after = nft.read_counters().get(counter, 0)
    got = "accept" if answer and not answer.startswith("error") else "drop"
    if probe.expect == "accept":
        ok = got == "accept"
        evidence = (
            f"{answer} in {ms:.0f} ms"
            if ok
            else f"no answer in {ms:.0f} ms ({answer or 'timeout'})"
        )
    else:
        rose = after - before
        ok = got == "drop" and rose > 0
        if got == "accept":
            evidence = f"LEAK: {answer} in {ms:.0f} ms"
        elif rose > 0:
            evidence = f"no answer; counter {counter} +{rose}"
        else:
            evidence = f"no answer, but counter {counter} did not rise: not proof of a drop"
    return result(got, ok, evidence)


def run_probes(probes: list[Probe], env: Env) -> ProbeRun:
    results = [run_probe(p, env) for p in probes]
    return ProbeRun(ok=all(r.ok for r in results), results=results)


def format_results(run: ProbeRun) -> str:
    rows = [f"{'':2}{'from':<14} {'to':<28} {'expect':<7} {'got':<7} evidence"]
    for r in run.results:
        mark = "✓" if r.ok else "✗"
        rows.append(f"{mark:2}{r.source:<14} {r.to:<28} {r.expect:<7} {r.got:<7} {r.evidence}")
    bad = len(run.failed)
    rows.append("")
    rows.append(
        f"{len(run.results)} flows probed: " + ("all hold" if not bad else f"{bad} MISBEHAVE")
    )
    return "\n".join(rows)


def probe_timeout(policy: Policy) -> float:
    """The policy's `verify.probe_timeout`, in seconds."""
    return float(duration_seconds(policy.site.verify.probe_timeout))
