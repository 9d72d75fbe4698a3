"""Watches album.assembled as its consumers see it: counts by status, spots repeated event_ids.

Under exactly_once it reads what the relay committed (the consumer is read_committed), so its
duplicate counter shows what a downstream consumer would see.
"""

from __future__ import annotations

from collections import OrderedDict

import orjson
from faust import StreamT

from streams.app import app
from streams.metrics import album_assembled_duplicates_total, album_assembled_seen_total
from streams.topics import album_assembled_topic

RECENT = 100_000
_recent: OrderedDict[str, None] = OrderedDict()


@app.agent(album_assembled_topic, concurrency=1)
async def watch_assembled(stream: StreamT[bytes]) -> None:
    """album.assembled → album_assembled_seen_total{status}, album_assembled_duplicates_total."""
    async for value in stream:
        try:
            event = orjson.loads(value)
            event_id, status = str(event["event_id"]), str(event["status"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            album_assembled_seen_total.labels(status="unreadable").inc()
            continue
        album_assembled_seen_total.labels(status=status).inc()
        if event_id in _recent:
            album_assembled_duplicates_total.inc()
            _recent.move_to_end(event_id)
            continue
        _recent[event_id] = None
        if len(_recent) > RECENT:
            _recent.popitem(last=False)
