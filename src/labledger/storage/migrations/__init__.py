"""Alembic environment and revisions (`labledger migrate`)."""
