"""What `make run` shows: vision for ingested albums, and waiting until albums reach the stores.

There is no vision service on this machine, so `vision_for_ingested` stands in for one: it
produces a `posts.vision.analyzed` event (provider `stand-in`, labels from the caption's words)
for every item of the albums ingestion stored, without album_id, so they take the FK join.
`await_albums` then follows album.assembled and the worker's `/stores/` view with a progress
bar until every expected album is assembled and in every enabled store.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from tqdm import tqdm

from streams import webauth
from streams.generator import Record
from streams.kafka_io import produce, topic_partitions
from streams.kafka_security import kafka_options

_WORD = re.compile(r"\w{4,}", re.UNICODE)


@dataclass(frozen=True, slots=True)
class IngestedAlbum:
    album_id: int
    tenant_id: str
    channel_id: int
    grouped_id: int
    caption: str | None
    posts: tuple[int, ...]


async def ingested_albums(database_url: str, tenant_id: str) -> list[IngestedAlbum]:
    """Albums ingestion stored for a tenant (not deleted), with their post ids."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT g.id, g.tenant_id, g.channel_id, g.grouped_id, g.caption_text, "
                    "array_agg(i.post_id ORDER BY i.position) "
                    "FROM media_groups g JOIN media_group_items i ON i.group_id = g.id "
                    "WHERE g.tenant_id = :t AND g.source_fingerprint IS NOT NULL "
                    "AND g.deleted_at IS NULL GROUP BY g.id ORDER BY g.id"
                ),
                {"t": tenant_id},
            )
            return [
                IngestedAlbum(int(r[0]), r[1], int(r[2]), int(r[3]), r[4], tuple(r[5]))
                for r in rows
            ]
    finally:
        await engine.dispose()


def stand_in_vision(album: IngestedAlbum, post_id: int, position: int) -> dict[str, Any]:
    """A deterministic vision result for one post (clearly marked as a stand-in)."""
    words = [w.lower() for w in _WORD.findall(album.caption or "")][:4] or ["photo"]
    return {
        "schema": "posts.vision.analyzed/v1",
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"stand-in:{post_id}")),
        "tenant_id": album.tenant_id,
        "post_id": post_id,
        "channel_id": album.channel_id,
        "grouped_id": album.grouped_id,
        "analyzed_at": "2025-01-30T10:00:09Z",
        "vision": {
            "description": f"item {position + 1} of an album: {', '.join(words)}",
            "labels": words,
            "ocr_text": "",
            "is_meme": False,
            "has_text": False,
            "provider": "stand-in",
            "model": "make-run",
        },
    }


async def vision_for_ingested(
    bootstrap_servers: list[str], database_url: str, tenant_id: str, topic_prefix: str
) -> list[IngestedAlbum]:
    """Produce stand-in vision for every ingested album of `tenant_id`; returns the albums."""
    albums = await ingested_albums(database_url, tenant_id)
    records = [
        Record(
            topic="posts.vision.analyzed",
            key=str(pid).encode(),
            value=orjson.dumps(stand_in_vision(a, pid, pos)),
            kind="vision",
            album_id=a.album_id,
        )
        for a in albums
        for pos, pid in enumerate(a.posts)
    ]
    await produce(bootstrap_servers, records, topic_prefix=topic_prefix)
    return albums


@dataclass
class Waited:
    assembled: set[int] = field(default_factory=set)
    stored: set[int] = field(default_factory=set)
    partial: set[int] = field(default_factory=set)


async def await_albums(
    bootstrap_servers: list[str],
    assembled_topic: str,
    web_url: str,
    expected: dict[int, str],
    *,
    wait_seconds: float = 300.0,
    echo: Callable[[str], None] = print,
) -> Waited:
    """Wait until every album of `expected` (album_id → tenant) is assembled `complete` and in
    every enabled store; returns what was seen (also when the timeout ends the wait)."""
    seen = Waited()
    consumer = AIOKafkaConsumer(
        **kafka_options(),
        bootstrap_servers=bootstrap_servers,
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    bar = tqdm(total=2 * len(expected), unit="step", desc="assembled + stored", disable=not _tty())
    deadline = time.monotonic() + wait_seconds
    last_line = 0.0
    try:
        tps = await topic_partitions(consumer, assembled_topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            while time.monotonic() < deadline:
                batch = await consumer.getmany(*tps, timeout_ms=500)
                for msgs in batch.values():
                    for m in msgs:
                        _note_assembled(seen, expected, m.value)
                todo = [a for a in seen.assembled if a not in seen.stored]
                for album_id in todo[:50]:
                    if await _in_stores(http, web_url, album_id, expected[album_id]):
                        seen.stored.add(album_id)
                bar.n = len(seen.assembled) + len(seen.stored)
                bar.set_postfix(assembled=len(seen.assembled), stored=len(seen.stored))
                bar.refresh()
                if not _tty() and time.monotonic() - last_line > 5:
                    last_line = time.monotonic()
                    echo(
                        f"  {len(seen.assembled)}/{len(expected)} assembled, "
                        f"{len(seen.stored)}/{len(expected)} in every store"
                    )
                if len(seen.stored) == len(expected):
                    break
                if not batch:
                    await asyncio.sleep(0.5)
    finally:
        bar.close()
        await consumer.stop()
    return seen


def _note_assembled(seen: Waited, expected: dict[int, str], value: bytes | None) -> None:
    try:
        event = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return
    album_id = event.get("album_id")
    if album_id not in expected:
        return
    if event.get("status") == "complete":
        seen.assembled.add(album_id)
        seen.partial.discard(album_id)
    elif album_id not in seen.assembled:
        seen.partial.add(album_id)


async def _in_stores(
    http: aiohttp.ClientSession, web_url: str, album_id: int, tenant_id: str
) -> bool:
    try:
        async with http.get(
            f"{web_url}/stores/{album_id}/",
            params={"tenant_id": tenant_id},
            headers=webauth.auth_headers(),
        ) as r:
            if r.status != 200:
                return False
            body = await r.json()
    except (aiohttp.ClientError, TimeoutError):
        return False
    stores = body.get("stores") or {}
    return bool(stores) and all(_found(name, v) for name, v in stores.items())


def _found(store: str, entry: Any) -> bool:
    """Whether a /stores/ entry shows the album (each sink's lookup has its own shape)."""
    if not isinstance(entry, dict) or "error" in entry:
        return False
    if store == "postgres":
        return bool((entry.get("media_groups.meta") or {}).get("enrichment"))
    if store == "s3":
        return bool(entry.get("document"))
    if store == "qdrant":
        return bool(entry.get("points"))
    if store == "neo4j":
        return bool(entry.get("album"))
    return all(bool(v) for v in entry.values())


def _tty() -> bool:
    return sys.stderr.isatty()
