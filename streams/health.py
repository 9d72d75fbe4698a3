"""Process-wide health facts in one registry: what /health/detailed and /metrics read.

Counters that several parts of a process bump (Faust's consumer fixes, the direct producer's
acknowledgements, assemblies) live here rather than as class attributes or module globals;
`streams.metrics` exports the counters to Prometheus from this registry. Nothing here imports
the app or the agents.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field


class RateWindow:
    """Events per second over the last `window` seconds."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self._times: deque[float] = deque()
        self.started = time.monotonic()

    def add(self, n: int = 1) -> None:
        now = time.monotonic()
        self._times.extend([now] * n)
        self._trim(now)

    def rate(self) -> float:
        now = time.monotonic()
        self._trim(now)
        span = min(self.window, max(now - self.started, 1e-9))
        return len(self._times) / span

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window:
            self._times.popleft()


@dataclass
class Health:
    """One process's health facts (see the module docstring)."""

    #: monotonic time the broker last acknowledged a send of the direct producer
    kafka_acked_at: float | None = None
    #: Faust consumer fixes (streams/faust_consumer.py): records delivered again, gaps
    #: refused, partitions fetched again, acknowledgements of skipped records refused
    consumer_redelivered: int = 0
    consumer_gaps_refused: int = 0
    consumer_refetches: int = 0
    consumer_skipped_acks_refused: int = 0
    #: albums emitted to album.assembled, per second over the last minute
    assembled: RateWindow = field(default_factory=RateWindow)

    def kafka_acked(self) -> None:
        self.kafka_acked_at = time.monotonic()

    def kafka_connected(self, window: float = 15.0) -> bool:
        """True when the broker acknowledged this process's sends (ticks at least) recently."""
        ok = self.kafka_acked_at
        return ok is not None and time.monotonic() - ok < window

    def counters(self) -> dict[str, int]:
        return {
            "consumer_redelivered": self.consumer_redelivered,
            "consumer_gaps_refused": self.consumer_gaps_refused,
            "consumer_refetches": self.consumer_refetches,
            "consumer_skipped_acks_refused": self.consumer_skipped_acks_refused,
        }


#: this process's registry
health = Health()
