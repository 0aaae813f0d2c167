"""GitOps for the Cell: signed-commit trust, the apply lifecycle, confirm and rollback, the journal
and audit ledger, the drift watcher, and history.

Modules: `state` (the state directory, atomic writes, locks, the store of applied commits),
`journal`, `ledger`, `target` (which gateway and state directory), `lifecycle` (apply, rollback,
reconcile, confirm, recovery), `confirm` (deadlines) and `waiter` (the process that acts on one),
`drift` (one-shot comparisons), `report` (their text, their ledger record), `watch` with `firewall.monitor`
and `inotify` (the event-driven watcher), `history`, `cli`. Trust itself (git signature
verification) lives in `policies.trust`.
"""
