"""`ingest replay` against the real Postgres, S3 and Kafka; the worker then assembles the albums.

The recording is made of real Telethon TL messages (storage/telegram/samples.py); the replay
runs as its own process, exactly as `python -m streams ingest replay FILE` does.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.dlq import DlqRecord
from storage.postgres.store import enrichment_of
from storage.s3 import media_key
from storage.telegram.albums import media_object_id_for, post_id_for
from storage.telegram.samples import photo_message
from streams.generator import Record
from streams.kafka_io import read_topic
from streams.settings import Settings
from tests.conftest import free_port
from tests.e2e.ingest_support import (
    MAX_MEDIA,
    T0,
    Recording,
    album_id,
    channel_for,
    parsed_events,
    replay,
    rows,
    scenario,
    sha,
)
from tests.e2e.pipeline import Pipeline, consume_until, decoded
from tests.e2e.sinks_support import SINKS, qdrant_path, s3_storage, sink_env, snapshot
from tests.e2e.sinks_support import wait_sinks_handled as sinks_handled
from tests.workers import WorkerProcess

pytestmark = pytest.mark.e2e


def ingest_env(pipeline: Pipeline, settings: Settings, tenant: str) -> dict[str, str]:
    import os

    return {
        **os.environ,
        **pipeline.env(),
        "DATABASE_URL": settings.database_url.get(),
        "INGEST_TENANT_ID": tenant,
        "INGEST_MAX_MEDIA_BYTES": str(MAX_MEDIA),
        "INGEST_WEB_PORT": str(free_port()),
        "WEB_PORT": str(free_port()),
        "DATA_DIR": str(pipeline.tmp / "ingest-data"),
    }


async def topic_values(kafka: list[str], topic: str) -> list[Any]:
    return [r async for r in read_topic(kafka, topic)]


def vision_records(albums: dict[int, dict[str, Any]], tenant: str) -> list[Record]:
    out = []
    for n, (aid, event) in enumerate(sorted(albums.items())):
        for item in event["items"]:
            v: dict[str, Any] = {
                "schema": "posts.vision.analyzed/v1",
                "event_id": f"v-{item['post_id']}",
                "tenant_id": tenant,
                "post_id": item["post_id"],
                "channel_id": event["channel_id"],
                "grouped_id": event["grouped_id"],
                "analyzed_at": "2025-01-30T10:30:00Z",
                "vision": {
                    "description": f"кошка {item['position']}",
                    "labels": ["cat", f"pos{item['position']}"],
                    "ocr_text": "",
                    "is_meme": False,
                    "has_text": False,
                    "provider": "test",
                    "model": "test",
                },
            }
            if n % 2 == 0:  # half go straight to the album, half through the post index
                v["album_id"] = aid
            out.append(
                Record(
                    "posts.vision.analyzed",
                    str(item["post_id"]).encode(),
                    orjson.dumps(v),
                    "vision",
                    aid,
                )
            )
    return out


async def test_replay_stores_rows_objects_and_events_and_the_worker_assembles_them(
    pipeline: Pipeline, base_settings: Settings, unique: str, kafka: list[str], tmp_path: Path
) -> None:
    channel, tenant = channel_for(unique), f"t{unique}"
    rec = scenario(tmp_path / "scenario.jsonl", channel, unique)
    path = rec.save()
    env = ingest_env(pipeline, base_settings, tenant)
    log = tmp_path / "ingest.log"

    assert replay(env, path, log).returncode == 0, log.read_text()
    got = await rows(base_settings.database_url.get(), channel)

    # posts: every message once; the deleted one is kept and marked
    assert sorted(got["posts"]) == [10, 11, 12, 20, 21, 30, 40, 41, 42, 50]
    assert got["posts"][11][0] == post_id_for(channel, 11)
    assert got["posts"][30][1] is None  # not in an album
    assert "deleted_at" in got["posts"][42][3]
    assert "deleted_at" not in got["posts"][41][3]
    # albums: the caption from part 1 (A), the edited caption (C)
    assert {g: r[2] for g, r in got["groups"].items()} == {
        1: "Кошка на диване, часть вторая",
        2: "Репост",
        3: "Новая подпись",
    }
    assert all(r[0] == album_id(channel, g) for g, r in got["groups"].items())
    # items by position; the repost shares part 10's media; the large video is kept, marked
    blob = rec.media
    items = {g: [(i[0], i[1], i[2], i[3]) for i in its] for g, its in got["items"].items()}
    assert items == {
        1: [
            (post_id_for(channel, 10), 0, "photo", sha(blob[10])),
            (post_id_for(channel, 11), 1, "photo", sha(blob[11])),
            (post_id_for(channel, 12), 2, "video", sha(blob[12])),
        ],
        2: [
            (post_id_for(channel, 20), 0, "photo", sha(blob[10])),
            (post_id_for(channel, 21), 1, "video", None),
        ],
        3: [
            (post_id_for(channel, 40), 0, "photo", sha(blob[40])),
            (post_id_for(channel, 41), 1, "photo", sha(blob[41])),
        ],
    }
    large = got["items"][2][1]
    assert (large[4], large[5]["skipped"]) == (None, "too_large")
    # media objects: one per distinct content (the repost adds none; 42's stays)
    shas = sorted({sha(blob[i]) for i in (10, 11, 12, 40, 41, 42)})
    assert [o[0] for o in got["objects"]] == sorted({sha(blob[i]) for i in (10, 11, 12, 40, 41)})
    assert all(o[1] == media_object_id_for(o[0]) for o in got["objects"])
    assert all(o[3] == media_key(o[0]) for o in got["objects"])
    async with s3_storage(base_settings) as s3:
        for digest in shas:
            assert await s3.has_object(media_key(digest)), digest
    assert got["cursor"] == 50
    assert got["unsent"] == 0

    # albums.parsed: A and B once; C as first stored, after its caption edit, after the deletion
    parsed = parsed_events(await topic_values(kafka, pipeline.topic("albums.parsed")), channel)
    by_album: dict[int, list[dict[str, Any]]] = {}
    for e in parsed:
        by_album.setdefault(e["grouped_id"], []).append(e)
    assert {g: len(es) for g, es in by_album.items()} == {1: 1, 2: 1, 3: 3}
    c_events = by_album[3]
    assert [(e["caption_text"], len(e["items"])) for e in c_events] == [
        ("Старая подпись", 3),
        ("Новая подпись", 3),
        ("Новая подпись", 2),
    ]
    for g, es in by_album.items():
        last = es[-1]
        assert last["tenant_id"] == tenant
        assert last["album_id"] == album_id(channel, g)
        assert [
            (i["post_id"], i["position"], i["media_kind"], i["sha256"]) for i in last["items"]
        ] == items[g]
        assert last["cover_media_id"] == next(
            (media_object_id_for(i[3]) for i in items[g] if i[3]), None
        )
    # the line that is not JSON is dead-lettered with its bytes
    dlq = [
        DlqRecord.decode(r.value) for r in await topic_values(kafka, pipeline.topic("albums.dlq"))
    ]
    assert [(d.stage, d.error_type, d.value) for d in dlq] == [
        ("ingest", "invalid_json", b"this line is not JSON")
    ]

    # a second replay changes nothing: no row, no object, no event (the bad line is refused again)
    assert replay(env, path, log).returncode == 0, log.read_text()
    assert await rows(base_settings.database_url.get(), channel) == got
    again = parsed_events(await topic_values(kafka, pipeline.topic("albums.parsed")), channel)

    def order(es: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(es, key=lambda e: (e["album_id"], e["parsed_at"]))

    assert order(again) == order(parsed)

    # the worker assembles them (vision for the final items) into album.assembled and the stores
    finals = {es[-1]["album_id"]: es[-1] for es in by_album.values()}
    pipeline.extra_env.update(sink_env(base_settings))
    worker = pipeline.start_worker("w1")
    worker.wait_healthy()
    await pipeline.produce(vision_records(finals, tenant))
    topic = pipeline.topic("album.assembled")
    records = await consume_until(
        kafka,
        topic,
        lambda rs: {e["album_id"] for e in decoded(rs) if e["status"] == "complete"} >= set(finals),
        within=180,
    )
    assembled = {e["album_id"]: e for e in decoded(records)}
    assert set(assembled) == set(finals)
    for aid, e in assembled.items():
        assert (e["status"], e["tenant_id"]) == ("complete", tenant)
        assert [i["post_id"] for i in e["items"]] == [i["post_id"] for i in finals[aid]["items"]]
        assert e["caption_text"] == finals[aid]["caption_text"]
    await sinks_handled(worker, len(records), within=180)
    assert worker.stop() == 0
    snap = await snapshot(base_settings, assembled, qdrant_path(pipeline))
    for aid, e in assembled.items():
        assert snap["s3"][aid][0] == e
        assert snap["postgres"][aid]["enrichment"] == enrichment_of(e)
        album, posts = snap["neo4j"][aid]
        assert album["items_count"] == len(e["items"])
        assert [p["post_id"] for p in posts] == [i["post_id"] for i in e["items"]]
        assert [p["payload"]["post_id"] for p in snap["qdrant"][aid]] == [
            i["post_id"] for i in e["items"]
        ]
    # the enrichment landed on the row ingestion wrote (its caption is still there)
    after = await rows(base_settings.database_url.get(), channel)
    assert {g: r[2] for g, r in after["groups"].items()} == {
        g: r[2] for g, r in got["groups"].items()
    }
    assert set(SINKS) == {"s3", "postgres", "qdrant", "neo4j"}


CRASH_ALBUMS = 60


def crash_recording(path: Path, channel: int, seed: str) -> Recording:
    rec = Recording(path, channel, seed)
    for a in range(CRASH_ALBUMS):
        when = T0 + timedelta(seconds=10 * a)
        for p in range(3):
            mid = 1000 + 10 * a + p
            text = f"альбом {a}" if p == 0 else ""
            rec.add(
                photo_message(channel, mid, date=when, grouped_id=5000 + a, size=20_000, text=text),
                rec.blob(mid, 20_000),
            )
    return rec


async def album_count(database_url: str, channel: int) -> int:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return int(
                (
                    await conn.execute(
                        text("SELECT count(*) FROM media_groups WHERE channel_id = :c"),
                        {"c": channel},
                    )
                ).scalar_one()
            )
    finally:
        await engine.dispose()


async def test_replay_killed_three_times_loses_and_duplicates_nothing(
    pipeline: Pipeline, base_settings: Settings, unique: str, kafka: list[str], tmp_path: Path
) -> None:
    channel, tenant = channel_for(unique), f"t{unique}"
    rec = crash_recording(tmp_path / "crash.jsonl", channel, unique)
    path = rec.save()
    env = ingest_env(pipeline, base_settings, tenant)
    db = base_settings.database_url.get()
    command = [sys.executable, "-m", "streams", "ingest", "replay", str(path)]
    kills = 0
    for threshold in (10, 25, 40):
        proc = WorkerProcess(env, tmp_path / "crash.log", command=command).start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.alive():
            if await album_count(db, channel) >= threshold:
                proc.kill()
                kills += 1
                break
            await asyncio.sleep(0.05)
        assert proc.proc is not None
        proc.proc.wait(30)
    assert kills == 3, (tmp_path / "crash.log").read_text()[-3000:]
    assert replay(env, path, tmp_path / "crash.log").returncode == 0

    got = await rows(db, channel)
    assert len(got["groups"]) == CRASH_ALBUMS
    assert len(got["posts"]) == 3 * CRASH_ALBUMS
    for a in range(CRASH_ALBUMS):
        ids = [1000 + 10 * a + p for p in range(3)]
        assert [(i[0], i[3]) for i in got["items"][5000 + a]] == [
            (post_id_for(channel, m), sha(rec.media[m])) for m in ids
        ]
    assert got["unsent"] == 0
    async with s3_storage(base_settings) as s3:
        for m, data in rec.media.items():
            assert await s3.has_object(media_key(sha(data))), m
    parsed = parsed_events(await topic_values(kafka, pipeline.topic("albums.parsed")), channel)
    last: dict[int, dict[str, Any]] = {}
    for e in parsed:  # one partition per album key: topic order is emission order
        assert len(e["items"]) == 3, e  # never a partial view of an album
        last[e["grouped_id"]] = e
    assert sorted(last) == [5000 + a for a in range(CRASH_ALBUMS)]
    for g, e in last.items():
        assert [i["post_id"] for i in e["items"]] == [i[0] for i in got["items"][g]]
    # events repeat only when a kill fell between a send and its mark (same event_id)
    ids_per_album: dict[int, set[str]] = {}
    for e in parsed:
        ids_per_album.setdefault(e["grouped_id"], set()).add(e["event_id"])
    assert all(len(v) == 1 for v in ids_per_album.values())
