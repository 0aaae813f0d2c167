"""The daemon's side of the policy: `verify:` intervals in site.yaml (defaults, file:line errors)
and the status bus kept to the Cell (no local client may publish under `cell/`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Site
from policies import PolicyError, load_policy


def errors(root: Path) -> list[str]:
    with pytest.raises(PolicyError) as exc:
        load_policy(root)
    return [str(d) for d in exc.value.diagnostics if not d.warning]


def test_defaults_an_operator_expects(example: Path) -> None:
    v = load_policy(example).site.verify
    assert (v.probe_interval, v.drops_interval, v.dns_interval) == ("10m", "10s", "5s")
    assert (v.capture_interval, v.publish_interval, v.capture_drop_threshold) == ("30s", "30s", 0)
    assert v.probe_timeout == "2s"


def test_intervals_are_read_and_bad_ones_named_with_their_place(site: Site) -> None:
    site.write("site.yaml", site.text("site.yaml") + "verify:\n  probe_interval: 10s\n")
    assert load_policy(site.root).site.verify.probe_interval == "10s"
    site.write("site.yaml", site.text("site.yaml").replace("10s", "10 minutes"))
    line = site.line_of("site.yaml", "probe_interval")
    (err,) = errors(site.root)
    assert f"site.yaml:{line}:" in err and "duration" in err
    site.write("site.yaml", site.text("site.yaml").replace("10 minutes", "10m\n  probes: 5m"))
    (err,) = errors(site.root)
    assert f"site.yaml:{line + 1}:" in err


def test_a_probe_timeout_past_30s_is_refused_with_its_place(site: Site) -> None:
    site.write("site.yaml", site.text("site.yaml") + "verify:\n  probe_timeout: 5s\n")
    assert load_policy(site.root).site.verify.probe_timeout == "5s"
    site.write("site.yaml", site.text("site.yaml").replace("5s", "31s"))
    line = site.line_of("site.yaml", "probe_timeout")
    (err,) = errors(site.root)
    assert f"site.yaml:{line}:" in err and "at most 30s" in err


def test_no_local_client_may_publish_under_cell(site: Site) -> None:
    site.edit("mqtt.yaml", 'publish: ["site/door-01/#"]', 'publish: ["site/door-01/#", "+/status"]')
    line = site.line_of("mqtt.yaml", "door-01")
    (err,) = errors(site.root)
    assert f"mqtt.yaml:{line}:" in err
    assert "overlaps the Cell's status bus 'cell/#' (e.g. 'cell/status')" in err


def test_a_client_may_read_the_status_bus(example: Path) -> None:
    policy = load_policy(example)
    console = next(c for c in policy.mqtt.clients if c.username == "console")
    assert console.subscribe == ["cell/#"] and console.publish == []
    up = {r.pattern for r in policy.mqtt.topics if r.direction == "up"}
    assert {"cell/status", "cell/availability"} <= up


@pytest.mark.parametrize("grant", ["sites/#", "sites/+/cell/+", "sites/lisbon-01/cell/bridge"])
def test_no_local_client_may_forge_the_bridge_link_state(site: Site, grant: str) -> None:
    """The broker publishes 1/0 on `sites/<id>/cell/bridge` as the bridge goes up and down; the
    monitor and the hub believe it. A client that could write it could show a dead bridge as up."""
    site.edit("mqtt.yaml", 'publish: ["site/door-01/#"]', f'publish: ["site/door-01/#", "{grant}"]')
    line = site.line_of("mqtt.yaml", "door-01")
    (err,) = errors(site.root)
    assert f"mqtt.yaml:{line}:" in err
    assert f"'{grant}', which covers the bridge's link state 'sites/lisbon-01/cell/bridge'" in err


def test_a_client_may_publish_beside_the_link_state(site: Site) -> None:
    site.edit(
        "mqtt.yaml", 'publish: ["site/door-01/#"]', 'publish: ["site/door-01/#", "sites/+/x"]'
    )
    load_policy(site.root)  # no error: it does not reach cell/bridge
