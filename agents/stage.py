"""The stage loop: one partition-aware aiokafka loop for every stage that keeps no table.

    getmany → the stage's handler on the whole batch → its sends, gathered → commit

A crash anywhere before the commit repeats the batch, never loses it (every consumer
downstream is idempotent). Rebalances go to the stage's hooks; a handler that cannot make
progress (its server is down) raises `Backpressure`, and the loop pauses those partitions and
reads them again from the batch's first offset once the delay is over, instead of buffering.
Stopping is bounded, so a dead broker cannot hang a worker's shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from mode import Service

from agents.direct import (
    Message,
    group_consumer,
    send_direct,
    send_until_done,
    stop_loop,
    wait_for_partitions,
)
from schemas.dlq import safe_error_text
from streams import metrics

log = logging.getLogger(__name__)

Batch = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
Handler = Callable[[Batch], Awaitable[Sequence[Message]]]
Hook = Callable[[list[TopicPartition]], Awaitable[None]]


class Backpressure(Exception):
    """Raised by a handler whose server is away: pause for `retry_after` seconds and read the
    batch again from where it started.

    Args:
        retry_after: seconds to pause.
        partitions: what to pause (default: every partition assigned to the loop, since a
            server that is away is away for all of them).
    """

    def __init__(self, retry_after: float, partitions: Sequence[TopicPartition] | None = None):
        super().__init__(f"paused for {retry_after:.1f}s")
        self.retry_after = retry_after
        self.partitions = None if partitions is None else list(partitions)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: StageLoop) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.loop._paused = {tp: t for tp, t in self.loop._paused.items() if tp not in revoked}
        metrics.stage_paused_partitions.labels(self.loop.name).set(len(self.loop._paused))
        if self.loop.on_revoked is not None:
            await self.loop.on_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if self.loop.on_assigned is not None:
            await self.loop.on_assigned(list(assigned))


class StageLoop(Service):
    """Runs one stage: a consumer group over `topics`, batches through `handle`.

    Args:
        name: for logs and health.
        group_id: the consumer group (one per stage, so stages commit independently).
        topics: what it reads.
        handle: the batch → the messages to send before the batch is committed. A handler that
            commits by itself (the relay's transactions) returns nothing and sets `commit=False`.
        commit: commit the batch's offsets after its sends.
        max_records: the largest batch.
        poll_seconds: the longest wait for a batch (a batch holds what has arrived by then).
        isolation_level: read_committed for topics written in transactions.
        on_assigned, on_revoked: rebalance hooks.
        send: how messages are sent (awaited until the broker has every one).
    """

    def __init__(
        self,
        *,
        name: str,
        group_id: str,
        topics: Sequence[str],
        handle: Handler,
        commit: bool = True,
        max_records: int = 2000,
        poll_seconds: float = 0.2,
        isolation_level: str = "read_uncommitted",
        on_assigned: Hook | None = None,
        on_revoked: Hook | None = None,
        send: Callable[[Sequence[Message]], Awaitable[Any]] = send_direct,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.group_id = group_id
        self.topics = list(topics)
        self.handle = handle
        self.commit = commit
        self.max_records = max_records
        self.poll_seconds = poll_seconds
        self.isolation_level = isolation_level
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        self.send = send
        self.consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Future[None] | None = None
        self._paused: dict[TopicPartition, float] = {}
        #: health: records and batches done, when the last one was, failures in a row
        self.records = 0
        self.batches = 0
        self.last_batch_at: float | None = None
        self.failures = 0
        self.last_error: str | None = None
        metrics.touch_stage(name)

    async def on_start(self) -> None:
        self.consumer = group_consumer(self.group_id, isolation_level=self.isolation_level)
        await self.consumer.start()
        await wait_for_partitions(self.consumer, self.topics)
        self.consumer.subscribe(self.topics, listener=_Listener(self))
        self._task = asyncio.ensure_future(self._run())

    async def on_stop(self) -> None:
        await stop_loop(self._task, self.consumer)

    @property
    def paused(self) -> list[TopicPartition]:
        return sorted(self._paused, key=lambda tp: (tp.topic, tp.partition))

    async def _run(self) -> None:
        assert self.consumer is not None
        while not self.should_stop:
            self._resume_due()
            try:
                batch = await self.consumer.getmany(
                    timeout_ms=int(self.poll_seconds * 1000), max_records=self.max_records
                )
                batch = {tp: rs for tp, rs in batch.items() if rs and tp not in self._paused}
                if batch:
                    await self.run_batch(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # e.g. a commit refused after a rebalance: the new owner handles it again
                self.failures += 1
                metrics.stage_batch_failures_total.labels(self.name).inc()
                metrics.stage_failures_in_a_row.labels(self.name).set(self.failures)
                self.last_error = f"{type(exc).__name__}: {safe_error_text(exc)}"[:500]
                log.exception("%s: batch not committed; it will be handled again", self.name)
                await asyncio.sleep(min(30.0, 0.5 * 2 ** min(self.failures, 6)))

    async def run_batch(self, batch: Batch) -> None:
        """One batch: handle, send, commit (or pause on backpressure)."""
        assert self.consumer is not None
        try:
            messages = await self.handle(batch)
            if messages:
                await send_until_done(self.send, messages, self.name)
            if self.commit:
                await self.consumer.commit({tp: rs[-1].offset + 1 for tp, rs in batch.items()})
        except Backpressure as exc:
            self._pause(batch, exc)
            return
        except BaseException:
            # Read the batch again: a later batch's commit must never pass records not done.
            self._rewind(batch)
            raise
        done = sum(len(rs) for rs in batch.values())
        self.records += done
        self.batches += 1
        self.failures = 0
        self.last_batch_at = time.monotonic()
        metrics.stage_records_total.labels(self.name).inc(done)
        metrics.stage_batches_total.labels(self.name).inc()
        metrics.stage_failures_in_a_row.labels(self.name).set(0)

    def _rewind(self, batch: Batch) -> None:
        assert self.consumer is not None
        assigned = self.consumer.assignment()
        for tp, records in batch.items():
            if tp in assigned:
                self.consumer.seek(tp, records[0].offset)

    def _pause(self, batch: Batch, exc: Backpressure) -> None:
        assert self.consumer is not None
        tps = exc.partitions if exc.partitions is not None else list(self.consumer.assignment())
        until = time.monotonic() + exc.retry_after
        for tp in tps:
            if tp in batch:
                # read again from the first record of the batch that was not done
                self.consumer.seek(tp, batch[tp][0].offset)
            self._paused[tp] = until
        self.consumer.pause(*tps)
        metrics.stage_backpressure_total.labels(self.name).inc()
        metrics.stage_paused_partitions.labels(self.name).set(len(self._paused))
        log.warning("%s: %s paused for %.1fs (%s)", self.name, _names(tps), exc.retry_after, exc)

    def _resume_due(self) -> None:
        if not self._paused:
            return
        assert self.consumer is not None
        now = time.monotonic()
        due = [tp for tp, until in self._paused.items() if until <= now]
        if due:
            for tp in due:
                del self._paused[tp]
            assigned = self.consumer.assignment()
            self.consumer.resume(*[tp for tp in due if tp in assigned])
            metrics.stage_paused_partitions.labels(self.name).set(len(self._paused))
            log.info("%s: %s resumed", self.name, _names(due))

    def health(self) -> dict[str, Any]:
        """For /health/detailed: running, paused (its server is away) or failing."""
        last = self.last_batch_at
        if self.failures:
            status = "failing"
        elif self._paused:
            status = "paused"
        else:
            status = "running" if self._task is not None and not self._task.done() else "stopped"
        return {
            "status": status,
            "records": self.records,
            "batches": self.batches,
            "seconds_since_last_batch": None if last is None else round(time.monotonic() - last, 3),
            "paused": [f"{tp.topic}[{tp.partition}]" for tp in self.paused],
            "failures_in_a_row": self.failures,
            "last_error": self.last_error,
        }


def _names(tps: Sequence[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in tps)
