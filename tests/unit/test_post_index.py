"""tables.post_index: the post→album index entry, its buffer of early vision, and expiry."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from schemas.events import VisionAnalyzed
from schemas.validation import InvalidEvent, validate_vision_analyzed
from tables.post_index import (
    MAX_PENDING,
    PendingVision,
    PostEntry,
    apply_index,
    apply_vision,
    on_time,
)

T0 = 1_738_231_200.0
RETENTION = 100.0
POST = 1001
ALBUM = 42


def vision(
    post_id: int = POST,
    *,
    event_id: str = "e1",
    tenant: str = "acme",
    description: str = "a cat on a sofa",
    analyzed_at: str = "2025-01-30T10:00:09Z",
    grouped_id: bool = True,
) -> VisionAnalyzed:
    d: dict[str, Any] = {
        "schema": "posts.vision.analyzed/v1",
        "event_id": event_id,
        "tenant_id": tenant,
        "post_id": post_id,
        "channel_id": -1001234567890,
        "analyzed_at": analyzed_at,
        "vision": {"description": description, "labels": ["cat"]},
    }
    if grouped_id:
        d["grouped_id"] = 13579
    return validate_vision_analyzed(d)


def index(entry: PostEntry | None, now: float = T0, tenant: str = "acme", album: int = ALBUM):
    return apply_index(entry, POST, album, tenant, now, RETENTION)


# -- vision before the index entry -------------------------------------------------------------


def test_vision_before_index_is_buffered() -> None:
    ev = vision()
    out = apply_vision(None, ev, T0, RETENTION)
    assert out.changed is True
    assert out.forward == ()
    assert out.rejected == ()
    assert out.note == "buffered"
    assert out.entry is not None
    assert out.entry.post_id == POST
    assert out.entry.album_id is None
    assert out.entry.pending == (PendingVision(ev, T0),)
    assert out.entry.expire_at == T0 + RETENTION


def test_index_releases_buffered_vision_with_album_id() -> None:
    ev = vision()
    buffered = apply_vision(None, ev, T0, RETENTION).entry
    out = index(buffered, T0 + 5)
    assert out.changed is True
    assert out.rejected == ()
    assert out.forward == (replace(ev, album_id=ALBUM),)
    assert out.forward[0].album_id == ALBUM
    assert out.forward[0].vision == ev.vision
    assert out.forward[0].event_id == ev.event_id
    assert out.entry is not None
    assert out.entry.pending == ()
    assert out.entry.album_id == ALBUM
    assert out.entry.tenant_id == "acme"
    # retention now counts from the index entry
    assert out.entry.expire_at == T0 + 5 + RETENTION


def test_index_releases_every_buffered_vision_in_arrival_order() -> None:
    entry = None
    for i in range(3):
        entry = apply_vision(
            entry, vision(event_id=f"e{i}", description=f"d{i}"), T0 + i, RETENTION
        ).entry
    out = index(entry, T0 + 10)
    assert [e.event_id for e in out.forward] == ["e0", "e1", "e2"]
    assert {e.album_id for e in out.forward} == {ALBUM}


def test_index_releases_only_its_tenants_vision_and_keeps_the_others_waiting() -> None:
    entry = apply_vision(None, vision(event_id="mine"), T0, RETENTION).entry
    entry = apply_vision(entry, vision(event_id="theirs", tenant="other"), T0, RETENTION).entry
    out = index(entry, T0 + 1)
    assert [e.event_id for e in out.forward] == ["mine"]
    assert out.rejected == ()
    assert out.entry is not None
    assert [p.event.event_id for p in out.entry.pending] == ["theirs"]
    # the other tenant's own index entry for the same post id releases its vision
    theirs = index(out.entry, T0 + 2, tenant="other", album=ALBUM + 7)
    assert [(e.event_id, e.album_id) for e in theirs.forward] == [("theirs", ALBUM + 7)]
    assert theirs.entry is not None
    assert theirs.entry.album_of("acme") == ALBUM
    assert theirs.entry.album_of("other") == ALBUM + 7
    assert theirs.entry.pending == ()


def test_a_colliding_tenant_never_takes_the_post_whichever_comes_first() -> None:
    for first, second in (("acme", "other"), ("other", "acme")):
        entry = index(None, T0, tenant=first, album=ALBUM if first == "acme" else ALBUM + 7).entry
        entry = index(entry, T0 + 1, tenant=second, album=ALBUM if second == "acme" else ALBUM + 7)
        entry = entry.entry
        assert entry is not None
        for tenant, album in (("acme", ALBUM), ("other", ALBUM + 7)):
            out = apply_vision(entry, vision(tenant=tenant), T0 + 2, RETENTION)
            assert [e.album_id for e in out.forward] == [album]


# -- vision after the index entry --------------------------------------------------------------


def test_vision_after_index_is_forwarded_without_state_change() -> None:
    entry = index(None).entry
    assert entry is not None
    ev = vision()
    out = apply_vision(entry, ev, T0 + 1, RETENTION)
    assert out.changed is False
    assert out.entry == entry
    assert out.forward == (replace(ev, album_id=ALBUM),)
    assert out.note == "routed"


def test_vision_of_another_tenant_after_index_waits_for_its_own_index() -> None:
    entry = index(None).entry
    out = apply_vision(entry, vision(tenant="other"), T0 + 1, RETENTION)
    assert out.forward == ()
    assert out.note == "buffered"
    assert out.entry is not None
    assert out.entry.album_of("acme") == ALBUM  # acme's claim is untouched


def test_index_entry_twice_is_a_no_op() -> None:
    entry = index(None).entry
    out = index(entry, T0 + 1)
    assert out.changed is False
    assert out.entry == entry
    assert out.forward == ()
    assert out.note == "duplicate"


def test_index_entry_never_shortens_expiry() -> None:
    first = apply_vision(None, vision(), T0 + 50, RETENTION).entry
    assert first is not None
    out = index(first, T0)  # an index entry processed with an older clock
    assert out.entry is not None
    assert out.entry.expire_at == first.expire_at == T0 + 50 + RETENTION


# -- duplicates --------------------------------------------------------------------------------


def test_duplicate_vision_is_buffered_once() -> None:
    entry = apply_vision(None, vision(), T0, RETENTION).entry
    out = apply_vision(entry, vision(), T0 + 1, RETENTION)
    assert out.changed is False
    assert out.entry == entry
    assert out.note == "duplicate"
    assert out.entry is not None
    assert len(out.entry.pending) == 1
    released = index(out.entry, T0 + 2)
    assert len(released.forward) == 1


def test_distinct_events_are_buffered_separately() -> None:
    entry = apply_vision(None, vision(event_id="a"), T0, RETENTION).entry
    out = apply_vision(entry, vision(event_id="b", description="other"), T0 + 1, RETENTION)
    assert out.changed is True
    assert out.entry is not None
    assert [p.event.event_id for p in out.entry.pending] == ["a", "b"]


def test_distinct_events_without_event_id_are_not_duplicates() -> None:
    """event_id is optional (validation makes it ''): two different events without it are
    still two events; the second must not be dropped as a duplicate of the first."""
    entry = apply_vision(None, vision(event_id=""), T0, RETENTION).entry
    newer = vision(event_id="", description="re-analyzed", analyzed_at="2025-01-30T11:00:00Z")
    out = apply_vision(entry, newer, T0 + 1, RETENTION)
    assert out.changed is True
    assert out.entry is not None
    assert [p.event.vision.description for p in out.entry.pending] == [
        "a cat on a sofa",
        "re-analyzed",
    ]


def test_too_many_buffered() -> None:
    entry = None
    for i in range(MAX_PENDING):
        entry = apply_vision(
            entry, vision(event_id=f"e{i}", description=f"d{i}"), T0, RETENTION
        ).entry
    assert entry is not None
    assert len(entry.pending) == MAX_PENDING
    # a duplicate of one already buffered is still a no-op, not an overflow
    assert (
        apply_vision(entry, vision(event_id="e0", description="d0"), T0, RETENTION).changed is False
    )
    with pytest.raises(InvalidEvent) as info:
        apply_vision(entry, vision(event_id="one-too-many"), T0, RETENTION)
    assert info.value.error_type == "too_many_buffered"
    # another tenant's buffer for the same post id is its own
    other = apply_vision(entry, vision(event_id="x", tenant="other"), T0, RETENTION)
    assert other.note == "buffered"


# -- expiry ------------------------------------------------------------------------------------


def test_on_time_before_expiry_does_nothing() -> None:
    entry = apply_vision(None, vision(), T0, RETENTION).entry
    assert entry is not None
    out = on_time(entry, T0 + RETENTION - 0.001)
    assert out.changed is False
    assert out.entry == entry
    assert out.rejected == ()


def test_expired_pending_vision_is_rejected_as_orphan() -> None:
    entry = apply_vision(None, vision(event_id="a"), T0, RETENTION).entry
    entry = apply_vision(entry, vision(event_id="b", description="x"), T0 + 1, RETENTION).entry
    assert entry is not None
    assert entry.next_due() == T0 + RETENTION
    out = on_time(entry, T0 + RETENTION)
    assert out.entry is None
    assert out.changed is True
    assert out.forward == ()
    assert [e.event_id for e, _ in out.rejected] == ["a", "b"]
    assert {err.error_type for _, err in out.rejected} == {"orphan_vision_expired"}
    assert all(str(err) for _, err in out.rejected)


def test_expired_index_entry_is_deleted_quietly() -> None:
    entry = index(None).entry
    assert entry is not None
    assert entry.next_due() == T0 + RETENTION
    assert on_time(entry, T0 + 50).entry == entry
    out = on_time(entry, T0 + RETENTION + 1)
    assert out.entry is None
    assert out.changed is True
    assert out.rejected == ()


# -- (de)serialization -------------------------------------------------------------------------


def _entries() -> list[PostEntry]:
    buffered = apply_vision(None, vision(event_id="a"), T0, RETENTION).entry
    assert buffered is not None
    buffered2 = apply_vision(
        buffered, vision(event_id="b", description="кот", tenant="other"), T0 + 1, RETENTION
    ).entry
    assert buffered2 is not None
    indexed = index(None).entry
    assert indexed is not None
    return [buffered, buffered2, indexed]


@pytest.mark.parametrize("i", range(3))
def test_to_dict_from_dict_round_trip(i: int) -> None:
    entry = _entries()[i]
    assert PostEntry.from_dict(entry.to_dict()) == entry
    back = PostEntry.from_dict(orjson.loads(orjson.dumps(entry.to_dict())))
    assert back == entry
    assert back.next_due() == entry.next_due()


def test_round_trip_keeps_vision_without_grouped_id_in_an_album() -> None:
    """A vision event without album_id and without grouped_id is buffered here because it may
    belong to an album (in_album True); the stored entry must say the same after a reload,
    and the event it releases must not turn into a `grouped_id: null` (not in an album) one."""
    ev = vision(grouped_id=False)
    assert ev.in_album is True
    entry = apply_vision(None, ev, T0, RETENTION).entry
    assert entry is not None
    back = PostEntry.from_dict(orjson.loads(orjson.dumps(entry.to_dict())))
    assert back == entry
    released = index(back, T0 + 1).forward
    assert released[0].in_album is True


def test_an_entry_stored_by_the_single_tenant_version_reads_as_one_claim() -> None:
    old = {"post_id": POST, "expire_at": T0, "album_id": ALBUM, "tenant_id": "acme", "pending": []}
    entry = PostEntry.from_dict(old)
    assert entry.claims == (("acme", ALBUM),)
    assert PostEntry.from_dict(entry.to_dict()) == entry
