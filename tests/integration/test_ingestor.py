"""The ingestor over the Telethon adapter (a real TelegramClient answering at the RPC boundary)
against the real Postgres, S3 and Kafka: live updates, backfills, restarts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import text

from storage.postgres.ingest import IngestStore
from storage.telegram.albums import album_id_for
from storage.telegram.client import TelethonSource
from storage.telegram.ingestor import Ingestor
from storage.telegram.media import MediaStore
from storage.telegram.metrics import IngestMetrics
from storage.telegram.outbox import DeadLetters, OutboxPublisher, ingest_producer
from storage.telegram.samples import input_channel_peer, photo_message, text_message
from streams.kafka_io import read_topic
from streams.settings import Settings
from tests.e2e.sinks_support import s3_storage
from tests.telegram_fake import FakeTelegramClient

pytestmark = pytest.mark.integration

T0 = datetime(2025, 1, 30, 10, 0, tzinfo=UTC)


@dataclass
class Rig:
    client: FakeTelegramClient
    ingestor: Ingestor
    store: IngestStore
    publisher: OutboxPublisher
    channel: int
    topic: str
    kafka: list[str]


async def _sleep(seconds: float) -> None:
    return None


@pytest.fixture
async def rig(
    base_settings: Settings, postgres_url: str, kafka: list[str], s3_settings: Settings, unique: str
) -> AsyncIterator[Rig]:
    channel = -(10**12 + int(unique[:8], 16))
    client = FakeTelegramClient()
    client.add_channel(channel)
    metrics = IngestMetrics()
    store = IngestStore(postgres_url, f"t{unique}")
    s3 = s3_storage(s3_settings)
    producer = ingest_producer(kafka)
    await store.start()
    await s3.start()
    await producer.start()
    try:
        source = TelethonSource(client, metrics, sleep=_sleep, page_wait_seconds=0)
        await source.resolve(input_channel_peer(channel))
        publisher = OutboxPublisher(store, producer, metrics)
        topic = f"it-{unique}.albums.parsed"
        ingestor = Ingestor(
            source,
            store,
            MediaStore(s3, max_bytes=10_000_000, concurrency=4),
            DeadLetters(producer, f"it-{unique}.albums.dlq", metrics),
            metrics,
            tenant_id=f"t{unique}",
            parsed_topic=topic,
            debounce_seconds=3.0,
        )
        yield Rig(client, ingestor, store, publisher, channel, topic, kafka)
    finally:
        await producer.stop()
        await s3.close()
        await store.close()


async def counts(store: IngestStore, channel: int) -> tuple[int, int, int, int]:
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM posts WHERE channel_id = :c), "
                    "(SELECT count(*) FROM media_groups WHERE channel_id = :c), "
                    "(SELECT count(*) FROM media_group_items i JOIN media_groups g "
                    "   ON g.id = i.group_id WHERE g.channel_id = :c), "
                    "(SELECT count(*) FROM ingest_outbox o JOIN media_groups g "
                    "   ON g.id = o.album_id WHERE g.channel_id = :c)"
                ),
                {"c": channel},
            )
        ).one()
    return (int(row[0]), int(row[1]), int(row[2]), int(row[3]))


async def test_live_parts_make_one_fetch_and_one_album(rig: Rig) -> None:
    c = rig.channel
    parts = [
        photo_message(c, 100, date=T0, grouped_id=7, text="Кот", size=2000),
        photo_message(c, 101, date=T0, grouped_id=7, size=2000),
        photo_message(c, 102, date=T0, grouped_id=7, size=2000),
    ]
    for m in parts:
        rig.client.put(m)
    rig.client.calls.clear()
    # the updates arrive out of order, one twice, 0.7 s apart
    for n, m in enumerate([parts[2], parts[0], parts[2], parts[1]]):
        await rig.ingestor.on_message(c, m, now=n * 0.7)
    assert await rig.ingestor.flush_due(now=2.0) == 0  # not quiet long enough yet
    assert await rig.ingestor.flush_due(now=10.0) == 1
    assert rig.client.calls["GetMessagesRequest"] == 1
    assert await counts(rig.store, c) == (3, 1, 3, 1)
    # a part that arrives ten minutes later makes the album change (and a second event)
    late = photo_message(c, 103, date=T0 + timedelta(minutes=10), grouped_id=7, size=2000)
    rig.client.put(late)
    await rig.ingestor.on_message(c, late, now=600.0)
    await rig.ingestor.flush_due(now=610.0)
    assert rig.client.calls["GetMessagesRequest"] == 2
    assert await counts(rig.store, c) == (4, 1, 4, 2)
    assert await rig.publisher.publish_pending() >= 2  # (and what aborted runs left unsent)
    events = [orjson.loads(r.value) async for r in read_topic(rig.kafka, rig.topic)]
    events = [e for e in events if e["channel_id"] == c]
    assert [len(e["items"]) for e in events] == [3, 4]
    assert {e["album_id"] for e in events} == {album_id_for(c, 7)}


async def test_backfill_keeps_an_album_whole_across_a_page_and_restarts_without_duplicates(
    rig: Rig,
) -> None:
    c = rig.channel
    # 250 messages; the album's parts 99-102 straddle the first page of 100
    for mid in range(1, 251):
        if 99 <= mid <= 102:
            rig.client.put(photo_message(c, mid, date=T0, grouped_id=42, size=1500))
        else:
            rig.client.put(text_message(c, mid, date=T0, text=f"post {mid}"))
    read = await rig.ingestor.backfill(c)
    assert read == 250
    assert rig.client.calls["GetHistoryRequest"] >= 3
    assert await counts(rig.store, c) == (250, 1, 4, 1)
    assert await rig.store.cursor(c) == 250

    # a restart (a new ingestor) goes on from the cursor: nothing is read or written twice
    again = Ingestor(
        rig.ingestor.source,
        rig.store,
        rig.ingestor.media,
        rig.ingestor.dead_letters,
        rig.ingestor.metrics,
        tenant_id=rig.ingestor.tenant_id,
        parsed_topic=rig.topic,
        debounce_seconds=3.0,
    )
    assert await again.backfill(c) == 0
    # overlapping backfill from an older id: read again, written as it was
    assert await again.backfill(c, min_id=90) == 160
    assert await counts(rig.store, c) == (250, 1, 4, 1)
    # new messages after the cursor, including an album
    for mid in range(251, 261):
        rig.client.put(
            photo_message(c, mid, date=T0, grouped_id=43, size=1500)
            if mid < 254
            else text_message(c, mid, date=T0, text="new")
        )
    assert await again.backfill(c) == 10
    assert await counts(rig.store, c) == (260, 2, 7, 2)
    assert await rig.store.cursor(c) == 260


async def test_two_processes_never_ingest_one_channel_at_once(rig: Rig, postgres_url: str) -> None:
    from storage.postgres.ingest import ChannelBusy

    other = IngestStore(postgres_url, "other")
    await other.start()
    try:
        async with rig.store.channel_lock(rig.channel):
            with pytest.raises(ChannelBusy):
                async with other.channel_lock(rig.channel):
                    pass
        async with other.channel_lock(rig.channel):  # free again once released
            pass
    finally:
        await other.close()


async def test_another_tenant_cannot_overwrite_an_album(rig: Rig) -> None:
    c = rig.channel
    for mid in (1, 2):
        rig.client.put(photo_message(c, mid, date=T0, grouped_id=9, size=1000, text="A"))
    await rig.ingestor.backfill(c)
    before = await counts(rig.store, c)
    intruder = Ingestor(
        rig.ingestor.source,
        rig.store,
        rig.ingestor.media,
        rig.ingestor.dead_letters,
        rig.ingestor.metrics,
        tenant_id="intruder",
        parsed_topic=rig.topic,
        debounce_seconds=3.0,
    )
    rig.client.put(
        photo_message(
            c, 2, date=T0, grouped_id=9, size=1000, text="B", edit_date=T0 + timedelta(minutes=1)
        )
    )
    sent = rig.ingestor.dead_letters.sent
    assert await intruder.flush_album(c, 9, {1, 2}) == "refused"
    assert rig.ingestor.dead_letters.sent == sent + 1
    assert await counts(rig.store, c) == before
    async with rig.store.engine.connect() as conn:
        tenant = (
            await conn.execute(
                text("SELECT tenant_id FROM media_groups WHERE id = :id"),
                {"id": album_id_for(c, 9)},
            )
        ).scalar_one()
    assert tenant == rig.ingestor.tenant_id
