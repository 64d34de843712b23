"""labledger: the Lab Attempt Ledger."""

__version__ = "0.1.0"
