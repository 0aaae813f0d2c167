"""The site policy: model, loading with source positions, validation, topic-filter algebra.

This package imports nothing else of Cell's; every other package builds on it.

`Policy` and `load_policy` are loaded on first use (PEP 562): building the policy model costs
a quarter of a second, and a command that only needs `policies.layout` or `policies.errors`
(`cell console`, `cell status`) should not pay it at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from policies.errors import CellError, Diagnostic, PolicyError

if TYPE_CHECKING:
    from policies.load import load_policy
    from policies.model import Policy

__all__ = ["CellError", "Diagnostic", "Policy", "PolicyError", "load_policy"]


def __getattr__(name: str) -> Any:
    if name == "Policy":
        from policies.model import Policy

        return Policy
    if name == "load_policy":
        from policies.load import load_policy

        return load_policy
    raise AttributeError(f"module 'policies' has no attribute {name!r}")
