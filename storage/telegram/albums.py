"""Albums from Telegram messages: grouping, classification, ids, fingerprints (pure, no I/O).

Everything here works on real Telethon types (`telethon.tl.types.Message`, MessageMediaPhoto,
MessageMediaDocument) and plain values; no client, no clock, no network. Invariants:

- An album is the messages of one (channel_id, grouped_id), at most 10, ordered by message id;
  `position` counts from 0 in that order.
- Ids are stable functions of Telegram's ids: `album_id` of (channel_id, grouped_id),
  `post_id` of (channel_id, message_id), a media object's id of its sha256. The same message
  ingested by any process, at any time, gets the same id.
- Two fingerprints make de-duplication cheap: the *source* fingerprint of what Telegram
  returned (checked before any download) and the *content* fingerprint of the albums.parsed
  event (an album is emitted again only when it changes).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson
from telethon import utils
from telethon.tl import types

from schemas.events import MAX_ALBUM_ITEMS, AlbumItem, AlbumParsed

PHOTO = "photo"
VIDEO = "video"
DOCUMENT = "document"

TOO_LARGE = "too_large"
UNAVAILABLE = "unavailable"

# ±9 ids around a part cover every album of up to 10 consecutive messages.
WINDOW_RADIUS = MAX_ALBUM_ITEMS - 1
# Telegram answers at most 100 ids per messages.getMessages / channels.getMessages.
MAX_IDS_PER_FETCH = 100

_ID_NAMESPACE = uuid.UUID("5b0c7a52-5f0e-4c1e-9d43-6f1b2b7a0c11")


class AlbumError(ValueError):
    """The messages of a grouped_id do not make a valid album (e.g. more than 10 parts)."""


# -- ids -------------------------------------------------------------------------------------


def _stable_id(*parts: object) -> int:
    # 63 bits of BLAKE2b: a positive BIGINT, the same in every process and database. Telegram's
    # own ids (grouped_id) are 64-bit already, so consumers handle ids of this size anyway.
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 1) or 1


def album_id_for(channel_id: int, grouped_id: int) -> int:
    """`album_id` (= media_groups.id) of one (channel_id, grouped_id)."""
    return _stable_id("album", channel_id, grouped_id)


def post_id_for(channel_id: int, message_id: int) -> int:
    """`post_id` (= posts.id) of one (channel_id, message_id)."""
    return _stable_id("post", channel_id, message_id)


def media_object_id_for(sha256: str) -> str:
    """`media_objects.id` of a content hash (a UUID, as the contract's media_object_id)."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"media:{sha256}"))


def channel_of(message: types.Message) -> int:
    """The marked channel id (-100…) of a channel message."""
    return int(utils.get_peer_id(message.peer_id))


# -- media -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What a message says about its media before anything is downloaded."""

    kind: str
    media_id: int | None
    size: int | None
    mime_type: str | None


def media_info(message: types.Message) -> MediaInfo | None:
    """Kind, Telegram id, size and type of a message's media; None for a text message.

    `photo` is MessageMediaPhoto; `video` a document with a video attribute or a video/* type;
    anything else with a document is `document`.
    """
    media = message.media
    if isinstance(media, types.MessageMediaPhoto):
        photo = media.photo if isinstance(media.photo, types.Photo) else None
        photo_id = int(photo.id) if photo else None
        return MediaInfo(PHOTO, photo_id, _photo_size(photo), "image/jpeg")
    if isinstance(media, types.MessageMediaDocument):
        doc = media.document if isinstance(media.document, types.Document) else None
        if doc is None:
            return MediaInfo(DOCUMENT, None, None, None)
        is_video = any(isinstance(a, types.DocumentAttributeVideo) for a in doc.attributes)
        is_video = is_video or (doc.mime_type or "").startswith("video/")
        kind = VIDEO if is_video else DOCUMENT
        return MediaInfo(kind, int(doc.id), int(doc.size), doc.mime_type)
    return None


def _photo_size(photo: types.Photo | None) -> int | None:
    # the size Telethon downloads: the last (largest) of photo.sizes
    if photo is None or not photo.sizes:
        return None
    last = photo.sizes[-1]
    if isinstance(last, types.PhotoSize):
        return int(last.size)
    if isinstance(last, types.PhotoSizeProgressive):
        return int(max(last.sizes))
    if isinstance(last, types.PhotoCachedSize | types.PhotoStrippedSize):
        return len(last.bytes)
    return None


def media_kind(message: types.Message) -> str:
    """photo | video | document (a part without media counts as a document)."""
    info = media_info(message)
    return info.kind if info else DOCUMENT


def skip_reason(info: MediaInfo | None, max_bytes: int) -> str | None:
    """Why this media is not downloaded: `too_large` past INGEST_MAX_MEDIA_BYTES, else None."""
    if info is None:
        return None
    if info.size is not None and info.size > max_bytes:
        return TOO_LARGE
    return None


# -- grouping --------------------------------------------------------------------------------


def fetch_window(anchor_ids: Iterable[int]) -> list[int]:
    """The ids to fetch for an album known by some of its parts: min-9 ... max+9, ascending."""
    known = sorted(set(anchor_ids))
    if not known:
        raise ValueError("fetch_window needs at least one message id")
    low, high = max(1, known[0] - WINDOW_RADIUS), known[-1] + WINDOW_RADIUS
    if high - low + 1 > MAX_IDS_PER_FETCH:  # parts this far apart are no album of Telegram's
        high = low + MAX_IDS_PER_FETCH - 1
    return list(range(low, high + 1))


def album_parts(
    messages: Iterable[types.Message | types.TypeMessage | None], grouped_id: int
) -> list[types.Message]:
    """The messages of `grouped_id`, by ascending id (deleted ids, None, are left out).

    A message seen twice keeps its latest edit. Raises AlbumError past 10 parts.
    """
    by_id: dict[int, types.Message] = {}
    for m in messages:
        if isinstance(m, types.Message) and m.grouped_id == grouped_id:
            old = by_id.get(m.id)
            if old is None or _edited(m) >= _edited(old):
                by_id[m.id] = m
    parts = [by_id[i] for i in sorted(by_id)]
    if len(parts) > MAX_ALBUM_ITEMS:
        raise AlbumError(
            f"grouped_id {grouped_id} has {len(parts)} parts; Telegram albums have at most "
            f"{MAX_ALBUM_ITEMS}"
        )
    return parts


def _edited(m: types.Message) -> datetime:
    return m.edit_date or m.date or datetime.min.replace(tzinfo=UTC)


def arrival_time(message: types.Message) -> datetime | None:
    """When an update of this message reached a client: its edit date if edited, else its date."""
    at: datetime | None = message.edit_date or message.date
    return at


@dataclass(slots=True)
class Grouper:
    """Groups messages read in ascending id order (a backfill) into albums and single posts.

    An album stays open until the reading is past its last part by more than 9 ids, so an album
    whose parts straddle a page of `iter_messages`, or two interleaved albums, come out whole.
    `safe_cursor()` is the highest id below every open album: everything up to it is closed.
    """

    _open: dict[int, list[types.Message]] = field(default_factory=dict)
    _last_id: int = 0

    def add(self, message: types.Message) -> Iterator[tuple[int | None, list[types.Message]]]:
        """Feed one message; yields closed albums `(grouped_id, parts)` and `(None, [single])`."""
        self._last_id = max(self._last_id, message.id)
        yield from self._close(lambda parts: parts[-1].id + WINDOW_RADIUS < message.id)
        if message.grouped_id is None:
            yield None, [message]
        else:
            self._open.setdefault(message.grouped_id, []).append(message)

    def finish(self) -> Iterator[tuple[int | None, list[types.Message]]]:
        """The albums still open when the reading ends."""
        yield from self._close(lambda parts: True)

    def _close(self, done: Any) -> Iterator[tuple[int | None, list[types.Message]]]:
        for gid in [g for g, parts in self._open.items() if done(parts)]:
            yield gid, album_parts(self._open.pop(gid), gid)

    def safe_cursor(self) -> int:
        if not self._open:
            return self._last_id
        return min(int(parts[0].id) for parts in self._open.values()) - 1


# -- the album record ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredMedia:
    """Where one part's media went: its content hash, or why it was not stored."""

    sha256: str | None = None
    mime_type: str | None = None
    size_bytes: int | None = None
    skipped: str | None = None

    @property
    def media_object_id(self) -> str | None:
        return None if self.sha256 is None else media_object_id_for(self.sha256)


def clean_text(text: str | None) -> str | None:
    """Telegram text as stored: NUL removed (Postgres text and jsonb refuse it), '' → None."""
    if not text:
        return None
    text = text.replace("\x00", "")
    return text or None


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class PostRow:
    """A `posts` row of one message."""

    id: int
    channel_id: int
    message_id: int
    grouped_id: int | None
    text: str | None
    posted_at: datetime | None
    meta: dict[str, Any]


def post_row(channel_id: int, message: types.Message, media: StoredMedia | None = None) -> PostRow:
    """The posts row of `message` (meta keeps the media's Telegram id, size and outcome)."""
    info = media_info(message)
    meta: dict[str, Any] = {"edit_date": iso(message.edit_date)}
    if info is not None:
        meta["media"] = {
            "kind": info.kind,
            "telegram_id": info.media_id,
            "size": info.size,
            "mime_type": info.mime_type,
            "sha256": media.sha256 if media else None,
            "skipped": media.skipped if media else None,
        }
    return PostRow(
        id=post_id_for(channel_id, message.id),
        channel_id=channel_id,
        message_id=message.id,
        grouped_id=message.grouped_id,
        text=clean_text(message.message),
        posted_at=message.date,
        meta=meta,
    )


def source_fingerprint(parts: Sequence[types.Message]) -> str:
    """What Telegram said about an album: ids, dates, edits, texts and media ids and sizes."""
    doc = []
    for m in parts:
        info = media_info(m)
        doc.append(
            [
                m.id,
                m.grouped_id,
                iso(m.date),
                iso(m.edit_date),
                m.message or "",
                None if info is None else [info.kind, info.media_id, info.size],
            ]
        )
    return hashlib.sha256(orjson.dumps(doc)).hexdigest()


def content_fingerprint(album: AlbumParsed) -> str:
    """The albums.parsed content that consumers see, without event_id and parsed_at."""
    d = album.to_dict()
    d.pop("event_id")
    d.pop("parsed_at")
    return hashlib.sha256(orjson.dumps(d, option=orjson.OPT_SORT_KEYS)).hexdigest()


def build_album(
    *,
    tenant_id: str,
    channel_id: int,
    grouped_id: int,
    parts: Sequence[types.Message],
    media: dict[int, StoredMedia],
    parsed_at: datetime,
) -> AlbumParsed:
    """The albums.parsed event of an album's parts (by ascending id) and their stored media.

    `media` maps message id → StoredMedia. `event_id` is derived from the album and its
    content, so the same album content always makes the same event.
    """
    if not parts:
        raise AlbumError(f"grouped_id {grouped_id} has no parts")
    if len(parts) > MAX_ALBUM_ITEMS:
        raise AlbumError(f"grouped_id {grouped_id} has {len(parts)} parts")
    items: list[AlbumItem] = []
    for position, m in enumerate(sorted(parts, key=lambda p: p.id)):
        stored = media.get(m.id)
        items.append(
            AlbumItem(
                post_id=post_id_for(channel_id, m.id),
                message_id=m.id,
                position=position,
                media_kind=media_kind(m),
                media_object_id=stored.media_object_id if stored else None,
                sha256=stored.sha256 if stored else None,
            )
        )
    captions = (clean_text(m.message) for m in sorted(parts, key=lambda p: p.id))
    dates = [m.date for m in parts if m.date is not None]
    album_id = album_id_for(channel_id, grouped_id)
    album = AlbumParsed(
        album_id=album_id,
        tenant_id=tenant_id,
        channel_id=channel_id,
        grouped_id=grouped_id,
        items=tuple(items),
        posted_at=iso(min(dates)) if dates else None,
        caption_text=next((c for c in captions if c and c.strip()), None),
        cover_media_id=next((i.media_object_id for i in items if i.media_object_id), None),
        parsed_at=iso(parsed_at),
    )
    fp = content_fingerprint(album)
    return replace(album, event_id=str(uuid.uuid5(_ID_NAMESPACE, f"albums.parsed:{album_id}:{fp}")))
