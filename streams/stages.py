"""Stage processes: the stages that keep no table, run outside the Faust worker.

    python -m streams stages router   # the router and the album.assembled watcher
    python -m streams stages relay    # the exactly-once relay (PROCESSING_GUARANTEE=exactly_once)
    python -m streams stages sinks    # the sink loops (S3, Postgres, Qdrant, Neo4j)

Each stage is a stage loop (agents/stage.py) over its own consumer group, so a group of stages
can run in any process. The Faust worker starts one child process per group by default
(STAGES, streams/processes.py): the router then uses the second core instead of the
assembler's, and a slow store or the embedding model never takes CPU from the table agents.
Each process serves /health, /health/detailed and /metrics on STAGE_WEB_PORT; the sinks'
process also serves /stores/{album_id}/ (embedded Qdrant is open in that process only).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any, Protocol

import click
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from schemas.events import TENANT_PATTERN, TENANT_RE
from streams import webauth
from streams.settings import settings

log = logging.getLogger(__name__)

#: what each group of stages runs, in start order; `sinks:a+b` runs those sinks alone
GROUPS: dict[str, tuple[str, ...]] = {
    "router": ("router", "watch"),
    # exactly_once only: its transactions never wait behind a router batch in one event loop
    "relay": ("relay",),
    "sinks": ("sinks",),
}


def _stages_of(group: str) -> tuple[str, ...]:
    if group in GROUPS:
        return GROUPS[group]
    if group.startswith("sinks:"):
        return ("sinks",)
    raise click.BadParameter(
        f"unknown stage group {group!r}; known: router, relay, sinks, sinks:NAME+NAME"
    )


class Stage(Protocol):
    """A stage as a process runs it: a mode Service with a health block."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> dict[str, Any]: ...


def build(group: str) -> list[Stage]:
    """The stages of `group` (not started)."""
    stages: list[Stage] = []
    for name in _stages_of(group):
        if name == "router":
            from agents.ingest import Router

            stages.append(Router())
        elif name == "relay":
            from agents.relay import AssembledRelay

            stages.append(AssembledRelay())
        elif name == "watch":
            from agents.assembled_watch import Watcher

            stages.append(Watcher())
        elif name == "sinks":
            from agents.sinks import SinkStages
            from streams.resources import Resources

            stages.append(SinkStages(Resources(settings, only=settings.sinks_of(group))))
    return stages


class StageGroup:
    """The stages of one group, started and stopped together, with their web port.

    Args:
        group: a key of GROUPS.
        port: the web port (0: none).
    """

    def __init__(self, group: str, port: int) -> None:
        self.group = group
        self.port = port
        self.stages = build(group)
        self.started_at = time.time()
        self.running = False
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        if self.port:
            self._runner = await self._start_web()
        for stage in self.stages:
            await stage.start()
        self.running = True
        log.info("stages %s running: %s", self.group, ", ".join(s.name for s in self.stages))

    async def stop(self) -> None:
        self.running = False
        for stage in reversed(self.stages):
            try:
                await asyncio.wait_for(stage.stop(), 30)
            except Exception:
                log.exception("stopping stage %s", stage.name)
        if self._runner is not None:
            await self._runner.cleanup()

    def detailed(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "pid": os.getpid(),
            "status": "ok" if self.running else "starting",
            "uptime_seconds": round(time.time() - self.started_at, 3),
            "stages": {s.name: s.health() for s in self.stages},
        }

    async def stores(self, album_id: int, tenant_id: str) -> dict[str, Any]:
        from agents.sinks import SinkStages

        for stage in self.stages:
            if isinstance(stage, SinkStages):
                return await stage.resources.lookup(album_id, tenant_id)
        return {}

    async def _start_web(self) -> web.AppRunner:
        async def health(request: web.Request) -> web.Response:
            body = {"status": "ok" if self.running else "starting", "group": self.group}
            return web.json_response(body, status=200 if self.running else 503)

        async def detailed(request: web.Request) -> web.Response:
            return web.json_response(self.detailed())

        async def metrics(request: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        async def stores(request: web.Request) -> web.Response:
            try:
                album_id = int(request.match_info["album_id"])
            except ValueError:
                return web.json_response({"error": "album_id must be an integer"}, status=400)
            tenant_id = request.query.get("tenant_id", "")
            if not TENANT_RE.fullmatch(tenant_id):
                return web.json_response(
                    {"error": f"tenant_id is required and must match {TENANT_PATTERN}"},
                    status=400,
                )
            return web.json_response(await self.stores(album_id, tenant_id))

        app = web.Application()
        webauth.protect(app)
        app.router.add_get("/health", health)
        app.router.add_get("/health/detailed", detailed)
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/stores/{album_id}/", stores)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.web_bind, self.port).start()
        log.info("stages %s: web on http://%s:%d", self.group, settings.web_bind, self.port)
        return runner


def _die_with_parent(parent: int) -> Callable[[], bool]:
    """A child of the worker ends when the worker does, even a SIGKILLed one: Linux sends it
    SIGTERM then (PR_SET_PDEATHSIG); elsewhere the returned check sees the parent gone."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    return lambda: os.getppid() != parent


async def run_group(group: str, port: int, parent: int = 0) -> None:
    """Run one group until SIGTERM/SIGINT (or, as a worker's child, until the worker ends)."""
    from streams.worker import tune_gc

    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    orphaned = _die_with_parent(parent) if parent else (lambda: False)
    if orphaned():
        return
    running = StageGroup(group, port)
    try:
        await running.start()
        while not stop.is_set() and not orphaned():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        await running.stop()
        from agents.direct import close_producer

        await close_producer()


@click.command("stages")
@click.argument("group")
def stages(group: str) -> None:
    """Run one group of stage loops in this process: router (router, watcher), relay, sinks
    (every sink) or sinks:NAME+NAME (those sinks)."""
    _stages_of(group)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"[%(asctime)s] [{os.getpid()}] [%(levelname)s] [stages {group}] %(message)s",
    )
    asyncio.run(run_group(group, settings.stage_web_port, settings.stage_parent_pid))
