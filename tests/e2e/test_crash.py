"""Crash safety: SIGKILL the worker several times mid-run; no album is lost.

With exactly_once (the transactional relay of agents/relay.py), a read_committed consumer of
album.assembled sees no event_id twice; with at_least_once, duplicates may appear (same
event_id, so consumers can drop them) and the test prints how many. The sinks run too
(Postgres, S3, Neo4j; embedded Qdrant lives in the data dir the test deletes): each album ends
up in each store exactly once. Afterwards the group's commits reach the end of the internal
topics: no record was left behind unprocessed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from neo4j import AsyncGraphDatabase

from streams.generator import GeneratorConfig, generate
from streams.settings import Settings
from tests.e2e.pipeline import Pipeline, consume_until
from tests.e2e.sinks_support import enrichment_versions, s3_storage, sink_env

ALBUMS = int(os.environ.get("CRASH_TEST_ALBUMS", "2000"))
KILLS = 3


async def commit_lag(servers: list[str], group: str, topics: set[str]) -> dict[str, int]:
    """Records of these topics after the group's committed offset, per partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=servers)
    await consumer.start()
    try:
        # partitions_for_topic only knows topics whose metadata the client has asked for
        for t in topics:
            consumer._client.add_topic(t)
        await consumer._client.force_metadata_update()
        # every partition, not only those with a commit: one never committed counts in full
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
    finally:
        await consumer.stop()
    return {
        f"{tp.topic}[{tp.partition}]": ends[tp]
        - (committed[tp].offset if tp in committed else starts[tp])
        for tp in tps
    }


async def stored(settings: Settings, tenant: str, ids: list[int]) -> dict[str, int]:
    """Albums of `ids` in each store; a duplicate fails."""
    versions = await enrichment_versions(settings, ids)
    assert set(versions.values()) <= {"1"}
    async with s3_storage(settings) as s3:
        keys = await s3.list_keys(f"album/{tenant}/")
    driver = AsyncGraphDatabase.driver(
        settings.neo4j_uri, auth=(settings.neo4j_user, settings.neo4j_password.get())
    )
    try:
        async with driver.session() as session:
            result = await session.run(
                "MATCH (a:Album {tenant_id: $t}) RETURN count(a) AS n, "
                "count(DISTINCT a.album_id) AS d, collect(DISTINCT a.version) AS v",
                t=tenant,
            )
            row = await result.single()
    finally:
        await driver.close()
    assert row is not None
    assert row["n"] == row["d"]
    assert set(row["v"]) <= {1}
    return {"postgres": len(versions), "s3": len(set(keys)), "neo4j": int(row["n"])}


async def poll(check: Callable[[], Awaitable[bool]], within: float) -> bool:
    deadline = time.monotonic() + within
    while True:
        if await check():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(2)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_sigkill_during_run_loses_nothing(
    pipeline: Pipeline, guarantee: str, base_settings: Settings, unique: str
) -> None:
    tenant = f"c{unique}"
    gen = generate(
        GeneratorConfig(
            albums=ALBUMS,
            seed=21,
            shuffle=True,
            duplicate_share=0.05,
            album_id_share=0.5,
            tenants=(tenant,),
            first_album_id=4 * 10**9 + int(unique[:6], 16) * 10_000,
        )
    )
    env = {
        "PROCESSING_GUARANTEE": guarantee,
        "CONSUMER_SESSION_TIMEOUT_SECONDS": "6",
        **sink_env(base_settings, SINKS="postgres,s3,neo4j"),
    }
    worker = pipeline.start_worker("w0", **env)
    worker.wait_healthy()
    rate = len(gen.records) / 20  # the run lasts ~20 s: kills land in the middle of it
    producing = asyncio.create_task(pipeline.produce(gen.records, rate=rate))
    data_dir = pipeline.tmp / "data-w0"
    for kill in range(KILLS):
        await asyncio.sleep(4)
        worker.kill()  # SIGKILL: no shutdown, no commit, no flush
        worker.proc.wait(10)  # type: ignore[union-attr]
        if kill == 1:
            # once, lose the local RocksDB too: state must come back from the changelog
            shutil.rmtree(data_dir, ignore_errors=True)
        worker = pipeline.start_worker("w0", **env)
        worker.wait_healthy(timeout=180)
    await producing

    def albums_seen(records: list[Any]) -> bool:
        return len({orjson.loads(r.value)["album_id"] for r in records}) >= ALBUMS

    records = await consume_until(
        pipeline.servers,
        pipeline.topic("album.assembled"),
        albums_seen,
        within=300,
        isolation_level="read_committed",
    )
    out = [orjson.loads(r.value) for r in records]
    missing = sorted(set(gen.albums) - {o["album_id"] for o in out})
    assert not missing, f"{len(missing)} albums never assembled, e.g. {missing[:20]}"
    assert all(o["status"] == "complete" and o["version"] == 1 for o in out)
    dup = sum(n - 1 for n in Counter(o["event_id"] for o in out).values())
    print(f"\n{guarantee}: {len(out)} album.assembled records, {dup} duplicate event_ids")
    if guarantee == "exactly_once":
        assert dup == 0
    for o in out:
        assert o["items_analyzed"] == o["items_count"]

    # every album in every store, once
    ids = sorted(gen.albums)
    counts: dict[str, int] = {}

    async def all_stored() -> bool:
        counts.update(await stored(base_settings, tenant, ids))
        return set(counts.values()) == {ALBUMS}

    await poll(all_stored, 180)
    assert counts == dict.fromkeys(("postgres", "s3", "neo4j"), ALBUMS)

    # nothing left behind: the commits catch up with the internal topics (ticks keep coming)
    internal = {f"{pipeline.env()['APP_ID']}-{t}" for t in ("album-events", "post-events")}
    lag: dict[str, int] = {}

    async def caught_up() -> bool:
        lag.update(await commit_lag(pipeline.servers, pipeline.env()["APP_ID"], internal))
        return bool(lag) and max(lag.values()) <= 20

    assert await poll(caught_up, 60), f"commits stay behind: {lag}"
