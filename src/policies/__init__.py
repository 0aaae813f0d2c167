"""The site policy: model, loading with source positions, validation, topic-filter algebra.

This package imports nothing else of Cell's; every other package builds on it.
"""

from __future__ import annotations

from policies.errors import CellError, Diagnostic, PolicyError
from policies.load import load_policy
from policies.model import Policy

__all__ = ["CellError", "Diagnostic", "Policy", "PolicyError", "load_policy"]
