"""What the Cell keeps: the state directory (`statedir`), the journal of what is applied, the
hash-chained audit ledger, and the history of applied commits. Every service reads these."""
