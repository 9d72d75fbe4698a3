"""Filtered, tenant-scoped search over album posts in Qdrant, on a few synthetic albums.

    .venv/bin/python docs/examples/qdrant_album_filtering_example.py

Uses an embedded Qdrant in a temporary directory, or the server of QDRANT_URL (and
QDRANT_API_KEY) when set, in the separate collection `example_telegram_posts`.
"""

# ruff: noqa: RUF001  (Russian text is the point of the example)
from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from storage.embeddings import Embedder
from storage.qdrant import QdrantIndex, point_id
from streams.settings import Settings

COLLECTION = "example_telegram_posts"


def item(
    post_id: int,
    position: int,
    description: str,
    labels: list[str],
    meme: bool = False,
    ocr: str = "",
) -> dict[str, Any]:
    """An album item with its vision result."""
    return {
        "post_id": post_id,
        "position": position,
        "media_kind": "photo",
        "vision": {
            "description": description,
            "labels": labels,
            "ocr_text": ocr,
            "is_meme": meme,
            "has_text": bool(ocr),
            "provider": "example",
        },
    }


def album(
    tenant_id: str,
    album_id: int,
    channel_id: int,
    posted_at: str,
    caption: str | None,
    items: list[dict[str, Any]],
    version: int = 1,
) -> dict[str, Any]:
    """An album.assembled event (the fields QdrantIndex reads)."""
    return {
        "schema": "album.assembled/v1",
        "event_id": f"{album_id}:{version}",
        "album_id": album_id,
        "version": version,
        "status": "complete",
        "tenant_id": tenant_id,
        "channel_id": channel_id,
        "grouped_id": album_id * 10,
        "album_kind": "photo",
        "caption_text": caption,
        "posted_at": posted_at,
        "vision_labels": sorted({lab for i in items for lab in i["vision"]["labels"]}),
        "items": items,
    }


A, B = "acme", "globex"
ALBUMS = [
    album(A, 101, -1001, "2025-01-15T09:00:00Z", "Наш кот и его диван", [
        item(1001, 0, "a ginger cat sleeping on a sofa", ["cat", "sofa"]),
        item(1002, 1, "the cat yawning", ["cat"]),
        item(1003, 2, "an empty sofa with a blanket", ["sofa"]),
    ]),
    album(A, 102, -1001, "2025-02-03T18:30:00Z", "Понедельник снова", [
        item(1004, 0, "a tired cat meme", ["cat", "meme"], True, "WHEN IT'S MONDAY AGAIN"),
        item(1005, 1, "a coffee cup meme", ["coffee", "meme"], True, "COFFEE FIRST"),
    ]),
    album(A, 201, -1002, "2025-02-20T12:00:00Z", "Прогулка с собакой в парке", [
        item(2001, 0, "a dog running in a park", ["dog", "park"]),
        item(2002, 1, "a dog with a ball", ["dog", "ball"]),
    ]),
    album(A, 202, -1002, "2025-03-05T08:15:00Z", "Обзор нового смартфона", [
        item(2003, 0, "a smartphone on a desk", ["smartphone"]),
        item(2004, 1, "a photo of the phone's camera", ["smartphone", "camera"], ocr="48 MP"),
    ]),
    # another tenant with the same post ids and cats as well: it must never show up for acme
    album(B, 301, -1003, "2025-01-20T10:00:00Z", "Котик на диване", [
        item(1001, 0, "a grey cat on a sofa", ["cat", "sofa"]),
        item(1002, 1, "a grey cat meme", ["cat", "meme"], True, "NOPE"),
    ]),
]  # fmt: skip


def show(title: str, hits: list[dict[str, Any]]) -> None:
    print(f"\n== {title}: {len(hits)} hit(s)")
    for h in hits:
        p = h["payload"]
        score = f"{h['score']:.3f}" if "score" in h else "  -  "
        print(
            f"  {score} tenant={p['tenant_id']} channel={p['channel_id']} album={p['album_id']} "
            f"post={p['post_id']} pos={p['position']} meme={p['vision']['is_meme']} "
            f"posted_at={p['posted_at']} tags={','.join(p['tags'])}"
        )
        print(f"        {p['text']!r}")


def check(ok: bool, what: str) -> None:
    if not ok:
        print(f"FAILED: {what}", file=sys.stderr)
        raise SystemExit(1)


async def demo(index: QdrantIndex) -> None:
    written = await index.upsert_albums(ALBUMS)
    print(f"upserted {written} posts of {len(ALBUMS)} albums into {index.collection!r}")
    print(f"point ids are per tenant: acme:1001 -> {point_id('acme', 1001)}")
    print(f"                        globex:1001 -> {point_id('globex', 1001)}")

    async def search(title: str, query: str, conditions: Mapping[str, Any] | None = None) -> Any:
        hits = await index.search_text(
            query, tenant_id="acme", limit=10, filter_conditions=conditions
        )
        show(f"{title} — query {query!r}, filter {conditions}", hits)
        check(all(h["payload"]["tenant_id"] == "acme" for h in hits), "another tenant leaked")
        return hits

    hits = await search("within one album (int)", "кот", {"album_id": 101})
    check({h["payload"]["album_id"] for h in hits} == {101}, "album filter")

    hits = await search("within a channel (int)", "животные", {"channel_id": -1002})
    check({h["payload"]["channel_id"] for h in hits} == {-1002}, "channel filter")

    hits = await search("by tags, any of (list)", "pets", {"tags": ["dog", "coffee"]})
    check(all({"dog", "coffee"} & set(h["payload"]["tags"]) for h in hits), "tags filter")

    hits = await search("memes only (bool)", "понедельник", {"vision.is_meme": True})
    check(bool(hits) and all(h["payload"]["vision"]["is_meme"] for h in hits), "meme filter")

    february = {"gte": "2025-02-01T00:00:00Z", "lt": "2025-03-01T00:00:00Z"}
    hits = await search("posted in February 2025 (dict range)", "кот", {"posted_at": february})
    check({h["payload"]["album_id"] for h in hits} == {102, 201}, "date range")

    hits = await search("not the first post (numeric range)", "phone", {"position": {"gte": 1}})
    check(all(h["payload"]["position"] >= 1 for h in hits), "numeric range")

    hits = await search("by media kind (str)", "камера", {"media_kind": "photo", "album_id": 202})
    check(len(hits) == 2, "str filter")

    show("album 101 in order (album_points)", await index.album_points("acme", 101))

    print("\n== tenant isolation")
    acme = await index.search_text("кот на диване", tenant_id="acme", limit=20)
    globex = await index.search_text("кот на диване", tenant_id="globex", limit=20)
    print(f"  acme sees albums {sorted({h['payload']['album_id'] for h in acme})}")
    print(f"  globex sees albums {sorted({h['payload']['album_id'] for h in globex})}")
    check({h["payload"]["tenant_id"] for h in globex} == {"globex"}, "globex isolation")
    try:
        await index.search_text("кот", tenant_id="acme", filter_conditions={"tenant_id": "globex"})
    except ValueError as exc:
        print(f"  acme asking for globex's posts is refused: {exc}")
    else:
        check(False, "a tenant_id filter widened the search")
    counts = {t: await index.count(t) for t in ("acme", "globex")}
    print(f"  points per tenant: {counts}")

    print("\n== highest version wins")
    newer = dict(ALBUMS[0], version=2, event_id="101:2")
    older = dict(ALBUMS[0], version=1)
    print(f"  upsert v2 of album 101: {await index.upsert_albums([newer])} points written")
    print(f"  upsert v1 again after v2: {await index.upsert_albums([older])} points written")
    versions = {p["payload"]["album_version"] for p in await index.album_points("acme", 101)}
    check(versions == {2}, "an older version overwrote a newer one")
    print(f"  stored album_version: {sorted(versions)}")
    print("\nOK")


async def main() -> None:
    settings = Settings.from_env()
    embedder = Embedder()
    if settings.qdrant_url:
        index = QdrantIndex(
            settings.qdrant_url,
            settings.qdrant_api_key.get(),
            embedder=embedder,
            collection=COLLECTION,
        )
        print(f"Qdrant server {settings.qdrant_url}")
        async with index:
            await demo(index)
        return
    with tempfile.TemporaryDirectory(prefix="qdrant-example-") as tmp:
        print(f"embedded Qdrant in {tmp}")
        async with QdrantIndex(path=Path(tmp), embedder=embedder, collection=COLLECTION) as index:
            await demo(index)


if __name__ == "__main__":
    asyncio.run(main())
