"""The Telethon adapter over a real TelegramClient answering at the RPC boundary (no network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from telethon import errors
from telethon.tl import functions

from storage.telegram.client import TelethonSource
from storage.telegram.metrics import IngestMetrics
from storage.telegram.samples import input_channel_peer, photo_message, text_message
from storage.telegram.source import SourceError
from tests.telegram_fake import FakeTelegramClient

CHANNEL = -1001234567890
T0 = datetime(2025, 1, 30, 10, 0, tzinfo=UTC)


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def client() -> FakeTelegramClient:
    c = FakeTelegramClient()
    c.add_channel(CHANNEL, title="demo")
    return c


async def source_of(client: FakeTelegramClient, sleeps: Sleeps) -> TelethonSource:
    src = TelethonSource(
        client, IngestMetrics(), sleep=sleeps, jitter=lambda: 0.5, page_wait_seconds=0
    )
    assert await src.resolve(input_channel_peer(CHANNEL)) == CHANNEL
    return src


async def test_one_get_messages_request_answers_a_window(client: FakeTelegramClient) -> None:
    for mid in (10, 11, 13):
        client.put(photo_message(CHANNEL, mid, date=T0, grouped_id=5))
    src = await source_of(client, Sleeps())
    client.calls.clear()
    got = await src.fetch_window(CHANNEL, list(range(9, 15)))
    assert [None if m is None else m.id for m in got] == [None, 10, 11, None, 13, None]
    assert client.calls == {"GetMessagesRequest": 1}


async def test_flood_wait_is_slept_through_and_counted(client: FakeTelegramClient) -> None:
    client.put(photo_message(CHANNEL, 10, date=T0, grouped_id=5))
    sleeps = Sleeps()
    src = await source_of(client, sleeps)
    client.fail_next(
        functions.channels.GetMessagesRequest, errors.FloodWaitError(request=None, capture=7)
    )
    got = await src.fetch_window(CHANNEL, [10])
    assert [m.id for m in got if m] == [10]
    assert len(sleeps.waits) == 1
    assert sleeps.waits[0] >= 7 + 1
    assert src.metrics.flood_wait_seconds._value.get() == sleeps.waits[0]


async def test_a_disconnect_reconnects_and_asks_again(client: FakeTelegramClient) -> None:
    client.put(photo_message(CHANNEL, 10, date=T0))
    sleeps = Sleeps()
    src = await source_of(client, sleeps)
    await client.disconnect()
    got = await src.fetch_window(CHANNEL, [10])
    assert [m.id for m in got if m] == [10]
    assert client.is_connected()
    assert src.metrics.reconnects._value.get() == 1


async def test_a_source_that_stays_down_gives_up_with_an_error(client: FakeTelegramClient) -> None:
    src = await source_of(client, Sleeps())
    client.fail_next(functions.channels.GetMessagesRequest, ConnectionError("reset"), times=99)
    with pytest.raises(SourceError, match="unreachable"):
        await src.fetch_window(CHANNEL, [1])


async def test_history_pages_ascending_from_the_cursor(client: FakeTelegramClient) -> None:
    for mid in range(1, 251):
        client.put(text_message(CHANNEL, mid, date=T0 + timedelta(seconds=mid), text=str(mid)))
    src = await source_of(client, Sleeps())
    client.calls.clear()
    got = [m.id async for m in src.iter_since(CHANNEL, 30)]
    assert got == list(range(31, 251))
    assert client.calls["GetHistoryRequest"] >= 3  # 100 messages per request at most


async def test_history_resumes_after_a_flood_wait_mid_way(client: FakeTelegramClient) -> None:
    for mid in range(1, 251):
        client.put(text_message(CHANNEL, mid, date=T0, text=str(mid)))
    sleeps = Sleeps()
    src = await source_of(client, sleeps)
    seen: list[int] = []
    async for m in src.iter_since(CHANNEL, 0):
        seen.append(m.id)
        if m.id == 120:
            client.fail_next(
                functions.messages.GetHistoryRequest, errors.FloodWaitError(request=None, capture=3)
            )
    assert seen == list(range(1, 251))
    assert len(sleeps.waits) == 1


async def test_download_streams_the_stored_bytes(client: FakeTelegramClient) -> None:
    data = bytes(range(256)) * 4000  # ~1 MB: several requests
    msg = photo_message(CHANNEL, 10, date=T0, size=len(data))
    client.put(msg, data)
    src = await source_of(client, Sleeps())
    chunks = [c async for c in src.download(CHANNEL, client.message(CHANNEL, 10))]
    assert b"".join(chunks) == data
    assert len(chunks) > 1


async def test_an_expired_file_reference_fetches_the_message_again(
    client: FakeTelegramClient,
) -> None:
    data = b"x" * 5000
    client.put(photo_message(CHANNEL, 10, date=T0, size=len(data)), data)
    old = client.message(CHANNEL, 10)
    client.rotate_file_reference(CHANNEL, 10)  # the reference `old` carries is expired now
    src = await source_of(client, Sleeps())
    client.calls.clear()
    assert b"".join([c async for c in src.download(CHANNEL, old)]) == data
    assert client.calls["GetMessagesRequest"] == 1
