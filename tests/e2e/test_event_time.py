"""Deadlines in event time on the real broker: a worker catching up on a backlog emits no
album `partial` whose parts all arrived within the deadline in event time, and partitions
without traffic still reach their deadlines."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from streams.generator import GeneratorConfig, Record, generate
from streams.kafka_io import ensure_topics
from streams.topics import ALBUMS_PARSED, VISION_ANALYZED
from tests.e2e.pipeline import Pipeline, consume_until, decoded

pytestmark = pytest.mark.timeout(600)

DEADLINE = 3.0
#: short, so that catching up on the backlog takes several deadlines
BACKLOG_DEADLINE = 1.0


async def produce_at(pipeline: Pipeline, timed: list[tuple[float, Record]]) -> None:
    """Produce records with the given event times (their Kafka timestamps), in time order."""
    producer = AIOKafkaProducer(
        bootstrap_servers=pipeline.servers, linger_ms=20, enable_idempotence=True
    )
    await producer.start()
    try:
        pending = []
        for ts, r in sorted(timed, key=lambda t: t[0]):
            pending.append(
                await producer.send(
                    pipeline.topic(r.topic), key=r.key, value=r.value, timestamp_ms=int(ts * 1000)
                )
            )
        for f in pending:
            await f
    finally:
        await producer.stop()


def backlog(
    albums: int, start: float, spacing: float
) -> tuple[list[tuple[float, Record]], set[int]]:
    """`albums` complete albums, album i at start + i * spacing, its vision 0.5 s later: each
    album's parts all arrive well within the deadline in event time."""
    gen = generate(GeneratorConfig(albums=albums, seed=5, shuffle=False, album_id_share=0.5))
    order = {album_id: i for i, album_id in enumerate(sorted(gen.albums))}
    timed = []
    for r in gen.records:
        assert r.album_id is not None
        at = start + order[r.album_id] * spacing + (0.0 if r.kind == "parsed" else 0.5)
        timed.append((at, r))
    return timed, set(gen.albums)


async def test_a_backlog_caught_up_after_its_deadlines_emits_nothing_partial(
    pipeline: Pipeline,
) -> None:
    # an hour-old backlog of 6,000 albums over 120 s of event time: the worker was down
    albums = 6000
    timed, ids = backlog(albums, time.time() - 3600, spacing=0.02)
    inputs = [pipeline.topic(ALBUMS_PARSED), pipeline.topic(VISION_ANALYZED)]
    await ensure_topics(inputs, 4, bootstrap_servers=pipeline.servers)
    await produce_at(pipeline, timed)
    worker = pipeline.start_worker(
        ALBUM_DEADLINE_SECONDS=str(BACKLOG_DEADLINE), LAG_INTERVAL_SECONDS="2"
    )
    worker.wait_healthy()
    topic = pipeline.topic("album.assembled")
    records = await consume_until(
        pipeline.servers,
        topic,
        lambda rs: len({o["album_id"] for o in decoded(rs)}) >= albums,
        within=300,
    )
    # the catch-up took longer than the deadline: in processing time albums would be due
    stamps = sorted(r.timestamp for r in records)
    catch_up = (stamps[-1] - stamps[0]) / 1000
    assert catch_up > 2 * BACKLOG_DEADLINE, (
        f"the backlog was caught up in {catch_up:.1f}s: too small a test"
    )
    # a moment more for anything that would come late (a partial's complete v2)
    await asyncio.sleep(2 * BACKLOG_DEADLINE + 2)
    records = await consume_until(pipeline.servers, topic, lambda rs: False, within=5)
    out = decoded(records)
    statuses = Counter((o["status"], o["version"]) for o in out)
    assert {o["album_id"] for o in out} == ids
    assert statuses == {("complete", 1): albums}, statuses
    assert worker.alive()


async def test_a_partition_without_traffic_still_reaches_its_deadline(pipeline: Pipeline) -> None:
    gen = generate(GeneratorConfig(albums=12, seed=8, missing_vision_share=1.0, shuffle=False))
    worker = pipeline.start_worker(ALBUM_DEADLINE_SECONDS=str(DEADLINE), LAG_INTERVAL_SECONDS="2")
    worker.wait_healthy()
    sent = time.time()
    await pipeline.produce(gen.records)
    records = await consume_until(
        pipeline.servers,
        pipeline.topic("album.assembled"),
        lambda rs: len(decoded(rs)) >= 12,
        within=90,
    )
    out: list[dict[str, Any]] = decoded(records)
    assert {(o["status"], o["version"]) for o in out} == {("partial", 1)}
    # nothing came after the albums: their partitions' stream time followed the clock, from
    # idle_seconds (2 s) after the last record, while the router had no lag
    late = max(r.timestamp / 1000 for r in records) - sent
    assert DEADLINE <= late < DEADLINE + 30, late
