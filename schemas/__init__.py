"""Event models of the wire contract and their validation (pure: no Faust, no I/O)."""

from schemas.dlq import DlqRecord, dead_letter
from schemas.events import (
    ALBUM_ASSEMBLED_V1,
    ALBUMS_PARSED_V1,
    VISION_ANALYZED_V1,
    AlbumAssembled,
    AlbumItem,
    AlbumParsed,
    AssembledItem,
    Vision,
    VisionAnalyzed,
)
from schemas.validation import (
    InvalidEvent,
    decode_album_assembled,
    decode_album_parsed,
    decode_vision_analyzed,
)

__all__ = [
    "ALBUMS_PARSED_V1",
    "ALBUM_ASSEMBLED_V1",
    "VISION_ANALYZED_V1",
    "AlbumAssembled",
    "AlbumItem",
    "AlbumParsed",
    "AssembledItem",
    "DlqRecord",
    "InvalidEvent",
    "Vision",
    "VisionAnalyzed",
    "dead_letter",
    "decode_album_assembled",
    "decode_album_parsed",
    "decode_vision_analyzed",
]
