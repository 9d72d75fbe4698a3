"""The post→album index: a foreign-key join of vision events without album_id to their album."""

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
from schemas.validation import InvalidEvent, validate_vision_analyzed
from streams import metrics
from streams.app import app
from streams.settings import settings
from streams.topics import album_events_topic, post_events_topic
from tables.declarations import post_index
from tables.due import DueIndex
from tables.post_index import IndexOutcome, PostEntry, apply_index, apply_vision, on_time

log = logging.getLogger(__name__)

due = DueIndex()
TOPIC = post_events_topic.get_topic_name()
RETENTION = settings.album_state_retention_seconds


def _assigned() -> frozenset[int]:
    return frozenset(tp.partition for tp in app.consumer.assignment() if tp.topic == TOPIC)


def _rebuild_due_index(assignment: frozenset[int]) -> None:
    due.clear(assignment)
    for key, raw in post_index.items():
        entry = PostEntry.from_dict(raw)
        if entry.partition is not None:
            due.set(entry.partition, key, entry.next_due())
    log.info("post index: %d entries on partitions %s", len(due), sorted(assignment))


async def _transition(
    key: str, partition: int, step: Callable[[PostEntry | None], IndexOutcome], *, create: bool
) -> None:
    raw = post_index.get(key)
    if raw is None and not create:
        due.discard(key)
        return
    outcome = step(None if raw is None else PostEntry.from_dict(raw))
    metrics.post_index_events_total.labels(status=outcome.note).inc()
    for event, error in outcome.rejected:
        await dead_letter_vision(event, "post_index", error)
    for event in outcome.forward:
        message = {"type": "vision", "event": event.to_dict()}
        if outcome.changed:
            # released from the buffer: must reach the broker before the buffer is cleared
            fut = await album_events_topic.send(key=str(event.album_id), value=message, force=True)
            await fut
        else:
            await album_events_topic.send(key=str(event.album_id), value=message)
    if not outcome.changed:
        return
    if outcome.entry is None:
        del post_index[key]
        due.discard(key)
    else:
        entry = replace(outcome.entry, partition=partition)
        post_index[key] = entry.to_dict()
        due.set(partition, key, entry.next_due())


@app.agent(post_events_topic, concurrency=1)
async def post_indexer(stream: StreamT[dict[str, Any]]) -> None:
    """post-events (index entries, vision without album_id, ticks) → post_index → album-events.

    The only writer of `post_index`. A vision event whose post is indexed goes on to its album
    at once; one that arrives before its index entry waits in the entry until it comes.
    """
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
                    await _transition(k, partition, partial(on_time, now=now), create=False)
            elif kind == "index":
                post_id, album_id, tenant_id = msg["post_id"], msg["album_id"], msg["tenant_id"]
                await _transition(
                    str(post_id),
                    partition,
                    partial(
                        apply_index,
                        post_id=post_id,
                        album_id=album_id,
                        tenant_id=tenant_id,
                        now=now,
                        retention_seconds=RETENTION,
                    ),
                    create=True,
                )
            elif kind == "vision":
                vision = validate_vision_analyzed(msg["event"])
                await _transition(
                    str(vision.post_id),
                    partition,
                    partial(apply_vision, event=vision, now=now, retention_seconds=RETENTION),
                    create=True,
                )
            else:
                raise InvalidEvent("unknown_command", f"post-events message type {kind!r}")
        except Exception as exc:
            if not isinstance(exc, InvalidEvent):
                log.exception("post index failed on %r", key)
            origin = msg.get("origin") or {}
            payload = msg.get("event") if kind == "vision" else msg
            await send_dead_letter(
                key=None if key is None else str(key).encode(),
                value=orjson.dumps(payload),
                source_topic=origin.get("topic", TOPIC),
                source_partition=origin.get("partition", partition),
                source_offset=origin.get("offset", event.message.offset),
                stage="post_index",
                error=exc,
                wait=True,
            )
