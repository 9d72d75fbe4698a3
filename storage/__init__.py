"""Async storage clients: S3 (more stores come with the sink agents)."""

from storage.errors import StorageError
from storage.s3 import S3Error, S3Storage, album_summary_key, media_key

__all__ = ["S3Error", "S3Storage", "StorageError", "album_summary_key", "media_key"]
