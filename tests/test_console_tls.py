"""`cell console --broker HOST:PORT --user --password-file --cafile`, as from an operator's
laptop: a real mosquitto on loopback with TLS (a CA made with openssl, as the lab makes its
own), a password file and an ACL; the daemon's documents published as the user `cell`."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from cell.cli.main import main
from cell.deploy.checks import write_passwd
from cell.lab.tls import make_pki
from consolekit import at_risk, availability, free_port, status_doc

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs mosquitto")


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[int, Path, mqtt.Client]]:
    pki = make_pki(
        tmp_path / "pki", site="t", hub_dns=["localhost"], hub_ips=["127.0.0.1"], cell_cn="cell-t"
    )
    port = free_port()
    write_passwd(tmp_path / "passwd", {"cell": "daemon-secret", "operator": "op-secret"})
    (tmp_path / "acl").write_text(
        "user cell\ntopic readwrite cell/#\n\nuser operator\ntopic read cell/#\n"
    )
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\ncafile {pki.ca}\ncertfile {pki.hub_cert}\nkeyfile {pki.hub_key}\n"
        f"allow_anonymous false\npassword_file {tmp_path / 'passwd'}\nacl_file {tmp_path / 'acl'}\n"
        "persistence false\nuser root\n"
    )
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.PIPE)
    daemon = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-daemon")
    daemon.username_pw_set("cell", "daemon-secret")
    daemon.tls_set(ca_certs=pki.ca)
    try:
        for _ in range(100):
            try:
                daemon.connect("127.0.0.1", port)
                break
            except OSError:
                time.sleep(0.05)
        daemon.loop_start()
        yield port, Path(pki.ca), daemon
    finally:
        daemon.loop_stop()
        broker.terminate()
        broker.wait(10)


def publish(client: mqtt.Client, topic: str, doc: dict[str, object]) -> None:
    import json

    client.publish(topic, json.dumps(doc), qos=1, retain=True).wait_for_publish(5)


def test_operator_login_over_tls(
    tls_broker: tuple[int, Path, mqtt.Client], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port, ca, daemon = tls_broker
    publish(daemon, "cell/availability", availability("online", time.time()))
    publish(daemon, "cell/status", status_doc(time.time()))
    secret = tmp_path / "operator.password"
    secret.write_text("op-secret\n")
    args = [
        "console",
        "--broker",
        f"127.0.0.1:{port}",
        "--user",
        "operator",
        "--password-file",
        str(secret),
    ]
    assert main([*args, "--cafile", str(ca), "--once"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].endswith("◆ DATA · SOVEREIGN ◆"), out
    assert f"bus 127.0.0.1:{port} (TLS)" in out
    publish(daemon, "cell/status", at_risk(time.time()))
    assert main([*args, "--cafile", str(ca), "--once"]) == 3
    assert "▲ DATA · AT RISK ▲" in capsys.readouterr().out

    secret.write_text("wrong\n")
    assert main([*args, "--cafile", str(ca), "--once", "--wait", "2"]) == 3
    last = capsys.readouterr().out.splitlines()[-1]
    assert "not connected to the status bus" in last and last.endswith("? DATA · UNKNOWN ?"), last
