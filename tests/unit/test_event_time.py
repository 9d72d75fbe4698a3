"""Deadlines in event time, through the keyed driver: a backlog read late makes nothing due
early, idle partitions still reach their deadlines, and jumps of the wall clock neither flood
nor lose them."""

from __future__ import annotations

from typing import Any

import orjson

from agents.keyed import KeyedBatch, KeyedDriver
from tables.album_state import AssemblyPolicy, apply_parsed, on_time
from tables.stream_time import StreamClock, Times
from tests.unit.test_album_state import make_album
from tests.unit.test_keyed import Counter, CounterLogic, FakeEvent, FakeMessage, FakeStore, Sender

DEADLINE = 10.0


class DeadlineLogic(CounterLogic):
    """A key is due DEADLINE seconds of event time after its first command; at its deadline it
    is sent "expired" with the stream time it fired at."""

    def handle(self, batch: KeyedBatch[Counter], key: Any, msg: dict[str, Any], now: Any) -> None:
        state = batch.get(key)
        due = state.due if state else now.event + DEADLINE
        batch.put(key, Counter((state.n if state else 0) + 1, due))

    def on_due(self, batch: KeyedBatch[Counter], key: str, now: Any) -> None:
        batch.delete(key)
        batch.send(("out", key.encode(), f"{now.stream:.0f}".encode(), None))


class World:
    def __init__(self) -> None:
        self.mono = 5000.0
        self.wall = 1_800_000_000.0
        self.drained = True
        self.offset = 0
        self.store = FakeStore()
        self.sender = Sender(self.store)
        clock = StreamClock(
            2.0,
            drained=lambda source, read_until: self.drained,
            monotonic=lambda: self.mono,
            wall=lambda: self.wall,
        )
        self.driver = KeyedDriver(
            DeadlineLogic(),
            self.store,  # type: ignore[arg-type]
            topic="t",
            assignment=lambda: frozenset({0, 1}),
            partitions=2,
            send=self.sender,
            clock=clock,
            wall=lambda: self.wall,
        )

    def pass_time(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds

    async def commands(self, *keyed: tuple[str, float, str], partition: int = 0) -> None:
        """One envelope of commands (key, record time, source topic)."""
        self.offset += 1
        value = {
            "type": "batch",
            "commands": [
                [k, {"type": "inc", "origin": {"topic": src, "partition": 0, "ts": ts}}]
                for k, ts, src in keyed
            ],
        }
        await self.driver.process([FakeEvent(None, value, FakeMessage(partition, self.offset))])  # type: ignore[list-item]

    async def tick(self, partition: int = 0) -> list[tuple[str, float]]:
        before = len(self.sender.sent("out"))
        self.offset += 1
        await self.driver.process(
            [FakeEvent("", {"type": "tick"}, FakeMessage(partition, self.offset))]
        )  # type: ignore[list-item]
        return [(m[1].decode(), float(m[2])) for m in self.sender.sent("out")[before:]]


async def test_a_backlog_read_after_its_deadlines_makes_nothing_due_early() -> None:
    w = World()
    old = w.wall - 3600  # an hour of backlog, read at 50 records of event time per second
    fired: list[tuple[str, float]] = []
    for i in range(100):
        await w.commands((str(i), old + i, "albums.parsed"), (str(1000 + i), old + i, "vision"))
        w.pass_time(0.5)  # slower than the deadline would allow in processing time
        fired += await w.tick()
    # due in stream time: keys whose event time is at least DEADLINE behind the last record
    assert sorted(int(k) for k, _ in fired if int(k) < 1000) == list(range(0, 100 - 10))
    assert all(at >= old + int(k) % 1000 + DEADLINE for k, at in fired)


async def test_the_slower_source_holds_the_deadlines_back() -> None:
    w = World()
    t0 = w.wall - 600
    fired: list[tuple[str, float]] = []
    # the albums topic is read far ahead of the vision topic: albums at t0 + 100 + i, the
    # vision of album 1 at t0 + 1 + i
    for i in range(10):
        await w.commands((str(100 + i), t0 + 100 + i, "albums.parsed"))
        await w.commands(("1", t0 + 1 + i, "vision"))
        w.pass_time(0.5)
        fired += await w.tick()
    assert fired == []  # stream time is the vision source's, t0 + 10 at most
    await w.commands(("200", t0 + 200, "albums.parsed"), ("1", t0 + 20, "vision"))
    assert [k for k, _ in await w.tick()] == ["1"]


async def test_an_idle_partition_reaches_its_deadlines_by_the_clock_only_when_drained() -> None:
    w = World()
    await w.commands(("1", w.wall, "albums.parsed"))
    w.drained = False  # the router has records to read: silence is not the end of the data
    for _ in range(30):
        w.pass_time(1)
        assert await w.tick() == []
    w.drained = True
    fired: list[tuple[str, float]] = []
    for _ in range(15):
        w.pass_time(1)
        fired += await w.tick()
    assert [k for k, _ in fired] == ["1"]


async def test_wall_clock_jumps_neither_flood_nor_lose_deadlines() -> None:
    w = World()
    true = w.wall  # the producers' clocks, right all along
    fired: list[tuple[str, float]] = []
    for i in range(20):
        await w.commands((str(i), true, "albums.parsed"))
        if i == 5:
            w.wall += 86400  # the worker's clock jumps a day ahead
        if i == 12:
            w.wall -= 2 * 86400  # and then a day back
        w.pass_time(1)
        true += 1
        fired += await w.tick()
    # no flood: only the deadlines that passed in event time (DEADLINE after each record)
    assert [k for k, _ in fired] == [str(i) for i in range(20 - int(DEADLINE))]
    for _ in range(20):  # then silence: the rest fire by the monotonic clock, none lost
        w.pass_time(1)
        fired += await w.tick()
    assert [k for k, _ in fired] == [str(i) for i in range(20)]


async def test_a_producer_clock_far_ahead_floods_nothing_while_others_are_active() -> None:
    w = World()
    fired: list[tuple[str, float]] = []
    for i in range(10):
        await w.commands((str(i), w.wall, "albums.parsed"))
        await w.commands((str(100 + i), w.wall + 365 * 86400, "vision"))  # a year ahead
        w.pass_time(1)
        fired += await w.tick()
    assert fired == []  # the lowest active source counts


def test_album_deadline_runs_from_its_record_time_and_completion_is_stamped_by_the_wall() -> None:
    policy = AssemblyPolicy(deadline_seconds=60)
    album = make_album()
    t = Times(stream=950.0, event=900.0, wall=5000.0)
    out = apply_parsed(None, album, t, policy)
    assert out.state is not None
    assert out.emit is None
    assert out.state.deadline_at == 960.0
    assert out.state.created_at == 900.0
    # stream time not past the deadline: nothing, whatever the wall clock says
    assert on_time(out.state, Times(959.0, 959.0, 99_999.0), policy).emit is None
    fired = on_time(out.state, Times(960.0, 960.0, 5100.0), policy).emit
    assert fired is not None
    assert fired.status == "partial"
    assert fired.assembly_lag_seconds == 4200.0  # wall 5100 - first record 900


async def test_a_driver_that_forwards_sends_its_stream_time_after_its_forwards() -> None:
    from agents.envelopes import commands_of

    class Forwarder(CounterLogic):
        def handle(
            self, batch: KeyedBatch[Counter], key: Any, msg: dict[str, Any], now: Any
        ) -> None:
            batch.forward("down", key, {"type": "fwd", "origin": {"ts": now.event, "via": "x"}})

    store = FakeStore()
    sender = Sender(store)
    mono = [100.0]
    clock = StreamClock(2.0, monotonic=lambda: mono[0])
    driver = KeyedDriver(
        Forwarder(),
        store,  # type: ignore[arg-type]
        topic="up",
        assignment=lambda: frozenset({0, 1}),
        partitions=2,
        send=sender,
        clock=clock,
        watermarks_to="down",
    )

    def env(offset: int, ts: float) -> FakeEvent:
        cmd = {"type": "inc", "origin": {"topic": "in", "partition": 0, "ts": ts}}
        return FakeEvent(None, {"type": "batch", "commands": [["7", cmd]]}, FakeMessage(0, offset))

    await driver.process([env(0, 500.0)])  # type: ignore[list-item]
    mono[0] += 3  # past the warm-up
    await driver.process([env(1, 510.0)])  # type: ignore[list-item]
    for message in sender.sent("down")[-2:]:
        commands = [c for _, c in commands_of(None, orjson.loads(message[2]))]
        kinds = [c["type"] for c in commands]
        # forwards first, then the watermark: nothing older than it follows from partition 0
        assert kinds[-1] == "watermark"
        assert all(k == "fwd" for k in kinds[:-1])
        assert commands[-1]["origin"]["ts"] == 510.0
    assert {m[3] for m in sender.sent("down")[-2:]} == {0, 1}  # to every partition downstream
