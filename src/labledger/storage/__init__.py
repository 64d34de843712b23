"""SQL storage for the ledger (SQLite and PostgreSQL), its schema and migrations."""
