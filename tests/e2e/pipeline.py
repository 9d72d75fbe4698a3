"""Helpers of the end-to-end tests: an isolated pipeline (own topics, group, data dir, port)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from streams.generator import Record
from streams.kafka_io import produce
from tests.conftest import free_port
from tests.workers import WorkerProcess


@dataclass
class Pipeline:
    """Names and environment of one isolated pipeline; workers are started from it."""

    servers: list[str]
    unique: str
    tmp: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return f"e2e-{self.unique}."

    def topic(self, name: str) -> str:
        return self.prefix + name

    def env(self, **overrides: str) -> dict[str, str]:
        return {
            "APP_ID": f"e2e-{self.unique}",
            "TOPIC_PREFIX": self.prefix,
            "KAFKA_BOOTSTRAP_SERVERS": ",".join(self.servers),
            "TOPIC_PARTITIONS": "4",
            # the assembler's tests run without sinks; tests of the sinks name the ones they want
            "SINKS": "",
            # one token for every worker of the pipeline: Faust forwards a table view for a key
            # another worker owns with the caller's header (a token made per DATA_DIR would
            # differ between workers; tests/e2e/test_worker_health.py covers that one)
            "WEB_AUTH_TOKEN": f"e2e-token-{self.unique}",
            **self.extra_env,
            **overrides,
        }

    def start_worker(self, name: str = "w1", **overrides: str) -> WorkerProcess:
        env = self.env(
            WEB_PORT=str(free_port()), DATA_DIR=str(self.tmp / f"data-{name}"), **overrides
        )
        worker = WorkerProcess(env, self.tmp / f"{name}.log").start()
        self.workers.append(worker)
        return worker

    async def produce(self, records: list[Record], rate: float = 0.0) -> int:
        return await produce(self.servers, records, rate=rate, topic_prefix=self.prefix)

    def stop_all(self) -> None:
        for w in self.workers:
            w.stop()


async def consume_until(
    servers: list[str],
    topic: str,
    done: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
    *,
    within: float,
    isolation_level: str = "read_committed",
    on_poll: Callable[[], None] | None = None,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read `topic` from the beginning until `done(records)` holds or `within` seconds pass."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=servers,
        isolation_level=isolation_level,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + within
    try:
        consumer.subscribe([topic])
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                records.extend(msgs)
            if on_poll is not None:
                on_poll()
            if done(records):
                return records
        return records
    finally:
        await consumer.stop()


def decoded(records: list[ConsumerRecord[bytes, bytes]]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records if r.value is not None]


async def end_offsets(servers: list[str], topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=servers)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        if not tps:
            return 0
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


async def wait_for(pred: Callable[[], bool], within: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(step)
    return pred()
