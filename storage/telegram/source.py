"""Where Telegram messages come from: the small protocol ingestion needs, and its errors.

The Telethon client (`storage/telegram/client.py`) and a recording (`recording.py`) both
implement `TelegramSource`; the ingestor and the tests only see this protocol.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from telethon.tl import types

from storage.errors import StorageError


class SourceError(StorageError):
    """Telegram could not answer (after the adapter's own retries)."""


class MediaUnavailable(SourceError):
    """This message's media cannot be downloaded (not recorded, or gone from Telegram)."""


class TelegramSource(Protocol):
    """What ingestion asks of Telegram."""

    async def fetch_window(self, channel_id: int, ids: Sequence[int]) -> list[types.Message | None]:
        """The messages of `ids` in one request, None where an id has no message."""
        ...

    def iter_since(self, channel_id: int, min_id: int) -> AsyncIterator[types.Message]:
        """Every message with id > min_id, ascending (a backfill)."""
        ...

    def download(self, channel_id: int, message: types.Message) -> AsyncIterator[bytes]:
        """The bytes of the message's media, in chunks."""
        ...
