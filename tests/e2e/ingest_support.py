"""Helpers of the ingestion tests: recordings of real TL messages, replay processes, row reads."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from telethon.tl import types

from storage.telegram.albums import album_id_for
from storage.telegram.recording import RecordingWriter
from storage.telegram.samples import media_bytes, photo_message, text_message, video_message
from tests.workers import REPO_ROOT

T0 = datetime(2025, 1, 30, 10, 0, tzinfo=UTC)
MAX_MEDIA = 50_000


def channel_for(unique: str) -> int:
    """A channel id of this test only (rows of every test share one database)."""
    return -(10**12 + int(unique[:8], 16))


@dataclass
class Recording:
    """A recording being written, with the media bytes each message carries."""

    path: Path
    channel_id: int
    seed: str
    buf: io.BytesIO = field(default_factory=io.BytesIO)
    media: dict[int, bytes] = field(default_factory=dict)

    def add(self, message: types.Message, media: bytes | None = None) -> None:
        RecordingWriter(self.buf).message(self.channel_id, message, media)
        if media is not None:
            self.media[message.id] = media

    def delete(self, *ids: int) -> None:
        RecordingWriter(self.buf).deletion(self.channel_id, ids)

    def garbage(self, raw: bytes) -> None:
        self.buf.write(raw + b"\n")

    def blob(self, message_id: int, size: int = 3000) -> bytes:
        return media_bytes(f"{self.seed}:{message_id}", size)

    def save(self) -> Path:
        self.path.write_bytes(self.buf.getvalue())
        return self.path


def scenario(path: Path, channel_id: int, seed: str) -> Recording:
    """The replay scenario of the issue, on one channel.

    - album A (grouped 1, ids 10-12): lines out of order and duplicated, caption on part 1;
    - album B (grouped 2, ids 20-21): part 20 reposts part 10's media, part 21 is over the
      media limit;
    - a single text post (30);
    - album C (grouped 3, ids 40-42): its caption edited later, then (after post 50) part 42
      deleted;
    - a line that is not JSON.
    """
    rec = Recording(path, channel_id, seed)
    c = channel_id
    a = [
        photo_message(c, 10, date=T0, grouped_id=1, size=3000),
        photo_message(
            c,
            11,
            date=T0 + timedelta(seconds=0.5),
            grouped_id=1,
            size=3000,
            text="Кошка на диване, часть вторая",
        ),
        video_message(c, 12, date=T0 + timedelta(seconds=1), grouped_id=1, size=3000),
    ]
    for i in (1, 0, 2, 1, 0):
        rec.add(a[i], rec.blob(a[i].id))
    shared = rec.blob(10)
    rec.add(
        photo_message(
            c, 20, date=T0 + timedelta(seconds=60), grouped_id=2, size=3000, text="Репост"
        ),
        shared,
    )
    rec.add(
        video_message(c, 21, date=T0 + timedelta(seconds=60), grouped_id=2, size=MAX_MEDIA + 1),
        None,
    )
    rec.garbage(b"this line is not JSON")
    rec.add(text_message(c, 30, date=T0 + timedelta(seconds=70), text="просто пост"))
    when = T0 + timedelta(seconds=120)
    cparts = [
        photo_message(c, 40, date=when, grouped_id=3, size=3000, text="Старая подпись"),
        photo_message(c, 41, date=when, grouped_id=3, size=3000),
        photo_message(c, 42, date=when, grouped_id=3, size=3000),
    ]
    for m in cparts:
        rec.add(m, rec.blob(m.id))
    edited = photo_message(
        c,
        40,
        date=when,
        grouped_id=3,
        size=3000,
        text="Новая подпись",
        edit_date=when + timedelta(minutes=8),
    )
    rec.add(edited, rec.blob(40))
    # a later post moves the replay's clock past the edit: the deletion is a change of its own
    rec.add(text_message(c, 50, date=T0 + timedelta(minutes=30), text="позже"))
    rec.delete(42)
    return rec


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def replay(
    env: dict[str, str], path: Path, log: Path, *, timeout: float = 180
) -> subprocess.CompletedProcess[bytes]:
    """`python -m streams ingest replay PATH` to completion."""
    with log.open("ab") as out:
        return subprocess.run(
            [sys.executable, "-m", "streams", "ingest", "replay", str(path)],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )


async def rows(database_url: str, channel_id: int) -> dict[str, Any]:
    """Everything ingestion stored for one channel, in comparable form."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            posts = (
                await conn.execute(
                    text(
                        "SELECT message_id, id, grouped_id, text, meta FROM posts "
                        "WHERE channel_id = :c ORDER BY message_id"
                    ),
                    {"c": channel_id},
                )
            ).all()
            groups = (
                await conn.execute(
                    text(
                        "SELECT id, grouped_id, caption_text, cover_media_id::text, revision, "
                        "deleted_at IS NOT NULL FROM media_groups WHERE channel_id = :c "
                        "ORDER BY grouped_id"
                    ),
                    {"c": channel_id},
                )
            ).all()
            items = (
                await conn.execute(
                    text(
                        "SELECT g.grouped_id, i.post_id, i.position, i.media_kind, i.sha256, "
                        "i.media_object_id::text, i.meta FROM media_group_items i "
                        "JOIN media_groups g ON g.id = i.group_id WHERE g.channel_id = :c "
                        "ORDER BY g.grouped_id, i.position"
                    ),
                    {"c": channel_id},
                )
            ).all()
            shas = sorted({r[4] for r in items if r[4]})
            objects = (
                await conn.execute(
                    text(
                        "SELECT file_sha256, id::text, size_bytes, s3_key FROM media_objects "
                        "WHERE file_sha256 = ANY(:s) ORDER BY file_sha256"
                    ),
                    {"s": shas},
                )
            ).all()
            cursor = (
                await conn.execute(
                    text("SELECT cursor FROM ingest_channels WHERE channel_id = :c"),
                    {"c": channel_id},
                )
            ).scalar()
            unsent = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM ingest_outbox o JOIN media_groups g "
                        "ON g.id = o.album_id WHERE g.channel_id = :c AND o.sent_at IS NULL"
                    ),
                    {"c": channel_id},
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    by_group: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for r in items:
        by_group[int(r[0])].append(tuple(r[1:]))
    return {
        "posts": {int(r[0]): tuple(r[1:]) for r in posts},
        "groups": {int(r[1]): tuple(r) for r in groups},
        "items": dict(by_group),
        "objects": [tuple(r) for r in objects],
        "cursor": cursor,
        "unsent": unsent,
    }


def album_id(channel_id: int, grouped_id: int) -> int:
    return album_id_for(channel_id, grouped_id)


def parsed_events(records: list[Any], channel_id: int) -> list[dict[str, Any]]:
    out = [orjson.loads(r.value) for r in records if r.value is not None]
    return [e for e in out if e.get("channel_id") == channel_id]
