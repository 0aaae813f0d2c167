"""The hub's addresses as the live firewall knows them: what the Cell's resolver answered for the
hub names (IP literals are in the policy itself). `cell pcap destinations` and `cell incident`
read them to tell the hub from any other WAN address."""

from __future__ import annotations


def hub_addresses(netns: str | None) -> dict[str, str]:
    """Address -> hub.bridge / hub.management, from the live firewall's hub sets (what the
    Cell's resolver answered for the hub names; IP literals are in the policy itself)."""
    from firewall import nft as fw

    try:
        table = fw.read_table(netns) or []
    except Exception:  # no permission or no table: no hub by name is known, and it shows
        return {}
    out: dict[str, str] = {}
    for obj in table:
        s = obj.get("set")
        if not s or not fw.DYNAMIC_SETS.fullmatch(s.get("name", "")):
            continue
        kind = "hub.bridge" if s["name"] == "hub_bridge" else "hub.management"
        for e in s.get("elem", []):
            val = e.get("elem", {}).get("val") if isinstance(e, dict) else e
            if isinstance(val, str):
                out[val] = kind
    return out
