"""storage.postgres against the local Postgres: migrations, idempotent enrichment upserts."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from storage.errors import TenantConflict
from storage.postgres import PostgresStore, upgrade_async


@pytest.fixture(scope="session")
async def migrated(postgres_url: str) -> str:
    await upgrade_async(postgres_url)  # idempotent: `make test` already ran it
    return postgres_url


def assembled(album_id: int, version: int, status: str = "complete") -> dict[str, Any]:
    return {
        "schema": "album.assembled/v1",
        "event_id": f"{album_id}:{version}",
        "album_id": album_id,
        "version": version,
        "status": status,
        "tenant_id": "acme",
        "channel_id": -1001234567890,
        "grouped_id": 10**12 + album_id,
        "album_kind": "photo",
        "items_count": 3,
        "items_analyzed": 3 if status == "complete" else 2,
        "caption_text": "Новости дня",
        "posted_at": "2025-01-30T10:00:00Z",
        "vision_summary": f"summary v{version}",
        "vision_labels": ["cat", "sofa"],
        "ocr_text": "",
        "has_meme": False,
        "has_text": False,
        "items": [],
        "assembly_completed_at": "2025-01-30T10:00:09.000Z",
        "assembly_lag_seconds": 6.2,
    }


async def test_enrichment_keeps_the_highest_version_and_other_meta(migrated: str) -> None:
    album_id = random.randrange(10**9, 2 * 10**9)
    async with PostgresStore(migrated) as store:
        # no media_groups row yet: the sink creates it from the event
        await store.upsert_enrichments([assembled(album_id, 1, "partial")])
        meta = await store.enrichment(album_id)
        assert meta is not None
        assert meta["enrichment"]["version"] == 1
        assert meta["enrichment"]["status"] == "partial"

        # ingestion's own key in meta is never clobbered
        engine = create_async_engine(migrated)
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE media_groups SET meta = meta || CAST(:m AS jsonb) WHERE id = :i"),
                {"i": album_id, "m": '{"ingest": {"ok": true}}'},
            )
        await engine.dispose()

        await store.upsert_enrichments([assembled(album_id, 2)])
        await store.upsert_enrichments([assembled(album_id, 1, "partial")])  # older: ignored
        await store.upsert_enrichments([assembled(album_id, 2)])  # replay: no change
        meta = await store.enrichment(album_id)
        assert meta is not None
        assert meta["enrichment"]["version"] == 2
        assert meta["enrichment"]["status"] == "complete"
        assert meta["enrichment"]["vision_summary"] == "summary v2"
        assert meta["ingest"] == {"ok": True}


async def test_a_batch_is_one_statement_for_many_albums_new_and_stored(migrated: str) -> None:
    first = random.randrange(3 * 10**9, 4 * 10**9)
    ids = list(range(first, first + 300))
    async with PostgresStore(migrated) as store:
        await store.upsert_enrichments([assembled(a, 1, "partial") for a in ids[:100]])
        # 100 stored at version 1, 200 new; one with a version beyond a 32-bit integer
        batch = [assembled(a, 2) for a in ids]
        batch[0] = assembled(ids[0], 2**33)
        await store.upsert_enrichments(batch)
        engine = create_async_engine(migrated)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT id, tenant_id, grouped_id, posted_at, "
                        "meta->'enrichment'->>'version' FROM media_groups WHERE id = ANY(:ids)"
                    ),
                    {"ids": ids},
                )
            ).all()
        await engine.dispose()
    versions = {r[0]: r[4] for r in rows}
    assert len(rows) == 300
    assert versions[ids[0]] == str(2**33)
    assert set(versions[a] for a in ids[1:]) == {"2"}
    row = next(r for r in rows if r[0] == ids[5])
    assert (row[1], row[2]) == ("acme", 10**12 + ids[5])
    assert row[3].isoformat() == "2025-01-30T10:00:00+00:00"


async def test_constraints_make_ingestion_idempotent(migrated: str) -> None:
    album_id = random.randrange(2 * 10**9, 3 * 10**9)
    engine = create_async_engine(migrated)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO media_groups (id, tenant_id, channel_id, grouped_id) "
                    "VALUES (:i, 'acme', -1, :g)"
                ),
                {"i": album_id, "g": album_id},
            )
            await conn.execute(
                text(
                    "INSERT INTO media_group_items (group_id, post_id, position, media_kind) "
                    "VALUES (:i, 1, 0, 'photo')"
                ),
                {"i": album_id},
            )
        for stmt in [
            # the same grouped_id in the same channel
            "INSERT INTO media_groups (id, tenant_id, channel_id, grouped_id) "
            "VALUES (:other, 'acme', -1, :i)",
            # the same position in the same album
            "INSERT INTO media_group_items (group_id, post_id, position, media_kind) "
            "VALUES (:i, 2, 0, 'photo')",
        ]:
            params = {"i": album_id, "other": album_id + 1} if ":other" in stmt else {"i": album_id}
            async with engine.connect() as conn:
                with pytest.raises(IntegrityError):
                    await conn.execute(text(stmt), params)
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM media_groups WHERE id = :i"), {"i": album_id})
        await engine.dispose()


async def test_another_tenants_album_id_is_refused_never_overwritten(migrated: str) -> None:
    album_id = random.randrange(5 * 10**9, 6 * 10**9)
    theirs = {**assembled(album_id, 1), "tenant_id": "beta", "vision_summary": "beta's"}
    async with PostgresStore(migrated) as store:
        await store.upsert_enrichments([assembled(album_id, 1)])
        with pytest.raises(TenantConflict) as refused:
            await store.upsert_enrichments([{**theirs, "version": 5, "event_id": f"{album_id}:5"}])
        assert refused.value.ids == [album_id]
        assert not refused.value.retriable
        assert "beta's" not in str(refused.value)  # the refusal carries no album data
        # acme's row is as it was; beta sees nothing under that id
        meta = await store.enrichment(album_id, tenant_id="acme")
        assert meta is not None
        assert meta["enrichment"]["version"] == 1
        assert meta["enrichment"]["vision_summary"] == "summary v1"
        assert await store.enrichment(album_id, tenant_id="beta") is None
        # a batch with one such album is refused whole: the sink retries its albums alone
        other = album_id + 1
        with pytest.raises(TenantConflict):
            await store.upsert_enrichments([assembled(other, 1), theirs])
        assert await store.enrichment(other) is None
