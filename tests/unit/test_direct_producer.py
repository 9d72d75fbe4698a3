"""The direct producer is replaced when its idempotence state breaks (aiokafka cannot recover
from OutOfOrderSequenceNumber: every later send to the partition would fail the same way)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import OutOfOrderSequenceNumber

from agents.direct import DirectSender, send_direct


class FakeBatch:
    def append(self, key: bytes | None, value: bytes | None, timestamp: int | None) -> object:
        return object()


class BrokenProducer:
    """A producer whose sends all fail as aiokafka's do after a broker restart mid-send."""

    def __init__(self) -> None:
        self.stopped = False

    def create_batch(self) -> FakeBatch:
        return FakeBatch()

    async def send_batch(self, batch: FakeBatch, topic: str, partition: int) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_exception(OutOfOrderSequenceNumber())
        return future

    async def stop(self) -> None:
        self.stopped = True


async def test_a_producer_out_of_sequence_is_stopped_and_replaced() -> None:
    broken = BrokenProducer()
    DirectSender.producer = broken  # type: ignore[assignment]
    try:
        with pytest.raises(OutOfOrderSequenceNumber):
            await send_direct([("t", b"k", b"v", 0)])
        assert broken.stopped
        assert DirectSender.producer is None  # the next send starts a new one
    finally:
        DirectSender.producer = None


async def test_another_callers_new_producer_is_left_alone() -> None:
    broken, fresh = BrokenProducer(), BrokenProducer()
    DirectSender.producer = fresh  # type: ignore[assignment]
    try:
        await DirectSender.discard(broken)  # type: ignore[arg-type]
        assert DirectSender.producer is fresh
        assert not fresh.stopped
    finally:
        DirectSender.producer = None
