"""The Telethon adapter: `TelegramSource` over a TelegramClient, riding out Telegram's faults.

- FloodWaitError: Telethon sleeps through waits up to `flood_sleep_threshold` itself; longer
  ones reach us, and we sleep their seconds plus jitter, then ask again.
- A disconnect (ConnectionError, OSError): reconnect with backoff and ask again; a backfill
  resumes after the last message it yielded.
- An expired file reference: fetch the message again (a fresh reference) and download again.
Each is retried a bounded number of times, then raised as SourceError: the caller logs it and
resumes the channel from its cursor later. Nothing here is fatal to the process.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from telethon import TelegramClient, errors, utils
from telethon.tl import types

from storage.telegram.metrics import IngestMetrics
from storage.telegram.source import MediaUnavailable, SourceError

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_ATTEMPTS = 8
DOWNLOAD_REQUEST_BYTES = 512 * 1024


class TelethonSource:
    """`TelegramSource` of one Telegram account.

    Args:
        client: a connected (or connectable) TelegramClient; its `flood_sleep_threshold` is
            the longest FloodWait Telethon sleeps through by itself.
        metrics: flood-wait seconds and reconnections are counted here.
        sleep, jitter: injected so tests can run the waits without waiting.
        max_attempts: tries of one request before SourceError.
        page_wait_seconds: pause between history pages of a backfill (Telethon's own default
            for long iterations, to stay clear of FloodWait).
    """

    def __init__(
        self,
        client: TelegramClient,
        metrics: IngestMetrics,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        max_attempts: int = MAX_ATTEMPTS,
        page_wait_seconds: float = 1.0,
    ) -> None:
        self.client = client
        self.metrics = metrics
        self._sleep = sleep
        self._jitter = jitter
        self.max_attempts = max_attempts
        self.page_wait_seconds = page_wait_seconds
        self._peers: dict[int, Any] = {}
        self.flood_waits = 0

    async def resolve(self, channel: str | int | Any) -> int:
        """Resolve a username, a marked id or an input peer; returns the marked channel id."""
        peer = await self._retry("resolve", lambda: self.client.get_input_entity(channel))
        channel_id = int(utils.get_peer_id(peer))
        self._peers[channel_id] = peer
        return channel_id

    def _peer(self, channel_id: int) -> Any:
        return self._peers.get(channel_id, channel_id)

    async def _retry(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(1, self.max_attempts + 1):
            try:
                return await call()
            except errors.FloodWaitError as exc:
                await self._flood_wait(what, exc)
            except (ConnectionError, OSError) as exc:
                if attempt == self.max_attempts:
                    raise SourceError(f"{what}: Telegram unreachable: {exc!r}") from exc
                await self._reconnect(what, attempt, exc)
        raise SourceError(f"{what}: gave up after {self.max_attempts} attempts")

    async def _flood_wait(self, what: str, exc: errors.FloodWaitError) -> None:
        # the seconds Telegram asked for, plus 1 s and up to 10 % jitter
        wait = exc.seconds + 1 + self._jitter() * max(1.0, exc.seconds * 0.1)
        self.flood_waits += 1
        self.metrics.flood_wait_seconds.inc(wait)
        log.warning("%s: FloodWait %ss, sleeping %.1fs", what, exc.seconds, wait)
        await self._sleep(wait)

    async def _reconnect(self, what: str, attempt: int, exc: BaseException) -> None:
        delay = min(60.0, 2.0**attempt) * (0.5 + self._jitter() / 2)
        log.warning("%s: disconnected (%r), reconnecting in %.1fs", what, exc, delay)
        self.metrics.reconnects.inc()
        await self._sleep(delay)
        try:
            if not self.client.is_connected():
                await self.client.connect()
        except (ConnectionError, OSError) as again:
            log.warning("%s: reconnect failed: %r", what, again)

    async def fetch_window(self, channel_id: int, ids: Sequence[int]) -> list[types.Message | None]:
        """One GetMessages request for `ids` (None where the server has no message)."""
        peer = self._peer(channel_id)
        found = await self._retry(
            "get_messages", lambda: self.client.get_messages(peer, ids=list(ids))
        )
        return [m if isinstance(m, types.Message) else None for m in found]

    async def latest(self, channel_id: int, limit: int) -> list[types.Message]:
        """The newest `limit` messages of a channel, oldest first (what `record` writes)."""
        peer = self._peer(channel_id)
        found = await self._retry(
            "get_messages", lambda: self.client.get_messages(peer, limit=limit)
        )
        return sorted((m for m in found if isinstance(m, types.Message)), key=lambda m: m.id)

    async def iter_since(
        self, channel_id: int, min_id: int, since: datetime | None = None
    ) -> AsyncIterator[types.Message]:
        """History after `min_id`, ascending, 100 per request; resumes after a fault."""
        peer = self._peer(channel_id)
        last = min_id
        for attempt in range(1, self.max_attempts + 1):
            try:
                kwargs: dict[str, Any] = {"reverse": True, "wait_time": self.page_wait_seconds}
                if since is not None and last == min_id:
                    # Telethon ignores offset_date next to min_id (it pages by id then), so a
                    # start by date pages from the date; ids up to min_id are skipped below
                    kwargs["offset_date"] = since
                else:
                    kwargs["min_id"] = last
                async for m in self.client.iter_messages(peer, **kwargs):
                    if isinstance(m, types.Message) and m.id > last:
                        last = m.id
                        yield m
                return
            except errors.FloodWaitError as exc:
                await self._flood_wait("iter_messages", exc)
            except (ConnectionError, OSError) as exc:
                if attempt == self.max_attempts:
                    raise SourceError(f"iter_messages: Telegram unreachable: {exc!r}") from exc
                await self._reconnect("iter_messages", attempt, exc)
        raise SourceError(f"iter_messages: gave up after {self.max_attempts} attempts")

    async def download(self, channel_id: int, message: types.Message) -> AsyncIterator[bytes]:
        """The media's bytes in 512 KiB requests; an expired reference re-fetches the message."""
        current = message
        for attempt in range(1, self.max_attempts + 1):
            offset = 0
            try:
                async for chunk in self.client.iter_download(
                    current.media, offset=0, request_size=DOWNLOAD_REQUEST_BYTES
                ):
                    offset += len(chunk)
                    yield bytes(chunk)
                return
            except (errors.FileReferenceExpiredError, errors.FileReferenceInvalidError) as exc:
                if offset:
                    raise SourceError("file reference expired in the middle of a download") from exc
                fresh = await self.fetch_window(channel_id, [message.id])
                if fresh[0] is None or fresh[0].media is None:
                    raise MediaUnavailable(f"message {message.id} has no media any more") from exc
                current = fresh[0]
            except errors.FloodWaitError as exc:
                if offset:
                    raise SourceError("FloodWait in the middle of a download") from exc
                await self._flood_wait("download", exc)
            except (ConnectionError, OSError) as exc:
                if offset:
                    raise SourceError(f"download interrupted: {exc!r}") from exc
                if attempt == self.max_attempts:
                    raise SourceError(f"download: Telegram unreachable: {exc!r}") from exc
                await self._reconnect("download", attempt, exc)
        raise SourceError(f"download of message {message.id}: gave up")
