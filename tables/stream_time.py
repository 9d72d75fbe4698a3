"""Stream time per partition: what deadlines are measured against, instead of the wall clock.

A worker that is behind (catching up after an outage or a restart) reads records whose event
time is minutes old. Measured by the wall clock their albums would reach their deadline only
because the worker is slow, and come out `partial`, then `complete` as version 2. Measured in
stream time, as Kafka Streams measures grace periods, an album is due when the records of its
partition say that its deadline has passed.

- Stream time of a partition is the highest record timestamp seen on it.
- A partition without traffic must still reach its deadlines: once it has been idle for
  `idle_seconds`, its stream time advances with the monotonic clock (so a jump of the wall
  clock neither floods nor stalls deadlines).
- Until a partition has seen a record after its assignment, its stream time is unknown: nothing
  is due there before the first record (a backlog) or `idle_seconds` of silence (no backlog:
  then the wall clock of the assignment moment is the starting point).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(slots=True)
class _Partition:
    #: highest record timestamp seen (seconds), None before the first record
    high: float | None
    #: monotonic time of the last record that moved `high`, or of the assignment
    since: float
    #: wall time at the assignment (the start of an idle partition's clock)
    assigned_wall: float


class StreamClock:
    """Stream time of the partitions a worker owns.

    Args:
        idle_seconds: silence after which a partition's stream time follows the clock.
        monotonic, wall: the clocks (tests pass their own).
    """

    def __init__(
        self,
        idle_seconds: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.idle_seconds = idle_seconds
        self._monotonic = monotonic
        self._wall = wall
        self._parts: dict[int, _Partition] = {}

    def assign(self, partitions: Iterable[int]) -> None:
        """The worker's partitions now: new ones start unknown, lost ones are forgotten."""
        keep = set(partitions)
        now = self._monotonic()
        wall = self._wall()
        self._parts = {p: self._parts.get(p) or _Partition(None, now, wall) for p in sorted(keep)}

    def observe(self, partition: int, timestamp: float) -> None:
        """A record of `partition` with event time `timestamp` (seconds since the epoch)."""
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = _Partition(None, self._monotonic(), self._wall())
        # never backwards: a record older than a clock-advanced stream time leaves it there
        current = self.now(partition)
        part.high = timestamp if current is None else max(current, timestamp)
        # any record, an older one too, is traffic: the partition is not idle
        part.since = self._monotonic()

    def now(self, partition: int) -> float | None:
        """The stream time of `partition`, or None while it is unknown."""
        part = self._parts.get(partition)
        if part is None:
            return None
        quiet = self._monotonic() - part.since
        if part.high is None:
            if quiet < self.idle_seconds:
                return None
            return part.assigned_wall + quiet - self.idle_seconds
        return part.high + max(0.0, quiet - self.idle_seconds)
