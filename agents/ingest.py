"""Ingest-side routing: validate external events, re-key them onto the internal topics.

The router is stateless, so it runs on the stage loop (agents/stage.py, group
`{APP_ID}-router`) rather than as a Faust agent: a batch's offsets are committed only after
every message routed from it has been acknowledged by the broker. Faust agents at this place
lost a few records at crash boundaries (their offsets committed, the records never routed:
tests/e2e/test_crash.py); with this loop a crash can only repeat a batch, and everything
downstream is idempotent.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import ConsumerRecord
from mode import Service

from agents.direct import Message
from agents.dlq import dead_letter_message
from agents.envelopes import Envelopes
from agents.stage import Batch, StageLoop
from schemas.validation import InvalidEvent, decode_album_parsed, decode_vision_analyzed
from streams.kafka_io import ensure_topics, wait_for_topics
from streams.metrics import albums_parsed_total, vision_events_total
from streams.settings import settings
from streams.topics import ALBUM_EVENTS, ALBUMS_PARSED, POST_EVENTS, ROUTER_GROUP, VISION_ANALYZED

log = logging.getLogger(__name__)

GROUP = ROUTER_GROUP


def _dead_letter(record: ConsumerRecord[bytes, bytes], error: InvalidEvent) -> Message:
    return dead_letter_message(
        key=record.key,
        value=record.value,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        stage="validate",
        error=error,
    )


def _origin(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    """Where a command comes from: the input record, and its time (the event time deadlines
    are measured in: tables/stream_time.py), when the record has one."""
    origin: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
    }
    if record.timestamp is not None and record.timestamp > 0:
        origin["ts"] = record.timestamp / 1000
    return origin


def route_album(record: ConsumerRecord[bytes, bytes], out: Envelopes) -> list[Message]:
    """albums.parsed → one index entry per item (post-events) + the album (album-events).

    Returns the dead letter of a record that does not validate."""
    origin = _origin(record)
    try:
        album = decode_album_parsed(record.value)
    except InvalidEvent as exc:
        albums_parsed_total.labels(status="invalid").inc()
        return [_dead_letter(record, exc)]
    albums_parsed_total.labels(status="valid").inc()
    for item in album.items:
        out.add(
            POST_EVENTS,
            str(item.post_id),
            {
                "type": "index",
                "post_id": item.post_id,
                "album_id": album.album_id,
                "tenant_id": album.tenant_id,
                "origin": origin,
            },
        )
    out.add(
        ALBUM_EVENTS,
        str(album.album_id),
        {"type": "parsed", "album": album.to_dict(), "origin": origin},
    )
    return []


def route_vision(record: ConsumerRecord[bytes, bytes], out: Envelopes) -> list[Message]:
    """posts.vision.analyzed → album-events when it names its album, else post-events.

    `grouped_id: null` (a post outside any album) is ignored and counted. Returns the dead
    letter of a record that does not validate.
    """
    origin = _origin(record)
    try:
        vision = decode_vision_analyzed(record.value)
    except InvalidEvent as exc:
        vision_events_total.labels(status="invalid").inc()
        return [_dead_letter(record, exc)]
    if not vision.in_album:
        vision_events_total.labels(status="not_in_album").inc()
        return []
    message = {"type": "vision", "event": vision.to_dict(), "origin": origin}
    if vision.album_id is not None:
        vision_events_total.labels(status="direct").inc()
        out.add(ALBUM_EVENTS, str(vision.album_id), message)
    else:
        vision_events_total.labels(status="via_index").inc()
        out.add(POST_EVENTS, str(vision.post_id), message)
    return []


ROUTES = {ALBUMS_PARSED: route_album, VISION_ANALYZED: route_vision}


async def route_batch(batch: Batch) -> list[Message]:
    """Every record of the batch routed into envelopes, one per internal partition (sent
    together and committed once by the loop), plus the dead letters."""
    out = Envelopes(settings.topic_partitions)
    dead = [m for tp, records in batch.items() for r in records for m in ROUTES[tp.topic](r, out)]
    return dead + out.messages()


class Router(Service):
    """Consumes the two external input topics and routes every record, at least once.

    A stage loop in group `{APP_ID}-router`. It creates its input topics, and waits for the
    internal ones, which the Faust worker creates with the tables' partition count (sent to
    before that, the broker would create them with its own count)."""

    name = "router"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stage = StageLoop(
            name="router",
            group_id=GROUP,
            topics=list(ROUTES),
            handle=route_batch,
            beacon=self.beacon,
        )

    def on_init_dependencies(self) -> list[Service]:
        return [self.stage]  # started after on_start has checked the topics

    async def on_start(self) -> None:
        await ensure_topics(list(ROUTES), settings.topic_partitions)
        await wait_for_topics([ALBUM_EVENTS, POST_EVENTS], settings.topic_partitions)

    def health(self) -> dict[str, Any]:
        return {**self.stage.health(), "records_routed": self.stage.records}
