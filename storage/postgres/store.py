"""Postgres storage: the enrichment upsert of assembled albums into media_groups.meta."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from storage.errors import StorageError, TenantConflict

# One statement per batch: the rows travel as one JSON array, unnested by jsonb_to_recordset.
# Creates the media_groups row from the event when ingestion has not written it (yet), and
# replaces meta->'enrichment' only with a higher version (schemas.events.supersedes); other
# keys of meta are kept. The batch holds one row per album (storage.sinks.latest_versions):
# ON CONFLICT may not touch a row twice in one statement.
UPSERT_ENRICHMENTS = text(
    """
    INSERT INTO media_groups (id, tenant_id, channel_id, grouped_id, caption_text, posted_at, meta)
    SELECT r.id, r.tenant_id, r.channel_id, r.grouped_id, r.caption_text, r.posted_at,
           jsonb_build_object('enrichment', r.e)
      FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
           id bigint, tenant_id text, channel_id bigint, grouped_id bigint, caption_text text,
           posted_at timestamptz, e jsonb)
    ON CONFLICT (id) DO UPDATE
       SET meta = jsonb_set(coalesce(media_groups.meta, '{}'::jsonb), '{enrichment}',
                            EXCLUDED.meta->'enrichment')
     WHERE coalesce((media_groups.meta->'enrichment'->>'version')::bigint, 0)
           < (EXCLUDED.meta->'enrichment'->>'version')::bigint
       AND media_groups.tenant_id = EXCLUDED.tenant_id
    """
)

#: ids of the batch that another tenant's row holds (checked first, under a row lock, in the
#: transaction of the upsert; the upsert's own tenant condition is the last guard)
TENANT_CONFLICTS = text(
    """
    SELECT m.id
      FROM media_groups m
      JOIN jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(id bigint, tenant_id text)
        ON m.id = r.id
     WHERE m.tenant_id <> r.tenant_id
       FOR UPDATE OF m
    """
)


def _iso(value: Any) -> str | None:
    """An ISO timestamp Postgres reads, or None (what does not parse is left out)."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).isoformat()
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

    def __init__(self, database_url: str, *, timeout: float = 30.0) -> None:
        self.database_url = database_url
        self.timeout = timeout
        self._engine: AsyncEngine | None = None

    async def start(self) -> None:
        """Connect and check with `SELECT 1`."""
        # every call is bounded: a server that is up but does not answer (stopped, locked) is
        # a timeout, which the sinks retry, not a sink that waits forever
        self._engine = create_async_engine(
            self.database_url,
            # an error's text (health, DLQ records) must not carry a batch's rows: other albums
            hide_parameters=True,
            pool_pre_ping=True,
            pool_timeout=self.timeout,
            connect_args={
                "timeout": min(self.timeout, 10.0),
                "command_timeout": self.timeout,
                "server_settings": {"statement_timeout": str(int(self.timeout * 1000))},
            },
        )
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
        if not events:
            return
        rows = [
            {
                "id": e["album_id"],
                "tenant_id": e["tenant_id"],
                "channel_id": e["channel_id"],
                "grouped_id": e["grouped_id"],
                "caption_text": e.get("caption_text"),
                "posted_at": _iso(e.get("posted_at")),
                "e": enrichment_of(e),
            }
            for e in events
        ]
        try:
            params = {"rows": orjson.dumps(rows).decode()}
            async with self._engine.begin() as conn:
                taken = [r[0] for r in (await conn.execute(TENANT_CONFLICTS, params)).all()]
                if taken:
                    raise TenantConflict("postgres media_groups", taken)
                await conn.execute(UPSERT_ENRICHMENTS, params)
        except (OSError, DBAPIError) as exc:
            raise self._wrap("upsert_enrichments", exc) from exc

    async def enrichment(
        self, album_id: int, *, tenant_id: str | None = None
    ) -> dict[str, Any] | None:
        """The album's `meta` (enrichment included); with `tenant_id`, only that tenant's."""
        if self._engine is None:
            raise PostgresError("PostgresStore used before start()")
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT meta FROM media_groups WHERE id = :id "
                        "AND (CAST(:tenant AS text) IS NULL OR tenant_id = :tenant)"
                    ),
                    {"id": album_id, "tenant": tenant_id},
                )
            ).first()
        return None if row is None else row[0]
