"""Names on the site's bus that belong to the Cell and its broker, not to any policy rule.

Validation keeps clients off them (`policies.validate_mqtt`); the renderer, the bridge monitor
and the fleet view name them from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from policies.model import Policy

STATUS_BUS = "cell/#"
"""The Cell's own status bus: only the daemon (user `cell`) publishes under it."""
BRIDGE_STATE_SUFFIX = "cell/bridge"
"""The bridge's link state topic, under the site's remote prefix (see `bridge_state_topic`)."""


def bridge_state_topic(policy: Policy) -> str:
    """The retained topic where mosquitto publishes 1/0 as the bridge goes up/down: the same
    name locally and at the hub (`notification_topic`), under the site's prefix, so the hub's
    fleet view reads `sites/<id>/cell/bridge` next to the site's bridged `cell/status`."""
    hub = policy.site.hub
    if hub is None:  # sealed: no bridge, so no link state crosses; the name stays local
        return BRIDGE_STATE_SUFFIX
    return f"{hub.bridge.remote_prefix}{BRIDGE_STATE_SUFFIX}"
