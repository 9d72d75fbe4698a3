"""Prometheus metrics of the ingest process (its own registry: the worker's are not served)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass(slots=True)
class IngestMetrics:
    """The ingest process's metrics; channel labels come from the configured, bounded set."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    messages: Counter = field(init=False)
    albums: Counter = field(init=False)
    media_bytes: Counter = field(init=False)
    media_skipped: Counter = field(init=False)
    flood_wait_seconds: Counter = field(init=False)
    reconnects: Counter = field(init=False)
    dead_letters: Counter = field(init=False)
    published: Counter = field(init=False)
    outbox_backlog: Gauge = field(init=False)
    cursor: Gauge = field(init=False)
    lag: Gauge = field(init=False)

    def __post_init__(self) -> None:
        r = self.registry
        self.messages = Counter(
            "ingest_messages_total",
            "Telegram messages seen, by kind (album_part, single, edit, deletion, duplicate, "
            "invalid)",
            ["kind"],
            registry=r,
        )
        self.albums = Counter(
            "ingest_albums_total",
            "albums stored, by outcome (new, changed, unchanged, deleted, refused)",
            ["outcome"],
            registry=r,
        )
        self.media_bytes = Counter(
            "ingest_media_bytes_total", "media bytes downloaded from Telegram", registry=r
        )
        self.media_skipped = Counter(
            "ingest_media_skipped_total",
            "media not stored, by reason (too_large, unavailable)",
            ["reason"],
            registry=r,
        )
        self.flood_wait_seconds = Counter(
            "ingest_flood_wait_seconds_total", "seconds waited on Telegram's FloodWait", registry=r
        )
        self.reconnects = Counter(
            "ingest_reconnects_total", "reconnections to Telegram after a disconnect", registry=r
        )
        self.dead_letters = Counter(
            "ingest_dlq_total",
            "records sent to albums.dlq by ingestion",
            ["error_type"],
            registry=r,
        )
        self.published = Counter(
            "ingest_outbox_published_total", "albums.parsed events published", registry=r
        )
        self.outbox_backlog = Gauge(
            "ingest_outbox_backlog", "committed albums.parsed events not yet published", registry=r
        )
        self.cursor = Gauge(
            "ingest_channel_cursor",
            "highest message id stored of a channel",
            ["channel"],
            registry=r,
        )
        self.lag = Gauge(
            "ingest_channel_lag_messages",
            "message ids seen but not yet stored in a channel (last seen id - cursor)",
            ["channel"],
            registry=r,
        )
