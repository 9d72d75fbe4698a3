"""Exactly-once publication of album.assembled: a transactional, de-duplicating relay.

faust-streaming's exactly_once loses events when a worker is killed (measured by
tests/e2e/test_crash.py; see also faust-streaming #323, #517), so the pipeline never runs Faust
in that mode. With PROCESSING_GUARANTEE=exactly_once the assembler runs at-least-once (which
loses nothing, but may repeat an emission after a crash) and writes to an internal outbox topic;
this relay then copies the outbox to album.assembled exactly once, with plain Kafka
transactions (a consume-transform-produce stage loop, one transactional producer per outbox
partition):

- one transaction holds the published events, the relay's state updates and the outbox offsets;
- the state is the highest version published per album, kept in a compacted topic written in
  the same transaction and restored (read_committed) when a partition is assigned; a repeated
  emission has a version already published and is dropped;
- a transactional id per partition fences a zombie relay of a killed worker;
- every delivery is awaited inside its transaction (aiokafka commits a transaction without a
  batch it gave up on), and a failed transaction hands its partition to a new producer.

A read_committed consumer of album.assembled therefore never sees an event_id twice. A
partition whose producer could not start (the broker was away during the rebalance) is
acquired again by the next batch that reads it, never skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from mode import Service

from agents.direct import Message
from agents.stage import Batch, StageLoop
from schemas.events import supersedes
from streams.kafka_io import ensure_topics
from streams.kafka_security import kafka_options
from streams.metrics import relay_published_total, relay_skipped_total
from streams.settings import settings
from streams.topics import ALBUM_ASSEMBLED, OUTBOX, RELAY_GROUP, RELAY_STATE

log = logging.getLogger(__name__)

GROUP = RELAY_GROUP


class AssembledRelay(Service):
    """Copies the outbox to album.assembled exactly once (only under exactly_once)."""

    name = "relay"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.producers: dict[int, AIOKafkaProducer] = {}
        self.published_versions: dict[int, dict[int, int]] = {}  # partition → album → version
        self.published = 0
        self.skipped = 0
        self.last_commit_at: float | None = None
        self._lock = asyncio.Lock()
        self.stage: StageLoop | None = None
        if settings.exactly_once:
            self.stage = StageLoop(
                name="relay",
                group_id=GROUP,
                topics=[OUTBOX],
                handle=self.handle,
                # the transaction commits the offsets with the events it publishes
                commit=False,
                isolation_level="read_committed",
                on_assigned=self.acquire,
                on_revoked=self.release,
                beacon=self.beacon,
            )

    def on_init_dependencies(self) -> list[Service]:
        return [] if self.stage is None else [self.stage]

    async def on_start(self) -> None:
        if self.stage is not None:
            await ensure_topics([OUTBOX], settings.topic_partitions)
            await ensure_topics(
                [RELAY_STATE], settings.topic_partitions, config={"cleanup.policy": "compact"}
            )

    async def on_stop(self) -> None:
        # an open transaction is aborted by the broker (or fenced by the next owner)
        for producer in self.producers.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 10)
        self.producers.clear()

    async def acquire(self, assigned: list[TopicPartition]) -> None:
        """New partitions: fence zombies with their transactional ids, restore their state."""
        async with self._lock:
            for tp in assigned:
                try:
                    await self._acquire(tp.partition)
                except Exception:
                    # the batch that reads this partition tries again (see `handle`)
                    log.exception("relay: cannot take partition %d yet", tp.partition)

    async def _acquire(self, p: int) -> None:
        if p in self.producers:
            return
        producer = AIOKafkaProducer(
            **kafka_options(),
            bootstrap_servers=settings.bootstrap_servers,
            transactional_id=f"{settings.app_id}-relay-{p}",
            enable_idempotence=True,
        )
        try:
            await producer.start()  # init_transactions: aborts a zombie's open transaction
            self.published_versions[p] = await self._restore(p)
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        self.producers[p] = producer

    async def _discard(self, partition: int, producer: AIOKafkaProducer) -> None:
        """After a failed transaction the next batch takes the partition with a new producer.

        aiokafka keeps the sequence numbers of batches it expired (no leader in time), so after
        a broker restart the same producer's every later send failed with
        OutOfOrderSequenceNumber, and the relay retried it forever. A new producer with the
        same transactional id gets a new epoch (sequences from zero), fences this one and
        aborts whatever it left open; the partition's state is read again with it."""
        if self.producers.get(partition) is producer:
            del self.producers[partition]
            self.published_versions.pop(partition, None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), 10)

    async def release(self, revoked: list[TopicPartition]) -> None:
        async with self._lock:
            for tp in revoked:
                producer = self.producers.pop(tp.partition, None)
                self.published_versions.pop(tp.partition, None)
                if producer is not None:
                    with contextlib.suppress(Exception):
                        await producer.stop()

    async def _restore(self, partition: int) -> dict[int, int]:
        consumer = AIOKafkaConsumer(
            **kafka_options(),
            bootstrap_servers=settings.bootstrap_servers,
            isolation_level="read_committed",
            enable_auto_commit=False,
        )
        await consumer.start()
        state: dict[int, int] = {}
        try:
            tp = TopicPartition(RELAY_STATE, partition)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for m in batch.get(tp, []):
                    if m.key is None:
                        continue
                    album_id = int(m.key)
                    if m.value is None:
                        state.pop(album_id, None)
                    else:
                        state[album_id] = max(state.get(album_id, 0), int(m.value))
        finally:
            await consumer.stop()
        log.info("relay: partition %d restored, %d albums published before", partition, len(state))
        return state

    async def handle(self, batch: Batch) -> list[Message]:
        """Each partition's records in one transaction, the partitions' transactions at once
        (each has its producer); a failure rewinds the whole batch: what was committed
        meanwhile is dropped on the second pass as already published."""
        async with self._lock:
            for tp in batch:
                if tp.partition not in self.producers:
                    await self._acquire(tp.partition)
            # every partition's transaction ends (committed or aborted) before the lock is let
            # go: a sibling still in its transaction would meet the next batch's on its producer
            results = await asyncio.gather(
                *(self._relay(tp, records) for tp, records in batch.items()),
                return_exceptions=True,
            )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return []

    async def _relay(self, tp: TopicPartition, records: list[Any]) -> None:
        producer = self.producers[tp.partition]
        state = self.published_versions[tp.partition]
        pending: dict[int, int] = {}
        published = skipped = 0
        # aiokafka commits a transaction whose batches it gave up on (a batch that found no
        # leader within request_timeout_ms fails with LeaderNotAvailableError, and the commit
        # goes on without it): every delivery is awaited inside the transaction, so a failed
        # one aborts it and the batch is read again. Without this, a broker restart lost the
        # events of a whole partition while their outbox offsets were committed.
        deliveries: list[asyncio.Future[Any]] = []
        try:
            async with producer.transaction():
                for m in records:
                    try:
                        event = orjson.loads(m.value)
                        album_id, version = int(event["album_id"]), int(event["version"])
                    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                        log.error("relay: unreadable outbox record at %s@%d", tp, m.offset)
                        continue
                    if not supersedes(version, pending.get(album_id, state.get(album_id))):
                        skipped += 1
                        continue
                    key = str(album_id).encode()
                    deliveries.append(await producer.send(ALBUM_ASSEMBLED, key=key, value=m.value))
                    deliveries.append(
                        await producer.send(
                            RELAY_STATE,
                            key=key,
                            value=str(version).encode(),
                            partition=tp.partition,
                        )
                    )
                    pending[album_id] = version
                    published += 1
                await asyncio.gather(*deliveries)
                await producer.send_offsets_to_transaction({tp: records[-1].offset + 1}, GROUP)
        except BaseException:
            for delivery in deliveries:  # the first failure is raised; the rest are read here
                if delivery.done() and not delivery.cancelled():
                    delivery.exception()
            log.warning(
                "relay: partition %d: transaction failed, a new producer takes over", tp.partition
            )
            await self._discard(tp.partition, producer)
            raise
        state.update(pending)
        self.published += published
        self.skipped += skipped
        self.last_commit_at = time.monotonic()
        relay_published_total.inc(published)
        relay_skipped_total.inc(skipped)

    def health(self) -> dict[str, Any]:
        if self.stage is None:
            return {"status": "disabled", "reason": "PROCESSING_GUARANTEE=at_least_once"}
        last = self.last_commit_at
        return {
            **self.stage.health(),
            "partitions": sorted(self.producers),
            "published": self.published,
            "repeats_dropped": self.skipped,
            "seconds_since_last_commit": None
            if last is None
            else round(time.monotonic() - last, 3),
        }
