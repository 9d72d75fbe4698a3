"""Sink stages: album.assembled (and each sink's retry topic) → S3, Postgres, Qdrant, Neo4j.

One stage loop per enabled sink, each in its own consumer group (`{APP_ID}-sink-{name}`), so a
store that is down holds back nobody but its own sink. A batch (up to SINK_BATCH_SIZE albums)
is decoded and written through the `Resources` service, which owns the clients:

- written: the loop commits the batch's offsets;
- a retriable failure (the store is down, a timeout): the loop pauses the sink's partitions for
  the backoff delay and reads the batch again (SINK_RETRIES times, the delay doubling), so
  nothing is buffered while the store is away;
- retries used up, or an album the store refuses: those albums are parked in albums.dlq (stage
  `sink.<name>`), sent before the offsets are committed.

The sinks run in a process of their own by default (streams/stages.py).
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from aiokafka import ConsumerRecord
from mode import Service

from agents.direct import Message
from agents.dlq import dead_letter_message
from agents.stage import Backpressure, Batch, StageLoop
from schemas.validation import InvalidEvent, decode_album_assembled
from streams.kafka_io import ensure_topics
from streams.metrics import (
    sink_albums_total,
    sink_batch_duration_seconds,
    sink_batch_size,
    touch_sink,
)
from streams.resources import Resources
from streams.settings import settings
from streams.topics import ALBUM_ASSEMBLED, sink_group, sink_retry_topic_name

log = logging.getLogger(__name__)


class SinkStages(Service):
    """Every enabled sink's stage loop, and the Resources they write through.

    Args:
        resources: the clients (default: the ones SINKS and the endpoints describe).
    """

    name = "sinks"

    def __init__(self, resources: Resources | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resources = resources or Resources(settings, beacon=self.beacon)
        self.attempts: dict[str, int] = {}
        self.loops: dict[str, StageLoop] = {}
        for name in self.resources.enabled:
            self.attempts[name] = 0
            touch_sink(name)
            self.loops[name] = StageLoop(
                name=f"sink-{name}",
                group_id=sink_group(name),
                topics=[ALBUM_ASSEMBLED, sink_retry_topic_name(name)],
                handle=functools.partial(self.handle, name),
                max_records=settings.sink_batch_size,
                poll_seconds=settings.sink_batch_seconds,
                # the exactly-once relay writes album.assembled in transactions
                isolation_level="read_committed",
                beacon=self.beacon,
            )

    def on_init_dependencies(self) -> list[Service]:
        return [self.resources, *self.loops.values()]

    async def on_start(self) -> None:
        await ensure_topics(
            [ALBUM_ASSEMBLED, *(sink_retry_topic_name(n) for n in self.loops)],
            settings.topic_partitions,
        )

    async def handle(self, name: str, batch: Batch) -> list[Message]:
        """One batch of one sink: written, retried (Backpressure), or parked (dead letters)."""
        albums: list[dict[str, Any]] = []
        origin: dict[int, ConsumerRecord[bytes, bytes]] = {}
        parked: list[tuple[ConsumerRecord[bytes, bytes], BaseException, int]] = []
        records = [r for rs in batch.values() for r in rs]
        for record in records:
            try:
                album = decode_album_assembled(record.value)
            except InvalidEvent as exc:
                parked.append((record, exc, 1))
                continue
            albums.append(album)
            origin[id(album)] = record
        started = time.monotonic()
        if albums:
            outcome = await self.resources.attempt(name, albums, self.attempts[name])
            if outcome.retry is not None:
                self.attempts[name] += 1
                raise Backpressure(outcome.retry_after)
            parked += [(origin[id(a)], err, n) for a, err, n in outcome.parked]
            sink_albums_total.labels(sink=name, outcome="written").inc(len(outcome.written))
        self.attempts[name] = 0
        sink_batch_duration_seconds.labels(sink=name).observe(time.monotonic() - started)
        sink_batch_size.labels(sink=name).observe(len(records))
        sink_albums_total.labels(sink=name, outcome="parked").inc(len(parked))
        retry_topic = sink_retry_topic_name(name)
        return [
            dead_letter_message(
                key=record.key,
                value=record.value,
                # where `dlq-replay` sends it: this sink alone reads it again
                source_topic=retry_topic,
                source_partition=record.partition,
                source_offset=record.offset,
                stage=f"sink.{name}",
                error=error,
                attempts=attempts,
            )
            for record, error, attempts in parked
        ]

    def health(self) -> dict[str, Any]:
        """Per sink: the Resources state (disabled, idle, ok, retrying, failing) and its loop."""
        out = self.resources.health()
        for name, loop in self.loops.items():
            out[name]["loop"] = loop.health()
        return out
