"""Recordings: JSON Lines of Telegram messages in arrival order, and a source that replays them.

One line per message, as DESIGN.md fixes it:
`{"channel_id": C, "message": "<base64 of bytes(msg)>", "media": "<base64 or null>"}`;
a deletion is `{"channel_id": C, "deleted_ids": [ids]}`. A line with the id of an earlier
message is an edit. Unknown keys are ignored.

`RecordingSource` plays the Telegram server for a replay: it knows what the lines read so far
have told it (messages, edits, deletions, media), and answers the ingestor's neighbourhood
fetches and downloads from that, as the real server would answer at that point of the stream.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
from telethon import utils
from telethon.extensions import BinaryReader
from telethon.tl import types

from storage.telegram.albums import channel_of, media_info, skip_reason
from storage.telegram.source import MediaUnavailable, TelegramSource

CHUNK = 512 * 1024


class BadLine(ValueError):
    """A recording line that does not parse; `raw` is what to dead-letter (the TL bytes when
    the message decoded from base64, else the line itself)."""

    def __init__(self, line_no: int, raw: bytes, reason: str, error_type: str) -> None:
        super().__init__(f"line {line_no}: {reason}")
        self.line_no = line_no
        self.raw = raw
        self.error_type = error_type


@dataclass(frozen=True, slots=True)
class MessageLine:
    channel_id: int
    message: types.Message
    media: bytes | None
    line_no: int


@dataclass(frozen=True, slots=True)
class DeletionLine:
    channel_id: int
    deleted_ids: tuple[int, ...]
    line_no: int


Line = MessageLine | DeletionLine


def encode_message_line(channel_id: int, message: types.Message, media: bytes | None) -> bytes:
    """One recording line (without the newline)."""
    return orjson.dumps(
        {
            "channel_id": channel_id,
            "message": base64.b64encode(bytes(message)).decode(),
            "media": None if media is None else base64.b64encode(media).decode(),
        }
    )


def encode_deletion_line(channel_id: int, ids: Sequence[int]) -> bytes:
    return orjson.dumps({"channel_id": channel_id, "deleted_ids": list(ids)})


def parse_line(raw: bytes, line_no: int) -> Line:
    """Decode one line; raises BadLine with the bytes to dead-letter."""
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadLine(line_no, raw, f"not JSON: {exc}", "invalid_json") from exc
    if not isinstance(d, dict):
        raise BadLine(line_no, raw, "not a JSON object", "invalid_line")
    channel_id = d.get("channel_id")
    if isinstance(channel_id, bool) or not isinstance(channel_id, int):
        raise BadLine(line_no, raw, "channel_id is not an integer", "invalid_line")
    if "deleted_ids" in d:
        ids = d["deleted_ids"]
        if not isinstance(ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids
        ):
            raise BadLine(line_no, raw, "deleted_ids is not a list of integers", "invalid_line")
        if channel_id > 0:  # a bare channel id
            channel_id = int(utils.get_peer_id(types.PeerChannel(channel_id)))
        return DeletionLine(channel_id, tuple(ids), line_no)
    try:
        tl = base64.b64decode(d["message"], validate=True)
    except (KeyError, TypeError, binascii.Error) as exc:
        raise BadLine(line_no, raw, f"message is not base64: {exc!r}", "invalid_line") from exc
    try:
        obj: Any = BinaryReader(tl).tgread_object()
    except Exception as exc:  # Telethon raises TypeNotFoundError, struct.error, ...
        raise BadLine(line_no, tl, f"TL does not parse: {exc!r}", "invalid_tl") from exc
    if not isinstance(obj, types.Message):
        raise BadLine(line_no, tl, f"TL object is {type(obj).__name__}, not Message", "invalid_tl")
    if not isinstance(obj.peer_id, types.PeerChannel):
        raise BadLine(line_no, tl, "not a channel message", "invalid_line")
    marked = channel_of(obj)
    # the line may name the channel marked (-100…) or bare; rows always keep the marked id
    if channel_id not in (marked, obj.peer_id.channel_id):
        raise BadLine(line_no, tl, f"message of {marked} in a line of {channel_id}", "invalid_line")
    channel_id = marked
    media_b64 = d.get("media")
    try:
        media = None if media_b64 is None else base64.b64decode(media_b64, validate=True)
    except (TypeError, binascii.Error) as exc:
        raise BadLine(line_no, raw, f"media is not base64: {exc!r}", "invalid_line") from exc
    return MessageLine(channel_id, obj, media, line_no)


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, raw line) of a recording, blank lines left out."""
    with path.open("rb") as fh:
        for no, raw in enumerate(fh, start=1):
            raw = raw.strip()
            if raw:
                yield no, raw


class RecordingWriter:
    """Writes a recording, one flushed line per message."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.lines = 0

    def message(self, channel_id: int, message: types.Message, media: bytes | None) -> None:
        self._fh.write(encode_message_line(channel_id, message, media) + b"\n")
        self.lines += 1

    def deletion(self, channel_id: int, ids: Sequence[int]) -> None:
        self._fh.write(encode_deletion_line(channel_id, ids) + b"\n")
        self.lines += 1


async def record_messages(
    source: TelegramSource,
    channel_id: int,
    messages: Sequence[types.Message],
    writer: RecordingWriter,
    *,
    max_media_bytes: int,
    on_step: Callable[[], None] = lambda: None,
) -> int:
    """Write `messages` (with their media, unless larger than `max_media_bytes`) as lines."""
    for m in messages:
        media = None
        info = media_info(m)
        if info is not None and skip_reason(info, max_media_bytes) is None:
            try:
                media = b"".join([chunk async for chunk in source.download(channel_id, m)])
            except MediaUnavailable:
                media = None
        writer.message(channel_id, m, media)
        on_step()
    return len(messages)


class RecordingSource:
    """The Telegram server as the lines read so far describe it (see the module docstring)."""

    def __init__(self) -> None:
        self._messages: dict[int, dict[int, types.Message]] = {}
        self._media: dict[tuple[int, int], bytes] = {}
        self.fetches = 0

    def apply(self, line: Line) -> bool:
        """Learn one line; returns False when it told nothing new (a duplicated line)."""
        channel = self._messages.setdefault(line.channel_id, {})
        if isinstance(line, DeletionLine):
            gone = [i for i in line.deleted_ids if i in channel]
            for i in gone:
                del channel[i]
            return bool(gone)
        m = line.message
        old = channel.get(m.id)
        if old is not None and bytes(old) == bytes(m):
            if line.media is not None and (line.channel_id, m.id) not in self._media:
                self._media[(line.channel_id, m.id)] = line.media
            return False
        channel[m.id] = m
        if line.media is not None:
            self._media[(line.channel_id, m.id)] = line.media
        return True

    def message(self, channel_id: int, message_id: int) -> types.Message | None:
        return self._messages.get(channel_id, {}).get(message_id)

    async def fetch_window(self, channel_id: int, ids: Sequence[int]) -> list[types.Message | None]:
        self.fetches += 1
        channel = self._messages.get(channel_id, {})
        return [channel.get(i) for i in ids]

    async def iter_since(self, channel_id: int, min_id: int) -> AsyncIterator[types.Message]:
        channel = self._messages.get(channel_id, {})
        for i in sorted(i for i in channel if i > min_id):
            yield channel[i]

    async def download(self, channel_id: int, message: types.Message) -> AsyncIterator[bytes]:
        data = self._media.get((channel_id, message.id))
        if data is None:
            raise MediaUnavailable(f"the recording has no media of message {message.id}")
        for start in range(0, len(data), CHUNK):
            yield data[start : start + CHUNK]
