"""The post→album index entry of one post and its transitions (pure: no Faust, no I/O).

`albums.parsed` fans out one index entry per item; a vision event without album_id looks its
post up here (a foreign-key join). A vision event whose entry has not arrived yet is buffered in
the entry until it does, or until it expires (then it goes to the DLQ, never silently away).

Tenants are kept apart: an entry holds one claim per tenant (`claims`: tenant → album_id), a
vision event only ever joins its own tenant's claim, and what one tenant buffers never counts
against another. Two tenants whose post ids collide (ingestions with id spaces of their own, or
bad data) therefore never take each other's posts nor block each other's albums.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from schemas.events import VisionAnalyzed
from schemas.validation import InvalidEvent

#: vision events one tenant may buffer for one post before its index entry arrives
MAX_PENDING = 16


@dataclass(frozen=True, slots=True)
class PendingVision:
    event: VisionAnalyzed
    received_at: float


@dataclass(frozen=True, slots=True)
class PostEntry:
    """What is known of one post: each tenant's album of it, and vision waiting for one."""

    post_id: int
    expire_at: float
    claims: tuple[tuple[str, int], ...] = ()
    pending: tuple[PendingVision, ...] = ()

    def album_of(self, tenant_id: str) -> int | None:
        """The album `tenant_id` has this post in (None: not indexed for that tenant)."""
        for tenant, album_id in self.claims:
            if tenant == tenant_id:
                return album_id
        return None

    @property
    def album_id(self) -> int | None:
        """The album of the first claim (one tenant is the common case)."""
        return self.claims[0][1] if self.claims else None

    @property
    def tenant_id(self) -> str | None:
        return self.claims[0][0] if self.claims else None

    def next_due(self) -> float:
        # pending vision lives as long as the entry's retention window (stored in expire_at)
        return self.expire_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "post_id": self.post_id,
            "expire_at": self.expire_at,
            "claims": {tenant: album_id for tenant, album_id in self.claims},
            "pending": [
                {"event": p.event.to_dict(), "received_at": p.received_at} for p in self.pending
            ],
            # read alone when the due index is rebuilt
            "due": self.next_due(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PostEntry:
        """From `to_dict()` output (or the single-tenant form of earlier versions: album_id and
        tenant_id at the top); its events were validated before they were stored."""
        claims = d.get("claims")
        if claims is None and d.get("album_id") is not None and d.get("tenant_id") is not None:
            claims = {d["tenant_id"]: d["album_id"]}
        return cls(
            post_id=int(d["post_id"]),
            expire_at=float(d["expire_at"]),
            claims=tuple((str(t), int(a)) for t, a in (claims or {}).items()),
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
    """post_id belongs to album_id for tenant_id: remember it, release that tenant's vision
    waiting for it (other tenants' claims and vision are left as they are)."""
    expire_at = now + retention_seconds
    mine = [p for p in entry.pending if p.event.tenant_id == tenant_id] if entry else []
    if entry is not None and entry.album_of(tenant_id) == album_id and not mine:
        return IndexOutcome(entry, changed=False, note="duplicate")
    claims = tuple((t, a) for t, a in (entry.claims if entry else ()) if t != tenant_id)
    new = PostEntry(
        post_id=post_id,
        expire_at=max(expire_at, entry.expire_at if entry else expire_at),
        claims=(*claims, (tenant_id, album_id)),
        pending=tuple(p for p in entry.pending if p.event.tenant_id != tenant_id) if entry else (),
    )
    forward = tuple(_with_album(p.event, album_id) for p in mine)
    return IndexOutcome(new, changed=True, forward=forward)


def apply_vision(
    entry: PostEntry | None,
    event: VisionAnalyzed,
    now: float,
    retention_seconds: float,
) -> IndexOutcome:
    """A vision event without album_id: route it if its tenant has indexed the post, else
    buffer it."""
    album_id = None if entry is None else entry.album_of(event.tenant_id)
    if entry is not None and album_id is not None:
        return IndexOutcome(
            entry, changed=False, forward=(_with_album(event, album_id),), note="routed"
        )
    entry = entry or PostEntry(post_id=event.post_id, expire_at=now + retention_seconds)
    mine = [p for p in entry.pending if p.event.tenant_id == event.tenant_id]
    for p in mine:
        if (event.event_id and p.event.event_id == event.event_id) or p.event == event:
            return IndexOutcome(entry, changed=False, note="duplicate")
    if len(mine) >= MAX_PENDING:
        raise InvalidEvent(
            "too_many_buffered",
            f"post {event.post_id} is not indexed yet for its tenant and already buffers "
            f"{MAX_PENDING} of its events",
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
                f"post {entry.post_id} was never indexed in an album of its tenant "
                f"(buffered since {p.received_at:.0f})",
            ),
        )
        for p in entry.pending
    )
    return IndexOutcome(None, changed=True, rejected=rejected, note="expired")
