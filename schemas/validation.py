"""Decoding and validation of incoming events: bytes in, typed event or InvalidEvent out."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from typing import Any

import orjson

from schemas.events import (
    ALBUM_ASSEMBLED_V1,
    ALBUMS_PARSED_V1,
    MAX_ALBUM_ITEMS,
    NUL_REPLACEMENT,
    TENANT_PATTERN,
    TENANT_RE,
    VISION_ANALYZED_V1,
    AlbumItem,
    AlbumParsed,
    Vision,
    VisionAnalyzed,
    parse_instant,
)

MAX_TEXT = 64 * 1024
MAX_LABELS = 100

# Size discipline. Kafka refuses records over max.message.bytes (1 MB by default, on the broker
# and every topic), and one such record used to crash the worker that tried to produce it, and
# every worker after it. These limits make every record the pipeline produces fit that default,
# whatever valid input it gets (README, "Limits"):
#: an input message (albums.parsed, posts.vision.analyzed) over this is refused to the DLQ
MAX_INPUT_BYTES = 512 * 1024
#: each text (caption_text, description, ocr_text), as JSON-encoded bytes: longer texts are cut
#: at a character boundary and the event is flagged `truncated`
TEXT_BUDGET_BYTES = 16 * 1024
#: all labels of one vision, as JSON-encoded bytes: labels past it are dropped (flagged too)
LABELS_BUDGET_BYTES = 8 * 1024


class InvalidEvent(ValueError):
    """An event that breaks the contract; `error_type` names the rule, `str()` the reason."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def fit_text(text: str, budget: int = TEXT_BUDGET_BYTES) -> tuple[str, bool]:
    """`text`, or its longest prefix whose JSON encoding takes at most `budget` bytes, and
    whether it was cut."""
    if len(text) * 6 + 2 <= budget:  # even a text of escapes only fits
        return text, False
    if len(orjson.dumps(text)) <= budget:
        return text, False
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(orjson.dumps(text[:mid])) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo], True


def decode_input(raw: bytes | None) -> dict[str, Any]:
    """An input message: at most MAX_INPUT_BYTES, then a JSON object."""
    if raw is not None and len(raw) > MAX_INPUT_BYTES:
        raise InvalidEvent(
            "message_too_large",
            f"message of {len(raw)} bytes is over the input limit of {MAX_INPUT_BYTES} bytes",
        )
    return decode_json(raw)


def decode_json(raw: bytes | None) -> dict[str, Any]:
    """UTF-8 JSON object or InvalidEvent('invalid_json' / 'not_an_object')."""
    if raw is None:
        raise InvalidEvent("invalid_json", "empty message value (null)")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("invalid_json", f"value is not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidEvent("not_an_object", f"value is JSON {type(value).__name__}, not an object")
    return value


def _missing(path: str) -> InvalidEvent:
    return InvalidEvent("missing_field", f"required field {path!r} is missing")


def _wrong(path: str, expected: str, value: object) -> InvalidEvent:
    return InvalidEvent(
        "wrong_type", f"field {path!r} must be {expected}, got {type(value).__name__}"
    )


def _int(d: Mapping[str, Any], key: str, path: str, *, required: bool = True) -> int | None:
    if key not in d or d[key] is None:
        if required:
            raise _missing(path)
        return None
    v = d[key]
    # bool is an int in Python, never in the contract
    if isinstance(v, bool) or not isinstance(v, int):
        raise _wrong(path, "an integer", v)
    if not -(2**63) <= v < 2**63:
        raise InvalidEvent("out_of_range", f"field {path!r} does not fit in 64 bits")
    return v


def _req_int(d: Mapping[str, Any], key: str, path: str) -> int:
    v = _int(d, key, path)
    assert v is not None
    return v


def _id(d: Mapping[str, Any], key: str, path: str, *, required: bool = True) -> int | None:
    """A Telegram or album id: a positive 64-bit integer (channel ids are the exception: they
    are negative when marked, -100…)."""
    v = _int(d, key, path, required=required)
    if v is not None and v <= 0:
        raise InvalidEvent("out_of_range", f"field {path!r} must be a positive id, got {v}")
    return v


def _req_id(d: Mapping[str, Any], key: str, path: str) -> int:
    v = _id(d, key, path)
    assert v is not None
    return v


def _time(d: Mapping[str, Any], key: str, path: str) -> str | None:
    """An optional ISO 8601 time, in UTC from here on (`...Z`): every stage and store then
    compares and stores the same instant. No offset means UTC."""
    raw = _str(d, key, path, max_len=64)
    if raw is None:
        return None
    instant = parse_instant(raw)
    if instant is None:
        raise InvalidEvent("invalid_time", f"field {path!r} is not an ISO 8601 time: {raw!r}")
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _str(
    d: Mapping[str, Any], key: str, path: str, *, required: bool = False, max_len: int = MAX_TEXT
) -> str | None:
    if key not in d or d[key] is None:
        if required:
            raise _missing(path)
        return None
    v = d[key]
    if not isinstance(v, str):
        raise _wrong(path, "a string", v)
    if len(v) > max_len:
        raise InvalidEvent("too_long", f"field {path!r} is longer than {max_len} characters")
    return v.replace("\x00", NUL_REPLACEMENT) if "\x00" in v else v


def _bool(d: Mapping[str, Any], key: str, path: str) -> bool:
    v = d.get(key, False)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise _wrong(path, "a boolean", v)
    return v


def _tenant(d: Mapping[str, Any]) -> str:
    tenant = _str(d, "tenant_id", "tenant_id", required=True, max_len=1000)
    assert tenant is not None
    if not TENANT_RE.fullmatch(tenant):
        raise InvalidEvent(
            "invalid_tenant_id", f"tenant_id {tenant!r} does not match {TENANT_PATTERN}"
        )
    return tenant


def _schema(d: Mapping[str, Any], expected: str) -> str:
    schema = _str(d, "schema", "schema", max_len=200)
    if schema is not None and schema != expected:
        raise InvalidEvent("unsupported_schema", f"schema {schema!r} is not {expected!r}")
    return expected


def validate_album_parsed(d: Mapping[str, Any]) -> AlbumParsed:
    """Check every rule of DESIGN.md for `albums.parsed`; unknown extra fields are ignored."""
    schema = _schema(d, ALBUMS_PARSED_V1)
    album_id = _req_id(d, "album_id", "album_id")
    tenant_id = _tenant(d)
    channel_id = _req_int(d, "channel_id", "channel_id")
    grouped_id = _req_id(d, "grouped_id", "grouped_id")
    if "items" not in d or d["items"] is None:
        raise _missing("items")
    raw_items = d["items"]
    if not isinstance(raw_items, list):
        raise _wrong("items", "a list", raw_items)
    if not 1 <= len(raw_items) <= MAX_ALBUM_ITEMS:
        raise InvalidEvent(
            "item_count",
            f"an album has 1..{MAX_ALBUM_ITEMS} items, this one has {len(raw_items)}",
        )
    items: list[AlbumItem] = []
    for i, it in enumerate(raw_items):
        path = f"items[{i}]"
        if not isinstance(it, dict):
            raise _wrong(path, "an object", it)
        position = _req_int(it, "position", f"{path}.position")
        if position < 0:
            raise InvalidEvent("out_of_range", f"field '{path}.position' must be >= 0")
        kind = _str(it, "media_kind", f"{path}.media_kind", required=True, max_len=32)
        assert kind is not None
        if not kind:
            raise InvalidEvent("missing_field", f"field '{path}.media_kind' is empty")
        items.append(
            AlbumItem(
                post_id=_req_id(it, "post_id", f"{path}.post_id"),
                position=position,
                media_kind=kind,
                message_id=_id(it, "message_id", f"{path}.message_id", required=False),
                media_object_id=_str(it, "media_object_id", f"{path}.media_object_id", max_len=200),
                sha256=_str(it, "sha256", f"{path}.sha256", max_len=128),
            )
        )
    positions = [i.position for i in items]
    if len(set(positions)) != len(positions):
        raise InvalidEvent("duplicate_position", f"items repeat a position: {sorted(positions)}")
    post_ids = [i.post_id for i in items]
    if len(set(post_ids)) != len(post_ids):
        raise InvalidEvent("duplicate_post_id", f"items repeat a post_id: {sorted(post_ids)}")
    caption, caption_cut = None, False
    raw_caption = _str(d, "caption_text", "caption_text")
    if raw_caption is not None:
        caption, caption_cut = fit_text(raw_caption)
    return AlbumParsed(
        album_id=album_id,
        tenant_id=tenant_id,
        channel_id=channel_id,
        grouped_id=grouped_id,
        items=tuple(sorted(items, key=lambda i: i.position)),
        event_id=_str(d, "event_id", "event_id", max_len=200) or "",
        posted_at=_time(d, "posted_at", "posted_at"),
        caption_text=caption,
        cover_media_id=_str(d, "cover_media_id", "cover_media_id", max_len=200),
        parsed_at=_time(d, "parsed_at", "parsed_at"),
        truncated=caption_cut,
        schema=schema,
    )


def validate_vision(d: Mapping[str, Any], path: str = "vision") -> Vision:
    labels_raw = d.get("labels")
    if labels_raw is None:
        labels_raw = []
    if not isinstance(labels_raw, list):
        raise _wrong(f"{path}.labels", "a list of strings", labels_raw)
    labels: list[str] = []
    truncated = len(labels_raw) > MAX_LABELS
    spent = 2
    for i, label in enumerate(labels_raw[:MAX_LABELS]):
        if not isinstance(label, str):
            raise _wrong(f"{path}.labels[{i}]", "a string", label)
        label = label.strip().replace("\x00", NUL_REPLACEMENT)[:200]
        if not label:
            continue
        cost = len(orjson.dumps(label)) + 1
        if spent + cost > LABELS_BUDGET_BYTES:
            truncated = True
            break
        spent += cost
        labels.append(label)
    description, cut_description = fit_text(_str(d, "description", f"{path}.description") or "")
    ocr_text, cut_ocr = fit_text(_str(d, "ocr_text", f"{path}.ocr_text") or "")
    return Vision(
        description=description,
        labels=tuple(labels),
        ocr_text=ocr_text,
        truncated=truncated or cut_description or cut_ocr,
        is_meme=_bool(d, "is_meme", f"{path}.is_meme"),
        has_text=_bool(d, "has_text", f"{path}.has_text"),
        provider=_str(d, "provider", f"{path}.provider", max_len=200),
        model=_str(d, "model", f"{path}.model", max_len=200),
    )


def validate_vision_analyzed(d: Mapping[str, Any]) -> VisionAnalyzed:
    """Check `posts.vision.analyzed`; `grouped_id: null` marks a post outside any album."""
    schema = _schema(d, VISION_ANALYZED_V1)
    post_id = _req_id(d, "post_id", "post_id")
    tenant_id = _tenant(d)
    if "vision" not in d or d["vision"] is None:
        raise _missing("vision")
    if not isinstance(d["vision"], dict):
        raise _wrong("vision", "an object", d["vision"])
    return VisionAnalyzed(
        post_id=post_id,
        tenant_id=tenant_id,
        vision=validate_vision(d["vision"]),
        event_id=_str(d, "event_id", "event_id", max_len=200) or "",
        album_id=_id(d, "album_id", "album_id", required=False),
        grouped_id=_id(d, "grouped_id", "grouped_id", required=False),
        channel_id=_int(d, "channel_id", "channel_id", required=False),
        analyzed_at=_time(d, "analyzed_at", "analyzed_at"),
        # only an explicit null says "not in an album"; a missing field says nothing
        in_album=not ("grouped_id" in d and d["grouped_id"] is None and d.get("album_id") is None),
        schema=schema,
    )


def decode_album_parsed(raw: bytes | None) -> AlbumParsed:
    return validate_album_parsed(decode_input(raw))


def decode_vision_analyzed(raw: bytes | None) -> VisionAnalyzed:
    return validate_vision_analyzed(decode_input(raw))


ASSEMBLED_STATUSES = frozenset({"complete", "partial"})


def validate_album_assembled(d: dict[str, Any]) -> dict[str, Any]:
    """Check what the sinks rely on in `album.assembled`; returns the event itself (a dict).

    Sinks store the event as it came (S3 keeps the whole document), so this checks and does not
    convert: ids and version are integers, tenant_id is safe for keys, items are well formed.
    """
    _schema(d, ALBUM_ASSEMBLED_V1)
    _req_id(d, "album_id", "album_id")
    if _req_int(d, "version", "version") < 1:
        raise InvalidEvent("out_of_range", "version must be >= 1")
    _tenant(d)
    _req_int(d, "channel_id", "channel_id")
    _req_id(d, "grouped_id", "grouped_id")
    status = _str(d, "status", "status", required=True, max_len=20)
    if status not in ASSEMBLED_STATUSES:
        raise InvalidEvent("invalid_status", f"status {status!r} is not complete or partial")
    _str(d, "caption_text", "caption_text")
    _str(d, "posted_at", "posted_at", max_len=64)
    labels = d.get("vision_labels") or []
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise _wrong("vision_labels", "a list of strings", labels)
    items = d.get("items")
    if not isinstance(items, list):
        raise _wrong("items", "a list", items) if items is not None else _missing("items")
    if not 1 <= len(items) <= MAX_ALBUM_ITEMS:
        raise InvalidEvent("items_count", f"album has {len(items)} items, not 1..{MAX_ALBUM_ITEMS}")
    seen: set[int] = set()
    for i, item in enumerate(items):
        path = f"items[{i}]"
        if not isinstance(item, dict):
            raise _wrong(path, "an object", item)
        post_id = _req_id(item, "post_id", f"{path}.post_id")
        _req_int(item, "position", f"{path}.position")
        if post_id in seen:
            raise InvalidEvent("duplicate_post_id", f"post_id {post_id} appears twice")
        seen.add(post_id)
        vision = item.get("vision")
        if vision is not None and not isinstance(vision, dict):
            raise _wrong(f"{path}.vision", "an object or null", vision)
    return d


def decode_album_assembled(raw: bytes | None) -> dict[str, Any]:
    d = decode_json(raw)
    if raw is not None and b"\\u0000" in raw:
        # not from our assembler (it never emits one): every store gets the same text
        d = _without_nul(d)
    return validate_album_assembled(d)


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", NUL_REPLACEMENT)
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value
