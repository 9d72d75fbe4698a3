"""Ingest-side routing: validate external events, re-key them onto the internal topics."""

from __future__ import annotations

import logging
from typing import Any

from faust import StreamT

from agents.direct import send_internal
from agents.dlq import send_dead_letter
from schemas.validation import InvalidEvent, decode_album_parsed, decode_vision_analyzed
from streams.app import app
from streams.metrics import albums_parsed_total, vision_events_total
from streams.topics import (
    ALBUMS_PARSED,
    VISION_ANALYZED,
    album_events_topic,
    albums_parsed_topic,
    post_events_topic,
    vision_analyzed_topic,
)

log = logging.getLogger(__name__)


def _origin(event: Any) -> dict[str, Any]:
    m = event.message
    return {"topic": m.topic, "partition": m.partition, "offset": m.offset}


@app.agent(albums_parsed_topic, concurrency=1)
async def route_albums(stream: StreamT[bytes]) -> None:
    """albums.parsed → album-events (by album_id) + one post-events index entry per item.

    Invalid events go to albums.dlq with the reason; valid ones are never dropped.
    """
    async for event in stream.events():
        raw_key, raw_value = event.message.key, event.message.value
        try:
            album = decode_album_parsed(raw_value)
        except InvalidEvent as exc:
            albums_parsed_total.labels(status="invalid").inc()
            await send_dead_letter(
                key=raw_key,
                value=raw_value,
                source_topic=ALBUMS_PARSED,
                source_partition=event.message.partition,
                source_offset=event.message.offset,
                stage="validate",
                error=exc,
            )
            continue
        albums_parsed_total.labels(status="valid").inc()
        # index entries first: a vision event routed through the index then finds its album
        for item in album.items:
            await send_internal(
                post_events_topic,
                str(item.post_id),
                {
                    "type": "index",
                    "post_id": item.post_id,
                    "album_id": album.album_id,
                    "tenant_id": album.tenant_id,
                },
            )
        await send_internal(
            album_events_topic,
            str(album.album_id),
            {"type": "parsed", "album": album.to_dict(), "origin": _origin(event)},
        )


@app.agent(vision_analyzed_topic, concurrency=1)
async def route_vision(stream: StreamT[bytes]) -> None:
    """posts.vision.analyzed → album-events when it names its album, else post-events.

    `grouped_id: null` (a post outside any album) is ignored and counted; invalid events go to
    albums.dlq.
    """
    async for event in stream.events():
        raw_key, raw_value = event.message.key, event.message.value
        try:
            vision = decode_vision_analyzed(raw_value)
        except InvalidEvent as exc:
            vision_events_total.labels(status="invalid").inc()
            await send_dead_letter(
                key=raw_key,
                value=raw_value,
                source_topic=VISION_ANALYZED,
                source_partition=event.message.partition,
                source_offset=event.message.offset,
                stage="validate",
                error=exc,
            )
            continue
        if not vision.in_album:
            vision_events_total.labels(status="not_in_album").inc()
            continue
        message = {"type": "vision", "event": vision.to_dict(), "origin": _origin(event)}
        if vision.album_id is not None:
            vision_events_total.labels(status="direct").inc()
            await send_internal(album_events_topic, str(vision.album_id), message)
        else:
            vision_events_total.labels(status="via_index").inc()
            await send_internal(post_events_topic, str(vision.post_id), message)
