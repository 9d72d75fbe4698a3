"""Text, id and time hygiene end to end, in every store: NUL characters reach S3, Postgres,
Neo4j and Qdrant as U+FFFD (never parked), a later vision written with another UTC offset
wins, and non-positive ids stop at the router with a DLQ reason."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas.events import NUL_REPLACEMENT
from streams.generator import Record
from streams.settings import Settings
from tests.e2e.pipeline import Pipeline, consume_until, decoded
from tests.e2e.sinks_support import (
    SINKS,
    qdrant_path,
    sink_env,
    snapshot,
    wait_sinks_handled,
)

pytestmark = pytest.mark.e2e


def album(album_id: int, tenant: str, caption: str) -> dict[str, Any]:
    return {
        "schema": "albums.parsed/v1",
        "event_id": f"a-{album_id}",
        "tenant_id": tenant,
        "channel_id": -1001234567890,
        "grouped_id": abs(album_id),
        "album_id": album_id,
        "posted_at": "2025-01-30T12:00:00+02:00",
        "caption_text": caption,
        "items": [
            {"post_id": album_id * 10 + i, "message_id": 1 + i, "position": i, "media_kind": "jpg"}
            for i in range(2)
        ],
    }


def vision(album_id: int, tenant: str, post_id: int, analyzed_at: str, text: str) -> dict[str, Any]:
    return {
        "schema": "posts.vision.analyzed/v1",
        "event_id": f"v-{post_id}-{analyzed_at}",
        "tenant_id": tenant,
        "post_id": post_id,
        "album_id": album_id,
        "grouped_id": abs(album_id),
        "analyzed_at": analyzed_at,
        "vision": {"description": text, "labels": ["c\x00t"], "ocr_text": ""},
    }


def rec(topic: str, key: int, value: dict[str, Any], album_id: int) -> Record:
    kind = "parsed" if topic == "albums.parsed" else "vision"
    return Record(topic, str(key).encode(), orjson.dumps(value), kind, album_id)


async def test_nul_offsets_and_bad_ids_in_every_store(
    pipeline: Pipeline, base_settings: Settings, unique: str, kafka: list[str]
) -> None:
    tenant = f"h{unique}"
    album_id = 5 * 10**9 + int(unique[:6], 16)
    p0, p1 = album_id * 10, album_id * 10 + 1
    records = [
        rec("albums.parsed", album_id, album(album_id, tenant, "a\x00b"), album_id),
        # 10:00:09Z, written in +03:00
        rec(
            "posts.vision.analyzed",
            p0,
            vision(album_id, tenant, p0, "2025-01-30T13:00:09+03:00", "first\x00"),
            album_id,
        ),
        rec(
            "posts.vision.analyzed",
            p1,
            vision(album_id, tenant, p1, "2025-01-30T10:00:00Z", "other"),
            album_id,
        ),
        # refused at the edge: a negative album id, a zero post id
        rec("albums.parsed", -album_id, album(-album_id, tenant, "x"), -album_id),
        rec(
            "posts.vision.analyzed",
            0,
            {**vision(album_id, tenant, p0, "2025-01-30T11:00:00Z", "x"), "post_id": 0},
            album_id,
        ),
    ]
    pipeline.extra_env.update(sink_env(base_settings))
    worker = pipeline.start_worker("w1")
    worker.wait_healthy()
    await pipeline.produce(records)
    first = await consume_until(
        kafka, pipeline.topic("album.assembled"), lambda rs: len(rs) >= 1, within=120
    )
    assert decoded(first)[0]["items"][0]["vision"]["description"] == f"first{NUL_REPLACEMENT}"
    # 11:00:00Z: later than the stored 10:00:09Z, though "11:..." sorts before "13:..."
    later = vision(album_id, tenant, p0, "2025-01-30T11:00:00Z", "second\x00")
    await pipeline.produce([rec("posts.vision.analyzed", p0, later, album_id)])

    assembled = await consume_until(
        kafka,
        pipeline.topic("album.assembled"),
        lambda rs: any(e["version"] == 2 for e in decoded(rs)),
        within=120,
    )
    events = decoded(assembled)
    assert [(e["version"], e["status"]) for e in events] == [(1, "complete"), (2, "complete")]
    latest = events[-1]
    assert latest["caption_text"] == f"a{NUL_REPLACEMENT}b"
    assert latest["items"][0]["vision"]["description"] == f"second{NUL_REPLACEMENT}"
    assert latest["posted_at"] == "2025-01-30T10:00:00Z"

    dead = decoded(
        await consume_until(kafka, pipeline.topic("albums.dlq"), lambda rs: len(rs) >= 2, within=60)
    )
    assert sorted(d["error_type"] for d in dead) == ["out_of_range", "out_of_range"], dead
    assert all("positive id" in d["error_message"] for d in dead), dead

    counts = await wait_sinks_handled(worker, len(assembled), within=180)
    assert {s: counts[s]["albums_parked"] for s in SINKS} == dict.fromkeys(SINKS, 0)
    assert worker.stop() == 0
    snap = await snapshot(base_settings, {album_id: latest}, qdrant_path(pipeline))
    s3_doc, s3_version = snap["s3"][album_id]
    assert (s3_doc["caption_text"], s3_version) == (f"a{NUL_REPLACEMENT}b", 2)
    enrichment = snap["postgres"][album_id]["enrichment"]
    assert enrichment["version"] == 2
    assert f"second{NUL_REPLACEMENT}" in orjson.dumps(enrichment).decode()
    neo_album, _posts = snap["neo4j"][album_id]
    assert neo_album["caption_text"] == f"a{NUL_REPLACEMENT}b"
    assert neo_album["tags"] == [f"c{NUL_REPLACEMENT}t"]
    points = snap["qdrant"][album_id]
    assert len(points) == 2
    assert all(p["payload"]["tags"] == [f"c{NUL_REPLACEMENT}t"] for p in points)
