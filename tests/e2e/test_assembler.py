"""The assembler against real Kafka: shuffled, duplicated, out-of-order events; deadlines; DLQ."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import orjson
import pytest

from schemas.dlq import DlqRecord
from streams.dlq_replay import replay_dlq
from streams.generator import (
    MALFORMED_ERROR,
    VISION_ANALYZED,
    ExpectedAlbum,
    GeneratorConfig,
    Record,
    generate,
    make_vision,
)
from tests.e2e.pipeline import Pipeline, consume_until, decoded, wait_for


def expected_labels(exp: ExpectedAlbum) -> list[str]:
    """Labels ranked by how many items show them, ties by first appearance (item order)."""
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    for item in sorted(exp.items, key=lambda i: i["position"]):
        vision = exp.vision.get(item["post_id"])
        for label in dict.fromkeys(vision["labels"] if vision else []):
            counts[label] += 1
            first.setdefault(label, len(first))
    return sorted(counts, key=lambda label: (-counts[label], first[label]))


def check_album(out: dict[str, Any], exp: ExpectedAlbum) -> None:
    items = sorted(exp.items, key=lambda i: i["position"])
    assert out["schema"] == "album.assembled/v1"
    assert out["tenant_id"] == exp.tenant_id
    assert out["channel_id"] == exp.channel_id
    assert out["grouped_id"] == exp.grouped_id
    assert out["items_count"] == len(items)
    assert [i["post_id"] for i in out["items"]] == [i["post_id"] for i in items]
    assert [i["position"] for i in out["items"]] == [i["position"] for i in items]
    kinds = {i["media_kind"] for i in items}
    assert out["album_kind"] == (kinds.pop() if len(kinds) == 1 else "mixed")
    for got, item in zip(out["items"], items, strict=True):
        sent = exp.vision.get(item["post_id"])
        assert (got["vision"] or {}).get("description") == (sent or {}).get("description")
    assert out["vision_labels"] == expected_labels(exp)
    assert out["has_meme"] == any(v["is_meme"] for v in exp.vision.values())
    ocr = [
        exp.vision[i["post_id"]]["ocr_text"]
        for i in items
        if i["post_id"] in exp.vision and exp.vision[i["post_id"]]["ocr_text"]
    ]
    assert out["ocr_text"] == "\n".join(ocr)
    assert out["assembly_lag_seconds"] >= 0


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_shuffled_duplicated_albums_assemble_exactly_once(
    pipeline: Pipeline, guarantee: str
) -> None:
    n = 1000
    gen = generate(
        GeneratorConfig(
            albums=n,
            seed=7,
            tenants=("acme", "globex"),
            shuffle=True,
            duplicate_share=0.10,
            album_id_share=0.5,
            vision_first_share=0.3,
        )
    )
    assert sum(r.kind == "vision" for r in gen.records) > 2 * n
    worker = pipeline.start_worker(PROCESSING_GUARANTEE=guarantee)
    worker.wait_healthy()
    await pipeline.produce(gen.records)

    def all_seen(records: list[Any]) -> bool:
        return len({orjson.loads(r.value)["album_id"] for r in records}) >= n

    records = await consume_until(
        pipeline.servers, pipeline.topic("album.assembled"), all_seen, within=240
    )
    out = decoded(records)
    by_album: dict[int, list[dict[str, Any]]] = {}
    for o in out:
        by_album.setdefault(o["album_id"], []).append(o)
    assert set(by_album) == set(gen.albums), worker.tail()
    # exactly one event per album: complete, version 1, its key the album id
    assert all(len(v) == 1 for v in by_album.values()), [
        k for k, v in by_album.items() if len(v) > 1
    ]
    assert {r.key for r in records} == {str(a).encode() for a in gen.albums}
    for album_id, (o,) in by_album.items():
        assert (o["status"], o["version"], o["event_id"]) == ("complete", 1, f"{album_id}:1")
        assert o["items_analyzed"] == o["items_count"]
        check_album(o, gen.albums[album_id])

    # the gauge follows the table write, which comes after the emission the test has read
    def settled() -> bool:
        status, detailed = worker.get("/health/detailed")
        return status == 200 and detailed["tasks"]["album_assembler"]["albums_in_progress"] == 0

    assert await wait_for(settled, 30), worker.get("/health/detailed")


async def test_deadline_emits_partial_then_late_vision_completes(pipeline: Pipeline) -> None:
    gen = generate(GeneratorConfig(albums=40, seed=11, missing_vision_share=1.0, shuffle=True))
    assert not any(e.complete for e in gen.albums.values())
    # the vision that exists is sent first: the deadline counts from the album's arrival, and
    # every vision event sent must be in the partial whatever the load on the machine
    deadline = 6
    worker = pipeline.start_worker(ALBUM_DEADLINE_SECONDS=str(deadline))
    worker.wait_healthy()
    await pipeline.produce([r for r in gen.records if r.kind != "parsed"])
    await pipeline.produce([r for r in gen.records if r.kind == "parsed"])
    topic = pipeline.topic("album.assembled")

    def versions(records: list[Any]) -> dict[tuple[int, int], dict[str, Any]]:
        return {(o["album_id"], o["version"]): o for o in decoded(records)}

    records = await consume_until(
        pipeline.servers, topic, lambda rs: len(versions(rs)) >= 40, within=60
    )
    partial = versions(records)
    assert {k[1] for k in partial} == {1}, "only version 1 before late vision"
    for (album_id, _), o in partial.items():
        exp = gen.albums[album_id]
        assert o["status"] == "partial"
        assert o["items_analyzed"] == len(exp.items) - 1
        missing = [i for i in o["items"] if i["vision"] is None]
        assert len(missing) == 1
        # emitted about when the deadline passed, not before
        assert o["assembly_lag_seconds"] >= deadline
        check_album(o, exp)

    # the missing vision arrives late (with or without album_id): version 2, complete
    rng = random.Random(3)
    late: list[Record] = []
    for album_id, exp in gen.albums.items():
        item = next(i for i in exp.items if i["post_id"] not in exp.vision)
        album = {
            "album_id": album_id,
            "tenant_id": exp.tenant_id,
            "channel_id": exp.channel_id,
            "grouped_id": exp.grouped_id,
            "parsed_at": "2025-01-30T10:00:03Z",
        }
        event = make_vision(rng, album, item, with_album_id=album_id % 2 == 0)
        exp.vision[item["post_id"]] = event["vision"]
        late.append(
            Record(VISION_ANALYZED, str(item["post_id"]).encode(), orjson.dumps(event), "vision")
        )
    await pipeline.produce(late + late[:5])  # a few duplicates too
    records = await consume_until(
        pipeline.servers, topic, lambda rs: len(versions(rs)) >= 80, within=60
    )
    final = versions(records)
    assert len(final) == 80, sorted(final)
    for album_id, exp in gen.albums.items():
        v2 = final[(album_id, 2)]
        assert (v2["status"], v2["event_id"]) == ("complete", f"{album_id}:2")
        assert v2["items_analyzed"] == v2["items_count"]
        check_album(v2, exp)


async def test_malformed_input_goes_to_dlq_and_valid_traffic_continues(
    pipeline: Pipeline,
) -> None:
    gen = generate(
        GeneratorConfig(albums=60, seed=5, malformed_share=0.5, not_in_album=4, shuffle=True)
    )
    malformed = gen.malformed
    assert {r.error_type for r in malformed} == set(MALFORMED_ERROR.values())
    worker = pipeline.start_worker()
    worker.wait_healthy()
    await pipeline.produce(gen.records)
    dlq = await consume_until(
        pipeline.servers,
        pipeline.topic("albums.dlq"),
        lambda rs: len(rs) >= len(malformed),
        within=60,
    )
    dead = [DlqRecord.decode(r.value) for r in dlq]
    assert len(dead) == len(malformed)
    by_bytes = {(d.key, d.value): d for d in dead}
    for r in malformed:
        d = by_bytes[(r.key, r.value)]  # the original key and value bytes, untouched
        assert d.stage == "validate"
        assert d.error_type == r.error_type, (d.error_message, r.error_type)
        assert d.error_message
        assert d.source_topic == pipeline.topic(r.topic)
        assert d.source_offset is not None
    assembled = await consume_until(
        pipeline.servers,
        pipeline.topic("album.assembled"),
        lambda rs: len(rs) >= 60,
        within=60,
    )
    assert {o["album_id"] for o in decoded(assembled)} == set(gen.albums)
    _, metrics = worker.get("/metrics")
    assert 'vision_events_total{status="not_in_album"} 4.0' in metrics


async def test_dlq_replay_after_the_fix_assembles_the_album(pipeline: Pipeline) -> None:
    """Vision whose album never came expires to the DLQ; once the album exists, replay it."""
    gen = generate(GeneratorConfig(albums=5, seed=9, album_id_share=0.0, shuffle=False))
    parsed = [r for r in gen.records if r.kind == "parsed"]
    vision = [r for r in gen.records if r.kind == "vision"]
    worker = pipeline.start_worker(ALBUM_STATE_RETENTION_SECONDS="6", ALBUM_DEADLINE_SECONDS="60")
    worker.wait_healthy()
    await pipeline.produce(vision)
    dlq = await consume_until(
        pipeline.servers,
        pipeline.topic("albums.dlq"),
        lambda rs: len(rs) >= len(vision),
        within=60,
    )
    dead = [DlqRecord.decode(r.value) for r in dlq]
    assert {d.error_type for d in dead} == {"orphan_vision_expired"}
    assert {d.stage for d in dead} == {"post_index"}

    # the fix: ingestion re-emits the albums; then the DLQ is replayed
    await pipeline.produce(parsed)
    counts = await replay_dlq(
        pipeline.servers,
        group_id=f"e2e-{pipeline.unique}-dlq-replay",
        stage="post_index",
        source_topic=pipeline.topic("posts.vision.analyzed"),
        topic_prefix=pipeline.prefix,
    )
    assert counts["replayed"] == len(vision)
    assembled = await consume_until(
        pipeline.servers,
        pipeline.topic("album.assembled"),
        lambda rs: len(rs) >= 5,
        within=60,
    )
    out = decoded(assembled)
    assert sorted(o["album_id"] for o in out) == sorted(gen.albums)
    assert all(o["status"] == "complete" and o["version"] == 1 for o in out)
    # a second replay finds nothing new
    again = await replay_dlq(
        pipeline.servers,
        group_id=f"e2e-{pipeline.unique}-dlq-replay",
        stage="post_index",
        topic_prefix=pipeline.prefix,
    )
    assert again["replayed"] == 0
