"""The `cell` command line: one module per command group; handlers parse and format, nothing else.

`main` (in `main.py`) is the only place that turns errors into exit codes.
"""

from __future__ import annotations

from cell.cli.main import main

__all__ = ["main"]
