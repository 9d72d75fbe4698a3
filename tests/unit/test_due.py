"""tables.due.DueIndex: a time wheel of integer keys per partition, offering candidates in
time order (the caller checks each against its state)."""

from __future__ import annotations

import random

from tables.due import DueIndex


def test_empty() -> None:
    due = DueIndex()
    assert len(due) == 0
    assert due.pop_due(0, 1e18) == []
    assert due.assignment is None


def test_pop_due_returns_due_keys_in_time_order_and_removes_them() -> None:
    due = DueIndex()
    due.set(0, "3", 30.0)
    due.set(0, "1", 10.0)
    due.set(0, "2", 20.0)
    due.set(0, "4", 40.0)
    assert len(due) == 4
    assert due.pop_due(0, 5.0) == []
    assert due.pop_due(0, 30.0) == ["1", "2", "3"]  # due <= now is due
    assert len(due) == 1
    assert due.pop_due(0, 30.0) == []
    assert due.pop_due(0, 100.0) == ["4"]
    assert len(due) == 0


def test_a_key_is_never_offered_before_its_due_time() -> None:
    due = DueIndex()
    due.set(0, "7", 100.2)
    assert due.pop_due(0, 100.1) == []
    assert due.pop_due(0, 100.9) == []  # at most one second late, never early
    assert due.pop_due(0, 101.0) == ["7"]


def test_partitions_are_separate() -> None:
    due = DueIndex()
    due.set(0, "1", 1.0)
    due.set(1, "2", 2.0)
    assert due.pop_due(1, 10.0) == ["2"]
    assert due.pop_due(0, 10.0) == ["1"]


def test_a_key_scheduled_again_is_offered_at_each_time() -> None:
    # the caller skips the entry whose time is not its state's any more
    due = DueIndex()
    due.set(0, "5", 10.0)
    due.set(0, "5", 50.0)
    assert due.pop_due(0, 20.0) == ["5"]
    assert due.pop_due(0, 60.0) == ["5"]


def test_none_and_infinite_due_times_schedule_nothing() -> None:
    due = DueIndex()
    due.set(0, "1", None)
    due.set(0, "2", float("inf"))
    assert len(due) == 0


def test_limit_keeps_the_rest_for_the_next_pop() -> None:
    due = DueIndex()
    for k in range(10):
        due.set(0, str(k), 5.0)
    first = due.pop_due(0, 5.0, limit=4)
    rest = due.pop_due(0, 5.0, limit=100)
    assert len(first) == 4
    assert sorted(first + rest, key=int) == [str(k) for k in range(10)]
    assert len(due) == 0


def test_clear_forgets_everything_and_records_the_assignment() -> None:
    due = DueIndex()
    due.set(0, "1", 1.0)
    due.clear(frozenset({0, 3}))
    assert len(due) == 0
    assert due.pop_due(0, 1e18) == []
    assert due.assignment == frozenset({0, 3})


def test_many_keys_come_out_in_time_order() -> None:
    rng = random.Random(3)
    due = DueIndex()
    times = {str(k): rng.uniform(0, 1000) for k in range(5000)}
    for k, t in times.items():
        due.set(0, k, t)
    out: list[str] = []
    for now in range(0, 1002, 7):
        popped = due.pop_due(0, float(now), limit=10_000)
        assert all(times[k] <= now for k in popped)
        out += popped
    assert sorted(out) == sorted(times)
    # each pop returns keys from earlier seconds first
    seconds = [int(-(-times[k] // 1)) for k in out]
    assert seconds == sorted(seconds)


def test_a_key_costs_eight_bytes() -> None:
    due = DueIndex()
    for k in range(100_000):
        due.set(0, str(10**12 + k), 86_400.0 + (k % 60))
    buckets = due._buckets[0]
    assert sum(b.itemsize * len(b) for b in buckets.values()) == 8 * 100_000
