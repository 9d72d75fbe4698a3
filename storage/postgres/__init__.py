"""Postgres: models, Alembic migrations and the enrichment store."""

from storage.postgres.migrate import upgrade, upgrade_async
from storage.postgres.store import PostgresError, PostgresStore, enrichment_of

__all__ = ["PostgresError", "PostgresStore", "enrichment_of", "upgrade", "upgrade_async"]
