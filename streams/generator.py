"""Synthetic albums and vision events with knobs for disorder, loss and garbage (pure, seeded).

Used by tests, `make run` (sample albums) and the load test. `generate()` returns the records
to produce, in the order to produce them, and what the pipeline should make of them.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

ALBUMS_PARSED = "albums.parsed"
VISION_ANALYZED = "posts.vision.analyzed"

SCENES = [
    ("a cat on a sofa", ["cat", "sofa", "indoor"]),
    ("кот спит на диване", ["кот", "диван"]),
    ("a red car parked on a street", ["car", "street", "city"]),
    ("горы и озеро на закате", ["горы", "озеро", "закат"]),
    ("a plate of pasta with tomatoes", ["food", "pasta", "tomato"]),
    ("screenshot of a chat with a joke", ["screenshot", "text", "meme"]),
    ("a chart of quarterly revenue", ["chart", "business", "finance"]),
    ("people at a conference on technology", ["people", "technology", "conference"]),
    ("a dog running on the beach", ["dog", "beach", "sea"]),
    ("новый смартфон на столе", ["смартфон", "technology", "стол"]),
]
OCR_SAMPLES = ["", "", "", "SALE -50%", "Привет, мир", "Q3 revenue +12%", "when the code works"]
CAPTIONS = [None, "Weekend photos", "Новости дня", "Our new product line", "Отчёт за квартал"]
KIND_WEIGHTS = [("photo", 70), ("video", 20), ("document", 10)]
ITEM_COUNT_WEIGHTS = [(1, 5), (2, 30), (3, 25), (4, 15), (5, 8), (6, 5), (8, 5), (10, 7)]

MALFORMED_KINDS = (
    "invalid_json",
    "missing_field",
    "wrong_type",
    "item_count_zero",
    "item_count_eleven",
    "duplicate_position",
    "duplicate_post_id",
    "invalid_tenant_id",
    "vision_missing_post_id",
    "vision_wrong_type",
)
# error_type the validation reports for each kind of garbage
MALFORMED_ERROR = {
    "invalid_json": "invalid_json",
    "missing_field": "missing_field",
    "wrong_type": "wrong_type",
    "item_count_zero": "item_count",
    "item_count_eleven": "item_count",
    "duplicate_position": "duplicate_position",
    "duplicate_post_id": "duplicate_post_id",
    "invalid_tenant_id": "invalid_tenant_id",
    "vision_missing_post_id": "missing_field",
    "vision_wrong_type": "wrong_type",
}


@dataclass(frozen=True, slots=True)
class GeneratorConfig:
    """Knobs of `generate()`.

    Args:
        albums: how many albums.
        seed: the random seed; the same config always yields the same records.
        tenants: tenant ids to spread albums over.
        first_album_id: album ids are consecutive from here (post ids derive from them).
        shuffle: shuffle every record across both topics (else each album's records together).
        duplicate_share: share of records sent twice.
        missing_vision_share: share of albums with one item's vision never sent.
        vision_first_share: share of albums whose vision comes before the album (no shuffle).
        album_id_share: share of vision events that carry album_id (others go via the index).
        malformed_share: garbage records added, as a share of albums.
        not_in_album: vision events of posts outside any album (`grouped_id: null`).
    """

    albums: int = 100
    seed: int = 0
    tenants: tuple[str, ...] = ("acme",)
    first_album_id: int = 1
    shuffle: bool = True
    duplicate_share: float = 0.0
    missing_vision_share: float = 0.0
    vision_first_share: float = 0.0
    album_id_share: float = 0.5
    malformed_share: float = 0.0
    not_in_album: int = 0


@dataclass(frozen=True, slots=True)
class Record:
    """One record to produce: topic, key and value bytes, and what it is."""

    topic: str
    key: bytes | None
    value: bytes
    kind: str  # parsed | vision | malformed | not_in_album
    album_id: int | None = None
    error_type: str | None = None


@dataclass
class ExpectedAlbum:
    album_id: int
    tenant_id: str
    channel_id: int
    grouped_id: int
    items: list[dict[str, Any]]
    vision: dict[int, dict[str, Any]]  # post_id → vision of the events actually sent
    complete: bool


@dataclass
class Generated:
    records: list[Record] = field(default_factory=list)
    albums: dict[int, ExpectedAlbum] = field(default_factory=dict)

    @property
    def malformed(self) -> list[Record]:
        return [r for r in self.records if r.kind == "malformed"]


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="seconds").replace("+00:00", "Z")


def _weighted(rng: random.Random, choices: list[tuple[Any, int]]) -> Any:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def post_id_of(album_id: int, position: int) -> int:
    """Post ids derive from the album id, so they never collide between albums."""
    return album_id * 16 + position


def make_album(rng: random.Random, album_id: int, tenant: str, now: datetime) -> dict[str, Any]:
    n = _weighted(rng, ITEM_COUNT_WEIGHTS)
    kind = _weighted(rng, KIND_WEIGHTS)
    mixed = kind != "document" and rng.random() < 0.2
    channel_id = -1001000000000 - rng.randrange(50)
    posted = now - timedelta(seconds=rng.randrange(3600))
    items = [
        {
            "post_id": post_id_of(album_id, pos),
            "message_id": 1000 + pos + album_id % 100000,
            "position": pos,
            "media_kind": rng.choice(["photo", "video"]) if mixed else kind,
            "media_object_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "sha256": f"{rng.getrandbits(256):064x}",
        }
        for pos in range(n)
    ]
    return {
        "schema": "albums.parsed/v1",
        "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "tenant_id": tenant,
        "channel_id": channel_id,
        "grouped_id": 10**12 + album_id,
        "album_id": album_id,
        "posted_at": _iso(posted),
        "caption_text": rng.choice(CAPTIONS),
        "cover_media_id": items[0]["media_object_id"],
        "parsed_at": _iso(posted + timedelta(seconds=3)),
        "items": items,
    }


def make_vision(
    rng: random.Random, album: dict[str, Any], item: dict[str, Any], with_album_id: bool
) -> dict[str, Any]:
    description, labels = rng.choice(SCENES)
    labels = rng.sample(labels, k=rng.randint(1, len(labels)))
    ocr = rng.choice(OCR_SAMPLES)
    event: dict[str, Any] = {
        "schema": "posts.vision.analyzed/v1",
        "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "tenant_id": album["tenant_id"],
        "post_id": item["post_id"],
        "channel_id": album["channel_id"],
        "grouped_id": album["grouped_id"],
        "analyzed_at": album["parsed_at"],
        "vision": {
            "description": description,
            "labels": labels,
            "ocr_text": ocr,
            "is_meme": "meme" in labels,
            "has_text": bool(ocr),
            "provider": "synthetic",
            "model": "generator-v1",
        },
    }
    if with_album_id:
        event["album_id"] = album["album_id"]
    return event


def make_malformed(rng: random.Random, kind: str, album_id: int, tenant: str) -> Record:
    """A record that breaks one rule of the contract."""
    now = datetime(2025, 1, 30, 10, 0, tzinfo=UTC)
    album = make_album(rng, album_id, tenant, now)
    topic = ALBUMS_PARSED
    value: bytes
    if kind == "invalid_json":
        value = b'{"album_id": 1, "items": [ oops'
    elif kind == "missing_field":
        del album["album_id"]
    elif kind == "wrong_type":
        album["channel_id"] = "not-a-number"
    elif kind == "item_count_zero":
        album["items"] = []
    elif kind == "item_count_eleven":
        album["items"] = [{**album["items"][0], "post_id": i, "position": i} for i in range(11)]
    elif kind == "duplicate_position":
        album["items"] = [
            {**album["items"][0], "post_id": post_id_of(album_id, i), "position": 0}
            for i in range(2)
        ]
    elif kind == "duplicate_post_id":
        album["items"] = [{**album["items"][0], "position": i} for i in range(2)]
    elif kind == "invalid_tenant_id":
        album["tenant_id"] = "../other tenant"
    elif kind in ("vision_missing_post_id", "vision_wrong_type"):
        topic = VISION_ANALYZED
        vision = make_vision(rng, album, album["items"][0], with_album_id=True)
        if kind == "vision_missing_post_id":
            del vision["post_id"]
        else:
            vision["vision"]["labels"] = "cat"
        value = orjson.dumps(vision)
        return Record(
            topic, str(album_id).encode(), value, "malformed", album_id, MALFORMED_ERROR[kind]
        )
    else:
        raise ValueError(f"unknown malformed kind {kind!r}")
    if kind != "invalid_json":
        value = orjson.dumps(album)
    return Record(
        topic, str(album_id).encode(), value, "malformed", album_id, MALFORMED_ERROR[kind]
    )


def generate(cfg: GeneratorConfig, now: datetime | None = None) -> Generated:
    """Records for `cfg.albums` albums, in production order, with their expected outcome."""
    rng = random.Random(cfg.seed)
    now = now or datetime.now(UTC)
    out = Generated()
    groups: list[list[Record]] = []
    for i in range(cfg.albums):
        album_id = cfg.first_album_id + i
        tenant = cfg.tenants[i % len(cfg.tenants)]
        album = make_album(rng, album_id, tenant, now)
        parsed = Record(
            ALBUMS_PARSED, str(album_id).encode(), orjson.dumps(album), "parsed", album_id
        )
        missing = (
            rng.randrange(len(album["items"])) if rng.random() < cfg.missing_vision_share else None
        )
        visions: list[Record] = []
        sent: dict[int, dict[str, Any]] = {}
        for pos, item in enumerate(album["items"]):
            if pos == missing:
                continue
            event = make_vision(rng, album, item, with_album_id=rng.random() < cfg.album_id_share)
            sent[item["post_id"]] = event["vision"]
            visions.append(
                Record(
                    VISION_ANALYZED,
                    str(item["post_id"]).encode(),
                    orjson.dumps(event),
                    "vision",
                    album_id,
                )
            )
        group = [*visions, parsed] if rng.random() < cfg.vision_first_share else [parsed, *visions]
        groups.append(group)
        out.albums[album_id] = ExpectedAlbum(
            album_id=album_id,
            tenant_id=tenant,
            channel_id=album["channel_id"],
            grouped_id=album["grouped_id"],
            items=album["items"],
            vision=sent,
            complete=missing is None,
        )
    records = [r for g in groups for r in g]
    extra_id = cfg.first_album_id + cfg.albums + 1000
    for j in range(round(cfg.malformed_share * cfg.albums)):
        kind = MALFORMED_KINDS[j % len(MALFORMED_KINDS)]
        records.append(make_malformed(rng, kind, extra_id + j, cfg.tenants[0]))
    for j in range(cfg.not_in_album):
        fake = make_album(rng, extra_id + 100000 + j, cfg.tenants[0], now)
        event = make_vision(rng, fake, fake["items"][0], with_album_id=False)
        event["grouped_id"] = None
        records.append(
            Record(
                VISION_ANALYZED, str(event["post_id"]).encode(), orjson.dumps(event), "not_in_album"
            )
        )
    dups = [r for r in records if rng.random() < cfg.duplicate_share]
    records.extend(dups)
    if cfg.shuffle:
        rng.shuffle(records)
    elif dups:
        # without shuffle a duplicate follows its original at a random later place
        records = _interleave(rng, records)
    out.records = records
    return out


def _interleave(rng: random.Random, records: list[Record]) -> list[Record]:
    return sorted(records, key=lambda r: (r.album_id or 0) + rng.random() * 3)


def iter_chunks(records: list[Record], size: int) -> Iterator[list[Record]]:
    for i in range(0, len(records), size):
        yield records[i : i + size]
