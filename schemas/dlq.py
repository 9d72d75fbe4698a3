"""The `albums.dlq` record: the original bytes and where and why processing failed."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.events import DLQ_V1
from schemas.validation import InvalidEvent, decode_json

#: a dead letter keeps at most this much of the original value (base64 makes it 4/3 larger:
#: with the rest, the record stays under Kafka's 1 MB), and this much of its key. It is over
#: the largest album.assembled the limits allow, so a parked album is always kept whole.
MAX_VALUE_BYTES = 640 * 1024
MAX_KEY_BYTES = 4096


@dataclass(frozen=True, slots=True)
class DlqRecord:
    """One dead letter. `key`/`value` are the original bytes; replay sends them back as-is."""

    key: bytes | None
    value: bytes | None
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    stage: str
    error_type: str
    error_message: str
    failed_at: str
    attempts: int = 1
    #: the original value (or key) was longer and is cut here; such a record is not replayable
    truncated: bool = False
    #: bytes of the original value
    value_size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema": DLQ_V1,
            "key_b64": None if self.key is None else base64.b64encode(self.key).decode(),
            "value_b64": None if self.value is None else base64.b64encode(self.value).decode(),
            "source_topic": self.source_topic,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "stage": self.stage,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "failed_at": self.failed_at,
            "attempts": self.attempts,
            "value_size": self.value_size,
        }
        if self.truncated:
            d["truncated"] = True
        return d

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def decode(cls, raw: bytes | None) -> DlqRecord:
        d = decode_json(raw)
        try:
            key_b64, value_b64 = d["key_b64"], d["value_b64"]
            return cls(
                key=None if key_b64 is None else base64.b64decode(key_b64),
                value=None if value_b64 is None else base64.b64decode(value_b64),
                source_topic=str(d["source_topic"]),
                source_partition=d.get("source_partition"),
                source_offset=d.get("source_offset"),
                stage=str(d["stage"]),
                error_type=str(d["error_type"]),
                error_message=str(d.get("error_message", "")),
                failed_at=str(d.get("failed_at", "")),
                attempts=int(d.get("attempts", 1)),
                truncated=bool(d.get("truncated", False)),
                value_size=d.get("value_size"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidEvent("invalid_dlq_record", f"not a DLQ record: {exc!r}") from exc


#: where a driver's error text starts to quote the statement's data (SQLAlchemy appends the
#: statement and its parameters; the parameters of a batch are other albums' data)
_DATA_MARKERS = ("[SQL:", "[parameters:", "\n[SQL", "Parameters:")
#: credentials in URLs of error texts (a connect error names its DSN): everything up to the
#: last @ before the path, as streams.settings.redact_url does (a password may hold an @);
#: a copy of its rule because schemas/ imports nothing of streams/
_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s]*@")


def safe_error_text(error: BaseException, limit: int = 500) -> str:
    """An error's text for health output and DLQ records: without the statement and bound
    parameters a driver appends, without URL credentials, bounded."""
    text = str(error) or repr(error)
    for marker in _DATA_MARKERS:
        cut = text.find(marker)
        if cut >= 0:
            text = text[:cut].rstrip() + " [statement and parameters left out]"
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    return text[:limit]


def dead_letter(
    *,
    key: bytes | None,
    value: bytes | None,
    source_topic: str,
    source_partition: int | None,
    source_offset: int | None,
    stage: str,
    error: BaseException,
    attempts: int = 1,
    now: datetime | None = None,
) -> DlqRecord:
    """A DLQ record for `error` raised while `stage` handled the given message."""
    # InvalidEvent and errors that name their kind (storage.errors.TenantConflict) give it
    named = getattr(error, "error_type", None)
    error_type = named if isinstance(named, str) and named else type(error).__name__
    truncated = (value is not None and len(value) > MAX_VALUE_BYTES) or (
        key is not None and len(key) > MAX_KEY_BYTES
    )
    return DlqRecord(
        key=key[:MAX_KEY_BYTES] if key is not None else None,
        value=value[:MAX_VALUE_BYTES] if value is not None else None,
        truncated=truncated,
        value_size=None if value is None else len(value),
        source_topic=source_topic,
        source_partition=source_partition,
        source_offset=source_offset,
        stage=stage,
        error_type=error_type,
        error_message=safe_error_text(error, 4000),
        failed_at=(now or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        attempts=attempts,
    )
