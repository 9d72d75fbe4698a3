"""storage.neo4j without a server: batch rows, timestamps and the retry flag of errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from neo4j.exceptions import IncompleteCommit, ServiceUnavailable, SessionExpired

from storage.neo4j import Neo4jError, Neo4jGraph, _wrap, album_rows


def event(album_id: int, version: int, **extra: Any) -> dict[str, Any]:
    return {
        "album_id": album_id,
        "version": version,
        "status": "complete",
        "tenant_id": "acme",
        "channel_id": -100,
        "grouped_id": 7,
        "album_kind": "photo",
        "items_count": 1,
        "caption_text": None,
        "posted_at": "2025-01-30T10:00:00Z",
        "vision_labels": ["cat", "", "sofa", "cat"],
        "items": [{"post_id": 11, "position": 0, "media_kind": "photo", "vision": {}}],
        **extra,
    }


def test_one_row_per_album_with_its_highest_version() -> None:
    rows = album_rows([event(1, 2), event(2, 1), event(1, 3), event(1, 1)])
    assert [(r["album_id"], r["version"]) for r in rows] == [(1, 3), (2, 1)]


def test_on_a_version_tie_the_first_event_stays_as_in_every_store() -> None:
    # schemas.events.supersedes: an equal version is the same event again
    rows = album_rows([event(1, 2, status="partial"), event(1, 2), event(1, 3, status="partial")])
    assert [(r["version"], r["status"]) for r in rows] == [(3, "partial")]
    rows = album_rows([event(1, 2, status="partial"), event(1, 2)])
    assert [r["status"] for r in rows] == ["partial"]


def test_a_row_keeps_ids_as_integers_and_tags_once() -> None:
    (row,) = album_rows([event(1, 1)])
    assert row["tags"] == ["cat", "sofa"]
    assert row["items"] == [{"post_id": 11, "position": 0, "media_kind": "photo"}]
    assert (row["album_id"], row["channel_id"]) == (1, -100)


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("2025-01-30T10:00:00Z", datetime(2025, 1, 30, 10, tzinfo=UTC)),
        (
            "2025-01-30T13:00:00+03:00",
            datetime(2025, 1, 30, 13, tzinfo=timezone(timedelta(hours=3))),
        ),
        ("2025-01-30T10:00:00", datetime(2025, 1, 30, 10, tzinfo=UTC)),  # naive: UTC
        ("yesterday", "yesterday"),  # kept as it came
        (None, None),
    ],
)
def test_posted_at_becomes_an_aware_datetime(raw: str | None, stored: object) -> None:
    (row,) = album_rows([event(1, 1, posted_at=raw)])
    assert row["posted_at"] == stored


@pytest.mark.parametrize(
    "broken",
    [{"album_id": 1}, event(1, "two"), event(1, 1, items=[{"position": 0}])],  # type: ignore[arg-type]
)
def test_a_malformed_event_is_a_value_error(broken: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="malformed"):
        album_rows([broken])


@pytest.mark.parametrize(
    ("exc", "retriable"),
    [
        (ServiceUnavailable("down"), True),
        (SessionExpired("gone"), True),
        (IncompleteCommit("unknown"), True),  # the album writes are idempotent
        (ConnectionRefusedError("refused"), True),
    ],
)
def test_connection_failures_are_retriable(exc: BaseException, retriable: bool) -> None:
    err = _wrap("x", exc)
    assert isinstance(err, Neo4jError)
    assert err.retriable is retriable


async def test_an_empty_batch_needs_no_server() -> None:
    graph = Neo4jGraph("bolt://127.0.0.1:1", "neo4j", "x")
    assert await graph.create_album_node_and_relationships([]) == 0
