"""The Cell's store of counts and history (SQLite, WAL): see `cell.store.db`."""

from __future__ import annotations

from cell.store.db import FILE, Retention, Store, StoreError, open_store

__all__ = ["FILE", "Retention", "Store", "StoreError", "open_store"]
