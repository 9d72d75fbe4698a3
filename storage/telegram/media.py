"""Media of album parts: streamed download, sha256 on the way, `media/{sha256}` in S3 once."""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import Callable

from telethon.tl import types

from storage.s3 import S3Storage, media_key
from storage.telegram.albums import TOO_LARGE, UNAVAILABLE, MediaInfo, StoredMedia, skip_reason
from storage.telegram.source import MediaUnavailable, SourceError, TelegramSource

# Downloads up to this size stay in memory; larger ones spill to a temporary file.
SPOOL_BYTES = 8 * 1024 * 1024
DOWNLOAD_ATTEMPTS = 3


class MediaStore:
    """Downloads a part's media and stores it content-addressed.

    Args:
        s3: the bucket of `media/{sha256}` objects.
        max_bytes: INGEST_MAX_MEDIA_BYTES; larger media are not downloaded.
        concurrency: INGEST_DOWNLOAD_CONCURRENCY, downloads at once.
        on_bytes: called with the size of each downloaded chunk (metrics, progress).
    """

    def __init__(
        self,
        s3: S3Storage,
        *,
        max_bytes: int,
        concurrency: int,
        on_bytes: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.s3 = s3
        self.max_bytes = max_bytes
        self._slots = asyncio.Semaphore(concurrency)
        self._on_bytes = on_bytes
        self.uploaded = 0

    async def store(
        self, source: TelegramSource, channel_id: int, message: types.Message, info: MediaInfo
    ) -> StoredMedia:
        """Download, hash and upload (if S3 lacks it) one message's media."""
        reason = skip_reason(info, self.max_bytes)
        if reason is not None:
            return StoredMedia(mime_type=info.mime_type, size_bytes=info.size, skipped=reason)
        async with self._slots:
            for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
                try:
                    return await self._download_and_put(source, channel_id, message, info)
                except MediaUnavailable:
                    return StoredMedia(
                        mime_type=info.mime_type, size_bytes=info.size, skipped=UNAVAILABLE
                    )
                except SourceError:
                    # broken off in the middle (a disconnect): the hash must start over
                    if attempt == DOWNLOAD_ATTEMPTS:
                        raise
        raise AssertionError("unreachable")

    async def _download_and_put(
        self, source: TelegramSource, channel_id: int, message: types.Message, info: MediaInfo
    ) -> StoredMedia:
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            digest = hashlib.sha256()
            size = 0
            async for chunk in source.download(channel_id, message):
                size += len(chunk)
                if size > self.max_bytes:  # the message understated its size
                    return StoredMedia(mime_type=info.mime_type, size_bytes=size, skipped=TOO_LARGE)
                digest.update(chunk)
                spool.write(chunk)
                self._on_bytes(len(chunk))
            sha256 = digest.hexdigest()
            mime = info.mime_type or "application/octet-stream"
            if not await self.s3.has_object(media_key(sha256)):
                spool.seek(0)
                await self.s3.put_media(sha256, spool.read(), mime)
                self.uploaded += 1
        return StoredMedia(sha256=sha256, mime_type=mime, size_bytes=size)
