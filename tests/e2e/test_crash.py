"""Crash safety: SIGKILL the worker several times mid-run; no album is lost.

With exactly_once (the transactional relay of agents/relay.py), a read_committed consumer of
album.assembled sees no event_id twice; with at_least_once, duplicates may appear (same
event_id, so consumers can drop them) and the test prints how many.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections import Counter
from typing import Any

import orjson
import pytest

from streams.generator import GeneratorConfig, generate
from tests.e2e.pipeline import Pipeline, consume_until

ALBUMS = int(os.environ.get("CRASH_TEST_ALBUMS", "2000"))
KILLS = 3


@pytest.mark.timeout(900)
@pytest.mark.xfail(
    strict=False,
    reason=(
        "known defect, open in issue 3: after SIGKILL/restart, Faust agents now and then skip a "
        "few records of their input while the group offset moves past them (2 of 2,000-3,000 "
        "albums in 1 of 5 runs since the router left Faust; before that 2-12 in 4 of 6); the "
        "test still runs, and reports XPASS when nothing was lost"
    ),
)
@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_sigkill_during_run_loses_nothing(pipeline: Pipeline, guarantee: str) -> None:
    gen = generate(
        GeneratorConfig(
            albums=ALBUMS, seed=21, shuffle=True, duplicate_share=0.05, album_id_share=0.5
        )
    )
    env = {"PROCESSING_GUARANTEE": guarantee, "CONSUMER_SESSION_TIMEOUT_SECONDS": "6"}
    worker = pipeline.start_worker("w0", **env)
    worker.wait_healthy()
    rate = len(gen.records) / 20  # the run lasts ~20 s: kills land in the middle of it
    producing = asyncio.create_task(pipeline.produce(gen.records, rate=rate))
    data_dir = pipeline.tmp / "data-w0"
    for kill in range(KILLS):
        await asyncio.sleep(4)
        worker.kill()  # SIGKILL: no shutdown, no commit, no flush
        worker.proc.wait(10)  # type: ignore[union-attr]
        if kill == 1:
            # once, lose the local RocksDB too: state must come back from the changelog
            shutil.rmtree(data_dir, ignore_errors=True)
        worker = pipeline.start_worker("w0", **env)
        worker.wait_healthy(timeout=180)
    await producing

    def albums_seen(records: list[Any]) -> bool:
        return len({orjson.loads(r.value)["album_id"] for r in records}) >= ALBUMS

    records = await consume_until(
        pipeline.servers,
        pipeline.topic("album.assembled"),
        albums_seen,
        within=300,
        isolation_level="read_committed",
    )
    out = [orjson.loads(r.value) for r in records]
    missing = sorted(set(gen.albums) - {o["album_id"] for o in out})
    assert not missing, f"{len(missing)} albums never assembled, e.g. {missing[:20]}"
    assert all(o["status"] == "complete" and o["version"] == 1 for o in out)
    dup = sum(n - 1 for n in Counter(o["event_id"] for o in out).values())
    print(f"\n{guarantee}: {len(out)} album.assembled records, {dup} duplicate event_ids")
    if guarantee == "exactly_once":
        assert dup == 0
    for o in out:
        assert o["items_analyzed"] == o["items_count"]
