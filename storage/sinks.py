"""Sinks of album.assembled: one adapter per store, and the retry policy they share (no Faust)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from schemas.events import supersedes
from storage.errors import StorageError, StoreTimeout

Album = Mapping[str, Any]

__all__ = [
    "BatchOutcome",
    "Neo4jSink",
    "PostgresSink",
    "QdrantSink",
    "RetryPolicy",
    "S3Sink",
    "Sink",
    "latest_versions",
    "write_attempt",
    "write_with_retries",
]


class Sink(Protocol):
    """A store fed by album.assembled; `write_batch` is an idempotent, version-guarded upsert."""

    name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def write_batch(self, albums: Sequence[Album]) -> int:
        """Write the albums (highest version wins); returns how many changed the store."""
        ...


def latest_versions(albums: Iterable[Album]) -> list[Album]:
    """One event per album_id, the highest version (the first on a tie, `supersedes`), in
    first-seen order."""
    best: dict[int, Album] = {}
    for album in albums:
        key = int(album["album_id"])
        held = best.get(key)
        if held is None or supersedes(int(album["version"]), int(held["version"])):
            best[key] = album
    return list(best.values())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: retry n waits base·2ⁿ (capped), between half and all of it.

    Args:
        retries: retries after the first attempt before the albums are parked.
        base: the first delay in seconds.
        cap: the longest single delay.
        timeout: seconds one attempt may take before it counts as a retriable failure
            (STORE_TIMEOUT_SECONDS); None waits as long as the store's client does.
    """

    retries: int = 5
    base: float = 1.0
    cap: float = 30.0
    #: the longest one write of a batch may take (a hung server answers nothing, ever)
    timeout: float | None = None

    def delay(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        ceiling = min(self.cap, self.base * 2.0**retry)
        # "equal jitter": never near zero, yet workers that failed together drift apart
        return ceiling / 2 + rand() * ceiling / 2


@dataclass(slots=True)
class BatchOutcome:
    """What became of a batch: albums written and albums parked with their error and attempts.

    `retry` is set when the store failed in a way worth another try and the policy has retries
    left: nothing was decided, the batch is to be written again after `retry_after` seconds.
    """

    written: list[Album] = field(default_factory=list)
    parked: list[tuple[Album, BaseException, int]] = field(default_factory=list)
    changed: int = 0
    retries: int = 0
    retry: BaseException | None = None
    retry_after: float = 0.0


#: Errors that come from an album's data rather than from the store.
DATA_ERRORS = (ValueError, TypeError, KeyError, LookupError)


def _retriable(exc: BaseException) -> bool:
    if isinstance(exc, StorageError):
        return exc.retriable
    # an unwrapped driver error (a timeout, a reset connection) is worth another try; an error
    # in the album's data is not
    return not isinstance(exc, DATA_ERRORS)


async def write_attempt(
    sink: Sink,
    albums: Sequence[Album],
    policy: RetryPolicy,
    *,
    attempt: int = 0,
    rand: Callable[[], float] = random.random,
) -> BatchOutcome:
    """Attempt `attempt` (0 first) at writing a batch; isolate and park what cannot be written.

    A retriable error (the store is down, a timeout) asks for another attempt (`retry`) while
    `policy.retries` allows, then parks the whole batch. Any other error is a property of some
    album, not of the store: the batch is split and each album tried alone, so one bad album
    does not park its neighbours; a retriable error among those asks for the whole batch again
    (writes are idempotent), so the split albums share one retry budget.
    """
    try:
        if policy.timeout is None:
            changed = await sink.write_batch(albums)
        else:
            try:
                changed = await asyncio.wait_for(sink.write_batch(albums), policy.timeout)
            except TimeoutError as exc:
                raise StoreTimeout(
                    f"{getattr(sink, 'name', type(sink).__name__)} did not answer a batch of "
                    f"{len(albums)} within "
                    f"{policy.timeout:g}s"
                ) from exc
        return BatchOutcome(written=list(albums), changed=changed, retries=attempt)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if _retriable(exc):
            if attempt < policy.retries:
                return BatchOutcome(
                    retries=attempt, retry=exc, retry_after=policy.delay(attempt, rand)
                )
            return BatchOutcome(parked=[(a, exc, attempt + 1) for a in albums], retries=attempt)
        if len(albums) == 1:
            return BatchOutcome(parked=[(albums[0], exc, attempt + 1)], retries=attempt)
        outcome = BatchOutcome(retries=attempt)
        for album in albums:
            one = await write_attempt(sink, [album], policy, attempt=attempt, rand=rand)
            if one.retry is not None:
                return one
            outcome.written += one.written
            outcome.parked += one.parked
            outcome.changed += one.changed
        return outcome


async def write_with_retries(
    sink: Sink,
    albums: Sequence[Album],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
    on_retry: Callable[[BaseException, int, float], None] | None = None,
) -> BatchOutcome:
    """`write_attempt` until the batch is written or parked, sleeping between attempts."""
    attempt = 0
    while True:
        outcome = await write_attempt(sink, albums, policy, attempt=attempt, rand=rand)
        if outcome.retry is None:
            return outcome
        if on_retry is not None:
            on_retry(outcome.retry, attempt + 1, outcome.retry_after)
        await sleep(outcome.retry_after)
        attempt += 1


class _ClientSink:
    """A sink over one storage client, which it starts and closes."""

    name: str

    def __init__(self, client: Any) -> None:
        self.client = client

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        await self.client.close()


class S3Sink(_ClientSink):
    """The album.assembled document, gzip JSON at the album's summary key (DESIGN.md, Stores).

    Args:
        storage: an S3Storage (started and closed by this sink).
        concurrency: puts in flight at once.
    """

    name = "s3"

    def __init__(self, storage: Any, concurrency: int = 32) -> None:
        super().__init__(storage)
        self._sem = asyncio.Semaphore(concurrency)

    async def _put(self, album: Album) -> bool:
        async with self._sem:
            return bool(await self.client.put_album_summary(album))

    async def write_batch(self, albums: Sequence[Album]) -> int:
        done = await asyncio.gather(*(self._put(a) for a in latest_versions(albums)))
        return sum(done)

    async def lookup(self, album_id: int, tenant_id: str) -> Any:
        from storage.s3 import album_summary_key

        key = album_summary_key(tenant_id, album_id)
        return {"key": key, "document": await self.client.get_json(key)}


class PostgresSink(_ClientSink):
    """`media_groups.meta->'enrichment'`, created with the row when ingestion has not written it.

    Args:
        store: a PostgresStore (started and closed by this sink).
    """

    name = "postgres"

    async def write_batch(self, albums: Sequence[Album]) -> int:
        latest = latest_versions(albums)
        await self.client.upsert_enrichments([dict(a) for a in latest])
        return len(latest)

    async def lookup(self, album_id: int, tenant_id: str) -> Any:
        return {"media_groups.meta": await self.client.enrichment(album_id, tenant_id=tenant_id)}


class QdrantSink(_ClientSink):
    """One point per post of `telegram_posts`, embedded from caption, description and OCR text.

    Args:
        index: a QdrantIndex (started and closed by this sink).
    """

    name = "qdrant"

    async def write_batch(self, albums: Sequence[Album]) -> int:
        return int(await self.client.upsert_albums(latest_versions(albums)))

    async def lookup(self, album_id: int, tenant_id: str) -> Any:
        points = await self.client.album_points(tenant_id, album_id)
        return {"points": [{**p, "payload": {**p["payload"], "text": None}} for p in points]}


class Neo4jSink(_ClientSink):
    """The album graph: Channel-HAS_ALBUM->Album-CONTAINS->Post, Album-TAGGED->Tag.

    Args:
        graph: a Neo4jGraph (started and closed by this sink).
    """

    name = "neo4j"

    async def write_batch(self, albums: Sequence[Album]) -> int:
        return int(await self.client.create_album_node_and_relationships(latest_versions(albums)))

    async def lookup(self, album_id: int, tenant_id: str) -> Any:
        return {
            "album": await self.client.get_album(album_id, tenant_id=tenant_id),
            "posts": await self.client.get_album_posts(album_id, ordered=True, tenant_id=tenant_id),
        }
