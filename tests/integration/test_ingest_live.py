"""`ingest run`'s follower: a backfill from the cursor, then live updates through Telethon's own
update dispatch (a real TelegramClient answering at the RPC boundary; real Postgres, S3, Kafka)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta

import pytest
from sqlalchemy import text
from telethon.tl import types

from storage.telegram.client import TelethonSource
from storage.telegram.live import follow
from storage.telegram.samples import bare_channel_id, photo_message, text_message
from streams.ingest import runtime
from streams.settings import Settings
from tests.e2e.ingest_support import T0, channel_for
from tests.telegram_fake import FakeTelegramClient

pytestmark = pytest.mark.integration


async def album_items(database_url: str, channel: int) -> dict[int, list[int]]:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT g.grouped_id, p.message_id FROM media_group_items i "
                    "JOIN media_groups g ON g.id = i.group_id "
                    "JOIN posts p ON p.id = i.post_id AND p.channel_id = g.channel_id "
                    "WHERE g.channel_id = :c ORDER BY g.grouped_id, i.position"
                ),
                {"c": channel},
            )
            out: dict[int, list[int]] = {}
            for gid, mid in rows:
                out.setdefault(int(gid), []).append(int(mid))
            return out
    finally:
        await engine.dispose()


async def until(pred, within: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await pred():
            return True
        await asyncio.sleep(0.1)
    return bool(await pred())


async def test_run_backfills_then_follows_new_edited_and_deleted_messages(
    base_settings: Settings,
    postgres_url: str,
    kafka: list[str],
    s3_settings: Settings,
    unique: str,
) -> None:
    channel = channel_for(unique)
    bare = bare_channel_id(channel)
    client = FakeTelegramClient()
    client.add_channel(channel)
    # history before the process starts: one album and a post
    for mid in (1, 2):
        client.put(photo_message(channel, mid, date=T0, grouped_id=10, size=900))
    client.put(text_message(channel, 3, date=T0, text="before"))
    cfg = Settings.from_env(
        database_url=base_settings.database_url,
        topic_prefix=f"live-{unique}.",
        ingest_tenant_id=f"t{unique}",
        ingest_web_port=0,
        ingest_album_debounce_seconds=0.3,
    )
    db = cfg.database_url.get()
    pts = iter(range(100, 1000))

    async def dispatch(update: types.TypeUpdate) -> None:
        # as Telethon's update loop hands them over: with the entities of their container
        update._entities = {channel: client.channels[bare]}
        await client._dispatch_update(update)

    async def arrive(update_of: type, message: types.Message) -> None:
        client.put(message)
        await dispatch(update_of(message=message, pts=next(pts), pts_count=1))

    async with runtime(cfg) as rt:
        source = TelethonSource(client, rt.metrics, page_wait_seconds=0)
        task = asyncio.create_task(follow(rt, client, source, [str(channel)]))
        try:
            assert await until(lambda: _has(db, channel, {10: [1, 2]}))
            # a new album arrives part by part, out of order
            parts = [
                photo_message(channel, mid, date=T0, grouped_id=20, size=900) for mid in (4, 5, 6)
            ]
            for m in (parts[1], parts[0], parts[2]):
                await arrive(types.UpdateNewChannelMessage, m)
            assert await until(lambda: _has(db, channel, {10: [1, 2], 20: [4, 5, 6]}))
            # a part is deleted
            client.delete(channel, [5])
            await dispatch(
                types.UpdateDeleteChannelMessages(
                    channel_id=bare, messages=[5], pts=next(pts), pts_count=1
                )
            )
            assert await until(lambda: _has(db, channel, {10: [1, 2], 20: [4, 6]}))
            # an edit: the caption changes
            edited = photo_message(
                channel,
                4,
                date=T0,
                grouped_id=20,
                size=900,
                text="новая",
                edit_date=T0 + timedelta(minutes=5),
            )
            await arrive(types.UpdateEditChannelMessage, edited)

            async def caption() -> bool:
                async with rt.store.engine.connect() as conn:
                    got = (
                        await conn.execute(
                            text(
                                "SELECT caption_text FROM media_groups "
                                "WHERE channel_id = :c AND grouped_id = 20"
                            ),
                            {"c": channel},
                        )
                    ).scalar()
                return bool(got == "новая")

            assert await until(caption)
            # one fetch of the neighbourhood per debounced album, not one per update
            assert client.calls["GetMessagesRequest"] <= 4
            assert await rt.store.cursor(channel) == 6
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _has(db: str, channel: int, expected: dict[int, list[int]]) -> bool:
    return await album_items(db, channel) == expected
