"""Web endpoints on the Faust web server: /health, /health/detailed and /metrics."""

from __future__ import annotations

import time
from typing import Any, cast

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.app import app
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
    """Status of the worker and its parts (later work adds per-agent and per-sink entries)."""

    async def get(self, request: Request) -> Response:
        ok, reason = readiness()
        body: dict[str, Any] = {
            "status": "ok" if ok else "unavailable",
            "reason": reason,
            "app_id": app.conf.id,
            "uptime_seconds": round(time.time() - STARTED_AT, 3),
            "kafka": {"bootstrap_servers": settings.kafka_bootstrap_servers},
            "tasks": {},
        }
        return self.json(body, status=200 if ok else 503)


@app.page("/metrics")
class Metrics(View):
    """Prometheus exposition of the process's registry."""

    async def get(self, request: Request) -> Response:
        # aiohttp refuses a charset inside content_type=, so the header is set whole.
        return self.bytes(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
