"""SafeConsumer's commit rules on dense topics, without a broker (the bookkeeping only)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
from faust.types import TP
from intervaltree import IntervalTree

from streams.faust_consumer import SafeConsumer

DENSE = TP("app-album-events", 0)
SPARSE = TP("album.assembled", 0)


class Probe(SafeConsumer):
    """SafeConsumer's offset bookkeeping without the service around it."""

    def __init__(self) -> None:  # no super(): only the bookkeeping attributes are needed
        self._acked = defaultdict(list)
        self._acked_index = defaultdict(set)
        self._gap = defaultdict(IntervalTree)
        self._committed_offset = defaultdict(lambda: None)
        self._held = {}
        self._refetching = {}
        self._floor = {}
        self._base = {}
        self.seeks: list[tuple[Any, int]] = []
        self.earliest: dict[Any, int] = {}

    async def _seek_back(self, tp: Any, target: int) -> None:
        if self.earliest.get(tp, 0) > target:
            self._floor[tp] = self.earliest[tp]
            return
        self.seeks.append((tp, target))


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> Probe:
    monkeypatch.setattr(SafeConsumer, "dense_topics", {DENSE.topic})
    return Probe()


def ack(c: Probe, tp: TP, *offsets: int) -> None:
    for o in offsets:
        c._acked[tp].append(o)
        c._acked_index[tp].add(o)


async def test_consecutive_acks_from_the_committed_offset_commit(consumer: Probe) -> None:
    consumer._committed_offset[DENSE] = 100
    ack(consumer, DENSE, 100, 101, 102)
    assert consumer._new_offset(DENSE) == 103


async def test_a_missing_record_at_the_committed_offset_holds_the_commit_then_refetches(
    consumer: Probe,
) -> None:
    consumer._committed_offset[DENSE] = 100
    ack(consumer, DENSE, 101, 102)  # Faust itself would commit 103 here, skipping 100
    held = [consumer._new_offset(DENSE) for _ in range(3)]
    assert held == [None, None, None]
    await asyncio.sleep(0)
    assert consumer.seeks == [(DENSE, 100)]
    ack(consumer, DENSE, 100)
    assert consumer._new_offset(DENSE) == 103


async def test_a_sparse_topic_keeps_fausts_tolerance_for_a_marker(consumer: Probe) -> None:
    consumer._committed_offset[SPARSE] = 100
    ack(consumer, SPARSE, 101, 102)  # 100 may be a transaction marker
    assert consumer._new_offset(SPARSE) == 103


async def test_a_gap_on_a_dense_topic_is_refetched_not_counted_as_done(consumer: Probe) -> None:
    consumer._committed_offset[DENSE] = 100
    await consumer._add_gap(DENSE, 102, 110)
    # more "gaps" from a batch fetched before the seek must not move the target
    await consumer._add_gap(DENSE, 111, 120)
    await asyncio.sleep(0)
    assert consumer.seeks == [(DENSE, 100)]
    assert not consumer._gap[DENSE]
    ack(consumer, DENSE, 100, 101, 110)
    assert consumer._new_offset(DENSE) == 102


async def test_only_acknowledged_or_committed_records_count_as_done(consumer: Probe) -> None:
    consumer._committed_offset[DENSE] = 100
    ack(consumer, DENSE, 105)
    assert consumer._already_done(DENSE, 99)
    assert consumer._already_done(DENSE, 105)
    assert not consumer._already_done(DENSE, 100)
    assert not consumer._already_done(DENSE, 104)


async def test_acknowledgements_below_the_committed_offset_are_dropped(consumer: Probe) -> None:
    consumer._committed_offset[DENSE] = 100
    ack(consumer, DENSE, 90, 95, 100, 101)  # 90 and 95: re-deliveries of committed records
    assert consumer._new_offset(DENSE) == 102
    assert consumer.seeks == []
    assert 90 not in consumer._acked_index[DENSE]


async def test_records_deleted_by_retention_before_processing_are_passed_over(
    consumer: Probe,
) -> None:
    consumer._committed_offset[DENSE] = 100
    consumer.earliest[DENSE] = 150  # retention removed 100..149 while the worker was away
    ack(consumer, DENSE, 150, 151)
    for _ in range(3):
        assert consumer._new_offset(DENSE) is None
    await asyncio.sleep(0)
    assert consumer._floor[DENSE] == 150
    assert consumer._new_offset(DENSE) == 152


async def test_shutdown_waits_a_bounded_time_for_unacknowledged_events(
    consumer: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Stopping:
        should_stop = True

    class Held:
        acked = False  # a sink's batch, mid-retry: never acknowledged

    commits: list[str] = []

    async def commit(*args: Any, **kwargs: Any) -> bool:
        commits.append("commit")
        return True

    async def end() -> None:
        commits.append("end")

    monkeypatch.setattr(SafeConsumer, "shutdown_wait_seconds", 0.2)
    consumer.app = Stopping()  # type: ignore[assignment]
    held = Held()
    consumer._unacked_messages = {held}  # type: ignore[assignment]
    consumer.commit = commit  # type: ignore[method-assign]
    consumer.commit_and_end_transactions = end  # type: ignore[method-assign]
    await asyncio.wait_for(consumer.wait_empty(), 5)
    assert commits[-1] == "end"
    assert held in consumer._unacked_messages  # left uncommitted, not acknowledged


class _Topics:
    def acks_enabled_for(self, topic: str) -> bool:
        return True


class _App:
    topics = _Topics()


def _message(offset: int, *, tracked: bool) -> Any:
    from faust.types.tuples import ConsumerMessage

    m = ConsumerMessage(DENSE.topic, DENSE.partition, offset, 0.0, 0, [], b"k", b"v", None)
    m.tracked = tracked
    return m


async def test_a_record_no_stream_started_is_never_counted_as_done(consumer: Probe) -> None:
    # Faust's streams skip records that arrive during a rebalance, then acknowledge them
    consumer.app = _App()  # type: ignore[assignment]
    consumer._unacked_messages = set()  # type: ignore[assignment]
    consumer._n_acked = 0
    consumer._waiting_for_ack = None
    consumer._committed_offset[DENSE] = 100
    assert not consumer.ack(_message(100, tracked=False))
    assert consumer.ack(_message(101, tracked=True))
    assert consumer._acked[DENSE] == [101]
    assert consumer._new_offset(DENSE) is None  # held at 100, which will be delivered again


async def test_a_revoked_partition_commits_only_from_its_last_known_offset(
    consumer: Probe,
) -> None:
    consumer._committed_offset[DENSE] = 100
    ack(consumer, DENSE, 100)
    assert consumer._new_offset(DENSE) == 101
    consumer._committed_offset[DENSE] = 101
    consumer._new_offset(DENSE)
    consumer._committed_offset.pop(DENSE)  # what Faust does at a revoke, before its last commit
    ack(consumer, DENSE, 500, 501)  # Faust's own rule would commit 502 here
    assert consumer._new_offset(DENSE) is None
    ack(consumer, DENSE, *range(101, 500))
    assert consumer._new_offset(DENSE) == 502


async def test_a_dense_partition_never_seeked_is_not_committed(consumer: Probe) -> None:
    ack(consumer, DENSE, 7, 8)
    assert consumer._new_offset(DENSE) is None


async def test_the_seek_after_a_rebalance_sets_every_dense_partitions_base(
    consumer: Probe,
) -> None:
    other = TP(DENSE.topic, 1)

    class Thread:
        async def seek_to_committed(self) -> dict[TP, int | None]:
            return {DENSE: 40, other: None}  # `other`: the group never committed it

        async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
            return dict.fromkeys(tps, 0)

    class Tables:
        changelog_topics: frozenset[str] = frozenset()

    app = _App()
    app.tables = Tables()  # type: ignore[attr-defined]
    consumer.app = app  # type: ignore[assignment]
    consumer._thread = Thread()  # type: ignore[attr-defined]
    consumer._read_offset = defaultdict(lambda: None)
    consumer.assignment = lambda: {DENSE, other}  # type: ignore[method-assign]
    await consumer.perform_seek()
    assert consumer._committed_offset[DENSE] == 40
    assert consumer._committed_offset[other] == 0  # Faust would leave it None
    ack(consumer, other, 0, 1)
    assert consumer._new_offset(other) == 2
