"""Kafka side of ingestion: the outbox publisher and dead letters (aiokafka, idempotent)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiokafka import AIOKafkaProducer

from schemas.dlq import DlqRecord, safe_error_text
from storage.postgres.ingest import IngestStore
from storage.telegram.metrics import IngestMetrics
from streams.kafka_security import kafka_options

log = logging.getLogger(__name__)

BATCH = 500


def ingest_producer(bootstrap_servers: list[str]) -> AIOKafkaProducer:
    """An idempotent producer: a retried send never writes an event twice."""
    return AIOKafkaProducer(
        **kafka_options(),
        bootstrap_servers=bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_request_size=1_048_576,
    )


class OutboxPublisher:
    """Sends committed outbox rows to their topic, then marks them sent.

    A crash after the send and before the mark sends the row again on restart (the same
    event_id and content: the assembler takes it as a duplicate). `wake()` after a commit
    makes it publish at once; it also polls, for rows another process committed.
    """

    def __init__(
        self,
        store: IngestStore,
        producer: AIOKafkaProducer,
        metrics: IngestMetrics,
        *,
        poll_seconds: float = 1.0,
    ) -> None:
        self.store = store
        self.producer = producer
        self.metrics = metrics
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._stopping = False
        self._next_backlog_check = 0.0
        self.published = 0
        self.last_error: str | None = None

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """End `run()` after the batch in hand (a cancelled batch would be sent again)."""
        self._stopping = True
        self._wake.set()

    async def publish_pending(self) -> int:
        """Publish every unsent row (in batches); returns how many were sent."""
        total = 0
        while True:
            async with self.store.claim_outbox(BATCH) as (rows, mark_sent):
                if not rows:
                    break
                futures: list[asyncio.Future[Any]] = [
                    await self.producer.send(r.topic, key=r.key, value=r.value) for r in rows
                ]
                await asyncio.gather(*futures)
                await mark_sent([r.id for r in rows])
            total += len(rows)
            self.published += len(rows)
            self.metrics.published.inc(len(rows))
        return total

    async def run(self) -> None:
        """Publish until `stop()`; errors are logged and retried with a growing pause."""
        pause = self.poll_seconds
        while not self._stopping:
            try:
                await self.publish_pending()
                if time.monotonic() >= self._next_backlog_check:  # a count(*): not each time
                    self._next_backlog_check = time.monotonic() + 5.0
                    self.metrics.outbox_backlog.set(await self.store.outbox_backlog())
                self.last_error = None
                pause = self.poll_seconds
            except Exception as exc:  # a down broker or database: keep the rows, try again
                self.last_error = f"{type(exc).__name__}: {safe_error_text(exc)}"[:500]
                log.warning("outbox publish failed (retrying in %.0fs): %s", pause, exc)
                pause = min(pause * 2, 30.0)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=pause)


class DeadLetters:
    """Sends ingestion's dead letters (stage `ingest`) to albums.dlq and waits for the ack."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, metrics: IngestMetrics) -> None:
        self.producer = producer
        self.topic = topic
        self.metrics = metrics
        self.sent = 0

    async def send(self, record: DlqRecord) -> None:
        await (await self.producer.send(self.topic, key=record.key, value=record.encode()))
        self.sent += 1
        self.metrics.dead_letters.labels(record.error_type).inc()
