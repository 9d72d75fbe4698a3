"""Ticks that drive deadlines and expiry through the agents' own streams.

RocksDB tables can only be written while iterating a stream, so time cannot act from a timer.
Instead this service sends a small `tick` message to every partition of the internal topics
that this worker owns; the owning agent handles it like any other event. Ticks go through the
direct producer (outside Faust's transactions, see agents/direct.py), are harmless when
duplicated, and carry no data.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from mode import Service

from agents.direct import DirectSender, send_direct
from streams.app import app
from streams.settings import settings
from streams.topics import ALBUM_EVENTS, POST_EVENTS

log = logging.getLogger(__name__)

TICK_TOPICS = (ALBUM_EVENTS, POST_EVENTS)

# the worker's direct producer: started and stopped with the app
app.service(DirectSender)


def tick_interval(deadline_seconds: float) -> float:
    """Ticks often enough that a deadline is late by at most ~10% (0.2 s .. 5 s)."""
    return min(5.0, max(0.2, deadline_seconds / 10))


@app.service
class Ticker(Service):
    """Sends `{"type": "tick"}` to the internal partitions assigned to this worker."""

    interval = tick_interval(settings.album_deadline_seconds)

    @Service.task
    async def _tick(self) -> None:
        while not self.should_stop:
            await self.sleep(self.interval)
            if not app.started or app.rebalancing:
                continue
            if DirectSender.producer is None:
                continue
            try:
                tps = [tp for tp in app.consumer.assignment() if tp.topic in TICK_TOPICS]
                value = orjson.dumps({"type": "tick", "at": time.time()})
                await asyncio.wait_for(
                    send_direct([(tp.topic, None, value, tp.partition) for tp in tps]), timeout=30
                )
            except Exception:  # ticks are best effort; the next one comes soon
                log.exception("sending ticks failed")
