"""Loading and validating policies: every error has FILE:LINE:COL, all errors come in one run."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Site
from policies import PolicyError, load_policy


def errors(site: Site) -> list[str]:
    with pytest.raises(PolicyError) as exc:
        load_policy(site.root)
    return [str(d) for d in exc.value.diagnostics]


def one(site: Site, needle: str) -> str:
    found = [e for e in errors(site) if needle in e]
    assert found, f"no error containing {needle!r}"
    return found[0]


def test_example_is_valid(example: Path) -> None:
    p = load_policy(example)
    assert p.site.site.id == "lisbon-01"
    assert len(p.network.vlans) >= 2
    assert p.warnings == ()
    assert len(p.signers) == 2


def test_yaml_syntax_error_has_position(site: Site) -> None:
    site.edit("network.yaml", "  rtsp:  [554/tcp]", "  rtsp:  [554/tcp")
    err = one(site, "YAML syntax error")
    assert err.startswith(f"{site.root}/network.yaml:")


def test_missing_file(site: Site) -> None:
    (site.root / "mqtt.yaml").unlink()
    assert (
        one(site, "mqtt.yaml")
        == f"{site.root}/mqtt.yaml:1:1: file is missing (every site-config repo has it)"
    )


def test_binary_junk(site: Site) -> None:
    (site.root / "site.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    assert "not UTF-8" in one(site, "site.yaml")


def test_nul_byte(site: Site) -> None:
    site.edit("site.yaml", "Lisbon warehouse", "Lisbon\x00warehouse")
    assert "NUL" in one(site, "site.yaml")


def test_huge_string(site: Site) -> None:
    site.edit("site.yaml", "Lisbon warehouse", "x" * 70_000)
    err = one(site, "site.name")
    line = site.line_of("site.yaml", "name: xxx")
    assert err.startswith(f"{site.root}/site.yaml:{line}:")
    assert "at most 200" in err
    assert len(err) < 500


def test_unknown_key_suggests(site: Site) -> None:
    site.edit(
        "network.yaml", "  - {name: nvr,        vlan: cell,", "  - {name: nvr,        vlann: cell,"
    )
    err = one(site, "unknown key 'vlann'")
    line = site.line_of("network.yaml", "vlann:")
    col = site.text("network.yaml").splitlines()[line - 1].index("vlann") + 1
    assert err.startswith(f"{site.root}/network.yaml:{line}:{col}:")
    assert "did you mean 'vlan'" in err


def test_duplicate_key(site: Site) -> None:
    site.edit("site.yaml", "  name: Lisbon warehouse", "  name: Lisbon warehouse\n  name: again")
    assert "duplicate key 'name'" in one(site, "duplicate key")


def test_wrong_type_and_missing_key(site: Site) -> None:
    site.edit("site.yaml", "    port: 8883", '    port: "8883"')
    site.edit("network.yaml", "wan:\n  interface: eth1\n", "wan:\n  interfaces: eth1\n")
    errs = errors(site)
    assert any("hub.bridge.port" in e and "integer" in e for e in errs)
    assert any("missing required key 'interface'" in e for e in errs)


def test_all_errors_in_one_run(site: Site) -> None:
    site.edit("site.yaml", "id: lisbon-01", "id: Lisbon_01")
    site.edit("network.yaml", "address: 10.10.0.11}", "address: 10.20.0.11}")
    site.edit(
        "mqtt.yaml", 'audio/#",          direction: never', 'audio/#",          direction: up'
    )
    errs = errors(site)
    assert any("site.yaml" in e and "site id" in e for e in errs)
    assert (
        any("network.yaml" in e and "outside VLAN 'cameras'" in e for e in errs) is False
    )  # shape error stops site.yaml only
    assert any("tier 1" in e for e in errs) or any("site id" in e for e in errs)


def test_semantic_errors_together(site: Site) -> None:
    site.edit("network.yaml", "address: 10.10.0.11}", "address: 10.20.0.11}")
    site.edit(
        "mqtt.yaml", 'audio/#",          direction: never', 'audio/#",          direction: up'
    )
    errs = errors(site)
    line = site.line_of("network.yaml", "10.20.0.11")
    assert any(
        e.startswith(f"{site.root}/network.yaml:{line}:") and "outside VLAN 'cameras'" in e
        for e in errs
    )
    assert any("mqtt.yaml" in e and "tier 1" in e for e in errs)


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        ("mqtt.yaml", '"site/+/events/#"', '"site/#/events"', "'#' must be the last level"),
        ("mqtt.yaml", '"site/+/events/#"', '"site/a+/events/#"', "'+' must be a whole level"),
        ("mqtt.yaml", '"site/+/events/#"', '"site/+/ev ents/#"', "whitespace"),
        ("mqtt.yaml", '"health/#"', '"health/\\n#"', "control character"),
        (
            "mqtt.yaml",
            '{pattern: "health/#",',
            '{pattern: "$SYS/x",',
            "'$' topics are never bridged",
        ),
        (
            "mqtt.yaml",
            '{pattern: "hub/config/#",',
            '{pattern: "registry/x/#",',
            "overlaps up rule 'registry/#'",
        ),
        (
            "mqtt.yaml",
            'publish: ["site/cam-02/#"]',
            'publish: ["site/cam-02/#", "hub/+/cam-02"]',
            "overlaps down rule 'hub/commands/#'",
        ),
        ("mqtt.yaml", "username: cam-02", "username: cam-01", "duplicate client 'cam-01'"),
        ("mqtt.yaml", "username: cam-02", "username: cell", "reserved"),
        ("mqtt.yaml", "username: cam-02", "username: local.cell-lisbon-01", "bridge's client"),
        ("mqtt.yaml", "username: cam-02", "username: cell-lisbon-01", "bridge's client ids"),
        (
            "mqtt.yaml",
            'publish: ["site/cam-02/#"]',
            'publish: ["site/cam-02/#", "$SYS/broker/connection/#"]',
            "'$' topics are the broker's own",
        ),
        ("network.yaml", "subnet: 10.30.0.0/24", "subnet: 10.30.0.1/24", "is not an IPv4 subnet"),
        (
            "network.yaml",
            "subnet: 10.30.0.0/24, gateway: 10.30.0.1",
            "subnet: 10.20.0.0/23, gateway: 10.20.1.1",
            "overlaps VLAN 'cell'",
        ),
        (
            "network.yaml",
            "{name: sensors, id: 30",
            "{name: sensors, id: 10",
            "duplicate VLAN id '10'",
        ),
        (
            "network.yaml",
            "{name: ai,         vlan: cell,    address: 10.20.0.3}",
            "{name: ai, vlan: cell, address: 10.20.0.2}",
            "duplicate address '10.20.0.2'",
        ),
        (
            "network.yaml",
            "{name: ai,         vlan: cell,",
            "{name: ai,         vlan: kitchen,",
            "unknown VLAN 'kitchen'",
        ),
        (
            "network.yaml",
            "{from: cell,    to: cameras, service: rtsp}",
            "{from: cell, to: cameras, service: rstp}",
            "unknown service 'rstp'",
        ),
        (
            "network.yaml",
            "{from: cell,    to: cameras, service: rtsp}",
            "{from: cel, to: cameras, service: rtsp}",
            "unknown endpoint 'cel'",
        ),
        (
            "network.yaml",
            "{from: cell,    to: cameras, service: rtsp}",
            "{from: cameras, to: wan, service: https}",
            "has `internet: false`",
        ),
        (
            "network.yaml",
            "{from: cell,    to: cameras, service: rtsp}",
            "{from: cam-01, to: hub.bridge}",
            "has `internet: false`",
        ),
        ("network.yaml", "  rtsp:  [554/tcp]", "  rtsp:  [554/sctp]", "PORT/PROTO"),
        ("network.yaml", "  rtsp:  [554/tcp]", "  rtsp:  [70000/tcp]", "PORT/PROTO"),
        (
            "network.yaml",
            "sinkhole: [cameras, sensors]",
            "sinkhole: [sensors]",
            "not in dns.sinkhole",
        ),
        (
            "network.yaml",
            "ntp.site.internal: 10.10.0.1",
            'ntp.site.internal: 10.10.0.1\n    "evil\\nserver=8.8.8.8": 10.10.0.1',
            "not a DNS name",
        ),
        (
            "site.yaml",
            "address: hub.example.eu",
            "address: hub.example.eu\n    insecure: maybe",
            "valid boolean",
        ),
        (
            "site.yaml",
            "remote_prefix: sites/lisbon-01/",
            "remote_prefix: sites/+/",
            "not a topic prefix",
        ),
        (
            "site.yaml",
            "cafile: /etc/cell/tls/hub-ca.pem",
            'cafile: "/etc/cell/tls/hub ca.pem"',
            "whitespace",
        ),
        (
            "site.yaml",
            "address: api.balena-cloud.com",
            "address: 10.10.0.9",
            "inside VLAN 'cameras'",
        ),
    ],
)
def test_rule(site: Site, file: str, old: str, new: str, message: str) -> None:
    site.edit(file, old, new)
    err = one(site, message)
    assert err.split(":")[0].endswith(file)


def test_overlap_names_both_rules_with_lines(site: Site) -> None:
    site.edit("mqtt.yaml", '"site/+/debug/#"', '"+/+/snapshots/#"')
    err = one(site, "overlaps up rule 'registry/#'")
    up_line = site.line_of("mqtt.yaml", '"registry/#"')
    local_line = site.line_of("mqtt.yaml", '"+/+/snapshots/#"')
    assert err.startswith(f"{site.root}/mqtt.yaml:{local_line}:")
    assert f"mqtt.yaml:{up_line}:" in err
    assert "registry/x/snapshots" in err


def test_dollar_rule_prevents_false_overlap(site: Site) -> None:
    site.edit("mqtt.yaml", '{pattern: "bridge/status",', '{pattern: "+/heartbeat",')
    load_policy(
        site.root
    )  # '$SYS/#' (never) and '+/heartbeat' (up) do not meet: '+' skips '$' topics


def test_insecure_is_a_warning(site: Site) -> None:
    text = site.text("site.yaml")
    start = text.index("    tls:")
    end = text.index("    # Every topic")
    site.write("site.yaml", text[:start] + "    insecure: true\n" + text[end:])
    p = load_policy(site.root)
    assert any("without TLS" in str(w) for w in p.warnings)


def test_bad_signers_line(site: Site) -> None:
    with (site.root / "allowed_signers").open("a") as fh:
        fh.write("eve@x ssh-ed25519 not-base64!!\n")
    line = len(site.text("allowed_signers").splitlines())
    assert one(site, "allowed_signers").startswith(f"{site.root}/allowed_signers:{line}:1:")


def test_sinkholed_vlan_may_not_ask_outside_resolvers(site: Site) -> None:
    site.edit("network.yaml", "sinkhole: [cameras, sensors]", "sinkhole: [cameras, sensors, ops]")
    site.edit(
        "network.yaml",
        "{from: ops,     to: wan,     service: https}",
        "{from: ops, to: wan, service: dns}",
    )
    err = one(site, "the sinkhole would be bypassed")
    assert err.startswith(
        f"{site.root}/network.yaml:{site.line_of('network.yaml', 'to: wan, service: dns')}:"
    )
