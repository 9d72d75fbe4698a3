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
