"""The post→album index entry of one post and its transitions (pure: no Faust, no I/O).

`albums.parsed` fans out one index entry per item; a vision event without album_id looks its
post up here (a foreign-key join). A vision event whose entry has not arrived yet is buffered in
the entry until it does, or until it expires (then it goes to the DLQ, never silently away).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from schemas.events import VisionAnalyzed
from schemas.validation import InvalidEvent

MAX_PENDING = 16


@dataclass(frozen=True, slots=True)
class PendingVision:
    event: VisionAnalyzed
    received_at: float


@dataclass(frozen=True, slots=True)
class PostEntry:
    """What is known of one post: its album (once indexed) and vision waiting for it."""

    post_id: int
    expire_at: float
    album_id: int | None = None
    tenant_id: str | None = None
    pending: tuple[PendingVision, ...] = ()

    def next_due(self) -> float:
        if self.pending:
            return min(self.expire_at, min(p.received_at for p in self.pending) + self._ttl())
        return self.expire_at

    def _ttl(self) -> float:
        # pending vision lives as long as the entry's retention window (stored in expire_at)
        return max(0.0, self.expire_at - min(p.received_at for p in self.pending))

    def to_dict(self) -> dict[str, Any]:
        return {
            "post_id": self.post_id,
            "expire_at": self.expire_at,
            "album_id": self.album_id,
            "tenant_id": self.tenant_id,
            "pending": [
                {"event": p.event.to_dict(), "received_at": p.received_at} for p in self.pending
            ],
            # read alone when the due index is rebuilt
            "due": self.next_due(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PostEntry:
        """From `to_dict()` output; its events were validated before they were stored."""
        return cls(
            post_id=int(d["post_id"]),
            expire_at=float(d["expire_at"]),
            album_id=d.get("album_id"),
            tenant_id=d.get("tenant_id"),
            pending=tuple(
                PendingVision(VisionAnalyzed.from_dict(p["event"]), float(p["received_at"]))
                for p in d.get("pending") or ()
            ),
        )


@dataclass(frozen=True, slots=True)
class IndexOutcome:
    """entry None = delete; forward = vision events now routable (album_id filled in)."""

    entry: PostEntry | None
    changed: bool
    forward: tuple[VisionAnalyzed, ...] = ()
    rejected: tuple[tuple[VisionAnalyzed, InvalidEvent], ...] = ()
    note: str = "applied"


def _with_album(event: VisionAnalyzed, album_id: int) -> VisionAnalyzed:
    return replace(event, album_id=album_id)


def apply_index(
    entry: PostEntry | None,
    post_id: int,
    album_id: int,
    tenant_id: str,
    now: float,
    retention_seconds: float,
) -> IndexOutcome:
    """post_id belongs to album_id: remember it, release the vision waiting for it."""
    expire_at = now + retention_seconds
    if (
        entry is not None
        and entry.album_id == album_id
        and entry.tenant_id == tenant_id
        and not entry.pending
    ):
        return IndexOutcome(entry, changed=False, note="duplicate")
    forward: list[VisionAnalyzed] = []
    rejected: list[tuple[VisionAnalyzed, InvalidEvent]] = []
    for p in entry.pending if entry else ():
        if p.event.tenant_id != tenant_id:
            rejected.append(
                (
                    p.event,
                    InvalidEvent(
                        "tenant_mismatch",
                        f"vision of post {post_id} is for tenant {p.event.tenant_id!r}, "
                        f"its album {album_id} belongs to {tenant_id!r}",
                    ),
                )
            )
        else:
            forward.append(_with_album(p.event, album_id))
    new = PostEntry(
        post_id=post_id,
        expire_at=max(expire_at, entry.expire_at if entry else expire_at),
        album_id=album_id,
        tenant_id=tenant_id,
        pending=(),
    )
    return IndexOutcome(new, changed=True, forward=tuple(forward), rejected=tuple(rejected))


def apply_vision(
    entry: PostEntry | None,
    event: VisionAnalyzed,
    now: float,
    retention_seconds: float,
) -> IndexOutcome:
    """A vision event without album_id: route it if the post is indexed, else buffer it."""
    if entry is not None and entry.album_id is not None:
        if entry.tenant_id is not None and entry.tenant_id != event.tenant_id:
            raise InvalidEvent(
                "tenant_mismatch",
                f"vision of post {event.post_id} is for tenant {event.tenant_id!r}, "
                f"the post belongs to {entry.tenant_id!r}",
            )
        return IndexOutcome(
            entry, changed=False, forward=(_with_album(event, entry.album_id),), note="routed"
        )
    entry = entry or PostEntry(post_id=event.post_id, expire_at=now + retention_seconds)
    for p in entry.pending:
        if (event.event_id and p.event.event_id == event.event_id) or p.event == event:
            return IndexOutcome(entry, changed=False, note="duplicate")
    if len(entry.pending) >= MAX_PENDING:
        raise InvalidEvent(
            "too_many_buffered",
            f"post {event.post_id} is not indexed yet and already buffers {MAX_PENDING} events",
        )
    entry = replace(entry, pending=(*entry.pending, PendingVision(event, now)))
    return IndexOutcome(entry, changed=True, note="buffered")


def on_time(entry: PostEntry, now: float) -> IndexOutcome:
    """Past its expiry the entry goes; vision still waiting for an album goes to the DLQ."""
    if now < entry.expire_at:
        return IndexOutcome(entry, changed=False, note="tick")
    rejected = tuple(
        (
            p.event,
            InvalidEvent(
                "orphan_vision_expired",
                f"post {entry.post_id} was never indexed in an album "
                f"(buffered since {p.received_at:.0f})",
            ),
        )
        for p in entry.pending
    )
    return IndexOutcome(None, changed=True, rejected=rejected, note="expired")
