"""Postgres storage: the enrichment upsert of assembled albums into media_groups.meta."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from storage.errors import StorageError

# Creates the media_groups row from the event when ingestion has not written it (yet), and
# replaces meta->'enrichment' only with a higher version; other keys of meta are kept.
UPSERT_ENRICHMENT = text(
    """
    INSERT INTO media_groups (id, tenant_id, channel_id, grouped_id, caption_text, posted_at, meta)
    VALUES (:id, :tenant_id, :channel_id, :grouped_id, :caption_text,
            :posted_at, jsonb_build_object('enrichment', CAST(:e AS jsonb)))
    ON CONFLICT (id) DO UPDATE
       SET meta = jsonb_set(coalesce(media_groups.meta, '{}'::jsonb), '{enrichment}',
                            CAST(:e AS jsonb))
     WHERE coalesce((media_groups.meta->'enrichment'->>'version')::int, 0) < :version
    """
)


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


class PostgresError(StorageError):
    """A Postgres statement failed; connection problems are retriable."""


def wrap_error(what: str, exc: BaseException) -> PostgresError:
    """A driver error as PostgresError; connection problems are retriable."""
    err = PostgresError(f"postgres {what} failed: {exc}")
    err.retriable = isinstance(exc, (OSError, OperationalError)) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )
    return err


def enrichment_of(event: dict[str, Any]) -> dict[str, Any]:
    """The part of an album.assembled event kept in media_groups.meta->'enrichment'."""
    keys = (
        "event_id",
        "version",
        "status",
        "album_kind",
        "items_count",
        "items_analyzed",
        "vision_summary",
        "vision_labels",
        "ocr_text",
        "has_meme",
        "has_text",
        "assembly_completed_at",
        "assembly_lag_seconds",
    )
    return {k: event.get(k) for k in keys}


class PostgresStore:
    """The app's Postgres.

    Args:
        database_url: SQLAlchemy async URL (postgresql+asyncpg://...).
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._engine: AsyncEngine | None = None

    async def start(self) -> None:
        """Connect and check with `SELECT 1`."""
        self._engine = create_async_engine(self.database_url, pool_pre_ping=True)
        try:
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (OSError, DBAPIError) as exc:
            raise self._wrap("connect", exc) from exc

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        self._engine = None

    async def __aenter__(self) -> PostgresStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _wrap(self, what: str, exc: BaseException) -> PostgresError:
        return wrap_error(what, exc)

    async def upsert_enrichments(self, events: list[dict[str, Any]]) -> None:
        """Idempotent batch upsert: the highest version wins, other meta keys stay."""
        if self._engine is None:
            raise PostgresError("PostgresStore used before start()")
        rows = [
            {
                "id": e["album_id"],
                "tenant_id": e["tenant_id"],
                "channel_id": e["channel_id"],
                "grouped_id": e["grouped_id"],
                "caption_text": e.get("caption_text"),
                "posted_at": _timestamp(e.get("posted_at")),
                "e": orjson.dumps(enrichment_of(e)).decode(),
                "version": int(e["version"]),
            }
            for e in events
        ]
        try:
            async with self._engine.begin() as conn:
                await conn.execute(UPSERT_ENRICHMENT, rows)
        except (OSError, DBAPIError) as exc:
            raise self._wrap("upsert_enrichments", exc) from exc

    async def enrichment(self, album_id: int) -> dict[str, Any] | None:
        if self._engine is None:
            raise PostgresError("PostgresStore used before start()")
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT meta FROM media_groups WHERE id = :id"), {"id": album_id}
                )
            ).first()
        return None if row is None else row[0]
