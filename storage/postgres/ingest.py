"""Postgres side of ingestion: per-channel locks, cursors, album rows and the outbox.

One transaction stores an album: its posts, media_objects, media_groups row and items, the
channel cursor and, when the album's content changed, an outbox row holding the albums.parsed
event. The publisher (`storage/telegram/outbox.py`) sends outbox rows and marks them sent, so a
crash never loses an album and nothing is emitted that was not committed.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import bindparam, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from schemas.events import AlbumParsed
from storage.postgres.store import PostgresError
from storage.postgres.store import wrap_error as _wrap
from storage.telegram.albums import PostRow, StoredMedia, content_fingerprint

NEW = "new"
CHANGED = "changed"
UNCHANGED = "unchanged"
DELETED = "deleted"


class ChannelBusy(PostgresError):
    """Another ingest process holds this channel's advisory lock."""


class AlbumOwned(PostgresError):
    """The album's row belongs to another tenant or another (channel, grouped_id): refused,
    never overwritten. Not retriable."""


def _lock_key(*parts: object) -> int:
    # pg advisory locks take a signed 64-bit key
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


PUBLISHER_LOCK = _lock_key("album-pipeline", "ingest-outbox-publisher")


@dataclass(frozen=True, slots=True)
class KnownAlbum:
    """What the database holds of an album: the fingerprints de-duplication compares."""

    source_fingerprint: str | None
    content_fingerprint: str | None
    revision: int
    deleted: bool


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    topic: str
    key: bytes
    value: bytes
    album_id: int


_UPSERT_POST = text(
    """
    INSERT INTO posts (id, tenant_id, channel_id, message_id, grouped_id, text, posted_at, meta)
    VALUES (:id, :tenant_id, :channel_id, :message_id, :grouped_id, :text, :posted_at,
            CAST(:meta AS jsonb))
    ON CONFLICT (channel_id, message_id) DO UPDATE
       SET grouped_id = EXCLUDED.grouped_id, text = EXCLUDED.text,
           posted_at = EXCLUDED.posted_at, meta = posts.meta || EXCLUDED.meta
     WHERE posts.grouped_id IS DISTINCT FROM EXCLUDED.grouped_id
        OR posts.text IS DISTINCT FROM EXCLUDED.text
        OR posts.posted_at IS DISTINCT FROM EXCLUDED.posted_at
        OR NOT posts.meta @> EXCLUDED.meta
    """
)

_UPSERT_MEDIA = text(
    """
    INSERT INTO media_objects (file_sha256, id, mime_type, size_bytes, s3_key)
    VALUES (:sha256, CAST(:id AS uuid), :mime_type, :size_bytes, :s3_key)
    ON CONFLICT (file_sha256) DO NOTHING
    """
)

_UPSERT_GROUP = text(
    """
    INSERT INTO media_groups (id, tenant_id, channel_id, grouped_id, caption_text,
                              cover_media_id, posted_at, source_fingerprint,
                              content_fingerprint, revision, deleted_at)
    VALUES (:id, :tenant_id, :channel_id, :grouped_id, :caption_text,
            CAST(:cover_media_id AS uuid), :posted_at, :source_fp, :content_fp, 1, NULL)
    ON CONFLICT (id) DO UPDATE
       SET tenant_id = EXCLUDED.tenant_id, channel_id = EXCLUDED.channel_id,
           grouped_id = EXCLUDED.grouped_id, caption_text = EXCLUDED.caption_text,
           cover_media_id = EXCLUDED.cover_media_id, posted_at = EXCLUDED.posted_at,
           source_fingerprint = EXCLUDED.source_fingerprint,
           content_fingerprint = EXCLUDED.content_fingerprint,
           revision = media_groups.revision + 1, deleted_at = NULL
    RETURNING revision
    """
)

_INSERT_ITEMS = text(
    """
    INSERT INTO media_group_items (group_id, post_id, position, media_object_id, media_kind,
                                   sha256, meta)
    VALUES (:group_id, :post_id, :position, CAST(:media_object_id AS uuid), :media_kind,
            :sha256, CAST(:meta AS jsonb))
    """
)

_UPSERT_CURSOR = text(
    """
    INSERT INTO ingest_channels (channel_id, tenant_id, cursor, last_seen_id, updated_at)
    VALUES (:channel_id, :tenant_id, :cursor, :cursor, now())
    ON CONFLICT (channel_id) DO UPDATE
       SET cursor = GREATEST(ingest_channels.cursor, EXCLUDED.cursor),
           last_seen_id = GREATEST(ingest_channels.last_seen_id, EXCLUDED.cursor),
           updated_at = now()
    """
)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


class IngestStore:
    """Ingestion's Postgres.

    Args:
        database_url: SQLAlchemy async URL (postgresql+asyncpg://...).
        tenant_id: the tenant of every row this process writes.
        s3_media_key: maps a sha256 to its S3 key (media_objects.s3_key).
    """

    def __init__(self, database_url: str, tenant_id: str) -> None:
        self.database_url = database_url
        self.tenant_id = tenant_id
        self._engine: AsyncEngine | None = None

    async def start(self) -> None:
        """Connect and check with `SELECT 1`."""
        self._engine = create_async_engine(
            self.database_url, hide_parameters=True, pool_pre_ping=True, pool_size=5
        )
        try:
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (OSError, DBAPIError) as exc:
            raise _wrap("connect", exc) from exc

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        self._engine = None

    async def __aenter__(self) -> IngestStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise PostgresError("IngestStore used before start()")
        return self._engine

    @asynccontextmanager
    async def _tx(self, what: str) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.begin() as conn:
                yield conn
        except (OSError, DBAPIError) as exc:
            raise _wrap(what, exc) from exc

    # -- locks and cursors -------------------------------------------------------------------

    @asynccontextmanager
    async def channel_lock(self, channel_id: int) -> AsyncIterator[None]:
        """Hold this channel's session advisory lock (ChannelBusy if another process has it).

        The lock lives on a connection of its own; Postgres releases it when the process dies.
        """
        key = _lock_key("ingest-channel", channel_id)
        try:
            conn = await self.engine.connect()
        except (OSError, DBAPIError) as exc:
            raise _wrap("channel_lock", exc) from exc
        try:
            got = (
                await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
            ).scalar_one()
            if not got:
                raise ChannelBusy(f"channel {channel_id} is being ingested by another process")
            try:
                yield
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                await conn.commit()
        finally:
            await conn.close()

    async def cursor(self, channel_id: int) -> int:
        """The highest message id of the channel known to be stored (0: none)."""
        async with self._tx("cursor") as conn:
            row = (
                await conn.execute(
                    text("SELECT cursor FROM ingest_channels WHERE channel_id = :c"),
                    {"c": channel_id},
                )
            ).first()
        return 0 if row is None else int(row[0])

    async def cursors(self) -> dict[int, tuple[int, int]]:
        """channel_id → (cursor, last_seen_id) of this tenant's channels."""
        async with self._tx("cursors") as conn:
            rows = await conn.execute(
                text(
                    "SELECT channel_id, cursor, last_seen_id FROM ingest_channels "
                    "WHERE tenant_id = :t"
                ),
                {"t": self.tenant_id},
            )
            return {int(r[0]): (int(r[1]), int(r[2])) for r in rows}

    async def save_cursor(self, channel_id: int, cursor: int) -> None:
        async with self._tx("save_cursor") as conn:
            await conn.execute(
                _UPSERT_CURSOR,
                {"channel_id": channel_id, "tenant_id": self.tenant_id, "cursor": cursor},
            )

    # -- albums ------------------------------------------------------------------------------

    async def known_album(self, album_id: int) -> KnownAlbum | None:
        async with self._tx("known_album") as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT source_fingerprint, content_fingerprint, revision, deleted_at "
                        "FROM media_groups WHERE id = :id"
                    ),
                    {"id": album_id},
                )
            ).first()
        if row is None:
            return None
        return KnownAlbum(row[0], row[1], int(row[2]), row[3] is not None)

    async def known_media(
        self, channel_id: int, message_ids: Sequence[int]
    ) -> dict[int, tuple[int | None, StoredMedia]]:
        """message id → (Telegram media id, what was stored) for media ingested before.

        Lets an album that changed only in text skip downloading media it already has.
        """
        if not message_ids:
            return {}
        stmt = text(
            "SELECT message_id, meta->'media' FROM posts "
            "WHERE channel_id = :c AND message_id IN :ids AND meta ? 'media'"
        ).bindparams(bindparam("ids", expanding=True))
        async with self._tx("known_media") as conn:
            rows = await conn.execute(stmt, {"c": channel_id, "ids": list(message_ids)})
            out: dict[int, tuple[int | None, StoredMedia]] = {}
            for message_id, media in rows:
                if not media or (media.get("sha256") is None and media.get("skipped") is None):
                    continue
                out[int(message_id)] = (
                    media.get("telegram_id"),
                    StoredMedia(
                        sha256=media.get("sha256"),
                        mime_type=media.get("mime_type"),
                        size_bytes=media.get("size"),
                        skipped=media.get("skipped"),
                    ),
                )
            return out

    async def save_album(
        self,
        album: AlbumParsed,
        *,
        posts: Sequence[PostRow],
        media: Sequence[tuple[StoredMedia, str]],
        source_fingerprint: str,
        cursor: int | None,
        topic: str,
    ) -> str:
        """Store an album in one transaction; returns new | changed | unchanged.

        `media`: (stored media, S3 key) of each distinct stored object. An album whose content
        fingerprint equals the stored one only has its source fingerprint refreshed: no outbox
        row, nothing emitted.
        """
        content_fp = content_fingerprint(album)
        async with self._tx("save_album") as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT content_fingerprint, deleted_at, channel_id, grouped_id, "
                        "tenant_id FROM media_groups WHERE id = :id FOR UPDATE"
                    ),
                    {"id": album.album_id},
                )
            ).first()
            if row is not None and (row[2], row[3], row[4]) != (
                album.channel_id,
                album.grouped_id,
                album.tenant_id,
            ):
                raise AlbumOwned(
                    f"album id {album.album_id} is stored for tenant {row[4]!r}, channel "
                    f"{row[2]}, grouped_id {row[3]}; refused for tenant {album.tenant_id!r}, "
                    f"{album.channel_id}/{album.grouped_id}"
                )
            await self._write_posts(conn, posts)
            if cursor is not None:
                await self._write_cursor(conn, album.channel_id, cursor)
            if row is not None and row[0] == content_fp and row[1] is None:
                await conn.execute(
                    text("UPDATE media_groups SET source_fingerprint = :fp WHERE id = :id"),
                    {"fp": source_fingerprint, "id": album.album_id},
                )
                return UNCHANGED
            for stored, key in media:
                await conn.execute(
                    _UPSERT_MEDIA,
                    {
                        "sha256": stored.sha256,
                        "id": stored.media_object_id,
                        "mime_type": stored.mime_type,
                        "size_bytes": stored.size_bytes,
                        "s3_key": key,
                    },
                )
            await conn.execute(
                _UPSERT_GROUP,
                {
                    "id": album.album_id,
                    "tenant_id": album.tenant_id,
                    "channel_id": album.channel_id,
                    "grouped_id": album.grouped_id,
                    "caption_text": album.caption_text,
                    "cover_media_id": album.cover_media_id,
                    "posted_at": _parse_ts(album.posted_at),
                    "source_fp": source_fingerprint,
                    "content_fp": content_fp,
                },
            )
            await conn.execute(
                text("DELETE FROM media_group_items WHERE group_id = :id"), {"id": album.album_id}
            )
            skipped = {p.id: (p.meta.get("media") or {}).get("skipped") for p in posts}
            await conn.execute(
                _INSERT_ITEMS,
                [
                    {
                        "group_id": album.album_id,
                        "post_id": i.post_id,
                        "position": i.position,
                        "media_object_id": i.media_object_id,
                        "media_kind": i.media_kind,
                        "sha256": i.sha256,
                        "meta": _json(
                            {"message_id": i.message_id}
                            | ({"skipped": skipped[i.post_id]} if skipped.get(i.post_id) else {})
                        ),
                    }
                    for i in album.items
                ],
            )
            await conn.execute(
                text(
                    "INSERT INTO ingest_outbox (topic, key, value, album_id) "
                    "VALUES (:topic, :key, :value, :album_id)"
                ),
                {
                    "topic": topic,
                    "key": str(album.album_id).encode(),
                    "value": orjson.dumps(album.to_dict()),
                    "album_id": album.album_id,
                },
            )
            return NEW if row is None else CHANGED

    async def save_posts(self, channel_id: int, posts: Sequence[PostRow], cursor: int) -> None:
        """Store messages that are not in an album, and move the cursor, in one transaction."""
        async with self._tx("save_posts") as conn:
            await self._write_posts(conn, posts)
            await self._write_cursor(conn, channel_id, cursor)

    async def mark_deleted(self, channel_id: int, message_ids: Sequence[int]) -> list[int]:
        """Mark deleted messages in posts; returns the grouped_ids of the albums they were in."""
        if not message_ids:
            return []
        stmt = text(
            "UPDATE posts SET meta = meta || jsonb_build_object('deleted_at', CAST(:at AS text)) "
            "WHERE channel_id = :c AND message_id IN :ids AND NOT meta ? 'deleted_at' "
            "RETURNING grouped_id"
        ).bindparams(bindparam("ids", expanding=True))
        async with self._tx("mark_deleted") as conn:
            rows = await conn.execute(
                stmt,
                {
                    "c": channel_id,
                    "ids": list(message_ids),
                    "at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                },
            )
            return sorted({int(r[0]) for r in rows if r[0] is not None})

    async def delete_album(self, album_id: int, source_fingerprint: str) -> bool:
        """Every part of the album was deleted: drop its items and mark the group deleted.

        Nothing is emitted (albums.parsed cannot carry an album of 0 items); the assembled
        album stays in the stores as it was. Returns False when already marked.
        """
        async with self._tx("delete_album") as conn:
            res = await conn.execute(
                text(
                    "UPDATE media_groups SET deleted_at = now(), source_fingerprint = :fp, "
                    "content_fingerprint = NULL WHERE id = :id AND deleted_at IS NULL"
                ),
                {"id": album_id, "fp": source_fingerprint},
            )
            await conn.execute(
                text("DELETE FROM media_group_items WHERE group_id = :id"), {"id": album_id}
            )
            return bool(res.rowcount)

    async def stored_parts(
        self, channel_id: int, grouped_id: int
    ) -> dict[int, tuple[datetime | None, bool]]:
        """message id → (edit date, deleted) of the parts stored for an album (its known ids
        widen the neighbourhood fetch after a deletion; replays compare with the rest)."""
        async with self._tx("stored_parts") as conn:
            rows = await conn.execute(
                text(
                    "SELECT message_id, meta->>'edit_date', meta ? 'deleted_at' FROM posts "
                    "WHERE channel_id = :c AND grouped_id = :g"
                ),
                {"c": channel_id, "g": grouped_id},
            )
            return {int(r[0]): (_parse_ts(r[1]), bool(r[2])) for r in rows}

    async def _write_posts(self, conn: AsyncConnection, posts: Sequence[PostRow]) -> None:
        if not posts:
            return
        await conn.execute(
            _UPSERT_POST,
            [
                {
                    "id": p.id,
                    "tenant_id": self.tenant_id,
                    "channel_id": p.channel_id,
                    "message_id": p.message_id,
                    "grouped_id": p.grouped_id,
                    "text": p.text,
                    "posted_at": p.posted_at,
                    "meta": _json(p.meta),
                }
                for p in posts
            ],
        )

    async def _write_cursor(self, conn: AsyncConnection, channel_id: int, cursor: int) -> None:
        await conn.execute(
            _UPSERT_CURSOR,
            {"channel_id": channel_id, "tenant_id": self.tenant_id, "cursor": cursor},
        )

    # -- outbox ------------------------------------------------------------------------------

    @asynccontextmanager
    async def claim_outbox(self, limit: int) -> AsyncIterator[tuple[list[OutboxRow], Any]]:
        """Unsent outbox rows, oldest first, under the publisher lock, in one transaction.

        Yields (rows, mark_sent): call `await mark_sent(ids)` after Kafka acknowledged them;
        the transaction commits when the block ends. Only one publisher sends at a time
        (a transaction-level advisory lock), so an album's revisions leave in order; when
        another process holds it, no rows are yielded.
        """
        async with self._tx("claim_outbox") as conn:
            got = (
                await conn.execute(
                    text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": PUBLISHER_LOCK}
                )
            ).scalar_one()
            rows: list[OutboxRow] = []
            if got:
                result = await conn.execute(
                    text(
                        "SELECT id, topic, key, value, album_id FROM ingest_outbox "
                        "WHERE sent_at IS NULL ORDER BY id LIMIT :n"
                    ),
                    {"n": limit},
                )
                rows = [
                    OutboxRow(int(r[0]), r[1], bytes(r[2]), bytes(r[3]), int(r[4])) for r in result
                ]

            async def mark_sent(ids: Sequence[int]) -> None:
                if ids:
                    await conn.execute(
                        text(
                            "UPDATE ingest_outbox SET sent_at = now() WHERE id IN :ids"
                        ).bindparams(bindparam("ids", expanding=True)),
                        {"ids": list(ids)},
                    )

            yield rows, mark_sent

    async def outbox_backlog(self) -> int:
        async with self._tx("outbox_backlog") as conn:
            return int(
                (
                    await conn.execute(
                        text("SELECT count(*) FROM ingest_outbox WHERE sent_at IS NULL")
                    )
                ).scalar_one()
            )


def _parse_ts(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
