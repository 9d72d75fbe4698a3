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
from aiokafka.errors import (
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)
from aiokafka.partitioner import DefaultPartitioner
from mode import Service

from streams import metrics
from streams.health import health
from streams.kafka_security import kafka_options
from streams.settings import settings

log = logging.getLogger(__name__)

#: bytes of one producer batch (a partition's records in one request); under the broker's
#: default message.max.bytes (1 MB), and above the largest envelope (agents/envelopes.py)
BATCH_BYTES = 512 * 1024
#: the largest record sent: Kafka's default max.message.bytes (1,048,588) less a batch's
#: overhead. The size limits of schemas/validation.py keep every record under it; one that is
#: not goes to the DLQ, cut to fit, instead of failing its batch forever.
MAX_RECORD_BYTES = 1_000_000

#: (topic, key, value, partition): a message for the direct producer (partition None: by key;
#: value None: a tombstone)
Message = tuple[str, bytes | None, bytes | None, int | None]

#: errors after which an idempotent producer's sequence numbers are out of step with the
#: broker's for good: aiokafka neither bumps the epoch nor gets a new producer id (the Java
#: client does), so every later send to that partition fails the same way. Seen after a broker
#: restart with batches in flight (tests/e2e/test_broker_restart.py). A new producer fixes it;
#: what the old one had in flight is sent again by its caller (send_until_done).
BROKEN_PRODUCER = (OutOfOrderSequenceNumber, UnknownProducerId, ProducerFenced)


class DirectSender(Service):
    """Owns the process's direct producer (class attribute, one per process); the Faust worker
    registers it as a service (agents/ticker.py), stage processes call `close_producer`."""

    producer: AIOKafkaProducer | None = None

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
                    **kafka_options(),
                    bootstrap_servers=settings.bootstrap_servers,
                    enable_idempotence=True,
                    linger_ms=5,
                    # aiokafka makes a send wait while its partition's batch is full until
                    # that batch is on the wire: with the default 16 KB a batch of table
                    # writes (a changelog record per key) waited seconds for its round trips
                    max_batch_size=BATCH_BYTES,
                    max_request_size=4 * BATCH_BYTES,
                )
                await producer.start()
                cls.producer = producer
                health.kafka_acked()
        return cls.producer

    @classmethod
    async def discard(cls, producer: AIOKafkaProducer) -> None:
        """Replace `producer` (broken) with a new one at the next send; unless another caller
        has done so already."""
        if cls.producer is not producer or producer is None:
            return
        cls.producer = None
        log.warning("direct producer: idempotence state broken, starting a new producer")
        metrics.producer_resets_total.inc()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), 10)

    async def on_stop(self) -> None:
        await close_producer()


async def close_producer() -> None:
    """Stop the process's direct producer (what is in flight is sent first, bounded)."""
    producer, DirectSender.producer = DirectSender.producer, None
    if producer is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), 30)


async def send_direct(messages: Sequence[Message]) -> dict[tuple[str, int], int]:
    """Send (topic, key, value, partition) messages and return once the broker has them all:
    the last offset written per (topic, partition).

    The messages of one partition go in producer batches built here (aiokafka's `send` costs
    several times more per record); their order is kept. A message without a partition gets
    the one Kafka's default partitioner gives its key.
    """
    producer = await DirectSender.get_producer()
    groups: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {}
    for message in messages:
        topic, key, value, partition = message
        if len(value or b"") + len(key or b"") > MAX_RECORD_BYTES:
            topic, key, value, partition = _fitting(message)
        if partition is None:
            partition = await _partition_of(producer, topic, key)
        records = groups.get((topic, partition))
        if records is None:
            records = groups[topic, partition] = []
        records.append((key, value))
    pending: list[tuple[tuple[str, int], int, asyncio.Future[Any]]] = []
    for (topic, partition), records in groups.items():
        batch = producer.create_batch()
        count = 0
        for key, value in records:
            if batch.append(key=key, value=value, timestamp=None) is None:
                if count == 0:
                    raise MessageSizeTooLargeError(
                        f"a record of {len(value or b'')} bytes does not fit a producer batch"
                    )
                future = await producer.send_batch(batch, topic, partition=partition)
                pending.append(((topic, partition), count, future))
                batch, count = producer.create_batch(), 0
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise MessageSizeTooLargeError(
                        f"a record of {len(value or b'')} bytes does not fit a producer batch"
                    )
            count += 1
        future = await producer.send_batch(batch, topic, partition=partition)
        pending.append(((topic, partition), count, future))
    try:
        results = await asyncio.gather(*(future for _, _, future in pending))
    except BROKEN_PRODUCER:
        await DirectSender.discard(producer)
        raise
    health.kafka_acked()
    last: dict[tuple[str, int], int] = {}
    for (tp, count, _), meta in zip(pending, results, strict=True):
        last[tp] = max(last.get(tp, -1), meta.offset + count - 1)
    return last


def _fitting(message: Message) -> Message:
    """The message, or the dead letter of it (cut to fit) when it is over MAX_RECORD_BYTES."""
    topic, key, value, _partition = message
    size = len(key or b"") + len(value or b"")
    if size <= MAX_RECORD_BYTES:
        return message
    from agents.dlq import dead_letter_message  # agents.dlq imports this module
    from schemas.validation import InvalidEvent

    metrics.records_too_large_total.labels(topic=_topic_kind(topic)).inc()
    return dead_letter_message(
        key=key,
        value=value,
        source_topic=topic,
        source_partition=None,
        source_offset=None,
        stage="produce",
        error=InvalidEvent(
            "record_too_large",
            f"a record of {size} bytes for {topic} is over the {MAX_RECORD_BYTES}-byte limit",
        ),
    )


def _topic_kind(topic: str) -> str:
    """A bounded label for a topic name: its suffix after the app id or topic prefix."""
    for suffix in ("changelog", "outbox", "album.assembled", "albums.dlq", "events", "retry"):
        if topic.endswith(suffix):
            return suffix
    return "other"


async def _partition_of(producer: AIOKafkaProducer, topic: str, key: bytes | None) -> int:
    partitions = sorted(await producer.partitions_for(topic))
    return int(_PARTITIONER(key, partitions, partitions))


_PARTITIONER = DefaultPartitioner()


async def send_until_done(
    send: Callable[[Sequence[Message]], Awaitable[Any]], messages: Sequence[Message], stage: str
) -> Any:
    """`send` until the broker has every message, backing off while it is away (the batch is
    recorded nowhere yet, so all of it is sent again; its consumers absorb repeats)."""
    delay = 0.5
    while True:
        try:
            return await send(messages)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: sending %d messages failed; retrying", stage, len(messages))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def group_consumer(group_id: str, **extra: Any) -> AIOKafkaConsumer:
    """A consumer in `group_id` that commits by hand, from the earliest offset when new, and
    leaves the group as quickly as Faust's consumer (the router and the relay use it)."""
    return AIOKafkaConsumer(
        **kafka_options(),
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
