"""The album that used to crash every worker: 10 items, texts under the 64K-character rule,
every message under 0.5 MB, but a state of 2.4 MB, over Kafka's 1 MB. Now its texts are cut to
the limits (flagged), it is assembled and stored, the 40 albums beside it too, an input message
over the limit goes to the DLQ with its reason, and the worker never restarts."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas.validation import MAX_INPUT_BYTES
from streams.generator import GeneratorConfig, Record, generate
from streams.settings import Settings
from tests.e2e.pipeline import Pipeline, consume_until, decoded
from tests.e2e.sinks_support import sink_env, wait_sinks_handled

pytestmark = pytest.mark.e2e

TEXT = "жёлтый кот " * 5_400  # 59,400 characters, about 110 KB


def big_album(album_id: int, tenant: str) -> dict[str, Any]:
    return {
        "schema": "albums.parsed/v1",
        "event_id": f"big-{album_id}",
        "tenant_id": tenant,
        "channel_id": -1001,
        "grouped_id": album_id,
        "album_id": album_id,
        "caption_text": TEXT,
        "items": [
            {"post_id": album_id * 100 + i, "position": i, "media_kind": "photo"} for i in range(10)
        ],
    }


def big_vision(album_id: int, tenant: str, post_id: int) -> dict[str, Any]:
    return {
        "schema": "posts.vision.analyzed/v1",
        "event_id": f"v-{post_id}",
        "tenant_id": tenant,
        "post_id": post_id,
        "album_id": album_id,
        "grouped_id": album_id,
        "vision": {"description": TEXT, "ocr_text": TEXT, "labels": ["кот"]},
    }


async def test_a_huge_valid_album_is_assembled_beside_the_others(
    pipeline: Pipeline, base_settings: Settings, unique: str, kafka: list[str]
) -> None:
    tenant = f"z{unique}"
    first = 9 * 10**9 + int(unique[:6], 16) * 100
    gen = generate(GeneratorConfig(albums=40, seed=5, tenants=(tenant,), first_album_id=first))
    big_id = first + 50
    records: list[Record] = list(gen.records)
    album_raw = orjson.dumps(big_album(big_id, tenant))
    records.append(Record("albums.parsed", str(big_id).encode(), album_raw, "parsed", big_id))
    for i in range(10):
        raw = orjson.dumps(big_vision(big_id, tenant, big_id * 100 + i))
        assert len(raw) < 512 * 1024  # each message is valid input
        records.append(Record("posts.vision.analyzed", str(i).encode(), raw, "vision", big_id))
    # one message over the input limit
    over = {**big_album(big_id + 1, tenant), "padding": "x" * MAX_INPUT_BYTES}
    records.append(
        Record("albums.parsed", str(big_id + 1).encode(), orjson.dumps(over), "parsed", big_id + 1)
    )

    pipeline.extra_env.update(sink_env(base_settings, SINKS="s3,postgres"))
    worker = pipeline.start_worker("w1")
    worker.wait_healthy()
    pid = worker.pid
    await pipeline.produce(records)

    assembled = await consume_until(
        kafka,
        pipeline.topic("album.assembled"),
        lambda rs: len({r.key for r in rs}) >= 41,
        within=180,
    )
    events = {e["album_id"]: e for e in decoded(assembled)}
    assert set(events) == {*gen.albums, big_id}
    big = events[big_id]
    assert (big["status"], big["items_analyzed"], big["texts_truncated"]) == ("complete", 10, True)
    assert len(orjson.dumps(big)) < 1_000_000
    assert all(item["vision"]["truncated"] for item in big["items"])
    assert not any(e["texts_truncated"] for i, e in events.items() if i != big_id)

    dead = decoded(
        await consume_until(
            kafka,
            pipeline.topic("albums.dlq"),
            lambda rs: any(d["error_type"] == "message_too_large" for d in decoded(rs)),
            within=60,
        )
    )
    too_large = [d for d in dead if d["error_type"] == "message_too_large"]
    assert too_large[0]["value_size"] > MAX_INPUT_BYTES

    counts = await wait_sinks_handled(worker, len(assembled), within=180, sinks=("s3", "postgres"))
    assert (counts["s3"]["albums_parked"], counts["postgres"]["albums_parked"]) == (0, 0)
    # the same worker process all along
    assert worker.alive()
    assert worker.pid == pid
    _status, detailed = worker.get("/health/detailed")
    children = [c for c in detailed["processes"].values() if isinstance(c, dict)]
    assert children
    assert all(c["starts"] == 1 for c in children), children
