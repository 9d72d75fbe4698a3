"""Telegram ingestion: pure album building, recordings, the source protocol.

The ingestor (`storage.telegram.ingestor`), the Telethon adapter (`.client`) and the live
follower (`.live`) are imported from their modules: they depend on storage.postgres, which
depends on the pure part here.
"""

from storage.telegram.albums import AlbumError, album_id_for, media_object_id_for, post_id_for
from storage.telegram.recording import RecordingSource, RecordingWriter
from storage.telegram.source import MediaUnavailable, SourceError, TelegramSource

__all__ = [
    "AlbumError",
    "MediaUnavailable",
    "RecordingSource",
    "RecordingWriter",
    "SourceError",
    "TelegramSource",
    "album_id_for",
    "media_object_id_for",
    "post_id_for",
]
