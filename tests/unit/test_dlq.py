"""schemas.dlq: the albums.dlq record keeps the original bytes and says where and why."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from schemas.dlq import DlqRecord, dead_letter
from schemas.validation import InvalidEvent, decode_album_parsed

BINARY = bytes(range(256)) + b"\xff\xfe\x00\xc3("  # not UTF-8
NOW = datetime(2025, 1, 30, 10, 0, 0, tzinfo=UTC)


def record(**kw: object) -> DlqRecord:
    fields: dict[str, object] = {
        "key": b"42",
        "value": b'{"album_id": 1, "items": [ oops',
        "source_topic": "albums.parsed",
        "source_partition": 3,
        "source_offset": 12345,
        "stage": "validate",
        "error_type": "invalid_json",
        "error_message": "value is not valid UTF-8 JSON",
        "failed_at": "2025-01-30T10:00:00Z",
        "attempts": 1,
    }
    fields.update(kw)
    return DlqRecord(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"42", b'{"album_id": 1, "items": [ oops'),
        (BINARY, BINARY),
        (None, BINARY),
        (b"", b""),
        (None, None),
        ("ключ".encode(), "значение".encode()),
    ],
    ids=["text", "binary", "null-key", "empty", "null-both", "utf8"],
)
def test_encode_decode_round_trip(key: bytes | None, value: bytes | None) -> None:
    r = record(key=key, value=value)
    raw = r.encode()
    assert isinstance(raw, bytes)
    back = DlqRecord.decode(raw)
    assert back == r
    assert back.key == key
    assert back.value == value


def test_round_trip_keeps_every_field() -> None:
    r = record(
        source_partition=None,
        source_offset=None,
        stage="sink.s3",
        error_type="ClientError",
        error_message="Ошибка: 503 Slow Down",
        attempts=5,
    )
    assert DlqRecord.decode(r.encode()) == r


def test_wire_format() -> None:
    r = record(key=None, value=BINARY)
    d = orjson.loads(r.encode())
    assert d["schema"] == "albums.dlq/v1"
    assert d["key_b64"] is None
    assert base64.b64decode(d["value_b64"]) == BINARY
    assert d["source_topic"] == "albums.parsed"
    assert d["source_partition"] == 3
    assert d["source_offset"] == 12345
    assert d["stage"] == "validate"
    assert d["error_type"] == "invalid_json"
    assert d["error_message"] == "value is not valid UTF-8 JSON"
    assert d["failed_at"] == "2025-01-30T10:00:00Z"
    assert d["attempts"] == 1


@pytest.mark.parametrize(
    "raw",
    [
        None,
        b"not json",
        b"[]",
        b"{}",
        orjson.dumps({"key_b64": None, "value_b64": None}),  # no source/stage/error
        orjson.dumps(
            {
                "key_b64": None,
                "value_b64": "!!! not base64 !!!",
                "source_topic": "t",
                "stage": "s",
                "error_type": "e",
            }
        ),
        orjson.dumps(
            {
                "key_b64": None,
                "value_b64": None,
                "source_topic": "t",
                "stage": "s",
                "error_type": "e",
                "attempts": "many",
            }
        ),
    ],
    ids=["null", "not-json", "array", "empty", "no-source", "bad-base64", "bad-attempts"],
)
def test_decode_rejects_what_is_not_a_dlq_record(raw: bytes | None) -> None:
    with pytest.raises(InvalidEvent):
        DlqRecord.decode(raw)


def test_decode_missing_fields_is_invalid_dlq_record() -> None:
    with pytest.raises(InvalidEvent) as info:
        DlqRecord.decode(b"{}")
    assert info.value.error_type == "invalid_dlq_record"


def test_decode_fills_optional_fields() -> None:
    raw = orjson.dumps(
        {
            "key_b64": None,
            "value_b64": base64.b64encode(b"x").decode(),
            "source_topic": "posts.vision.analyzed",
            "stage": "validate",
            "error_type": "missing_field",
        }
    )
    r = DlqRecord.decode(raw)
    assert r.value == b"x"
    assert r.source_partition is None
    assert r.source_offset is None
    assert r.attempts == 1
    assert r.error_message == ""


# -- dead_letter -------------------------------------------------------------------------------


def test_dead_letter_from_invalid_event_uses_its_error_type() -> None:
    raw = b'{"album_id": "42"}'
    with pytest.raises(InvalidEvent) as info:
        decode_album_parsed(raw)
    r = dead_letter(
        key=b"42",
        value=raw,
        source_topic="albums.parsed",
        source_partition=1,
        source_offset=7,
        stage="validate",
        error=info.value,
        now=NOW,
    )
    assert r.error_type == "wrong_type"
    assert r.error_message == str(info.value)
    assert "album_id" in r.error_message
    assert r.key == b"42"
    assert r.value == raw
    assert (r.source_topic, r.source_partition, r.source_offset) == ("albums.parsed", 1, 7)
    assert r.stage == "validate"
    assert r.failed_at == "2025-01-30T10:00:00Z"
    assert r.attempts == 1
    assert DlqRecord.decode(r.encode()) == r


@pytest.mark.parametrize(
    ("error", "error_type"),
    [
        (ValueError("boom"), "ValueError"),
        (KeyError("album"), "KeyError"),
        (TimeoutError("sink timed out"), "TimeoutError"),
        (RuntimeError(), "RuntimeError"),
    ],
)
def test_dead_letter_from_other_exceptions_uses_the_class_name(
    error: BaseException, error_type: str
) -> None:
    r = dead_letter(
        key=None,
        value=BINARY,
        source_topic="album.assembled",
        source_partition=0,
        source_offset=1,
        stage="sink.postgres",
        error=error,
        attempts=5,
        now=NOW,
    )
    assert r.error_type == error_type
    assert r.error_message  # never empty, even for an exception without a message
    assert r.attempts == 5
    assert r.value == BINARY
    assert DlqRecord.decode(r.encode()) == r


def test_dead_letter_message_of_exception_without_text_is_its_repr() -> None:
    r = dead_letter(
        key=None,
        value=None,
        source_topic="t",
        source_partition=None,
        source_offset=None,
        stage="s",
        error=RuntimeError(),
        now=NOW,
    )
    assert r.error_message == "RuntimeError()"


def test_dead_letter_message_is_capped() -> None:
    r = dead_letter(
        key=None,
        value=None,
        source_topic="t",
        source_partition=None,
        source_offset=None,
        stage="s",
        error=ValueError("x" * 10_000),
        now=NOW,
    )
    assert len(r.error_message) == 4000


def test_dead_letter_timestamp_defaults_to_now_in_utc() -> None:
    before = datetime.now(UTC)
    r = dead_letter(
        key=None,
        value=None,
        source_topic="t",
        source_partition=None,
        source_offset=None,
        stage="s",
        error=ValueError("x"),
    )
    after = datetime.now(UTC)
    assert r.failed_at.endswith("Z")
    ts = datetime.fromisoformat(r.failed_at.replace("Z", "+00:00"))
    assert before <= ts <= after


def test_dead_letter_timestamp_keeps_the_given_instant() -> None:
    moscow = timezone(timedelta(hours=3))
    r = dead_letter(
        key=None,
        value=None,
        source_topic="t",
        source_partition=None,
        source_offset=None,
        stage="s",
        error=ValueError("x"),
        now=datetime(2025, 1, 30, 13, 0, tzinfo=moscow),
    )
    assert datetime.fromisoformat(r.failed_at.replace("Z", "+00:00")) == NOW


def test_error_texts_leave_out_statements_parameters_and_credentials() -> None:
    from schemas.dlq import safe_error_text

    class Driver(Exception):
        pass

    err = Driver(
        'duplicate key value violates unique constraint "x"\n'
        "[SQL: INSERT INTO media_groups ...]\n"
        '[parameters: (\'[{"id": 7, "caption_text": "another album\\u0027s caption"}]\',)]'
    )
    shown = safe_error_text(err)
    assert "another album" not in shown
    assert "INSERT" not in shown
    assert shown.startswith('duplicate key value violates unique constraint "x"')
    assert "left out" in shown
    dsn = Driver("cannot connect to postgresql://albums:hunter2@db:5432/albums")
    assert "hunter2" not in safe_error_text(dsn)
    assert "ss@" not in safe_error_text(Driver("no route to postgresql://u:p@ss@db:5432/x"))
    assert len(safe_error_text(Driver("x" * 10_000), 500)) == 500
