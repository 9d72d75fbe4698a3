"""Kafka clients outside Faust: the direct producer, and consumers of the stage loops.

The direct producer is a plain idempotent producer whose sends are awaited: everything the
table agents send (agents/keyed.py), the router's batches, ticks and dead letters. Faust writes
a table's changelog at once, so a send that a table write records must reach the broker before
that write, or a crash in between would lose it. At worst such sends repeat after a crash, and
every consumer of them is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from mode import Service

from streams.app import app
from streams.settings import settings

log = logging.getLogger(__name__)

#: (topic, key, value, partition): a message for the direct producer (partition None: by key)
Message = tuple[str, bytes | None, bytes, int | None]


@app.service
class DirectSender(Service):
    """Owns the process's direct producer (class attribute, one per worker process)."""

    producer: AIOKafkaProducer | None = None
    #: monotonic time the broker last acknowledged a direct send (health: Kafka connectivity)
    kafka_ok_at: float | None = None

    _lock: asyncio.Lock | None = None

    async def on_start(self) -> None:
        await self.get_producer()

    @classmethod
    async def get_producer(cls) -> AIOKafkaProducer:
        """The started producer; agents may need it before this service's turn to start."""
        if cls.producer is not None:
            return cls.producer
        if cls._lock is None:
            cls._lock = asyncio.Lock()
        async with cls._lock:
            if cls.producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=settings.bootstrap_servers,
                    enable_idempotence=True,
                    linger_ms=5,
                )
                await producer.start()
                cls.producer = producer
                cls.kafka_ok_at = time.monotonic()
        return cls.producer

    async def on_stop(self) -> None:
        producer, DirectSender.producer = DirectSender.producer, None
        if producer is not None:
            await producer.stop()


async def send_direct(messages: Sequence[Message]) -> None:
    """Send (topic, key, value, partition) messages and return once the broker has them all."""
    producer = await DirectSender.get_producer()
    futures = [
        await producer.send(topic, key=key, value=value, partition=partition)
        for topic, key, value, partition in messages
    ]
    await asyncio.gather(*futures)
    DirectSender.kafka_ok_at = time.monotonic()


async def send_until_done(
    send: Callable[[Sequence[Message]], Awaitable[None]], messages: Sequence[Message], stage: str
) -> None:
    """`send` until the broker has every message, backing off while it is away (the batch is
    recorded nowhere yet, so all of it is sent again; its consumers absorb repeats)."""
    delay = 0.5
    while True:
        try:
            await send(messages)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: sending %d messages failed; retrying", stage, len(messages))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def kafka_connected(window: float = 15.0) -> bool:
    """True when the broker acknowledged this worker's sends (ticks at least) recently."""
    ok = DirectSender.kafka_ok_at
    return ok is not None and time.monotonic() - ok < window


def group_consumer(group_id: str, **extra: Any) -> AIOKafkaConsumer:
    """A consumer in `group_id` that commits by hand, from the earliest offset when new, and
    leaves the group as quickly as Faust's consumer (the router and the relay use it)."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(settings.consumer_session_timeout_seconds * 1000),
        heartbeat_interval_ms=int(settings.consumer_session_timeout_seconds * 100),
        metadata_max_age_ms=5000,
        **extra,
    )


async def wait_for_partitions(
    consumer: AIOKafkaConsumer, topics: Sequence[str], within: float = 30.0
) -> None:
    """Until the metadata shows every partition of `topics` with a leader (bounded).

    A group member that joins while its topics are still being created is assigned only the
    partitions the metadata knew at that moment; on a fresh broker we saw the router keep such
    a partial assignment for minutes. Subscribing after this wait avoids it.
    """
    deadline = time.monotonic() + within
    cluster = consumer._client.cluster
    while True:
        await consumer._client.force_metadata_update()
        ready = True
        for topic in topics:
            parts = cluster.partitions_for_topic(topic)
            if not parts or any(
                cluster.leader_for_partition(TopicPartition(topic, p)) in (None, -1) for p in parts
            ):
                ready = False
        if ready or time.monotonic() >= deadline:
            if not ready:
                log.warning("topics %s not fully available after %.0fs", list(topics), within)
            return
        await asyncio.sleep(0.2)


async def stop_loop(task: asyncio.Future[Any] | None, consumer: AIOKafkaConsumer | None) -> None:
    """Cancel a consume loop, then stop its consumer; bounded, so a dead broker cannot hang
    the worker's shutdown."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    if consumer is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer.stop(), 10)
