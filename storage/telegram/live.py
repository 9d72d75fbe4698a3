"""`ingest run`: backfill each channel from its cursor, then follow new, edited, deleted messages.

Updates are queued by Telethon's handlers and applied by one task, in arrival order, so the
ingestor never runs two writes of one channel at once. We do not trust Telethon's catch-up
(a StringSession keeps no update state, and busy channels drop updates with
ChannelDifferenceTooLong): every `catch_up_seconds`, and after each reconnect, each channel is
backfilled from its own cursor, which stores whatever the updates missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from telethon import events
from telethon.tl import types

from storage.errors import StorageError
from storage.postgres.ingest import ChannelBusy
from storage.telegram.client import TelethonSource
from storage.telegram.source import SourceError

if TYPE_CHECKING:
    from streams.ingest import Runtime

log = logging.getLogger(__name__)

CATCH_UP_SECONDS = 60.0
LOCK_RETRY_SECONDS = 30.0
FAILED_ALBUM_RETRY_SECONDS = 30.0


async def follow(
    rt: Runtime,
    client: Any,
    source: TelethonSource,
    channels: Sequence[str],
    *,
    catch_up_seconds: float = CATCH_UP_SECONDS,
) -> None:
    """Ingest `channels` until cancelled."""
    ing = rt.ingestor(source)
    loop = asyncio.get_running_loop()
    ids: dict[int, str] = {}
    for name in channels:
        arg: str | int = int(name) if name.lstrip("-").isdigit() else name
        ids[await source.resolve(arg)] = name
    rt.channels.update(ids)
    owned: set[int] = set()
    queue: asyncio.Queue[tuple[str, int, Any]] = asyncio.Queue()

    # Telethon awaits its handlers
    async def on_new(event: Any) -> None:
        if event.chat_id in owned and isinstance(event.message, types.Message):
            queue.put_nowait(("message", event.chat_id, event.message))

    async def on_deleted(event: Any) -> None:
        if event.chat_id in owned:
            queue.put_nowait(("deleted", event.chat_id, list(event.deleted_ids)))

    peers = [source._peer(c) for c in ids]
    client.add_event_handler(on_new, events.NewMessage(chats=peers))
    client.add_event_handler(on_new, events.MessageEdited(chats=peers))
    client.add_event_handler(on_deleted, events.MessageDeleted(chats=peers))

    async with AsyncExitStack() as locks:

        async def take_locks() -> None:
            for cid, name in ids.items():
                if cid in owned:
                    continue
                try:
                    await locks.enter_async_context(rt.store.channel_lock(cid))
                except ChannelBusy:
                    log.warning("%s is ingested by another process; retrying later", name)
                    continue
                owned.add(cid)
                await catch_up(cid)

        async def catch_up(cid: int) -> None:
            try:
                n = await ing.backfill(cid)
                if n:
                    log.info("%s: caught up %d messages from the cursor", ids[cid], n)
            except (SourceError, StorageError) as exc:
                log.warning("%s: catch-up failed (retried later): %s", ids[cid], exc)

        await take_locks()
        next_catch_up = loop.time() + catch_up_seconds
        was_connected = True
        while True:
            due = ing.debouncer.next_due()
            wake_at = next_catch_up if due is None else min(next_catch_up, due)
            timeout = max(0.0, wake_at - loop.time())
            with contextlib.suppress(TimeoutError):
                kind, cid, payload = await asyncio.wait_for(queue.get(), timeout=timeout)
                try:
                    if kind == "message":
                        await ing.on_message(cid, payload, loop.time())
                    else:
                        await ing.on_deleted(cid, payload, loop.time())
                except StorageError as exc:
                    log.warning("update of %s not stored yet (%s); the catch-up will", cid, exc)
            try:
                await ing.flush_due(loop.time())
            except (SourceError, StorageError) as exc:
                # the albums stay due (Ingestor._flush puts them back); wait a little
                log.warning("album flush failed (retried): %s", exc)
                await asyncio.sleep(FAILED_ALBUM_RETRY_SECONDS / 6)
            connected = bool(client.is_connected())
            reconnected = connected and not was_connected
            was_connected = connected
            if reconnected or loop.time() >= next_catch_up:
                next_catch_up = loop.time() + catch_up_seconds
                await take_locks()
                for cid in sorted(owned):
                    await catch_up(cid)
