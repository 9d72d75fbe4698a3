"""Web endpoints on the Faust web server: /health, /health/detailed and /metrics."""

from __future__ import annotations

import time
from typing import Any, cast

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agents import assembler
from agents.direct import kafka_connected
from agents.ingest import Router
from agents.relay import AssembledRelay
from agents.sinks import resources
from streams.app import app
from streams.metrics import assembled_rate
from streams.settings import settings

STARTED_AT = time.time()


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


@app.page("/health")
class Health(View):
    """200 once the worker runs with its tables recovered, else 503 with the reason."""

    async def get(self, request: Request) -> Response:
        ok, reason = readiness()
        body: dict[str, Any] = {"status": "ok" if ok else "unavailable", "reason": reason}
        return self.json(body, status=200 if ok else 503)


@app.page("/health/detailed")
class HealthDetailed(View):
    """Status of the worker and its parts: Kafka, the agents, and every sink."""

    async def get(self, request: Request) -> Response:
        ok, reason = readiness()
        body: dict[str, Any] = {
            "status": "ok" if ok else "unavailable",
            "reason": reason,
            "app_id": app.conf.id,
            "uptime_seconds": round(time.time() - STARTED_AT, 3),
            "kafka": {
                "bootstrap_servers": settings.kafka_bootstrap_servers,
                "connected": kafka_connected(),
            },
            "processing_guarantee": settings.processing_guarantee,
            "tasks": {
                "album_assembler": assembler_health(ok),
                "router": {
                    "status": "running" if Router.routed() or app.started else "starting",
                    "records_routed": Router.routed(),
                },
                "assembled_relay": relay_health(),
            },
            # one entry per sink: disabled (with the reason), idle, ok, retrying or failing
            "sinks": resources.health(),
        }
        return self.json(body, status=200 if ok else 503)


def backlog_size() -> int:
    """Records in this worker's assigned source partitions not read yet (from fetch metadata)."""
    total = 0
    consumer = app.consumer
    read_offsets = cast(Any, consumer)._read_offset
    for tp in consumer.assignment():
        try:
            high = consumer.highwater(tp)
        except Exception:  # no fetch for this partition yet
            continue
        read = read_offsets.get(tp)
        if high is not None and read is not None:
            total += max(0, high - read - 1)
    return total


def assembler_health(ready: bool) -> dict[str, Any]:
    """The seed's album_assembler health block, from this worker's view."""
    running = bool(app.started) and assembler.driver.started_at is not None
    connected = kafka_connected()
    status = "healthy" if ready and running and connected else "unhealthy"
    if status == "healthy" and app.rebalancing:
        status = "degraded"
    return {
        "status": status,
        "kafka_connected": connected,
        "running": running,
        "albums_in_progress": len(assembler.logic.in_progress),
        "album_states": len(assembler.driver.due),
        "backlog_size": backlog_size() if app.started else None,
        "recent_assembly_rate": round(assembled_rate.rate(), 3),
        "deadline_seconds": settings.album_deadline_seconds,
    }


def relay_health() -> dict[str, Any]:
    """The exactly-once relay (disabled under at_least_once)."""
    if not settings.exactly_once:
        return {"status": "disabled", "reason": "PROCESSING_GUARANTEE=at_least_once"}
    last = AssembledRelay.last_commit_at
    return {
        "status": "healthy" if kafka_connected() else "unhealthy",
        "partitions": list(AssembledRelay.partitions),
        "published": AssembledRelay.published,
        "repeats_dropped": AssembledRelay.skipped,
        "seconds_since_last_commit": None if last is None else round(time.monotonic() - last, 3),
    }


@app.page("/metrics")
class Metrics(View):
    """Prometheus exposition of the process's registry."""

    async def get(self, request: Request) -> Response:
        # aiohttp refuses a charset inside content_type=, so the header is set whole.
        return self.bytes(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@app.page("/stores/{album_id}/")
class AlbumInStores(View):
    """An album as every enabled sink's store holds it: `?tenant_id=` (default acme)."""

    async def get(self, request: Request, album_id: str) -> Response:
        tenant_id = request.query.get("tenant_id", "acme")
        try:
            key = int(album_id)
        except ValueError:
            return self.json({"error": "album_id must be an integer"}, status=400)
        found = await resources.lookup(key, tenant_id)
        return self.json({"album_id": key, "tenant_id": tenant_id, "stores": found})
