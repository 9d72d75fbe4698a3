"""Stream time: the lowest high timestamp of the active sources of a partition, never
backwards, advanced by the monotonic clock only while every source is quiet and the upstream is
drained; unknown until a record or a drained silence."""

from __future__ import annotations

from tables.stream_time import StreamClock


class Clocks:
    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = 1_800_000_000.0
        self.drained = True

    def clock(self, idle: float = 10.0) -> StreamClock:
        return StreamClock(
            idle,
            drained=lambda source, read_until: self.drained,
            monotonic=lambda: self.mono,
            wall=lambda: self.wall,
        )

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


def test_the_source_that_is_behind_holds_stream_time_back() -> None:
    c = Clocks()
    clock = c.clock(idle=10)
    clock.assign([0])
    # the router reads albums.parsed far ahead of the vision topic in a backlog
    for i in range(50):
        clock.observe(0, 1000.0 + 10 * i, source=("albums.parsed", 0))
        clock.observe(0, 1000.0 + i, source=("posts.vision.analyzed", 3))
        c.tick(0.25)
    assert clock.now(0) == 1049.0
    # the albums source has been read to its end and goes quiet: the vision source goes on
    for i in range(50, 150):
        clock.observe(0, 1000.0 + i, source=("posts.vision.analyzed", 3))
        c.tick(0.2)
    assert clock.now(0) == 1149.0


def test_an_idle_partition_follows_the_monotonic_clock_after_the_idle_time() -> None:
    c = Clocks()
    clock = c.clock(idle=10)
    clock.assign([0])
    clock.observe(0, 500.0)
    c.tick(5)
    clock.observe(0, 500.0)
    c.tick(5)
    assert clock.now(0) == 500.0
    c.tick(20)  # 25 s without a record
    assert clock.now(0) == 515.0
    # a wall-clock jump changes nothing, forwards or backwards
    c.wall += 86400
    assert clock.now(0) == 515.0
    c.wall -= 2 * 86400
    c.tick(5)
    assert clock.now(0) == 520.0


def test_no_clock_advance_while_the_upstream_is_not_drained() -> None:
    c = Clocks()
    clock = c.clock(idle=10)
    clock.assign([0])
    clock.observe(0, 500.0)
    c.drained = False  # a broker outage, or the router is down with records unread
    c.tick(60)
    assert clock.now(0) == 500.0
    c.tick(60)
    assert clock.now(0) == 500.0
    c.drained = True  # the silence starts to count from here on
    c.tick(5)
    assert clock.now(0) == 505.0
    # the late records come: stream time follows them
    clock.observe(0, 520.0)
    assert clock.now(0) == 520.0


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


def test_unknown_until_a_record_or_a_drained_silence() -> None:
    c = Clocks()
    clock = c.clock(idle=10)
    clock.assign([0, 1])
    assert clock.now(0) is None
    c.drained = False  # the router is behind
    c.tick(4)
    start = c.wall
    clock.observe(1, start - 300)
    assert clock.now(1) is None  # the warm-up: other sources may not have shown up yet
    c.tick(5)
    clock.observe(1, start - 299)
    c.tick(5)
    assert clock.now(1) == start - 299
    assert clock.now(0) is None
    c.tick(6)  # 20 s since the assignment, no record on partition 0, the router behind
    assert clock.now(0) is None
    c.drained = True
    c.tick(1)
    assert clock.now(0) == c.wall - 10  # no backlog there: the clock, idle_seconds behind
    c.tick(3)
    assert clock.now(0) == c.wall - 10
    assert clock.now(7) is None  # not ours


def test_assign_keeps_what_stays_and_forgets_what_leaves() -> None:
    c = Clocks()
    clock = c.clock()
    clock.assign([0, 1])
    clock.observe(0, 100.0)
    clock.observe(1, 200.0)
    c.tick(1)
    clock.observe(1, 200.0)
    c.tick(9.5)
    clock.assign([1, 2])
    assert clock.now(0) is None
    assert clock.now(1) == 200.0
    assert clock.now(2) is None


def test_behind_is_the_furthest_known_partition() -> None:
    c = Clocks()
    clock = c.clock()
    clock.assign([0, 1, 2])
    clock.observe(0, c.wall - 30)
    clock.observe(1, c.wall - 5)
    assert clock.behind() == 0.0  # nothing known during the warm-up
    c.tick(5)
    clock.observe(0, c.wall - 30)
    clock.observe(1, c.wall - 5)
    c.tick(5)
    assert clock.behind() == 35.0


def test_a_source_first_seen_during_the_warm_up_holds_stream_time_back() -> None:
    c = Clocks()
    clock = c.clock(idle=2)
    clock.assign([0])
    # the router's first batch has only albums, hours ahead of the vision it reads next
    clock.observe(0, 10_000.0, source="albums")
    assert clock.now(0) is None
    c.tick(0.5)
    clock.observe(0, 1_000.0, source="vision")
    c.tick(1.6)
    clock.observe(0, 10_001.0, source="albums")
    clock.observe(0, 1_001.0, source="vision")
    assert clock.now(0) == 1_001.0


def test_a_quiet_source_with_records_unread_still_holds_stream_time_back() -> None:
    c = Clocks()
    unread = {("vision", 1)}
    clock = StreamClock(
        2,
        drained=lambda source, read_until: source not in unread and not (source is None and unread),
        monotonic=lambda: c.mono,
        wall=lambda: c.wall,
    )
    clock.assign([0])
    clock.observe(0, 100.0, source=("vision", 1))
    for i in range(20):  # the router reads the albums on; vision partition 1 is stuck
        clock.observe(0, 100.0 + 10 * i, source=("albums", 0))
        c.tick(1)
    assert clock.now(0) == 100.0
    unread.clear()  # read to its end: quiet now means nothing more to come
    assert clock.now(0) == 290.0


def test_a_watermark_counts_however_long_it_is_quiet() -> None:
    c = Clocks()
    clock = c.clock(idle=2)
    clock.assign([0])
    clock.observe(0, 50.0, source=("watermark", "post-events", 3), sticky=True)
    for i in range(20):
        clock.observe(0, 100.0 + i, source=("albums", 0))
        c.tick(1)
    # the post index is slow: what it forwards later may be older than the albums read
    assert clock.now(0) == 50.0
    clock.observe(0, 110.0, source=("watermark", "post-events", 3), sticky=True)
    assert clock.now(0) == 110.0


def test_a_quiet_source_not_done_holds_stream_time_back_only_so_long() -> None:
    c = Clocks()
    c.drained = False  # the router always has some lag on the rare source
    clock = StreamClock(
        2,
        drained=lambda source, read_until: source != "rare",
        max_hold_seconds=30,
        monotonic=lambda: c.mono,
        wall=lambda: c.wall,
    )
    clock.assign([0])
    clock.observe(0, 100.0, source="rare")
    times = []
    for i in range(40):
        clock.observe(0, 100.0 + i, source="busy")
        c.tick(1)
        times.append(clock.now(0))
    assert times[25] == 100.0  # held by the rare source's last record
    assert times[-1] == 139.0  # quiet for longer than the hold: it no longer counts
