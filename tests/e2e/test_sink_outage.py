"""A store goes down for ~30 s in the middle of a run: its sink backs off, parks what it must,
the other sink goes on; after the store returns (and a DLQ replay of the parked albums) every
album is there exactly once."""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

import pytest

from storage.neo4j import Neo4jGraph
from streams.dlq_replay import replay_dlq
from streams.generator import GeneratorConfig, generate
from streams.settings import Settings
from tests.e2e.pipeline import Pipeline, consume_until, decoded
from tests.e2e.sinks_support import (
    enrichment_versions,
    s3_storage,
    sink_counts,
    sink_env,
    wait_sinks_handled,
)
from tests.workers import REPO_ROOT

ALBUMS = 200
OUTAGE_SECONDS = 30
# the sink under test, and a healthy sink that must keep going meanwhile
PAIRS = {"postgres": "s3", "neo4j": "postgres", "s3": "postgres"}


def stack(command: str, service: str) -> None:
    subprocess.run(
        ["bash", str(REPO_ROOT / "compose/local/stack.sh"), command, service],
        check=True,
        capture_output=True,
        timeout=300,
    )


async def stored_once(settings: Settings, service: str, events: dict[int, dict[str, Any]]) -> int:
    """How many of these albums the store holds, failing on any duplicate."""
    ids = sorted(events)
    if service == "postgres":
        versions = await enrichment_versions(settings, ids)
        assert set(versions.values()) <= {"1"}
        return len(versions)
    if service == "neo4j":
        async with Neo4jGraph(
            settings.neo4j_uri, settings.neo4j_user, settings.neo4j_password.get()
        ) as graph:
            counts = []
            for album_id, e in events.items():
                album = await graph.get_album(album_id)
                if album is None:
                    continue
                posts = await graph.get_album_posts(album_id)
                # no CONTAINS edge twice: exactly the album's items, in order
                assert [p["post_id"] for p in posts] == [i["post_id"] for i in e["items"]]
                counts.append(album_id)
            return len(counts)
    async with s3_storage(settings) as s3:
        tenant = next(iter(events.values()))["tenant_id"]
        keys = await s3.list_keys(f"album/{tenant}/")
        assert len(keys) == len(set(keys))
        return len(keys)


@pytest.mark.parametrize(
    ("service", "retry_env"),
    [
        ("postgres", {}),
        ("neo4j", {}),
        ("s3", {}),
        # retries far shorter than the outage: albums are parked, then replayed from the DLQ
        ("postgres", {"SINK_RETRIES": "2", "SINK_BACKOFF_SECONDS": "0.5"}),
    ],
    ids=["postgres", "neo4j", "s3", "postgres-parks"],
)
async def test_a_sink_rides_out_its_store_going_down(
    service: str,
    retry_env: dict[str, str],
    pipeline: Pipeline,
    base_settings: Settings,
    unique: str,
    kafka: list[str],
) -> None:
    healthy = PAIRS[service]
    gen = generate(
        GeneratorConfig(
            albums=ALBUMS,
            seed=23,
            tenants=(f"o{unique}",),
            first_album_id=2 * 10**9 + int(unique[:6], 16) * 1000,
            shuffle=False,
        )
    )
    pipeline.extra_env.update(sink_env(base_settings, SINKS=f"{service},{healthy}", **retry_env))
    worker = pipeline.start_worker("w1")
    worker.wait_healthy()
    # about 45 s of traffic; the store is down from second 8 to second 38
    rate = len(gen.records) / 45
    producing = asyncio.create_task(pipeline.produce(gen.records, rate=rate))
    try:
        await asyncio.sleep(8)
        await asyncio.to_thread(stack, "down", service)
        down_at = time.monotonic()
        healthy_before = sink_counts(worker)[healthy]["albums_written"]
        await asyncio.sleep(OUTAGE_SECONDS / 2)
        mid = sink_counts(worker)
        assert mid[service]["status"] in {"retrying", "failing"}, mid[service]
        await asyncio.sleep(OUTAGE_SECONDS - (time.monotonic() - down_at))
        # the healthy sink kept writing while the other one was backing off
        assert sink_counts(worker)[healthy]["albums_written"] > healthy_before
    finally:
        await asyncio.to_thread(stack, "up", service)
        await producing

    records = await consume_until(
        kafka,
        pipeline.topic("album.assembled"),
        lambda rs: len({r.key for r in rs}) >= ALBUMS,
        within=180,
    )
    events = {e["album_id"]: e for e in decoded(records)}
    assert len(events) == ALBUMS
    counts = await wait_sinks_handled(worker, len(records), within=240, sinks=(service, healthy))
    assert counts[healthy]["albums_parked"] == 0
    parked = counts[service]["albums_parked"]
    if retry_env:
        assert parked > 0
    if parked:
        # what outlived the retries waits in albums.dlq; replay sends it to this sink only
        replayed = await replay_dlq(
            kafka,
            group_id=f"replay-{unique}",
            stage=f"sink.{service}",
            topic_prefix=pipeline.prefix,
            app_id=f"e2e-{unique}",
        )
        assert replayed["replayed"] == parked
        await wait_sinks_handled(worker, len(records) + parked, within=240, sinks=(service,))
    print(f"{service}: {parked} albums parked during the outage and replayed")
    assert await stored_once(base_settings, service, events) == ALBUMS
    assert await stored_once(base_settings, healthy, events) == ALBUMS
    assert sink_counts(worker)[service]["status"] == "ok"
