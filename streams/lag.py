"""Consumer-group lag of every stage, measured by the worker.

Lag is what `kafka-consumer-groups --describe` shows: per partition, the end offset minus the
group's committed offset (the log start when the group has committed nothing there yet), summed
per stage and topic. End offsets are read `read_committed`, so a transactional topic's open
transactions and commit markers do not count as work. The worker measures every stage of the
pipeline, those its stage processes run as well as the Faust table agents, so `/metrics` and
`/health/detailed` show the whole backlog in one place. Several workers each report the whole
group: aggregate with `max`, not `sum` (compose/prometheus/alerts.yml does).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from mode import Service

from streams import metrics
from streams.kafka_io import topic_partitions
from streams.kafka_security import kafka_options
from streams.settings import Settings, settings
from streams.topics import (
    ALBUM_ASSEMBLED,
    ALBUM_EVENTS,
    ALBUMS_PARSED,
    OUTBOX,
    POST_EVENTS,
    RELAY_GROUP,
    ROUTER_GROUP,
    VISION_ANALYZED,
    WATCH_GROUP,
    sink_group,
    sink_retry_topic_name,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StageGroup:
    """A stage, its consumer group and the topics it reads."""

    stage: str
    group: str
    topics: tuple[str, ...]


def stage_groups(config: Settings = settings) -> list[StageGroup]:
    """The stages this configuration runs, in pipeline order."""
    groups = [
        StageGroup("router", ROUTER_GROUP, (ALBUMS_PARSED, VISION_ANALYZED)),
        # Faust's group is the app id; the table agents read the router's envelopes
        StageGroup("assembler", config.app_id, (ALBUM_EVENTS, POST_EVENTS)),
    ]
    if config.exactly_once:
        groups.append(StageGroup("relay", RELAY_GROUP, (OUTBOX,)))
    groups.append(StageGroup("watch", WATCH_GROUP, (ALBUM_ASSEMBLED,)))
    for name in config.sink_names:
        groups.append(
            StageGroup(
                f"sink-{name}", sink_group(name), (ALBUM_ASSEMBLED, sink_retry_topic_name(name))
            )
        )
    return groups


@dataclass(frozen=True, slots=True)
class LagReport:
    """One measurement: records behind per (stage, topic), and when it was taken."""

    at: float
    lag: dict[tuple[str, str], int]
    #: per (stage, topic, partition): the group's position there and the records behind it
    partitions: dict[tuple[str, str, int], tuple[int, int]] = field(default_factory=dict)

    def by_stage(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (stage, _topic), n in self.lag.items():
            out[stage] = out.get(stage, 0) + n
        return out

    def total(self) -> int:
        return sum(self.lag.values())


async def measure(
    admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, groups: Sequence[StageGroup]
) -> LagReport:
    """Every stage's lag, from one end-offset and one committed-offset request per group."""
    topics = sorted({t for g in groups for t in g.topics})
    parts: dict[str, list[TopicPartition]] = {}
    for topic in topics:
        parts[topic] = await topic_partitions(consumer, topic)
    tps = [tp for ps in parts.values() for tp in ps]
    ends: dict[TopicPartition, int] = await consumer.end_offsets(tps) if tps else {}
    starts: dict[TopicPartition, int] = await consumer.beginning_offsets(tps) if tps else {}
    committed = await asyncio.gather(*(admin.list_consumer_group_offsets(g.group) for g in groups))
    lag: dict[tuple[str, str], int] = {}
    partitions: dict[tuple[str, str, int], tuple[int, int]] = {}
    for group, offsets in zip(groups, committed, strict=True):
        for topic in group.topics:
            behind = 0
            for tp in parts[topic]:
                done = offsets.get(tp)
                position = done.offset if done is not None and done.offset >= 0 else starts[tp]
                n = max(0, ends[tp] - position)
                partitions[(group.stage, topic, tp.partition)] = (position, n)
                behind += n
            lag[(group.stage, topic)] = behind
    return LagReport(time.time(), lag, partitions)


class LagMonitor(Service):
    """Measures the lag every LAG_INTERVAL_SECONDS, exports it and keeps the last report."""

    #: the last report of this process's monitor (None before the first one)
    last: LagReport | None = None
    #: monotonic time of `last`
    last_at: float = 0.0
    #: the last few reports with their monotonic times, newest last (upstream_drained)
    recent: ClassVar[deque[tuple[LagReport, float]]] = deque(maxlen=4)
    #: stage → (partitions with lag whose position has not moved for STAGE_STUCK_SECONDS,
    #: the longest such time)
    stuck: ClassVar[dict[str, tuple[int, float]]] = {}

    def __init__(self, groups: Sequence[StageGroup] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.groups = list(groups) if groups is not None else stage_groups()
        self.admin: AIOKafkaAdminClient | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.last_error: str | None = None
        #: (stage, topic, partition) → (position, since when it is there with lag, monotonic)
        self._progress: dict[tuple[str, str, int], tuple[int, float]] = {}

    async def on_start(self) -> None:
        if settings.lag_interval_seconds <= 0:
            return
        self.admin = AIOKafkaAdminClient(
            **kafka_options(), bootstrap_servers=settings.bootstrap_servers
        )
        self.consumer = AIOKafkaConsumer(
            **kafka_options(),
            bootstrap_servers=settings.bootstrap_servers,
            isolation_level="read_committed",
        )
        await self.admin.start()
        await self.consumer.start()
        self.add_future(self._run())

    async def on_stop(self) -> None:
        closing = []
        if self.consumer is not None:
            closing.append(self.consumer.stop())
        if self.admin is not None:
            closing.append(self.admin.close())
        for done in closing:
            try:
                await asyncio.wait_for(done, 5)
            except Exception:  # a dead broker must not hold the worker's stop
                log.warning("lag monitor: a client did not stop cleanly", exc_info=True)

    async def _run(self) -> None:
        while not self.should_stop:
            await self.update()
            await self.sleep(settings.lag_interval_seconds)

    async def update(self) -> LagReport | None:
        assert self.admin is not None
        assert self.consumer is not None
        try:
            report = await asyncio.wait_for(
                measure(self.admin, self.consumer, self.groups),
                timeout=max(5.0, settings.lag_interval_seconds),
            )
        except Exception as exc:
            metrics.consumergroup_lag_errors_total.inc()
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("lag monitor: measurement failed: %s", self.last_error)
            return None
        self.last_error = None
        for (stage, topic), n in report.lag.items():
            metrics.consumergroup_lag.labels(stage, topic).set(n)
        metrics.consumergroup_lag_updated.set(report.at)
        LagMonitor.last = report
        LagMonitor.last_at = time.monotonic()
        LagMonitor.recent.append((report, LagMonitor.last_at))
        LagMonitor.stuck = self.track_progress(report, time.monotonic())
        for group in self.groups:
            count = LagMonitor.stuck.get(group.stage, (0, 0.0))[0]
            metrics.stage_stuck_partitions.labels(group.stage).set(count)
        return report

    def track_progress(self, report: LagReport, now: float) -> dict[str, tuple[int, float]]:
        """Partitions with lag whose group position has not moved for STAGE_STUCK_SECONDS."""
        stuck: dict[str, tuple[int, float]] = {}
        progress: dict[tuple[str, str, int], tuple[int, float]] = {}
        for key, (position, behind) in report.partitions.items():
            if behind <= 0:
                continue
            before = self._progress.get(key)
            since = before[1] if before is not None and before[0] == position else now
            progress[key] = (position, since)
            if now - since >= settings.stage_stuck_seconds:
                count, longest = stuck.get(key[0], (0, 0.0))
                stuck[key[0]] = (count + 1, max(longest, now - since))
        self._progress = progress
        return stuck


#: the router's input: what deadlines wait for while it has not read it all
ROUTER_INPUT = (ALBUMS_PARSED, VISION_ANALYZED)


#: how much later than a lag measurement a record read downstream must be written for what
#: the router had sent by the measurement to be behind it (clocks of two processes)
MEASUREMENT_MARGIN_SECONDS = 1.0


def upstream_drained(source: Hashable, read_until: float | None) -> bool:
    """Whether everything of an input partition (`source`, a (topic, partition) pair), or of
    both input topics (None), has reached a partition that has read records written up to
    `read_until`: the router had no lag there at the last measurement, and the partition has
    read a record written after that measurement.

    Stream time (tables/stream_time.py) lets a quiet source go, and a partition without traffic
    follow the clock, only while this holds: silence during a broker outage, while the router
    is down or behind, or while the partition itself is behind, is records not read yet, not
    records that do not exist. A measurement older than three intervals (the broker is away,
    the monitor cannot measure) does not count. With the monitor off (LAG_INTERVAL_SECONDS=0)
    silence alone counts.
    """
    if settings.lag_interval_seconds <= 0:
        return True
    if read_until is None:
        return False
    # the newest measurement this partition has read past (a newer one may not be behind it
    # yet: judging by that one would make every other tick look undrained)
    report = next(
        (
            r
            for r, _ in reversed(LagMonitor.recent)
            if read_until >= r.at + MEASUREMENT_MARGIN_SECONDS
        ),
        None,
    )
    if report is None:
        return False
    if time.monotonic() - LagMonitor.last_at > 3 * settings.lag_interval_seconds + 5:
        return False  # no fresh measurement at all: the broker or the monitor is away
    if isinstance(source, tuple) and len(source) == 2 and source[0] in ROUTER_INPUT:
        measured = report.partitions.get(("router", source[0], source[1]))
        return measured is None or measured[1] == 0
    return all(report.lag.get(("router", topic), 0) == 0 for topic in ROUTER_INPUT)
