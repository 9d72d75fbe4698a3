"""The issue's case through the real pipeline: tenant B's albums reuse tenant A's post ids and
arrive before A's vision, whose events carry no album_id (the post index joins them). Neither
tenant takes the other's posts: every album of both is assembled complete, each with its own
tenant's vision only."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.generator import Record
from tests.e2e.pipeline import Pipeline, consume_until, decoded

pytestmark = pytest.mark.e2e

ALBUMS = 20
ITEMS = 3


def album(album_id: int, tenant: str, posts: list[int]) -> dict[str, Any]:
    return {
        "schema": "albums.parsed/v1",
        "event_id": f"{tenant}-a-{album_id}",
        "tenant_id": tenant,
        "channel_id": -1001234567890,
        "grouped_id": album_id,
        "album_id": album_id,
        "posted_at": "2025-01-30T12:00:00Z",
        "caption_text": f"album of {tenant}",
        "items": [
            {"post_id": p, "message_id": 1 + i, "position": i, "media_kind": "jpg"}
            for i, p in enumerate(posts)
        ],
    }


def vision(tenant: str, post_id: int) -> dict[str, Any]:
    # no album_id, no grouped_id: only the post index can tell the album
    return {
        "schema": "posts.vision.analyzed/v1",
        "event_id": f"{tenant}-v-{post_id}",
        "tenant_id": tenant,
        "post_id": post_id,
        "analyzed_at": "2025-01-30T12:00:05Z",
        "vision": {"description": f"seen by {tenant}", "labels": [tenant], "ocr_text": ""},
    }


def rec(topic: str, key: int, value: dict[str, Any], album_id: int) -> Record:
    kind = "parsed" if topic == "albums.parsed" else "vision"
    return Record(topic, str(key).encode(), orjson.dumps(value), kind, album_id)


async def assembled(pipeline: Pipeline, topic: str, albums: set[int]) -> dict[int, Any]:
    """The latest album.assembled event of each album, once every one of `albums` has one."""
    out = await consume_until(
        pipeline.servers,
        topic,
        lambda rs: {o["album_id"] for o in decoded(rs)} >= albums,
        within=120,
    )
    return {o["album_id"]: o for o in decoded(out)}


def assert_own_vision(event: dict[str, Any], tenant: str, other: str) -> None:
    """Complete, of `tenant`, with its own tenant's vision and none of `other`'s."""
    assert event["status"] == "complete", event
    assert event["tenant_id"] == tenant
    text = orjson.dumps(event).decode()
    assert f"seen by {tenant}" in text, text[:500]
    assert f"seen by {other}" not in text, text[:500]


async def test_colliding_post_ids_of_two_tenants_block_neither(
    pipeline: Pipeline, unique: str
) -> None:
    a, b = f"ta{unique}", f"tb{unique}"
    base = 6 * 10**9 + int(unique[:6], 16) * 100
    a_albums = [base + i for i in range(ALBUMS)]
    b_albums = [base + 50 + i for i in range(ALBUMS)]
    posts = {album_id: [album_id * 10 + j for j in range(ITEMS)] for album_id in a_albums}
    worker = pipeline.start_worker(ALBUM_DEADLINE_SECONDS="900")
    worker.wait_healthy()
    # A's albums, then B's reusing A's post ids, then A's vision, then B's
    records = [rec("albums.parsed", x, album(x, a, posts[x]), x) for x in a_albums]
    records += [
        rec("albums.parsed", y, album(y, b, posts[x]), y)
        for x, y in zip(a_albums, b_albums, strict=True)
    ]
    await pipeline.produce(records)
    await pipeline.produce(
        [rec("posts.vision.analyzed", p, vision(a, p), x) for x in a_albums for p in posts[x]]
    )
    topic = pipeline.topic("album.assembled")
    latest = await assembled(pipeline, topic, set(a_albums))
    # all of A's albums: complete, with A's vision only
    for x in a_albums:
        assert_own_vision(latest[x], a, b)
    # none of B's yet: its vision has not come, and A's was never given to it
    assert not set(b_albums) & set(latest), sorted(set(b_albums) & set(latest))

    await pipeline.produce(
        [
            rec("posts.vision.analyzed", p, vision(b, p), y)
            for x, y in zip(a_albums, b_albums, strict=True)
            for p in posts[x]
        ]
    )
    latest = await assembled(pipeline, topic, set(a_albums) | set(b_albums))
    for y in b_albums:
        assert_own_vision(latest[y], b, a)
    # A's albums were not touched by B's vision: still one version each
    assert all(o["version"] == 1 for o in latest.values())
