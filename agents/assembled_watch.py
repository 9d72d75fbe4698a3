"""Watches album.assembled as its consumers see it: counts by status, spots repeated event_ids.

A stage loop over its own consumer group (`{APP_ID}-watch`), read_committed: under exactly_once
it reads what the relay committed, so its duplicate counter shows what a downstream consumer
would see. An album's events share a key, so one member of the group sees all of them.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import orjson
from mode import Service

from agents.direct import Message
from agents.stage import Batch, StageLoop
from streams.kafka_io import ensure_topics
from streams.metrics import album_assembled_duplicates_total, album_assembled_seen_total
from streams.settings import settings
from streams.topics import ALBUM_ASSEMBLED, WATCH_GROUP

#: event_ids remembered for the duplicate check
RECENT = 100_000


class Watcher(Service):
    """album.assembled → album_assembled_seen_total{status}, album_assembled_duplicates_total."""

    name = "watch"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.recent: OrderedDict[str, None] = OrderedDict()
        self.seen = 0
        self.duplicates = 0
        self.stage = StageLoop(
            name="watch",
            group_id=WATCH_GROUP,
            topics=[ALBUM_ASSEMBLED],
            handle=self.handle,
            isolation_level="read_committed",
            beacon=self.beacon,
        )

    def on_init_dependencies(self) -> list[Service]:
        return [self.stage]

    async def on_start(self) -> None:
        await ensure_topics([ALBUM_ASSEMBLED], settings.topic_partitions)

    async def handle(self, batch: Batch) -> list[Message]:
        for records in batch.values():
            for record in records:
                self.observe(record.value)
        return []

    def observe(self, value: bytes | None) -> None:
        try:
            event = orjson.loads(value or b"")
            event_id, status = str(event["event_id"]), str(event["status"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            album_assembled_seen_total.labels(status="unreadable").inc()
            return
        self.seen += 1
        album_assembled_seen_total.labels(status=status).inc()
        if event_id in self.recent:
            self.duplicates += 1
            album_assembled_duplicates_total.inc()
            self.recent.move_to_end(event_id)
            return
        self.recent[event_id] = None
        if len(self.recent) > RECENT:
            self.recent.popitem(last=False)

    def health(self) -> dict[str, Any]:
        return {
            **self.stage.health(),
            "seen": self.seen,
            "duplicates": self.duplicates,
        }
