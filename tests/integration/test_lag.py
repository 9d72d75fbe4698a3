"""Consumer-group lag on the real broker: end offsets minus committed offsets, the log start
for a group that committed nothing, open transactions not counted; exported as metrics."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import REGISTRY

from streams import metrics
from streams.lag import LagMonitor, StageGroup, measure


async def _setup(servers: list[str], t1: str, t2: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t1, 2, 1), NewTopic(t2, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await producer.start()
    try:
        for topic, partition, n in ((t1, 0, 10), (t1, 1, 6), (t2, 0, 5)):
            for i in range(n):
                await producer.send_and_wait(topic, str(i).encode(), partition=partition)
    finally:
        await producer.stop()


async def _commit(servers: list[str], group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=group)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
    finally:
        await consumer.stop()


async def _wait_for_metadata(consumer: AIOKafkaConsumer, counts: dict[str, int]) -> None:
    """Until the client's metadata shows every partition of the just-created topics with a
    leader (a measurement taken before it counts what it knows, which is the monitor's job,
    not this test's)."""
    cluster = consumer._client.cluster
    for _ in range(150):
        await consumer._client.force_metadata_update()
        if all(
            len(cluster.partitions_for_topic(t) or ()) == n
            and all(
                cluster.leader_for_partition(TopicPartition(t, p)) not in (None, -1)
                for p in range(n)
            )
            for t, n in counts.items()
        ):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"topics {counts} not all led after 30 s")


async def test_lag_per_stage_and_topic(kafka: list[str]) -> None:
    run = uuid.uuid4().hex[:8]
    t1, t2 = f"lag-{run}-a", f"lag-{run}-b"
    g1, g2 = f"lag-{run}-g1", f"lag-{run}-g2"
    await _setup(kafka, t1, t2)
    await _commit(kafka, g1, {TopicPartition(t1, 0): 4})
    # a transaction left open on t2: a read_committed consumer cannot read past it yet
    txn = AIOKafkaProducer(bootstrap_servers=kafka, transactional_id=f"lag-{run}")
    await txn.start()
    await txn.begin_transaction()
    for i in range(3):
        await txn.send_and_wait(t2, str(i).encode(), partition=0)

    groups = [StageGroup("one", g1, (t1,)), StageGroup("two", g2, (t1, t2))]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, isolation_level="read_committed")
    await admin.start()
    await consumer.start()
    try:
        await _wait_for_metadata(consumer, {t1: 2, t2: 1})
        report = await measure(admin, consumer, groups)
        assert set(report.partitions) >= {("one", t1, 0), ("one", t1, 1)}, report.partitions
        # g1: 10 - 4 on partition 0, nothing committed on partition 1 (6 from the log start)
        assert report.lag[("one", t1)] == 6 + 6
        assert report.lag[("two", t1)] == 16
        # the 3 records of the open transaction are not work yet
        assert report.lag[("two", t2)] == 5
        assert report.by_stage() == {"one": 12, "two": 21}
        assert report.total() == 33

        await txn.abort_transaction()
        await _commit(kafka, g2, {TopicPartition(t1, 0): 10, TopicPartition(t1, 1): 6})
        # past the aborted records and their marker: t2's end is 5 + 3 + 1
        await _commit(kafka, g2, {TopicPartition(t2, 0): 9})
        report = await measure(admin, consumer, groups)
        assert report.by_stage() == {"one": 12, "two": 0}
    finally:
        await txn.stop()
        await consumer.stop()
        await admin.close()


async def test_the_monitor_exports_what_it_measured(kafka: list[str]) -> None:
    run = uuid.uuid4().hex[:8]
    t1, t2 = f"lagm-{run}-a", f"lagm-{run}-b"
    await _setup(kafka, t1, t2)
    monitor = LagMonitor([StageGroup(f"stage-{run}", f"lagm-{run}-g", (t1, t2))])
    await monitor.start()
    try:
        report = await monitor.update()
        assert report is not None
        assert LagMonitor.last is report
        assert (
            REGISTRY.get_sample_value(
                "kafka_consumergroup_lag", {"stage": f"stage-{run}", "topic": t1}
            )
            == 16
        )
        assert (
            REGISTRY.get_sample_value(
                "kafka_consumergroup_lag", {"stage": f"stage-{run}", "topic": t2}
            )
            == 5
        )
        assert metrics.consumergroup_lag_updated._value.get() == report.at
    finally:
        await monitor.stop()
