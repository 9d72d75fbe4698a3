"""The events of the wire contract as typed, frozen dataclasses (no Faust, no I/O).

Events are validated once, at the edge (schemas/validation.py); internal messages and table
state carry `to_dict()` output of validated events, and `from_dict()` reads it back without
checking it again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ALBUMS_PARSED_V1 = "albums.parsed/v1"
VISION_ANALYZED_V1 = "posts.vision.analyzed/v1"
ALBUM_ASSEMBLED_V1 = "album.assembled/v1"
DLQ_V1 = "albums.dlq/v1"

MAX_ALBUM_ITEMS = 10

#: a tenant_id of the contract: safe in every store's keys, paths and filters
TENANT_PATTERN = "[A-Za-z0-9_-]{1,64}"
TENANT_RE = re.compile(TENANT_PATTERN)

#: what every text field's NUL becomes at the edge: Postgres text and jsonb refuse U+0000, so
#: it is replaced once, before anything is stored, and every store holds the same text
NUL_REPLACEMENT = "\ufffd"


def parse_instant(value: str | None) -> datetime | None:
    """An ISO 8601 time as an aware datetime (no offset means UTC); None if absent or unreadable.

    Times are compared as instants: `10:00:09Z` and `13:00:09+03:00` are the same one.
    """
    if not value:
        return None
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        return None
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)


def supersedes(version: int, stored: int | None) -> bool:
    """The one "latest version wins" rule of every store and of the relay: an album.assembled
    version replaces what is stored only when it is strictly higher. On a tie the stored one
    stays: an equal version is the same event (event_id `album_id:version`) again."""
    return stored is None or version > stored


@dataclass(frozen=True, slots=True)
class AlbumItem:
    """One message of an album, as ingestion stored it."""

    post_id: int
    position: int
    media_kind: str
    message_id: int | None = None
    media_object_id: str | None = None
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "post_id": self.post_id,
            "message_id": self.message_id,
            "position": self.position,
            "media_kind": self.media_kind,
            "media_object_id": self.media_object_id,
            "sha256": self.sha256,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AlbumItem:
        """From `to_dict()` output that was validated before (no checks: see module doc)."""
        return cls(
            post_id=d["post_id"],
            position=d["position"],
            media_kind=d["media_kind"],
            message_id=d.get("message_id"),
            media_object_id=d.get("media_object_id"),
            sha256=d.get("sha256"),
        )


@dataclass(frozen=True, slots=True)
class AlbumParsed:
    """`albums.parsed/v1`: an album (media group) with its items, keyed by album_id."""

    album_id: int
    tenant_id: str
    channel_id: int
    grouped_id: int
    items: tuple[AlbumItem, ...]
    event_id: str = ""
    posted_at: str | None = None
    caption_text: str | None = None
    cover_media_id: str | None = None
    parsed_at: str | None = None
    schema: str = ALBUMS_PARSED_V1
    #: caption_text was cut to fit the size limits (schemas/validation.py)
    truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = {
            "schema": self.schema,
            "event_id": self.event_id,
            "tenant_id": self.tenant_id,
            "channel_id": self.channel_id,
            "grouped_id": self.grouped_id,
            "album_id": self.album_id,
            "posted_at": self.posted_at,
            "caption_text": self.caption_text,
            "cover_media_id": self.cover_media_id,
            "parsed_at": self.parsed_at,
            "items": [i.to_dict() for i in self.items],
        }
        if self.truncated:
            d["truncated"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AlbumParsed:
        """From `to_dict()` output that was validated before (no checks: see module doc)."""
        return cls(
            album_id=d["album_id"],
            tenant_id=d["tenant_id"],
            channel_id=d["channel_id"],
            grouped_id=d["grouped_id"],
            items=tuple(AlbumItem.from_dict(i) for i in d["items"]),
            event_id=d.get("event_id") or "",
            posted_at=d.get("posted_at"),
            caption_text=d.get("caption_text"),
            cover_media_id=d.get("cover_media_id"),
            parsed_at=d.get("parsed_at"),
            schema=d.get("schema") or ALBUMS_PARSED_V1,
            truncated=bool(d.get("truncated", False)),
        )


@dataclass(frozen=True, slots=True)
class Vision:
    """What the vision service saw in one post's media."""

    description: str = ""
    labels: tuple[str, ...] = ()
    ocr_text: str = ""
    is_meme: bool = False
    has_text: bool = False
    provider: str | None = None
    model: str | None = None
    #: a text or labels were cut to fit the size limits (schemas/validation.py)
    truncated: bool = False
    #: the memo of to_dict(): not an argument, not compared, not carried by replace()
    _encoded: dict[str, Any] | None = field(
        default=None, init=False, repr=False, compare=False, hash=False
    )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (made once and shared: never mutate it)."""
        if self._encoded is not None:
            return self._encoded
        d: dict[str, Any] = {
            "description": self.description,
            "labels": list(self.labels),
            "ocr_text": self.ocr_text,
            "is_meme": self.is_meme,
            "has_text": self.has_text,
            "provider": self.provider,
            "model": self.model,
        }
        if self.truncated:
            d["truncated"] = True
        object.__setattr__(self, "_encoded", d)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vision:
        return cls(
            description=d.get("description") or "",
            labels=tuple(d.get("labels") or ()),
            ocr_text=d.get("ocr_text") or "",
            is_meme=bool(d.get("is_meme", False)),
            has_text=bool(d.get("has_text", False)),
            provider=d.get("provider"),
            model=d.get("model"),
            truncated=bool(d.get("truncated", False)),
        )


@dataclass(frozen=True, slots=True)
class VisionAnalyzed:
    """`posts.vision.analyzed/v1`: the vision result of one post, keyed by post_id.

    `album_id` routes it straight to its album; without it the post→album index decides.
    `in_album` is False when the producer said `grouped_id: null` (post not in an album).
    """

    post_id: int
    tenant_id: str
    vision: Vision
    event_id: str = ""
    album_id: int | None = None
    grouped_id: int | None = None
    channel_id: int | None = None
    analyzed_at: str | None = None
    in_album: bool = True
    schema: str = VISION_ANALYZED_V1
    #: the memo of to_dict(): not an argument, not compared, not carried by replace()
    _encoded: dict[str, Any] | None = field(
        default=None, init=False, repr=False, compare=False, hash=False
    )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (made once and shared: never mutate it). A vision event is stored
        with every write of its album's state, so encoding it each time costs O(items²)."""
        if self._encoded is not None:
            return self._encoded
        d: dict[str, Any] = {
            "schema": self.schema,
            "event_id": self.event_id,
            "tenant_id": self.tenant_id,
            "post_id": self.post_id,
            "channel_id": self.channel_id,
            "analyzed_at": self.analyzed_at,
            "vision": self.vision.to_dict(),
        }
        # absent and null differ: `grouped_id: null` (without album_id) means "not in an album"
        if self.album_id is not None:
            d["album_id"] = self.album_id
        if self.grouped_id is not None or not self.in_album:
            d["grouped_id"] = self.grouped_id
        object.__setattr__(self, "_encoded", d)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VisionAnalyzed:
        """From `to_dict()` output that was validated before (no checks: see module doc)."""
        return cls(
            post_id=d["post_id"],
            tenant_id=d["tenant_id"],
            vision=Vision.from_dict(d["vision"]),
            event_id=d.get("event_id") or "",
            album_id=d.get("album_id"),
            grouped_id=d.get("grouped_id"),
            channel_id=d.get("channel_id"),
            analyzed_at=d.get("analyzed_at"),
            in_album=not ("grouped_id" in d and d["grouped_id"] is None and "album_id" not in d),
            schema=d.get("schema") or VISION_ANALYZED_V1,
        )


@dataclass(frozen=True, slots=True)
class AssembledItem:
    post_id: int
    position: int
    media_kind: str
    vision: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "post_id": self.post_id,
            "position": self.position,
            "media_kind": self.media_kind,
            "vision": self.vision,
        }


@dataclass(frozen=True, slots=True)
class AlbumAssembled:
    """`album.assembled/v1`: an album with its aggregated vision, keyed by album_id.

    `event_id` is `"{album_id}:{version}"` so consumers can de-duplicate.
    """

    album_id: int
    version: int
    status: str
    tenant_id: str
    channel_id: int
    grouped_id: int
    album_kind: str
    items_count: int
    items_analyzed: int
    caption_text: str | None
    posted_at: str | None
    vision_summary: str
    vision_labels: tuple[str, ...]
    ocr_text: str
    has_meme: bool
    has_text: bool
    items: tuple[AssembledItem, ...]
    assembly_started_at: str
    assembly_completed_at: str
    assembly_lag_seconds: float
    schema: str = field(default=ALBUM_ASSEMBLED_V1)
    #: a text of the album or of one of its items was cut to fit the size limits
    texts_truncated: bool = False

    @property
    def event_id(self) -> str:
        return f"{self.album_id}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "event_id": self.event_id,
            "album_id": self.album_id,
            "version": self.version,
            "status": self.status,
            "tenant_id": self.tenant_id,
            "channel_id": self.channel_id,
            "grouped_id": self.grouped_id,
            "album_kind": self.album_kind,
            "items_count": self.items_count,
            "items_analyzed": self.items_analyzed,
            "caption_text": self.caption_text,
            "posted_at": self.posted_at,
            "vision_summary": self.vision_summary,
            "vision_labels": list(self.vision_labels),
            "ocr_text": self.ocr_text,
            "has_meme": self.has_meme,
            "has_text": self.has_text,
            "items": [i.to_dict() for i in self.items],
            "assembly_started_at": self.assembly_started_at,
            "assembly_completed_at": self.assembly_completed_at,
            "assembly_lag_seconds": self.assembly_lag_seconds,
            "texts_truncated": self.texts_truncated,
        }
