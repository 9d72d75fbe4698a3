"""The stage loop on the real broker: batches handled, sent and committed; backpressure pauses
and re-reads; a batch not committed is handled again by the next member of the group."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.direct import Message
from agents.stage import Backpressure, Batch, StageLoop
from tests.e2e.pipeline import wait_for


async def _topics(servers: list[str], *names: str, partitions: int = 4) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def _produce(servers: list[str], topic: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=str(i).encode(), value=str(i).encode()) for i in range(n)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _committed(servers: list[str], group: str, topic: str, partitions: int) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        total = 0
        for p in range(partitions):
            total += await consumer.committed(TopicPartition(topic, p)) or 0
        return total
    finally:
        await consumer.stop()


class Sink:
    def __init__(self, servers: list[str]) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=servers)
        self.sent: list[bytes] = []

    async def send(self, messages: Sequence[Message]) -> None:
        futures = [
            await self.producer.send(t, key=k, value=v, partition=p) for t, k, v, p in messages
        ]
        await asyncio.gather(*futures)
        self.sent += [v for _, _, v, _ in messages]


async def _until(check: Callable[[], bool], within: float = 60.0) -> None:
    assert await wait_for(check, within, step=0.05), "not reached in time"


async def test_every_record_is_handled_sent_and_committed_in_batches(
    kafka: list[str], unique: str
) -> None:
    source, out = f"it-stage-in-{unique}", f"it-stage-out-{unique}"
    await _topics(kafka, source, out)
    await _produce(kafka, source, 2000)
    sink = Sink(kafka)
    await sink.producer.start()
    sizes: list[int] = []

    async def handle(batch: Batch) -> list[Message]:
        sizes.append(sum(len(rs) for rs in batch.values()))
        return [(out, r.key, r.value, None) for rs in batch.values() for r in rs]

    stage = StageLoop(
        name="t", group_id=f"it-stage-{unique}", topics=[source], handle=handle, send=sink.send
    )
    await stage.start()
    try:
        await _until(lambda: stage.records >= 2000)
    finally:
        await stage.stop()
        await sink.producer.stop()
    assert sorted(int(v) for v in sink.sent) == list(range(2000))
    assert max(sizes) > 100  # batches, not records one by one
    assert await _committed(kafka, f"it-stage-{unique}", source, 4) == 2000


async def test_backpressure_pauses_and_reads_the_batch_again(kafka: list[str], unique: str) -> None:
    source = f"it-stage-bp-{unique}"
    await _topics(kafka, source, partitions=2)
    await _produce(kafka, source, 300)
    handled: list[int] = []
    refusals = 0

    async def handle(batch: Batch) -> list[Message]:
        nonlocal refusals
        if refusals < 3:  # the server is down for the first three batches
            refusals += 1
            raise Backpressure(0.3)
        handled.extend(int(r.value) for rs in batch.values() for r in rs)
        return []

    stage = StageLoop(name="t", group_id=f"it-stage-bp-{unique}", topics=[source], handle=handle)
    await stage.start()
    try:
        await _until(lambda: len(handled) >= 300)
        await asyncio.sleep(0.5)
    finally:
        await stage.stop()
    assert refusals == 3
    assert sorted(handled) == list(range(300))  # nothing lost, nothing handled twice
    assert await _committed(kafka, f"it-stage-bp-{unique}", source, 2) == 300


async def test_a_batch_not_committed_is_handled_again_by_the_next_member(
    kafka: list[str], unique: str
) -> None:
    source = f"it-stage-crash-{unique}"
    group = f"it-stage-crash-{unique}"
    await _topics(kafka, source, partitions=1)
    await _produce(kafka, source, 50)
    seen: list[int] = []

    async def crash(batch: Batch) -> list[Message]:
        seen.extend(int(r.value) for rs in batch.values() for r in rs)
        raise RuntimeError("killed before the commit")

    first = StageLoop(name="t", group_id=group, topics=[source], handle=crash)
    await first.start()
    try:
        await _until(lambda: len(seen) >= 1)
    finally:
        await first.stop()
    assert await _committed(kafka, group, source, 1) == 0
    again: list[int] = []

    async def handle(batch: Batch) -> list[Message]:
        again.extend(int(r.value) for rs in batch.values() for r in rs)
        return []

    second = StageLoop(name="t", group_id=group, topics=[source], handle=handle)
    await second.start()
    try:
        await _until(lambda: len(again) >= 50)
    finally:
        await second.stop()
    assert sorted(again) == list(range(50))
