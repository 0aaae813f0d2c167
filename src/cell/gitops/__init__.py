"""GitOps for the Cell: the apply lifecycle (`lifecycle`: apply, rollback, reconcile, confirm),
recovery after a kill (`recovery`), confirm deadlines (`confirm`) and the process that acts on one
(`waiter`). Trust itself (git signature verification) lives in `policies.trust`; the journal, the
ledger and history in `cell.store`; drift in `cell.drift`.
"""
