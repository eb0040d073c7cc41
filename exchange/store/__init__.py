"""Store: persistence behind one async interface (exchange.store.base.Store); SQLite by default."""
