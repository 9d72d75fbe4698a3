"""Plain aiokafka helpers: creating topics, producing, reading topics to their end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.kafka_security import kafka_options
from streams.settings import settings

log = logging.getLogger(__name__)


class Outgoing(Protocol):
    """A record to produce (streams.generator.Record is one)."""

    @property
    def topic(self) -> str: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes: ...


async def ensure_topics(
    names: Sequence[str],
    partitions: int,
    *,
    config: Mapping[str, str] | None = None,
    bootstrap_servers: list[str] | None = None,
) -> None:
    """Create the topics of `names` that do not exist yet (TOPIC_REPLICATION_FACTOR replicas).

    Every process creates what it reads or writes before it starts, so nothing depends on the
    broker's auto-creation (one partition by default) or on which process started first.
    """
    admin = AIOKafkaAdminClient(
        **kafka_options(), bootstrap_servers=bootstrap_servers or settings.bootstrap_servers
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        for name in names:
            if name in existing:
                continue
            topic = NewTopic(
                name,
                partitions,
                settings.topic_replication_factor,
                topic_configs={**settings.topic_configs, **(config or {})},
            )
            with contextlib.suppress(TopicAlreadyExistsError):  # another process was first
                await admin.create_topics([topic])
                log.info("created topic %s (%d partitions)", name, partitions)
    finally:
        await admin.close()


async def wait_for_topics(names: Sequence[str], partitions: int, within: float = 180.0) -> None:
    """Until every topic of `names` exists with `partitions` partitions.

    Raises at once when one has another count, and after `within` seconds when one is missing
    (the Faust worker creates the internal topics; a stage started before it waits for them).
    """
    consumer = AIOKafkaConsumer(**kafka_options(), bootstrap_servers=settings.bootstrap_servers)
    await consumer.start()
    deadline = time.monotonic() + within
    try:
        while True:
            missing = []
            for name in names:
                found = len(await topic_partitions(consumer, name))
                if found == 0:
                    missing.append(name)
                elif found != partitions:
                    raise RuntimeError(
                        f"topic {name} has {found} partitions, TOPIC_PARTITIONS is {partitions}: "
                        "use the count it was created with, or a new APP_ID"
                    )
            if not missing:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"topics {missing} do not exist after {within:.0f}s")
            log.info("waiting for topics %s (the worker creates them)", missing)
            await asyncio.sleep(1.0)
    finally:
        await consumer.stop()


async def produce(
    bootstrap_servers: list[str],
    records: Iterable[Outgoing],
    *,
    rate: float = 0.0,
    batch: int = 500,
    topic_prefix: str = "",
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Produce `records` in order (rate in records/s, 0 = as fast as possible).

    `topic_prefix` is prepended to each record's contract topic name (see TOPIC_PREFIX);
    `on_sent(n)` is told of every `n` records the broker acknowledged (a progress bar).
    """
    producer = AIOKafkaProducer(
        **kafka_options(), bootstrap_servers=bootstrap_servers, linger_ms=5, enable_idempotence=True
    )
    await producer.start()
    sent = 0
    t0 = time.monotonic()
    try:
        pending: list[asyncio.Future[object]] = []
        for r in records:
            pending.append(await producer.send(topic_prefix + r.topic, key=r.key, value=r.value))
            sent += 1
            if len(pending) >= batch or (on_sent is not None and rate > 0 and len(pending) >= 50):
                await asyncio.gather(*pending)
                if on_sent is not None:
                    on_sent(len(pending))
                pending.clear()
            if rate > 0:
                ahead = sent / rate - (time.monotonic() - t0)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await asyncio.gather(*pending)
        if on_sent is not None and pending:
            on_sent(len(pending))
    finally:
        await producer.stop()
    return sent


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The partitions of `topic`, asking the broker when the client's metadata lacks it
    (empty when there is no such topic)."""
    parts = consumer.partitions_for_topic(topic)
    if parts is None:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(parts)]


async def read_topic(
    bootstrap_servers: list[str],
    topic: str,
    *,
    isolation_level: str = "read_committed",
    idle_timeout: float = 1.0,
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` from the beginning to its current end, partition by partition."""
    consumer = AIOKafkaConsumer(
        **kafka_options(),
        bootstrap_servers=bootstrap_servers,
        isolation_level=isolation_level,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, topic)
        if not tps:
            return
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if end[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=int(idle_timeout * 1000))
            for msgs in batch.values():
                for m in msgs:
                    yield m
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
