"""Throughput: a backlog of generated events, one worker, time until all assembled (and stored).

The backlog is produced first, then a worker starts on it. The assembler's figure is input
events consumed and assembled per second of the worker's processing, measured from the worker's
readiness to the last album.assembled record read back. With sinks on, the end-to-end figure
runs until every sink reports (in /health/detailed) every album.assembled record handled.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from streams.generator import GeneratorConfig, generate
from streams.kafka_io import produce


@dataclass(frozen=True, slots=True)
class BenchResult:
    guarantee: str
    albums: int
    events: int
    seconds: float
    assembled: int
    duplicates: int
    sinks: tuple[str, ...] = ()
    stored_seconds: float | None = None
    parked: int = 0

    @property
    def stored_albums_per_second(self) -> float | None:
        return None if self.stored_seconds is None else self.albums / self.stored_seconds

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds

    @property
    def albums_per_second(self) -> float:
        return self.albums / self.seconds


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], within: float = 180) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("worker exited during start-up")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError("worker not healthy")


async def _count_assembled(
    servers: list[str], topic: str, albums: int, within: float
) -> tuple[float, int, int]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=servers,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    seen: set[int] = set()
    total = 0
    deadline = time.monotonic() + within
    try:
        consumer.subscribe([topic])
        while len(seen) < albums and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for msgs in batch.values():
                for m in msgs:
                    total += 1
                    seen.add(orjson.loads(m.value)["album_id"])
        return time.monotonic(), len(seen), total
    finally:
        await consumer.stop()


def _sinks_done(port: int, sinks: tuple[str, ...], records: int) -> tuple[bool, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/detailed", timeout=5) as r:
        state = orjson.loads(r.read())["sinks"]
    handled = [state[s]["albums_written"] + state[s]["albums_parked"] for s in sinks]
    return min(handled) >= records, sum(state[s]["albums_parked"] for s in sinks)


def run_assembler_benchmark(
    servers: list[str],
    albums: int,
    guarantee: str,
    partitions: int = 8,
    seed: int = 1,
    sinks: tuple[str, ...] = (),
) -> BenchResult:
    """One isolated run (own topics, group, tenant and album ids); returns its figures."""
    unique = uuid.uuid4().hex[:8]
    prefix = f"bench-{unique}."
    gen = generate(
        GeneratorConfig(
            albums=albums,
            seed=seed,
            shuffle=True,
            album_id_share=0.5,
            # fresh ids and tenant: the stores keep earlier runs, which would make writes no-ops
            tenants=(f"bench{unique}",),
            first_album_id=3 * 10**9 + int(unique[:6], 16) * 10_000,
        )
    )
    asyncio.run(produce(servers, gen.records, topic_prefix=prefix))
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "APP_ID": f"bench-{unique}",
            "TOPIC_PREFIX": prefix,
            "KAFKA_BOOTSTRAP_SERVERS": ",".join(servers),
            "TOPIC_PARTITIONS": str(partitions),
            "PROCESSING_GUARANTEE": guarantee,
            "WEB_PORT": str(port),
            "DATA_DIR": str(Path(tmp) / "data"),
            "LOG_LEVEL": "WARNING",
            "SINKS": ",".join(sinks),
        }
        log = (Path(tmp) / "worker.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams", "worker", "-l", "warn"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_healthy(port, proc)
            t0 = time.monotonic()
            t1, seen, total = asyncio.run(
                _count_assembled(servers, prefix + "album.assembled", albums, within=900)
            )
            t2, parked = None, 0
            if sinks:
                deadline = time.monotonic() + 1800
                while time.monotonic() < deadline:
                    done, parked = _sinks_done(port, sinks, total)
                    if done:
                        t2 = time.monotonic()
                        break
                    time.sleep(0.2)
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            log.close()
    if seen < albums:
        raise RuntimeError(f"only {seen} of {albums} albums assembled")
    return BenchResult(
        guarantee=guarantee,
        albums=albums,
        events=len(gen.records),
        seconds=t1 - t0,
        assembled=seen,
        duplicates=total - seen,
        sinks=sinks,
        stored_seconds=None if t2 is None else t2 - t0,
        parked=parked,
    )
