"""The ledger's rules: pure Python, no HTTP, no SQL."""
