"""TableStore on Faust's real RocksDB store: what it writes is what Faust reads and recovers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.types import TP

from agents.table_store import TableStore


def _table(tmp: Path, name: str) -> Any:
    app = faust.App(f"t-{name}", store="rocksdb://", datadir=str(tmp / name))
    return app.Table("things", partitions=4)


def test_writes_are_read_back_by_faust_with_their_persisted_offset(tmp_path: Path) -> None:
    table = _table(tmp_path, "a")
    store = TableStore(table)
    store.apply(2, [("42", orjson.dumps({"a": 1})), ("43", orjson.dumps({"b": 2}))], 17)
    assert store.get(2, "42") == {"a": 1}
    assert store.get(1, "42") is None  # a key lives in its partition only
    # Faust's own view of the table (web views, recovery) sees the same
    assert table.data["42"] == {"a": 1}
    assert table.data.persisted_offset(TP(store.changelog_topic, 2)) == 17
    store.apply(2, [("42", None)], 18)
    assert store.get(2, "42") is None
    assert list(store.items(frozenset(range(4)))) == [(2, "43", {"b": 2})]
    assert table.data.persisted_offset(TP(store.changelog_topic, 2)) == 18


@dataclass
class _Message:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes | None

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


@dataclass
class _Event:
    message: _Message

    @property
    def key(self) -> bytes:
        return self.message.key

    @property
    def value(self) -> bytes | None:
        return self.message.value


def test_faust_recovering_the_changelog_rebuilds_the_same_store(tmp_path: Path) -> None:
    writes = [("1", orjson.dumps({"n": 1})), ("2", orjson.dumps({"n": 2})), ("1", None)]
    source = TableStore(_table(tmp_path, "b"))
    records = source.changelog(3, writes)
    source.apply(3, writes, len(records) - 1)
    # what Faust does with these records when partition 3 moves to another worker
    restored = _table(tmp_path, "c")
    events = [
        _Event(_Message(topic, partition, offset, key, value))
        for offset, (topic, key, value, partition) in enumerate(records)
    ]
    restored.data.apply_changelog_batch(events, to_key=lambda k: k, to_value=lambda v: v)
    again = TableStore(restored)
    assert list(again.items(frozenset({3}))) == list(source.items(frozenset({3})))
    assert again.get(3, "2") == {"n": 2}
    assert again.get(3, "1") is None


def test_a_discarded_partition_is_empty_and_the_others_are_kept(tmp_path: Path) -> None:
    from streams.recovery import discard_partition

    table = _table(tmp_path, "d")
    store = TableStore(table)
    store.apply(1, [("7", orjson.dumps({"a": 1})), ("8", orjson.dumps({"b": 2}))], 40)
    store.apply(3, [("9", orjson.dumps({"c": 3}))], 5)
    # two keys and the persisted offset
    assert discard_partition(table.data, 1) == 3
    assert table.data.persisted_offset(TP(store.changelog_topic, 1)) is None
    assert store.get(1, "7") is None
    assert list(store.items(frozenset(range(4)))) == [(3, "9", {"c": 3})]
    assert table.data.persisted_offset(TP(store.changelog_topic, 3)) == 5
    # the store stays usable: restored records land in it as before
    store.apply(1, [("7", orjson.dumps({"a": 2}))], 0)
    assert store.get(1, "7") == {"a": 2}


def test_a_row_that_is_not_json_comes_back_as_unreadable(tmp_path: Path) -> None:
    import pytest

    from agents.table_store import UnreadableRow

    table = _table(tmp_path, "u")
    store = TableStore(table)
    store.apply(0, [("1", orjson.dumps({"a": 1}))], 3)
    db = table.data._db_for_partition(0)
    db[orjson.dumps("2")] = b"\xff not json"
    db[orjson.dumps("3")] = b"[1, 2]"
    rows = {key: value for _, key, value in store.items(frozenset({0}))}
    assert rows["1"] == {"a": 1}
    assert isinstance(rows["2"], UnreadableRow)
    assert rows["2"].raw == b"\xff not json"
    assert isinstance(rows["3"], UnreadableRow)
    with pytest.raises(UnreadableRow):
        store.get(0, "2")
