"""A stage that cannot make progress is named: partitions with lag whose position does not move
for STAGE_STUCK_SECONDS (from the lag monitor's reports) or a loop that keeps failing."""

from __future__ import annotations

from streams.lag import LagMonitor, LagReport, StageGroup
from streams.settings import settings
from streams.views import progress_problems


def report(**partitions: tuple[int, int]) -> LagReport:
    parts = {}
    for name, value in partitions.items():
        stage, partition = name.rsplit("_", 1)
        parts[(stage, "t", int(partition))] = value
    return LagReport(0.0, {}, parts)


def test_a_partition_with_lag_and_no_progress_is_stuck_after_the_limit() -> None:
    monitor = LagMonitor([StageGroup("router", "g", ("t",))])
    limit = settings.stage_stuck_seconds
    assert monitor.track_progress(report(router_0=(10, 5), router_1=(3, 0)), 0.0) == {}
    # moving, or caught up, is progress
    assert monitor.track_progress(report(router_0=(12, 5), router_1=(3, 0)), limit) == {}
    # the same position with lag for the whole limit is not
    stuck = monitor.track_progress(report(router_0=(12, 9), router_1=(3, 0)), 2 * limit)
    assert stuck == {"router": (1, limit)}
    # once it moves again, it is not stuck any more
    assert monitor.track_progress(report(router_0=(13, 9)), 2 * limit + 1) == {}


def test_problems_name_the_stage_and_the_reason() -> None:
    groups = {
        "router": {
            "stages": {
                "router": {"failures_in_a_row": 4, "last_error": "KafkaError: boom"},
                "watch": {"failures_in_a_row": 0},
            }
        },
        "sinks": None,
    }
    LagMonitor.stuck = {"assembler": (2, 400.0), "sink-s3": (8, 900.0)}
    try:
        problems = progress_problems(groups)
    finally:
        LagMonitor.stuck = {}
    assert problems == [
        "stage router: 4 failed batches in a row (KafkaError: boom)",
        "stage assembler: 2 partition(s) with lag made no progress for 400s",
    ]
    assert progress_problems({"router": {"stages": {"router": {"failures_in_a_row": 2}}}}) == []


def test_upstream_drained_judges_by_the_newest_measurement_the_partition_read_past() -> None:
    import time

    from streams import lag
    from streams.topics import ALBUMS_PARSED, VISION_ANALYZED

    def measured(at: float, behind: int) -> LagReport:
        parts = {("router", ALBUMS_PARSED, 0): (5, behind), ("router", VISION_ANALYZED, 0): (5, 0)}
        totals = {("router", ALBUMS_PARSED): behind, ("router", VISION_ANALYZED): 0}
        return LagReport(at, totals, parts)

    source = (ALBUMS_PARSED, 0)
    LagMonitor.recent.clear()
    assert not lag.upstream_drained(source, 2000.0)  # nothing measured yet
    now = time.monotonic()
    LagMonitor.recent.extend([(measured(1000.0, 0), now), (measured(1010.0, 3), now)])
    LagMonitor.last_at = now
    # read past the first measurement only: it says drained
    assert lag.upstream_drained(source, 1005.0)
    assert lag.upstream_drained(None, 1005.0)
    # read past the newer one, which has lag there
    assert not lag.upstream_drained(source, 1011.5)
    assert lag.upstream_drained((VISION_ANALYZED, 0), 1011.5)
    # read past no measurement: the router's sends may still be ahead of this partition
    assert not lag.upstream_drained(source, 1000.5)
    # every measurement stale (the broker is away): not drained
    LagMonitor.last_at = now - 3 * settings.lag_interval_seconds - 10
    assert not lag.upstream_drained(source, 1005.0)
    LagMonitor.recent.clear()
