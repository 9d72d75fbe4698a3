"""The worker's stage processes: started, watched, restarted and stopped by the worker.

STAGES says where the stage loops run (streams/stages.py):

- `router,sinks` (default): one child process per group, each with its own web port. A child
  that dies is started again (after 1 s, doubling to 30 s while it keeps dying); the worker
  stops them when it stops, and they stop by themselves if the worker is killed.
- `inline`: every group inside the worker process (one process; for debugging).
- empty: none here; run `python -m streams stages router|sinks` yourself (compose does).

The worker's /health/detailed and /metrics include what its children report, so one scrape
and one health check see the whole pipeline of this worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
import urllib.parse
from typing import Any

import aiohttp
from mode import Service

from streams import webauth
from streams.settings import settings

log = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((settings.web_bind, 0))
        return int(s.getsockname()[1])


class Child:
    """One stage process of this worker."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.port = _free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.started_at: float | None = None
        self.last_exit: int | None = None
        self.backoff = 1.0
        # the web token, read (or made) once, before the child that checks it starts
        self.headers = webauth.auth_headers()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def spawn(self) -> None:
        env = {
            **os.environ,
            "STAGE_WEB_PORT": str(self.port),
            "STAGE_PARENT_PID": str(os.getpid()),
        }
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streams", "stages", self.group, env=env
        )
        self.starts += 1
        self.started_at = time.monotonic()
        log.info("stage process %s started (pid %d)", self.group, self.proc.pid)

    async def terminate(self, within: float) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), within)
        except TimeoutError:
            log.warning("stage process %s did not stop in %.0fs: killed", self.group, within)
            proc.kill()
            await proc.wait()

    def status(self) -> dict[str, Any]:
        return {
            "pid": None if self.proc is None else self.proc.pid,
            "status": "running" if self.running else "restarting",
            "web_port": self.port,
            "starts": self.starts,
            "last_exit_code": self.last_exit,
        }

    async def get(self, path: str, seconds: float = 2.0) -> Any:
        """GET a path of the child's web port: decoded JSON, or text; None when unreachable."""
        url = f"http://{settings.web_bind}:{self.port}{path}"
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session,
                session.get(url, headers=self.headers) as resp,
            ):
                if resp.content_type == "application/json":
                    return await resp.json()
                return await resp.text()
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None


class StageProcesses(Service):
    """Runs the stage groups of STAGES for this worker (see the module docstring)."""

    #: the running instance of this process (health and metrics views reach it here)
    current: StageProcesses | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = settings.stages_mode
        self.children = [Child(g) for g in settings.stage_groups] if self.mode == "spawn" else []
        self.inline: list[Any] = []
        StageProcesses.current = self

    async def on_start(self) -> None:
        from streams.stages import build

        if self.mode == "inline":
            for group in settings.stage_groups:
                for stage in build(group):
                    await stage.start()
                    self.inline.append(stage)
        for child in self.children:
            await child.spawn()

    async def on_stop(self) -> None:
        for stage in reversed(self.inline):
            try:
                await asyncio.wait_for(stage.stop(), 30)
            except Exception:
                log.exception("stopping stage %s", stage.name)
        # the sinks may be in the middle of a batch; they stop it within their stop bound
        await asyncio.gather(*(c.terminate(within=40) for c in self.children))

    @Service.task
    async def _watch(self) -> None:
        """Start a child again when it died (not when the worker is stopping)."""
        while not self.should_stop:
            await self.sleep(0.5)
            for child in self.children:
                if child.proc is None or child.proc.returncode is None or self.should_stop:
                    continue
                child.last_exit = child.proc.returncode
                lived = time.monotonic() - (child.started_at or 0)
                child.backoff = 1.0 if lived > 60 else min(child.backoff * 2, 30.0)
                log.error(
                    "stage process %s exited with %s after %.0fs; starting it again in %.0fs",
                    child.group,
                    child.last_exit,
                    lived,
                    child.backoff,
                )
                child.proc = None
                await self.sleep(child.backoff)
                if not self.should_stop:
                    await child.spawn()

    # -- what the worker's views show --------------------------------------------------------

    def child(self, group: str) -> Child | None:
        return next((c for c in self.children if c.group == group), None)

    async def detailed(self) -> dict[str, Any]:
        """group → the group's /health/detailed (None for a group that does not answer)."""
        if self.mode == "inline":
            by_stage = {s.name: s.health() for s in self.inline}
            return {
                g: {"group": g, "pid": os.getpid(), "status": "ok", "stages": by_stage}
                for g in settings.stage_groups
            }
        answers = await asyncio.gather(*(c.get("/health/detailed") for c in self.children))
        return {
            c.group: (a if isinstance(a, dict) else None)
            for c, a in zip(self.children, answers, strict=True)
        }

    async def metrics(self) -> list[str]:
        """The Prometheus exposition of every child (those that answer)."""
        answers = await asyncio.gather(*(c.get("/metrics") for c in self.children))
        return [a for a in answers if isinstance(a, str)]

    async def stores(self, album_id: int, tenant_id: str) -> dict[str, Any] | None:
        """What the sinks' stores hold for an album, from the processes that run the sinks."""
        if self.mode == "inline":
            from agents.sinks import SinkStages

            for stage in self.inline:
                if isinstance(stage, SinkStages):
                    return await stage.resources.lookup(album_id, tenant_id)
            return None
        children = [c for c in self.children if settings.sinks_of(c.group)]
        if not children:
            return None
        query = urllib.parse.urlencode({"tenant_id": tenant_id})
        answers = await asyncio.gather(
            *(c.get(f"/stores/{album_id}/?{query}", seconds=30) for c in children)
        )
        found: dict[str, Any] = {}
        for child, answer in zip(children, answers, strict=True):
            if isinstance(answer, dict):
                found.update(answer)
            else:
                for name in settings.sinks_of(child.group):
                    found[name] = {"error": f"stage process {child.group} does not answer"}
        return found
