"""The Faust tables of the pipeline and the topics of the agents that write them.

The RocksDB store is set on the app; each table has a changelog topic. Each table is written by
one agent only, which reads the internal topic declared beside it with the same partitions.
"""

from __future__ import annotations

from faust.types import TopicT

from streams.app import app
from streams.settings import settings
from streams.topics import ALBUM_EVENTS, POST_EVENTS

MB = 1024 * 1024

# RocksDB per partition of each table (a worker opens one per partition it owns or stands by
# for). Faust's defaults (three 64 MB memtables and a 2 GB block cache, per partition) would let
# 16 partitions grow to gigabytes; these hold a worker with 1 M albums in flight to the
# memory measured by `make bench-state` (README, "Throughput").
ROCKSDB_OPTIONS = {
    "write_buffer_size": 8 * MB,
    "max_write_buffer_number": 2,
    "target_file_size_base": 32 * MB,
    "block_cache_size": 8 * MB,
}

# album_id (decimal string) → AlbumState.to_dict(); written only by agents.assembler
album_state = app.Table(
    "album_state",
    partitions=settings.topic_partitions,
    options=dict(ROCKSDB_OPTIONS),
    extra_topic_configs=settings.topic_configs,
    help="Albums in flight: items, vision received, version and deadline, by album_id.",
)

# post_id (decimal string) → PostEntry.to_dict(); written only by agents.post_index
post_index = app.Table(
    "post_index",
    partitions=settings.topic_partitions,
    options=dict(ROCKSDB_OPTIONS),
    extra_topic_configs=settings.topic_configs,
    help="Post → album index with vision events waiting for their album, by post_id.",
)


def _internal(name: str) -> TopicT:
    # Envelopes of commands (agents/envelopes.py), JSON; Faust creates the topic with the table's
    # partition count when it is missing.
    return app.topic(
        name,
        key_serializer="json",
        value_serializer="json",
        partitions=settings.topic_partitions,
        internal=True,
        config=settings.topic_configs,
    )


album_events_topic = _internal(ALBUM_EVENTS)
post_events_topic = _internal(POST_EVENTS)
