"""Small duties: the confirm deadline of a pending `apply --confirm`, and the services' logs.

The confirm deadline lives in STATE/confirm.json; its detached waiter acts on it, and so does
this service (whichever comes first holds the apply lock; the other finds nothing to do), so a
waiter killed or lost in a reboot still rolls back on time. Logs: the broker's and both
resolvers' are rotated by size (cell.deploy.logrotate), as mosquitto.conf says `cell run` does.
"""

from __future__ import annotations

from cell.run.service import Context
from cell.run.services.base import Periodic
from cell.run.site import Site


class ConfirmService(Periodic):
    name = "confirm"
    deadline = 60.0

    def interval(self, site: Site) -> float:
        return 1.0

    def once(self, ctx: Context, site: Site) -> None:
        from cell.gitops import confirm, lifecycle

        doc = confirm.read(site.state)
        if doc is None:
            ctx.figure("confirm_deadline", None)
            return
        ctx.figure("confirm_deadline", doc.get("deadline"))
        if confirm.overdue(doc):
            for note in lifecycle.settle(site.state):
                ctx.event("rollback", note, "trust")


class LogRotateService(Periodic):
    name = "logrotate"
    deadline = 60.0

    def interval(self, site: Site) -> float:
        return 10.0

    def once(self, ctx: Context, site: Site) -> None:
        from cell.deploy.logrotate import rotate_all

        rotate_all(site.target)
