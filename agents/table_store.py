"""A Faust table's local store and changelog, read and written a batch at a time.

Faust owns the tables: it declares them and their changelog topics, restores a partition's
RocksDB from its changelog when the partition is assigned, keeps standbys, and serves the web
views. Writing through `table[key] = value` costs, per key, a changelog send through Faust's
producer buffer, a RocksDB put and a second put of the persisted offset when the broker
acknowledges (a quarter of the worker's time in the assembler benchmark). The keyed driver
(agents/keyed.py) writes a batch instead, in this order:

1. the changelog records of every key the batch changed, sent together and acknowledged;
2. one RocksDB write batch per partition: the values and the partition's persisted offset (the
   last changelog offset written), atomically.

The local store therefore never holds a write the changelog does not, and Faust's recovery
(which resumes after the persisted offset) finds the same bytes Faust itself would have
written: keys and values JSON, as the tables' default serializers encode them.

This reaches past Faust's public API (`Store._db_for_partition`, `Store.offset_key`) of
faust-streaming 0.15.x (pinned below 0.16): re-check it on an upgrade. Faust's in-memory store
(unit tests) is supported through its `data` dict.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import rocksdict

from agents.direct import Message

#: a key's new value (JSON bytes), or None to delete it
Write = tuple[str, bytes | None]


class TableStore:
    """Batch access to one Faust table (`album_state`, `post_index`)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    @property
    def changelog_topic(self) -> str:
        return str(self.table.changelog_topic.get_topic_name())

    @property
    def _store(self) -> Any:
        return self.table.data  # created by Faust on first use, after the app is configured

    @property
    def _rocksdb(self) -> bool:
        return hasattr(self._store, "_db_for_partition")

    def get(self, partition: int, key: str) -> dict[str, Any] | None:
        """The stored value of `key`; UnreadableRow when it is not JSON."""
        store = self._store
        if self._rocksdb:
            raw = store._db_for_partition(partition).get(orjson.dumps(key))
            return None if raw is None else _decoded(raw)
        return store.data.get(key)  # type: ignore[no-any-return]

    def items(
        self, partitions: frozenset[int]
    ) -> Iterator[tuple[int, str, dict[str, Any] | UnreadableRow]]:
        """(partition, key, value) of every key stored for `partitions`; a value that is not
        JSON comes as UnreadableRow (its key as the raw key's text when that is not JSON)."""
        store = self._store
        if self._rocksdb:
            offset_key = store.offset_key
            for partition in sorted(partitions):
                for raw_key, raw in store._db_for_partition(partition).items():
                    if raw_key != offset_key and raw is not None:
                        try:
                            key = orjson.loads(raw_key)
                        except orjson.JSONDecodeError:
                            key = raw_key.decode(errors="replace")
                        try:
                            yield partition, key, _decoded(raw)
                        except UnreadableRow as row:
                            yield partition, key, row
            return
        for key, value in list(store.data.items()):
            partition = store._key_partition.get(key, value.get("partition"))
            if partition in partitions:
                yield partition, key, value

    def raw_key(self, key: str) -> bytes:
        return orjson.dumps(key)

    def changelog(self, partition: int, writes: Sequence[Write]) -> list[Message]:
        """The changelog records of `writes` (tombstones for deletions)."""
        topic = self.changelog_topic
        return [(topic, orjson.dumps(key), value, partition) for key, value in writes]

    def apply(self, partition: int, writes: Sequence[Write], offset: int | None) -> None:
        """Write `writes` locally, with `offset` (their last changelog offset) as persisted."""
        store = self._store
        if not self._rocksdb:
            for key, value in writes:
                if value is None:
                    store.data.pop(key, None)
                    store._key_partition.pop(key, None)
                else:
                    store.data[key] = orjson.loads(value)
                    store._key_partition[key] = partition
            return
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in writes:
            if value is None:
                batch.delete(orjson.dumps(key))
            else:
                batch.put(orjson.dumps(key), value)
        if offset is not None:
            batch.put(store.offset_key, str(offset).encode())
        store._db_for_partition(partition).write(batch)


class UnreadableRow(Exception):
    """A stored value that is not JSON (a corrupt or foreign row): `raw` holds its bytes."""

    def __init__(self, raw: bytes, reason: str) -> None:
        super().__init__(reason)
        self.raw = raw


def _decoded(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UnreadableRow(raw, f"stored value is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise UnreadableRow(raw, f"stored value is JSON {type(value).__name__}, not an object")
    return value
