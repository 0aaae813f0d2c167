"""`python -m cell.cli`: the same entry point as the `cell` script."""

from __future__ import annotations

import sys

from cell.cli.main import main

sys.exit(main())
