"""The album assembler: joins albums and vision in `album_state`, emits `album.assembled`."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from faust import StreamT

from agents.direct import Message
from agents.dlq import dead_letter_message, vision_dead_letter
from agents.keyed import KeyedBatch, KeyedDriver, internal
from agents.table_store import TableStore
from schemas.events import AlbumAssembled, AlbumParsed, VisionAnalyzed
from schemas.validation import InvalidEvent
from streams import metrics
from streams.app import app
from streams.health import health
from streams.lag import upstream_drained
from streams.settings import settings
from streams.topics import ALBUM_ASSEMBLED, ALBUM_EVENTS, OUTBOX
from tables.album_state import (
    AlbumState,
    AssemblyPolicy,
    Outcome,
    apply_parsed,
    apply_vision,
    on_time,
)
from tables.declarations import album_events_topic, album_state
from tables.stream_time import StreamClock, Times

log = logging.getLogger(__name__)

TOPIC = ALBUM_EVENTS


def _assigned() -> frozenset[int]:
    return frozenset(tp.partition for tp in app.consumer.assignment() if tp.topic == TOPIC)


def emission(album: AlbumAssembled) -> Message:
    """album.assembled, or under exactly_once the outbox the relay publishes it from."""
    body = orjson.dumps(album.to_dict())
    if settings.exactly_once:
        # the outbox's keys are JSON, like the internal topics (see agents/relay.py)
        return (OUTBOX, orjson.dumps(str(album.album_id)), body, None)
    return (ALBUM_ASSEMBLED, str(album.album_id).encode(), body, None)


class AssemblerLogic:
    """album-events commands over `album_state` (the transitions are tables/album_state.py)."""

    stage = "assembler"

    def __init__(self, policy: AssemblyPolicy) -> None:
        self.policy = policy
        #: ids of the albums of this worker's partitions not assembled yet (health, metrics)
        self.in_progress: set[int] = set()

    def decode(self, raw: dict[str, Any]) -> AlbumState:
        return AlbumState.from_dict(raw)

    def encode(self, state: AlbumState) -> dict[str, Any]:
        return state.to_dict()

    def due(self, state: AlbumState) -> float | None:
        return state.next_due()

    def due_of(self, raw: dict[str, Any]) -> float | None:
        return raw["due"] if "due" in raw else AlbumState.from_dict(raw).next_due()

    def reset_index(self) -> None:
        self.in_progress.clear()

    def indexed(self, key: str, raw: dict[str, Any] | None) -> None:
        if raw is not None and raw.get("version", 0) == 0:
            self.in_progress.add(int(key))
        else:
            self.in_progress.discard(int(key))

    def handle(
        self, batch: KeyedBatch[AlbumState], key: Any, msg: dict[str, Any], now: Times
    ) -> None:
        kind = msg.get("type")
        if kind == "parsed":
            # validated by the router: internal messages carry validated events
            album = internal(AlbumParsed.from_dict, msg, "album")
            key = str(album.album_id)
            t0 = time.perf_counter()
            outcome = apply_parsed(batch.get(key), album, now, self.policy)
            self._apply(batch, key, outcome, t0)
        elif kind == "vision":
            vision = internal(VisionAnalyzed.from_dict, msg, "event")
            if vision.album_id is None:
                raise InvalidEvent(
                    "missing_field", "vision event reached the assembler without album_id"
                )
            key = str(vision.album_id)
            t0 = time.perf_counter()
            outcome = apply_vision(batch.get(key), vision, now, self.policy)
            self._apply(batch, key, outcome, t0)
        else:
            raise InvalidEvent("unknown_command", f"album-events message type {kind!r}")

    def on_due(self, batch: KeyedBatch[AlbumState], key: str, now: Times) -> None:
        state = batch.get(key)
        if state is not None:
            t0 = time.perf_counter()
            self._apply(batch, key, on_time(state, now, self.policy), t0)

    def _apply(
        self, batch: KeyedBatch[AlbumState], key: str, outcome: Outcome, started: float
    ) -> None:
        for event, error in outcome.rejected:
            batch.send(vision_dead_letter(event, self.stage, error))
        if outcome.emit is not None:
            # the transition and the aggregation of the album's vision
            metrics.album_aggregation_duration_ms.observe((time.perf_counter() - started) * 1000)
            album = outcome.emit
            message = emission(album)
            size = len(message[2] or b"")
            batch.send(message, lambda: _count_emission(album, size))
        if not outcome.changed:
            return
        if outcome.state is None:
            batch.delete(key)
            metrics.album_state_expired_total.inc()
        else:
            batch.put(key, outcome.state)

    def dead_letter(
        self, key: Any, msg: dict[str, Any], partition: int, offset: int, error: BaseException
    ) -> Message:
        kind = msg.get("type")
        origin = msg.get("origin") or {}
        payload = msg.get("album") if kind == "parsed" else msg.get("event")
        return dead_letter_message(
            key=None if key is None else str(key).encode(),
            value=orjson.dumps(payload if payload is not None else msg),
            source_topic=origin.get("topic", TOPIC),
            source_partition=origin.get("partition", partition),
            source_offset=origin.get("offset", offset),
            stage=self.stage,
            error=error,
        )


def _count_emission(album: AlbumAssembled, size: int) -> None:
    metrics.albums_assembled_total.labels(status=album.status).inc()
    metrics.album_assembly_lag_seconds.observe(album.assembly_lag_seconds)
    metrics.album_items_count.labels(status=album.status).observe(album.items_count)
    metrics.album_vision_summary_size_bytes.observe(size)
    health.assembled.add()


logic = AssemblerLogic(
    AssemblyPolicy(
        deadline_seconds=settings.album_deadline_seconds,
        retention_seconds=settings.album_state_retention_seconds,
    )
)
driver = KeyedDriver(
    logic,
    TableStore(album_state),
    topic=TOPIC,
    assignment=_assigned,
    partitions=settings.topic_partitions,
    batch_size=settings.table_batch_size,
    batch_seconds=settings.table_batch_seconds,
    cache_size=settings.state_cache_size,
    after_batch=lambda: record_gauges(),
    clock=StreamClock(
        settings.stream_idle_seconds,
        drained=upstream_drained,
        max_hold_seconds=max(30.0, settings.album_deadline_seconds),
    ),
)


@app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types an async receiver too narrowly
async def _on_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
    driver.invalidate()


@app.on_partitions_assigned.connect  # type: ignore[arg-type]
async def _on_assigned(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
    driver.invalidate()


@app.agent(album_events_topic, concurrency=1)
async def assembler(stream: StreamT[dict[str, Any]]) -> None:
    """album-events (parsed albums, routed vision, ticks) → album_state → album.assembled.

    The only writer of `album_state`. Emits version 1 `complete` when every item has vision,
    `partial` at the deadline, version+1 when late vision changes an emitted album.
    """
    await driver.run(stream)


def record_gauges() -> None:
    """albums_in_progress and album_state_entries from the driver's indexes."""
    metrics.albums_in_progress.set(len(logic.in_progress))
    metrics.album_state_size.set(driver.states)
    metrics.stream_time_behind_seconds.set(driver.clock.behind())
