"""The pydantic models of the three policy files (`site.yaml`, `network.yaml`, `mqtt.yaml`).

The models check shape and single values; rules that span fields or files (references, overlaps,
subnets) live in `policies.validate`. Every model forbids unknown keys: a typo must never silently
weaken a policy. Models are frozen: a loaded policy is a value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from policies.errors import Diagnostic
from policies.recipients import check_recipient
from policies.signers import Signer
from policies.types import (
    AbsPath,
    Duration,
    FreeText,
    Hostname,
    HostOrIP,
    IfName,
    IPv4,
    IPv4Net,
    Name,
    Port,
    PortProto,
    SiteId,
    Size,
    TimeZone,
    TopicFilter,
    TopicPrefix,
    Username,
    duration_seconds,
)
from policies.yamlsrc import Source


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


# --- site.yaml --------------------------------------------------------------------------------


class SiteInfo(Strict):
    id: SiteId = Field(
        description="Short stable id: [a-z0-9-], 1..32 chars; used in names and prefixes."
    )
    name: FreeText = Field(description="Human name of the site, shown in the console.")
    timezone: TimeZone = Field(
        default="UTC",
        description="IANA time zone of the site (e.g. Europe/Lisbon): 'today' in counts and"
        " reports is the site's calendar day in this zone.",
    )
    mode: Literal["connected", "sealed"] = Field(
        default="connected",
        description="connected (default): the hub and the flows of the policy; sealed: an"
        " air-gapped site, nothing leaves (no hub, no bridge, no flow to wan, no up/down topic).",
    )


class Tls(Strict):
    cafile: AbsPath = Field(
        description="CA that signed the hub's certificate (the only CA trusted)."
    )
    certfile: AbsPath = Field(description="The Cell's client certificate, presented to the hub.")
    keyfile: AbsPath = Field(description="The private key of `certfile`.")


class Endpoint(Strict):
    address: HostOrIP = Field(description="Hostname or IPv4 address outside the site.")
    port: Port = Field(description="TCP port, 1..65535.")


class BridgeEndpoint(Endpoint):
    tls: Tls | None = Field(
        default=None, description="Mutual TLS to the hub; required unless `insecure`."
    )
    insecure: bool = Field(
        default=False, description="Bridge without TLS. Validation warns; never on a real site."
    )
    remote_prefix: TopicPrefix = Field(
        description="Prepended at the hub to topics going up; stripped coming down."
    )

    @model_validator(mode="after")
    def _tls_or_insecure(self) -> BridgeEndpoint:
        if self.tls is None and not self.insecure:
            raise ValueError(
                "the bridge needs `tls: {cafile, certfile, keyfile}` (or `insecure: true`, not advised)"
            )
        return self


class Drift(Strict):
    mode: Literal["alert", "reconcile"] = Field(
        default="alert",
        description="On drift: only alert (default), or re-apply the applied commit.",
    )
    interval: Duration = Field(
        default="60s", description="Period of the full comparison behind the event watchers."
    )


PROBE_TIMEOUT_MAX = 30


def _probe_timeout(value: str) -> str:
    if duration_seconds(value) > PROBE_TIMEOUT_MAX:
        raise ValueError(
            f"at most {PROBE_TIMEOUT_MAX}s: every flow that gets no answer waits this long, "
            "and a run probes them one after another"
        )
    return value


class Verify(Strict):
    """How often the daemon (`cell run`) proves the promise again (docs/daemon.md)."""

    probe_interval: Duration = Field(
        default="10m", description="Period of the scheduled probe run (the segregation check)."
    )
    drops_interval: Duration = Field(
        default="10s", description="Period of the drop-counter poll into the store."
    )
    dns_interval: Duration = Field(
        default="5s", description="Period of the DNS sinkhole counter's read of the query logs."
    )
    capture_interval: Duration = Field(
        default="30s", description="Period of the capture ring's coverage check."
    )
    publish_interval: Duration = Field(
        default="30s",
        description="The status is published on every change and at least this often.",
    )
    probe_timeout: Annotated[Duration, AfterValidator(_probe_timeout)] = Field(
        default="2s",
        description="How long a probe waits for an answer (a slow hub link may want more).",
    )
    capture_drop_threshold: int = Field(
        default=0,
        ge=0,
        description="Kernel capture drops tolerated before the capture check fails.",
    )


class Hub(Strict):
    bridge: BridgeEndpoint = Field(description="The one MQTT bridge to the central hub.")
    management: list[Endpoint] = Field(
        default=[], description="Device-management endpoints (HTTPS)."
    )


Recipient = Annotated[str, Field(max_length=16384), AfterValidator(check_recipient)]


class Evidence(Strict):
    recipients: list[Recipient] = Field(
        default=[],
        description="Who may read incident packs (BYOK): age recipients (age1...) or SSH public"
        " keys. When set, `cell incident` writes only a pack encrypted with age to them.",
    )


class SiteFile(Strict):
    site: SiteInfo = Field(description="Who the site is.")
    hub: Hub | None = Field(
        default=None,
        description="The hub's bridge and management endpoints: the only places the Cell talks"
        " to. Required, except on a sealed site, which has none.",
    )
    drift: Drift = Field(
        default=Drift(), description="What the drift watcher does when live differs from applied."
    )
    evidence: Evidence = Field(
        default=Evidence(), description="Incident evidence packs: who may read them."
    )

    @model_validator(mode="after")
    def _hub_unless_sealed(self) -> SiteFile:
        if self.hub is None and self.site.mode != "sealed":
            raise ValueError(
                "`hub:` is required (the bridge to the hub), unless `site.mode: sealed`"
            )
        return self

    verify: Verify = Field(
        default=Verify(), description="How often the daemon probes, polls and publishes."
    )


# --- network.yaml -----------------------------------------------------------------------------


class Wan(Strict):
    interface: IfName = Field(description="The Internet-facing interface.")
    resolvers: list[IPv4] = Field(
        default=[],
        description="Upstream DNS servers for the Cell's own lookups; when empty, any WAN address on 53.",
    )
    nat: bool = Field(
        default=True,
        description="Traffic a flow lets out leaves with the Cell's WAN address (masquerade);"
        " false when the uplink routes the site's subnets itself.",
    )


class Vlan(Strict):
    name: Name = Field(description="Unique VLAN name, used in flows, counters and log prefixes.")
    id: int = Field(ge=1, le=4094, description="802.1Q VLAN id, 1..4094.")
    interface: IfName = Field(description="The Cell's interface on this VLAN (e.g. eth0.10).")
    subnet: IPv4Net = Field(description="The VLAN's IPv4 subnet (host bits zero).")
    gateway: IPv4 = Field(description="The Cell's address on this VLAN; inside `subnet`.")
    internet: bool = Field(
        default=True, description="false: no flow from this VLAN may leave the site."
    )
    port: IfName | None = Field(
        default=None,
        description="The link that carries this VLAN's frames (an access port) when it is not"
        " the trunk's 802.1Q subinterface `vlanID`; `interface` is a macvlan on it (docs/links.md).",
    )
    probe: IPv4 | None = Field(
        default=None,
        description="The address reserved for in-place probes on this VLAN (`cell probe`); no"
        " host may use it. Default: the highest free address of the subnet.",
    )


class Host(Strict):
    name: Name = Field(description="Unique host name, usable as a flow endpoint.")
    vlan: Name = Field(description="The VLAN the host lives on.")
    address: IPv4 = Field(description="The host's address, inside its VLAN's subnet.")


class Flow(Strict):
    source: str = Field(alias="from", max_length=64, description="VLAN, host, or `gateway`.")
    to: str = Field(
        max_length=64, description="VLAN, host, `gateway`, `wan`, `hub.bridge` or `hub.management`."
    )
    service: Name | None = Field(
        default=None,
        description="A key of `services`; omitted for `hub.*`, whose port is in site.yaml.",
    )


class DnsRetention(Strict):
    events: Duration = Field(
        default="7d", description="How long each counted query is kept (`cell dns log`)."
    )
    daily: Duration = Field(
        default="400d", description="How long daily counts per (client, name) are kept."
    )


class Dns(Strict):
    sinkhole: list[Name] = Field(
        default=[], description="VLANs whose every query is answered locally."
    )
    local_names: dict[Hostname, IPv4] = Field(
        default={}, description="Names the sinkhole answers with an address."
    )
    retention: DnsRetention = Field(
        default=DnsRetention(), description="How long the Cell keeps what the sinkhole counted."
    )


class CaptureWan(Strict):
    enabled: bool = Field(default=False, description="Keep a rolling capture of WAN egress.")
    retention: Duration = Field(default="24h", description="How long capture files are kept.")
    rotate: Duration = Field(default="1h", description="How often a new capture file is started.")
    max_disk: Size = Field(
        default="2GiB", description="Disk cap for the ring; the oldest files go first."
    )


class Capture(Strict):
    wan: CaptureWan = Field(default=CaptureWan(), description="The WAN egress capture ring.")


class WanAddress(Strict):
    address: IPv4 = Field(description="The Cell's static address on the WAN link.")
    prefixlen: int = Field(ge=8, le=32, description="Its prefix length (e.g. 30).")
    gateway: IPv4 = Field(description="The uplink's router: the Cell's default route.")


class Links(Strict):
    trunk: IfName | None = Field(
        default=None,
        description="The 802.1Q trunk that carries the VLANs: a VLAN without `port` gets the"
        " subinterface `vlanID` of it (e.g. vlan10), made by `cell apply`.",
    )
    wan: WanAddress | None = Field(
        default=None,
        description="Static WAN addressing, set by `cell apply`; omitted: the uplink's DHCP"
        " client owns the WAN address and the default route.",
    )
    ipv6_forwarding: bool = Field(
        default=False, description="Forward IPv6 (the firewall is IPv4: leave it off)."
    )


class NetworkFile(Strict):
    wan: Wan = Field(description="The Internet side of the Cell.")
    links: Links = Field(
        default=Links(), description="How the VLANs and the WAN reach the Cell (its own links)."
    )
    vlans: list[Vlan] = Field(min_length=1, description="The site's VLANs.")
    hosts: list[Host] = Field(default=[], description="Named hosts; an address per host.")
    services: dict[Name, list[PortProto]] = Field(
        default={}, description="Service name -> list of PORT/PROTO."
    )
    flows: list[Flow] = Field(
        default=[], description="Connections that may be opened; everything else is dropped."
    )
    dns: Dns = Field(default=Dns(), description="The DNS sinkhole.")
    capture: Capture = Field(default=Capture(), description="Packet capture for incident response.")


# --- mqtt.yaml --------------------------------------------------------------------------------

Direction = Literal["up", "down", "local", "never"]


class BridgeSettings(Strict):
    name: Name = Field(description="The bridge connection's name.")
    default: Literal["local", "never"] = Field(
        default="local", description="Direction of topics no rule matches."
    )


class TopicRule(Strict):
    pattern: TopicFilter = Field(
        description="MQTT topic filter ('+' a whole level, '#' only last)."
    )
    direction: Direction = Field(
        description="up (↑hub), down (↓hub), local (✗ stays local), never (✗ never bridged)."
    )
    qos: Literal[0, 1, 2] = Field(default=1, description="QoS on the bridge for up/down rules.")
    tier: Literal[1, 2, 3] | None = Field(
        default=None, description="Data tier; tier 1 must be never or local."
    )
    reason: FreeText | None = Field(default=None, description="Why, shown to operators.")


class Client(Strict):
    username: Username = Field(
        description="Login of a local client; anonymous clients are refused."
    )
    publish: list[TopicFilter] = Field(default=[], description="Filters the client may publish to.")
    subscribe: list[TopicFilter] = Field(
        default=[], description="Filters the client may subscribe to."
    )


class Listener(Strict):
    port: Port = Field(default=1883, description="TCP port of the local broker's listener.")


class MqttFile(Strict):
    bridge: BridgeSettings = Field(
        default=BridgeSettings(name="hub"),
        description="The bridge to the hub. Required unless the site is sealed (then refused).",
    )
    listener: Listener = Field(default=Listener(), description="The local broker's listener.")
    topics: list[TopicRule] = Field(default=[], description="The bridge's topic policy.")
    clients: list[Client] = Field(default=[], description="The local broker's ACL.")


@dataclass(frozen=True)
class Policy:
    """A validated site policy, with the source positions of everything in it."""

    site: SiteFile
    network: NetworkFile
    mqtt: MqttFile
    signers: tuple[Signer, ...]
    sources: dict[str, Source]
    warnings: tuple[Diagnostic, ...] = ()
    vlans: dict[str, Vlan] = field(init=False)
    hosts: dict[str, Host] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "vlans", {v.name: v for v in self.network.vlans})
        object.__setattr__(self, "hosts", {h.name: h for h in self.network.hosts})

    @property
    def sealed(self) -> bool:
        """`site.mode: sealed`: an air-gapped site; nothing at all leaves it."""
        return self.site.site.mode == "sealed"

    def where(self, file: str, path: tuple[str | int, ...]) -> tuple[str, int, int]:
        """(display file, line, col) of a value in one of the policy files."""
        src = self.sources[file]
        line, col = src.at(path)
        return src.file, line, col
