"""The Telethon adapter over a real TelegramClient answering at the RPC boundary (no network),
and the recording format."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from telethon import errors
from telethon.tl import functions, types

from storage.telegram.client import TelethonSource
from storage.telegram.metrics import IngestMetrics
from storage.telegram.recording import (
    BadLine,
    DeletionLine,
    MessageLine,
    RecordingWriter,
    parse_line,
    read_lines,
    record_messages,
)
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


async def test_record_writes_the_newest_messages_oldest_first_with_media(
    client: FakeTelegramClient, tmp_path: Path
) -> None:
    small, big = b"s" * 3000, b"b" * 9000
    client.put(text_message(CHANNEL, 1, date=T0, text="old"))
    client.put(photo_message(CHANNEL, 2, date=T0, grouped_id=9, size=len(small)), small)
    client.put(photo_message(CHANNEL, 3, date=T0, grouped_id=9, size=len(big)), big)
    client.put(text_message(CHANNEL, 4, date=T0, text="Привет"))
    src = await source_of(client, Sleeps())
    messages = await src.latest(CHANNEL, 3)
    out = tmp_path / "rec.jsonl"
    with out.open("wb") as fh:
        await record_messages(src, CHANNEL, messages, RecordingWriter(fh), max_media_bytes=5000)
    lines = [parse_line(raw, no) for no, raw in read_lines(out)]
    assert all(isinstance(line, MessageLine) for line in lines)
    got = [(line.message.id, line.media) for line in lines if isinstance(line, MessageLine)]
    # newest three, oldest first; the media over the limit is not recorded
    assert got == [(2, small), (3, None), (4, None)]
    assert [line.channel_id for line in lines] == [CHANNEL] * 3
    first = lines[0]
    assert isinstance(first, MessageLine)
    assert bytes(first.message) == bytes(client.message(CHANNEL, 2))


def test_recording_lines_that_do_not_parse_say_why(tmp_path: Path) -> None:
    good = photo_message(CHANNEL, 5, date=T0)
    tl = bytes(good)
    b64 = base64.b64encode
    cases = {
        b"{not json": "invalid_json",
        b"[1, 2]": "invalid_line",
        b'{"channel_id": "x", "message": ""}': "invalid_line",
        b'{"channel_id": %d, "message": "***"}' % CHANNEL: "invalid_line",
        b'{"channel_id": %d, "message": "%s"}' % (CHANNEL, b64(b"\x00" * 12)): "invalid_tl",
        b'{"channel_id": %d, "message": "%s"}'
        % (CHANNEL, b64(bytes(types.PeerChannel(1)))): "invalid_tl",
        b'{"channel_id": -1009999, "message": "%s"}' % b64(tl): "invalid_line",
        b'{"channel_id": %d, "message": "%s", "media": 5}' % (CHANNEL, b64(tl)): "invalid_line",
        b'{"channel_id": %d, "deleted_ids": ["a"]}' % CHANNEL: "invalid_line",
    }
    for raw, error_type in cases.items():
        with pytest.raises(BadLine) as info:
            parse_line(raw, 7)
        assert info.value.error_type == error_type, raw
        assert info.value.line_no == 7
    # a TL error keeps the TL bytes for the dead letter
    with pytest.raises(BadLine) as info:
        parse_line(b'{"channel_id": %d, "message": "%s"}' % (CHANNEL, b64(tl[:9])), 1)
    assert info.value.raw == tl[:9]
    # the channel may be named bare; unknown keys are ignored
    bare = parse_line(
        b'{"channel_id": 1234567890, "message": "%s", "media": null, "x": 1}' % b64(tl), 2
    )
    assert isinstance(bare, MessageLine)
    assert bare.channel_id == CHANNEL
    gone = parse_line(b'{"channel_id": 1234567890, "deleted_ids": [5, 6]}', 3)
    assert gone == DeletionLine(CHANNEL, (5, 6), 3)


async def test_history_since_a_date_starts_there(client: FakeTelegramClient) -> None:
    for mid in range(1, 301):
        client.put(text_message(CHANNEL, mid, date=T0 + timedelta(minutes=mid), text=str(mid)))
    src = await source_of(client, Sleeps())
    client.calls.clear()
    got = [m.id async for m in src.iter_since(CHANNEL, 0, since=T0 + timedelta(minutes=250))]
    assert got == list(range(250, 301))
    assert client.calls["GetHistoryRequest"] <= 2  # paged from the date, not from the start
    got = [m.id async for m in src.iter_since(CHANNEL, 280, since=T0 + timedelta(minutes=250))]
    assert got == list(range(281, 301))
