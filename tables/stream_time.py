"""Stream time per partition: what deadlines are measured against, instead of the wall clock.

A worker that is behind (catching up after an outage or a restart) reads records whose event
time is minutes old. Measured by the wall clock their albums would reach their deadline only
because the worker is slow, and come out `partial`, then `complete` as version 2. Measured in
stream time, as Kafka Streams measures grace periods, an album is due when the records of its
partition say that its deadline has passed.

The commands of one internal partition come from many sources: every partition of the two input
topics, directly through the router or later through the post index. The router reads them at
different paces (one input topic may be far behind the other in a backlog), so the highest
timestamp of the partition would run ahead of the sources that are behind, and make their
albums due before their vision is read. Stream time is therefore, as Kafka Streams' task time
with synchronized partitions:

- the lowest of the highest timestamps of the sources that can still send something older:
  those with a record in the last `idle_seconds`, those `drained(source, read_until)` does not
  say are done, and the watermarks of the post index (whose forwards arrive a hop after the
  router's commands; agents/keyed.py). A source is done when the router had routed all of its
  input partition at a measurement (no lag there) *and* this partition has since read a record
  written after that measurement (`read_until`, the highest Kafka timestamp read here): what
  the router sent before is then behind us, not in this partition's own backlog. A source that
  is quiet and done holds nothing back, nor does one quiet for `max_hold_seconds` (a source
  that sends here once in a blue moon must not freeze stream time while the router always
  has some lag on it; a stall that long is an outage, and the deadline is what it is for);
- never backwards;
- when no source counts, advanced by the monotonic clock (so a jump of the wall clock neither
  floods nor stalls deadlines), and only while `drained(None, read_until)` says the upstream
  as a whole has nothing unread. A broker outage (no fresh lag measurement) or a router that
  is down or behind is not silence: records are late, not absent, and deadlines wait for them;
- unknown after an assignment until `idle_seconds` after the first record (a source not seen
  yet cannot hold anything back, so the router gets that long to show every source it has a
  backlog on), or until a drained silence of `idle_seconds` (then the wall clock of that
  moment is the starting point).

A producer whose clock is ahead cannot flood deadlines while other sources are active (the
lowest counts); one whose clock is behind holds them back, never forward.

The price: on a partition without traffic a deadline fires `idle_seconds` (plus a tick) late.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Times:
    """The times a command is applied at.

    Args:
        stream: stream time of the partition (deadlines and expiry are compared with it).
        event: event time of the command (its input record's timestamp; `stream` if unknown).
        wall: the wall clock, only for stamps people read (assembly_completed_at, lag).
    """

    stream: float
    event: float
    wall: float

    @classmethod
    def at(cls, now: float) -> Times:
        """All three the same (tests, and commands of no known time)."""
        return cls(now, now, now)


@dataclass(slots=True)
class _Source:
    #: highest timestamp seen
    high: float
    #: monotonic time of its last record
    seen: float
    #: a watermark of a stage upstream: counts whether quiet or not (its sender is the judge)
    sticky: bool


@dataclass(slots=True)
class _Partition:
    sources: dict[Hashable, _Source] = field(default_factory=dict)
    #: stream time, None while unknown
    time: float | None = None
    #: monotonic time of the last record (or of the assignment)
    last_record: float = 0.0
    #: monotonic time up to which the idle clock has been added to `time`
    clock_mark: float = 0.0
    #: monotonic time the first records' warm-up ends (None before the first record)
    warm_until: float | None = None
    #: the lowest timestamp seen since the assignment
    lowest: float | None = None
    #: the highest Kafka timestamp of the records this partition has read (any record)
    read_until: float | None = None


def _always(source: Hashable, read_until: float | None) -> bool:
    return True


class StreamClock:
    """Stream time of the partitions a worker owns (see the module docstring).

    Args:
        idle_seconds: silence after which a source read to its end no longer holds stream
            time back, and after which a partition without traffic follows the clock.
        drained: whether a source (None: the whole upstream) is done, given the highest Kafka
            timestamp the partition has read.
        max_hold_seconds: a quiet source not done holds stream time back at most this long.
        monotonic, wall: the clocks (tests pass their own).
    """

    def __init__(
        self,
        idle_seconds: float,
        *,
        drained: Callable[[Hashable, float | None], bool] = _always,
        max_hold_seconds: float = 600.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.drained = drained
        self.max_hold_seconds = max_hold_seconds
        self._monotonic = monotonic
        self._wall = wall
        self._parts: dict[int, _Partition] = {}

    def assign(self, partitions: Iterable[int]) -> None:
        """The worker's partitions now: new ones start unknown, lost ones are forgotten."""
        mono = self._monotonic()
        old = self._parts
        self._parts = {p: old.get(p) or self._new(mono) for p in sorted(set(partitions))}

    @staticmethod
    def _new(mono: float) -> _Partition:
        return _Partition(last_record=mono, clock_mark=mono)

    def observe(
        self, partition: int, timestamp: float, source: Hashable = None, *, sticky: bool = False
    ) -> None:
        """A record of `partition` from `source` with event time `timestamp` (epoch seconds);
        `sticky`: a watermark from a stage upstream (see `_Source`)."""
        part = self._parts.get(partition)
        mono = self._monotonic()
        if part is None:
            part = self._parts[partition] = self._new(mono)
        seen = part.sources.get(source)
        if seen is None:
            part.sources[source] = _Source(timestamp, mono, sticky)
        else:
            if timestamp > seen.high:
                seen.high = timestamp
            seen.seen = mono
        part.last_record = mono
        if part.lowest is None or timestamp < part.lowest:
            part.lowest = timestamp
        if part.warm_until is None:
            part.warm_until = mono + self.idle_seconds

    def read(self, partition: int, record_timestamp: float) -> None:
        """The partition has read (and applied) a record written at `record_timestamp`."""
        part = self._parts.get(partition)
        if part is not None and (part.read_until is None or record_timestamp > part.read_until):
            part.read_until = record_timestamp

    def now(self, partition: int) -> float | None:
        """The stream time of `partition`, or None while it is unknown."""
        part = self._parts.get(partition)
        if part is None:
            return None
        mono = self._monotonic()
        if part.time is None and part.warm_until is not None and mono < part.warm_until:
            return None  # the first records' warm-up: every source gets to show itself
        horizon = mono - self.idle_seconds
        held = mono - self.max_hold_seconds
        counted = [
            s.high
            for key, s in part.sources.items()
            if s.sticky
            or s.seen > horizon
            or (s.seen > held and not self.drained(key, part.read_until))
        ]
        if counted:
            low = min(counted)
            if part.time is None or low > part.time:
                part.time = low
            part.clock_mark = mono
            return part.time
        # every source quiet and read to its end: the clock runs from idle_seconds after the
        # last record, while the upstream as a whole has nothing unread
        start = max(part.clock_mark, part.last_record + self.idle_seconds)
        if part.time is None and part.sources:
            # not asked while the records came: the time they made
            part.time = min(s.high for s in part.sources.values())
        if mono > start and self.drained(None, part.read_until):
            if part.time is None:
                # unknown until now: a drained partition's time starts from the wall clock
                part.time = self._wall() - self.idle_seconds
            else:
                part.time += mono - start
            part.clock_mark = mono
        elif mono > start:
            part.clock_mark = mono  # not drained: that time is not stream time
        return part.time

    def watermark(self, partition: int) -> float | None:
        """What this partition's stream time guarantees to a stage downstream: nothing older
        than it is still to come. During the warm-up, the lowest timestamp seen."""
        now = self.now(partition)
        if now is not None:
            return now
        part = self._parts.get(partition)
        return None if part is None else part.lowest

    def behind(self, wall: float | None = None) -> float:
        """How far the furthest-behind known partition is from the wall clock (seconds)."""
        now = self._wall() if wall is None else wall
        times = [t for t in (self.now(p) for p in self._parts) if t is not None]
        return max((now - t for t in times), default=0.0)
