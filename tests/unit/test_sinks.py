"""The sinks' shared policy: latest version per album, backoff, retries, isolation, parking."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from storage.errors import StorageError
from storage.sinks import RetryPolicy, latest_versions, write_attempt, write_with_retries
from streams.resources import Resources
from streams.settings import Settings


class Down(StorageError):
    retriable = True


class Refused(StorageError):
    retriable = False


def album(album_id: int, version: int = 1, **extra: Any) -> dict[str, Any]:
    return {"album_id": album_id, "version": version, **extra}


class FakeSink:
    """Fails the first `failures` writes with `error`; albums in `poison` always fail."""

    name = "fake"

    def __init__(
        self, failures: int = 0, error: type[StorageError] = Down, poison: set[int] | None = None
    ) -> None:
        self.failures = failures
        self.error = error
        self.poison = poison or set()
        self.calls: list[list[int]] = []
        self.stored: dict[int, int] = {}
        self.starts = 0
        self.start_failures = 0

    async def start(self) -> None:
        self.starts += 1
        if self.start_failures:
            self.start_failures -= 1
            raise OSError("connection refused")

    async def close(self) -> None:
        pass

    async def write_batch(self, albums: Sequence[Mapping[str, Any]]) -> int:
        self.calls.append([int(a["album_id"]) for a in albums])
        if self.failures:
            self.failures -= 1
            raise self.error("store unavailable")
        if any(int(a["album_id"]) in self.poison for a in albums):
            raise Refused("constraint violated")
        changed = 0
        for a in latest_versions(albums):
            if self.stored.get(int(a["album_id"]), 0) < int(a["version"]):
                self.stored[int(a["album_id"])] = int(a["version"])
                changed += 1
        return changed


class Clock:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


def test_latest_versions_keeps_the_highest_per_album_in_first_seen_order() -> None:
    batch = [album(1, 1), album(2, 3), album(1, 2), album(2, 1), album(3, 1)]
    assert [(a["album_id"], a["version"]) for a in latest_versions(batch)] == [
        (1, 2),
        (2, 3),
        (3, 1),
    ]


def test_backoff_doubles_with_jitter_between_half_and_all_and_is_capped() -> None:
    policy = RetryPolicy(retries=5, base=1.0, cap=10.0)
    assert [policy.delay(n, lambda: 0.0) for n in range(6)] == [0.5, 1, 2, 4, 5, 5]
    assert [policy.delay(n, lambda: 1.0) for n in range(6)] == [1, 2, 4, 8, 10, 10]


async def test_a_retriable_failure_is_retried_then_written() -> None:
    sink, clock = FakeSink(failures=3), Clock()
    retries: list[int] = []
    out = await write_with_retries(
        sink,
        [album(1), album(2)],
        RetryPolicy(retries=5, base=1.0),
        sleep=clock.sleep,
        rand=lambda: 1.0,
        on_retry=lambda exc, n, wait: retries.append(n),
    )
    assert [a["album_id"] for a in out.written] == [1, 2]
    assert out.parked == []
    assert out.retries == 3
    assert out.changed == 2
    assert clock.waits == [1.0, 2.0, 4.0]
    assert retries == [1, 2, 3]
    assert sink.stored == {1: 1, 2: 1}


async def test_five_retries_then_every_album_of_the_batch_is_parked() -> None:
    sink, clock = FakeSink(failures=100), Clock()
    out = await write_with_retries(
        sink, [album(1), album(2)], RetryPolicy(retries=5), sleep=clock.sleep
    )
    assert out.written == []
    assert [(a["album_id"], type(e).__name__, n) for a, e, n in out.parked] == [
        (1, "Down", 6),
        (2, "Down", 6),
    ]
    assert len(sink.calls) == 6
    assert len(clock.waits) == 5


async def test_a_bad_album_is_isolated_and_parked_alone_without_retries() -> None:
    sink, clock = FakeSink(poison={2}), Clock()
    out = await write_with_retries(
        sink, [album(1), album(2), album(3)], RetryPolicy(), sleep=clock.sleep
    )
    assert [a["album_id"] for a in out.written] == [1, 3]
    assert [(a["album_id"], type(e).__name__) for a, e, _ in out.parked] == [(2, "Refused")]
    assert clock.waits == []
    assert sink.stored == {1: 1, 3: 1}


async def test_a_data_error_does_not_escape_and_parks_at_once() -> None:
    class Broken(FakeSink):
        async def write_batch(self, albums: Sequence[Mapping[str, Any]]) -> int:
            raise KeyError("tenant_id")

    clock = Clock()
    out = await write_with_retries(Broken(), [album(1)], RetryPolicy(), sleep=clock.sleep)
    assert [(a["album_id"], type(e).__name__, n) for a, e, n in out.parked] == [(1, "KeyError", 1)]
    assert clock.waits == []


async def test_an_unwrapped_driver_error_is_retried() -> None:
    class Flaky(FakeSink):
        async def write_batch(self, albums: Sequence[Mapping[str, Any]]) -> int:
            if not self.calls:
                self.calls.append([])
                raise TimeoutError("read timed out")
            return await super().write_batch(albums)

    clock = Clock()
    out = await write_with_retries(Flaky(), [album(1)], RetryPolicy(), sleep=clock.sleep)
    assert [a["album_id"] for a in out.written] == [1]
    assert len(clock.waits) == 1


async def test_albums_of_a_split_batch_share_one_retry_budget() -> None:
    class BadThenDown(FakeSink):
        """Album 2 is refused; once split, the store goes down for good."""

        async def write_batch(self, albums: Sequence[Mapping[str, Any]]) -> int:
            self.calls.append([int(a["album_id"]) for a in albums])
            if len(albums) > 1:
                raise Refused("constraint violated")
            raise Down("gone")

    clock = Clock()
    sink = BadThenDown()
    out = await write_with_retries(
        sink, [album(i) for i in range(1, 11)], RetryPolicy(retries=5), sleep=clock.sleep
    )
    assert len(out.parked) == 10
    assert len(clock.waits) == 5  # not 5 per album


async def test_resources_connect_lazily_and_retry_a_failed_connect() -> None:
    settings = Settings.from_env({"SINK_BACKOFF_SECONDS": "0", "SINK_RETRIES": "3"})
    sink = FakeSink()
    sink.start_failures = 2
    resources = Resources(settings, sinks={"fake": sink})
    assert sink.starts == 0
    assert resources.health()["fake"]["status"] == "idle"
    out = await resources.write("fake", [album(7, 2)])
    assert [a["album_id"] for a in out.written] == [7]
    assert sink.starts == 3
    state = resources.health()["fake"]
    assert state["status"] == "ok"
    assert state["retries"] == 2
    assert state["albums_written"] == 1
    assert state["connected"] is True


async def test_resources_report_a_parked_batch_as_failing() -> None:
    settings = Settings.from_env({"SINK_BACKOFF_SECONDS": "0", "SINK_RETRIES": "1"})
    resources = Resources(settings, sinks={"fake": FakeSink(failures=10)})
    out = await resources.write("fake", [album(1), album(2)])
    assert len(out.parked) == 2
    state = resources.health()["fake"]
    assert state["status"] == "failing"
    assert state["albums_parked"] == 2
    assert "store unavailable" in state["last_error"]


def test_sinks_not_asked_for_or_without_endpoint_are_reported_disabled_with_reason() -> None:
    settings = Settings.from_env({"SINKS": "postgres", "DATABASE_URL": ""})
    health = Resources(settings).health()
    assert health["postgres"]["status"] == "disabled"
    assert health["postgres"]["reason"] == "DATABASE_URL is empty"
    assert {n: h["reason"] for n, h in health.items() if n != "postgres"} == {
        "s3": "not in SINKS",
        "qdrant": "not in SINKS",
        "neo4j": "not in SINKS",
    }


def test_unknown_sink_names_are_refused() -> None:
    from streams.settings import SettingsError

    with pytest.raises(SettingsError, match="unknown"):
        Settings.from_env({"SINKS": "s3,elastic"})


async def test_one_attempt_asks_for_a_retry_with_backoff_then_parks_when_none_is_left() -> None:
    policy = RetryPolicy(retries=2, base=1.0, cap=30.0)
    sink = FakeSink(failures=10)
    first = await write_attempt(sink, [album(1)], policy, attempt=0, rand=lambda: 1.0)
    assert isinstance(first.retry, Down)
    assert first.retry_after == 1.0
    assert first.parked == []
    assert first.written == []
    second = await write_attempt(sink, [album(1)], policy, attempt=1, rand=lambda: 1.0)
    assert second.retry_after == 2.0
    last = await write_attempt(sink, [album(1)], policy, attempt=2, rand=lambda: 1.0)
    assert last.retry is None
    assert [(a["album_id"], n) for a, _, n in last.parked] == [(1, 3)]


async def test_resources_show_a_sink_retrying_while_it_waits_and_ok_after() -> None:
    settings = Settings.from_env({"SINK_BACKOFF_SECONDS": "1", "SINK_RETRIES": "3"})
    resources = Resources(settings, sinks={"fake": FakeSink(failures=1)})
    out = await resources.attempt("fake", [album(3)], 0)
    assert out.retry is not None
    assert resources.health()["fake"]["status"] == "retrying"
    assert resources.health()["fake"]["albums_written"] == 0
    out = await resources.attempt("fake", [album(3)], 1)
    assert [a["album_id"] for a in out.written] == [3]
    state = resources.health()["fake"]
    assert state["status"] == "ok"
    assert state["retries"] == 1
    assert state["albums_written"] == 1


def _assembled(album_id: int) -> bytes:
    import orjson

    return orjson.dumps(
        {
            "schema": "album.assembled/v1",
            "event_id": f"{album_id}:1",
            "album_id": album_id,
            "version": 1,
            "status": "complete",
            "tenant_id": "acme",
            "channel_id": -100,
            "grouped_id": 5,
            "items_count": 1,
            "items": [{"post_id": 10 * album_id, "position": 0, "media_kind": "photo"}],
        }
    )


def _batch(*values: bytes) -> dict[Any, list[Any]]:
    from aiokafka import ConsumerRecord, TopicPartition

    tp = TopicPartition("album.assembled", 0)
    return {
        tp: [
            ConsumerRecord(tp.topic, 0, offset, 0, 0, b"k", value, None, 1, len(value), [])
            for offset, value in enumerate(values)
        ]
    }


async def test_a_sink_stage_writes_pauses_on_an_outage_then_parks_what_cannot_be_written() -> None:
    import orjson

    from agents.sinks import SinkStages
    from agents.stage import Backpressure

    settings = Settings.from_env({"SINK_BACKOFF_SECONDS": "1", "SINK_RETRIES": "1"})
    sink = FakeSink(failures=2)
    stages = SinkStages(Resources(settings, sinks={"fake": sink}))
    batch = _batch(_assembled(1), _assembled(2), b"not json")
    with pytest.raises(Backpressure) as paused:  # the store is down: pause, read it again
        await stages.handle("fake", batch)
    assert 0.5 <= paused.value.retry_after <= 1.0
    dead = await stages.handle("fake", batch)  # down again, no retry left: parked
    assert sink.stored == {}
    reasons = [orjson.loads(v)["error_type"] for _, _, v, _ in dead if v is not None]
    assert len(dead) == 3
    assert reasons.count("Down") == 2
    assert all(orjson.loads(v)["stage"] == "sink.fake" for _, _, v, _ in dead if v)
    assert all(
        orjson.loads(v)["source_topic"].endswith("-sink-fake-retry") for _, _, v, _ in dead if v
    )
    assert await stages.handle("fake", _batch(_assembled(3))) == []  # the store is back
    assert sink.stored == {3: 1}


async def test_a_store_that_never_answers_is_a_retriable_timeout() -> None:
    class Hung(FakeSink):
        async def write_batch(self, albums: Sequence[Mapping[str, Any]]) -> int:
            self.calls.append([a["album_id"] for a in albums])
            if len(self.calls) == 1:
                await asyncio.Event().wait()  # a stopped server: no answer, ever
            return await super().write_batch(albums)

    sink = Hung()
    clock = Clock()
    policy = RetryPolicy(retries=3, timeout=0.05)
    out = await write_with_retries(sink, [album(1), album(2)], policy, sleep=clock.sleep)
    assert [a["album_id"] for a in out.written] == [1, 2]
    assert out.parked == []
    assert len(clock.waits) == 1  # one retry after the timeout
    # a first attempt that times out is reported as the store's failure, not the album's
    first = await write_attempt(Hung(), [album(3)], policy)
    assert first.retry is not None
    assert "did not answer" in str(first.retry)


async def test_a_tenant_conflict_parks_that_album_alone_as_tenant_conflict() -> None:
    import orjson

    from agents.sinks import SinkStages
    from storage.errors import TenantConflict

    class Guarded(FakeSink):
        """A store where album 2 is held by another tenant."""

        async def write_batch(self, albums: Sequence[Mapping[str, Any]]) -> int:
            taken = [int(a["album_id"]) for a in albums if int(a["album_id"]) == 2]
            if taken:
                self.calls.append(taken)
                raise TenantConflict("fake", taken)
            return await super().write_batch(albums)

    settings = Settings.from_env({"SINK_BACKOFF_SECONDS": "1", "SINK_RETRIES": "3"})
    sink = Guarded()
    stages = SinkStages(Resources(settings, sinks={"fake": sink}))
    dead = await stages.handle("fake", _batch(_assembled(1), _assembled(2), _assembled(3)))
    assert sink.stored == {1: 1, 3: 1}  # the others are written, no retry of the store
    records = [orjson.loads(v) for _, _, v, _ in dead if v is not None]
    assert [(r["error_type"], r["attempts"]) for r in records] == [("tenant_conflict", 1)]
    assert "another tenant" in records[0]["error_message"]
