"""Generated albums → assembler → S3, Postgres, Qdrant and Neo4j, all real; replays are no-ops."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import orjson
import pytest

from storage.embeddings import Embedder
from storage.neo4j import Neo4jGraph
from storage.postgres.store import enrichment_of
from storage.qdrant import COLLECTION, QdrantIndex
from streams.generator import GeneratorConfig, Record, generate
from streams.settings import Settings
from tests.e2e.pipeline import Pipeline, consume_until, decoded
from tests.e2e.sinks_support import (
    SINKS,
    qdrant_path,
    sink_env,
    snapshot,
    wait_sinks_handled,
)

ALBUMS = 120


def first_album_id(unique: str) -> int:
    # ids of this test only: the stores are shared with other tests and earlier runs
    return 10**9 + int(unique[:6], 16) * 1000


def assembled_record(event: dict[str, Any]) -> Record:
    return Record(
        topic="album.assembled",
        key=str(event["album_id"]).encode(),
        value=orjson.dumps(event),
        kind="assembled",
        album_id=event["album_id"],
    )


def newer_version(event: dict[str, Any]) -> dict[str, Any]:
    """Version 2 of an album with different labels (as if a late vision event re-assembled it)."""
    e = copy.deepcopy(event)
    e["version"] = 2
    e["event_id"] = f"{e['album_id']}:2"
    e["vision_labels"] = ["v2-label", *e["vision_labels"]]
    e["items"][0]["vision"] = {**(e["items"][0]["vision"] or {}), "labels": ["v2-label"]}
    return e


async def check_qdrant(index: QdrantIndex, events: dict[int, dict[str, Any]], tenant: str) -> None:
    mine = {i: e for i, e in events.items() if e["tenant_id"] == tenant}
    posts = [(e, item) for e in mine.values() for item in e["items"]]
    query = Embedder().embed(["кошка спит на диване"])[0]

    async def ids(filters: dict[str, Any]) -> set[int]:
        hits = await index.search_vectors(COLLECTION, query, 10_000, filters, tenant_id=tenant)
        assert all(h["payload"]["tenant_id"] == tenant for h in hits)
        return {int(h["payload"]["post_id"]) for h in hits}

    assert await index.count(tenant) == len(posts)
    for album_id, e in list(mine.items())[:10]:
        points = await index.album_points(tenant, album_id)
        assert [p["payload"]["post_id"] for p in points] == [i["post_id"] for i in e["items"]]
        assert await ids({"album_id": album_id}) == {i["post_id"] for i in e["items"]}
    channel = next(iter(mine.values()))["channel_id"]
    assert await ids({"channel_id": channel}) == {
        i["post_id"] for e, i in posts if e["channel_id"] == channel
    }
    assert await ids({"media_kind": "video"}) == {
        i["post_id"] for _, i in posts if i["media_kind"] == "video"
    }
    labels = {"cat", "meme"}
    assert await ids({"tags": sorted(labels)}) == {
        i["post_id"] for _, i in posts if labels & set((i["vision"] or {}).get("labels", []))
    }
    assert await ids({"vision.is_meme": True}) == {
        i["post_id"] for _, i in posts if (i["vision"] or {}).get("is_meme")
    }
    assert await ids({"position": {"gte": 1, "lte": 2}}) == {
        i["post_id"] for _, i in posts if 1 <= i["position"] <= 2
    }
    cut = sorted(e["posted_at"] for e in mine.values())[len(mine) // 2]
    assert await ids({"posted_at": {"gte": cut}}) == {
        i["post_id"] for e, i in posts if e["posted_at"] >= cut
    }


async def check_neo4j(settings: Settings, events: dict[int, dict[str, Any]], tenant: str) -> None:
    mine = {i: e for i, e in events.items() if e["tenant_id"] == tenant}
    async with Neo4jGraph(
        settings.neo4j_uri, settings.neo4j_user, settings.neo4j_password.get()
    ) as graph:
        channels = Counter(e["channel_id"] for e in mine.values())
        for channel, _ in channels.most_common(3):
            got = await graph.find_albums_by_channel(channel, tenant_id=tenant)
            assert {a["album_id"] for a in got} == {
                i for i, e in mine.items() if e["channel_id"] == channel
            }
            posted = [a["posted_at"] for a in got]
            assert posted == sorted(posted, reverse=True)
        label = Counter(lb for e in mine.values() for lb in e["vision_labels"]).most_common(1)[0][0]
        got = await graph.find_albums_by_tags([label], tenant_id=tenant)
        assert {a["album_id"] for a in got} == {
            i for i, e in mine.items() if label in e["vision_labels"]
        }
        for album_id, e in list(mine.items())[:20]:
            posts = await graph.get_album_posts(album_id, ordered=True)
            assert [(p["post_id"], p["position"]) for p in posts] == [
                (i["post_id"], i["position"]) for i in e["items"]
            ]


async def test_albums_reach_every_store_and_replays_change_nothing(
    pipeline: Pipeline, base_settings: Settings, unique: str, kafka: list[str]
) -> None:
    ta, tb = f"a{unique}", f"b{unique}"
    gen = generate(
        GeneratorConfig(
            albums=ALBUMS,
            seed=11,
            tenants=(ta, tb),
            first_album_id=first_album_id(unique),
            duplicate_share=0.05,
        )
    )
    pipeline.extra_env.update(sink_env(base_settings))
    worker = pipeline.start_worker("w1")
    worker.wait_healthy()
    await pipeline.produce(gen.records)
    topic = pipeline.topic("album.assembled")
    records = await consume_until(
        kafka, topic, lambda rs: len({r.key for r in rs}) >= ALBUMS, within=180
    )
    events = {e["album_id"]: e for e in decoded(records)}
    assert len(events) == ALBUMS
    assert {(e["status"], e["version"]) for e in events.values()} == {("complete", 1)}
    counts = await wait_sinks_handled(worker, len(records), within=240)
    assert {s: counts[s]["albums_parked"] for s in SINKS} == dict.fromkeys(SINKS, 0)
    assert {s: counts[s]["status"] for s in SINKS} == dict.fromkeys(SINKS, "ok")
    # the /stores view: the album's tenant sees it in all four stores, the other none of it
    album_a = next(i for i, e in events.items() if e["tenant_id"] == ta)
    status, body = worker.get(f"/stores/{album_a}/?tenant_id={ta}", timeout=30)
    assert status == 200, body
    found = body["stores"]
    assert found["s3"]["document"]["album_id"] == album_a
    assert found["postgres"]["media_groups.meta"]["enrichment"] == enrichment_of(events[album_a])
    assert found["neo4j"]["album"]["album_id"] == album_a
    assert {p["payload"]["album_id"] for p in found["qdrant"]["points"]} == {album_a}
    status, body = worker.get(f"/stores/{album_a}/?tenant_id={tb}", timeout=30)
    assert status == 200, body
    hidden = body["stores"]
    assert hidden["s3"]["document"] is None
    assert hidden["postgres"]["media_groups.meta"] is None
    assert hidden["neo4j"] == {"album": None, "posts": []}
    assert hidden["qdrant"]["points"] == []
    assert worker.get(f"/stores/{album_a}/", timeout=30)[0] == 400  # tenant_id is required
    assert worker.stop() == 0  # releases the embedded Qdrant store

    snap = await snapshot(base_settings, events, qdrant_path(pipeline))
    for album_id, e in events.items():
        # S3: the gzip document is the album.assembled event itself, tagged with its version
        assert snap["s3"][album_id] == (e, 1)
        assert snap["postgres"][album_id]["enrichment"] == enrichment_of(e)
        album, _posts = snap["neo4j"][album_id]
        assert (album["version"], album["status"], album["channel_id"]) == (
            1,
            "complete",
            e["channel_id"],
        )
        assert album["tags"] == sorted(e["vision_labels"])
        assert [p["payload"]["album_id"] for p in snap["qdrant"][album_id]] == [album_id] * len(
            e["items"]
        )
    await check_neo4j(base_settings, events, ta)
    async with QdrantIndex(path=qdrant_path(pipeline), embedder=Embedder()) as index:
        await check_qdrant(index, events, ta)
        await check_qdrant(index, events, tb)
        # tenant isolation: tenant A never sees B's points, whatever the filter says
        album_b = next(i for i, e in events.items() if e["tenant_id"] == tb)
        query = [0.0] * 511 + [1.0]
        assert await index.search_vectors(COLLECTION, query, 100, {"album_id": album_b}, ta) == []
        with pytest.raises(ValueError, match="tenant"):
            await index.search_vectors(COLLECTION, query, 100, {"tenant_id": tb}, ta)

    # A newer version of five albums wins everywhere ...
    newer = [newer_version(events[i]) for i in list(events)[:5]]
    worker = pipeline.start_worker("w1")
    worker.wait_healthy()
    await pipeline.produce([assembled_record(e) for e in newer])
    await wait_sinks_handled(worker, len(newer), within=120)
    assert worker.stop() == 0
    latest = {**events, **{e["album_id"]: e for e in newer}}
    before = await snapshot(base_settings, latest, qdrant_path(pipeline))
    for e in newer:
        assert before["s3"][e["album_id"]] == (e, 2)
        assert before["postgres"][e["album_id"]]["enrichment"]["version"] == 2
        assert before["neo4j"][e["album_id"]][0]["tags"] == sorted(e["vision_labels"])
        first_point = before["qdrant"][e["album_id"]][0]["payload"]
        assert (first_point["album_version"], first_point["tags"]) == (2, ["v2-label"])

    # ... and replaying every version-1 event (older than the stored version 2 for five albums,
    # the same version for the others) changes nothing.
    worker = pipeline.start_worker("w1")
    worker.wait_healthy()
    replay = [assembled_record(orjson.loads(r.value)) for r in records if r.value is not None]
    await pipeline.produce(replay)
    counts = await wait_sinks_handled(worker, len(replay), within=240)
    # S3 and Neo4j count what they actually changed (Postgres and Qdrant count rows sent)
    assert (counts["s3"]["albums_changed"], counts["neo4j"]["albums_changed"]) == (0, 0)
    assert worker.stop() == 0
    after = await snapshot(base_settings, latest, qdrant_path(pipeline))
    assert after == before
