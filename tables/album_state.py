"""The state of one album in flight and its transitions (pure: no Faust, no I/O, no clock).

The assembler agent keeps one `AlbumState` per album_id in the `album_state` table (as the
dict of `to_dict()`), feeds it events with their times, writes back the new state, and
sends what the transition says to emit.

Times (tables/stream_time.py): an album's own times (created, parsed, deadline, received) are
the event times of its records; deadlines and expiry are compared with the partition's stream
time; the wall clock only stamps `assembly_completed_at` (and the lag, which is how long after
its first record an album came out). Every transition is deterministic and idempotent:
applying the same event twice yields the same state and emits nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from schemas.events import (
    MAX_ALBUM_ITEMS,
    AlbumAssembled,
    AlbumItem,
    AlbumParsed,
    AssembledItem,
    Vision,
    VisionAnalyzed,
    parse_instant,
)
from schemas.validation import InvalidEvent
from tables import aggregation
from tables.stream_time import Times

COMPLETE = "complete"
PARTIAL = "partial"


@dataclass(frozen=True, slots=True)
class AssemblyPolicy:
    """Time rules of assembly.

    Args:
        deadline_seconds: after the album is known, how long to wait for every item's vision
            before emitting it `partial`.
        retention_seconds: how long state is kept after the last assembly (for late events),
            and how long vision of an album never parsed is kept.
        max_buffered_vision: vision events of an album not parsed yet that are kept at most
            (an album has at most MAX_ALBUM_ITEMS posts; more would be other albums' or bad
            data, and each costs room in a state record that must stay under Kafka's 1 MB).
    """

    deadline_seconds: float = 600.0
    retention_seconds: float = 86400.0
    max_buffered_vision: int = MAX_ALBUM_ITEMS


@dataclass(frozen=True, slots=True)
class VisionEntry:
    event: VisionAnalyzed
    received_at: float


@dataclass(frozen=True, slots=True)
class AlbumState:
    """One album in flight.

    `album` is None while only vision events have arrived. `version` counts emissions;
    `dirty` says that vision or items changed since the last one.
    """

    album_id: int
    created_at: float
    expire_at: float
    album: AlbumParsed | None = None
    vision: dict[int, VisionEntry] = field(default_factory=dict)
    parsed_at: float | None = None
    deadline_at: float | None = None
    version: int = 0
    status: str | None = None
    emitted_at: float | None = None
    dirty: bool = False

    @property
    def items_analyzed(self) -> int:
        if self.album is None:
            return 0
        return sum(1 for i in self.album.items if i.post_id in self.vision)

    @property
    def complete(self) -> bool:
        return self.album is not None and self.items_analyzed == len(self.album.items)

    def next_due(self) -> float | None:
        """When time alone can change this state: its deadline if still pending, else expiry."""
        if self.album is not None and self.version == 0 and not self.complete:
            return self.deadline_at
        return self.expire_at

    # -- (de)serialization: the table stores plain JSON-able dicts ---------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "album_id": self.album_id,
            "created_at": self.created_at,
            "expire_at": self.expire_at,
            "album": None if self.album is None else self.album.to_dict(),
            "vision": {
                str(pid): {"event": e.event.to_dict(), "received_at": e.received_at}
                for pid, e in self.vision.items()
            },
            "parsed_at": self.parsed_at,
            "deadline_at": self.deadline_at,
            "version": self.version,
            "status": self.status,
            "emitted_at": self.emitted_at,
            "dirty": self.dirty,
            # read alone when the due index is rebuilt (no decoding of the whole state)
            "due": self.next_due(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AlbumState:
        """From `to_dict()` output; its events were validated before they were stored."""
        return cls(
            album_id=int(d["album_id"]),
            created_at=float(d["created_at"]),
            expire_at=float(d["expire_at"]),
            album=None if d.get("album") is None else AlbumParsed.from_dict(d["album"]),
            vision={
                int(pid): VisionEntry(VisionAnalyzed.from_dict(e["event"]), float(e["received_at"]))
                for pid, e in (d.get("vision") or {}).items()
            },
            parsed_at=d.get("parsed_at"),
            deadline_at=d.get("deadline_at"),
            version=int(d.get("version", 0)),
            status=d.get("status"),
            emitted_at=d.get("emitted_at"),
            dirty=bool(d.get("dirty", False)),
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a transition decided.

    Args:
        state: the new state; None when the album's state is to be deleted.
        changed: whether the table must be written (False for no-ops such as duplicates).
        emit: the album to send to `album.assembled`, if any.
        rejected: events that cannot be applied (e.g. vision of a post outside the album),
            each with the reason, for the DLQ.
        note: a word for metrics and logs: applied, duplicate, emitted, expired, ...
    """

    state: AlbumState | None
    changed: bool
    emit: AlbumAssembled | None = None
    rejected: tuple[tuple[VisionAnalyzed, InvalidEvent], ...] = ()
    note: str = "applied"


def _times(now: float | Times) -> Times:
    return now if isinstance(now, Times) else Times.at(now)


def new_state(album_id: int, now: float, policy: AssemblyPolicy) -> AlbumState:
    return AlbumState(album_id=album_id, created_at=now, expire_at=now + policy.retention_seconds)


def _same_album(a: AlbumParsed, b: AlbumParsed) -> bool:
    # event_id and parsed_at change when ingestion re-emits; the album itself does not
    return replace(a, event_id="", parsed_at=None) == replace(b, event_id="", parsed_at=None)


def apply_parsed(
    state: AlbumState | None, album: AlbumParsed, now: float | Times, policy: AssemblyPolicy
) -> Outcome:
    """An `albums.parsed` event: the album and its expected items become known; its deadline
    runs from the event's time."""
    t = _times(now)
    st = state or new_state(album.album_id, t.event, policy)
    if st.album is not None and _same_album(st.album, album):
        return Outcome(st, changed=False, note="duplicate")
    if st.album is not None and st.album.tenant_id != album.tenant_id:
        raise InvalidEvent(
            "tenant_mismatch",
            f"album {album.album_id} belongs to tenant {st.album.tenant_id!r}, "
            f"event says {album.tenant_id!r}",
        )
    expected = {i.post_id for i in album.items}
    rejected: list[tuple[VisionAnalyzed, InvalidEvent]] = []
    kept: dict[int, VisionEntry] = {}
    for pid, entry in st.vision.items():
        if pid not in expected:
            rejected.append((entry.event, _not_in_album(pid, album.album_id)))
        elif entry.event.tenant_id != album.tenant_id:
            rejected.append((entry.event, _tenant_mismatch(entry.event, album.tenant_id)))
        else:
            kept[pid] = entry
    first_parse = st.album is None
    st = replace(
        st,
        album=album,
        vision=kept,
        parsed_at=t.event if first_parse else st.parsed_at,
        deadline_at=t.event + policy.deadline_seconds if first_parse else st.deadline_at,
        dirty=st.version > 0 or st.dirty,
    )
    return _evaluate(st, t, policy, rejected=tuple(rejected), note="applied")


def apply_vision(
    state: AlbumState | None, event: VisionAnalyzed, now: float | Times, policy: AssemblyPolicy
) -> Outcome:
    """A `posts.vision.analyzed` event routed to this album."""
    t = _times(now)
    album_id = state.album_id if state else event.album_id
    if album_id is None:
        raise InvalidEvent("missing_field", "vision event reached the assembler without album_id")
    st = state or new_state(album_id, t.event, policy)
    if st.album is not None:
        if event.post_id not in {i.post_id for i in st.album.items}:
            raise _not_in_album(event.post_id, st.album_id)
        if event.tenant_id != st.album.tenant_id:
            raise _tenant_mismatch(event, st.album.tenant_id)
    old = st.vision.get(event.post_id)
    if old is not None:
        same_id = bool(event.event_id) and old.event.event_id == event.event_id
        if same_id or old.event.vision == event.vision:
            return Outcome(st, changed=False, note="duplicate")
        if _analyzed_later(old.event.analyzed_at, event.analyzed_at):
            return Outcome(st, changed=False, note="stale")
    elif st.album is None and len(st.vision) >= policy.max_buffered_vision:
        raise InvalidEvent(
            "too_many_buffered",
            f"album {album_id} is not parsed yet and already buffers "
            f"{policy.max_buffered_vision} vision events",
        )
    vision = {**st.vision, event.post_id: VisionEntry(event, t.event)}
    st = replace(st, vision=vision, dirty=True)
    return _evaluate(st, t, policy, note="applied")


def on_time(state: AlbumState, now: float | Times, policy: AssemblyPolicy) -> Outcome:
    """Stream time passed: emit `partial` past the deadline, delete state past retention."""
    t = _times(now)
    if t.stream >= state.expire_at and (state.album is None or state.version > 0):
        # vision of an album that never arrived must not vanish silently
        orphans = (
            tuple(
                (
                    e.event,
                    InvalidEvent(
                        "album_never_parsed",
                        f"album {state.album_id} was not parsed within "
                        f"{policy.retention_seconds:g}s of its first vision event",
                    ),
                )
                for e in state.vision.values()
            )
            if state.album is None
            else ()
        )
        return Outcome(None, changed=True, rejected=orphans, note="expired")
    return _evaluate(state, t, policy, note="tick")


def _evaluate(
    st: AlbumState,
    now: Times,
    policy: AssemblyPolicy,
    *,
    rejected: tuple[tuple[VisionAnalyzed, InvalidEvent], ...] = (),
    note: str,
) -> Outcome:
    if st.album is not None:
        if st.complete and (st.status != COMPLETE or st.dirty):
            return _emit(st, now, policy, COMPLETE, rejected)
        deadline_passed = st.deadline_at is not None and now.stream >= st.deadline_at
        if not st.complete and deadline_passed and (st.version == 0 or st.dirty):
            return _emit(st, now, policy, PARTIAL, rejected)
    return Outcome(st, changed=note != "tick", rejected=rejected, note=note)


def _emit(
    st: AlbumState,
    now: Times,
    policy: AssemblyPolicy,
    status: str,
    rejected: tuple[tuple[VisionAnalyzed, InvalidEvent], ...],
) -> Outcome:
    st = replace(
        st,
        version=st.version + 1,
        status=status,
        emitted_at=now.stream,
        dirty=False,
        expire_at=now.stream + policy.retention_seconds,
    )
    return Outcome(st, changed=True, emit=assemble(st, now.wall), rejected=rejected, note="emitted")


def assemble(st: AlbumState, now: float) -> AlbumAssembled:
    """The `album.assembled` event of the state's current version."""
    album = st.album
    if album is None:
        raise ValueError(f"album {st.album_id} cannot be assembled before it is parsed")
    items: list[AlbumItem] = sorted(album.items, key=lambda i: i.position)
    visions: list[Vision] = [
        st.vision[i.post_id].event.vision for i in items if i.post_id in st.vision
    ]
    return AlbumAssembled(
        album_id=album.album_id,
        version=st.version,
        status=st.status or PARTIAL,
        tenant_id=album.tenant_id,
        channel_id=album.channel_id,
        grouped_id=album.grouped_id,
        album_kind=aggregation.album_kind(items),
        items_count=len(items),
        items_analyzed=len(visions),
        caption_text=album.caption_text,
        posted_at=album.posted_at,
        vision_summary=aggregation.summarize(visions),
        vision_labels=tuple(aggregation.rank_labels(visions)),
        ocr_text=aggregation.join_ocr(visions),
        has_meme=aggregation.has_meme(visions),
        has_text=aggregation.has_text(visions),
        items=tuple(
            AssembledItem(
                post_id=i.post_id,
                position=i.position,
                media_kind=i.media_kind,
                vision=(
                    st.vision[i.post_id].event.vision.to_dict() if i.post_id in st.vision else None
                ),
            )
            for i in items
        ),
        assembly_started_at=aggregation.iso(st.created_at),
        assembly_completed_at=aggregation.iso(now),
        assembly_lag_seconds=round(max(0.0, now - st.created_at), 3),
        texts_truncated=album.truncated or any(v.truncated for v in visions),
    )


def _not_in_album(post_id: int, album_id: int) -> InvalidEvent:
    return InvalidEvent("post_not_in_album", f"post {post_id} is not an item of album {album_id}")


def _tenant_mismatch(event: VisionAnalyzed, tenant_id: str) -> InvalidEvent:
    return InvalidEvent(
        "tenant_mismatch",
        f"vision of post {event.post_id} is for tenant {event.tenant_id!r}, "
        f"its album belongs to {tenant_id!r}",
    )


def _analyzed_later(stored: str | None, incoming: str | None) -> bool:
    """Whether the stored vision was analyzed after the incoming one (compared as instants; a
    missing time is older than any)."""
    old, new = parse_instant(stored), parse_instant(incoming)
    if old is None:
        return False
    return new is None or old > new
