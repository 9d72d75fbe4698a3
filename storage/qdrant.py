"""Qdrant index of album posts: one point per post, tenant-scoped filtered vector search."""

from __future__ import annotations

import asyncio
import uuid
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

import httpx
from pydantic import ValidationError
from qdrant_client import AsyncQdrantClient, QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from schemas.events import TENANT_PATTERN, TENANT_RE, supersedes
from storage.embeddings import Embedder, post_text
from storage.errors import StorageError

__all__ = [
    "COLLECTION",
    "QdrantError",
    "QdrantIndex",
    "build_filter",
    "point_id",
]

COLLECTION = "telegram_posts"
# Fixed forever: point ids derive from it, so changing it would duplicate every post.
POINT_NAMESPACE = uuid.UUID("c5ce3245-bf53-4482-b5be-98a1fbfc4d5c")
RANGE_KEYS = frozenset({"gt", "gte", "lt", "lte"})
# Statuses worth a retry although 4xx: timeout and rate limiting are temporary.
RETRIABLE_STATUS = frozenset({408, 429})

PAYLOAD_INDEXES: dict[str, models.PayloadSchemaType | models.KeywordIndexParams] = {
    "tenant_id": models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
    "album_id": models.PayloadSchemaType.INTEGER,
    "channel_id": models.PayloadSchemaType.INTEGER,
    "post_id": models.PayloadSchemaType.INTEGER,
    "tags": models.PayloadSchemaType.KEYWORD,
    "vision.is_meme": models.PayloadSchemaType.BOOL,
    "posted_at": models.PayloadSchemaType.DATETIME,
}

P = ParamSpec("P")
T = TypeVar("T")


class QdrantError(StorageError):
    """A Qdrant call failed; connection problems, timeouts and 5xx are retriable."""


def _check_tenant(tenant_id: object) -> str:
    if not isinstance(tenant_id, str) or not TENANT_RE.fullmatch(tenant_id):
        raise ValueError(f"tenant_id {tenant_id!r} is not {TENANT_PATTERN}")
    return tenant_id


def point_id(tenant_id: str, post_id: int) -> str:
    """The point id of a post: uuid5 of `"{tenant_id}:{post_id}"`, the same on every worker."""
    _check_tenant(tenant_id)
    if isinstance(post_id, bool) or not isinstance(post_id, int):
        raise ValueError(f"post_id {post_id!r} is not an integer")
    return str(uuid.uuid5(POINT_NAMESPACE, f"{tenant_id}:{post_id}"))


def _match(key: str, value: Any) -> models.FieldCondition:
    # bool before int: bool is an int subclass, and Qdrant keeps them apart
    if isinstance(value, bool | int | str):
        return models.FieldCondition(key=key, match=models.MatchValue(value=value))
    if isinstance(value, list | tuple | set | frozenset):
        values = list(value)
        if not values:
            raise ValueError(f"filter {key!r}: empty list matches nothing; leave the key out")
        if all(isinstance(v, str) for v in values) or all(
            isinstance(v, int) and not isinstance(v, bool) for v in values
        ):
            return models.FieldCondition(key=key, match=models.MatchAny(any=values))
        raise ValueError(f"filter {key!r}: a list must hold only ints or only strs")
    if isinstance(value, Mapping):
        return models.FieldCondition(key=key, range=_range(key, value))
    raise ValueError(f"filter {key!r}: unsupported value {value!r} ({type(value).__name__})")


def _range(key: str, bounds: Mapping[str, Any]) -> models.Range | models.DatetimeRange:
    if not bounds or not set(bounds) <= RANGE_KEYS:
        raise ValueError(f"filter {key!r}: a range takes some of {sorted(RANGE_KEYS)}")
    values = list(bounds.values())
    if all(isinstance(v, str | datetime | date) for v in values):
        parsed: dict[str, datetime | date] = {}
        for op, v in bounds.items():
            try:
                parsed[op] = datetime.fromisoformat(v) if isinstance(v, str) else v
            except ValueError as exc:
                raise ValueError(f"filter {key!r}: {op}={v!r} is not an ISO date") from exc
        return models.DatetimeRange(**parsed)
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return models.Range(**bounds)
    raise ValueError(f"filter {key!r}: range bounds must be all numbers or all ISO dates")


def build_filter(tenant_id: str, filter_conditions: Mapping[str, Any] | None) -> models.Filter:
    """A Qdrant filter: `tenant_id` AND every condition of `filter_conditions`.

    Per key: bool/int/str → exact match, list → any of, dict → range (gt/gte/lt/lte; numbers
    give a numeric range, ISO strings or datetimes a datetime range). Nested payload keys use
    dots (`vision.is_meme`). A `tenant_id` key may only repeat `tenant_id`: the scope never
    widens.

    Raises:
        ValueError: bad tenant_id, another tenant in the conditions, or an unsupported value.
    """
    _check_tenant(tenant_id)
    must: list[models.Condition] = [
        models.FieldCondition(key="tenant_id", match=models.MatchValue(value=tenant_id))
    ]
    for key, value in (filter_conditions or {}).items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"filter key {key!r} is not a payload field name")
        if key == "tenant_id":
            if value != tenant_id:
                raise ValueError(f"filter tenant_id={value!r} outside the search's tenant")
            continue
        must.append(_match(key, value))
    return models.Filter(must=must)


def _payload(album: Mapping[str, Any], item: Mapping[str, Any], text: str) -> dict[str, Any]:
    vision = item.get("vision") or {}
    labels = vision.get("labels") or []
    return {
        "album_id": album["album_id"],
        "channel_id": album["channel_id"],
        "tenant_id": album["tenant_id"],
        "post_id": item["post_id"],
        "grouped_id": album.get("grouped_id"),
        "position": item["position"],
        "media_kind": item.get("media_kind"),
        "tags": [str(label) for label in labels],
        "vision": {
            "is_meme": bool(vision.get("is_meme", False)),
            "has_text": bool(vision.get("has_text", False)),
            "description": vision.get("description") or "",
        },
        "posted_at": album.get("posted_at"),
        "album_version": int(album["version"]),
        "text": text,
    }


class _ThreadedClient:
    """AsyncQdrantClient's interface over a synchronous client, one worker thread, in order."""

    def __init__(self, client: QdrantClient) -> None:
        self._client = client
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant-local")

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, partial(method, *args, **kwargs))

        return call

    async def upsert(self, collection_name: str, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        write = partial(upsert_in_one_transaction, self._client, collection_name, **kwargs)
        return await loop.run_in_executor(self._executor, write)


class _NoCommit:
    """A sqlite3 connection whose `with` block does not commit (the caller commits once)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def __enter__(self) -> Any:
        return self._conn

    def __exit__(self, *exc: object) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def upsert_in_one_transaction(client: QdrantClient, collection_name: str, **kwargs: Any) -> Any:
    """`client.upsert` of embedded Qdrant, committed to its SQLite file once.

    qdrant-client's local mode commits once per point, each commit with its own fsyncs: 3,000
    points took 1.31 s; in one transaction 0.23 s, as durable (scripts/bench_embeddings.py
    prints both). This reaches into qdrant-client 1.x internals (a local collection's
    `storage.storage` connection); when they are not there, it is a plain upsert.
    """
    collection = getattr(getattr(client, "_client", None), "collections", {}).get(collection_name)
    persistence: Any = getattr(collection, "storage", None)
    conn = getattr(persistence, "storage", None)
    if conn is None or not hasattr(conn, "commit"):
        return client.upsert(collection_name, **kwargs)
    persistence.storage = _NoCommit(conn)
    try:
        result = client.upsert(collection_name, **kwargs)
    except BaseException:
        persistence.storage = conn
        conn.rollback()
        raise
    persistence.storage = conn
    conn.commit()
    return result

    async def close(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._client.close)
        finally:
            self._executor.shutdown(wait=False)


class QdrantIndex:
    """The `telegram_posts` collection: upserts of assembled albums and tenant-scoped search.

    Embedded (on-disk, in-process) when `url` is empty, a Qdrant server otherwise. Embedded
    mode runs its synchronous engine on one thread of its own, keeps one process per `path`
    and ignores payload indexes: right for a single worker, tests and examples; use a server
    beyond that.

    Args:
        url: Qdrant server URL (`http://qdrant:6333`); "" for embedded mode.
        api_key: server API key ("" for none); ignored in embedded mode.
        path: the embedded store's directory (Settings.qdrant_path); required when url is "".
        embedder: computes the vectors; its `dim` sizes the collection.
        collection: collection name.
        timeout: seconds per server request.
    """

    def __init__(
        self,
        url: str = "",
        api_key: str = "",
        path: Path | None = None,
        *,
        embedder: Embedder,
        collection: str = COLLECTION,
        timeout: int = 10,
    ) -> None:
        if not url and path is None:
            raise ValueError("QdrantIndex needs a server url or an embedded path")
        self.url = url
        self.path = path
        self.embedder = embedder
        self.collection = collection
        self.timeout = timeout
        self._api_key = api_key
        self._client: AsyncQdrantClient | None = None

    @property
    def embedded(self) -> bool:
        return not self.url

    def _build_client(self) -> AsyncQdrantClient:
        if self.embedded:
            # the embedded engine is synchronous Python: run it on a thread of its own so that
            # a sink's upsert does not stall every other agent of the worker
            return cast(AsyncQdrantClient, _ThreadedClient(QdrantClient(path=str(self.path))))
        # check_compatibility would probe the server from a background thread at
        # construction and only warn; start() verifies the server answers instead
        return AsyncQdrantClient(
            url=self.url,
            api_key=self._api_key or None,
            timeout=self.timeout,
            check_compatibility=False,
        )

    async def start(self) -> None:
        """Connect, create the collection if missing and ensure its payload indexes."""
        if self._client is not None:
            return
        try:
            self._client = self._build_client()
        except (RuntimeError, OSError) as exc:  # embedded: path locked by another process
            raise self._wrap("open", exc) from exc
        try:
            await self.embedder.start()
            await self._ensure_collection()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def __aenter__(self) -> QdrantIndex:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _wrap(self, op: str, exc: BaseException) -> QdrantError:
        err = QdrantError(f"qdrant {op} failed: {exc!r}")
        if isinstance(exc, UnexpectedResponse):
            status = exc.status_code
            err.retriable = status is None or status >= 500 or status in RETRIABLE_STATUS
        else:
            # transport problems; ValueError/RuntimeError/ValidationError are requests
            # Qdrant (or embedded mode) refused and will refuse again
            err.retriable = isinstance(
                exc, ResponseHandlingException | httpx.TransportError | OSError
            )
        return err

    async def _call(
        self, op: str, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        try:
            return await fn(*args, **kwargs)
        except (
            UnexpectedResponse,
            ResponseHandlingException,
            httpx.HTTPError,
            OSError,
            ValidationError,
            ValueError,
            RuntimeError,
        ) as exc:
            raise self._wrap(op, exc) from exc

    @property
    def _live(self) -> AsyncQdrantClient:
        if self._client is None:
            raise QdrantError("QdrantIndex used before start()")
        return self._client

    async def _ensure_collection(self) -> None:
        c = self._live
        if not await self._call("collection_exists", c.collection_exists, self.collection):
            try:
                await self._call(
                    "create_collection",
                    c.create_collection,
                    self.collection,
                    vectors_config=models.VectorParams(
                        size=self.embedder.dim, distance=models.Distance.COSINE
                    ),
                )
            except QdrantError:
                # another worker may have created it in between
                if not await self._call("collection_exists", c.collection_exists, self.collection):
                    raise
        info = await self._call("get_collection", c.get_collection, self.collection)
        vectors = info.config.params.vectors
        size = vectors.size if isinstance(vectors, models.VectorParams) else None
        if size != self.embedder.dim:
            raise QdrantError(
                f"collection {self.collection!r} has vectors {vectors!r}, "
                f"the embedder makes {self.embedder.dim}-d ones"
            )
        with warnings.catch_warnings():
            # embedded mode warns that it ignores payload indexes: known, harmless
            warnings.filterwarnings("ignore", "Payload indexes have no effect", UserWarning)
            for field, schema in PAYLOAD_INDEXES.items():
                await self._call(
                    "create_payload_index",
                    c.create_payload_index,
                    self.collection,
                    field_name=field,
                    field_schema=schema,
                    wait=True,
                )

    async def upsert_albums(self, albums: Sequence[Mapping[str, Any]]) -> int:
        """Index the posts of album.assembled events; returns the number of points written.

        One point per item, id `point_id(tenant_id, post_id)`, vector of `post_text(caption,
        item vision)`. The highest version wins: of several versions of one album in the batch
        only the highest is used, and an album whose stored `album_version` is higher than the
        incoming one is skipped. Rewriting the same version is idempotent. The check and the
        write are not atomic: one album must be written by one worker at a time (the sink's
        partitioning by album_id gives that).

        Raises:
            ValueError: an event lacks a field or has a bad tenant_id.
            QdrantError: Qdrant failed (see `retriable`).
        """
        latest: dict[tuple[str, int], Mapping[str, Any]] = {}
        for album in albums:
            key = (_check_tenant(album["tenant_id"]), int(album["album_id"]))
            held = latest.get(key)
            if held is None or supersedes(int(album["version"]), int(held["version"])):
                latest[key] = album
        if not latest:
            return 0

        ids_of = {
            key: [point_id(key[0], int(item["post_id"])) for item in album["items"]]
            for key, album in latest.items()
        }
        all_ids = [pid for ids in ids_of.values() for pid in ids]
        stored = await self._call(
            "retrieve",
            self._live.retrieve,
            self.collection,
            ids=all_ids,
            with_payload=["album_version"],
        )
        stored_version = {str(p.id): int((p.payload or {}).get("album_version", 0)) for p in stored}

        points: list[tuple[str, dict[str, Any]]] = []
        for key, album in latest.items():
            version = int(album["version"])
            if any(stored_version.get(pid, 0) > version for pid in ids_of[key]):
                continue  # a newer version is already indexed
            for pid, item in zip(ids_of[key], album["items"], strict=True):
                if not supersedes(version, stored_version.get(pid)):
                    continue  # this point holds this version already (a replay)
                text = post_text(album.get("caption_text"), item.get("vision"))
                points.append((pid, _payload(album, item, text)))
        if not points:
            return 0

        vectors = await self.embedder.aembed([payload["text"] for _, payload in points])
        await self._call(
            "upsert",
            self._live.upsert,
            self.collection,
            points=[
                models.PointStruct(id=pid, vector=vector, payload=payload)
                for (pid, payload), vector in zip(points, vectors, strict=True)
            ],
            wait=True,
        )
        return len(points)

    async def search_vectors(
        self,
        collection_name: str,
        query_vector: Sequence[float],
        limit: int = 10,
        filter_conditions: Mapping[str, Any] | None = None,
        tenant_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Nearest posts of one tenant to `query_vector`, best first.

        Args:
            collection_name: the collection (normally `COLLECTION`).
            query_vector: a vector of the embedder's size.
            limit: at most this many hits.
            filter_conditions: payload conditions ANDed with the tenant (see `build_filter`),
                e.g. {"album_id": 42}, {"tags": ["cat", "dog"]}, {"vision.is_meme": True},
                {"posted_at": {"gte": "2025-01-01T00:00:00Z"}}.
            tenant_id: required; results never leave this tenant.

        Returns:
            [{"id": str, "score": float, "payload": dict}, ...]

        Raises:
            ValueError: missing or bad tenant_id, or a bad filter.
            QdrantError: Qdrant failed.
        """
        if not tenant_id:
            raise ValueError("search_vectors needs a tenant_id: results are tenant-scoped")
        query_filter = build_filter(tenant_id, filter_conditions)
        response = await self._call(
            "query_points",
            self._live.query_points,
            collection_name,
            query=[float(x) for x in query_vector],
            query_filter=query_filter,
            limit=limit,
            with_payload=True,
        )
        return [
            {"id": str(p.id), "score": float(p.score), "payload": dict(p.payload or {})}
            for p in response.points
        ]

    async def search_text(
        self,
        text: str,
        *,
        tenant_id: str,
        limit: int = 10,
        filter_conditions: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """`search_vectors` in this index's collection with the embedding of `text`."""
        _check_tenant(tenant_id)
        [vector] = await self.embedder.aembed([text])
        return await self.search_vectors(
            self.collection,
            vector,
            limit=limit,
            filter_conditions=filter_conditions,
            tenant_id=tenant_id,
        )

    async def album_points(self, tenant_id: str, album_id: int) -> list[dict[str, Any]]:
        """The points of one album of one tenant, ordered by position: [{"id", "payload"}]."""
        scroll_filter = build_filter(tenant_id, {"album_id": album_id})
        records: list[models.Record] = []
        offset: models.ExtendedPointId | None = None
        while True:
            page, offset = await self._call(
                "scroll",
                self._live.scroll,
                self.collection,
                scroll_filter=scroll_filter,
                limit=64,
                offset=offset,
                with_payload=True,
            )
            records += page
            if offset is None:
                break
        records.sort(key=lambda r: ((r.payload or {}).get("position", 0), str(r.id)))
        return [{"id": str(r.id), "payload": dict(r.payload or {})} for r in records]

    async def count(self, tenant_id: str | None = None) -> int:
        """Exact number of points, of one tenant or (None) of the whole collection."""
        count_filter = None if tenant_id is None else build_filter(tenant_id, None)
        result = await self._call(
            "count", self._live.count, self.collection, count_filter=count_filter, exact=True
        )
        return int(result.count)
