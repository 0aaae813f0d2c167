"""Render every artifact of a policy, plus a manifest of their digests. Pure.

The manifest makes "what exactly was applied" a comparison of hashes: the journal stores it, and
`cell history --render` re-renders an old commit and must arrive at the same digests.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bridge.render import render_mosquitto
from firewall.compile import compile_ruleset, render_json
from firewall.dns import render_dnsmasq
from firewall.links import render_links
from firewall.nfttext import render_text
from firewall.probes import render_probes
from policies import Policy
from policies.fsutil import atomic_write
from policies.layout import (
    DEFAULT_LAYOUT,
    LINKS,
    MANIFEST,
    PROBES,
    RULESET_JSON,
    RULESET_NFT,
    Layout,
)


def render_all(policy: Policy, layout: Layout = DEFAULT_LAYOUT) -> dict[str, bytes]:
    """Relative path -> bytes for every artifact, `manifest.json` included. Deterministic."""
    objects = compile_ruleset(policy)
    files: dict[str, bytes] = {}
    files.update(render_mosquitto(policy, layout))
    files[RULESET_JSON] = render_json(objects)
    files[RULESET_NFT] = render_text(objects)
    files.update(render_dnsmasq(policy, layout))
    files[PROBES] = render_probes(policy)
    files[LINKS] = render_links(policy)
    files[MANIFEST] = render_manifest(policy, files)
    return dict(sorted(files.items()))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def render_manifest(policy: Policy, files: dict[str, bytes]) -> bytes:
    doc = {
        "site": policy.site.site.id,
        "files": {name: digest(data) for name, data in sorted(files.items()) if name != MANIFEST},
    }
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def write_tree(out: Path, files: dict[str, bytes]) -> None:
    """Write rendered files under `out`, each atomically (temp file, fsync, rename)."""
    for name, data in files.items():
        atomic_write(out / name, data)
