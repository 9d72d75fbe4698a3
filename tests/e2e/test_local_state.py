"""Local table state and its changelogs: kept per APP_ID, discarded when it is ahead of a
recreated changelog (as Kafka Streams does on OffsetOutOfRange), marked clean only by a clean
stop."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from streams.generator import GeneratorConfig, generate
from tests.e2e.pipeline import Pipeline, consume_until, decoded

pytestmark = pytest.mark.e2e


def _albums(unique: str, n: int, offset: int) -> list[object]:
    gen = generate(
        GeneratorConfig(
            albums=n,
            seed=offset,
            tenants=(f"l{unique}",),
            first_album_id=7 * 10**9 + int(unique[:6], 16) * 1000 + offset,
        )
    )
    return list(gen.records)


async def _delete_internal_topics(servers: list[str], app_id: str) -> list[str]:
    """Delete every topic of the app (changelogs, envelopes, retry topics), as a recreated
    cluster would have them: empty, and their offsets back at 0."""
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(f"{app_id}-")]
        await admin.delete_topics(mine)
        for _ in range(120):
            if not set(mine) & set(await admin.list_topics()):
                return mine
            await asyncio.sleep(0.5)
        raise AssertionError(f"topics not deleted: {mine}")
    finally:
        await admin.close()


async def test_state_ahead_of_recreated_changelogs_is_discarded_and_restored(
    pipeline: Pipeline, unique: str, kafka: list[str]
) -> None:
    app_id = f"e2e-{unique}"
    table_dir = pipeline.tmp / "data-w1" / "faust" / app_id
    worker = pipeline.start_worker("w1")
    worker.wait_healthy()
    await pipeline.produce(_albums(unique, 30, 0))
    topic = pipeline.topic("album.assembled")
    await consume_until(kafka, topic, lambda rs: len({r.key for r in rs}) >= 30, within=120)
    assert (table_dir / "RUNNING").exists()
    assert worker.stop() == 0
    # a clean stop: the next start trusts its local tables
    assert not (table_dir / "RUNNING").exists()

    # the changelogs are recreated empty: the local tables are ahead of them
    deleted = await _delete_internal_topics(kafka, app_id)
    assert any(t.endswith("-changelog") for t in deleted), deleted
    worker = pipeline.start_worker("w1")
    worker.wait_healthy(timeout=180)
    assert "discarding the partition's local state" in worker.log_path.read_text()
    # and it goes on: new albums are assembled
    await pipeline.produce(_albums(unique, 20, 500))
    records = await consume_until(
        kafka, topic, lambda rs: len({r.key for r in rs}) >= 50, within=120
    )
    assert len({e["album_id"] for e in decoded(records)}) == 50
    assert worker.stop() == 0

    # another APP_ID with the same DATA_DIR has tables of its own
    other = pipeline.start_worker("w1", APP_ID=f"{app_id}-b")
    other.wait_healthy()
    assert other.stop() == 0
    assert (pipeline.tmp / "data-w1" / "faust" / f"{app_id}-b").is_dir()
    assert table_dir.is_dir()
