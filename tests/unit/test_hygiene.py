"""Text, id and time hygiene at the edge: what every store would refuse never gets past it, and
times are compared as instants. Property tests (hypothesis) of the validators."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import NUL_REPLACEMENT, parse_instant
from schemas.validation import (
    InvalidEvent,
    decode_album_parsed,
    decode_vision_analyzed,
    validate_album_assembled,
    validate_album_parsed,
    validate_vision_analyzed,
)
from tables.album_state import AssemblyPolicy, apply_parsed, apply_vision
from tests.unit.test_validation import album_dict, vision_dict, with_value


def test_nul_becomes_the_replacement_character_in_every_text() -> None:
    album = validate_album_parsed(with_value(album_dict(), ("caption_text",), "a\x00b"))
    assert album.caption_text == f"a{NUL_REPLACEMENT}b"
    d = vision_dict()
    d["vision"].update(description="x\x00", ocr_text="\x00\x00", labels=["c\x00t"])
    vision = validate_vision_analyzed(d).vision
    assert (vision.description, vision.ocr_text) == (f"x{NUL_REPLACEMENT}", NUL_REPLACEMENT * 2)
    assert vision.labels == (f"c{NUL_REPLACEMENT}t",)
    # nothing with a NUL goes on: what a Postgres text or jsonb column refuses is gone
    assert b"\\u0000" not in orjson.dumps(validate_vision_analyzed(d).to_dict())


@pytest.mark.parametrize(
    "path",
    [("album_id",), ("grouped_id",), ("items", 0, "post_id"), ("items", 1, "message_id")],
)
@pytest.mark.parametrize("value", [0, -1, -(2**63)])
def test_non_positive_album_ids_are_refused(path: tuple[Any, ...], value: int) -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_album_parsed(with_value(album_dict(), path, value))
    assert info.value.error_type == "out_of_range"
    assert "positive" in str(info.value)


@pytest.mark.parametrize("path", [("post_id",), ("album_id",), ("grouped_id",)])
def test_non_positive_vision_ids_are_refused(path: tuple[Any, ...]) -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_vision_analyzed(with_value(vision_dict(), path, -5))
    assert info.value.error_type == "out_of_range"


def test_marked_negative_channel_ids_are_telegrams_and_accepted() -> None:
    assert validate_album_parsed(album_dict()).channel_id == -1001234567890


def test_assembled_events_with_a_non_positive_album_id_are_refused_by_sinks() -> None:
    event = {
        "schema": "album.assembled/v1",
        "album_id": -3,
        "version": 1,
        "tenant_id": "acme",
        "channel_id": -1,
        "grouped_id": 1,
        "status": "complete",
        "items": [{"post_id": 1, "position": 0}],
    }
    with pytest.raises(InvalidEvent):
        validate_album_assembled(event)


@pytest.mark.parametrize(
    ("given_time", "utc"),
    [
        ("2025-01-30T10:00:09Z", "2025-01-30T10:00:09Z"),
        ("2025-01-30T13:00:09+03:00", "2025-01-30T10:00:09Z"),
        ("2025-01-30T10:00:09.250-01:00", "2025-01-30T11:00:09.250000Z"),
        ("2025-01-30T10:00:09", "2025-01-30T10:00:09Z"),  # no offset: UTC
    ],
)
def test_times_are_kept_in_utc(given_time: str, utc: str) -> None:
    d = with_value(vision_dict(), ("analyzed_at",), given_time)
    assert validate_vision_analyzed(d).analyzed_at == utc
    album = validate_album_parsed(with_value(album_dict(), ("posted_at",), given_time))
    assert album.posted_at == utc


@pytest.mark.parametrize("bad", ["yesterday", "2025-13-01T00:00:00Z", "10:00"])
def test_unreadable_times_are_refused(bad: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_vision_analyzed(with_value(vision_dict(), ("analyzed_at",), bad))
    assert info.value.error_type == "invalid_time"


def _vision_at(analyzed_at: str, description: str) -> Any:
    d = vision_dict()
    d["analyzed_at"] = analyzed_at
    d["event_id"] = f"e-{analyzed_at}-{description}"
    d["vision"]["description"] = description
    return validate_vision_analyzed(d)


def test_the_same_instant_in_another_offset_is_not_stale() -> None:
    policy = AssemblyPolicy(deadline_seconds=600, retention_seconds=3600)
    state = apply_parsed(None, validate_album_parsed(album_dict()), 0.0, policy).state
    state = apply_vision(state, _vision_at("2025-01-30T10:00:09Z", "first"), 1.0, policy).state
    # stored as strings that sort the other way ("13:..." > "10:..."), the same instant
    again = _vision_at("2025-01-30T13:00:09+03:00", "second")
    assert apply_vision(state, again, 2.0, policy).note != "stale"
    # an earlier instant written with a later-looking offset is stale
    earlier = _vision_at("2025-01-30T12:59:00+03:00", "older")
    assert apply_vision(state, earlier, 2.0, policy).note == "stale"


def test_stored_times_of_older_states_still_compare() -> None:
    assert parse_instant("2025-01-30T10:00:09Z") == parse_instant("2025-01-30T13:00:09+03:00")
    assert parse_instant("garbage") is None
    assert parse_instant(None) is None


# -- properties ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def _outcome(validate: Callable[[Any], Any], value: Any) -> Any:
    """The validator's result, or the InvalidEvent it raised (any other exception fails)."""
    try:
        return validate(value)
    except InvalidEvent as exc:
        return exc


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(list(album_dict())), json_values, max_size=12))
def test_any_json_object_is_an_album_or_a_reason(d: dict[str, Any]) -> None:
    outcome = _outcome(validate_album_parsed, d)
    if isinstance(outcome, InvalidEvent):
        assert outcome.error_type
        assert str(outcome)
    else:
        assert outcome.album_id > 0
        assert 1 <= len(outcome.items) <= 10


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_an_event_or_a_reason(raw: bytes) -> None:
    for decode in (decode_album_parsed, decode_vision_analyzed):
        outcome = _outcome(decode, raw)
        assert not isinstance(outcome, InvalidEvent) or outcome.error_type


@settings(max_examples=200, deadline=None)
@given(
    caption=st.text(max_size=300),
    album_id=st.integers(min_value=1, max_value=2**63 - 1),
    n=st.integers(min_value=1, max_value=10),
)
def test_valid_albums_round_trip_without_nul(caption: str, album_id: int, n: int) -> None:
    d = album_dict(n)
    d.update(caption_text=caption, album_id=album_id)
    album = decode_album_parsed(orjson.dumps(d))
    assert album.album_id == album_id
    assert "\x00" not in (album.caption_text or "")
    assert album.caption_text == caption.replace("\x00", NUL_REPLACEMENT)
    assert decode_album_parsed(orjson.dumps(album.to_dict())) == album


def test_a_nul_in_an_assembled_event_from_elsewhere_is_replaced_for_every_sink() -> None:
    from schemas.validation import decode_album_assembled

    event = {
        "schema": "album.assembled/v1",
        "album_id": 3,
        "version": 1,
        "tenant_id": "acme",
        "channel_id": -1,
        "grouped_id": 1,
        "status": "complete",
        "caption_text": "a\x00b",
        "vision_labels": ["x\x00"],
        "items": [{"post_id": 1, "position": 0, "vision": {"description": "\x00"}}],
    }
    decoded = decode_album_assembled(orjson.dumps(event))
    assert b"\\u0000" not in orjson.dumps(decoded)
    assert decoded["caption_text"] == f"a{NUL_REPLACEMENT}b"
    assert decoded["items"][0]["vision"]["description"] == NUL_REPLACEMENT
