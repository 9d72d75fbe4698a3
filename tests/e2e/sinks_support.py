"""Helpers of the sink tests: a pipeline with every sink on, and snapshots of the four stores."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from storage.embeddings import Embedder
from storage.neo4j import Neo4jGraph
from storage.postgres.store import PostgresStore
from storage.qdrant import QdrantIndex
from storage.s3 import S3Storage, album_summary_key
from streams.settings import Settings
from tests.e2e.pipeline import Pipeline
from tests.workers import WorkerProcess

SINKS = ("s3", "postgres", "qdrant", "neo4j")


def sink_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Worker environment for the sinks: the test database, small batches, short backoff."""
    return {
        "SINKS": ",".join(SINKS),
        "DATABASE_URL": settings.database_url.get(),
        "SINK_BATCH_SECONDS": "0.2",
        **extra,
    }


def sink_counts(worker: WorkerProcess) -> dict[str, dict[str, Any]]:
    _status, body = worker.get("/health/detailed")
    assert isinstance(body, dict), body
    return dict(body["sinks"])


async def wait_sinks_handled(
    worker: WorkerProcess, records: int, within: float, sinks: tuple[str, ...] = SINKS
) -> dict[str, dict[str, Any]]:
    """Until every sink has written or parked `records` album.assembled records."""
    deadline = time.monotonic() + within
    counts: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        counts = sink_counts(worker)
        if all(counts[s]["albums_written"] + counts[s]["albums_parked"] >= records for s in sinks):
            return counts
        await asyncio.sleep(0.5)
    raise AssertionError(f"sinks did not handle {records} records in {within}s: {counts}")


def s3_storage(settings: Settings) -> S3Storage:
    return S3Storage(
        settings.s3_endpoint_url,
        settings.s3_bucket,
        settings.s3_access_key,
        settings.s3_secret_key.get(),
        settings.s3_region,
    )


async def enrichment_versions(settings: Settings, ids: list[int]) -> dict[int, str | None]:
    """album_id → version of its Postgres enrichment, for the albums that have a row."""
    engine = create_async_engine(settings.database_url.get())
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT id, meta->'enrichment'->>'version' FROM media_groups "
                        "WHERE id = ANY(:ids)"
                    ),
                    {"ids": ids},
                )
            ).all()
    finally:
        await engine.dispose()
    return {int(r[0]): r[1] for r in rows}  # id is the primary key: one row per album


def qdrant_path(pipeline: Pipeline, worker: str = "w1") -> Path:
    return pipeline.tmp / f"data-{worker}" / "qdrant"


async def snapshot(
    settings: Settings, events: dict[int, dict[str, Any]], qdrant_dir: Path
) -> dict[str, Any]:
    """What every store holds for these albums (Qdrant read from the stopped worker's dir)."""
    out: dict[str, Any] = {"s3": {}, "postgres": {}, "neo4j": {}, "qdrant": {}}
    async with s3_storage(settings) as s3:
        for album_id, e in events.items():
            key = album_summary_key(e["tenant_id"], album_id)
            out["s3"][album_id] = (await s3.get_json(key), await s3.stored_version(key))
    async with PostgresStore(settings.database_url.get()) as pg:
        for album_id in events:
            out["postgres"][album_id] = await pg.enrichment(album_id)
    async with Neo4jGraph(
        settings.neo4j_uri, settings.neo4j_user, settings.neo4j_password.get()
    ) as graph:
        for album_id in events:
            out["neo4j"][album_id] = (
                await graph.get_album(album_id),
                await graph.get_album_posts(album_id),
            )
    async with QdrantIndex(path=qdrant_dir, embedder=Embedder()) as index:
        for album_id, e in events.items():
            out["qdrant"][album_id] = await index.album_points(e["tenant_id"], album_id)
    return out
