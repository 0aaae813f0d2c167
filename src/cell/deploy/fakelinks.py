"""An in-memory `LinkBackend` for unit tests of the apply stages (no kernel, no root).

It keeps a `LiveNet`, applies a plan the way the kernel seam does (links made with the Cell's
alias, addresses exact, sysctls set), can be told to refuse, and hands back copies, so a test
can compare a snapshot with what a restore made.
"""

from __future__ import annotations

import copy

from cell.errors import ApplyError
from firewall.links import ALIAS, MACVLAN_MODE, LinkPlan, LiveLink, LiveNet, Stack


class FakeLinks:
    def __init__(self, given: list[str] | None = None, stand_in: str | None = None) -> None:
        self.net = LiveNet(links={})
        for name in given or []:
            self.net.links[name] = LiveLink(name=name, kind=stand_in, parent=None, up=True)
        self.refuse: str | None = None
        """A message to raise from the next apply (after it changed the links: a half apply)."""
        self.applied: list[LinkPlan] = []

    def read(self, plan: LinkPlan) -> LiveNet:
        out = copy.deepcopy(self.net)
        out.sysctls = {p: self.net.sysctls.get(p) for p in plan.sysctls}
        return out

    def apply(self, plan: LinkPlan, stand_in: str | None) -> None:
        for spec in plan.links:
            if spec.role == "trunk" and stand_in:
                continue
            have = self.net.links.get(spec.name)
            if have is None:
                if spec.kind == "given" or (spec.kind == "vlan" and stand_in):
                    raise ApplyError(f"links: {spec.name} ({spec.role}) is missing")
                have = LiveLink(
                    name=spec.name,
                    kind=spec.kind,
                    parent=spec.parent,
                    vlan_id=spec.vlan_id,
                    mode=MACVLAN_MODE if spec.kind == "macvlan" else None,
                    alias=f"{ALIAS}{spec.role}",
                )
                self.net.links[spec.name] = have
            if spec.addresses is not None:
                have.addresses = sorted(spec.addresses)
            have.up = True
        wanted = plan.by_name()
        for name in [n for n, lk in self.net.links.items() if (lk.alias or "").startswith(ALIAS)]:
            if name not in wanted:
                del self.net.links[name]
        for r in plan.routes:
            if (r.gateway, r.dev) not in self.net.default_routes:
                self.net.default_routes = [(r.gateway, r.dev)]
        self.net.sysctls.update(plan.sysctls)
        self.applied.append(plan)
        if self.refuse:
            message, self.refuse = self.refuse, None
            raise ApplyError(message)

    def restore(self, snapshot: LiveNet, plan: LinkPlan) -> None:
        sysctls = {**self.net.sysctls, **{k: v for k, v in snapshot.sysctls.items() if v}}
        self.net = copy.deepcopy(snapshot)
        self.net.sysctls = sysctls

    def read_stack(self, plan: LinkPlan) -> Stack:
        """The links as kept; routes, rules and tc as a fresh namespace has them (none)."""
        return Stack(
            self.read(plan),
            routes=[],
            rules=[(255, 0, "all"), (254, 32766, "all"), (253, 32767, "all")],
            tc={},
        )
