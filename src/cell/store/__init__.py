"""What the Cell keeps: the state directory (`statedir`), the journal of what is applied, the
hash-chained audit ledger, the history of applied commits, the evidence key, and the store of
counts and history (SQLite, WAL: `db`, `dns`, `drops`, `probes`). Every service reads these."""

from __future__ import annotations

from cell.store.db import FILE, Retention, Store, StoreError, open_store

__all__ = ["FILE", "Retention", "Store", "StoreError", "open_store"]
