"""`FakeNft`: an in-memory nftables backend, for unit tests of the code above the seam.

It honours `firewall.nft.NftBackend`: one `table inet cell` replaced whole by each apply, or not
at all when the check or the apply fails, listed back with handles and zeroed counters as the
kernel lists it. It checks the structure a document must have (one verb per command, Cell's table
only, rules in chains that exist, elements in sets that exist), not nftables' grammar: the
kernel tests prove that the rendered documents load. Tests make it refuse with `fail_check` and
`fail_apply`, and read what happened in `applied` and `calls`.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from firewall.document import (
    FAMILY,
    TABLE,
    Document,
    Json,
    as_dict,
    counters_of,
    dynamic_elements,
    with_dynamic_elements,
)
from firewall.nft import FirewallError, NftBackend

_KINDS = ("table", "chain", "set", "map", "rule", "counter", "element")
_VERBS = ("add", "delete", "flush", "list")


@dataclass
class FakeNft:
    """A namespace's nftables, in memory."""

    netns: str | None = None
    table: list[Json] | None = None
    """The live table as a listing would give it (None: absent)."""
    others: dict[str, str] = field(default_factory=dict)
    """Other tables, `family name` -> listing, for drift's bypass check."""
    applied: list[Json] = field(default_factory=list)
    """Every document that took, in order (resolver-filled elements included)."""
    calls: list[str] = field(default_factory=list)
    """Each call by name: check, apply, list_table, ..."""
    _refuse: dict[str, list[str]] = field(default_factory=lambda: {"check": [], "apply": []})
    _handle: int = 0

    def fail_check(self, message: str = "Error: Could not process rule", times: int = 1) -> None:
        """The next `times` checks (and the dry runs of applies) are refused with `message`."""
        self._refuse["check"] += [message] * times

    def fail_apply(self, message: str = "Error: Could not process rule", times: int = 1) -> None:
        """The next `times` applies pass their dry run and then fail, changing nothing."""
        self._refuse["apply"] += [message] * times

    def check(self, document: Document) -> None:
        self.calls.append("check")
        self._check(_parse(document), "nftables check failed")

    def apply(self, document: Document) -> None:
        self.calls.append("apply")
        doc = with_dynamic_elements(_parse(document), dynamic_elements(self.table))
        failed = "nftables check failed, the previous ruleset stays in force"
        self._check(doc, failed)
        if self._refuse["apply"]:
            message = self._refuse["apply"].pop(0)
            raise FirewallError(
                f"nftables apply failed, the previous ruleset stays in force: {message}"
            )
        self.table = self._run(doc["nftables"], copy.deepcopy(self.table))
        self.applied.append(copy.deepcopy(doc))

    def list_table(self) -> list[Json] | None:
        self.calls.append("list_table")
        return copy.deepcopy(self.table)

    def list_text(self) -> str | None:
        self.calls.append("list_text")
        if self.table is None:
            return None
        lines = [f"table {FAMILY} {TABLE} {{"]
        for obj in self.table:
            ((kind, body),) = obj.items()
            lines.append(f"\t{kind} {json.dumps(body, sort_keys=True)} # handle {body['handle']}")
        return "\n".join([*lines, "}"]) + "\n"

    def other_tables(self) -> dict[str, str]:
        self.calls.append("other_tables")
        return dict(self.others)

    def read_counters(self) -> dict[str, int]:
        self.calls.append("read_counters")
        return counters_of(self.table)

    def delete_table(self) -> None:
        self.calls.append("delete_table")
        self.table = None

    def count(self, counter: str, packets: int = 1) -> None:
        """Packets arrive at a named counter (as a dropped probe would make them)."""
        for obj in self.table or []:
            if obj.get("counter", {}).get("name") == counter:
                obj["counter"]["packets"] += packets
                return
        raise KeyError(f"no counter {counter} in table {FAMILY} {TABLE}")

    def _check(self, doc: Json, failed: str) -> None:
        if self._refuse["check"]:
            raise FirewallError(f"{failed}: {self._refuse['check'].pop(0)}")
        try:
            self._run(doc["nftables"], copy.deepcopy(self.table))
        except (KeyError, TypeError, ValueError) as e:
            part = e.args[1] if len(e.args) > 1 else None
            raise FirewallError(f"{failed}: {e.args[0]}", part) from None

    def _run(self, cmds: list[Any], table: list[Json] | None) -> list[Json] | None:
        """Run the commands on a copy of the table; the copy, or an error naming the command."""
        for cmd in cmds:
            if isinstance(cmd, dict) and set(cmd) == {"metainfo"}:
                continue
            if not isinstance(cmd, dict) or len(cmd) != 1 or next(iter(cmd)) not in _VERBS:
                raise ValueError(f"a command is one of {', '.join(_VERBS)}", cmd)
            ((verb, what),) = cmd.items()
            if not isinstance(what, dict) or len(what) != 1 or next(iter(what)) not in _KINDS:
                raise ValueError(f"{verb} takes one of {', '.join(_KINDS)}", cmd)
            ((kind, body),) = what.items()
            if (body.get("family"), body.get("table", body.get("name"))) != (FAMILY, TABLE):
                raise ValueError(f"only table {FAMILY} {TABLE} is Cell's", cmd)
            if kind == "table" and verb == "delete":
                if table is None:
                    raise ValueError("No such file or directory: table inet cell", cmd)
                table = None
            elif kind == "table" and verb == "add":
                table = table if table is not None else [self._new("table", body)]
            elif verb == "add":
                table = self._add(table, kind, body, cmd)
        return table

    def _add(self, table: list[Json] | None, kind: str, body: Json, cmd: Json) -> list[Json]:
        if table is None:
            raise ValueError("No such file or directory: table inet cell", cmd)
        names = {(k, b.get("name")) for o in table for k, b in o.items()}
        if kind == "rule" and ("chain", body.get("chain")) not in names:
            raise ValueError(f"No such file or directory: chain {body.get('chain')}", cmd)
        if kind == "element":
            target = next(
                (o["set"] for o in table if o.get("set", {}).get("name") == body.get("name")), None
            )
            if target is None:
                raise ValueError(f"No such file or directory: set {body.get('name')}", cmd)
            target["elem"] = [*target.get("elem", []), *body["elem"]]
            return table
        if kind != "rule" and not isinstance(body.get("name"), str):
            raise ValueError(f"a {kind} needs a name", cmd)
        if kind != "rule" and (kind, body["name"]) in names:
            raise ValueError(f"File exists: {kind} {body['name']}", cmd)
        return [*table, self._new(kind, body)]

    def _new(self, kind: str, body: Json) -> Json:
        self._handle += 1
        out = {**copy.deepcopy(body), "handle": self._handle}
        if kind == "counter":
            out.setdefault("packets", 0)
            out.setdefault("bytes", 0)
        return {kind: out}


def _parse(document: Document) -> Json:
    try:
        return as_dict(document)
    except ValueError as e:
        raise FirewallError(f"not an nftables document: {e}") from None


def _conforms(fake: FakeNft) -> NftBackend:
    return fake  # mypy checks that FakeNft honours the protocol
