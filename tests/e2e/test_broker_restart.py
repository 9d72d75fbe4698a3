"""The broker goes away mid-run, 20 s and 60 s, under both guarantees: nothing is lost, the
worker keeps running, and exactly_once publishes no event_id twice.

Mid-run: every album is parsed and half of the vision has been read; some albums are out, the
others wait in the table for the rest of their vision when the broker stops (a clean stop of the
local stack's only broker, its data kept). The rest of the vision is sent once it is back.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections import Counter

import pytest

from streams.generator import GeneratorConfig, generate
from tests.e2e.pipeline import Pipeline, consume_until, decoded, wait_for
from tests.workers import REPO_ROOT, WorkerProcess

pytestmark = pytest.mark.e2e

ALBUMS = 1500


def stack(command: str, service: str) -> None:
    subprocess.run(
        ["bash", str(REPO_ROOT / "compose" / "local" / "stack.sh"), command, service],
        check=True,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=240,
    )


def diagnose(worker: WorkerProcess) -> str:
    """What a failed run needs to be understood: the worker's view of its stages and its log."""
    try:
        status, detailed = worker.get("/health/detailed")
        health = json.dumps(detailed, default=str)[:6000]
    except Exception as exc:  # the worker may be gone: the log is what is left
        status, health = 0, repr(exc)
    lines = worker.log_path.read_text(errors="replace").splitlines()
    notable = [line for line in lines if "ERROR" in line or "WARNING" in line]
    return (
        f"/health/detailed {status}: {health}\n"
        f"{len(notable)} ERROR/WARNING lines, the last 60:\n"
        + "\n".join(notable[-60:])
        + "\nlast lines:\n"
        + worker.tail(40)
    )


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("guarantee", "down_seconds"),
    [
        ("at_least_once", 20),
        ("exactly_once", 20),
        ("at_least_once", 60),
        ("exactly_once", 60),
    ],
)
async def test_a_broker_restart_mid_run_loses_nothing(
    pipeline: Pipeline, guarantee: str, down_seconds: int
) -> None:
    gen = generate(GeneratorConfig(albums=ALBUMS, seed=21, shuffle=False))
    parsed = [r for r in gen.records if r.kind == "parsed"]
    vision = [r for r in gen.records if r.kind == "vision"]
    before, after = vision[: len(vision) // 2], vision[len(vision) // 2 :]
    worker = pipeline.start_worker(
        PROCESSING_GUARANTEE=guarantee, ALBUM_DEADLINE_SECONDS="900", LAG_INTERVAL_SECONDS="2"
    )
    worker.wait_healthy()
    await pipeline.produce(parsed + before)
    topic = pipeline.topic("album.assembled")
    # mid-run: a part of the albums out, the others waiting for their vision
    out_before = await consume_until(pipeline.servers, topic, lambda rs: len(rs) >= 100, within=120)
    assert len(out_before) >= 100

    stack("down", "kafka")
    try:
        await asyncio.sleep(down_seconds)
        assert worker.alive(), worker.tail()
    finally:
        stack("up", "kafka")
    back = time.time()
    await pipeline.produce(after)

    def done(records: list[object]) -> bool:
        latest = {o["album_id"]: o for o in decoded(records)}  # type: ignore[arg-type]
        return len(latest) == ALBUMS and all(o["status"] == "complete" for o in latest.values())

    records = await consume_until(pipeline.servers, topic, done, within=420)
    out = decoded(records)
    latest = {o["album_id"]: o for o in out}
    missing = set(gen.albums) - set(latest)
    assert not missing, f"{len(missing)} albums lost: {sorted(missing)[:10]}\n" + diagnose(worker)
    incomplete = [a for a, o in latest.items() if o["status"] != "complete"]
    assert not incomplete, f"{len(incomplete)} albums not complete"
    per_event = Counter(o["event_id"] for o in out)
    duplicates = sum(n - 1 for n in per_event.values())
    if guarantee == "exactly_once":
        assert duplicates == 0, [e for e, n in per_event.items() if n > 1][:10]
    # the worker rode it out: same process, healthy again
    assert worker.alive(), worker.tail()
    assert await wait_for(lambda: worker.get("/health")[0] == 200, 120), worker.get("/health")
    _, detailed = worker.get("/health/detailed")
    starts = {
        group: child.get("starts")
        for group, child in detailed.get("processes", {}).items()
        if isinstance(child, dict)
    }
    after_restart = sorted(r.timestamp / 1000 - back for r in records if r.timestamp / 1000 > back)
    figures = {
        "guarantee": guarantee,
        "down_s": down_seconds,
        "albums": ALBUMS,
        "lost": len(missing),
        "duplicate_event_ids": duplicates,
        "first_assembled_after_broker_up_s": round(after_restart[0], 1) if after_restart else None,
        "stage_process_starts": starts,
    }
    print("FAULT " + json.dumps(figures))
