"""An offline TelegramClient: Telethon's real client code over an in-memory Telegram server.

`FakeTelegramClient` is a genuine `telethon.TelegramClient`; only the RPC boundary is replaced.
`get_messages`, `iter_messages`, `get_input_entity`, `iter_download` and `download_media` run
Telethon's own code, which builds real TL requests; `_call` answers them with real TL results
from `self.channels` / the stored history / the stored media, never touching the network.

- Construction: `FakeTelegramClient()` (a StringSession, api_id=1, api_hash="fake"); it starts
  "connected" (`connected=False` to start disconnected). `connect`, `disconnect` and
  `is_connected` only flip a flag; a request while disconnected raises
  `ConnectionError("Cannot send requests while disconnected")`, as the real sender does.
  `async with client:` works (Telethon's `start` calls `get_me`, answered from `self.me`).
- Both `__call__` (what `client(request)` uses) and `_call(sender, request)` (what downloads use
  directly, with their own sender) are overridden. The session's DC is set to 2 (the samples'
  media DC). Media of another DC: `iter_download` borrows a sender for it at once (it knows the
  DC), `download_media` asks the main DC and gets FILE_MIGRATE_X, as from Telegram, then
  borrows; `_borrow_exported_sender` returns a dummy sender naming that DC (`borrowed_dcs`).
- Entities: a marked id (-100…) not in the session cache is resolved by Telethon through
  `channels.GetChannelsRequest` with access_hash=0, answered here; results' entities are
  cached in the session (`process_entities`) as the real `_call` does.
- FloodWait: the real `_call` sleeps through waits up to `flood_sleep_threshold` and retries;
  this one never sleeps or retries: an injected FloodWaitError always reaches the caller, as
  the real client does for waits above the threshold (the default threshold here is 0, so
  `client.flood_sleep_threshold` tells the truth).
"""

from __future__ import annotations

import bisect
import collections
import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from telethon import TelegramClient, errors, utils
from telethon.extensions import BinaryReader
from telethon.sessions import StringSession
from telethon.sessions.abstract import Session
from telethon.tl import TLRequest, functions, types

from storage.telegram import samples

SELF_USER_ID = 4242
HISTORY_PAGE_MAX = 100  # messages.getHistory returns at most this many messages
FILE_PART_MIN = 4096  # upload.getFile: offset and limit are multiples of 4 KiB
FILE_PART_MAX = 1024 * 1024  # ... limit at most 1 MiB, and one request within one 1 MiB block
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

MediaKey = tuple[str, int]  # ("photo" | "document", id)


def _received(obj: Any) -> Any:
    """A fresh copy of a TL object, as if it had just been parsed off the wire."""
    with BinaryReader(bytes(obj)) as reader:
        return reader.tgread_object()


def _media_key(media: Any) -> MediaKey | None:
    if isinstance(media, types.MessageMediaPhoto) and isinstance(media.photo, types.Photo):
        return ("photo", media.photo.id)
    if isinstance(media, types.MessageMediaDocument) and isinstance(media.document, types.Document):
        return ("document", media.document.id)
    return None


def _media_object(message: Any) -> Any:
    """The Photo or Document of a message (None without media)."""
    media = message.media
    if isinstance(media, types.MessageMediaPhoto):
        return media.photo
    if isinstance(media, types.MessageMediaDocument):
        return media.document
    return None


@dataclass
class StoredMedia:
    """The server's copy of one Photo/Document: its bytes and the file references it honours."""

    access_hash: int
    data: bytes
    dc_id: int
    largest_thumb: str = ""  # photos: the size type downloads of the full photo ask for
    references: set[bytes] = field(default_factory=set)
    generation: int = 0


class _ExportedSender:
    """Stands in for the MTProtoSender of another DC; requests still go through `_call`."""

    def __init__(self, dc_id: int) -> None:
        self.dc_id = dc_id

    def is_connected(self) -> bool:
        return True

    async def disconnect(self) -> None:
        return None


class FakeTelegramClient(TelegramClient):  # type: ignore[misc]
    """A TelegramClient whose RPCs are answered by an in-memory server (see the module doc).

    Server state: `channels` (bare id → types.Channel), `history` (bare id → {message id →
    Message}), `media` ((kind, id) → StoredMedia). Channel ids may be given bare or marked.
    Observations: `calls` (request class name → count, failed attempts included), `requests`
    (a shallow snapshot of each request as sent, in order), `borrowed_dcs`.
    """

    def __init__(
        self,
        session: str | Session | None = None,
        api_id: int = 1,
        api_hash: str = "fake",
        *,
        connected: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("flood_sleep_threshold", 0)
        super().__init__(
            session if session is not None else StringSession(), api_id, api_hash, **kwargs
        )
        # the samples' media live in DC 2: downloads then use the main "sender"
        self.session.set_dc(samples.MEDIA_DC_ID, "149.154.167.51", 443)
        self.me = types.User(
            id=SELF_USER_ID,
            is_self=True,
            access_hash=samples.channel_access_hash(SELF_USER_ID),
            first_name="Fake",
            phone="15550004242",
        )
        self.channels: dict[int, types.Channel] = {}
        self.history: dict[int, dict[int, types.Message]] = {}
        self.media: dict[MediaKey, StoredMedia] = {}
        self.pts: dict[int, int] = {}
        self.calls: collections.Counter[str] = collections.Counter()
        self.requests: list[TLRequest] = []
        self.borrowed_dcs: list[int] = []
        self._faults: collections.defaultdict[type[TLRequest], collections.deque[BaseException]] = (
            collections.defaultdict(collections.deque)
        )
        self._fake_connected = connected

    # -- the server's state ------------------------------------------------------------------

    def add_channel(
        self, channel_id: int, *, title: str | None = None, username: str | None = None
    ) -> types.Channel:
        """Create (or replace) a broadcast channel (access hash: `samples.channel_access_hash`)."""
        channel = samples.channel_entity(channel_id, title=title, username=username)
        self.channels[channel.id] = channel
        self.history.setdefault(channel.id, {})
        self.pts.setdefault(channel.id, 1)
        return channel

    def put(self, message: types.Message, media: bytes | None = None) -> None:
        """Add or replace (edit) a message; creates its channel if needed.

        `media` are the bytes a download of its Photo/Document returns; without it, media
        already known by id keep their bytes and new ones get
        `samples.media_bytes(media_id, declared size)`.
        """
        if not isinstance(message, types.Message) or not isinstance(
            message.peer_id, types.PeerChannel
        ):
            raise TypeError("put() takes a types.Message of a channel (peer_id=PeerChannel)")
        bare = message.peer_id.channel_id
        if bare not in self.channels:
            self.add_channel(bare)
        stored = _received(message)
        key = _media_key(stored.media)
        if key is not None:
            obj = _media_object(stored)
            entry = self.media.get(key)
            if entry is None:
                declared = stored.file.size or 0
                entry = StoredMedia(
                    access_hash=obj.access_hash,
                    dc_id=obj.dc_id,
                    data=media if media is not None else samples.media_bytes(key[1], declared),
                )
                self.media[key] = entry
            elif media is not None:
                entry.data = media
            if key[0] == "photo":
                entry.largest_thumb = obj.sizes[-1].type
            entry.references.add(obj.file_reference)
        self.history[bare][stored.id] = stored
        self.pts[bare] += 1

    def delete(self, channel_id: int, ids: Iterable[int]) -> None:
        """Delete messages (unknown ids are ignored); their media stay downloadable."""
        bare = samples.bare_channel_id(channel_id)
        history = self.history.get(bare, {})
        for message_id in ids:
            if history.pop(message_id, None) is not None:
                self.pts[bare] += 1

    def message(self, channel_id: int, message_id: int) -> types.Message | None:
        """A copy of a stored message (None if there is none)."""
        stored = self.history.get(samples.bare_channel_id(channel_id), {}).get(message_id)
        return None if stored is None else _received(stored)

    def media_data(self, message: types.Message) -> bytes:
        """The bytes a download of the message's Photo/Document returns."""
        key = _media_key(message.media)
        if key is None or key not in self.media:
            raise KeyError(f"message {message.id} has no stored media")
        return self.media[key].data

    def rotate_file_reference(self, channel_id: int, message_id: int) -> bytes:
        """Give a stored message's media a new file reference; its old one then fails with
        FileReferenceExpiredError (as after Telegram expires it). Returns the new reference."""
        stored = self.history[samples.bare_channel_id(channel_id)][message_id]
        key = _media_key(stored.media)
        if key is None:
            raise ValueError(f"message {message_id} has no media")
        obj = _media_object(stored)
        entry = self.media[key]
        entry.generation += 1
        fresh = samples.file_reference_for(key[1], message_id, entry.generation)
        entry.references.discard(obj.file_reference)
        entry.references.add(fresh)
        obj.file_reference = fresh
        return fresh

    def fail_next(
        self, request_type: type[TLRequest], error: BaseException, times: int = 1
    ) -> None:
        """The next `times` requests of `request_type` raise `error` instead of being answered.

        E.g. `errors.FloodWaitError(request=None, capture=3)` (`.seconds == 3`),
        `errors.FileReferenceExpiredError(request=None)`, `ConnectionError("reset")`.
        """
        self._faults[request_type].extend([error] * times)

    # -- connection --------------------------------------------------------------------------

    async def connect(self) -> None:
        self._fake_connected = True

    def is_connected(self) -> bool:
        return self._fake_connected

    async def disconnect(self) -> None:
        self._fake_connected = False

    async def _borrow_exported_sender(self, dc_id: int) -> _ExportedSender:
        self.borrowed_dcs.append(dc_id)
        return _ExportedSender(dc_id)

    async def _return_exported_sender(self, sender: Any) -> None:
        return None

    # -- the RPC boundary --------------------------------------------------------------------

    async def __call__(
        self, request: Any, ordered: bool = False, flood_sleep_threshold: int | None = None
    ) -> Any:
        return await self._call(
            self._sender, request, ordered=ordered, flood_sleep_threshold=flood_sleep_threshold
        )

    async def _call(
        self,
        sender: Any,
        request: Any,
        ordered: bool = False,
        flood_sleep_threshold: int | None = None,
    ) -> Any:
        if utils.is_list_like(request):
            return [await self._call(sender, r, ordered=ordered) for r in request]
        if not isinstance(request, TLRequest):
            raise TypeError("You can only invoke requests, not types!")
        if not self._fake_connected:
            raise ConnectionError("Cannot send requests while disconnected")
        await request.resolve(self, utils)
        self.calls[type(request).__name__] += 1
        self.requests.append(copy.copy(request))
        faults = self._faults.get(type(request))
        if faults:
            raise faults.popleft()
        dc_id = sender.dc_id if isinstance(sender, _ExportedSender) else self.session.dc_id
        result = self._answer(request, dc_id)
        self.session.process_entities(result)
        return result

    def _answer(self, request: Any, dc_id: int) -> Any:
        if isinstance(request, functions.channels.GetMessagesRequest):
            return self._get_messages(request)
        if isinstance(request, functions.messages.GetHistoryRequest):
            return self._get_history(request)
        if isinstance(request, functions.upload.GetFileRequest):
            return self._get_file(request, dc_id)
        if isinstance(request, functions.channels.GetChannelsRequest):
            return types.messages.Chats(
                chats=[
                    _received(self._channel(c, request, allow_zero_hash=True)) for c in request.id
                ]
            )
        if isinstance(request, functions.contacts.ResolveUsernameRequest):
            return self._resolve_username(request)
        if isinstance(request, functions.users.GetUsersRequest):
            return [_received(self.me) for u in request.id if isinstance(u, types.InputUserSelf)]
        if isinstance(request, functions.updates.GetStateRequest):
            return types.updates.State(
                pts=1, qts=0, date=datetime.now(UTC).replace(microsecond=0), seq=1, unread_count=0
            )
        raise NotImplementedError(f"FakeTelegramClient does not answer {type(request).__name__}")

    def _channel(self, peer: Any, request: Any, *, allow_zero_hash: bool = False) -> types.Channel:
        """The channel of an InputChannel/InputPeerChannel; CHANNEL_INVALID as the server says."""
        if not isinstance(peer, types.InputChannel | types.InputPeerChannel):
            raise errors.PeerIdInvalidError(request)
        channel = self.channels.get(peer.channel_id)
        if channel is None or not (
            peer.access_hash == channel.access_hash or (allow_zero_hash and peer.access_hash == 0)
        ):
            raise errors.ChannelInvalidError(request)
        return channel

    def _channel_messages(
        self, channel: types.Channel, messages: list[Any], count: int
    ) -> types.messages.ChannelMessages:
        return types.messages.ChannelMessages(
            pts=self.pts[channel.id],
            count=count,
            messages=messages,
            topics=[],
            chats=[_received(channel)],
            users=[],
        )

    def _get_messages(self, request: Any) -> types.messages.ChannelMessages:
        channel = self._channel(request.channel, request)
        if not request.id:
            raise errors.MessageIdsEmptyError(request)
        history = self.history[channel.id]
        found: list[Any] = []
        for wanted in request.id:
            if not isinstance(wanted, types.InputMessageID):
                raise NotImplementedError(f"GetMessagesRequest with {type(wanted).__name__}")
            stored = history.get(wanted.id)
            found.append(
                _received(stored) if stored is not None else types.MessageEmpty(wanted.id, None)
            )
        return self._channel_messages(channel, found, len(found))

    def _get_history(self, request: Any) -> types.messages.ChannelMessages:
        """messages.getHistory: newest first; the window starts at the offset (the first
        message older than offset_id, else older than offset_date, else the newest), moved by
        add_offset, `limit` (at most 100) long; then min_id/max_id filter it."""
        channel = self._channel(request.peer, request)
        history = self.history[channel.id]
        ascending = sorted(history)
        if request.offset_id:
            # messages with id >= offset_id come before the offset
            start = len(ascending) - bisect.bisect_left(ascending, request.offset_id)
        elif request.offset_date is not None and request.offset_date > _EPOCH:
            start = sum(1 for i in ascending if history[i].date >= request.offset_date)
        else:
            start = 0
        descending = ascending[::-1]
        begin = max(0, start + request.add_offset)
        end = max(0, start + request.add_offset + min(max(request.limit, 0), HISTORY_PAGE_MAX))
        window = [
            i
            for i in descending[begin:end]
            if (not request.min_id or i > request.min_id)
            and (not request.max_id or i < request.max_id)
        ]
        return self._channel_messages(
            channel, [_received(history[i]) for i in window], len(history)
        )

    def _get_file(self, request: Any, dc_id: int) -> types.upload.File:
        location = request.location
        if isinstance(location, types.InputPhotoFileLocation):
            key: MediaKey = ("photo", location.id)
        elif isinstance(location, types.InputDocumentFileLocation):
            key = ("document", location.id)
        else:
            raise NotImplementedError(f"GetFileRequest for {type(location).__name__}")
        entry = self.media.get(key)
        if entry is None or entry.access_hash != location.access_hash:
            raise errors.LocationInvalidError(request)
        if key[0] == "photo" and location.thumb_size != entry.largest_thumb:
            raise errors.LocationInvalidError(request)  # only the full size is stored
        if key[0] == "document" and location.thumb_size:
            raise errors.LocationInvalidError(request)  # document thumbnails are not stored
        if entry.dc_id != dc_id:
            raise errors.FileMigrateError(request, capture=entry.dc_id)
        if location.file_reference not in entry.references:
            raise errors.FileReferenceExpiredError(request)
        offset, limit = request.offset, request.limit
        if offset < 0 or offset % FILE_PART_MIN:
            raise errors.OffsetInvalidError(request)
        unit = 1024 if request.precise else FILE_PART_MIN
        if limit <= 0 or limit % unit or limit > FILE_PART_MAX:
            raise errors.LimitInvalidError(request)
        if not request.precise and offset // FILE_PART_MAX != (offset + limit - 1) // FILE_PART_MAX:
            raise errors.LimitInvalidError(request)
        return types.upload.File(
            type=types.storage.FileUnknown(), mtime=0, bytes=entry.data[offset : offset + limit]
        )

    def _resolve_username(self, request: Any) -> types.contacts.ResolvedPeer:
        wanted = request.username.lower()
        for channel in self.channels.values():
            if channel.username and channel.username.lower() == wanted:
                return types.contacts.ResolvedPeer(
                    peer=types.PeerChannel(channel.id), chats=[_received(channel)], users=[]
                )
        raise errors.UsernameNotOccupiedError(request)
