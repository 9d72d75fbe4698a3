"""Throughput: a backlog of generated events, one worker, time until all assembled (and stored).

The backlog is produced first, then a worker starts on it. The assembler's figure is input
events consumed and assembled per second of the worker's processing, measured from the worker's
readiness to the last album.assembled record read back. With sinks on, the end-to-end figure
runs until every sink reports (in /health/detailed) every album.assembled record handled.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from streams.generator import GeneratorConfig, Record, generate
from streams.kafka_io import produce
from streams.kafka_security import kafka_options


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
    workers: int = 1
    #: album.assembled records per second of the run, from their broker timestamps
    timeline: tuple[int, ...] = ()
    #: (sink, seconds until it had handled every album.assembled record)
    sink_seconds: tuple[tuple[str, float], ...] = ()
    #: CPU seconds the worker processes (and their stage processes) used during the run
    worker_cpu_seconds: float | None = None
    #: share of the machine's CPU time that was busy during the run (0-1), every process
    machine_busy: float | None = None

    @property
    def stored_albums_per_second(self) -> float | None:
        return None if self.stored_seconds is None else self.albums / self.stored_seconds

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds

    @property
    def albums_per_second(self) -> float:
        return self.albums / self.seconds


def _cpu_of_tree(roots: list[int]) -> float:
    """User + system CPU seconds used so far by `roots` and every live descendant of them.

    Read from /proc (Linux; 0.0 elsewhere): psutil would do it, but is not a dependency of
    the pipeline for one benchmark figure.
    """
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    parent: dict[int, int] = {}
    used: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        pid = int(stat.parent.name)
        parent[pid] = int(fields[1])
        used[pid] = (int(fields[11]) + int(fields[12])) / tick
    tree, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in tree:
            continue
        tree.add(pid)
        todo.extend(child for child, ppid in parent.items() if ppid == pid)
    return sum(used.get(pid, 0.0) for pid in tree)


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat ((0, 0) elsewhere)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0, 0.0
    ticks = [float(x) for x in first]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0.0)  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


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
) -> tuple[float, int, int, list[float]]:
    consumer = AIOKafkaConsumer(
        **kafka_options(),
        bootstrap_servers=servers,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    seen: set[int] = set()
    stamps: list[float] = []
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
                    stamps.append(m.timestamp / 1000)
        return time.monotonic(), len(seen), total, stamps
    finally:
        await consumer.stop()


def _sinks_handled(port: int, sinks: tuple[str, ...], token: str) -> dict[str, tuple[int, int]]:
    """(written, parked) of each sink, from the worker's /health/detailed."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/health/detailed", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=5) as r:
        state = orjson.loads(r.read())["sinks"]
    return {s: (state[s]["albums_written"], state[s]["albums_parked"]) for s in sinks}


class _Workers:
    """`count` worker processes of one app (own ports and data dirs), stopped by their pids."""

    def __init__(self, env: dict[str, str], tmp: Path, count: int) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []
        self._logs = []
        for i in range(count):
            port = _free_port()
            log = (tmp / f"worker-{i}.log").open("wb")
            self._logs.append(log)
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "streams", "worker", "-l", "warn"],
                    env={**env, "WEB_PORT": str(port), "DATA_DIR": str(tmp / f"data-{i}")},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            self.ports.append(port)

    def wait_healthy(self, within: float = 180) -> None:
        for port, proc in zip(self.ports, self.procs, strict=True):
            _wait_healthy(port, proc, within)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for log in self._logs:
            log.close()


def _bench_env(
    servers: list[str], unique: str, guarantee: str, partitions: int, sinks: tuple[str, ...]
) -> dict[str, str]:
    prefix = f"bench-{unique}."
    return {
        **os.environ,
        "APP_ID": f"bench-{unique}",
        "TOPIC_PREFIX": prefix,
        "KAFKA_BOOTSTRAP_SERVERS": ",".join(servers),
        "TOPIC_PARTITIONS": str(partitions),
        "PROCESSING_GUARANTEE": guarantee,
        "LOG_LEVEL": "WARNING",
        "SINKS": ",".join(sinks),
        # the bench reads /health/detailed, which needs the web token (streams/webauth.py)
        "WEB_AUTH_TOKEN": os.environ.get("WEB_AUTH_TOKEN") or secrets.token_urlsafe(24),
    }


def _generated(albums: int, seed: int, unique: str, shuffle: bool = True) -> Any:
    return generate(
        GeneratorConfig(
            albums=albums,
            seed=seed,
            shuffle=shuffle,
            album_id_share=0.5,
            # fresh ids and tenant: the stores keep earlier runs, which would make writes no-ops
            tenants=(f"bench{unique}",),
            first_album_id=3 * 10**9 + int(unique[:6], 16) * 10_000,
        )
    )


def _per_second(stamps: list[float], start: float) -> tuple[int, ...]:
    if not stamps:
        return ()
    counts = [0] * (int(max(stamps) - start) + 1)
    for t in stamps:
        counts[max(0, int(t - start))] += 1
    return tuple(counts)


def run_assembler_benchmark(
    servers: list[str],
    albums: int,
    guarantee: str,
    partitions: int = 8,
    seed: int = 1,
    sinks: tuple[str, ...] = (),
    workers: int = 1,
) -> BenchResult:
    """One isolated run (own topics, group, tenant and album ids); returns its figures."""
    unique = uuid.uuid4().hex[:8]
    prefix = f"bench-{unique}."
    gen = _generated(albums, seed, unique)
    asyncio.run(produce(servers, gen.records, topic_prefix=prefix))
    with tempfile.TemporaryDirectory() as tmp:
        env = _bench_env(servers, unique, guarantee, partitions, sinks)
        procs = _Workers(env, Path(tmp), workers)
        try:
            procs.wait_healthy()
            pids = [p.pid for p in procs.procs]
            cpu0, (busy0, all0) = _cpu_of_tree(pids), _machine_cpu()
            t0, wall0 = time.monotonic(), time.time()
            t1, seen, total, stamps = asyncio.run(
                _count_assembled(servers, prefix + "album.assembled", albums, within=900)
            )
            cpu1, (busy1, all1) = _cpu_of_tree(pids), _machine_cpu()
            t2, parked = None, 0
            sink_done: dict[str, float] = {}
            if sinks:
                deadline = time.monotonic() + 1800
                while time.monotonic() < deadline and len(sink_done) < len(sinks):
                    handled = _sinks_handled(procs.ports[0], sinks, env["WEB_AUTH_TOKEN"])
                    for name, (written, parked_here) in handled.items():
                        if name not in sink_done and written + parked_here >= total:
                            sink_done[name] = time.monotonic() - t0
                    parked = sum(p for _, p in handled.values())
                    time.sleep(0.2)
                if len(sink_done) == len(sinks):
                    t2 = t0 + max(sink_done.values())
        finally:
            procs.stop()
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
        workers=workers,
        timeline=_per_second(stamps, wall0),
        sink_seconds=tuple(sorted(sink_done.items())),
        worker_cpu_seconds=cpu1 - cpu0,
        machine_busy=(busy1 - busy0) / (all1 - all0) if all1 > all0 else None,
    )


@dataclass(frozen=True, slots=True)
class LatencyResult:
    guarantee: str
    rate: float
    albums: int
    #: seconds from an album's last input event to its album.assembled record, sorted
    latencies: tuple[float, ...]

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        i = min(len(self.latencies) - 1, max(0, round(q / 100 * len(self.latencies)) - 1))
        return self.latencies[i]


async def _paced_run(
    servers: list[str],
    prefix: str,
    records: list[Record],
    rate: float,
    albums: int,
    skip: set[int] | None = None,
) -> list[float]:
    last_sent: dict[int, float] = {}
    assembled: dict[int, float] = {}
    consumer = AIOKafkaConsumer(
        **kafka_options(),
        bootstrap_servers=servers,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    consumer.subscribe([prefix + "album.assembled"])

    async def read() -> None:
        deadline = time.monotonic() + 600
        while len(assembled) < albums and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=100, max_records=5000)
            for msgs in batch.values():
                for m in msgs:
                    album_id = orjson.loads(m.value)["album_id"]
                    if album_id not in (skip or ()):
                        assembled.setdefault(album_id, m.timestamp / 1000)

    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        **kafka_options(), bootstrap_servers=servers, linger_ms=1, enable_idempotence=True
    )
    await producer.start()

    async def write() -> None:
        t0 = time.monotonic()
        pending = []
        for i, r in enumerate(records):
            ahead = i / rate - (time.monotonic() - t0)
            if ahead > 0:
                await asyncio.sleep(ahead)
            pending.append(await producer.send(prefix + r.topic, key=r.key, value=r.value))
            if r.album_id is not None:
                last_sent[r.album_id] = time.time()
        await asyncio.gather(*pending)

    try:
        await asyncio.gather(read(), write())
    finally:
        await producer.stop()
        await consumer.stop()
    return sorted(max(0.0, assembled[a] - last_sent[a]) for a in assembled if a in last_sent)


def run_latency_benchmark(
    servers: list[str], guarantee: str, rate: float, albums: int, partitions: int = 8, seed: int = 2
) -> LatencyResult:
    """Events at a steady `rate` (events/s) into a running worker: latency of each album from its
    last input event to its album.assembled record (broker timestamps of one machine)."""
    unique = uuid.uuid4().hex[:8]
    prefix = f"bench-{unique}."
    gen = _generated(albums, seed, unique, shuffle=False)

    async def declare() -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(**kafka_options(), bootstrap_servers=servers)
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(prefix + t, partitions, 1)
                    for t in ("albums.parsed", "posts.vision.analyzed", "album.assembled")
                ]
            )
        finally:
            await admin.close()

    asyncio.run(declare())
    # warm-up: albums of other ids, assembled before the measured run starts (the first
    # assignment of every stage, the relay's transactional producers, the model-free caches)
    warm = generate(
        GeneratorConfig(
            albums=50,
            seed=seed + 1,
            shuffle=False,
            tenants=(f"bench{unique}",),
            first_album_id=2 * 10**9 + int(unique[:6], 16) * 10_000,
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        procs = _Workers(_bench_env(servers, unique, guarantee, partitions, ()), Path(tmp), 1)
        try:
            procs.wait_healthy()
            asyncio.run(produce(servers, warm.records, topic_prefix=prefix))
            asyncio.run(_count_assembled(servers, prefix + "album.assembled", 50, within=120))
            latencies = asyncio.run(
                _paced_run(servers, prefix, list(gen.records), rate, albums, skip=set(warm.albums))
            )
        finally:
            procs.stop()
    return LatencyResult(guarantee, rate, albums, tuple(latencies))


@dataclass(frozen=True, slots=True)
class PassthroughResult:
    messages: int
    seconds: float

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds


async def _passthrough(
    servers: list[str], messages: int, partitions: int, value_size: int
) -> PassthroughResult:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    unique = uuid.uuid4().hex[:8]
    source, sink = f"bench-{unique}.pass-in", f"bench-{unique}.pass-out"
    admin = AIOKafkaAdminClient(**kafka_options(), bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, partitions, 1) for t in (source, sink)])
    finally:
        await admin.close()
    value = b"x" * value_size
    await produce(
        servers,
        (Record(source, str(i).encode(), value, kind="raw") for i in range(messages)),
    )
    consumer = AIOKafkaConsumer(
        **kafka_options(),
        bootstrap_servers=servers,
        group_id=f"bench-{unique}-pass",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(
        **kafka_options(),
        bootstrap_servers=servers,
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=262144,
    )
    await consumer.start()
    await producer.start()
    try:
        consumer.subscribe([source])
        done = 0
        t0: float | None = None
        while done < messages:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            if t0 is None and batch:
                t0 = time.monotonic()
            futures = [
                await producer.send(sink, key=m.key, value=m.value)
                for records in batch.values()
                for m in records
            ]
            await asyncio.gather(*futures)
            if batch:
                await consumer.commit({tp: rs[-1].offset + 1 for tp, rs in batch.items()})
            done += len(futures)
        assert t0 is not None
        return PassthroughResult(messages, time.monotonic() - t0)
    finally:
        await consumer.stop()
        await producer.stop()


def run_passthrough(
    servers: list[str], messages: int = 200_000, partitions: int = 8, value_size: int = 400
) -> PassthroughResult:
    """The Python ceiling on this broker: raw aiokafka consume → produce → commit, batched."""
    return asyncio.run(_passthrough(servers, messages, partitions, value_size))


@dataclass(frozen=True, slots=True)
class StateResult:
    """`run_state_benchmark`: state in flight, memory, and how long a restart takes."""

    albums: int
    posts: int
    load_seconds: float
    #: peak resident memory of the worker process, and of the worker with its children (bytes)
    worker_peak_rss: int
    total_peak_rss: int
    #: restart on its local RocksDB: until /health answers and the due index holds every album
    restart_seconds: float
    #: restart with the local tables deleted: restored from the changelogs
    recovery_seconds: float
    #: (seconds since start, worker RSS, total RSS, albums in state) during the load
    timeline: tuple[tuple[float, int, int, int], ...] = ()


def _rss(pid: int) -> tuple[int, int]:
    """(current, peak) resident bytes of a process (0, 0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)

    def kb(name: str) -> int:
        return int(fields.get(name, "0 kB").split()[0]) * 1024

    return kb("VmRSS"), kb("VmHWM")


def _children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _album_states(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/detailed", timeout=5) as r:
            body = orjson.loads(r.read())
    except OSError:
        return -1
    return int(body["tasks"]["album_assembler"].get("album_states") or 0)


async def _produce_albums(servers: list[str], prefix: str, albums: int, unique: str) -> int:
    """`albums` albums.parsed events (no vision: every album stays in flight); posts made."""
    import random
    from datetime import UTC, datetime

    from aiokafka import AIOKafkaProducer

    from streams.generator import make_album

    rng = random.Random(7)
    now = datetime.now(UTC)
    first = 6 * 10**9 + int(unique[:6], 16) * 10_000_000
    producer = AIOKafkaProducer(
        **kafka_options(),
        bootstrap_servers=servers,
        linger_ms=20,
        max_batch_size=512 * 1024,
        enable_idempotence=True,
    )
    await producer.start()
    posts = 0
    try:
        pending = []
        for i in range(albums):
            album = make_album(rng, first + i, f"s{unique}", now)
            posts += len(album["items"])
            value = orjson.dumps(album)
            key = str(album["album_id"]).encode()
            pending.append(await producer.send(prefix + "albums.parsed", key=key, value=value))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return posts


def run_state_benchmark(
    servers: list[str], albums: int = 1_000_000, partitions: int = 8, within: float = 3600
) -> StateResult:
    """`albums` albums in flight in one worker (sinks off, a one-day deadline): its peak memory,
    then the time a restart takes on its local tables, and from the changelogs alone."""
    unique = uuid.uuid4().hex[:8]
    prefix = f"bench-{unique}."
    posts = asyncio.run(_produce_albums(servers, prefix, albums, unique))
    env = {
        **_bench_env(servers, unique, "at_least_once", partitions, ()),
        "ALBUM_DEADLINE_SECONDS": "86400",
    }
    timeline: list[tuple[float, int, int, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workers = _Workers(env, Path(tmp), 1)
        t0 = time.monotonic()
        try:
            workers.wait_healthy()
            port, pid = workers.ports[0], workers.procs[0].pid
            worker_peak = total_peak = 0
            deadline = t0 + within
            while time.monotonic() < deadline:
                rss, peak = _rss(pid)
                children = sum(_rss(c)[0] for c in _children_of(pid))
                worker_peak = max(worker_peak, peak)
                total_peak = max(total_peak, rss + children)
                states = _album_states(port)
                timeline.append((time.monotonic() - t0, rss, rss + children, states))
                if states >= albums:
                    break
                time.sleep(1.0)
            load_seconds = time.monotonic() - t0
            if timeline[-1][3] < albums:
                raise RuntimeError(f"only {timeline[-1][3]} of {albums} albums in state")
        finally:
            workers.stop()
        restart = _timed_restart(env, Path(tmp), albums, within)
        shutil.rmtree(Path(tmp) / "data-0" / "faust", ignore_errors=True)  # every app id
        recovery = _timed_restart(env, Path(tmp), albums, within)
    return StateResult(
        albums=albums,
        posts=posts,
        load_seconds=load_seconds,
        worker_peak_rss=worker_peak,
        total_peak_rss=total_peak,
        restart_seconds=restart,
        recovery_seconds=recovery,
        timeline=tuple(timeline),
    )


def _timed_restart(env: dict[str, str], tmp: Path, albums: int, within: float) -> float:
    """Seconds from a worker's start until it answers /health and holds every album."""
    t0 = time.monotonic()
    workers = _Workers(env, tmp, 1)
    try:
        workers.wait_healthy(within)
        while _album_states(workers.ports[0]) < albums:
            if time.monotonic() - t0 > within:
                raise RuntimeError("the restarted worker did not get its state back in time")
            time.sleep(0.5)
        return time.monotonic() - t0
    finally:
        workers.stop()
