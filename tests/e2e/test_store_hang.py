"""A store that is up but does not answer: its server SIGSTOPped (with every process of its
processes) for 60 s in the middle of a run. Every call to it is bounded (STORE_TIMEOUT_SECONDS),
so its sink sees timeouts, backs off and retries; after SIGCONT every album is stored once and
nothing was parked."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from streams.generator import GeneratorConfig, generate
from streams.settings import Settings
from tests.e2e.pipeline import Pipeline, consume_until, decoded
from tests.e2e.sinks_support import sink_counts, sink_env, wait_sinks_handled
from tests.e2e.test_sink_outage import stored_once
from tests.workers import REPO_ROOT

pytestmark = pytest.mark.e2e

ALBUMS = 150
HANG_SECONDS = 60


def server_pids(service: str) -> list[int]:
    """The local stack's server and every process under it (Postgres backends start sessions
    of their own, so a process group is not enough)."""
    root = int((REPO_ROOT / ".stack" / "run" / f"{service}.pid").read_text().strip())
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += parents.get(pid, [])
    return out


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("service", ["postgres", "neo4j", "s3"])
async def test_a_hung_store_is_waited_out_without_parking(
    service: str, pipeline: Pipeline, base_settings: Settings, unique: str, kafka: list[str]
) -> None:
    gen = generate(
        GeneratorConfig(
            albums=ALBUMS,
            seed=29,
            tenants=(f"g{unique}",),
            first_album_id=4 * 10**9 + int(unique[:6], 16) * 1000,
            shuffle=False,
        )
    )
    # default retries and backoff; calls bounded at 10 s so the test sees timeouts soon
    pipeline.extra_env.update(sink_env(base_settings, SINKS=service, STORE_TIMEOUT_SECONDS="10"))
    worker = pipeline.start_worker("w1")
    worker.wait_healthy()
    pids: list[int] = []
    producing = asyncio.create_task(
        pipeline.produce(gen.records, rate=len(gen.records) / (HANG_SECONDS + 20))
    )
    try:
        await asyncio.sleep(8)
        # the processes of this moment: the backends of the sink's open connections included
        pids = server_pids(service)
        signal_all(pids, signal.SIGSTOP)
        stopped = time.monotonic()
        await asyncio.sleep(HANG_SECONDS / 2)
        state = sink_counts(worker)[service]
        assert state["status"] in {"retrying", "failing"}, state
        assert state["albums_parked"] == 0, state
        await asyncio.sleep(HANG_SECONDS - (time.monotonic() - stopped))
    finally:
        signal_all(pids, signal.SIGCONT)
        await producing
    print(f"{service}: last error while hung: {state['last_error']}")

    records = await consume_until(
        kafka,
        pipeline.topic("album.assembled"),
        lambda rs: len({r.key for r in rs}) >= ALBUMS,
        within=180,
    )
    events = {e["album_id"]: e for e in decoded(records)}
    assert len(events) == ALBUMS
    counts = await wait_sinks_handled(worker, len(records), within=300, sinks=(service,))
    assert counts[service]["albums_parked"] == 0
    assert counts[service]["status"] == "ok"
    assert await stored_once(base_settings, service, events) == ALBUMS
    assert worker.alive()
