"""Kafka in the local stack supports transactions: commit, abort and read_committed."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import MessageSizeTooLargeError


async def _create_topic(servers: list[str], name: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def _read_all(servers: list[str], topic: str, isolation_level: str) -> list[bytes]:
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=servers,
        isolation_level=isolation_level,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        values: list[bytes] = []
        async with asyncio.timeout(30):
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=500)
                values.extend(m.value for m in batch.get(tp, []) if m.value is not None)
        return values
    finally:
        await consumer.stop()


async def test_transactional_commit_and_abort(kafka: list[str], unique: str) -> None:
    topic = f"it-tx-{unique}"
    await _create_topic(kafka, topic)
    producer = AIOKafkaProducer(bootstrap_servers=kafka, transactional_id=f"it-tx-{unique}")
    await producer.start()
    try:
        async with producer.transaction():
            for i in range(3):
                await producer.send(topic, f"committed-{i}".encode(), partition=0)

        await producer.begin_transaction()
        for i in range(2):
            await producer.send(topic, f"aborted-{i}".encode(), partition=0)
        await producer.flush()
        await producer.abort_transaction()

        async with producer.transaction():
            await producer.send(topic, b"committed-3", partition=0)
    finally:
        await producer.stop()

    committed = await _read_all(kafka, topic, "read_committed")
    assert committed == [b"committed-0", b"committed-1", b"committed-2", b"committed-3"]

    # read_uncommitted sees the aborted records too: proof that the abort really wrote them
    everything = await _read_all(kafka, topic, "read_uncommitted")
    assert sorted(everything) == sorted([*committed, b"aborted-0", b"aborted-1"])


async def test_uncommitted_transaction_is_invisible_to_read_committed(
    kafka: list[str], unique: str
) -> None:
    topic = f"it-open-tx-{unique}"
    await _create_topic(kafka, topic)
    plain = AIOKafkaProducer(bootstrap_servers=kafka)
    tx = AIOKafkaProducer(bootstrap_servers=kafka, transactional_id=f"it-open-{unique}")
    await plain.start()
    await tx.start()
    try:
        await plain.send_and_wait(topic, b"before", partition=0)
        await tx.begin_transaction()
        await tx.send_and_wait(topic, b"pending", partition=0)
        # the open transaction holds the last stable offset back: nothing past it is visible
        assert await _read_all(kafka, topic, "read_committed") == [b"before"]
        await tx.commit_transaction()
        assert await _read_all(kafka, topic, "read_committed") == [b"before", b"pending"]
    finally:
        await tx.stop()
        await plain.stop()


async def test_a_failed_delivery_is_seen_inside_the_transaction(
    kafka: list[str], unique: str
) -> None:
    """The relay's rule (agents/relay.py): every delivery is awaited before the transaction
    ends, so one the broker refused aborts the transaction instead of being left out of it
    (aiokafka 0.14 fails a batch the broker refused, or one that found no leader in time,
    without failing the commit: the transaction commits without it)."""
    small, other = f"it-tx-small-{unique}", f"it-tx-other-{unique}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(small, 1, 1, topic_configs={"max.message.bytes": "512"}),
                NewTopic(other, 1, 1),
            ]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka, transactional_id=f"it-tx-fail-{unique}")
    await producer.start()
    try:
        deliveries = []
        failed: BaseException | None = None
        try:
            async with producer.transaction():
                deliveries.append(await producer.send(other, b"beside it", partition=0))
                # under the producer's limit, over the topic's: the broker refuses it
                deliveries.append(await producer.send(small, b"x" * 4096, partition=0))
                await asyncio.gather(*deliveries)
        except Exception as exc:  # the refusal, raised before the commit
            failed = exc
        assert isinstance(failed, MessageSizeTooLargeError), repr(failed)
        # the producer is usable again: the abort ended the transaction
        async with producer.transaction():
            await (await producer.send(other, b"next", partition=0))
    finally:
        await producer.stop()
    assert await _read_all(kafka, other, "read_committed") == [b"next"]
