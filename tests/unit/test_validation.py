"""schemas.validation: every rule of the wire contract in DESIGN.md."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from schemas.events import AlbumItem, Vision
from schemas.validation import (
    InvalidEvent,
    decode_album_parsed,
    decode_vision_analyzed,
    validate_album_parsed,
    validate_vision_analyzed,
)

Path = tuple[str | int, ...]


def album_dict(n_items: int = 3) -> dict[str, Any]:
    return {
        "schema": "albums.parsed/v1",
        "event_id": "3f1c2d9e-0000-4000-8000-000000000001",
        "tenant_id": "acme",
        "channel_id": -1001234567890,
        "grouped_id": 13579,
        "album_id": 42,
        "posted_at": "2025-01-30T10:00:00Z",
        "caption_text": "Weekend photos",
        "cover_media_id": None,
        "parsed_at": "2025-01-30T10:00:03Z",
        "items": [
            {
                "post_id": 1001 + i,
                "message_id": 555 + i,
                "position": i,
                "media_kind": "photo",
                "media_object_id": None,
                "sha256": None,
            }
            for i in range(n_items)
        ],
    }


def vision_dict() -> dict[str, Any]:
    return {
        "schema": "posts.vision.analyzed/v1",
        "event_id": "3f1c2d9e-0000-4000-8000-000000000002",
        "tenant_id": "acme",
        "post_id": 1001,
        "channel_id": -1001234567890,
        "album_id": 42,
        "grouped_id": 13579,
        "analyzed_at": "2025-01-30T10:00:09Z",
        "vision": {
            "description": "a cat on a sofa",
            "labels": ["cat", "sofa"],
            "ocr_text": "",
            "is_meme": False,
            "has_text": False,
            "provider": "name",
            "model": "name",
        },
    }


def _parent(d: Any, path: Path) -> Any:
    for step in path[:-1]:
        d = d[step]
    return d


def with_value(d: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    d = copy.deepcopy(d)
    _parent(d, path)[path[-1]] = value
    return d


def without(d: dict[str, Any], path: Path) -> dict[str, Any]:
    d = copy.deepcopy(d)
    del _parent(d, path)[path[-1]]
    return d


def enc(d: Any) -> bytes:
    return orjson.dumps(d)


def album_error(raw: bytes | None) -> str:
    with pytest.raises(InvalidEvent) as info:
        decode_album_parsed(raw)
    assert str(info.value), "an InvalidEvent must carry a reason"
    return info.value.error_type


def vision_error(raw: bytes | None) -> str:
    with pytest.raises(InvalidEvent) as info:
        decode_vision_analyzed(raw)
    assert str(info.value), "an InvalidEvent must carry a reason"
    return info.value.error_type


# -- valid events ------------------------------------------------------------------------------


def test_valid_album_decodes_every_field() -> None:
    album = decode_album_parsed(enc(album_dict()))
    assert album.album_id == 42
    assert album.tenant_id == "acme"
    assert album.channel_id == -1001234567890
    assert album.grouped_id == 13579
    assert album.event_id == "3f1c2d9e-0000-4000-8000-000000000001"
    assert album.posted_at == "2025-01-30T10:00:00Z"
    assert album.caption_text == "Weekend photos"
    assert album.cover_media_id is None
    assert album.parsed_at == "2025-01-30T10:00:03Z"
    assert album.items == (
        AlbumItem(post_id=1001, position=0, media_kind="photo", message_id=555),
        AlbumItem(post_id=1002, position=1, media_kind="photo", message_id=556),
        AlbumItem(post_id=1003, position=2, media_kind="photo", message_id=557),
    )


def test_valid_vision_decodes_every_field() -> None:
    ev = decode_vision_analyzed(enc(vision_dict()))
    assert ev.post_id == 1001
    assert ev.tenant_id == "acme"
    assert ev.album_id == 42
    assert ev.grouped_id == 13579
    assert ev.channel_id == -1001234567890
    assert ev.analyzed_at == "2025-01-30T10:00:09Z"
    assert ev.in_album is True
    assert ev.vision == Vision(
        description="a cat on a sofa",
        labels=("cat", "sofa"),
        ocr_text="",
        is_meme=False,
        has_text=False,
        provider="name",
        model="name",
    )


def test_album_to_dict_decodes_back_to_the_same_album() -> None:
    album = decode_album_parsed(enc(album_dict()))
    assert validate_album_parsed(album.to_dict()) == album
    assert decode_album_parsed(enc(album.to_dict())) == album


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda d: d, id="all-fields"),
        pytest.param(lambda d: without(d, ("grouped_id",)), id="no-grouped_id"),
        pytest.param(lambda d: without(d, ("album_id",)), id="no-album_id"),
        pytest.param(lambda d: without(without(d, ("album_id",)), ("grouped_id",)), id="neither"),
        pytest.param(lambda d: with_value(d, ("grouped_id",), None), id="grouped_id-null"),
    ],
)
def test_vision_to_dict_decodes_back_to_the_same_event(mutate: Any) -> None:
    """The pipeline re-encodes vision events with to_dict() (internal topics, state, DLQ).

    Decoding that again must give the same event, in particular the same `in_album`:
    otherwise a replayed dead letter of a post routed via the index would be ignored.
    """
    ev = decode_vision_analyzed(enc(mutate(vision_dict())))
    assert validate_vision_analyzed(ev.to_dict()) == ev
    assert decode_vision_analyzed(enc(ev.to_dict())) == ev


def test_optional_fields_may_be_absent_or_null() -> None:
    d = album_dict(1)
    for key in ("schema", "event_id", "posted_at", "caption_text", "cover_media_id", "parsed_at"):
        del d[key]
    for key in ("message_id", "media_object_id", "sha256"):
        del d["items"][0][key]
    album = decode_album_parsed(enc(d))
    assert album.event_id == ""
    assert album.caption_text is None
    assert album.items == (AlbumItem(post_id=1001, position=0, media_kind="photo"),)

    v = {"tenant_id": "acme", "post_id": 7, "vision": {}}
    ev = decode_vision_analyzed(enc(v))
    assert ev.vision == Vision()
    assert ev.album_id is None
    assert ev.in_album is True


def test_unknown_extra_fields_are_accepted() -> None:
    d = album_dict(2)
    d["future_field"] = {"nested": [1, 2, 3]}
    d["items"][0]["extra"] = "x"
    album = decode_album_parsed(enc(d))
    assert album == decode_album_parsed(enc(album_dict(2)))

    v = vision_dict()
    v["confidence"] = 0.93
    v["vision"]["bboxes"] = [[0, 0, 1, 1]]
    assert decode_vision_analyzed(enc(v)) == decode_vision_analyzed(enc(vision_dict()))


def test_items_come_back_sorted_by_position() -> None:
    d = album_dict(4)
    d["items"] = [d["items"][i] for i in (2, 0, 3, 1)]
    album = decode_album_parsed(enc(d))
    assert [i.position for i in album.items] == [0, 1, 2, 3]
    assert [i.post_id for i in album.items] == [1001, 1002, 1003, 1004]


def test_positions_need_not_be_contiguous() -> None:
    d = album_dict(2)
    d["items"][0]["position"] = 7
    d["items"][1]["position"] = 3
    album = decode_album_parsed(enc(d))
    assert [(i.position, i.post_id) for i in album.items] == [(3, 1002), (7, 1001)]


@pytest.mark.parametrize("n", [1, 10])
def test_one_to_ten_items_are_accepted(n: int) -> None:
    assert len(decode_album_parsed(enc(album_dict(n))).items) == n


def test_labels_are_stripped_and_blank_ones_dropped() -> None:
    v = with_value(vision_dict(), ("vision", "labels"), [" cat ", "", "  ", "sofa"])
    assert decode_vision_analyzed(enc(v)).vision.labels == ("cat", "sofa")


def test_vision_flags_default_to_false_when_null() -> None:
    v = with_value(vision_dict(), ("vision", "is_meme"), None)
    v = with_value(v, ("vision", "has_text"), None)
    ev = decode_vision_analyzed(enc(v))
    assert ev.vision.is_meme is False
    assert ev.vision.has_text is False


# -- in_album / routing ------------------------------------------------------------------------


def test_grouped_id_null_means_not_in_album() -> None:
    v = without(with_value(vision_dict(), ("grouped_id",), None), ("album_id",))
    ev = decode_vision_analyzed(enc(v))
    assert ev.in_album is False
    assert ev.grouped_id is None


def test_missing_grouped_id_says_nothing_so_in_album() -> None:
    v = without(without(vision_dict(), ("grouped_id",)), ("album_id",))
    ev = decode_vision_analyzed(enc(v))
    assert ev.in_album is True
    assert ev.album_id is None


def test_album_id_routes_even_with_grouped_id_null() -> None:
    v = with_value(vision_dict(), ("grouped_id",), None)
    ev = decode_vision_analyzed(enc(v))
    assert ev.in_album is True
    assert ev.album_id == 42


def test_album_id_null_is_like_absent() -> None:
    ev = decode_vision_analyzed(enc(with_value(vision_dict(), ("album_id",), None)))
    assert ev.album_id is None
    assert ev.in_album is True


# -- malformed bytes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "error_type"),
    [
        pytest.param(None, "invalid_json", id="null-value"),
        pytest.param(b"", "invalid_json", id="empty"),
        pytest.param(b'{"album_id": 1, "items": [ oops', "invalid_json", id="truncated"),
        pytest.param(b"\xff\xfe{}", "invalid_json", id="not-utf8"),
        pytest.param(b"NaN", "invalid_json", id="nan"),
        pytest.param(b"[]", "not_an_object", id="array"),
        pytest.param(b"[1, 2]", "not_an_object", id="array-of-ints"),
        pytest.param(b'"text"', "not_an_object", id="string"),
        pytest.param(b"42", "not_an_object", id="number"),
        pytest.param(b"null", "not_an_object", id="json-null"),
        pytest.param(b"true", "not_an_object", id="json-true"),
    ],
)
def test_bad_bytes_are_rejected(raw: bytes | None, error_type: str) -> None:
    assert album_error(raw) == error_type
    assert vision_error(raw) == error_type


def test_invalid_event_is_a_value_error_with_a_reason() -> None:
    exc = InvalidEvent("missing_field", "required field 'album_id' is missing")
    assert isinstance(exc, ValueError)
    assert exc.error_type == "missing_field"
    assert str(exc) == "required field 'album_id' is missing"


# -- albums.parsed: missing fields -------------------------------------------------------------


ALBUM_REQUIRED: list[Path] = [
    ("album_id",),
    ("tenant_id",),
    ("channel_id",),
    ("grouped_id",),
    ("items",),
    ("items", 0, "post_id"),
    ("items", 0, "position"),
    ("items", 0, "media_kind"),
    ("items", 2, "post_id"),
]


@pytest.mark.parametrize("path", ALBUM_REQUIRED, ids=lambda p: ".".join(map(str, p)))
def test_album_missing_required_field(path: Path) -> None:
    assert album_error(enc(without(album_dict(), path))) == "missing_field"


@pytest.mark.parametrize("path", ALBUM_REQUIRED, ids=lambda p: ".".join(map(str, p)))
def test_album_null_required_field(path: Path) -> None:
    assert album_error(enc(with_value(album_dict(), path, None))) == "missing_field"


def test_album_missing_field_names_the_field() -> None:
    with pytest.raises(InvalidEvent, match=r"items\[1\]\.post_id"):
        decode_album_parsed(enc(without(album_dict(), ("items", 1, "post_id"))))


def test_empty_media_kind_is_missing() -> None:
    assert album_error(enc(with_value(album_dict(), ("items", 0, "media_kind"), ""))) == (
        "missing_field"
    )


# -- albums.parsed: wrong types ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("album_id",), "42"),
        (("album_id",), True),
        (("album_id",), False),
        (("album_id",), 42.0),
        (("album_id",), 42.5),
        (("album_id",), [42]),
        (("album_id",), {"id": 42}),
        (("tenant_id",), 5),
        (("tenant_id",), ["acme"]),
        (("tenant_id",), True),
        (("channel_id",), "-1001234567890"),
        (("channel_id",), True),
        (("grouped_id",), "13579"),
        (("grouped_id",), False),
        (("items",), {"0": {}}),
        (("items",), "items"),
        (("items",), 3),
        (("items", 0), "1001"),
        (("items", 0), [1001, 0, "photo"]),
        (("items", 0), None),
        (("items", 0, "post_id"), "1001"),
        (("items", 0, "post_id"), True),
        (("items", 0, "post_id"), 1001.0),
        (("items", 1, "position"), "1"),
        (("items", 1, "position"), True),
        (("items", 0, "media_kind"), 1),
        (("items", 0, "media_kind"), ["photo"]),
        (("items", 0, "message_id"), "555"),
        (("items", 0, "message_id"), True),
        (("items", 0, "sha256"), 123),
        (("items", 0, "media_object_id"), 123),
        (("caption_text",), 123),
        (("caption_text",), ["a"]),
        (("posted_at",), 1738231200),
        (("event_id",), 1),
        (("parsed_at",), False),
        (("cover_media_id",), 5),
    ],
    ids=repr,
)
def test_album_wrong_type(path: Path, value: Any) -> None:
    assert album_error(enc(with_value(album_dict(), path, value))) == "wrong_type"


def test_integer_beyond_64_bits_is_rejected() -> None:
    raw = enc(album_dict()).replace(b'"album_id":42', b'"album_id":18446744073709551616')
    assert b"18446744073709551616" in raw
    assert album_error(raw) in {"wrong_type", "out_of_range", "invalid_json"}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("album_id",), 2**63),
        (("channel_id",), 2**63 + 5),
        (("items", 0, "position"), -1),
    ],
    ids=repr,
)
def test_album_out_of_range(path: Path, value: Any) -> None:
    assert album_error(enc(with_value(album_dict(), path, value))) == "out_of_range"


@pytest.mark.parametrize("value", [-(2**63), 2**63 - 1, 0, -1])
def test_album_ids_use_the_full_signed_64_bit_range(value: int) -> None:
    album = decode_album_parsed(enc(with_value(album_dict(), ("channel_id",), value)))
    assert album.channel_id == value


# -- albums.parsed: item count and duplicates --------------------------------------------------


@pytest.mark.parametrize("n", [0, 11, 50])
def test_item_count_outside_one_to_ten(n: int) -> None:
    d = album_dict(1)
    d["items"] = [{**d["items"][0], "post_id": 1000 + i, "position": i} for i in range(n)]
    assert album_error(enc(d)) == "item_count"


def test_duplicate_positions() -> None:
    d = with_value(album_dict(3), ("items", 2, "position"), 0)
    assert album_error(enc(d)) == "duplicate_position"


def test_duplicate_post_ids() -> None:
    d = with_value(album_dict(3), ("items", 2, "post_id"), 1001)
    assert album_error(enc(d)) == "duplicate_post_id"


def test_the_same_item_twice_is_a_duplicate() -> None:
    d = album_dict(2)
    d["items"][1] = copy.deepcopy(d["items"][0])
    assert album_error(enc(d)) in {"duplicate_position", "duplicate_post_id"}


def test_unsupported_schema() -> None:
    assert album_error(enc(with_value(album_dict(), ("schema",), "albums.parsed/v2"))) == (
        "unsupported_schema"
    )
    assert vision_error(enc(with_value(vision_dict(), ("schema",), "albums.parsed/v1"))) == (
        "unsupported_schema"
    )


# -- tenant_id ---------------------------------------------------------------------------------


BAD_TENANTS = [
    "",
    "a" * 65,
    "a/b",
    "../x",
    "..",
    "a b",
    " acme",
    "acme\n",
    "acme.corp",
    "acme:1",
    "тенант",
    "acmé",
    "ａｃｍｅ",  # noqa: RUF001 - full-width letters are the point
    "acme\x00",
    "a*",
]
GOOD_TENANTS = ["a", "acme", "ACME_corp-2", "0", "-", "_", "a" * 64]


@pytest.mark.parametrize("tenant", BAD_TENANTS, ids=repr)
def test_bad_tenant_id(tenant: str) -> None:
    assert album_error(enc(with_value(album_dict(), ("tenant_id",), tenant))) == (
        "invalid_tenant_id"
    )
    assert vision_error(enc(with_value(vision_dict(), ("tenant_id",), tenant))) == (
        "invalid_tenant_id"
    )


@pytest.mark.parametrize("tenant", GOOD_TENANTS)
def test_good_tenant_id(tenant: str) -> None:
    album = decode_album_parsed(enc(with_value(album_dict(), ("tenant_id",), tenant)))
    assert album.tenant_id == tenant
    ev = decode_vision_analyzed(enc(with_value(vision_dict(), ("tenant_id",), tenant)))
    assert ev.tenant_id == tenant


def test_very_long_tenant_id_is_rejected() -> None:
    with pytest.raises(InvalidEvent):
        decode_album_parsed(enc(with_value(album_dict(), ("tenant_id",), "a" * 5000)))


# -- posts.vision.analyzed ---------------------------------------------------------------------


VISION_REQUIRED: list[Path] = [("post_id",), ("tenant_id",), ("vision",)]


@pytest.mark.parametrize("path", VISION_REQUIRED, ids=lambda p: ".".join(map(str, p)))
def test_vision_missing_required_field(path: Path) -> None:
    assert vision_error(enc(without(vision_dict(), path))) == "missing_field"
    assert vision_error(enc(with_value(vision_dict(), path, None))) == "missing_field"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("post_id",), "1001"),
        (("post_id",), True),
        (("post_id",), 1001.0),
        (("tenant_id",), 1),
        (("album_id",), "42"),
        (("album_id",), True),
        (("grouped_id",), "13579"),
        (("grouped_id",), False),
        (("channel_id",), "-100"),
        (("analyzed_at",), 5),
        (("event_id",), 5),
        (("vision",), "a cat"),
        (("vision",), ["cat"]),
        (("vision",), 1),
        (("vision", "labels"), "cat"),
        (("vision", "labels"), 1),
        (("vision", "labels"), True),
        (("vision", "labels"), {"cat": 1}),
        (("vision", "labels"), [1]),
        (("vision", "labels"), ["cat", None]),
        (("vision", "labels"), [["cat"]]),
        (("vision", "description"), 1),
        (("vision", "ocr_text"), ["x"]),
        (("vision", "is_meme"), "false"),
        (("vision", "is_meme"), 0),
        (("vision", "has_text"), 1),
        (("vision", "provider"), 1),
        (("vision", "model"), False),
    ],
    ids=repr,
)
def test_vision_wrong_type(path: Path, value: Any) -> None:
    assert vision_error(enc(with_value(vision_dict(), path, value))) == "wrong_type"


@pytest.mark.parametrize("value", [0, False, "", {}], ids=repr)
def test_vision_falsy_labels_of_wrong_type_are_rejected(value: Any) -> None:
    """`labels` must be a list: a falsy non-list is a wrong type, not an empty label list."""
    assert vision_error(enc(with_value(vision_dict(), ("vision", "labels"), value))) == (
        "wrong_type"
    )


@pytest.mark.parametrize("value", [None, []], ids=repr)
def test_vision_labels_null_or_empty_mean_no_labels(value: Any) -> None:
    ev = decode_vision_analyzed(enc(with_value(vision_dict(), ("vision", "labels"), value)))
    assert ev.vision.labels == ()


def test_vision_out_of_range_post_id() -> None:
    assert vision_error(enc(with_value(vision_dict(), ("post_id",), 2**63))) == "out_of_range"


def test_one_version_rule_newer_wins_and_a_tie_keeps_what_is_stored() -> None:
    from schemas.events import supersedes

    assert supersedes(1, None)
    assert supersedes(3, 2)
    assert not supersedes(2, 2)
    assert not supersedes(1, 2)
