"""The Faust tables of the pipeline (RocksDB store set on the app, changelog per table)."""

from __future__ import annotations

from streams.app import app
from streams.settings import settings

# album_id (decimal string) → AlbumState.to_dict(); written only by agents.assembler
album_state = app.Table(
    "album_state",
    partitions=settings.topic_partitions,
    help="Albums in flight: items, vision received, version and deadline, by album_id.",
)

# post_id (decimal string) → PostEntry.to_dict(); written only by agents.post_index
post_index = app.Table(
    "post_index",
    partitions=settings.topic_partitions,
    help="Post → album index with vision events waiting for their album, by post_id.",
)
