"""Async storage clients: S3, Postgres, Qdrant, Neo4j, and Telegram ingestion."""

from storage.errors import StorageError
from storage.postgres import PostgresError, PostgresStore
from storage.s3 import S3Error, S3Storage, album_summary_key, media_key

__all__ = [
    "PostgresError",
    "PostgresStore",
    "S3Error",
    "S3Storage",
    "StorageError",
    "album_summary_key",
    "media_key",
]
