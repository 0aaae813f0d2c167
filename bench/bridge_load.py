"""Load through the real bridge: mixed topics at a target rate, on a lab of its own.

Builds a lab of the example site (with extra local clients, `loadgen-0`..`loadgen-7`, one per
publisher process since the broker names a client by its login, that may publish on
every non-down topic), applies the policy, starts the bridge monitor, and has several publisher
processes in the site's `cell` VLAN send a mix of up (QoS 1 and 0), never and local topics to the
gateway's broker at `--rate` messages per second for `--seconds`. Every topic is unique (it ends in
publisher-sequence), so a lost QoS 1 message is known by name. Then it reports:

- delivered at the hub per class: from the hub's own log (every PUBLISH the bridge made there),
  and what a `mosquitto_sub` on `#` and `$SYS/#` at the hub received;
- forbidden at the hub (target 0), QoS 1 up-messages lost (target 0);
- the hub's own stream down (`--down-rate`, commands and a topic no down rule names): what came
  down, what came down that must not (target 0);
- the monitor's counts against the true counts (target: exact), its unexpected publishes, and
  its CPU time; queue overflows that either broker logged.

The lab is removed at the end, also on failure or Ctrl-C.

    .venv/bin/python bench/bridge_load.py [--seconds 30] [--rate 20000] [--publishers 4]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from bridge.classify import Classifier
from bridge.logparse import LogParser, Publish
from bridge.render import bridge_client_id, bridge_local_client_id
from cell.deploy.install import apply_lab
from cell.lab import LabInfo, lab_down, lab_up
from firewall import netns
from policies import Policy, load_policy
from policies.busnames import bridge_state_topic
from policies.layout import BRIDGE_SNAPSHOT, MOSQUITTO_LOG

EXAMPLE = Path(__file__).resolve().parents[1] / "site-config-example"
CLASSES = ("up", "down", "local", "never")
MAX_PUBLISHERS = 8

MIX = [  # (weight, topic template, qos); {c}: camera, {id}: publisher-sequence
    (30, "site/cam-0{c}/events/{id}", 1),
    (5, "registry/{id}", 1),
    (5, "evidence/manifests/{id}", 1),
    (10, "health/{id}", 0),
    (15, "site/cam-0{c}/snapshots/{id}", 0),
    (5, "site/cam-0{c}/telemetry/raw/{id}", 1),
    (5, "site/cam-0{c}/audio/{id}", 0),
    (15, "site/cam-0{c}/debug/{id}", 0),
    (10, "unmatched/{id}", 1),
]

PUBLISHER = r"""
# Raw MQTT 3.1.1 (bridge.mqttwire): prebuilt packets written with sendall, so TCP backpressure
# paces it at a few microseconds per message (paho: ~50): the load generator must not be what
# limits a 2-core machine. QoS 1 PUBACKs are read back; a topic counts once acknowledged.
import json, socket, ssl, struct, sys, time
from bridge import mqttwire as wire

a = json.load(sys.stdin)
slots = [i for i, (w, _, _) in enumerate(a["mix"]) for _ in range(w)]
sock = socket.create_connection((a["host"], a["port"]))
if a.get("tls"):  # the hub: mutual TLS, the certificate's CN is the login
    ctx = ssl.create_default_context(cafile=a["tls"]["cafile"])
    ctx.load_cert_chain(a["tls"]["certfile"], a["tls"]["keyfile"])
    sock = ctx.wrap_socket(sock, server_hostname=a["host"])
sock.sendall(wire.connect(a["id"], a.get("user"), a.get("password"), 120))
if sock.recv(4) != b"\x20\x02\x00\x00":
    sys.exit("CONNACK refused")
pending, acked, sent, buf, pid, n = {}, [], {}, b"", 0, 0

def read_acks(block=False):
    global buf
    sock.setblocking(block)
    try:
        data = sock.recv(1 << 16)
    except (BlockingIOError, ssl.SSLWantReadError):
        return
    if not data:
        sys.exit("the broker closed the connection")
    buf += data
    whole = len(buf) // 4 * 4  # PUBACKs are all this publisher receives
    for off in range(0, whole, 4):
        t = pending.pop(struct.unpack_from("!H", buf, off + 2)[0], None)
        if t is not None:
            acked.append(t)
    buf = buf[whole:]

t0 = time.monotonic()
while (now := time.monotonic()) < t0 + a["seconds"]:
    out, due = [], min(int((now - t0) * a["rate"]), n + 2000)
    while n < due:
        i = slots[n % len(slots)]
        _, template, qos = a["mix"][i]
        topic = template.format(c=1 + n % 4, id=f"p{a['p']}-{n}")
        if qos:
            pid = pid % 65535 + 1
            while pid in pending:
                read_acks(True)
            pending[pid] = topic
        else:
            sent[i] = sent.get(i, 0) + 1
        out.append(wire.encode_publish(topic, b"x" * 64, qos, pid))
        n += 1
    sock.setblocking(True)
    sock.sendall(b"".join(out))
    read_acks()
    time.sleep(0.002)
elapsed = time.monotonic() - t0
deadline = time.monotonic() + 120
while pending and time.monotonic() < deadline:
    read_acks(True)
sock.setblocking(True)
sock.sendall(wire.DISCONNECT)
print(json.dumps({"qos0": sent, "qos1_acked": acked, "unacked": len(pending), "sent": n,
                  "elapsed": elapsed}))
"""


def make_site(root: Path, site_id: str) -> Path:
    repo = root / site_id
    shutil.copytree(EXAMPLE, repo)
    site = (repo / "site.yaml").read_text().replace("id: lisbon-01", f"id: {site_id}")
    (repo / "site.yaml").write_text(site.replace("sites/lisbon-01/", f"sites/{site_id}/"))
    rights = '["site/#", "registry/#", "health/#", "evidence/#", "unmatched/#"]'
    # One login per publisher: the broker names a client by its login (use_username_as_clientid),
    # so two connections of one login would take each other's session.
    logins = "".join(
        f"  - {{username: loadgen-{p}, publish: {rights}}}\n" for p in range(MAX_PUBLISHERS)
    )
    mqtt = (repo / "mqtt.yaml").read_text().replace("clients:\n", f"clients:\n{logins}", 1)
    (repo / "mqtt.yaml").write_text(mqtt)
    return repo


DOWN_MIX = [  # what the hub sends: (weight, topic template under the site prefix, qos)
    (80, "hub/commands/cam-0{c}/{id}", 1),
    (20, "hub/other/{id}", 0),  # no down rule: must never come down
]


def spawn(ns: str, spec: dict[str, Any]) -> subprocess.Popen[bytes]:
    """A publisher in namespace `ns` (its spec on stdin: argv would be too short)."""
    proc = netns.popen(
        ns, [sys.executable, "-c", PUBLISHER], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps({"id": f"gen-{uuid.uuid4().hex[:8]}", **spec}).encode())
    proc.stdin.close()
    return proc


def start_publishers(info: LabInfo, args: argparse.Namespace) -> list[subprocess.Popen[bytes]]:
    """The site's publishers (from the `cell` VLAN) and, with --down-rate, the hub's."""
    host, hub = info.hosts["nvr"], info.mqtt["hub"]
    site = {"port": 1883, "host": info.vlans[host["vlan"]]["gateway"], "seconds": args.seconds}
    site |= {"mix": MIX}
    procs = [
        spawn(
            host["netns"],
            {**site, "user": f"loadgen-{p}", "password": info.credentials[f"loadgen-{p}"]}
            | {"p": p, "rate": args.rate / args.publishers},
        )
        for p in range(args.publishers)
    ]
    if args.down_rate:
        tls = {k: hub[k] for k in ("cafile", "certfile", "keyfile")}
        mix = [(w, hub["prefix"] + t, q) for w, t, q in DOWN_MIX]
        spec = {"p": "hub", "host": hub["host"], "port": hub["port"], "tls": tls, "mix": mix}
        procs.append(spawn(hub["netns"], {**spec, "rate": args.down_rate, "seconds": args.seconds}))
    return procs


def hub_subscriber(info: LabInfo, out: Path) -> subprocess.Popen[bytes]:
    hub = info.mqtt["hub"]
    argv = ["mosquitto_sub", "-h", hub["host"], "-p", str(hub["port"]), "--cafile", hub["cafile"]]
    argv += ["--cert", hub["certfile"], "--key", hub["keyfile"], "-i", "bench-hub-sub", "-q", "1"]
    argv += ["-t", "#", "-t", "$SYS/#", "-F", "%t"]
    with out.open("wb") as f:
        return netns.popen(hub["netns"], argv, stdout=f, stderr=subprocess.DEVNULL)


def wait_quiet(path: Path, quiet: float = 8.0, limit: float = 300.0) -> None:
    """Until `path` has not grown for `quiet` seconds (the bridge has drained)."""
    size, still, deadline = -1, time.monotonic(), time.monotonic() + limit
    while time.monotonic() < deadline:
        now = path.stat().st_size if path.exists() else 0
        if now != size:
            size, still = now, time.monotonic()
        elif time.monotonic() - still >= quiet:
            return
        time.sleep(0.2)


def bridge_received(log: Path, local_id: str) -> list[str]:
    """Topics the site's broker received from the bridge (what came down), from its log."""
    needle = f"Received PUBLISH from {local_id} ("
    parser = LogParser(local_id, every_publish=False)
    out = []
    with log.open(errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if needle in line:
                e = parser.parse(number, line.rstrip("\n"))
                if isinstance(e, Publish):
                    out.append(e.topic)
    return out


def dropping(log: Path) -> Counter[str]:
    """Clients a broker's log says it dropped queued messages for (episodes per client)."""
    needle = "Outgoing messages are being dropped for client "
    out: Counter[str] = Counter()
    with log.open(errors="replace") as f:
        for line in f:
            if needle in line:
                out[line.split(needle, 1)[1].strip().rstrip(".")] += 1
    return out


def per_class(topics: Any, classifier: Classifier, prefix: str, state: str) -> Counter[str]:
    """Per class of what arrived at the hub; what the hub itself sent down is left out, and so
    is the bridge's own link state (`state`: the broker's notification, not a site's message)."""
    out: Counter[str] = Counter()
    for t in topics:
        if t.startswith(prefix + "hub/"):
            continue
        if t == state:
            out["link state"] += 1
            continue
        if t.startswith("$SYS"):
            out["$SYS"] += 1
        elif t.startswith(prefix):
            out[classifier.classify(t[len(prefix) :]).direction] += 1
        else:
            out["unprefixed"] += 1
    return out


def run(policy: Policy, repo: Path, info: LabInfo, args: argparse.Namespace, tmp: Path) -> None:
    classifier = Classifier(policy)
    prefix = policy.site.hub.bridge.remote_prefix
    hub_log = Path(info.mqtt["hub"]["log"])
    site_log = Path(info.layout.state) / MOSQUITTO_LOG
    snapshot = Path(info.layout.state) / BRIDGE_SNAPSHOT
    sub_out = tmp / "hub-sub.txt"
    sub = hub_subscriber(info, sub_out)
    cell = [sys.executable, "-m", "cell.cli", "bridge", "monitor", "--repo", str(repo), "--json"]
    monitor = subprocess.Popen(cell, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 15
    while not (snapshot.exists() and json.loads(snapshot.read_text())["seen_since"]):
        if monitor.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the monitor did not start: {monitor.communicate()}")
        time.sleep(0.05)
    time.sleep(0.5)
    print(
        f"lab up; {args.publishers} site publishers at {args.rate:,}/s and the hub at "
        f"{args.down_rate:,}/s for {args.seconds:g} s ..."
    )
    t0 = time.monotonic()
    pubs = start_publishers(info, args)
    results = []
    for p in pubs:
        assert p.stdout is not None
        results.append(json.loads(p.stdout.read()))
        p.wait()
    sent_for = time.monotonic() - t0
    wait_quiet(sub_out)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    monitor.send_signal(signal.SIGTERM)
    unexpected_out, _ = monitor.communicate(timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # only the monitor was reaped between
    monitor_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    sub.terminate()
    sub.wait(timeout=10)

    hub_result = results.pop() if args.down_rate else None
    true: Counter[str] = Counter()
    qos1_up: set[str] = set()
    for r in results:
        for i, n in r["qos0"].items():
            template = MIX[int(i)][1]
            true[classifier.classify(template.format(c=1, id="x")).direction] += n
        for t in r["qos1_acked"]:
            d = classifier.classify(t).direction
            true[d] += 1
            if d == "up":
                qos1_up.add(t)
    commands = {t[len(prefix) :] for t in hub_result["qos1_acked"]} if hub_result else set()
    total = sum(true.values()) + len(commands)
    unacked = sum(r["unacked"] for r in results)
    achieved = sum(r["sent"] for r in results) / max(r["elapsed"] for r in results)

    parser = LogParser(bridge_client_id(policy))
    with hub_log.open(errors="replace") as f:
        at_hub_log = [
            e.topic
            for e in parser.events(f)
            if isinstance(e, Publish) and e.kind == "received" and e.client == parser.bridge
        ]
    came_down = bridge_received(site_log, bridge_local_client_id(policy))
    true["down"] = len(came_down)  # what the bridge published on the site's bus (its log)
    down_classes = Counter(classifier.classify(t).direction for t in came_down)
    state = bridge_state_topic(policy)
    hub_classes = per_class(at_hub_log, classifier, prefix, state)
    sub_topics = sub_out.read_text(errors="replace").splitlines()
    sub_classes = per_class(sub_topics, classifier, prefix, state)
    delivered = {t[len(prefix) :] for t in at_hub_log if t.startswith(prefix) and t != state}
    lost = qos1_up - delivered
    lost_down = commands - set(came_down)
    forbidden_log = sum(n for k, n in hub_classes.items() if k not in ("up", "link state"))
    forbidden_sub = sum(n for k, n in sub_classes.items() if k not in ("up", "$SYS", "link state"))
    forbidden_down = sum(n for k, n in down_classes.items() if k != "down")
    final = json.loads(snapshot.read_text())
    seen = final["seen"]

    def line(label: str, value: object, target: str = "") -> None:
        print(f"  {label:<44} {value!s:<34} {target}")

    print(
        f"\nsent {total:,} messages in {sent_for:.1f} s: {achieved:,.0f}/s (asked {args.rate:,}/s)"
    )
    line("true counts on the site's bus", dict(true))
    line("QoS 1 publishes never acknowledged", unacked, "(target 0)")
    line("delivered at the hub (hub log), per class", dict(hub_classes))
    line("received by a subscriber at the hub", dict(sub_classes))
    line(
        "forbidden at the hub (log / subscriber)",
        f"{forbidden_log} / {forbidden_sub}",
        "(target 0)",
    )
    line("QoS 1 up messages lost", f"{len(lost)} of {len(qos1_up):,}", "(target 0)")
    if hub_result is not None:
        sent_down = sum(hub_result["qos0"].values()) + len(commands)
        line("hub -> site: sent at the hub / came down", f"{sent_down:,} / {len(came_down):,}")
        line("came down outside every down rule", forbidden_down, "(target 0)")
        line(
            "QoS 1 commands lost on the way down",
            f"{len(lost_down)} of {len(commands):,}",
            "(target 0)",
        )
    exact = all(seen[c] == true.get(c, 0) for c in CLASSES)
    line("monitor: seen per class", seen, "(exact)" if exact else "(NOT exact)")
    crossed = sum(
        1 for t in at_hub_log if t != state
    )  # the link state is the broker's, not crossed
    line("monitor: crossed up (vs hub log)", f"{final['crossed']['up']} vs {crossed}")
    line("monitor: unexpected publishes", final["unexpected_total"], "(target 0)")
    per_msg = monitor_cpu / max(total, 1) * 1e6
    line("monitor: CPU time", f"{monitor_cpu:.1f} s ({per_msg:.1f} µs per message)")
    line("monitor: bridge link", f"{final['link']['state']}, {final['link']['connects']} connects")
    drops = f"bridge {final['bridge_dropping']}, monitor {final['monitor_dropping']}"
    line("broker queue overflows (episodes)", drops, "(target 0, 0)")
    line("hub dropped for (queue full, episodes)", dict(dropping(hub_log)) or "nobody")
    site_mb = site_log.stat().st_size / 1e6
    line("site broker log written", f"{site_mb:,.0f} MB")
    if unexpected_out.strip():
        print("unexpected publishes reported live:\n" + unexpected_out.decode()[:2000])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="how long to publish")
    ap.add_argument("--rate", type=int, default=20_000, help="messages per second, all publishers")
    ap.add_argument(
        "--publishers",
        type=int,
        default=4,
        choices=range(1, MAX_PUBLISHERS + 1),
        metavar="N",
        help=f"publisher processes (1-{MAX_PUBLISHERS})",
    )
    ap.add_argument(
        "--down-rate", type=int, default=1000, help="messages per second from the hub (0: none)"
    )
    args = ap.parse_args()
    site_id = f"bench-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_site(Path(tmp), site_id)
        policy = load_policy(repo)
        try:
            info = lab_up(policy, apply=apply_lab)
            run(policy, repo, info, args, Path(tmp))
        finally:
            lab_down(site_id)


if __name__ == "__main__":
    main()
