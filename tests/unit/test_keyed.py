"""The keyed-state driver: sends before the writes that record them, one write per key and batch,
each in its own partition, and a failed batch leaves nothing derived behind."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.streams import current_event

from agents.direct import Message
from agents.keyed import KeyedBatch, KeyedDriver


@dataclass
class FakeMessage:
    partition: int
    offset: int


@dataclass(eq=False)
class FakeEvent:
    key: str
    value: dict[str, Any]
    message: FakeMessage


class FakeTable:
    """A table that records every operation with the partition of Faust's current event."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.log: list[tuple[str, str, int]] = []

    def _partition(self) -> int:
        event = current_event()
        assert event is not None, "table used outside an event"
        return int(event.message.partition)

    def get(self, key: str) -> dict[str, Any] | None:
        self.log.append(("get", key, self._partition()))
        return self.data.get(key)

    def __setitem__(self, key: str, value: dict[str, Any]) -> None:
        self.log.append(("set", key, self._partition()))
        self.data[key] = value

    def __delitem__(self, key: str) -> None:
        self.log.append(("del", key, self._partition()))
        del self.data[key]

    def items(self) -> list[tuple[str, dict[str, Any]]]:
        return list(self.data.items())


@dataclass
class Counter:
    """A state: how many times its key was incremented, due at `due`."""

    n: int
    due: float | None = None


@dataclass
class CounterLogic:
    stage: str = "counter"
    indexed_keys: dict[str, int | None] = field(default_factory=dict)

    def decode(self, raw: dict[str, Any]) -> Counter:
        return Counter(raw["n"], raw.get("due"))

    def encode(self, state: Counter) -> dict[str, Any]:
        return {"n": state.n, "due": state.due, "partition": 0}

    def due_of(self, raw: dict[str, Any]) -> tuple[int | None, float | None]:
        return raw.get("partition"), raw.get("due")

    def handle(self, batch: KeyedBatch[Counter], key: Any, msg: dict[str, Any], now: float) -> None:
        if msg["type"] == "bad":
            raise ValueError("bad command")
        state = batch.get(key) or Counter(0)
        if msg["type"] == "drop":
            batch.delete(key)
            return
        state = Counter(state.n + 1, msg.get("due"))
        batch.put(key, state)
        batch.send(("out", key.encode(), str(state.n).encode(), None))

    def on_due(self, batch: KeyedBatch[Counter], key: str, now: float) -> None:
        batch.delete(key)
        batch.send(("out", key.encode(), b"expired", None))

    def dead_letter(
        self, key: Any, msg: dict[str, Any], partition: int, offset: int, error: BaseException
    ) -> Message:
        return ("dlq", None, f"{partition}@{offset}: {error}".encode(), None)

    def indexed(self, key: str, raw: dict[str, Any] | None) -> None:
        self.indexed_keys[key] = None if raw is None else raw["n"]

    def reset_index(self) -> None:
        self.indexed_keys.clear()


class Sender:
    def __init__(self, table: FakeTable, fail: int = 0) -> None:
        self.table = table
        self.fail = fail
        self.batches: list[list[Message]] = []
        self.writes_before: list[int] = []

    async def __call__(self, messages: Sequence[Message]) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("broker away")
        self.batches.append(list(messages))
        self.writes_before.append(sum(1 for op, _, _ in self.table.log if op != "get"))


def driver_for(
    table: FakeTable, sender: Sender, logic: CounterLogic | None = None
) -> KeyedDriver[Counter]:
    return KeyedDriver(
        logic or CounterLogic(),
        table,  # type: ignore[arg-type]
        topic="t",
        assignment=lambda: frozenset({0, 1}),
        send=sender,
    )


def ev(key: str, partition: int, offset: int, **value: Any) -> FakeEvent:
    return FakeEvent(key, {"type": "inc", **value}, FakeMessage(partition, offset))


async def test_sends_all_of_a_batch_before_any_write_and_writes_each_key_once() -> None:
    table = FakeTable()
    sender = Sender(table)
    driver = driver_for(table, sender)
    events = [ev("a", 0, 0), ev("b", 1, 0), ev("a", 0, 1), ev("a", 0, 2), ev("b", 1, 1)]
    await driver.process(events)  # type: ignore[arg-type]
    assert sender.batches == [
        [
            ("out", b"a", b"1", None),
            ("out", b"a", b"2", None),
            ("out", b"a", b"3", None),
            ("out", b"b", b"1", None),
            ("out", b"b", b"2", None),
        ]
    ]
    assert sender.writes_before == [0]  # nothing recorded before the broker had it all
    writes = [entry for entry in table.log if entry[0] == "set"]
    assert writes == [("set", "a", 0), ("set", "b", 1)]  # once per key, in its own partition
    reads = [entry for entry in table.log if entry[0] == "get"]
    assert reads == [("get", "a", 0), ("get", "b", 1)]  # once per key, in its own partition
    assert table.data["a"]["n"] == 3
    assert table.data["b"]["n"] == 2


async def test_a_cached_state_is_not_read_again() -> None:
    table = FakeTable()
    driver = driver_for(table, Sender(table))
    await driver.process([ev("a", 0, 0)])  # type: ignore[list-item]
    table.log.clear()
    await driver.process([ev("a", 0, 1)])  # type: ignore[list-item]
    assert [op for op, _, _ in table.log] == ["set"]
    assert table.data["a"]["n"] == 2


async def test_a_bad_event_is_dead_lettered_and_the_rest_applied() -> None:
    table = FakeTable()
    sender = Sender(table)
    driver = driver_for(table, sender)
    bad = FakeEvent("a", {"type": "bad"}, FakeMessage(0, 7))
    await driver.process([ev("a", 0, 6), bad, ev("a", 0, 8)])  # type: ignore[list-item]
    assert ("dlq", None, b"0@7: bad command", None) in sender.batches[0]
    assert table.data["a"]["n"] == 2


async def test_a_broker_outage_is_waited_out_before_anything_is_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import agents.direct as direct

    async def no_sleep(_: float) -> None:
        return None

    monkeypatch.setattr(direct.asyncio, "sleep", no_sleep)
    table = FakeTable()
    sender = Sender(table, fail=2)
    driver = driver_for(table, sender)
    await driver.process([ev("a", 0, 0)])  # type: ignore[list-item]
    assert sender.batches == [[("out", b"a", b"1", None)]]
    assert sender.writes_before == [0]
    assert table.data["a"]["n"] == 1


async def test_deadlines_come_from_the_table_after_a_rebuild_and_fire_once() -> None:
    table = FakeTable()
    table.data = {"a": {"n": 5, "due": 10.0, "partition": 0}, "b": {"n": 1, "due": 1e18}}
    logic = CounterLogic()
    sender = Sender(table)
    driver = driver_for(table, sender, logic)
    tick = FakeEvent("", {"type": "tick"}, FakeMessage(0, 3))
    await driver.process([tick])  # type: ignore[list-item]
    assert sender.batches == [[("out", b"a", b"expired", None)]]
    assert "a" not in table.data
    assert logic.indexed_keys["a"] is None
    await driver.process([FakeEvent("", {"type": "tick"}, FakeMessage(0, 4))])  # type: ignore[list-item]
    assert len(sender.batches) == 1  # nothing due any more


async def test_a_key_created_and_deleted_in_one_batch_is_never_written() -> None:
    table = FakeTable()
    driver = driver_for(table, Sender(table))
    drop = FakeEvent("a", {"type": "drop"}, FakeMessage(0, 1))
    await driver.process([ev("a", 0, 0), drop])  # type: ignore[list-item]
    assert [op for op, _, _ in table.log if op != "get"] == []
