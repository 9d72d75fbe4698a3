"""Sink agents: album.assembled (and the sink's retry topic) → S3, Postgres, Qdrant, Neo4j.

One agent per enabled sink, each with its own buffer, so a store that is down delays its own
agent (for the length of its retries) while the others go on until that buffer fills. Batches
come from `stream.noack_take`; their offsets are acknowledged once every album of the batch is
written or parked in albums.dlq (stage `sink.<name>`), never before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from faust import EventT, StreamT

from agents.dlq import send_dead_letter
from schemas.validation import InvalidEvent, decode_album_assembled
from streams.app import app
from streams.metrics import (
    sink_albums_total,
    sink_batch_duration_seconds,
    sink_batch_size,
)
from streams.resources import Resources
from streams.settings import settings
from streams.topics import sink_channel, sink_retry_topic_name

log = logging.getLogger(__name__)

resources = Resources(settings)
app.add_dependency(resources)


async def write_events(name: str, events: Sequence[EventT[bytes]]) -> None:
    """Decode, write with retries, park what could not be written. Never raises."""
    retry_topic = sink_retry_topic_name(name)
    albums: list[dict[str, Any]] = []
    origin: dict[int, Any] = {}
    parked: list[tuple[Any, BaseException, int]] = []
    for event in events:
        message = event.message
        try:
            album = decode_album_assembled(message.value)
        except InvalidEvent as exc:
            parked.append((message, exc, 1))
            continue
        albums.append(album)
        origin[id(album)] = message
    started = time.monotonic()
    if albums:
        outcome = await resources.write(name, albums)
        parked += [(origin[id(a)], err, n) for a, err, n in outcome.parked]
        sink_albums_total.labels(sink=name, outcome="written").inc(len(outcome.written))
    sink_batch_duration_seconds.labels(sink=name).observe(time.monotonic() - started)
    sink_batch_size.labels(sink=name).observe(len(events))
    for source, error, attempts in parked:
        sink_albums_total.labels(sink=name, outcome="parked").inc()
        await _park(name, retry_topic, source, error, attempts)


async def _park(
    name: str, retry_topic: str, message: Any, exc: BaseException, attempts: int
) -> None:
    # The broker must have the dead letter before the batch's offsets are acknowledged, so a
    # Kafka hiccup here is waited out rather than dropping the album.
    delay = 0.5
    while True:
        try:
            await send_dead_letter(
                key=message.key,
                value=message.value,
                source_topic=retry_topic,
                source_partition=message.partition,
                source_offset=message.offset,
                stage=f"sink.{name}",
                error=exc,
                attempts=attempts,
                wait=True,
            )
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sink %s: cannot park an album in albums.dlq; trying again", name)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def _sink_agent(name: str) -> Any:
    async def sink(stream: StreamT[bytes]) -> None:
        # noack_take: the batch is acknowledged here, after every album of it is written or
        # parked. (take/take_events acknowledge in a `finally`, so a worker stopped during a
        # retry would commit albums that were never written.)
        async for events in stream.noack_take(  # type: ignore[attr-defined]
            settings.sink_batch_size, within=settings.sink_batch_seconds
        ):
            await write_events(name, events)
            for event in events:
                await stream.ack(event)

    sink.__doc__ = f"album.assembled → the {name} sink (batched, retried, parked on failure)."
    return app.agent(sink_channel(name), name=f"sink-{name}", concurrency=1)(sink)


sink_agents = {name: _sink_agent(name) for name in resources.enabled}
