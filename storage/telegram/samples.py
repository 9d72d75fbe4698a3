"""Builders of real Telethon TL objects (channel posts, media, channels) for offline tests."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from telethon import utils
from telethon.extensions import BinaryReader
from telethon.tl import types

MEDIA_DC_ID = 2
DEFAULT_PHOTO_SIZE = 187_349
DEFAULT_VIDEO_SIZE = 4_215_807
DEFAULT_DOCUMENT_SIZE = 96_512


def bare_channel_id(channel_id: int) -> int:
    """Telethon's bare channel id: -1001234567890 (marked) and 1234567890 both give 1234567890."""
    if channel_id > 0:
        return channel_id
    bare, kind = utils.resolve_id(channel_id)
    if kind is not types.PeerChannel:
        raise ValueError(f"{channel_id} is not a channel id (it resolves to {kind.__name__})")
    return int(bare)


def marked_channel_id(channel_id: int) -> int:
    """The marked (bot API) form, -100…, of a bare or marked channel id."""
    return int(utils.get_peer_id(types.PeerChannel(bare_channel_id(channel_id))))


def _derived(*parts: object, signed: bool = False) -> int:
    """A deterministic 63-bit id (or signed 64-bit access hash) from `parts`."""
    digest = hashlib.sha256(repr(parts).encode()).digest()[:8]
    if signed:
        return int.from_bytes(digest, "big", signed=True)
    return int.from_bytes(digest, "big") >> 1


def channel_access_hash(channel_id: int) -> int:
    """The access hash `channel_entity` and `input_channel_peer` give the channel."""
    return _derived("channel", bare_channel_id(channel_id), signed=True)


def channel_entity(
    channel_id: int, *, title: str | None = None, username: str | None = None
) -> types.Channel:
    """A broadcast channel as the server returns it in `chats`."""
    bare = bare_channel_id(channel_id)
    return types.Channel(
        id=bare,
        title=title if title is not None else f"Channel {bare}",
        photo=types.ChatPhotoEmpty(),
        date=datetime(2020, 1, 1, tzinfo=UTC),
        broadcast=True,
        access_hash=channel_access_hash(bare),
        username=username,
    )


def input_channel_peer(channel_id: int) -> types.InputPeerChannel:
    """The InputPeerChannel of the channel built by `channel_entity`."""
    bare = bare_channel_id(channel_id)
    return types.InputPeerChannel(channel_id=bare, access_hash=channel_access_hash(bare))


def media_bytes(seed: int | str | bytes, size: int) -> bytes:
    """`size` deterministic pseudo-random bytes: the same (seed, size) gives the same content."""
    key = seed if isinstance(seed, bytes) else str(seed).encode()
    return hashlib.shake_256(b"media:" + key).digest(size)


def file_reference_for(media_id: int, message_id: int, generation: int = 0) -> bytes:
    """A file reference as the server attaches to media seen in one message."""
    return b"\x02" + hashlib.sha256(repr((media_id, message_id, generation)).encode()).digest()[:19]


def _utc(value: datetime) -> datetime:
    """Telegram's dates: UTC, whole seconds (naive datetimes are taken as UTC, as Telethon does)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


def _as_received(message: types.Message) -> types.Message:
    """The message as Telethon parses it off the wire (flags False, not None; so `==` holds)."""
    with BinaryReader(bytes(message)) as reader:
        return reader.tgread_object()


def _post(
    channel_id: int,
    message_id: int,
    *,
    date: datetime,
    text: str,
    media: types.TypeMessageMedia | None,
    grouped_id: int | None,
    edit_date: datetime | None,
) -> types.Message:
    message = types.Message(
        id=message_id,
        peer_id=types.PeerChannel(bare_channel_id(channel_id)),
        date=_utc(date),
        message=text,
        out=False,
        post=True,
        media=media,
        entities=[],
        views=1,
        forwards=0,
        edit_date=_utc(edit_date) if edit_date is not None else None,
        grouped_id=grouped_id,
    )
    return _as_received(message)


def photo_message(
    channel_id: int,
    message_id: int,
    *,
    date: datetime,
    grouped_id: int | None = None,
    text: str = "",
    size: int = DEFAULT_PHOTO_SIZE,
    edit_date: datetime | None = None,
    media_id: int | None = None,
    width: int = 1280,
    height: int = 960,
) -> types.Message:
    """A channel post with a photo whose largest size ('y', last) weighs `size` bytes.

    `media_id` (the Photo id) defaults to one derived from the channel and message ids; pass
    the same one to two messages to model a repost of the same photo.
    """
    bare = bare_channel_id(channel_id)
    photo_id = media_id if media_id is not None else _derived("photo", bare, message_id)
    photo = types.Photo(
        id=photo_id,
        access_hash=_derived("photo-hash", photo_id, signed=True),
        file_reference=file_reference_for(photo_id, message_id),
        date=_utc(date),
        sizes=[
            types.PhotoSize(
                type="m", w=320, h=max(1, 320 * height // max(1, width)), size=size // 10
            ),
            types.PhotoSize(type="y", w=width, h=height, size=size),
        ],
        dc_id=MEDIA_DC_ID,
    )
    return _post(
        bare,
        message_id,
        date=date,
        text=text,
        media=types.MessageMediaPhoto(photo=photo),
        grouped_id=grouped_id,
        edit_date=edit_date,
    )


def _document(
    bare: int,
    message_id: int,
    *,
    date: datetime,
    mime_type: str,
    size: int,
    attributes: list[types.TypeDocumentAttribute],
    media_id: int | None,
) -> types.Document:
    document_id = media_id if media_id is not None else _derived("document", bare, message_id)
    return types.Document(
        id=document_id,
        access_hash=_derived("document-hash", document_id, signed=True),
        file_reference=file_reference_for(document_id, message_id),
        date=_utc(date),
        mime_type=mime_type,
        size=size,
        dc_id=MEDIA_DC_ID,
        attributes=attributes,
    )


def video_message(
    channel_id: int,
    message_id: int,
    *,
    date: datetime,
    grouped_id: int | None = None,
    text: str = "",
    size: int = DEFAULT_VIDEO_SIZE,
    edit_date: datetime | None = None,
    media_id: int | None = None,
    duration: float = 12.0,
    width: int = 1280,
    height: int = 720,
    file_name: str = "video.mp4",
) -> types.Message:
    """A channel post with an mp4 video Document of `size` bytes."""
    bare = bare_channel_id(channel_id)
    document = _document(
        bare,
        message_id,
        date=date,
        mime_type="video/mp4",
        size=size,
        attributes=[
            types.DocumentAttributeVideo(
                duration=duration, w=width, h=height, supports_streaming=True
            ),
            types.DocumentAttributeFilename(file_name=file_name),
        ],
        media_id=media_id,
    )
    return _post(
        bare,
        message_id,
        date=date,
        text=text,
        media=types.MessageMediaDocument(document=document, video=True),
        grouped_id=grouped_id,
        edit_date=edit_date,
    )


def document_message(
    channel_id: int,
    message_id: int,
    *,
    date: datetime,
    grouped_id: int | None = None,
    text: str = "",
    size: int = DEFAULT_DOCUMENT_SIZE,
    edit_date: datetime | None = None,
    media_id: int | None = None,
    mime_type: str = "application/pdf",
    file_name: str = "doc.pdf",
) -> types.Message:
    """A channel post with a plain file (a Document without a video attribute)."""
    bare = bare_channel_id(channel_id)
    document = _document(
        bare,
        message_id,
        date=date,
        mime_type=mime_type,
        size=size,
        attributes=[types.DocumentAttributeFilename(file_name=file_name)],
        media_id=media_id,
    )
    return _post(
        bare,
        message_id,
        date=date,
        text=text,
        media=types.MessageMediaDocument(document=document),
        grouped_id=grouped_id,
        edit_date=edit_date,
    )


def text_message(
    channel_id: int,
    message_id: int,
    *,
    date: datetime,
    text: str = "",
    edit_date: datetime | None = None,
) -> types.Message:
    """A channel post without media."""
    return _post(
        channel_id,
        message_id,
        date=date,
        text=text,
        media=None,
        grouped_id=None,
        edit_date=edit_date,
    )


def png_bytes(seed: str | int, width: int = 64, height: int = 48) -> bytes:
    """A small, valid PNG (a colour gradient picked by `seed`), so sample media are real images."""
    import struct
    import zlib

    h = hashlib.sha256(str(seed).encode()).digest()
    r0, g0, b0 = h[0], h[1], h[2]
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type: none
        for x in range(width):
            rows += bytes(((r0 + 3 * x) % 256, (g0 + 4 * y) % 256, (b0 + x + y) % 256))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )
