"""Sending dead letters: the original bytes, the stage and the reason, to `albums.dlq`."""

from __future__ import annotations

import logging

import orjson

from agents.direct import Message
from schemas.dlq import DlqRecord, dead_letter
from schemas.events import VisionAnalyzed
from streams.metrics import dlq_events_total
from streams.topics import ALBUMS_DLQ, VISION_ANALYZED

log = logging.getLogger(__name__)


def note_dead_letter(record: DlqRecord) -> None:
    """Count and log a dead letter (every path to albums.dlq goes through here)."""
    dlq_events_total.labels(stage=record.stage, error_type=record.error_type).inc()
    log.warning(
        "dead letter from %s (%s:%s@%s): %s: %s",
        record.stage,
        record.source_topic,
        record.source_partition,
        record.source_offset,
        record.error_type,
        record.error_message,
    )


def dead_letter_message(
    *,
    key: bytes | None,
    value: bytes | None,
    source_topic: str,
    source_partition: int | None,
    source_offset: int | None,
    stage: str,
    error: BaseException,
    attempts: int = 1,
) -> Message:
    """A DLQ record as a message for a batch's sends (counted and logged here)."""
    record = dead_letter(
        key=key,
        value=value,
        source_topic=source_topic,
        source_partition=source_partition,
        source_offset=source_offset,
        stage=stage,
        error=error,
        attempts=attempts,
    )
    note_dead_letter(record)
    return (ALBUMS_DLQ, key, record.encode(), None)


def vision_dead_letter(event: VisionAnalyzed, stage: str, error: BaseException) -> Message:
    """A vision event rejected after routing, re-encoded to the contract (replayable)."""
    return dead_letter_message(
        key=str(event.post_id).encode(),
        value=orjson.dumps(event.to_dict()),
        source_topic=VISION_ANALYZED,
        source_partition=None,
        source_offset=None,
        stage=stage,
        error=error,
    )
