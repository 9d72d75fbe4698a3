"""The post→album index: a foreign-key join of vision events without album_id to their album."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from faust import StreamT

from agents.direct import Message
from agents.dlq import dead_letter_message, vision_dead_letter
from agents.keyed import KeyedBatch, KeyedDriver, internal
from agents.table_store import TableStore
from schemas.events import VisionAnalyzed
from schemas.validation import InvalidEvent
from streams import metrics
from streams.app import app
from streams.lag import upstream_drained
from streams.settings import settings
from streams.topics import ALBUM_EVENTS, POST_EVENTS
from tables.declarations import post_events_topic, post_index
from tables.post_index import IndexOutcome, PostEntry, apply_index, apply_vision, on_time
from tables.stream_time import StreamClock, Times

log = logging.getLogger(__name__)

TOPIC = POST_EVENTS
RETENTION = settings.album_state_retention_seconds


def _assigned() -> frozenset[int]:
    return frozenset(tp.partition for tp in app.consumer.assignment() if tp.topic == TOPIC)


class PostIndexLogic:
    """post-events commands over `post_index` (the transitions are tables/post_index.py)."""

    stage = "post_index"

    def decode(self, raw: dict[str, Any]) -> PostEntry:
        return PostEntry.from_dict(raw)

    def encode(self, state: PostEntry) -> dict[str, Any]:
        return state.to_dict()

    def due(self, state: PostEntry) -> float | None:
        return state.next_due()

    def due_of(self, raw: dict[str, Any]) -> float | None:
        return raw["due"] if "due" in raw else PostEntry.from_dict(raw).next_due()

    def reset_index(self) -> None:
        pass

    def indexed(self, key: str, raw: dict[str, Any] | None) -> None:
        pass

    def handle(
        self, batch: KeyedBatch[PostEntry], key: Any, msg: dict[str, Any], now: Times
    ) -> None:
        kind = msg.get("type")
        given = msg.get("origin")
        origin: dict[str, Any] = given if isinstance(given, dict) else {}
        if kind == "index":
            post_id = msg["post_id"]
            key = str(post_id)
            outcome = apply_index(
                batch.get(key),
                post_id=post_id,
                album_id=msg["album_id"],
                tenant_id=msg["tenant_id"],
                now=now.event,
                retention_seconds=RETENTION,
            )
        elif kind == "vision":
            # validated by the router: internal messages carry validated events
            vision = internal(VisionAnalyzed.from_dict, msg, "event")
            key = str(vision.post_id)
            outcome = apply_vision(
                batch.get(key), vision, now=now.event, retention_seconds=RETENTION
            )
        else:
            raise InvalidEvent("unknown_command", f"post-events message type {kind!r}")
        self._apply(batch, key, outcome, origin, now.event)

    def on_due(self, batch: KeyedBatch[PostEntry], key: str, now: Times) -> None:
        entry = batch.get(key)
        if entry is not None:
            self._apply(batch, key, on_time(entry, now.stream), {}, now.stream)

    def _apply(
        self,
        batch: KeyedBatch[PostEntry],
        key: str,
        outcome: IndexOutcome,
        origin: dict[str, Any],
        at: float,
    ) -> None:
        metrics.post_index_events_total.labels(status=outcome.note).inc()
        for event, error in outcome.rejected:
            batch.send(vision_dead_letter(event, self.stage, error))
        # forwarded vision keeps its event time, marked as come through the index: it moves
        # no stream time at the assembler, this driver's watermarks do (agents/keyed.py)
        if outcome.note == "routed":
            forwarded = {**origin, "ts": at, "via": "index"}
        else:
            # released by an index entry: the vision's own record is not known here (a dead
            # letter of it names the album-events record)
            forwarded = {"ts": at, "via": "index"}
        for event in outcome.forward:
            batch.forward(
                ALBUM_EVENTS,
                str(event.album_id),
                {"type": "vision", "event": event.to_dict(), "origin": forwarded},
            )
        if not outcome.changed:
            return
        if outcome.entry is None:
            batch.delete(key)
        else:
            batch.put(key, outcome.entry)

    def dead_letter(
        self, key: Any, msg: dict[str, Any], partition: int, offset: int, error: BaseException
    ) -> Message:
        origin = msg.get("origin") or {}
        payload = msg.get("event") if msg.get("type") == "vision" else msg
        return dead_letter_message(
            key=None if key is None else str(key).encode(),
            value=orjson.dumps(payload),
            source_topic=origin.get("topic", TOPIC),
            source_partition=origin.get("partition", partition),
            source_offset=origin.get("offset", offset),
            stage=self.stage,
            error=error,
        )


logic = PostIndexLogic()
driver = KeyedDriver(
    logic,
    TableStore(post_index),
    topic=TOPIC,
    assignment=_assigned,
    partitions=settings.topic_partitions,
    batch_size=settings.table_batch_size,
    batch_seconds=settings.table_batch_seconds,
    cache_size=settings.state_cache_size,
    clock=StreamClock(
        settings.stream_idle_seconds,
        drained=upstream_drained,
        max_hold_seconds=max(30.0, settings.album_deadline_seconds),
    ),
    watermarks_to=ALBUM_EVENTS,
)


@app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types an async receiver too narrowly
async def _on_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
    driver.invalidate()


@app.on_partitions_assigned.connect  # type: ignore[arg-type]
async def _on_assigned(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
    driver.invalidate()


@app.agent(post_events_topic, concurrency=1)
async def post_indexer(stream: StreamT[dict[str, Any]]) -> None:
    """post-events (index entries, vision without album_id, ticks) → post_index → album-events.

    The only writer of `post_index`. A vision event whose post is indexed goes on to its album
    at once; one that arrives before its index entry waits in the entry until it comes.
    """
    await driver.run(stream)
