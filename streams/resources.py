"""The Resources service: owns every storage client the sink stages write through.

Started and stopped with the sinks' stage process. Clients connect lazily, on a sink's first
write: a store that is down when the process starts is a retriable write failure like any
other (backoff, then the albums are parked), never a process that cannot start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mode import Service

from schemas.dlq import safe_error_text
from storage.errors import StorageError
from storage.sinks import BatchOutcome, RetryPolicy, Sink, write_attempt
from streams.metrics import sink_retries_total
from streams.settings import SINK_NAMES, Settings

log = logging.getLogger(__name__)

__all__ = ["Resources", "SinkState", "build_sinks", "plan_sinks"]


class SinkStartError(StorageError):
    """A sink's client could not connect; retried like a failed write."""

    retriable = True


@dataclass(slots=True)
class SinkState:
    """What /health/detailed shows for one sink."""

    name: str
    enabled: bool
    reason: str = ""
    connected: bool = False
    retrying: bool = False
    albums_written: int = 0
    albums_changed: int = 0
    albums_parked: int = 0
    batches: int = 0
    retries: int = 0
    last_batch_size: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None
    recent_failures: list[float] = field(default_factory=list)

    @property
    def status(self) -> str:
        if not self.enabled:
            return "disabled"
        if self.retrying:
            return "retrying"
        if self.last_error_at and (self.last_success_at or 0) < self.last_error_at:
            return "failing"
        return "ok" if self.connected else "idle"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason or None,
            "connected": self.connected,
            "albums_written": self.albums_written,
            "albums_changed": self.albums_changed,
            "albums_parked": self.albums_parked,
            "batches": self.batches,
            "retries": self.retries,
            "last_batch_size": self.last_batch_size,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_success_at": self.last_success_at,
        }


def plan_sinks(settings: Settings) -> tuple[list[str], dict[str, str]]:
    """The sinks SINKS asks for whose server is configured; and why each other one is off."""
    off: dict[str, str] = {}
    wanted = settings.sink_names
    for name in SINK_NAMES:
        if name not in wanted:
            off[name] = "not in SINKS"
    endpoints = {
        "s3": ("S3_ENDPOINT_URL", settings.s3_endpoint_url),
        "postgres": ("DATABASE_URL", settings.database_url.get()),
        "neo4j": ("NEO4J_URI", settings.neo4j_uri),
    }
    for name, (variable, value) in endpoints.items():
        if name in wanted and not value:
            off[name] = f"{variable} is empty"
    return [n for n in wanted if n not in off], off


def build_sinks(
    settings: Settings, only: Sequence[str] | None = None
) -> tuple[dict[str, Sink], dict[str, str]]:
    """The sinks of `plan_sinks` (those of `only`), built (not started); and why each other
    one is off."""
    enabled, off = plan_sinks(settings)
    if only is not None:
        enabled = [n for n in enabled if n in only]
    sinks: dict[str, Sink] = {}
    if "s3" in enabled:
        from storage.s3 import S3Storage
        from storage.sinks import S3Sink

        sinks["s3"] = S3Sink(
            S3Storage(
                settings.s3_endpoint_url,
                settings.s3_bucket,
                settings.s3_access_key,
                settings.s3_secret_key.get(),
                settings.s3_region,
                timeout=settings.store_timeout_seconds,
            )
        )
    if "postgres" in enabled:
        from storage.postgres.store import PostgresStore
        from storage.sinks import PostgresSink

        sinks["postgres"] = PostgresSink(
            PostgresStore(settings.database_url.get(), timeout=settings.store_timeout_seconds)
        )
    if "qdrant" in enabled:
        from storage.embeddings import Embedder
        from storage.qdrant import QdrantIndex
        from storage.sinks import QdrantSink

        sinks["qdrant"] = QdrantSink(
            QdrantIndex(
                url=settings.qdrant_url,
                api_key=settings.qdrant_api_key.get(),
                path=settings.qdrant_path,
                embedder=Embedder(),
                timeout=max(1, round(settings.store_timeout_seconds)),
            )
        )
    if "neo4j" in enabled:
        from storage.neo4j import Neo4jGraph
        from storage.sinks import Neo4jSink

        sinks["neo4j"] = Neo4jSink(
            Neo4jGraph(
                settings.neo4j_uri,
                settings.neo4j_user,
                settings.neo4j_password.get(),
                timeout=settings.store_timeout_seconds,
            )
        )
    return sinks, off


class _Connected:
    """A sink that connects on first use and again after a failed connect."""

    def __init__(self, sink: Sink, state: SinkState) -> None:
        self.sink = sink
        self.name = sink.name
        self.state = state
        self._started = False
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._lock:
            if self._started:
                return
            try:
                await self.sink.start()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                try:
                    await self.sink.close()  # drop what a half-done start opened
                except Exception:
                    log.debug("close after failed start of %s", self.name, exc_info=True)
                if isinstance(exc, StorageError) and not exc.retriable:
                    raise
                raise SinkStartError(f"{self.name}: cannot connect: {exc}") from exc
            self._started = True
            self.state.connected = True

    async def close(self) -> None:
        async with self._lock:
            if self._started:
                self._started = False
                self.state.connected = False
                await self.sink.close()

    async def write_batch(self, albums: Sequence[Mapping[str, Any]]) -> int:
        await self.start()
        return await self.sink.write_batch(albums)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {safe_error_text(exc)}"[:500]


class Resources(Service):
    """Every storage client of the worker, behind the sinks' retrying `write`.

    Args:
        settings: batch size, retry policy and the endpoints of the stores.
        sinks: sinks to use instead of the ones `settings` describes (tests hand in their own).
    """

    def __init__(
        self,
        settings: Settings,
        sinks: Mapping[str, Sink] | None = None,
        *,
        only: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.policy = RetryPolicy(
            retries=settings.sink_retries,
            base=settings.sink_backoff_seconds,
            cap=settings.sink_backoff_max_seconds,
            timeout=settings.store_timeout_seconds,
        )
        if sinks is None:
            built, off = build_sinks(settings, only)
        else:
            built, off = dict(sinks), {}
        if only is not None:
            # a process that runs some of the sinks reports those only
            off = {n: why for n, why in off.items() if n in only}
        self.states: dict[str, SinkState] = {
            name: SinkState(name, enabled=False, reason=why) for name, why in off.items()
        }
        self._sinks: dict[str, _Connected] = {}
        for name, sink in built.items():
            state = self.states[name] = SinkState(name, enabled=True)
            self._sinks[name] = _Connected(sink, state)

    @property
    def enabled(self) -> list[str]:
        return list(self._sinks)

    async def on_stop(self) -> None:
        for sink in self._sinks.values():
            try:
                await sink.close()
            except Exception:
                log.exception("closing sink %s", sink.name)

    async def attempt(
        self, name: str, albums: Sequence[Mapping[str, Any]], attempt: int = 0
    ) -> BatchOutcome:
        """One attempt (0 first) at a batch of one sink; `outcome.retry` asks for another after
        `outcome.retry_after` seconds (the sink's stage loop pauses its partitions meanwhile)."""
        state = self.states[name]
        outcome = await write_attempt(self._sinks[name], albums, self.policy, attempt=attempt)
        if outcome.retry is not None:
            state.retrying = True
            state.retries += 1
            sink_retries_total.labels(sink=name).inc()
            state.last_error = _describe(outcome.retry)
            state.last_error_at = time.time()
            log.warning(
                "sink %s: %s; retry %d/%d in %.1fs",
                name,
                state.last_error,
                attempt + 1,
                self.policy.retries,
                outcome.retry_after,
            )
            return outcome
        state.retrying = False
        state.batches += 1
        state.last_batch_size = len(albums)
        state.albums_written += len(outcome.written)
        state.albums_changed += outcome.changed
        state.albums_parked += len(outcome.parked)
        if outcome.written:
            state.last_success_at = time.time()
        if outcome.parked:
            state.last_error = _describe(outcome.parked[-1][1])
            state.last_error_at = time.time()
        return outcome

    async def write(self, name: str, albums: Sequence[Mapping[str, Any]]) -> BatchOutcome:
        """Attempts at a batch until it is written or parked, waiting in between."""
        attempt = 0
        while True:
            outcome = await self.attempt(name, albums, attempt)
            if outcome.retry is None:
                return outcome
            await asyncio.sleep(outcome.retry_after)
            attempt += 1

    async def lookup(self, album_id: int, tenant_id: str) -> dict[str, Any]:
        """What each enabled sink's store holds for one album (for the /stores view)."""
        out: dict[str, Any] = {}
        for name, sink in self._sinks.items():
            find = getattr(sink.sink, "lookup", None)
            if find is None:
                continue
            try:
                await sink.start()
                out[name] = await find(album_id, tenant_id)
            except Exception as exc:
                out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        return out

    def health(self) -> dict[str, Any]:
        order = [n for n in SINK_NAMES if n in self.states]
        order += [n for n in self.states if n not in SINK_NAMES]
        return {name: self.states[name].to_dict() for name in order}
