"""tables.due.DueIndex: which keys of a partition are due, in order, with lazy deletion."""

from __future__ import annotations

from tables.due import DueIndex


def test_empty() -> None:
    due = DueIndex()
    assert len(due) == 0
    assert due.pop_due(0, 1e18) == []
    assert due.assignment is None


def test_pop_due_returns_due_keys_in_time_order_and_removes_them() -> None:
    due = DueIndex()
    due.set(0, "c", 30.0)
    due.set(0, "a", 10.0)
    due.set(0, "b", 20.0)
    due.set(0, "d", 40.0)
    assert len(due) == 4
    assert due.pop_due(0, 5.0) == []
    assert due.pop_due(0, 30.0) == ["a", "b", "c"]  # due <= now is due
    assert len(due) == 1
    assert due.pop_due(0, 30.0) == []
    assert due.pop_due(0, 100.0) == ["d"]
    assert len(due) == 0


def test_equal_due_times_all_pop() -> None:
    due = DueIndex()
    for k in ("x", "y", "z"):
        due.set(1, k, 5.0)
    assert sorted(due.pop_due(1, 5.0)) == ["x", "y", "z"]


def test_partitions_are_separate() -> None:
    due = DueIndex()
    due.set(0, "a", 1.0)
    due.set(1, "b", 2.0)
    due.set(2, "c", 3.0)
    assert due.pop_due(1, 100.0) == ["b"]
    assert due.pop_due(3, 100.0) == []
    assert due.pop_due(0, 100.0) == ["a"]
    assert due.pop_due(2, 100.0) == ["c"]


def test_reset_moves_a_key_later() -> None:
    due = DueIndex()
    due.set(0, "a", 10.0)
    due.set(0, "a", 50.0)
    assert len(due) == 1
    assert due.pop_due(0, 20.0) == []  # the old entry is ignored
    assert due.pop_due(0, 50.0) == ["a"]
    assert due.pop_due(0, 1000.0) == []


def test_reset_moves_a_key_earlier() -> None:
    due = DueIndex()
    due.set(0, "a", 50.0)
    due.set(0, "a", 10.0)
    assert due.pop_due(0, 10.0) == ["a"]
    assert due.pop_due(0, 1000.0) == []  # the superseded entry is not returned again


def test_reset_moves_a_key_to_another_partition() -> None:
    due = DueIndex()
    due.set(0, "a", 10.0)
    due.set(1, "a", 10.0)
    assert len(due) == 1
    assert due.pop_due(0, 100.0) == []
    assert due.pop_due(1, 100.0) == ["a"]


def test_setting_the_same_due_twice_is_one_entry() -> None:
    due = DueIndex()
    due.set(0, "a", 10.0)
    due.set(0, "a", 10.0)
    assert len(due) == 1
    assert due.pop_due(0, 10.0) == ["a"]
    assert due.pop_due(0, 10.0) == []


def test_back_and_forth_returns_the_key_once() -> None:
    due = DueIndex()
    due.set(0, "a", 5.0)
    due.set(0, "a", 10.0)
    due.set(0, "a", 5.0)
    assert due.pop_due(0, 100.0) == ["a"]


def test_set_none_forgets_the_key() -> None:
    due = DueIndex()
    due.set(0, "a", 5.0)
    due.set(0, "a", None)
    assert len(due) == 0
    assert due.pop_due(0, 100.0) == []
    due.set(0, "never-set", None)
    assert len(due) == 0


def test_discard() -> None:
    due = DueIndex()
    due.set(0, "a", 5.0)
    due.set(0, "b", 6.0)
    due.discard("a")
    due.discard("missing")  # no error
    assert len(due) == 1
    assert due.pop_due(0, 100.0) == ["b"]


def test_rescheduled_after_discard() -> None:
    due = DueIndex()
    due.set(0, "a", 5.0)
    due.discard("a")
    due.set(0, "a", 5.0)
    assert due.pop_due(0, 100.0) == ["a"]


def test_limit() -> None:
    due = DueIndex()
    for i in range(10):
        due.set(0, f"k{i}", float(i))
    assert due.pop_due(0, 100.0, limit=3) == ["k0", "k1", "k2"]
    assert len(due) == 7
    assert due.pop_due(0, 100.0, limit=3) == ["k3", "k4", "k5"]
    assert due.pop_due(0, 100.0) == ["k6", "k7", "k8", "k9"]


def test_limit_does_not_count_superseded_entries() -> None:
    due = DueIndex()
    for i in range(5):
        due.set(0, "moved", float(i))
    due.set(0, "moved", 1000.0)
    due.set(0, "a", 10.0)
    due.set(0, "b", 11.0)
    assert due.pop_due(0, 100.0, limit=2) == ["a", "b"]


def test_clear_forgets_everything_and_records_the_assignment() -> None:
    due = DueIndex()
    due.set(0, "a", 1.0)
    due.set(1, "b", 1.0)
    due.clear(frozenset({1, 2}))
    assert len(due) == 0
    assert due.assignment == frozenset({1, 2})
    assert due.pop_due(0, 100.0) == []
    assert due.pop_due(1, 100.0) == []
    due.set(1, "b", 1.0)
    assert due.pop_due(1, 100.0) == ["b"]
    due.clear()
    assert due.assignment is None


def test_many_reschedules_stay_correct_through_compaction() -> None:
    due = DueIndex()
    keys = [f"k{i}" for i in range(20)]
    for round_ in range(50):
        for i, k in enumerate(keys):
            due.set(0, k, 1000.0 + round_ * 100 + i)
    due.set(1, "other", 1.0)
    assert len(due) == 21
    # nothing of partition 0 is due yet; this pass drops stale entries (and may compact)
    assert due.pop_due(0, 999.0) == []
    assert len(due) == 21
    last = 1000.0 + 49 * 100
    assert due.pop_due(0, last + 9) == keys[:10]
    assert due.pop_due(0, last + 100) == keys[10:]
    assert due.pop_due(1, 1.0) == ["other"]
    assert len(due) == 0


def test_superseded_entries_are_dropped_while_popping() -> None:
    due = DueIndex()
    for i in range(300):
        due.set(0, "a", float(i))
    assert due.pop_due(0, 1000.0) == ["a"]
    assert len(due) == 0
    assert due.pop_due(0, 1000.0) == []
