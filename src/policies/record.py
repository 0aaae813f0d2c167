"""The base of every typed record Cell writes and reads back (journal, ledger, snapshots, status)."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator


class Record(BaseModel):
    """Strict: a record read back must be one this code wrote (`extra="forbid"`)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _drop_derived(cls, data: Any) -> Any:
        """Computed fields are written out for readers, and recomputed when read back: a
        document's own derived values are never believed."""
        derived = _derived(cls)
        if derived and isinstance(data, dict) and derived & data.keys():
            return {k: v for k, v in data.items() if k not in derived}
        return data

    def to_doc(self) -> dict[str, Any]:
        """The record as JSON-ready data (what `--json` prints and files hold)."""
        return self.model_dump(mode="json", by_alias=True)


@cache
def _derived(cls: type[Record]) -> frozenset[str]:
    """A model's computed field names, looked up once per class: pydantic answers
    `model_computed_fields` slowly (~0.1 ms) for a model without any, on every validation."""
    return frozenset(cls.model_computed_fields)


def first_error(e: ValidationError) -> str:
    """One line for people: where in the document, and what is wrong there."""
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top)"
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{where}: {err['msg']}{more}"
