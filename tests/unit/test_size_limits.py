"""Size discipline: the largest valid input still makes records that fit Kafka's default 1 MB
(album_state, album.assembled, the relay's outbox and every dead letter), texts cut at the
edge are flagged, and over-limit input is refused with a reason."""

from __future__ import annotations

import orjson
import pytest

from agents.direct import MAX_RECORD_BYTES, _fitting
from schemas.dlq import DlqRecord, dead_letter
from schemas.validation import (
    MAX_INPUT_BYTES,
    TEXT_BUDGET_BYTES,
    InvalidEvent,
    decode_album_parsed,
    decode_vision_analyzed,
    fit_text,
    validate_album_parsed,
    validate_vision_analyzed,
)
from tables.album_state import AssemblyPolicy, apply_parsed, apply_vision

# the most expensive characters: a control character takes 6 bytes of JSON, an emoji 4 of UTF-8
HEAVY = (("\x01" + "😀" * 5) * 11_000)[: 64 * 1024]  # the 64K-character maximum of a text


def worst_album(album_id: int = 1) -> dict[str, object]:
    return {
        "schema": "albums.parsed/v1",
        "event_id": "e" * 200,
        "tenant_id": "t" * 64,
        "channel_id": -(2**62),
        "grouped_id": 2**62,
        "album_id": album_id,
        "posted_at": "2025-01-30T10:00:00.123456+05:30",
        "parsed_at": "2025-01-30T10:00:00.123456+05:30",
        "caption_text": HEAVY,
        "cover_media_id": "c" * 200,
        "items": [
            {
                "post_id": 2**62 + i,
                "message_id": 2**62 + i,
                "position": 2**62 + i,
                "media_kind": "k" * 32,
                "media_object_id": "m" * 200,
                "sha256": "s" * 128,
            }
            for i in range(10)
        ],
    }


def worst_vision(post_id: int, album_id: int = 1) -> dict[str, object]:
    """The largest vision event under MAX_INPUT_BYTES: both texts as heavy as they can be."""
    event = _vision(post_id, album_id, HEAVY)
    cut = len(HEAVY)
    while len(orjson.dumps(event)) > MAX_INPUT_BYTES:
        cut -= 1000
        event = _vision(post_id, album_id, HEAVY[:cut])
    return event


def _vision(post_id: int, album_id: int, ocr: str) -> dict[str, object]:
    return {
        "schema": "posts.vision.analyzed/v1",
        "event_id": "v" * 200,
        "tenant_id": "t" * 64,
        "post_id": post_id,
        "album_id": album_id,
        "grouped_id": 2**62,
        "channel_id": -(2**62),
        "analyzed_at": "2025-01-30T10:00:00.123456+05:30",
        "vision": {
            "description": HEAVY,
            "ocr_text": ocr,
            "labels": [f"{post_id % 1000}-{j}" + "\x01" * 190 for j in range(100)],
            "is_meme": True,
            "has_text": True,
            "provider": "p" * 200,
            "model": "m" * 200,
        },
    }


def test_fit_text_cuts_at_a_character_boundary_within_the_budget() -> None:
    assert fit_text("short") == ("short", False)
    cut, truncated = fit_text(HEAVY)
    assert truncated
    assert len(orjson.dumps(cut)) <= TEXT_BUDGET_BYTES
    assert HEAVY.startswith(cut)
    # one more character would not fit
    assert len(orjson.dumps(HEAVY[: len(cut) + 1])) > TEXT_BUDGET_BYTES


def test_the_largest_valid_album_makes_records_that_fit() -> None:
    album_raw = orjson.dumps(worst_album())
    assert len(album_raw) <= MAX_INPUT_BYTES  # it is valid input
    album = decode_album_parsed(album_raw)
    assert album.truncated
    policy = AssemblyPolicy(deadline_seconds=600, retention_seconds=3600)
    state = apply_parsed(None, album, 0.0, policy).state
    outcome = None
    for item in album.items:
        raw = orjson.dumps(worst_vision(item.post_id))
        assert len(raw) <= MAX_INPUT_BYTES
        vision = decode_vision_analyzed(raw)
        assert vision.vision.truncated
        outcome = apply_vision(state, vision, 1.0, policy)
        state = outcome.state
    assert outcome is not None
    assert outcome.emit is not None
    state_bytes = len(orjson.dumps(state.to_dict()))
    assembled = orjson.dumps(outcome.emit.to_dict())
    assert outcome.emit.texts_truncated
    parked = dead_letter(
        key=b"1",
        value=assembled,
        source_topic="album.assembled",
        source_partition=0,
        source_offset=0,
        stage="sink.postgres",
        error=RuntimeError("x" * 10_000),
    )
    parked_bytes = len(parked.encode())
    print(f"state {state_bytes}, album.assembled {len(assembled)}, parked {parked_bytes} bytes")
    for size in (state_bytes, len(assembled), parked_bytes):
        assert size <= MAX_RECORD_BYTES
    # a parked album is kept whole, so a replay writes it
    assert not parked.truncated


def test_over_limit_input_is_refused_and_its_dead_letter_is_cut_to_fit() -> None:
    raw = orjson.dumps({**worst_album(), "padding": "x" * MAX_INPUT_BYTES})
    with pytest.raises(InvalidEvent) as info:
        decode_album_parsed(raw)
    assert info.value.error_type == "message_too_large"
    record = dead_letter(
        key=b"k" * 100_000,
        value=raw,
        source_topic="albums.parsed",
        source_partition=0,
        source_offset=7,
        stage="validate",
        error=info.value,
    )
    encoded = record.encode()
    assert len(encoded) <= MAX_RECORD_BYTES
    back = DlqRecord.decode(encoded)
    assert back.truncated
    assert back.value_size == len(raw)
    assert back.value is not None
    assert raw.startswith(back.value)


def test_a_record_over_the_limit_becomes_a_dead_letter_instead_of_failing_forever() -> None:
    topic, key, value, partition = _fitting(("e2e.album.assembled", b"1", b"x" * 2_000_000, 3))
    assert topic.endswith("albums.dlq")
    assert key == b"1"
    assert partition is None
    assert value is not None
    assert len(value) <= MAX_RECORD_BYTES
    record = DlqRecord.decode(value)
    assert (record.error_type, record.stage, record.truncated) == (
        "record_too_large",
        "produce",
        True,
    )
    small = ("t", b"k", b"v", 0)
    assert _fitting(small) is small


def test_texts_under_the_budget_are_kept_whole_and_unflagged() -> None:
    from tests.unit.test_validation import album_dict, vision_dict

    assert not validate_album_parsed(album_dict()).truncated
    vision = validate_vision_analyzed(vision_dict()).vision
    assert not vision.truncated
    assert "truncated" not in vision.to_dict()
