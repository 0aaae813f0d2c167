"""The confirm waiter: `python -m cell.gitops.waiter STATE_DIR`, started detached by
`cell apply --confirm`. It sleeps until the deadline in STATE/confirm.json, then rolls back unless
the deadline was confirmed (file gone) or replaced in the meantime. Exits when there is nothing
left to wait for.
"""

from __future__ import annotations

import sys
import time

from cell.gitops import confirm, lifecycle
from cell.store.statedir import State
from policies.clock import now_iso
from policies.errors import CellError


def main(argv: list[str]) -> int:
    state = State(argv[0])
    while True:
        doc = confirm.read(state)
        if doc is None or not state.root.is_dir():
            return 0
        left = float(doc.get("deadline_unix", 0)) - time.time()
        if left <= 0:
            break
        time.sleep(min(left, 1.0))
    try:
        for note in lifecycle.settle(state):
            print(f"{now_iso()} {note}", flush=True)
    except CellError as e:
        print(f"{now_iso()} rollback after the confirm deadline failed: {e}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
