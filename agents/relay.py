"""Exactly-once publication of album.assembled: a transactional, de-duplicating relay.

faust-streaming's exactly_once loses events when a worker is killed (measured by
tests/e2e/test_crash.py; see also faust-streaming #323, #517), so the pipeline never runs Faust
in that mode. With PROCESSING_GUARANTEE=exactly_once the assembler runs at-least-once (which
loses nothing, but may repeat an emission after a crash) and writes to an internal outbox topic;
this relay then copies the outbox to album.assembled exactly once, with plain Kafka
transactions (a consume-transform-produce loop, one transactional producer per outbox
partition):

- one transaction holds the published events, the relay's state updates and the outbox offsets;
- the state is the highest version published per album, kept in a compacted topic written in
  the same transaction and restored (read_committed) when a partition is assigned; a repeated
  emission has a version already published and is dropped;
- a transactional id per partition fences a zombie relay of a killed worker.

A read_committed consumer of album.assembled therefore never sees an event_id twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from mode import Service

from agents.direct import group_consumer, stop_loop, wait_for_partitions
from streams.app import app
from streams.metrics import relay_published_total, relay_skipped_total
from streams.settings import settings
from streams.topics import ALBUM_ASSEMBLED, OUTBOX, RELAY_STATE

log = logging.getLogger(__name__)

GROUP = f"{settings.app_id}-relay"


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, relay: AssembledRelay) -> None:
        self.relay = relay

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.relay.release(list(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.relay.acquire(list(assigned))


class AssembledRelay(Service):
    """Copies the outbox to album.assembled exactly once (only under exactly_once)."""

    #: health: when the last transaction committed, how many events published / dropped
    last_commit_at: float | None = None
    published = 0
    skipped = 0
    partitions: tuple[int, ...] = ()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.consumer: AIOKafkaConsumer | None = None
        self.producers: dict[int, AIOKafkaProducer] = {}
        self.published_versions: dict[int, dict[int, int]] = {}  # partition → album → version
        self._lock = asyncio.Lock()

    async def on_start(self) -> None:
        if not settings.exactly_once:
            return
        await self._declare_topics()
        self.consumer = group_consumer(GROUP, isolation_level="read_committed")
        await self.consumer.start()
        await wait_for_partitions(self.consumer, [OUTBOX])
        self.consumer.subscribe([OUTBOX], listener=_Rebalance(self))
        self._task = asyncio.ensure_future(self._run())

    async def on_stop(self) -> None:
        # an open transaction is aborted by the broker (or fenced by the next owner)
        await stop_loop(getattr(self, "_task", None), self.consumer)
        for producer in self.producers.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 10)
        self.producers.clear()

    async def _declare_topics(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
        await admin.start()
        try:
            for name, config in (
                (OUTBOX, {}),
                (RELAY_STATE, {"cleanup.policy": "compact"}),
            ):
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(
                        [
                            NewTopic(
                                name,
                                settings.topic_partitions,
                                settings.topic_replication_factor,
                                topic_configs=config,
                            )
                        ]
                    )
        finally:
            await admin.close()

    async def acquire(self, assigned: list[TopicPartition]) -> None:
        """New partitions: fence zombies with their transactional ids, restore their state."""
        async with self._lock:
            for tp in assigned:
                p = tp.partition
                if p in self.producers:
                    continue
                producer = AIOKafkaProducer(
                    bootstrap_servers=settings.bootstrap_servers,
                    transactional_id=f"{settings.app_id}-relay-{p}",
                    enable_idempotence=True,
                )
                await producer.start()  # init_transactions: aborts a zombie's open transaction
                self.producers[p] = producer
                self.published_versions[p] = await self._restore(p)
            AssembledRelay.partitions = tuple(sorted(self.producers))

    async def release(self, revoked: list[TopicPartition]) -> None:
        async with self._lock:
            for tp in revoked:
                producer = self.producers.pop(tp.partition, None)
                self.published_versions.pop(tp.partition, None)
                if producer is not None:
                    await producer.stop()
            AssembledRelay.partitions = tuple(sorted(self.producers))

    async def _restore(self, partition: int) -> dict[int, int]:
        consumer = AIOKafkaConsumer(
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

    async def _run(self) -> None:
        assert self.consumer is not None
        while not self.should_stop:
            batch = await self.consumer.getmany(timeout_ms=500, max_records=2000)
            if not batch:
                continue
            async with self._lock:
                for tp, records in batch.items():
                    if tp.partition not in self.producers or not records:
                        continue
                    try:
                        await self._relay(tp, records)
                    except Exception:
                        # the transaction was aborted: read these records again
                        log.exception("relay: transaction on %s failed; retrying", tp)
                        self.consumer.seek(tp, records[0].offset)
                        await asyncio.sleep(1.0)

    async def _relay(self, tp: TopicPartition, records: list[Any]) -> None:
        producer = self.producers[tp.partition]
        state = self.published_versions[tp.partition]
        pending: dict[int, int] = {}
        published = skipped = 0
        async with producer.transaction():
            for m in records:
                try:
                    event = orjson.loads(m.value)
                    album_id, version = int(event["album_id"]), int(event["version"])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    log.error("relay: unreadable outbox record at %s@%d", tp, m.offset)
                    continue
                if version <= max(state.get(album_id, 0), pending.get(album_id, 0)):
                    skipped += 1
                    continue
                await producer.send(ALBUM_ASSEMBLED, key=str(album_id).encode(), value=m.value)
                await producer.send(
                    RELAY_STATE,
                    key=str(album_id).encode(),
                    value=str(version).encode(),
                    partition=tp.partition,
                )
                pending[album_id] = version
                published += 1
            await producer.send_offsets_to_transaction({tp: records[-1].offset + 1}, GROUP)
        state.update(pending)
        AssembledRelay.published += published
        AssembledRelay.skipped += skipped
        AssembledRelay.last_commit_at = time.monotonic()
        relay_published_total.inc(published)
        relay_skipped_total.inc(skipped)


app.service(AssembledRelay)
