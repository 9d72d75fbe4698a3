"""The `albums.dlq` record: the original bytes and where and why processing failed."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.events import DLQ_V1
from schemas.validation import InvalidEvent, decode_json


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

    def to_dict(self) -> dict[str, Any]:
        return {
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
        }

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
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidEvent("invalid_dlq_record", f"not a DLQ record: {exc!r}") from exc


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
    error_type = error.error_type if isinstance(error, InvalidEvent) else type(error).__name__
    return DlqRecord(
        key=key,
        value=value,
        source_topic=source_topic,
        source_partition=source_partition,
        source_offset=source_offset,
        stage=stage,
        error_type=error_type,
        error_message=str(error)[:4000] or repr(error),
        failed_at=(now or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        attempts=attempts,
    )
