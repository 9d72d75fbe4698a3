"""The album assembler: joins albums and vision in `album_state`, emits `album.assembled`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import orjson
from faust import StreamT

from agents.dlq import dead_letter_vision, send_dead_letter
from schemas.validation import (
    InvalidEvent,
    validate_album_parsed,
    validate_vision_analyzed,
)
from streams import metrics
from streams.app import app
from streams.settings import settings
from streams.topics import album_assembled_topic, album_events_topic, outbox_topic
from tables.album_state import (
    AlbumState,
    AssemblyPolicy,
    Outcome,
    apply_parsed,
    apply_vision,
    on_time,
)
from tables.declarations import album_state
from tables.due import DueIndex

log = logging.getLogger(__name__)

policy = AssemblyPolicy(
    deadline_seconds=settings.album_deadline_seconds,
    retention_seconds=settings.album_state_retention_seconds,
)
due = DueIndex()
# albums of this worker's partitions not assembled yet (derived like `due`, for health/metrics)
in_progress: set[str] = set()
# set when the agent's loop starts (health: "running")
started_at: float | None = None
TOPIC = album_events_topic.get_topic_name()


def _assigned() -> frozenset[int]:
    return frozenset(tp.partition for tp in app.consumer.assignment() if tp.topic == TOPIC)


def _rebuild_due_index(assignment: frozenset[int]) -> None:
    """After a rebalance: derive deadlines and expiries from the table this worker now owns."""
    t0 = time.monotonic()
    due.clear(assignment)
    in_progress.clear()
    for key, raw in album_state.items():
        st = AlbumState.from_dict(raw)
        if st.partition is not None:
            due.set(st.partition, key, st.next_due())
        if st.version == 0:
            in_progress.add(key)
    metrics.albums_in_progress.set(len(in_progress))
    metrics.album_state_size.set(len(due))
    log.info(
        "assembler: %d album states on partitions %s indexed in %.2fs",
        len(due),
        sorted(assignment),
        time.monotonic() - t0,
    )


async def _emit(outcome: Outcome) -> None:
    assert outcome.emit is not None
    t0 = time.perf_counter()
    body = orjson.dumps(outcome.emit.to_dict())
    # Wait for the broker before the table write that records the emission: Faust writes the
    # changelog at once, so a delayed send could be lost by a crash in between.
    if settings.exactly_once:
        # the relay publishes it to album.assembled exactly once (see agents/relay.py)
        fut = await outbox_topic.send(key=str(outcome.emit.album_id), value=body, force=True)
    else:
        fut = await album_assembled_topic.send(
            key=str(outcome.emit.album_id).encode(), value=body, force=True
        )
    await fut
    a = outcome.emit
    metrics.albums_assembled_total.labels(status=a.status).inc()
    metrics.album_assembly_lag_seconds.observe(a.assembly_lag_seconds)
    metrics.album_items_count.labels(status=a.status).observe(a.items_count)
    metrics.album_vision_summary_size_bytes.observe(len(body))
    metrics.album_aggregation_duration_ms.observe((time.perf_counter() - t0) * 1000)
    metrics.assembled_rate.add()


async def _transition(
    key: str, partition: int, step: Callable[[AlbumState | None], Outcome], *, create: bool
) -> None:
    raw = album_state.get(key)
    if raw is None and not create:
        due.discard(key)
        return
    before = None if raw is None else AlbumState.from_dict(raw)
    outcome = step(before)
    for event, error in outcome.rejected:
        await dead_letter_vision(event, "assembler", error)
    if outcome.emit is not None:
        await _emit(outcome)
    if not outcome.changed:
        return
    if outcome.state is None:
        del album_state[key]
        due.discard(key)
        in_progress.discard(key)
        metrics.album_state_expired_total.inc()
    else:
        st = replace(outcome.state, partition=partition)
        album_state[key] = st.to_dict()
        due.set(partition, key, st.next_due())
        if st.version == 0:
            in_progress.add(key)
        else:
            in_progress.discard(key)
    metrics.albums_in_progress.set(len(in_progress))
    metrics.album_state_size.set(len(due))


@app.agent(album_events_topic, concurrency=1)
async def assembler(stream: StreamT[dict[str, Any]]) -> None:
    """album-events (parsed albums, routed vision, ticks) → album_state → album.assembled.

    The only writer of `album_state`. Emits version 1 `complete` when every item has vision,
    `partial` at the deadline, version+1 when late vision changes an emitted album.
    """
    global started_at
    started_at = time.time()
    async for event in stream.events():
        assignment = _assigned()
        if due.assignment != assignment:
            _rebuild_due_index(assignment)
        msg: dict[str, Any] = event.value if isinstance(event.value, dict) else {}
        partition: int = event.message.partition
        key = event.key
        now = time.time()
        kind = msg.get("type")
        try:
            if kind == "tick":
                for k in due.pop_due(partition, now):
                    await _transition(
                        k, partition, partial(on_time, now=now, policy=policy), create=False
                    )
            elif kind == "parsed":
                album = validate_album_parsed(msg["album"])
                await _transition(
                    str(album.album_id),
                    partition,
                    partial(apply_parsed, album=album, now=now, policy=policy),
                    create=True,
                )
            elif kind == "vision":
                vision = validate_vision_analyzed(msg["event"])
                await _transition(
                    str(vision.album_id),
                    partition,
                    partial(apply_vision, event=vision, now=now, policy=policy),
                    create=True,
                )
            else:
                raise InvalidEvent("unknown_command", f"album-events message type {kind!r}")
        except Exception as exc:
            # Never let one event kill the agent: it goes to the DLQ with its origin.
            if not isinstance(exc, InvalidEvent):
                log.exception("assembler failed on %r", key)
            origin = msg.get("origin") or {}
            payload = msg.get("album") if kind == "parsed" else msg.get("event")
            await send_dead_letter(
                key=None if key is None else str(key).encode(),
                value=orjson.dumps(payload if payload is not None else msg),
                source_topic=origin.get("topic", TOPIC),
                source_partition=origin.get("partition", partition),
                source_offset=origin.get("offset", event.message.offset),
                stage="assembler",
                error=exc,
                wait=True,
            )
