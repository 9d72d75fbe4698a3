"""Ticks that drive deadlines and expiry through the agents' own streams.

RocksDB tables can only be written while iterating a stream, so time cannot act from a timer.
Instead this service sends a small `tick` message to every partition of the internal topics
that this worker owns; the owning agent handles it like any other event. Ticks use a plain
idempotent producer of their own (not Faust's, whose exactly-once transactions are keyed by
source partitions), are harmless when duplicated, and carry no data.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from aiokafka import AIOKafkaProducer
from mode import Service

from streams.app import app
from streams.settings import settings
from streams.topics import album_events_topic, post_events_topic

log = logging.getLogger(__name__)

TICK_TOPICS = (album_events_topic.get_topic_name(), post_events_topic.get_topic_name())


def tick_interval(deadline_seconds: float) -> float:
    """Ticks often enough that a deadline is late by at most ~10% (0.2 s .. 5 s)."""
    return min(5.0, max(0.2, deadline_seconds / 10))


def kafka_connected() -> bool:
    """True when the broker acknowledged this worker's ticks recently."""
    ok = Ticker.kafka_ok_at
    return ok is not None and time.monotonic() - ok < max(15.0, 3 * Ticker.interval)


@app.service
class Ticker(Service):
    """Sends `{"type": "tick"}` to the internal partitions assigned to this worker."""

    interval = tick_interval(settings.album_deadline_seconds)
    #: monotonic time the broker last acknowledged ticks (health's view of Kafka connectivity)
    kafka_ok_at: float | None = None

    async def on_start(self) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            enable_idempotence=True,
            linger_ms=5,
        )
        await self.producer.start()
        Ticker.kafka_ok_at = time.monotonic()

    async def on_stop(self) -> None:
        await self.producer.stop()

    @Service.task
    async def _tick(self) -> None:
        while not self.should_stop:
            await self.sleep(self.interval)
            if not app.started or app.rebalancing:
                continue
            try:
                tps = [tp for tp in app.consumer.assignment() if tp.topic in TICK_TOPICS]
                value = orjson.dumps({"type": "tick", "at": time.time()})
                futures = await asyncio.gather(
                    *[
                        self.producer.send(tp.topic, value=value, partition=tp.partition)
                        for tp in tps
                    ]
                )
                await asyncio.wait_for(asyncio.gather(*futures), timeout=30)
                Ticker.kafka_ok_at = time.monotonic()
            except Exception:  # ticks are best effort; the next one comes soon
                log.exception("sending ticks failed")
