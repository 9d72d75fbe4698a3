"""qdrant-client's embedded local mode (on-disk under DATA_DIR): upsert and filtered search."""

from __future__ import annotations

from pathlib import Path

import pytest
from qdrant_client import AsyncQdrantClient, models


async def test_upsert_and_filtered_search_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "qdrant"
    client = AsyncQdrantClient(path=str(path))
    try:
        await client.create_collection(
            "it_posts",
            vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE),
        )
        await client.upsert(
            "it_posts",
            points=[
                models.PointStruct(id=1, vector=[1, 0, 0, 0], payload={"album_id": 42}),
                models.PointStruct(id=2, vector=[0.9, 0.1, 0, 0], payload={"album_id": 43}),
                models.PointStruct(id=3, vector=[0, 1, 0, 0], payload={"album_id": 42}),
            ],
        )
    finally:
        await client.close()

    # reopened from disk: the points are still there
    client = AsyncQdrantClient(path=str(path))
    try:
        hits = await client.query_points(
            "it_posts",
            query=[1, 0, 0, 0],
            query_filter=models.Filter(
                must=[models.FieldCondition(key="album_id", match=models.MatchValue(value=42))]
            ),
            limit=10,
        )
        assert [p.id for p in hits.points] == [1, 3]
        unfiltered = await client.query_points("it_posts", query=[1, 0, 0, 0], limit=2)
        assert [p.id for p in unfiltered.points] == [1, 2]
    finally:
        await client.close()


def _points(n: int, album: int) -> list[models.PointStruct]:
    return [
        models.PointStruct(id=album * 100 + i, vector=[1, i, 0, 0], payload={"album_id": album})
        for i in range(n)
    ]


def test_an_upsert_in_one_transaction_is_on_disk_and_a_failed_one_is_not(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient

    from storage.qdrant import upsert_in_one_transaction

    path = str(tmp_path / "qdrant")
    client = QdrantClient(path=path)
    client.create_collection(
        "it_posts", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE)
    )
    upsert_in_one_transaction(client, "it_posts", points=_points(50, 1), wait=True)
    bad = [*_points(5, 2), models.PointStruct(id=299, vector=[1, 2], payload={})]  # wrong size
    with pytest.raises(ValueError, match="dim"):  # refused mid-batch: nothing of it committed
        upsert_in_one_transaction(client, "it_posts", points=bad, wait=True)
    client.close()
    again = QdrantClient(path=path)
    try:
        stored = {
            p.payload["album_id"] for p in again.scroll("it_posts", limit=1000)[0] if p.payload
        }
        assert again.count("it_posts").count == 50
        assert stored == {1}
    finally:
        again.close()
