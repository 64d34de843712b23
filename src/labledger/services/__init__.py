"""Application services: ingest, integrate, notify, export, archive, reconcile, discovery."""
