"""10,000 hostile records through the real router beside valid albums: every hostile record is
either in albums.dlq with a reason or assembled, every valid album is assembled, and neither the
worker nor any of its stage processes restarts."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import orjson
import pytest

from schemas.dlq import DlqRecord
from schemas.validation import MAX_INPUT_BYTES
from streams.generator import GeneratorConfig, Record, generate
from tests.e2e.pipeline import Pipeline, consume_until, decoded

pytestmark = pytest.mark.e2e

HOSTILE = 10_000
VALID = 200


def album(album_id: int, tenant: str, **extra: Any) -> dict[str, Any]:
    return {
        "schema": "albums.parsed/v1",
        "tenant_id": tenant,
        "channel_id": -100,
        "grouped_id": album_id,
        "album_id": album_id,
        "items": [
            {"post_id": album_id * 10 + i, "position": i, "media_kind": "photo"} for i in range(2)
        ],
        **extra,
    }


def hostile_records(first_id: int, tenant: str, seed: int = 7) -> tuple[list[Record], set[int]]:
    """(records, album ids of the hostile records that are valid after all and must come out
    assembled). Keys are `h-<n>`, so each dead letter names its record."""
    rng = random.Random(seed)
    records: list[Record] = []
    assembled: set[int] = set()

    def add(topic: str, value: bytes | None, album_id: int | None = None) -> None:
        key = f"h-{len(records)}".encode()
        records.append(Record(topic, key, value, "malformed", album_id))  # type: ignore[arg-type]

    kinds = [
        "utf8",
        "deep",
        "huge_int",
        "wrong_type",
        "not_object",
        "empty",
        "null",
        "negative_id",
        "too_many_items",
        "bad_time",
        "vision_bad",
        "nul",
        "duplicate_keys",
    ]
    n = 0
    while len(records) < HOSTILE - 20:
        kind = kinds[n % len(kinds)]
        album_id = first_id + n
        n += 1
        if kind == "utf8":
            add("albums.parsed", b'{"album_id": "\xff\xfe", "tenant_id": "\xc3"}')
        elif kind == "deep":
            depth = rng.randint(1100, 3000)
            add("albums.parsed", b'{"a":' * depth + b"1" + b"}" * depth)
        elif kind == "huge_int":
            add(
                "albums.parsed",
                orjson.dumps(album(1, tenant)).replace(b'"album_id":1', b'"album_id":' + b"9" * 40),
            )
        elif kind == "wrong_type":
            bad = album(album_id, tenant)
            field = rng.choice(["album_id", "items", "tenant_id", "channel_id"])
            bad[field] = rng.choice([1.5, [1], {"a": 1}, True])  # wrong for every field
            add("albums.parsed", orjson.dumps(bad))
        elif kind == "not_object":
            add("albums.parsed", rng.choice([b"[1,2]", b'"album"', b"42", b"null", b"true"]))
        elif kind == "empty":
            add("posts.vision.analyzed", b"")
        elif kind == "null":
            add("albums.parsed", None)
        elif kind == "negative_id":
            add("albums.parsed", orjson.dumps(album(-album_id, tenant)))
        elif kind == "too_many_items":
            bad = album(album_id, tenant)
            bad["items"] = [
                {"post_id": album_id * 100 + i, "position": i, "media_kind": "photo"}
                for i in range(11)
            ]
            add("albums.parsed", orjson.dumps(bad))
        elif kind == "bad_time":
            add("albums.parsed", orjson.dumps(album(album_id, tenant, posted_at="30 Feb 2025")))
        elif kind == "vision_bad":
            add(
                "posts.vision.analyzed",
                orjson.dumps({"tenant_id": tenant, "post_id": album_id, "vision": "text"}),
            )
        elif kind == "nul":
            raw = orjson.dumps(album(album_id, tenant, caption_text="a\x00b"))
            add("albums.parsed", raw, album_id)
            assembled.add(album_id)
        elif kind == "duplicate_keys":
            raw = orjson.dumps(album(album_id, tenant))
            add("albums.parsed", b'{"album_id": "first", ' + raw[1:], album_id)
            assembled.add(album_id)
    for i in range(20):
        big = album(first_id + n + i, tenant, pad="x" * MAX_INPUT_BYTES)
        add("albums.parsed", orjson.dumps(big))
    return records, assembled


@pytest.mark.timeout(600)
async def test_hostile_records_go_to_the_dlq_or_are_assembled(
    pipeline: Pipeline, unique: str, kafka: list[str]
) -> None:
    tenant = f"f{unique}"
    first = 8 * 10**9 + int(unique[:6], 16) * 100_000
    hostile, valid_hostile = hostile_records(first, tenant)
    gen = generate(
        GeneratorConfig(albums=VALID, seed=3, tenants=(tenant,), first_album_id=first + 50_000)
    )
    rng = random.Random(1)
    records = list(gen.records) + hostile
    rng.shuffle(records)

    # albums without vision come out partial after their (short) deadline: "assembled"
    worker = pipeline.start_worker("w1", ALBUM_DEADLINE_SECONDS="3")
    worker.wait_healthy()
    pid = worker.pid
    await pipeline.produce(records)

    wanted = set(gen.albums) | valid_hostile
    out = await consume_until(
        kafka,
        pipeline.topic("album.assembled"),
        lambda rs: wanted <= {e["album_id"] for e in decoded(rs)},
        within=300,
    )
    assembled = {e["album_id"] for e in decoded(out)}
    assert set(gen.albums) <= assembled
    assert valid_hostile <= assembled

    keys = {r.key for r in hostile} - {r.key for r in hostile if r.album_id in valid_hostile}
    # only hostile records go to the DLQ here: wait for as many, then match them by key
    dead = await consume_until(
        kafka, pipeline.topic("albums.dlq"), lambda rs: len(rs) >= len(keys), within=300
    )
    letters = [DlqRecord.decode(r.value) for r in dead]
    by_key = {d.key: d for d in letters}
    assert keys <= set(by_key), (
        f"{len(keys - set(by_key))} hostile records neither dead nor assembled"
    )
    assert all(by_key[k].error_type and by_key[k].error_message for k in keys)
    reasons = Counter(by_key[k].error_type for k in keys)
    print(
        f"{len(keys)} hostile records in the DLQ by reason: {dict(reasons)}; "
        f"{len(valid_hostile)} valid after all, assembled"
    )
    assert reasons["message_too_large"] > 0
    assert reasons["invalid_json"] > 0
    # the same processes all along
    assert worker.alive()
    assert worker.pid == pid
    _status, detailed = worker.get("/health/detailed")
    children = [c for c in detailed["processes"].values() if isinstance(c, dict)]
    assert children
    assert all(c["starts"] == 1 for c in children), children
