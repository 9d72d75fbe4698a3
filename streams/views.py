"""Web endpoints on the Faust web server: /health, /health/detailed, /metrics, /stores.

The worker's stage processes (streams/processes.py) answer on ports of their own; these views
include what they report, so one health check and one scrape see this worker's whole pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, cast

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agents import assembler
from schemas.events import TENANT_PATTERN, TENANT_RE
from streams.app import app
from streams.health import health
from streams.lag import LagMonitor
from streams.metrics import merged_exposition
from streams.processes import StageProcesses
from streams.resources import SinkState, plan_sinks
from streams.settings import SINK_NAMES, settings

STARTED_AT = time.time()

app.service(StageProcesses)
app.service(LagMonitor)


class _RecoveryGauges(Collector):
    """Faust's table recovery, read at scrape time: whether it runs and what it has left."""

    def collect(self) -> Iterable[Metric]:
        recovery = cast(Any, app.tables).recovery if app.started else None
        active = GaugeMetricFamily(
            "table_recovery_active", "1 while this worker restores its tables from changelogs"
        )
        remaining = GaugeMetricFamily(
            "table_recovery_remaining_records", "changelog records left to restore (active)"
        )
        active.add_metric([], 1.0 if recovery is not None and recovery.in_recovery else 0.0)
        remaining.add_metric(
            [], float(recovery.active_remaining_total()) if recovery is not None else 0.0
        )
        yield active
        yield remaining


REGISTRY.register(_RecoveryGauges())

#: the last answer of each stage group, shown (marked stale) while the group does not answer
_last_seen: dict[str, tuple[float, dict[str, Any]]] = {}


def readiness() -> tuple[bool, str]:
    """Whether this worker can serve: running, not rebalancing, table recovery done."""
    if not app.started:
        return False, "starting"
    if app.rebalancing:
        return False, "rebalancing"
    recovery = cast(Any, app.tables).recovery  # TableManager has it, its ABC does not
    if app.in_recovery or not recovery.completed.is_set():
        return False, "recovering tables"
    return True, "ok"


#: failed batches in a row that make a stage loop count as unable to make progress
FAILING_BATCHES = 3


def progress_problems(groups: dict[str, dict[str, Any] | None]) -> list[str]:
    """Stages that cannot make progress: a loop failing batch after batch, or partitions with
    lag whose position does not move (sinks waiting for their store are not counted here: they
    report it under `sinks`, and AlbumSinkRetrying alerts on it)."""
    problems = []
    for answer in groups.values():
        for name, block in ((answer or {}).get("stages") or {}).items():
            failures = int(block.get("failures_in_a_row") or 0)
            if failures >= FAILING_BATCHES:
                problems.append(
                    f"stage {name}: {failures} failed batches in a row ({block.get('last_error')})"
                )
    for stage, (count, seconds) in sorted(LagMonitor.stuck.items()):
        if not stage.startswith("sink-"):
            problems.append(
                f"stage {stage}: {count} partition(s) with lag made no progress for {seconds:.0f}s"
            )
    return problems


@app.page("/health")
class Health(View):
    """200 once the worker runs with its tables recovered and every stage makes progress, else
    503 with the reason."""

    async def get(self, request: Request) -> Response:
        ok, reason = readiness()
        body: dict[str, Any] = {"status": "ok" if ok else "unavailable", "reason": reason}
        if ok:
            problems = progress_problems(await stage_groups())
            if problems:
                body = {"status": "unavailable", "reason": "; ".join(problems)}
        return self.json(body, status=200 if body["status"] == "ok" else 503)


@app.page("/health/detailed")
class HealthDetailed(View):
    """Status of the worker and its parts: Kafka, the agents, and every sink."""

    async def get(self, request: Request) -> Response:
        ok, reason = readiness()
        groups = await stage_groups()
        problems = progress_problems(groups) if ok else []
        if problems:
            ok, reason = False, "; ".join(problems)
        body: dict[str, Any] = {
            "status": "ok" if ok else "unavailable",
            "reason": reason,
            "app_id": app.conf.id,
            "uptime_seconds": round(time.time() - STARTED_AT, 3),
            "kafka": {
                "bootstrap_servers": settings.kafka_bootstrap_servers,
                "connected": health.kafka_connected(),
            },
            "processing_guarantee": settings.processing_guarantee,
            "tasks": {
                "album_assembler": assembler_health(ok),
                "router": stage_health(groups, "router", "router"),
                "assembled_relay": relay_health(groups),
                "assembled_watch": stage_health(groups, "router", "watch"),
            },
            # one entry per sink: disabled (with the reason), idle, ok, retrying or failing
            "sinks": sinks_health(groups),
            "processes": processes_health(),
        }
        return self.json(body, status=200 if ok else 503)


async def stage_groups() -> dict[str, dict[str, Any] | None]:
    """Each stage group's /health/detailed; a group that does not answer: its last answer,
    marked stale, or None."""
    current = StageProcesses.current
    answers = {} if current is None else await current.detailed()
    now = time.monotonic()
    out: dict[str, dict[str, Any] | None] = {}
    for group in settings.stage_groups:
        answer = answers.get(group)
        if answer is not None:
            _last_seen[group] = (now, answer)
            out[group] = answer
        elif group in _last_seen:
            seen, last = _last_seen[group]
            out[group] = {**last, "status": "unavailable", "stale_seconds": round(now - seen, 1)}
        else:
            out[group] = None
    return out


def stage_health(
    groups: dict[str, dict[str, Any] | None], group: str, stage: str
) -> dict[str, Any]:
    """One stage's block, as its process reports it."""
    if settings.stages_mode == "external":
        return {
            "status": "external",
            "reason": f"STAGES is empty: `python -m streams stages {group}`",
        }
    answer = groups.get(group)
    if answer is None:
        return {"status": "starting", "reason": f"stage process {group} has not answered yet"}
    block = dict(answer.get("stages", {}).get(stage) or {"status": "unknown"})
    if answer.get("status") == "unavailable":
        block["status"] = "unavailable"
        block["stale_seconds"] = answer.get("stale_seconds")
    return block


def sinks_health(groups: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """Every sink: disabled with the reason, or what the process that runs it reports."""
    enabled, off = plan_sinks(settings)
    out: dict[str, Any] = {
        name: SinkState(name, False, reason).to_dict() for name, reason in off.items()
    }
    for name in enabled:
        group = next((g for g in settings.stage_groups if name in settings.sinks_of(g)), None)
        if group is None:
            mode = settings.stages_mode
            reason = "STAGES runs no group with this sink"
            out[name] = {**SinkState(name, True, reason).to_dict(), "status": "external"}
            if mode != "external":
                out[name]["status"] = "not_run"
            continue
        reported = stage_health(groups, group, "sinks")
        block = reported.get(name)
        if isinstance(block, dict):
            if reported.get("status") == "unavailable":
                block = {**block, "status": "unavailable"}
            out[name] = block
        else:
            out[name] = {
                **SinkState(name, True).to_dict(),
                "status": reported.get("status", "starting"),
                "reason": reported.get("reason"),
            }
    return {name: out[name] for name in sorted(out, key=_sink_order)}


def _sink_order(name: str) -> int:
    return SINK_NAMES.index(name) if name in SINK_NAMES else len(SINK_NAMES)


def processes_health() -> dict[str, Any]:
    current = StageProcesses.current
    if current is None or settings.stages_mode != "spawn":
        return {"mode": settings.stages_mode}
    return {"mode": "spawn", **{c.group: c.status() for c in current.children}}


def backlog() -> dict[str, Any]:
    """Records not yet committed by each stage's consumer group (streams/lag.py), as last
    measured; None before the first measurement."""
    report = LagMonitor.last
    if report is None:
        return {"backlog_size": None, "backlog_by_stage": None, "backlog_measured_at": None}
    return {
        "backlog_size": report.total(),
        "backlog_by_stage": report.by_stage(),
        "backlog_measured_at": round(report.at, 3),
    }


def assembler_health(ready: bool) -> dict[str, Any]:
    """The seed's album_assembler health block, from this worker's view."""
    running = bool(app.started) and assembler.driver.started_at is not None
    connected = health.kafka_connected()
    status = "healthy" if ready and running and connected else "unhealthy"
    if status == "healthy" and app.rebalancing:
        status = "degraded"
    return {
        "status": status,
        "kafka_connected": connected,
        "running": running,
        "albums_in_progress": len(assembler.logic.in_progress),
        "album_states": assembler.driver.states,
        **backlog(),
        "recent_assembly_rate": round(health.assembled.rate(), 3),
        "deadline_seconds": settings.album_deadline_seconds,
    }


def relay_health(groups: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """The exactly-once relay (disabled under at_least_once)."""
    if not settings.exactly_once:
        return {"status": "disabled", "reason": "PROCESSING_GUARANTEE=at_least_once"}
    return stage_health(groups, "relay", "relay")


@app.page("/metrics")
class Metrics(View):
    """Prometheus exposition of the process's registry."""

    async def get(self, request: Request) -> Response:
        current = StageProcesses.current
        children = [] if current is None else await current.metrics()
        # aiohttp refuses a charset inside content_type=, so the header is set whole.
        return self.bytes(
            merged_exposition(children), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


@app.page("/stores/{album_id}/")
class AlbumInStores(View):
    """An album as every enabled sink's store holds it for one tenant: `?tenant_id=` is
    required, and every store's lookup is scoped to it."""

    async def get(self, request: Request, album_id: str) -> Response:
        tenant_id = request.query.get("tenant_id", "")
        if not TENANT_RE.fullmatch(tenant_id):
            return self.json(
                {"error": f"tenant_id is required and must match {TENANT_PATTERN}"}, status=400
            )
        try:
            key = int(album_id)
        except ValueError:
            return self.json({"error": "album_id must be an integer"}, status=400)
        current = StageProcesses.current
        found = None if current is None else await current.stores(key, tenant_id)
        if found is None:
            return self.json(
                {"error": "no sinks process answers here (SINKS empty, STAGES, or starting)"},
                status=503,
            )
        return self.json({"album_id": key, "tenant_id": tenant_id, "stores": found})
