"""Prometheus metrics (names as in the seed; no label with unbounded values) and live stats."""

from __future__ import annotations

import platform
from collections.abc import Iterable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from streams.health import health


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


# `_created` samples say when a series was made in one process; merged across the worker's
# processes (merged_exposition) they would mean nothing, and no panel or alert uses them
disable_created_metrics()  # type: ignore[no-untyped-call]

albums_parsed_total = Counter("albums_parsed_total", "albums.parsed events by outcome", ["status"])
vision_events_total = Counter(
    "vision_events_total", "posts.vision.analyzed events by outcome", ["status"]
)
albums_assembled_total = Counter(
    "albums_assembled_total", "album.assembled events emitted", ["status"]
)
album_assembly_lag_seconds = Histogram(
    "album_assembly_lag_seconds",
    "from the first event of an album to its assembly",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600),
)
album_items_count = Histogram(
    "album_items_count", "items per assembled album", ["status"], buckets=(1, 2, 3, 4, 5, 6, 8, 10)
)
album_vision_summary_size_bytes = Histogram(
    "album_vision_summary_size_bytes",
    "size of an assembled album's JSON",
    buckets=(256, 512, 1024, 2048, 4096, 8192, 16384, 65536, 262144),
)
album_aggregation_duration_ms = Histogram(
    "album_aggregation_duration_ms",
    "time to aggregate an album's vision",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100),
)
albums_in_progress = Gauge(
    "albums_in_progress", "albums in the assembler's state not yet assembled complete"
)
album_state_size = Gauge("album_state_entries", "entries of album_state on this worker")
producer_resets_total = Counter(
    "kafka_producer_resets_total",
    "direct producers replaced after their idempotence state broke (OutOfOrderSequenceNumber)",
)
stream_time_behind_seconds = Gauge(
    "album_stream_time_behind_seconds",
    "wall clock minus the stream time of the assembler's furthest-behind partition "
    "(deadlines are measured in stream time: this is how late they fire)",
)
dlq_events_total = Counter(
    "dlq_events_total", "records sent to albums.dlq", ["stage", "error_type"]
)
album_state_expired_total = Counter("album_state_expired_total", "album states deleted")
post_index_events_total = Counter(
    "post_index_events_total", "post index operations by outcome", ["status"]
)


class _HealthCounters(Collector):
    """The counters of the process's health registry (streams/health.py), as metrics."""

    def collect(self) -> Iterable[Metric]:
        docs = {
            "consumer_redelivered": "records Faust's consumer delivered again (never dropped)",
            "consumer_gaps_refused": "offset gaps Faust would have counted as done, refused",
            "consumer_refetches": "partitions fetched again from their committed offset",
            "consumer_skipped_acks_refused": "acks of records no stream started, refused",
        }
        for name, value in health.counters().items():
            family = CounterMetricFamily(f"{name}_total", docs[name])
            family.add_metric([], value)
            yield family


REGISTRY.register(_HealthCounters())

album_assembled_seen_total = Counter(
    "album_assembled_seen_total", "album.assembled events read back by the watcher", ["status"]
)
album_assembled_duplicates_total = Counter(
    "album_assembled_duplicates_total",
    "album.assembled events whose event_id was seen recently (at-least-once repeats)",
)

relay_published_total = Counter(
    "album_relay_published_total", "album.assembled events published by the exactly-once relay"
)
relay_skipped_total = Counter(
    "album_relay_skipped_total", "repeated emissions the exactly-once relay dropped"
)

sink_albums_total = Counter(
    "sink_albums_total", "album.assembled events handled by a sink", ["sink", "outcome"]
)
sink_retries_total = Counter("sink_retries_total", "sink write retries", ["sink"])
sink_batch_duration_seconds = Histogram(
    "sink_batch_duration_seconds",
    "time to write one batch to a sink, retries included",
    ["sink"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
sink_batch_size = Histogram(
    "sink_batch_size", "albums per sink batch", ["sink"], buckets=(1, 5, 10, 25, 50, 100, 250, 500)
)
records_too_large_total = Counter(
    "records_too_large_total",
    "records over the size limit sent to albums.dlq instead (cut to fit)",
    ["topic"],
)

# Stage loops (agents/stage.py): the router, the relay, the watcher and each sink. `stage` is
# one of a fixed set of names (router, relay, watch, sink-<name>).
stage_records_total = Counter("stage_records_total", "records a stage loop committed", ["stage"])
stage_batches_total = Counter("stage_batches_total", "batches a stage loop committed", ["stage"])
stage_batch_failures_total = Counter(
    "stage_batch_failures_total", "batches a stage loop failed and will read again", ["stage"]
)
stage_backpressure_total = Counter(
    "stage_backpressure_total", "times a stage paused its partitions (its server away)", ["stage"]
)
stage_paused_partitions = Gauge(
    "stage_paused_partitions", "partitions a stage holds paused (its server away)", ["stage"]
)
stage_failures_in_a_row = Gauge(
    "stage_failures_in_a_row", "failed batches of a stage since its last committed one", ["stage"]
)

# the fixed label values, at zero from the start (a rate needs a series before its first event)
for _status in ("valid", "invalid"):
    albums_parsed_total.labels(_status)
for _status in ("invalid", "not_in_album", "direct", "via_index"):
    vision_events_total.labels(_status)
for _status in ("complete", "partial"):
    albums_assembled_total.labels(_status)


def touch_sink(sink: str) -> None:
    """Create a sink's series at zero."""
    for outcome in ("written", "parked"):
        sink_albums_total.labels(sink, outcome)
    sink_retries_total.labels(sink)


def touch_stage(stage: str) -> None:
    """Create a stage's series at zero, so rates and alerts see them before its first batch."""
    for family in (
        stage_records_total,
        stage_batches_total,
        stage_batch_failures_total,
        stage_backpressure_total,
    ):
        family.labels(stage)
    stage_paused_partitions.labels(stage).set(0)
    stage_failures_in_a_row.labels(stage).set(0)


# Consumer-group lag, computed by the worker (streams/lag.py) from each group's committed
# offsets and the partitions' end offsets; every worker reports the whole group, so rules
# aggregate it with max, not sum.
consumergroup_lag = Gauge(
    "kafka_consumergroup_lag",
    "records of a topic not yet committed by a stage's consumer group",
    ["stage", "topic"],
)
stage_stuck_partitions = Gauge(
    "stage_stuck_partitions",
    "partitions with lag whose group position has not moved for STAGE_STUCK_SECONDS",
    ["stage"],
)
consumergroup_lag_updated = Gauge(
    "kafka_consumergroup_lag_updated_timestamp_seconds",
    "when the worker last measured consumer-group lag",
)
consumergroup_lag_errors_total = Counter(
    "kafka_consumergroup_lag_errors_total", "consumer-group lag measurements that failed"
)


def describe_build(registry: CollectorRegistry = REGISTRY) -> Info:
    """`album_pipeline_build_info`: the versions of this process's code and libraries."""
    info = Info(
        "album_pipeline_build", "versions of this process's code and libraries", registry=registry
    )
    info.info(
        {
            "version": _version("album-pipeline"),
            "python": platform.python_version(),
            "faust": _version("faust-streaming"),
            "aiokafka": _version("aiokafka"),
        }
    )
    return info


build_info = describe_build()


#: families every process has of its own: the worker's alone are served
CHILD_FAMILIES_LEFT_OUT = ("process_", "python_", "album_pipeline_build")


def merged_exposition(children: Sequence[str]) -> bytes:
    """This process's metrics with its stage processes' added in (streams/processes.py).

    Samples with the same name and labels are summed: every family here is a counter, a
    histogram, or a gauge that one process alone sets. The children's `process_*`, `python_*`
    and build-info families (each process has its own) are left out.
    """
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for family in REGISTRY.collect():
        _add(families, values, family)
    for text in children:
        for family in text_string_to_metric_families(text):
            if not family.name.startswith(CHILD_FAMILIES_LEFT_OUT):
                _add(families, values, family)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(list(_rebuilt(families, values))))
    return generate_latest(registry)


def _add(
    families: dict[str, Metric],
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]],
    family: Metric,
) -> None:
    if family.name not in families:
        families[family.name] = family
        values[family.name] = {}
    summed = values[family.name]
    for sample in family.samples:
        key = (sample.name, tuple(sorted(sample.labels.items())))
        summed[key] = summed.get(key, 0.0) + sample.value


def _rebuilt(
    families: dict[str, Metric],
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]],
) -> Iterator[Metric]:
    for name, family in families.items():
        out = Metric(family.name, family.documentation, family.type, family.unit)
        for (sample_name, labels), value in values[name].items():
            out.add_sample(sample_name, dict(labels), value)
        yield out


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families
