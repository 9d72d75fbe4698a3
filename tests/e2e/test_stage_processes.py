"""The worker's stage processes: the router and the sinks run as children of the worker.

- SIGKILL of a sinks' process mid-run (S3, Postgres, Neo4j): the worker starts it again, and
  every album ends up in every store exactly once (a sink commits a batch once it is written).
- SIGKILL of the worker: its children end too (no orphan keeps consuming).
- The worker's /health/detailed and /metrics include what its children report.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import orjson
import pytest

from streams.generator import GeneratorConfig, generate
from streams.settings import Settings
from tests.e2e.pipeline import Pipeline, consume_until, wait_for
from tests.e2e.sinks_support import qdrant_path, sink_env
from tests.e2e.test_crash import commit_lag, poll, stored
from tests.workers import WorkerProcess

ALBUMS = 600


def _children(worker: WorkerProcess) -> dict[str, Any]:
    _, body = worker.get("/health/detailed")
    assert isinstance(body, dict), body
    return {k: v for k, v in body["processes"].items() if isinstance(v, dict)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone too (its parent, the killed worker, cannot reap it)
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.timeout(600)
async def test_the_sinks_process_killed_mid_run_is_restarted_and_loses_nothing(
    pipeline: Pipeline, base_settings: Settings, unique: str
) -> None:
    tenant = f"p{unique}"
    gen = generate(
        GeneratorConfig(
            albums=ALBUMS,
            seed=31,
            tenants=(tenant,),
            first_album_id=5 * 10**9 + int(unique[:6], 16) * 10_000,
        )
    )
    worker = pipeline.start_worker("w1", **sink_env(base_settings))
    worker.wait_healthy()
    stores = "sinks:s3+postgres+neo4j"  # the default STAGES: Qdrant runs in a process of its own
    assert await wait_for(lambda: stores in _children(worker), 60)
    first = _children(worker)[stores]["pid"]
    producing = asyncio.create_task(pipeline.produce(gen.records, rate=len(gen.records) / 15))

    def written() -> int:
        _, body = worker.get("/health/detailed")
        counts = [s.get("albums_written", 0) for s in body["sinks"].values() if s.get("loop")]
        return min(counts, default=0)

    assert await wait_for(lambda: written() >= 50, 120), worker.tail()
    os.kill(first, signal.SIGKILL)  # in the middle of its batches
    await producing

    def restarted() -> bool:
        child = _children(worker).get(stores, {})
        return child.get("pid") not in (None, first) and child.get("status") == "running"

    assert await wait_for(restarted, 60), _children(worker)
    assert _children(worker)[stores]["starts"] == 2

    records = await consume_until(
        pipeline.servers,
        pipeline.topic("album.assembled"),
        lambda rs: len({orjson.loads(r.value)["album_id"] for r in rs}) >= ALBUMS,
        within=180,
    )
    assert len({orjson.loads(r.value)["album_id"] for r in records}) == ALBUMS
    ids = sorted(gen.albums)
    counts: dict[str, int] = {}

    async def all_stored() -> bool:
        counts.update(await stored(base_settings, tenant, ids))
        return set(counts.values()) == {ALBUMS}

    await poll(all_stored, 240)
    assert counts == dict.fromkeys(("postgres", "s3", "neo4j"), ALBUMS), worker.tail()
    # Qdrant is read once the worker is stopped (embedded): first its sink must be done
    lag: dict[str, int] = {}

    async def qdrant_done() -> bool:
        group = f"{pipeline.env()['APP_ID']}-sink-qdrant"
        lag.update(await commit_lag(pipeline.servers, group, {pipeline.topic("album.assembled")}))
        return bool(lag) and max(lag.values()) == 0

    assert await poll(qdrant_done, 240), lag
    worker.stop()
    # embedded Qdrant (opened by the sinks' process alone): every post of every album, once
    from storage.embeddings import Embedder
    from storage.qdrant import QdrantIndex

    async with QdrantIndex(path=qdrant_path(pipeline), embedder=Embedder()) as index:
        points = [len(await index.album_points(tenant, a)) for a in ids]
    assert points == [len(gen.albums[a].items) for a in ids]


@pytest.mark.timeout(300)
async def test_a_killed_worker_takes_its_stage_processes_with_it(
    pipeline: Pipeline, base_settings: Settings
) -> None:
    worker = pipeline.start_worker("w1", **sink_env(base_settings, SINKS="postgres"))
    worker.wait_healthy()
    groups = {"router", "sinks:s3+postgres+neo4j"}  # SINKS=postgres: no Qdrant process
    assert await wait_for(lambda: set(_children(worker)) == groups, 60)
    gen = generate(GeneratorConfig(albums=20, seed=32))
    await pipeline.produce(gen.records)

    def routed() -> bool:
        status, text = worker.get("/metrics")
        lines = [ln for ln in str(text).splitlines() if ln.startswith("albums_parsed_total")]
        return status == 200 and any(ln.endswith(" 20.0") for ln in lines)

    # the router counts in its own process; the worker's /metrics includes it
    assert await wait_for(routed, 60), worker.get("/metrics")[1]

    def all_routed() -> bool:
        _, detailed = worker.get("/health/detailed")
        return int(detailed["tasks"]["router"].get("records_routed") or 0) >= len(gen.records)

    assert await wait_for(all_routed, 30), worker.get("/health/detailed")[1]
    pids = [c["pid"] for c in _children(worker).values()]
    worker.kill()
    gone = await wait_for(lambda: not any(_alive(p) for p in pids), 45)
    assert gone, "stage processes outlived their worker"
