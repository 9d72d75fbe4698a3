"""Neo4j storage: assembled albums as a graph of channels, albums, posts and tags."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, LiteralString

from neo4j import (
    AsyncDriver,
    AsyncGraphDatabase,
    AsyncManagedTransaction,
    AsyncSession,
    unit_of_work,
)
from neo4j import exceptions as neo4j_exc
from neo4j.time import DateTime

from schemas.events import supersedes
from storage.errors import StorageError, TenantConflict

__all__ = ["Neo4jError", "Neo4jGraph", "album_rows"]

# Schema commands cannot share a transaction with writes: one auto-commit statement each.
CONSTRAINTS: tuple[LiteralString, ...] = (
    "CREATE CONSTRAINT album_id_unique IF NOT EXISTS FOR (a:Album) REQUIRE a.album_id IS UNIQUE",
    "CREATE CONSTRAINT channel_id_unique IF NOT EXISTS "
    "FOR (c:Channel) REQUIRE c.channel_id IS UNIQUE",
    "CREATE CONSTRAINT post_id_unique IF NOT EXISTS FOR (p:Post) REQUIRE p.post_id IS UNIQUE",
    "CREATE CONSTRAINT tag_name_unique IF NOT EXISTS FOR (t:Tag) REQUIRE t.name IS UNIQUE",
)

# One statement per batch. The WHERE drops rows whose stored version is not older, so an
# album at a higher (or the same) version keeps its props and edges untouched. The edge
# upkeep lives in unit subqueries: they never change the number of outer rows, so an album
# without tags or without a previous channel is still counted.
WRITE_ALBUMS: LiteralString = """
UNWIND $albums AS row
MERGE (a:Album {album_id: row.album_id})
WITH a, row
WHERE (a.version IS NULL OR a.version < row.version)
  AND (a.tenant_id IS NULL OR a.tenant_id = row.tenant_id)
SET a.grouped_id = row.grouped_id,
    a.album_kind = row.album_kind,
    a.items_count = row.items_count,
    a.caption_text = row.caption_text,
    a.posted_at = row.posted_at,
    a.tenant_id = row.tenant_id,
    a.version = row.version,
    a.status = row.status
WITH a, row
CALL (a, row) {
  OPTIONAL MATCH (old:Channel)-[h:HAS_ALBUM]->(a) WHERE old.channel_id <> row.channel_id
  DELETE h
}
CALL (a, row) {
  MERGE (c:Channel {channel_id: row.channel_id})
  MERGE (c)-[:HAS_ALBUM]->(a)
}
CALL (a, row) {
  OPTIONAL MATCH (a)-[t:TAGGED]->(old:Tag) WHERE NOT old.name IN row.tags
  DELETE t
}
CALL (a, row) {
  UNWIND row.tags AS name
  MERGE (t:Tag {name: name})
  MERGE (a)-[:TAGGED]->(t)
}
CALL (a, row) {
  OPTIONAL MATCH (a)-[c:CONTAINS]->(old:Post)
  WHERE NOT old.post_id IN [i IN row.items | i.post_id]
  DELETE c
}
CALL (a, row) {
  UNWIND row.items AS item
  MERGE (p:Post {post_id: item.post_id})
  SET p.media_kind = item.media_kind, p.tenant_id = row.tenant_id
  MERGE (a)-[c:CONTAINS]->(p)
  SET c.position = item.position
}
RETURN count(a) AS written
"""

#: album ids of a batch whose Album, or one of whose posts, another tenant holds: refused as
#: a whole before anything is written (TenantConflict), in the write's own transaction
TENANT_CONFLICTS: LiteralString = """
UNWIND $albums AS row
OPTIONAL MATCH (a:Album {album_id: row.album_id})
OPTIONAL MATCH (p:Post) WHERE p.post_id IN [i IN row.items | i.post_id]
WITH row, a, collect(p) AS posts
WHERE (a IS NOT NULL AND a.tenant_id <> row.tenant_id)
   OR any(p IN posts WHERE p.tenant_id IS NOT NULL AND p.tenant_id <> row.tenant_id)
RETURN row.album_id AS album_id
"""

ALBUM_PROPS = (
    "album_id",
    "grouped_id",
    "album_kind",
    "items_count",
    "caption_text",
    "posted_at",
    "tenant_id",
    "version",
    "status",
    "channel_id",
)

# An album as a map: its props, its channel and its tag names.
ALBUM_MAP: LiteralString = (
    "a {.*, channel_id: head([(c:Channel)-[:HAS_ALBUM]->(a) | c.channel_id]), "
    "tags: [(a)-[:TAGGED]->(t:Tag) | t.name]}"
)

GET_ALBUM: LiteralString = (
    "MATCH (a:Album {album_id: $album_id}) "
    "WHERE $tenant_id IS NULL OR a.tenant_id = $tenant_id "
    "RETURN " + ALBUM_MAP + " AS album"
)

BY_CHANNEL: LiteralString = (
    "MATCH (:Channel {channel_id: $channel_id})-[:HAS_ALBUM]->(a:Album) "
    "WHERE $tenant_id IS NULL OR a.tenant_id = $tenant_id "
    "RETURN " + ALBUM_MAP + " AS album "
    # DESC puts nulls first in Cypher: albums without posted_at go last
    "ORDER BY a.posted_at IS NULL, a.posted_at DESC, a.album_id DESC LIMIT $limit"
)

BY_TAGS: LiteralString = (
    "MATCH (t:Tag)<-[:TAGGED]-(a:Album) "
    "WHERE t.name IN $tags AND ($tenant_id IS NULL OR a.tenant_id = $tenant_id) "
    "WITH a, collect(t.name) AS matched "
    "WHERE size(matched) >= $needed "
    "RETURN " + ALBUM_MAP + " AS album, matched "
    "ORDER BY size(matched) DESC, a.album_id LIMIT $limit"
)

ALBUM_POSTS: LiteralString = (
    "MATCH (a:Album {album_id: $album_id})-[c:CONTAINS]->(p:Post) "
    "WHERE $tenant_id IS NULL OR a.tenant_id = $tenant_id "
    "RETURN p.post_id AS post_id, c.position AS position, p.media_kind AS media_kind"
)


class Neo4jError(StorageError):
    """A Neo4j call failed; lost connections and transient server errors are retriable."""


DRIVER_ERRORS = (neo4j_exc.Neo4jError, neo4j_exc.DriverError, OSError)

# Not retryable in the driver's sense (the commit may have landed), but the album writes
# are idempotent, so trying again is safe; a pool timeout is plain congestion.
RETRIABLE_ANYWAY = (neo4j_exc.IncompleteCommit, neo4j_exc.ConnectionAcquisitionTimeoutError)


def _wrap(what: str, exc: BaseException) -> Neo4jError:
    err = Neo4jError(f"neo4j {what} failed: {type(exc).__name__}: {exc}")
    if isinstance(exc, (*RETRIABLE_ANYWAY, OSError)):
        err.retriable = True
    elif isinstance(exc, neo4j_exc.Neo4jError | neo4j_exc.DriverError):
        err.retriable = exc.is_retryable()
    return err


def _posted_at(value: Any) -> Any:
    """An ISO timestamp as an aware datetime (stored as a Neo4j DateTime, so it orders by
    instant whatever the offset); naive means UTC; anything else is kept as it came."""
    if not isinstance(value, str):
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _row(album: Mapping[str, Any]) -> dict[str, Any]:
    try:
        items = [
            {
                "post_id": int(item["post_id"]),
                "position": int(item["position"]),
                "media_kind": item.get("media_kind"),
            }
            for item in album.get("items") or ()
        ]
        return {
            "album_id": int(album["album_id"]),
            "version": int(album["version"]),
            "status": album.get("status"),
            "tenant_id": album.get("tenant_id"),
            "channel_id": int(album["channel_id"]),
            "grouped_id": album.get("grouped_id"),
            "album_kind": album.get("album_kind"),
            "items_count": album.get("items_count"),
            "caption_text": album.get("caption_text"),
            "posted_at": _posted_at(album.get("posted_at")),
            # dict.fromkeys: no duplicates, first-seen order kept
            "tags": list(dict.fromkeys(t for t in album.get("vision_labels") or () if t)),
            "items": items,
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"album event {album.get('event_id')!r} is malformed: {exc!r}") from exc


def album_rows(albums: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The Cypher parameters of a batch: one row per album_id, its highest version (the
    first event on a tie, `supersedes`), so one statement never writes an album twice."""
    best: dict[int, dict[str, Any]] = {}
    for album in albums:
        row = _row(album)
        seen = best.get(row["album_id"])
        if seen is None or supersedes(row["version"], seen["version"]):
            best[row["album_id"]] = row
    return list(best.values())


def _plain(value: Any) -> Any:
    """Neo4j temporal values back to ISO strings, so results are plain Python."""
    if isinstance(value, DateTime):
        return value.to_native().isoformat()
    return value


def _album(record: Mapping[str, Any]) -> dict[str, Any]:
    # a null property is absent in Neo4j; callers get every key of the model
    album: dict[str, Any] = dict.fromkeys(ALBUM_PROPS)
    album.update((k, _plain(v)) for k, v in record.items())
    album["tags"] = sorted(album.get("tags") or ())
    return album


class Neo4jGraph:
    """The album graph in Neo4j.

    Args:
        uri: Bolt or Neo4j URI (`bolt://127.0.0.1:7687`, `neo4j://...` for a cluster).
        user, password: basic-auth credentials.
        database: the database to use; None means the server's default (home) database.
        timeout: seconds a transaction may run (the server ends it after) and a connection may
            be waited for.
    """

    def __init__(
        self,
        uri: str,
        user: str,
        password: str,
        *,
        database: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.uri = uri
        self.database = database
        self.timeout = timeout
        self._auth = (user, password)
        self._driver: AsyncDriver | None = None

    async def start(self) -> None:
        """Connect, check with `RETURN 1` and ensure the uniqueness constraints."""
        try:
            self._driver = AsyncGraphDatabase.driver(
                self.uri,
                auth=self._auth,
                # the driver retries briefly (deadlocks, leader changes); outages are left to
                # the sink's backoff, which reports them in /health/detailed
                max_transaction_retry_time=5.0,
                connection_timeout=5.0,
                connection_acquisition_timeout=self.timeout,
            )
            # auto-commit on purpose: a dead server fails now, not after the retry budget
            async with self._session() as session:
                result = await session.run("RETURN 1 AS ok")
                await result.consume()
            await self.ensure_schema()
        except DRIVER_ERRORS as exc:
            await self.close()
            raise _wrap("connect", exc) from exc
        except BaseException:
            await self.close()  # no driver left open behind a failed start
            raise

    async def ensure_schema(self) -> None:
        """Create the uniqueness constraints of Album, Channel, Post and Tag if missing."""
        for statement in CONSTRAINTS:
            try:
                async with self._session() as session:
                    result = await session.run(statement)
                    await result.consume()
            except neo4j_exc.ClientError as exc:
                # another worker created it between IF NOT EXISTS and the commit
                if not (exc.code or "").endswith("AlreadyExists"):
                    raise _wrap("ensure_schema", exc) from exc
            except DRIVER_ERRORS as exc:
                raise _wrap("ensure_schema", exc) from exc

    async def close(self) -> None:
        if self._driver is not None:
            await self._driver.close()
        self._driver = None

    async def __aenter__(self) -> Neo4jGraph:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _session(self) -> AsyncSession:
        if self._driver is None:
            raise Neo4jError("Neo4jGraph used before start()")
        # the driver's shared bookmarks: a read after a write sees it, on a cluster too
        return self._driver.session(
            database=self.database,
            bookmark_manager=self._driver.execute_query_bookmark_manager,
        )

    async def _query(
        self, what: str, query: LiteralString, *, write: bool = False, **params: Any
    ) -> list[dict[str, Any]]:
        """Run `query` in a managed transaction (the driver retries transient failures)."""

        @unit_of_work(timeout=self.timeout)
        async def work(tx: AsyncManagedTransaction) -> list[dict[str, Any]]:
            result = await tx.run(query, params)
            return await result.data()

        try:
            async with self._session() as session:
                if write:
                    return await session.execute_write(work)
                return await session.execute_read(work)
        except DRIVER_ERRORS as exc:
            raise _wrap(what, exc) from exc

    async def create_album_node_and_relationships(self, albums: Sequence[Mapping[str, Any]]) -> int:
        """Upsert a batch of album.assembled events in one statement and one transaction.

        The highest version wins: an album stored at the same or a higher version is left
        as it is; a newer one replaces the props, the tag set and the contained posts.
        Returns how many albums were written (skipped ones are not counted). A malformed
        event raises ValueError before anything is sent.
        """
        rows = album_rows(albums)
        if not rows:
            return 0

        @unit_of_work(timeout=self.timeout)
        async def work(tx: AsyncManagedTransaction) -> list[dict[str, Any]]:
            taken = await (await tx.run(TENANT_CONFLICTS, albums=rows)).data()
            if taken:
                # nothing of another tenant is overwritten: the batch is refused, and the
                # sink retries its albums one by one so that only these are parked
                raise TenantConflict("neo4j", [int(r["album_id"]) for r in taken])
            return await (await tx.run(WRITE_ALBUMS, albums=rows)).data()

        try:
            async with self._session() as session:
                records = await session.execute_write(work)
        except DRIVER_ERRORS as exc:
            raise _wrap("create_album_node_and_relationships", exc) from exc
        return int(records[0]["written"]) if records else 0

    async def get_album(
        self, album_id: int, *, tenant_id: str | None = None
    ) -> dict[str, Any] | None:
        """The album's props with its `channel_id` and sorted `tags`, or None (with
        `tenant_id`: None unless that tenant's)."""
        records = await self._query("get_album", GET_ALBUM, album_id=album_id, tenant_id=tenant_id)
        return _album(records[0]["album"]) if records else None

    async def find_albums_by_channel(
        self, channel_id: int, limit: int = 100, *, tenant_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The channel's albums, newest `posted_at` first (albums without it last)."""
        records = await self._query(
            "find_albums_by_channel",
            BY_CHANNEL,
            channel_id=channel_id,
            tenant_id=tenant_id,
            limit=limit,
        )
        return [_album(r["album"]) for r in records]

    async def find_albums_by_tags(
        self,
        tags: Sequence[str],
        *,
        match_all: bool = False,
        limit: int = 100,
        tenant_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Albums tagged with any (or, with `match_all`, every) one of `tags`.

        Each album carries `matched_tags` (sorted) and `matched_count`; the most matches
        come first, then the lowest album_id.
        """
        wanted = list(dict.fromkeys(t for t in tags if t))
        if not wanted:
            return []
        records = await self._query(
            "find_albums_by_tags",
            BY_TAGS,
            tags=wanted,
            needed=len(wanted) if match_all else 1,
            tenant_id=tenant_id,
            limit=limit,
        )
        albums = []
        for r in records:
            album = _album(r["album"])
            album["matched_tags"] = sorted(r["matched"])
            album["matched_count"] = len(r["matched"])
            albums.append(album)
        return albums

    async def get_album_posts(
        self, album_id: int, ordered: bool = True, *, tenant_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The album's posts as {post_id, position, media_kind}, by position when `ordered`
        (with `tenant_id`: none unless the album is that tenant's)."""
        query = ALBUM_POSTS + " ORDER BY c.position" if ordered else ALBUM_POSTS
        return await self._query("get_album_posts", query, album_id=album_id, tenant_id=tenant_id)
