"""Stopping under load.

- SIGTERM while albums stream in: the worker stops cleanly (exit code 0, its crash marker
  removed, so the next start keeps its local tables), and after a restart nothing is lost.
- A crash during the stop (SIGKILL while it is stopping) is no clean stop: the marker stays, the
  next start discards the local tables and restores them from the changelogs, nothing is lost.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import pytest

from streams.generator import GeneratorConfig, generate
from streams.worker import MARKER
from tests.e2e.pipeline import Pipeline, consume_until, decoded

pytestmark = pytest.mark.e2e

ALBUMS = 3000
UNCLEAN = "did not stop cleanly"


def marker_of(pipeline: Pipeline, name: str) -> bool:
    return (pipeline.tmp / f"data-{name}" / "faust" / f"e2e-{pipeline.unique}" / MARKER).exists()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kill_while_stopping", [False, True])
async def test_a_stop_under_load_loses_nothing(
    pipeline: Pipeline, kill_while_stopping: bool
) -> None:
    gen = generate(GeneratorConfig(albums=ALBUMS, seed=33, shuffle=False))
    worker = pipeline.start_worker("w1", ALBUM_DEADLINE_SECONDS="900")
    worker.wait_healthy()
    assert marker_of(pipeline, "w1")
    # the input streams in while the worker is stopped (about 20 s of it)
    feeding = asyncio.create_task(pipeline.produce(gen.records, rate=1500))
    topic = pipeline.topic("album.assembled")
    await consume_until(pipeline.servers, topic, lambda rs: len(rs) >= ALBUMS // 5, within=120)
    t0 = time.monotonic()
    worker.kill(15)  # SIGTERM
    if kill_while_stopping:
        await asyncio.sleep(0.5)
        worker.kill()  # SIGKILL in the middle of the stop
    code = await asyncio.to_thread(worker.stop, 60)
    stop_seconds = time.monotonic() - t0
    if kill_while_stopping:
        assert code == -9
        assert marker_of(pipeline, "w1"), "a crash during stop must leave the marker"
    else:
        assert code == 0, worker.tail()
        assert not marker_of(pipeline, "w1"), "a clean stop removes the marker"
    await feeding

    again = pipeline.start_worker("w1", ALBUM_DEADLINE_SECONDS="900")
    again.wait_healthy()
    records = await consume_until(
        pipeline.servers,
        topic,
        lambda rs: len({o["album_id"] for o in decoded(rs)}) >= ALBUMS,
        within=300,
    )
    out = decoded(records)
    latest = {o["album_id"]: o for o in out}
    missing = set(gen.albums) - set(latest)
    assert not missing, f"{len(missing)} albums lost"
    assert {o["status"] for o in latest.values()} == {"complete"}
    discarded = UNCLEAN in again.log_path.read_text(errors="replace")
    assert discarded == kill_while_stopping
    duplicates = sum(n - 1 for n in Counter(o["event_id"] for o in out).values())
    print(
        "FAULT "
        + json.dumps(
            {
                "fault": "SIGKILL during stop" if kill_while_stopping else "SIGTERM under load",
                "albums": ALBUMS,
                "lost": len(missing),
                "duplicate_event_ids": duplicates,
                "stop_seconds": round(stop_seconds, 1),
                "local_state_discarded": discarded,
            }
        )
    )
