"""The keyed-state driver: sends before the writes that record them, one write per key and batch,
each in its own partition, and a failed batch leaves nothing derived behind."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from agents.direct import Message
from agents.envelopes import commands_of, partition_for
from agents.keyed import KeyedBatch, KeyedDriver
from agents.table_store import Write
from schemas.dlq import DlqRecord


@dataclass
class FakeMessage:
    partition: int
    offset: int


@dataclass(eq=False)
class FakeEvent:
    key: str | None
    value: dict[str, Any]
    message: FakeMessage


class FakeStore:
    """A table store that logs every read and write with its partition."""

    changelog_topic = "t-changelog"

    def __init__(self) -> None:
        self.data: dict[int, dict[str, dict[str, Any]]] = {0: {}, 1: {}}
        self.persisted: dict[int, int] = {}
        self.log: list[tuple[str, str, int]] = []

    def get(self, partition: int, key: str) -> dict[str, Any] | None:
        self.log.append(("get", key, partition))
        return self.data[partition].get(key)

    def items(self, partitions: frozenset[int]) -> list[tuple[int, str, dict[str, Any]]]:
        return [(p, k, v) for p in sorted(partitions) for k, v in self.data[p].items()]

    def changelog(self, partition: int, writes: Sequence[Write]) -> list[Message]:
        return [(self.changelog_topic, k.encode(), v, partition) for k, v in writes]

    def apply(self, partition: int, writes: Sequence[Write], offset: int | None) -> None:
        for key, value in writes:
            self.log.append(("set" if value is not None else "del", key, partition))
            if value is None:
                del self.data[partition][key]
            else:
                self.data[partition][key] = orjson.loads(value)
        if offset is not None:
            self.persisted[partition] = offset

    def raw_key(self, key: str) -> bytes:
        return orjson.dumps(key)

    def value(self, key: str) -> dict[str, Any]:
        return next(d[key] for d in self.data.values() if key in d)


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
        return {"n": state.n, "due": state.due}

    def due(self, state: Counter) -> float | None:
        return state.due

    def due_of(self, raw: dict[str, Any]) -> float | None:
        return raw.get("due")

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
    """The broker: records what is sent (and how much was written locally before), returns
    offsets per partition."""

    def __init__(self, store: FakeStore, fail: int = 0) -> None:
        self.store = store
        self.fail = fail
        self.batches: list[list[Message]] = []
        self.writes_before: list[int] = []
        self.offsets: dict[tuple[str, int], int] = {}

    async def __call__(self, messages: Sequence[Message]) -> dict[tuple[str, int], int]:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("broker away")
        self.batches.append(list(messages))
        self.writes_before.append(sum(1 for op, _, _ in self.store.log if op != "get"))
        last = {}
        for topic, _, _, partition in messages:
            p = partition or 0
            last[topic, p] = self.offsets[topic, p] = self.offsets.get((topic, p), -1) + 1
        return last

    def sent(self, topic: str) -> list[Message]:
        return [m for batch in self.batches for m in batch if m[0] == topic]


def driver_for(
    store: FakeStore, sender: Sender, logic: CounterLogic | None = None
) -> KeyedDriver[Counter]:
    return KeyedDriver(
        logic or CounterLogic(),
        store,  # type: ignore[arg-type]
        topic="t",
        assignment=lambda: frozenset({0, 1}),
        partitions=2,
        send=sender,
    )


def ev(key: str, partition: int, offset: int, **value: Any) -> FakeEvent:
    return FakeEvent(key, {"type": "inc", **value}, FakeMessage(partition, offset))


def envelope(partition: int, offset: int, *commands: tuple[str, dict[str, Any]]) -> FakeEvent:
    return FakeEvent(
        None,
        {"type": "batch", "commands": [[k, c] for k, c in commands]},
        FakeMessage(partition, offset),
    )


async def test_sends_all_of_a_batch_before_any_write_and_writes_each_key_once() -> None:
    store = FakeStore()
    sender = Sender(store)
    driver = driver_for(store, sender)
    events = [ev("a", 0, 0), ev("b", 1, 0), ev("a", 0, 1), ev("a", 0, 2), ev("b", 1, 1)]
    await driver.process(events)  # type: ignore[arg-type]
    assert sender.batches[0] == [
        ("out", b"a", b"1", None),
        ("out", b"a", b"2", None),
        ("out", b"a", b"3", None),
        ("out", b"b", b"1", None),
        ("out", b"b", b"2", None),
    ]
    # then the changelog, once per key in its own partition, before any local write
    assert [(k, p) for _, k, _, p in sender.batches[1]] == [(b"a", 0), (b"b", 1)]
    assert sender.writes_before == [0, 0]
    writes = [entry for entry in store.log if entry[0] == "set"]
    assert writes == [("set", "a", 0), ("set", "b", 1)]
    reads = [entry for entry in store.log if entry[0] == "get"]
    assert reads == [("get", "a", 0), ("get", "b", 1)]  # once per key, in its own partition
    assert store.value("a")["n"] == 3
    assert store.value("b")["n"] == 2
    # the local store knows how far the changelog it holds goes
    assert store.persisted == {0: 0, 1: 0}


async def test_the_commands_of_an_envelope_are_applied_in_order() -> None:
    store = FakeStore()
    sender = Sender(store)
    driver = driver_for(store, sender)
    inc: dict[str, Any] = {"type": "inc"}
    await driver.process(
        [envelope(0, 5, ("a", inc), ("c", inc), ("a", inc)), envelope(0, 6, ("a", inc))]  # type: ignore[list-item]
    )
    assert [m[1:3] for m in sender.sent("out")] == [
        (b"a", b"1"),
        (b"c", b"1"),
        (b"a", b"2"),
        (b"a", b"3"),
    ]
    assert store.value("a")["n"] == 3
    assert driver.commands == 4


async def test_forwards_leave_in_one_envelope_per_partition() -> None:
    store = FakeStore()
    sender = Sender(store)

    class Forwarding(CounterLogic):
        def handle(
            self, batch: KeyedBatch[Counter], key: Any, msg: dict[str, Any], now: float
        ) -> None:
            batch.forward("other", key, {"type": "hello", "from": key})

    driver = driver_for(store, sender, Forwarding())
    keys = [str(i) for i in range(20)]
    await driver.process([ev(k, 0, i) for i, k in enumerate(keys)])  # type: ignore[arg-type]
    envelopes = sender.sent("other")
    assert len(envelopes) == 2  # two partitions
    seen = []
    for _, key, value, partition in envelopes:
        assert key is None
        assert value is not None
        for k, command in commands_of(None, orjson.loads(value)):
            assert partition_for(k, 2) == partition
            seen.append(command["from"])
    assert sorted(seen) == sorted(keys)


async def test_a_cached_state_is_not_read_again() -> None:
    store = FakeStore()
    driver = driver_for(store, Sender(store))
    await driver.process([ev("a", 0, 0)])  # type: ignore[list-item]
    store.log.clear()
    await driver.process([ev("a", 0, 1)])  # type: ignore[list-item]
    assert [op for op, _, _ in store.log] == ["set"]
    assert store.value("a")["n"] == 2


async def test_a_bad_event_is_dead_lettered_and_the_rest_applied() -> None:
    store = FakeStore()
    sender = Sender(store)
    driver = driver_for(store, sender)
    bad = FakeEvent("a", {"type": "bad"}, FakeMessage(0, 7))
    await driver.process([ev("a", 0, 6), bad, ev("a", 0, 8)])  # type: ignore[list-item]
    assert ("dlq", None, b"0@7: bad command", None) in sender.batches[0]
    assert store.value("a")["n"] == 2


async def test_a_broker_outage_is_waited_out_before_anything_is_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import agents.direct as direct

    async def no_sleep(_: float) -> None:
        return None

    monkeypatch.setattr(direct.asyncio, "sleep", no_sleep)
    store = FakeStore()
    sender = Sender(store, fail=2)
    driver = driver_for(store, sender)
    await driver.process([ev("a", 0, 0)])  # type: ignore[list-item]
    assert sender.batches[0] == [("out", b"a", b"1", None)]
    assert sender.writes_before == [0, 0]
    assert store.value("a")["n"] == 1


async def test_deadlines_come_from_the_table_after_a_rebuild_and_fire_once() -> None:
    store = FakeStore()
    store.data[0] = {"1": {"n": 5, "due": 10.0}, "2": {"n": 1, "due": 1e18}}
    logic = CounterLogic()
    sender = Sender(store)
    driver = driver_for(store, sender, logic)
    tick = FakeEvent("", {"type": "tick"}, FakeMessage(0, 3))
    await driver.process([tick])  # type: ignore[list-item]
    assert sender.batches[0] == [("out", b"1", b"expired", None)]
    assert sender.batches[1] == [("t-changelog", b"1", None, 0)]  # a tombstone
    assert "1" not in store.data[0]
    assert logic.indexed_keys["1"] is None
    assert driver.states == 1
    await driver.process([FakeEvent("", {"type": "tick"}, FakeMessage(0, 4))])  # type: ignore[list-item]
    assert len(sender.batches) == 2  # nothing due any more


async def test_a_key_scheduled_later_does_not_fire_at_its_earlier_time() -> None:
    store = FakeStore()
    sender = Sender(store)
    driver = driver_for(store, sender)
    await driver.process([ev("7", 0, 0, due=10.0)])  # type: ignore[list-item]
    await driver.process([ev("7", 0, 1, due=10.0)])  # type: ignore[list-item]
    assert len(driver.due) == 1  # the same due time is scheduled once
    await driver.process([ev("7", 0, 2, due=1e12)])  # type: ignore[list-item]
    await driver.process([FakeEvent("", {"type": "tick"}, FakeMessage(0, 3))])  # type: ignore[list-item]
    assert b"expired" not in [m[2] for m in sender.sent("out")]
    assert store.value("7")["n"] == 3


async def test_one_failing_due_key_does_not_drop_the_others_due_with_it() -> None:
    store = FakeStore()
    store.data[0] = {k: {"n": 1, "due": 10.0} for k in ("1", "2", "3")}

    class FailsOn2(CounterLogic):
        def on_due(self, batch: KeyedBatch[Counter], key: str, now: float) -> None:
            if key == "2":
                raise RuntimeError("cannot expire 2")
            super().on_due(batch, key, now)

    sender = Sender(store)
    driver = driver_for(store, sender, FailsOn2())
    await driver.process([FakeEvent("", {"type": "tick"}, FakeMessage(0, 3))])  # type: ignore[list-item]
    assert sorted(m[1] for m in sender.sent("out")) == [b"1", b"3"]
    assert [m[2] for m in sender.sent("dlq")] == [b"0@3: cannot expire 2"]
    assert set(store.data[0]) == {"2"}


async def test_a_row_that_cannot_be_indexed_goes_to_the_dlq_and_the_agent_goes_on() -> None:
    store = FakeStore()
    store.data[0] = {"x": {"n": 1, "due": 10.0}, "4": {"n": 1, "due": 10.0}}
    sender = Sender(store)
    driver = driver_for(store, sender)
    await driver.process([FakeEvent("", {"type": "tick"}, FakeMessage(0, 3))])  # type: ignore[list-item]
    assert [m[1] for m in sender.sent("out")] == [b"4"]
    (dead,) = [m for m in sender.sent("albums.dlq")]
    record = DlqRecord.decode(dead[2])
    assert (record.error_type, record.stage, record.key) == ("unreadable_state", "counter", b'"x"')
    assert orjson.loads(record.value or b"") == {"n": 1, "due": 10.0}
    # deleted, and not found again by the next rebuild
    assert "x" not in store.data[0]
    assert driver.states == 0


async def test_a_stored_state_that_cannot_be_decoded_is_dead_lettered_and_replaced() -> None:
    store = FakeStore()
    store.data[partition_for("k", 2)] = {"k": {"unexpected": True}}
    sender = Sender(store)
    driver = driver_for(store, sender)
    await driver.process([ev("k", partition_for("k", 2), 0)])
    (dead,) = sender.sent("albums.dlq")
    assert DlqRecord.decode(dead[2]).error_type == "unreadable_state"
    # the command was applied to a fresh state, which replaced the unreadable row
    assert store.value("k")["n"] == 1
    assert [m[2] for m in sender.sent("out")] == [b"1"]


async def test_a_key_created_and_deleted_in_one_batch_is_never_written() -> None:
    store = FakeStore()
    sender = Sender(store)
    driver = driver_for(store, sender)
    drop = FakeEvent("a", {"type": "drop"}, FakeMessage(0, 1))
    await driver.process([ev("a", 0, 0), drop])  # type: ignore[list-item]
    assert [op for op, _, _ in store.log if op != "get"] == []
    assert sender.sent("t-changelog") == []
