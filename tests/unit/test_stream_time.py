"""Stream time: the highest record timestamp per partition, advanced by the monotonic clock
only while a partition is idle; unknown until a record or a silence."""

from __future__ import annotations

from tables.stream_time import StreamClock


class Clocks:
    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = 1_800_000_000.0

    def clock(self, idle: float = 10.0) -> StreamClock:
        return StreamClock(idle, monotonic=lambda: self.mono, wall=lambda: self.wall)

    def tick(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


def test_a_backlog_keeps_stream_time_at_its_records() -> None:
    c = Clocks()
    clock = c.clock()
    clock.assign([0])
    # a worker catching up: records 30 minutes old, read quickly one after the other
    old = c.wall - 1800
    for i in range(100):
        clock.observe(0, old + i)
        c.tick(0.5)
    assert clock.now(0) == old + 99  # not the wall clock: nothing is due because we are slow


def test_an_idle_partition_follows_the_monotonic_clock_after_the_idle_time() -> None:
    c = Clocks()
    clock = c.clock(idle=10)
    clock.assign([0])
    clock.observe(0, 500.0)
    c.tick(5)
    assert clock.now(0) == 500.0
    c.tick(20)  # 25 s without a record
    assert clock.now(0) == 515.0
    # a wall-clock jump changes nothing
    c.wall += 86400
    assert clock.now(0) == 515.0


def test_stream_time_never_goes_back() -> None:
    c = Clocks()
    clock = c.clock(idle=10)
    clock.assign([0])
    clock.observe(0, 500.0)
    c.tick(30)
    advanced = clock.now(0)
    assert advanced == 520.0
    clock.observe(0, 490.0)  # a late record
    assert clock.now(0) == 520.0
    clock.observe(0, 600.0)
    assert clock.now(0) == 600.0


def test_unknown_until_a_record_or_a_silence() -> None:
    c = Clocks()
    clock = c.clock(idle=10)
    start = c.wall
    clock.assign([0, 1])
    assert clock.now(0) is None
    c.tick(4)
    clock.observe(1, start - 300)
    assert clock.now(1) == start - 300
    assert clock.now(0) is None
    c.tick(16)  # 20 s since the assignment, no record on partition 0: no backlog there
    assert clock.now(0) == start + 10
    assert clock.now(7) is None  # not ours


def test_assign_keeps_what_stays_and_forgets_what_leaves() -> None:
    c = Clocks()
    clock = c.clock()
    clock.assign([0, 1])
    clock.observe(0, 100.0)
    clock.observe(1, 200.0)
    clock.assign([1, 2])
    assert clock.now(0) is None
    assert clock.now(1) == 200.0
    assert clock.now(2) is None
