"""tables.album_state: transitions of one album in flight (pure, no clock)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from schemas.events import AlbumAssembled, AlbumParsed, VisionAnalyzed
from schemas.validation import InvalidEvent, validate_album_parsed, validate_vision_analyzed
from tables.aggregation import iso
from tables.album_state import (
    COMPLETE,
    PARTIAL,
    AlbumState,
    AssemblyPolicy,
    Outcome,
    apply_parsed,
    apply_vision,
    assemble,
    new_state,
    on_time,
)

POLICY = AssemblyPolicy(deadline_seconds=10, retention_seconds=100)
T0 = 1_738_231_200.0
ALBUM_ID = 42
# post_id → position: deliberately not in post_id order, so "ordered by position" is visible
POSITIONS = {1001: 2, 1002: 0, 1003: 1}
DESCRIPTIONS = {1001: "third picture", 1002: "first picture", 1003: "second picture"}
LABELS = {1001: ["sofa", "cat"], 1002: ["cat"], 1003: ["dog", "Cat"]}


def make_album(
    posts: dict[int, int] | None = None,
    *,
    tenant: str = "acme",
    event_id: str = "parsed-1",
    parsed_at: str = "2025-01-30T10:00:03Z",
    kinds: dict[int, str] | None = None,
) -> AlbumParsed:
    posts = POSITIONS if posts is None else posts
    return validate_album_parsed(
        {
            "schema": "albums.parsed/v1",
            "event_id": event_id,
            "tenant_id": tenant,
            "channel_id": -1001234567890,
            "grouped_id": 13579,
            "album_id": ALBUM_ID,
            "posted_at": "2025-01-30T10:00:00Z",
            "caption_text": "Weekend photos",
            "parsed_at": parsed_at,
            "items": [
                {
                    "post_id": pid,
                    "position": pos,
                    "media_kind": (kinds or {}).get(pid, "photo"),
                }
                for pid, pos in posts.items()
            ],
        }
    )


def make_vision(
    post_id: int,
    *,
    tenant: str = "acme",
    event_id: str | None = None,
    description: str | None = None,
    labels: list[str] | None = None,
    ocr: str = "",
    is_meme: bool = False,
    analyzed_at: str = "2025-01-30T10:00:09Z",
    album_id: int | None = ALBUM_ID,
) -> VisionAnalyzed:
    d: dict[str, Any] = {
        "schema": "posts.vision.analyzed/v1",
        "event_id": f"vision-{post_id}" if event_id is None else event_id,
        "tenant_id": tenant,
        "post_id": post_id,
        "channel_id": -1001234567890,
        "grouped_id": 13579,
        "analyzed_at": analyzed_at,
        "vision": {
            "description": DESCRIPTIONS.get(post_id, "") if description is None else description,
            "labels": LABELS.get(post_id, []) if labels is None else labels,
            "ocr_text": ocr,
            "is_meme": is_meme,
            "has_text": bool(ocr),
        },
    }
    if album_id is not None:
        d["album_id"] = album_id
    return validate_vision_analyzed(d)


Event = AlbumParsed | VisionAnalyzed


@dataclass
class Driver:
    """Feeds events to the transitions the way the assembler agent does; records emissions."""

    policy: AssemblyPolicy = POLICY
    through_table: bool = False
    state: AlbumState | None = None
    emitted: list[AlbumAssembled] = field(default_factory=list)
    rejected: list[tuple[VisionAnalyzed, InvalidEvent]] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    def _take(self, out: Outcome) -> Outcome:
        self.outcomes.append(out)
        self.rejected.extend(out.rejected)
        if out.emit is not None:
            self.emitted.append(out.emit)
        if out.changed:
            st = out.state
            if st is not None and self.through_table:
                st = AlbumState.from_dict(orjson.loads(orjson.dumps(st.to_dict())))
            self.state = st
        else:
            assert out.state == self.state, "a no-op must leave the state as it was"
        return out

    def feed(self, event: Event, now: float) -> Outcome:
        if isinstance(event, AlbumParsed):
            return self._take(apply_parsed(self.state, event, now, self.policy))
        return self._take(apply_vision(self.state, event, now, self.policy))

    def tick(self, now: float) -> Outcome:
        assert self.state is not None
        return self._take(on_time(self.state, now, self.policy))


def all_events() -> list[Event]:
    return [make_album(), *(make_vision(pid) for pid in POSITIONS)]


def assert_complete_v1(a: AlbumAssembled) -> None:
    assert a.version == 1
    assert a.status == COMPLETE
    assert a.event_id == "42:1"
    assert a.to_dict()["event_id"] == "42:1"
    assert a.items_count == 3
    assert a.items_analyzed == 3
    assert [i.position for i in a.items] == [0, 1, 2]
    assert [i.post_id for i in a.items] == [1002, 1003, 1001]
    assert all(i.vision is not None for i in a.items)
    assert [i.vision["description"] for i in a.items if i.vision] == [
        "first picture",
        "second picture",
        "third picture",
    ]
    assert a.vision_summary == "first picture | second picture | third picture"
    assert a.vision_labels == ("cat", "dog", "sofa")


# -- complete assembly -------------------------------------------------------------------------


def test_all_vision_then_parsed_emits_once_complete() -> None:
    d = Driver()
    for i, pid in enumerate(POSITIONS):
        out = d.feed(make_vision(pid), T0 + i)
        assert out.emit is None
        assert out.changed is True
    assert d.state is not None
    assert d.state.album is None
    assert d.state.version == 0
    out = d.feed(make_album(), T0 + 5)
    assert out.emit is not None
    assert out.note == "emitted"
    assert len(d.emitted) == 1
    assert_complete_v1(d.emitted[0])
    assert d.state.version == 1
    assert d.state.status == COMPLETE
    assert d.state.dirty is False


def test_parsed_then_vision_emits_on_the_last_vision() -> None:
    d = Driver()
    d.feed(make_album(), T0)
    assert d.feed(make_vision(1001), T0 + 1).emit is None
    assert d.feed(make_vision(1002), T0 + 2).emit is None
    out = d.feed(make_vision(1003), T0 + 3)
    assert out.emit is not None
    assert_complete_v1(out.emit)


@pytest.mark.parametrize("through_table", [False, True], ids=["in-memory", "via-to_dict"])
@pytest.mark.parametrize(
    "order", list(itertools.permutations(range(4))), ids=lambda o: "".join(map(str, o))
)
def test_every_arrival_order_emits_exactly_once(
    order: tuple[int, ...], through_table: bool
) -> None:
    events = all_events()
    d = Driver(through_table=through_table)
    for step, idx in enumerate(order):
        d.feed(events[idx], T0 + step)
    assert len(d.emitted) == 1
    assert_complete_v1(d.emitted[0])
    # replaying the whole sequence (at-least-once redelivery) changes nothing
    for step, idx in enumerate(order):
        out = d.feed(events[idx], T0 + 5 + step)
        assert out.changed is False
        assert out.emit is None
    # nor does time, short of retention
    assert d.tick(T0 + 50).emit is None
    assert len(d.emitted) == 1


@pytest.mark.parametrize(
    "order", list(itertools.permutations(range(4))), ids=lambda o: "".join(map(str, o))
)
def test_every_order_with_each_event_delivered_twice(order: tuple[int, ...]) -> None:
    events = all_events()
    d = Driver()
    for step, idx in enumerate(order):
        d.feed(events[idx], T0 + step)
        out = d.feed(events[idx], T0 + step + 0.5)
        assert out.changed is False
        assert out.emit is None
    assert len(d.emitted) == 1
    assert_complete_v1(d.emitted[0])


def test_single_item_album() -> None:
    d = Driver()
    d.feed(make_album({7: 0}), T0)
    out = d.feed(make_vision(7, description="alone"), T0 + 1)
    assert out.emit is not None
    assert out.emit.status == COMPLETE
    assert out.emit.items_count == out.emit.items_analyzed == 1


# -- duplicates --------------------------------------------------------------------------------


def test_same_vision_twice_changes_nothing() -> None:
    d = Driver()
    d.feed(make_album(), T0)
    d.feed(make_vision(1001), T0 + 1)
    before = d.state
    out = d.feed(make_vision(1001), T0 + 2)
    assert out.changed is False
    assert out.emit is None
    assert out.note == "duplicate"
    assert out.state == before


def test_same_vision_content_with_another_event_id_is_a_duplicate() -> None:
    d = Driver()
    d.feed(make_album(), T0)
    d.feed(make_vision(1001), T0 + 1)
    out = d.feed(make_vision(1001, event_id="another-id"), T0 + 2)
    assert out.changed is False
    assert out.emit is None


def test_same_parsed_twice_with_new_event_id_and_parsed_at_changes_nothing() -> None:
    d = Driver()
    d.feed(make_album(), T0)
    before = d.state
    again = make_album(event_id="parsed-2", parsed_at="2025-01-30T10:05:00Z")
    out = d.feed(again, T0 + 3)
    assert out.changed is False
    assert out.emit is None
    assert out.note == "duplicate"
    assert out.state == before


def test_repeated_parsed_after_emission_is_a_no_op() -> None:
    d = Driver()
    for i, e in enumerate(all_events()):
        d.feed(e, T0 + i)
    assert len(d.emitted) == 1
    out = d.feed(make_album(event_id="parsed-3", parsed_at="2025-01-31T00:00:00Z"), T0 + 20)
    assert out.changed is False
    assert out.emit is None
    assert len(d.emitted) == 1


def test_repeated_parsed_with_items_in_another_order_is_a_no_op() -> None:
    d = Driver()
    d.feed(make_album(), T0)
    reordered = make_album(dict(reversed(list(POSITIONS.items()))), event_id="parsed-9")
    out = d.feed(reordered, T0 + 1)
    assert out.changed is False
    assert out.emit is None


def test_duplicate_vision_while_buffered_before_parse() -> None:
    d = Driver()
    d.feed(make_vision(1001), T0)
    out = d.feed(make_vision(1001), T0 + 1)
    assert out.changed is False
    assert d.state is not None
    assert list(d.state.vision) == [1001]


# -- newer / older vision of a post -------------------------------------------------------------


def test_newer_vision_after_complete_reassembles_with_next_version() -> None:
    d = Driver()
    for i, e in enumerate(all_events()):
        d.feed(e, T0 + i)
    newer = make_vision(
        1002,
        event_id="v2",
        description="first picture, re-analyzed",
        analyzed_at="2025-01-30T11:00:00Z",
    )
    out = d.feed(newer, T0 + 30)
    assert out.emit is not None
    assert out.emit.version == 2
    assert out.emit.status == COMPLETE
    assert out.emit.event_id == "42:2"
    assert out.emit.vision_summary.startswith("first picture, re-analyzed | ")


def test_older_vision_than_the_one_kept_is_stale() -> None:
    d = Driver()
    for i, e in enumerate(all_events()):
        d.feed(e, T0 + i)
    older = make_vision(
        1002, event_id="v0", description="outdated", analyzed_at="2025-01-30T09:00:00Z"
    )
    out = d.feed(older, T0 + 30)
    assert out.changed is False
    assert out.emit is None
    assert len(d.emitted) == 1


def test_newer_vision_without_event_ids_is_not_mistaken_for_a_duplicate() -> None:
    """event_id is optional in validation ('' when absent): two *different* events that both
    lack it must not count as the same event. With event ids this exact update re-assembles
    (see test_newer_vision_after_complete_reassembles_with_next_version)."""
    d = Driver()
    events: list[Event] = [make_album(), *(make_vision(pid, event_id="") for pid in POSITIONS)]
    for i, e in enumerate(events):
        d.feed(e, T0 + i)
    assert len(d.emitted) == 1
    newer = make_vision(
        1002,
        event_id="",
        description="first picture, re-analyzed",
        analyzed_at="2025-01-30T11:00:00Z",
    )
    out = d.feed(newer, T0 + 30)
    assert out.emit is not None
    assert out.emit.version == 2
    assert out.emit.vision_summary.startswith("first picture, re-analyzed | ")


# -- deadline and late vision ------------------------------------------------------------------


def _partial_driver() -> Driver:
    d = Driver()
    d.feed(make_album(), T0)
    d.feed(make_vision(1003), T0 + 2)
    return d


def test_on_time_before_the_deadline_does_nothing() -> None:
    d = _partial_driver()
    before = d.state
    for now in (T0 + 3, T0 + 9.999):
        out = d.tick(now)
        assert out.emit is None
        assert out.changed is False
        assert out.state == before


def test_deadline_emits_partial_v1() -> None:
    d = _partial_driver()
    out = d.tick(T0 + POLICY.deadline_seconds)
    assert out.changed is True
    a = out.emit
    assert a is not None
    assert a.version == 1
    assert a.status == PARTIAL
    assert a.event_id == "42:1"
    assert a.items_count == 3
    assert a.items_analyzed == 1
    assert a.items_analyzed < a.items_count
    assert [(i.post_id, i.vision is not None) for i in a.items] == [
        (1002, False),
        (1003, True),
        (1001, False),
    ]
    assert a.vision_summary == "second picture"
    assert d.state is not None
    assert d.state.status == PARTIAL
    assert d.state.version == 1
    # a second tick emits nothing more
    out = d.tick(T0 + POLICY.deadline_seconds + 1)
    assert out.emit is None
    assert out.changed is False


def test_deadline_without_any_vision_emits_partial_with_nothing_analyzed() -> None:
    d = Driver()
    d.feed(make_album(), T0)
    out = d.tick(T0 + 10)
    assert out.emit is not None
    assert out.emit.status == PARTIAL
    assert out.emit.items_analyzed == 0
    assert all(i.vision is None for i in out.emit.items)
    assert out.emit.vision_labels == ()
    assert out.emit.vision_summary == ""


def test_deadline_counts_from_the_parse_not_from_early_vision() -> None:
    d = Driver()
    d.feed(make_vision(1001), T0)
    d.feed(make_album(), T0 + 50)
    assert d.state is not None
    assert d.state.deadline_at == T0 + 50 + POLICY.deadline_seconds
    assert d.tick(T0 + 55).emit is None
    out = d.tick(T0 + 60)
    assert out.emit is not None
    assert out.emit.status == PARTIAL
    assert out.emit.items_analyzed == 1


def test_late_vision_after_partial_reassembles_complete_v2() -> None:
    d = Driver()
    d.feed(make_album({1: 0, 2: 1}), T0)
    d.feed(make_vision(1, description="one"), T0 + 1)
    first = d.tick(T0 + 10).emit
    assert first is not None
    assert (first.version, first.status) == (1, PARTIAL)

    late = d.feed(make_vision(2, description="two"), T0 + 30)
    assert late.emit is not None
    assert late.emit.version == 2
    assert late.emit.status == COMPLETE
    assert late.emit.event_id == "42:2"
    assert late.emit.items_analyzed == late.emit.items_count == 2
    assert late.emit.vision_summary == "one | two"

    again = d.feed(make_vision(2, description="two"), T0 + 31)
    assert again.emit is None
    assert again.changed is False
    assert d.tick(T0 + 40).emit is None
    assert [(a.version, a.status) for a in d.emitted] == [(1, PARTIAL), (2, COMPLETE)]


def test_several_late_visions_each_raise_the_version_until_complete() -> None:
    d = _partial_driver()
    d.tick(T0 + 10)
    d.feed(make_vision(1001), T0 + 20)
    d.feed(make_vision(1002), T0 + 21)
    assert [a.version for a in d.emitted] == list(range(1, len(d.emitted) + 1))
    assert d.emitted[-1].status == COMPLETE
    assert d.emitted[-1].items_analyzed == 3
    assert all(a.status == PARTIAL for a in d.emitted[:-1])


def test_album_overdue_after_downtime_is_emitted_not_deleted() -> None:
    """A worker down past the retention of a never-emitted album must still emit it."""
    d = _partial_driver()
    out = d.tick(T0 + 10 * POLICY.retention_seconds)
    assert out.state is not None
    assert out.emit is not None
    assert out.emit.status == PARTIAL


# -- retention ---------------------------------------------------------------------------------


def test_state_is_deleted_after_retention_following_complete() -> None:
    d = Driver()
    for i, e in enumerate(all_events()):
        d.feed(e, T0 + i)
    assert d.state is not None
    emitted_at = T0 + 3
    assert d.state.expire_at == emitted_at + POLICY.retention_seconds
    out = d.tick(emitted_at + POLICY.retention_seconds - 0.001)
    assert out.changed is False
    assert out.state is not None
    out = d.tick(emitted_at + POLICY.retention_seconds)
    assert out.state is None
    assert out.changed is True
    assert out.emit is None
    assert out.rejected == ()
    assert out.note == "expired"


def test_state_is_deleted_after_retention_following_partial() -> None:
    d = _partial_driver()
    d.tick(T0 + 10)
    assert d.tick(T0 + 10 + 99).state is not None
    out = d.tick(T0 + 10 + 100)
    assert out.state is None
    assert out.emit is None
    assert out.rejected == ()


def test_late_vision_extends_retention() -> None:
    d = _partial_driver()
    d.tick(T0 + 10)
    d.feed(make_vision(1001), T0 + 50)
    d.feed(make_vision(1002), T0 + 60)
    assert d.state is not None
    assert d.state.expire_at == T0 + 60 + POLICY.retention_seconds
    assert d.tick(T0 + 150).state is not None


def test_vision_only_state_past_retention_is_rejected_not_dropped() -> None:
    d = Driver()
    d.feed(make_vision(1001), T0)
    d.feed(make_vision(1002), T0 + 5)
    assert d.tick(T0 + 99).state is not None
    out = d.tick(T0 + 100)
    assert out.state is None
    assert out.changed is True
    assert out.emit is None
    assert sorted(e.post_id for e, _ in out.rejected) == [1001, 1002]
    assert {err.error_type for _, err in out.rejected} == {"album_never_parsed"}
    assert all(isinstance(err, InvalidEvent) and str(err) for _, err in out.rejected)


# -- invalid combinations ----------------------------------------------------------------------


def test_vision_for_a_post_not_in_the_album_raises() -> None:
    d = Driver()
    d.feed(make_album(), T0)
    with pytest.raises(InvalidEvent) as info:
        apply_vision(d.state, make_vision(9999), T0 + 1, POLICY)
    assert info.value.error_type == "post_not_in_album"


def test_vision_of_another_tenant_raises() -> None:
    d = Driver()
    d.feed(make_album(), T0)
    with pytest.raises(InvalidEvent) as info:
        apply_vision(d.state, make_vision(1001, tenant="other"), T0 + 1, POLICY)
    assert info.value.error_type == "tenant_mismatch"


def test_parsed_of_another_tenant_raises() -> None:
    d = Driver()
    d.feed(make_album(), T0)
    with pytest.raises(InvalidEvent) as info:
        apply_parsed(d.state, make_album(tenant="other"), T0 + 1, POLICY)
    assert info.value.error_type == "tenant_mismatch"


def test_vision_without_album_id_and_no_state_raises() -> None:
    with pytest.raises(InvalidEvent) as info:
        apply_vision(None, make_vision(1001, album_id=None), T0, POLICY)
    assert info.value.error_type == "missing_field"


def test_buffered_vision_not_in_album_is_rejected_when_parsed_arrives() -> None:
    d = Driver()
    d.feed(make_vision(1001), T0)
    d.feed(make_vision(5555), T0 + 1)
    d.feed(make_vision(1002, tenant="other"), T0 + 2)
    out = d.feed(make_album(), T0 + 3)
    reasons = {e.post_id: err.error_type for e, err in out.rejected}
    assert reasons == {5555: "post_not_in_album", 1002: "tenant_mismatch"}
    assert d.state is not None
    assert set(d.state.vision) == {1001}
    assert d.state.items_analyzed == 1
    assert out.emit is None
    # the right vision for 1002 and 1003 still completes it
    d.feed(make_vision(1002), T0 + 4)
    out = d.feed(make_vision(1003), T0 + 5)
    assert out.emit is not None
    assert_complete_v1(out.emit)


def test_too_many_buffered_vision_before_parse() -> None:
    policy = AssemblyPolicy(deadline_seconds=10, retention_seconds=100, max_buffered_vision=2)
    d = Driver(policy=policy)
    d.feed(make_vision(1), T0)
    d.feed(make_vision(2), T0)
    # a duplicate of a buffered one is still fine
    assert d.feed(make_vision(2), T0).changed is False
    with pytest.raises(InvalidEvent) as info:
        apply_vision(d.state, make_vision(3), T0, policy)
    assert info.value.error_type == "too_many_buffered"


def test_assemble_before_parse_is_an_error() -> None:
    st = new_state(ALBUM_ID, T0, POLICY)
    with pytest.raises(ValueError, match="before it is parsed"):
        assemble(st, T0)


# -- assembled content -------------------------------------------------------------------------


def test_assembled_record_carries_the_album_and_aggregates() -> None:
    d = Driver()
    album = make_album(kinds={1001: "photo", 1002: "video", 1003: "photo"})
    d.feed(album, T0)
    d.feed(make_vision(1001, ocr="SALE -50%", is_meme=True), T0 + 1)
    d.feed(make_vision(1002), T0 + 2)
    out = d.feed(make_vision(1003, ocr="Q3 revenue"), T0 + 3)
    a = out.emit
    assert a is not None
    assert a.album_kind == "mixed"
    assert a.tenant_id == "acme"
    assert a.channel_id == -1001234567890
    assert a.grouped_id == 13579
    assert a.caption_text == "Weekend photos"
    assert a.posted_at == "2025-01-30T10:00:00Z"
    assert a.ocr_text == "Q3 revenue\nSALE -50%"  # item order: positions 1 then 2
    assert a.has_meme is True
    assert a.has_text is True
    assert [i.media_kind for i in a.items] == ["video", "photo", "photo"]
    d2 = a.to_dict()
    assert d2["schema"] == "album.assembled/v1"
    assert d2["vision_labels"] == ["cat", "dog", "sofa"]
    assert d2["items"][0] == {
        "post_id": 1002,
        "position": 0,
        "media_kind": "video",
        "vision": make_vision(1002).vision.to_dict(),
    }
    orjson.dumps(d2)


def test_lag_is_completion_minus_creation() -> None:
    d = Driver()
    d.feed(make_vision(1001), T0)  # the state is created by the first event
    d.feed(make_album(), T0 + 4)
    d.feed(make_vision(1002), T0 + 5)
    out = d.feed(make_vision(1003), T0 + 6.25)
    a = out.emit
    assert a is not None
    assert a.assembly_lag_seconds == pytest.approx(6.25)
    assert a.assembly_started_at == iso(T0) == "2025-01-30T10:00:00.000Z"
    assert a.assembly_completed_at == iso(T0 + 6.25) == "2025-01-30T10:00:06.250Z"


def test_lag_of_partial_is_measured_at_the_deadline() -> None:
    d = _partial_driver()
    out = d.tick(T0 + 12.5)
    assert out.emit is not None
    assert out.emit.assembly_lag_seconds == pytest.approx(12.5)


# -- next_due ----------------------------------------------------------------------------------


def test_next_due() -> None:
    d = Driver()
    d.feed(make_vision(1001), T0)
    assert d.state is not None
    assert d.state.next_due() == T0 + POLICY.retention_seconds  # vision only: its expiry
    d.feed(make_album(), T0 + 5)
    assert d.state.next_due() == T0 + 5 + POLICY.deadline_seconds  # waiting: the deadline
    d.tick(T0 + 15)  # partial
    assert d.state.version == 1
    assert d.state.next_due() == T0 + 15 + POLICY.retention_seconds  # emitted: expiry
    d.feed(make_vision(1002), T0 + 20)
    d.feed(make_vision(1003), T0 + 21)
    assert d.state.status == COMPLETE
    assert d.state.next_due() == T0 + 21 + POLICY.retention_seconds


def test_next_due_of_complete_album_is_its_expiry() -> None:
    d = Driver()
    for i, e in enumerate(all_events()):
        d.feed(e, T0 + i)
    assert d.state is not None
    assert d.state.next_due() == d.state.expire_at == T0 + 3 + POLICY.retention_seconds


# -- (de)serialization -------------------------------------------------------------------------


def _states() -> list[AlbumState]:
    out: list[AlbumState] = [new_state(ALBUM_ID, T0, POLICY)]
    d = Driver()
    d.feed(make_vision(1001, ocr="Привет, мир", is_meme=True), T0)
    assert d.state is not None
    out.append(d.state)  # vision only
    d.feed(make_album(), T0 + 1)
    out.append(d.state)  # parsed, waiting
    d.tick(T0 + 11)
    out.append(d.state)  # partial
    d.feed(make_vision(1002), T0 + 12)
    d.feed(make_vision(1003), T0 + 13)
    out.append(d.state)  # complete v2
    return out


@pytest.mark.parametrize("index", range(5))
def test_to_dict_from_dict_round_trip(index: int) -> None:
    st = _states()[index]
    assert AlbumState.from_dict(st.to_dict()) == st
    raw = orjson.dumps(st.to_dict())
    back = AlbumState.from_dict(orjson.loads(raw))
    assert back == st
    assert back.to_dict() == st.to_dict()
    assert back.next_due() == st.next_due()
