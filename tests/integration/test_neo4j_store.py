"""storage.neo4j against the local Neo4j: schema, idempotent versioned upserts, the queries."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from neo4j import AsyncDriver, AsyncGraphDatabase
from neo4j.exceptions import AuthError, ServiceUnavailable

from storage.errors import TenantConflict
from storage.neo4j import Neo4jError, Neo4jGraph
from streams.settings import Settings
from tests.conftest import free_port


@pytest.fixture(scope="session")
async def graph(neo4j_settings: Settings) -> AsyncIterator[Neo4jGraph]:
    s = neo4j_settings
    async with Neo4jGraph(s.neo4j_uri, s.neo4j_user, s.neo4j_password.get()) as g:
        yield g


@pytest.fixture(scope="session")
async def driver(neo4j_settings: Settings) -> AsyncIterator[AsyncDriver]:
    """A plain driver to look at the graph behind the store's back."""
    s = neo4j_settings
    async with AsyncGraphDatabase.driver(
        s.neo4j_uri, auth=(s.neo4j_user, s.neo4j_password.get())
    ) as d:
        yield d


class Ids:
    """Random ids far from real Telegram ones, so reruns and other tests never collide."""

    def __init__(self, unique: str) -> None:
        self.base = random.randrange(10**15, 9 * 10**15, 1000)
        self.unique = unique
        self.albums: set[int] = set()
        self.posts: set[int] = set()
        self.channels: set[int] = set()

    def album(self, n: int) -> int:
        self.albums.add(self.base + n)
        return self.base + n

    def post(self, n: int) -> int:
        self.posts.add(self.base + 500 + n)
        return self.base + 500 + n

    def channel(self, n: int) -> int:
        self.channels.add(-(self.base + n))
        return -(self.base + n)

    def tag(self, name: str) -> str:
        return f"{name}-{self.unique}"


@pytest.fixture
async def ids(unique: str, driver: AsyncDriver) -> AsyncIterator[Ids]:
    made = Ids(unique)
    yield made
    await driver.execute_query(
        "MATCH (n) WHERE (n:Album AND n.album_id IN $albums) OR (n:Post AND n.post_id IN $posts)"
        " OR (n:Channel AND n.channel_id IN $channels) OR (n:Tag AND n.name ENDS WITH $suffix)"
        " DETACH DELETE n",
        albums=list(made.albums),
        posts=list(made.posts),
        channels=list(made.channels),
        suffix=f"-{made.unique}",
    )


def assembled(
    ids: Ids,
    n: int,
    version: int = 1,
    *,
    channel: int = 0,
    labels: Sequence[str] = ("cat", "sofa"),
    posts: list[tuple[int, int]] | None = None,
    posted_at: str | None = "2025-01-30T10:00:00Z",
    status: str = "complete",
    caption: str | None = "Новости дня",
) -> dict[str, Any]:
    """An album.assembled event; `posts` are (post number, position) pairs."""
    album_id = ids.album(n)
    posts = posts if posts is not None else [(n * 10 + 2, 2), (n * 10, 0), (n * 10 + 1, 1)]
    return {
        "schema": "album.assembled/v1",
        "event_id": f"{album_id}:{version}",
        "album_id": album_id,
        "version": version,
        "status": status,
        "tenant_id": "acme",
        "channel_id": ids.channel(channel),
        "grouped_id": 10**12 + n,
        "album_kind": "photo",
        "items_count": len(posts),
        "items_analyzed": len(posts),
        "caption_text": caption,
        "posted_at": posted_at,
        "vision_summary": f"summary v{version}",
        "vision_labels": [ids.tag(label) for label in labels],
        "ocr_text": "",
        "has_meme": False,
        "has_text": False,
        "items": [
            {"post_id": ids.post(p), "position": pos, "media_kind": "photo", "vision": {}}
            for p, pos in posts
        ],
        "assembly_started_at": "2025-01-30T10:00:03Z",
        "assembly_completed_at": "2025-01-30T10:00:09Z",
        "assembly_lag_seconds": 6.2,
    }


async def snapshot(driver: AsyncDriver, ids: Ids) -> dict[str, Any]:
    """Every node and edge touching the test's ids, as sorted lists (duplicates show)."""
    albums, _, _ = await driver.execute_query(
        "MATCH (a:Album) WHERE a.album_id IN $ids RETURN properties(a) AS p ORDER BY a.album_id",
        ids=list(ids.albums),
    )
    edges, _, _ = await driver.execute_query(
        "MATCH (a:Album)-[r]-(n) WHERE a.album_id IN $ids "
        "RETURN a.album_id AS a, type(r) AS t, properties(r) AS p, "
        "coalesce(n.post_id, n.channel_id, n.name) AS n",
        ids=list(ids.albums),
    )
    nodes, _, _ = await driver.execute_query(
        "MATCH (n) WHERE (n:Post AND n.post_id IN $posts) "
        "OR (n:Channel AND n.channel_id IN $channels) OR (n:Tag AND n.name ENDS WITH $suffix) "
        "RETURN labels(n) AS l, properties(n) AS p",
        posts=list(ids.posts),
        channels=list(ids.channels),
        suffix=f"-{ids.unique}",
    )
    return {
        "albums": [r["p"] for r in albums],
        "edges": sorted((r["a"], r["t"], sorted(r["p"].items()), str(r["n"])) for r in edges),
        "nodes": sorted((r["l"], sorted(r["p"].items())) for r in nodes),
    }


async def tags_of(graph: Neo4jGraph, album_id: int) -> list[str]:
    album = await graph.get_album(album_id)
    assert album is not None
    return list(album["tags"])


async def test_start_ensures_the_uniqueness_constraints(
    graph: Neo4jGraph, driver: AsyncDriver
) -> None:
    await graph.ensure_schema()  # again: IF NOT EXISTS, no error
    records, _, _ = await driver.execute_query(
        "SHOW CONSTRAINTS YIELD type, labelsOrTypes, properties "
        "WHERE type = 'UNIQUENESS' RETURN labelsOrTypes AS l, properties AS p"
    )
    unique = {(r["l"][0], r["p"][0]) for r in records if len(r["l"]) == len(r["p"]) == 1}
    expected = {("Album", "album_id"), ("Channel", "channel_id"), ("Post", "post_id")}
    assert expected | {("Tag", "name")} <= unique


async def test_a_batch_is_found_by_channel_tags_and_posts(graph: Neo4jGraph, ids: Ids) -> None:
    batch = [
        assembled(ids, 1, labels=["cat", "sofa"], posted_at="2025-01-30T10:00:00Z"),
        # 09:30 UTC: older than album 1 although its local time reads later
        assembled(ids, 2, labels=["cat"], posted_at="2025-01-30T12:30:00+03:00"),
        assembled(ids, 3, labels=["sofa", "dog", "cat"], posted_at=None),
        assembled(ids, 4, channel=1, labels=["dog"], posted_at="2025-02-01T00:00:00Z"),
    ]
    assert await graph.create_album_node_and_relationships(batch) == 4

    album = await graph.get_album(ids.album(1))
    assert album is not None
    assert album["album_id"] == ids.album(1)
    assert album["channel_id"] == ids.channel(0)
    assert album["grouped_id"] == 10**12 + 1
    assert album["version"] == 1
    assert album["status"] == "complete"
    assert album["tenant_id"] == "acme"
    assert album["items_count"] == 3
    assert album["album_kind"] == "photo"
    assert album["caption_text"] == "Новости дня"
    assert album["posted_at"] == "2025-01-30T10:00:00+00:00"
    assert album["tags"] == sorted([ids.tag("cat"), ids.tag("sofa")])
    assert await graph.get_album(ids.album(99)) is None

    by_channel = await graph.find_albums_by_channel(ids.channel(0))
    assert [a["album_id"] for a in by_channel] == [ids.album(1), ids.album(2), ids.album(3)]
    assert by_channel[2]["posted_at"] is None
    assert [a["album_id"] for a in await graph.find_albums_by_channel(ids.channel(0), 2)] == [
        ids.album(1),
        ids.album(2),
    ]
    assert [a["album_id"] for a in await graph.find_albums_by_channel(ids.channel(1))] == [
        ids.album(4)
    ]
    assert await graph.find_albums_by_channel(ids.channel(0), tenant_id="other") == []

    cat, sofa, dog = ids.tag("cat"), ids.tag("sofa"), ids.tag("dog")
    anyof = await graph.find_albums_by_tags([cat, sofa, dog, ids.tag("nowhere")])
    assert [(a["album_id"], a["matched_count"]) for a in anyof] == [
        (ids.album(3), 3),
        (ids.album(1), 2),
        (ids.album(2), 1),
        (ids.album(4), 1),
    ]
    assert anyof[1]["matched_tags"] == sorted([cat, sofa])
    allof = await graph.find_albums_by_tags([cat, sofa], match_all=True)
    assert [a["album_id"] for a in allof] == [ids.album(1), ids.album(3)]  # 2 each: by id
    assert [a["album_id"] for a in await graph.find_albums_by_tags([dog], limit=1)] == [
        ids.album(3)
    ]
    assert await graph.find_albums_by_tags([]) == []
    assert await graph.find_albums_by_tags([cat], tenant_id="other") == []

    posts = await graph.get_album_posts(ids.album(1))
    assert posts == [
        {"post_id": ids.post(10), "position": 0, "media_kind": "photo"},
        {"post_id": ids.post(11), "position": 1, "media_kind": "photo"},
        {"post_id": ids.post(12), "position": 2, "media_kind": "photo"},
    ]
    unordered = await graph.get_album_posts(ids.album(1), ordered=False)
    assert sorted(unordered, key=lambda p: p["position"]) == posts
    assert await graph.get_album_posts(ids.album(99)) == []


async def test_rewriting_the_same_batch_changes_nothing(
    graph: Neo4jGraph, driver: AsyncDriver, ids: Ids
) -> None:
    batch = [assembled(ids, n, labels=["cat", "sofa"]) for n in range(1, 4)]
    assert await graph.create_album_node_and_relationships(batch) == 3
    before = await snapshot(driver, ids)
    assert len(before["albums"]) == 3
    # per album: 1 HAS_ALBUM + 2 TAGGED + 3 CONTAINS; nodes: 1 channel, 2 tags, 9 posts
    assert len(before["edges"]) == 3 * 6
    assert len(before["nodes"]) == 1 + 2 + 9

    assert await graph.create_album_node_and_relationships(batch) == 0
    assert await graph.create_album_node_and_relationships(batch[::-1]) == 0
    assert await snapshot(driver, ids) == before


async def test_an_older_version_changes_nothing(
    graph: Neo4jGraph, driver: AsyncDriver, ids: Ids
) -> None:
    assert await graph.create_album_node_and_relationships([assembled(ids, 1, 2)]) == 1
    before = await snapshot(driver, ids)

    older = assembled(
        ids,
        1,
        1,
        channel=1,
        labels=["dog"],
        posts=[(7, 0)],
        status="partial",
        caption="old",
        posted_at="2020-01-01T00:00:00Z",
    )
    # the stale album is skipped, a new one in the same batch is still written
    assert await graph.create_album_node_and_relationships([older, assembled(ids, 2)]) == 1
    after = await snapshot(driver, ids)
    assert after["albums"][0] == before["albums"][0]
    assert [e for e in after["edges"] if e[0] == ids.album(1)] == before["edges"]
    assert await tags_of(graph, ids.album(1)) == sorted([ids.tag("cat"), ids.tag("sofa")])
    assert await graph.find_albums_by_tags([ids.tag("dog")]) == []
    assert await graph.find_albums_by_channel(ids.channel(1)) == []


async def test_a_newer_version_replaces_props_tags_posts_and_channel(
    graph: Neo4jGraph, driver: AsyncDriver, ids: Ids
) -> None:
    v1 = assembled(ids, 1, 1, labels=["cat", "sofa"], posts=[(1, 0), (2, 1)], status="partial")
    assert await graph.create_album_node_and_relationships([v1]) == 1

    v2 = assembled(
        ids,
        1,
        2,
        channel=1,
        labels=["sofa", "dog", "dog"],
        posts=[(3, 0), (1, 1)],
        caption=None,
        posted_at="2025-01-30T11:00:00Z",
    )
    assert await graph.create_album_node_and_relationships([v2]) == 1

    album = await graph.get_album(ids.album(1))
    assert album is not None
    assert (album["version"], album["status"], album["caption_text"]) == (2, "complete", None)
    assert album["posted_at"] == "2025-01-30T11:00:00+00:00"
    assert album["channel_id"] == ids.channel(1)
    assert album["tags"] == sorted([ids.tag("sofa"), ids.tag("dog")])
    assert await graph.find_albums_by_tags([ids.tag("cat")]) == []
    assert await graph.find_albums_by_channel(ids.channel(0)) == []
    assert [p["post_id"] for p in await graph.get_album_posts(ids.album(1))] == [
        ids.post(3),
        ids.post(1),
    ]
    edges = (await snapshot(driver, ids))["edges"]
    assert sorted(e[1] for e in edges) == ["CONTAINS"] * 2 + ["HAS_ALBUM"] + ["TAGGED"] * 2


async def test_the_highest_version_in_one_batch_wins(graph: Neo4jGraph, ids: Ids) -> None:
    newer = assembled(ids, 1, 3, labels=["dog"])
    batch = [assembled(ids, 1, 1), newer, assembled(ids, 1, 2, labels=["cat"])]
    assert await graph.create_album_node_and_relationships(batch) == 1
    album = await graph.get_album(ids.album(1))
    assert album is not None
    assert album["version"] == 3
    assert album["tags"] == [ids.tag("dog")]

    assert await graph.create_album_node_and_relationships(batch[::-1]) == 0


async def test_a_bad_query_argument_is_not_retriable(graph: Neo4jGraph) -> None:
    with pytest.raises(Neo4jError) as caught:
        await graph.find_albums_by_channel(1, limit=-1)
    assert caught.value.retriable is False


async def test_a_malformed_event_is_refused_before_sending(graph: Neo4jGraph) -> None:
    with pytest.raises(ValueError, match="malformed"):
        await graph.create_album_node_and_relationships([{"album_id": 1}])


async def test_a_wrong_password_is_not_retriable(neo4j_settings: Settings) -> None:
    s = neo4j_settings
    store = Neo4jGraph(s.neo4j_uri, s.neo4j_user, "wrong-password")
    with pytest.raises(Neo4jError) as caught:
        await store.start()
    assert caught.value.retriable is False
    assert isinstance(caught.value.__cause__, AuthError)


async def test_an_unreachable_server_is_retriable() -> None:
    store = Neo4jGraph(f"bolt://127.0.0.1:{free_port()}", "neo4j", "x")
    with pytest.raises(Neo4jError) as caught:
        await store.start()
    assert caught.value.retriable is True
    assert isinstance(caught.value.__cause__, ServiceUnavailable)


async def test_use_before_start_is_an_error() -> None:
    with pytest.raises(Neo4jError, match="before start"):
        await Neo4jGraph("bolt://127.0.0.1:1", "neo4j", "x").get_album(1)


async def test_another_tenants_album_or_post_is_refused_never_overwritten(
    graph: Neo4jGraph, ids: Ids, driver: AsyncDriver
) -> None:
    ours = assembled(ids, 1)
    await graph.create_album_node_and_relationships([ours])
    before = await snapshot(driver, ids)
    # the same album id for another tenant, at a higher version
    theirs = {**assembled(ids, 1, version=7), "tenant_id": "beta", "caption_text": "beta's"}
    with pytest.raises(TenantConflict) as refused:
        await graph.create_album_node_and_relationships([theirs])
    assert refused.value.ids == [ids.album(1)]
    assert not refused.value.retriable
    assert "beta's" not in str(refused.value)
    # another album id of beta's that claims acme's posts
    claims = {**assembled(ids, 2, posts=[(10, 0), (11, 1)]), "tenant_id": "beta"}
    with pytest.raises(TenantConflict):
        await graph.create_album_node_and_relationships([claims])
    assert await snapshot(driver, ids) == before
    # each tenant sees its own only
    assert await graph.get_album(ids.album(1), tenant_id="beta") is None
    assert await graph.get_album_posts(ids.album(1), tenant_id="beta") == []
    album = await graph.get_album(ids.album(1), tenant_id="acme")
    assert album is not None
    assert album["caption_text"] == "Новости дня"
