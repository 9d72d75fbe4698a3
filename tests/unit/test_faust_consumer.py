"""SafeConsumer's commit rules on dense topics, without a broker (the bookkeeping only)."""

from __future__ import annotations

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
        self.seeks: list[tuple[Any, int]] = []

    def _refetch(self, tp: Any, offset: int, why: str) -> None:
        self.seeks.append((tp, offset))


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> Probe:
    monkeypatch.setattr(SafeConsumer, "sparse_topics", {SPARSE.topic})
    return Probe()


def ack(c: Probe, tp: TP, *offsets: int) -> None:
    for o in offsets:
        c._acked[tp].append(o)
        c._acked_index[tp].add(o)


def test_consecutive_acks_from_the_committed_offset_commit(consumer: Probe) -> None:
    consumer._committed_offset[DENSE] = 100
    ack(consumer, DENSE, 100, 101, 102)
    assert consumer._new_offset(DENSE) == 103


def test_a_missing_record_at_the_committed_offset_holds_the_commit_then_refetches(
    consumer: Probe,
) -> None:
    consumer._committed_offset[DENSE] = 100
    ack(consumer, DENSE, 101, 102)  # Faust itself would commit 103 here, skipping 100
    held = [consumer._new_offset(DENSE) for _ in range(3)]
    assert held == [None, None, None]
    assert consumer.seeks == [(DENSE, 100)]
    ack(consumer, DENSE, 100)
    assert consumer._new_offset(DENSE) == 103


def test_a_sparse_topic_keeps_fausts_tolerance_for_a_marker(consumer: Probe) -> None:
    consumer._committed_offset[SPARSE] = 100
    ack(consumer, SPARSE, 101, 102)  # 100 may be a transaction marker
    assert consumer._new_offset(SPARSE) == 103


async def test_a_gap_on_a_dense_topic_is_refetched_not_counted_as_done(consumer: Probe) -> None:
    consumer._committed_offset[DENSE] = 100
    await consumer._add_gap(DENSE, 102, 110)
    assert consumer.seeks == [(DENSE, 102)]
    assert not consumer._gap[DENSE]
    ack(consumer, DENSE, 100, 101, 110)
    assert consumer._new_offset(DENSE) == 102


def test_only_acknowledged_or_committed_records_count_as_done(consumer: Probe) -> None:
    consumer._committed_offset[DENSE] = 100
    ack(consumer, DENSE, 105)
    assert consumer._already_done(DENSE, 99)
    assert consumer._already_done(DENSE, 105)
    assert not consumer._already_done(DENSE, 100)
    assert not consumer._already_done(DENSE, 104)


def test_acknowledgements_below_the_committed_offset_are_dropped(consumer: Probe) -> None:
    consumer._committed_offset[DENSE] = 100
    ack(consumer, DENSE, 90, 95, 100, 101)  # 90 and 95: re-deliveries of committed records
    assert consumer._new_offset(DENSE) == 102
    assert consumer.seeks == []
    assert 90 not in consumer._acked_index[DENSE]
