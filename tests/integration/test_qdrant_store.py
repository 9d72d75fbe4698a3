"""storage.qdrant.QdrantIndex on embedded Qdrant: upserts, versions, filters, tenant isolation."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import uuid
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from httpx import Headers
from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

from storage.embeddings import Embedder, post_text
from storage.qdrant import COLLECTION, QdrantError, QdrantIndex, build_filter, point_id
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "qdrant_album_filtering_example.py"


def vision(description: str, labels: list[str], *, meme: bool = False, ocr: str = "") -> Any:
    return {
        "description": description,
        "labels": labels,
        "ocr_text": ocr,
        "is_meme": meme,
        "has_text": bool(ocr),
        "provider": "test",
        "model": "test",
    }


def album(
    tenant: str,
    album_id: int,
    channel_id: int,
    posted_at: str,
    items: list[tuple[int, int, str, dict[str, Any]]],
    *,
    version: int = 1,
    caption: str | None = None,
) -> dict[str, Any]:
    return {
        "schema": "album.assembled/v1",
        "event_id": f"{album_id}:{version}",
        "album_id": album_id,
        "version": version,
        "status": "complete",
        "tenant_id": tenant,
        "channel_id": channel_id,
        "grouped_id": album_id + 5000,
        "album_kind": "photo",
        "caption_text": caption,
        "posted_at": posted_at,
        "vision_labels": [],
        "items": [
            {"post_id": pid, "position": pos, "media_kind": kind, "vision": v}
            for pid, pos, kind, v in items
        ],
    }


A, B = "tenant-a", "tenant_b"
ALBUMS = [
    album(A, 11, 100, "2025-01-10T10:00:00Z", [
        (1, 0, "photo", vision("a cat on a sofa", ["cat", "sofa"])),
        (2, 1, "photo", vision("a cat yawning", ["cat"])),
        (3, 2, "photo", vision("", [])),
    ], caption="Кот"),
    album(A, 12, 100, "2025-02-10T10:00:00Z", [
        (4, 0, "photo", vision("monday meme", ["meme"], meme=True, ocr="MONDAY")),
        (5, 1, "photo", vision("coffee meme", ["coffee", "meme"], meme=True)),
    ]),
    album(A, 13, 200, "2025-03-10T10:00:00Z", [
        (6, 0, "photo", vision("a dog in a park", ["dog", "park"])),
        (7, 1, "video", {}),
    ], caption="Собака гуляет"),
    # same channel id and the same post ids as tenant A's, and a matching meme cat
    album(B, 21, 100, "2025-02-10T10:00:00Z", [
        (1, 0, "photo", vision("a cat on a sofa", ["cat", "sofa"], meme=True)),
        (2, 1, "photo", vision("monday meme", ["meme"], meme=True, ocr="MONDAY")),
    ], caption="Кот"),
]  # fmt: skip


def posts_of(tenant: str, pred: Callable[[dict[str, Any], dict[str, Any]], bool]) -> set[int]:
    return {
        it["post_id"]
        for a in ALBUMS
        if a["tenant_id"] == tenant
        for it in a["items"]
        if pred(a, it)
    }


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    e = Embedder()
    e.load()
    return e


@pytest.fixture
async def index(tmp_path: Path, embedder: Embedder) -> AsyncIterator[QdrantIndex]:
    async with QdrantIndex(path=tmp_path / "qdrant", embedder=embedder) as idx:
        yield idx


@pytest.fixture
async def filled(index: QdrantIndex) -> QdrantIndex:
    assert await index.upsert_albums(ALBUMS) == 9
    return index


def test_point_ids_are_deterministic_uuids_per_tenant() -> None:
    first = point_id("acme", 1001)
    assert first == point_id("acme", 1001)
    assert uuid.UUID(first).version == 5
    assert first != point_id("acme", 1002)
    assert first != point_id("other", 1001)
    with pytest.raises(ValueError, match="tenant_id"):
        point_id("bad tenant", 1)
    with pytest.raises(ValueError, match="post_id"):
        point_id("acme", True)


async def test_start_creates_the_collection_with_the_embedder_size(
    index: QdrantIndex, embedder: Embedder
) -> None:
    assert index.collection == COLLECTION
    assert index.embedded
    assert await index.count() == 0
    info = await index._live.get_collection(COLLECTION)
    assert info.config.params.vectors.size == embedder.dim  # type: ignore[union-attr]


async def test_upsert_then_album_points_in_position_order(filled: QdrantIndex) -> None:
    points = await filled.album_points(A, 11)
    assert [p["payload"]["post_id"] for p in points] == [1, 2, 3]
    assert [p["id"] for p in points] == [point_id(A, pid) for pid in (1, 2, 3)]
    first = points[0]["payload"]
    assert first == {
        "album_id": 11,
        "channel_id": 100,
        "tenant_id": A,
        "post_id": 1,
        "grouped_id": 5011,
        "position": 0,
        "media_kind": "photo",
        "tags": ["cat", "sofa"],
        "vision": {"is_meme": False, "has_text": False, "description": "a cat on a sofa"},
        "posted_at": "2025-01-10T10:00:00Z",
        "album_version": 1,
        "text": "Кот\na cat on a sofa",
    }
    # no vision labels → no tags; no caption and no vision → empty text, still indexed
    assert points[2]["payload"]["tags"] == []
    [video] = [p for p in await filled.album_points(A, 13) if p["payload"]["post_id"] == 7]
    assert video["payload"]["text"] == "Собака гуляет"
    assert video["payload"]["vision"] == {"is_meme": False, "has_text": False, "description": ""}
    assert await filled.album_points(B, 11) == []
    assert await filled.count() == 9
    assert await filled.count(A) == 7
    assert await filled.count(B) == 2


async def test_album_filter_returns_exactly_that_album(filled: QdrantIndex) -> None:
    hits = await filled.search_text(
        "кот", tenant_id=A, limit=50, filter_conditions={"album_id": 11}
    )
    assert sorted(h["payload"]["post_id"] for h in hits) == [1, 2, 3]
    assert all(isinstance(h["score"], float) for h in hits)
    assert hits == sorted(hits, key=lambda h: -h["score"])
    # best hit is the post whose text is closest to the query
    hits = await filled.search_text("a cat on a sofa", tenant_id=A, limit=1)
    assert hits[0]["id"] == point_id(A, 1)


FILTERS: list[tuple[str, dict[str, Any], Callable[[dict[str, Any], dict[str, Any]], bool]]] = [
    ("int", {"channel_id": 200}, lambda a, it: a["channel_id"] == 200),
    ("int-album", {"album_id": 12}, lambda a, it: a["album_id"] == 12),
    ("str", {"media_kind": "video"}, lambda a, it: it["media_kind"] == "video"),
    (
        "list",
        {"tags": ["dog", "coffee"]},
        lambda a, it: bool({"dog", "coffee"} & set(it["vision"].get("labels", []))),
    ),
    ("bool-true", {"vision.is_meme": True}, lambda a, it: it["vision"].get("is_meme") is True),
    ("bool-false", {"vision.is_meme": False}, lambda a, it: not it["vision"].get("is_meme")),
    ("range-int", {"position": {"gte": 1, "lt": 2}}, lambda a, it: it["position"] == 1),
    (
        "range-datetime",
        {"posted_at": {"gt": "2025-02-01T00:00:00Z", "lte": "2025-03-10T10:00:00Z"}},
        lambda a, it: "2025-02-01T00:00:00Z" < a["posted_at"] <= "2025-03-10T10:00:00Z",
    ),
    (
        "combined",
        {"channel_id": 100, "tags": ["cat"], "position": {"gt": 0}},
        lambda a, it: a["channel_id"] == 100 and "cat" in it["vision"]["labels"] and it["position"],
    ),
    ("same-tenant-key", {"tenant_id": A}, lambda a, it: True),
]


@pytest.mark.parametrize(("conditions", "expected"), [(c, p) for _, c, p in FILTERS], ids=[
    n for n, _, _ in FILTERS
])  # fmt: skip
async def test_each_filter_type(
    filled: QdrantIndex,
    embedder: Embedder,
    conditions: dict[str, Any],
    expected: Callable[[dict[str, Any], dict[str, Any]], bool],
) -> None:
    [vector] = embedder.embed(["кот"])
    for tenant in (A, B):
        if conditions.get("tenant_id", tenant) != tenant:
            continue
        hits = await filled.search_vectors(
            COLLECTION, vector, limit=100, filter_conditions=conditions, tenant_id=tenant
        )
        assert {h["payload"]["post_id"] for h in hits} == posts_of(tenant, expected)
        assert {h["payload"]["tenant_id"] for h in hits} <= {tenant}


@pytest.mark.parametrize(
    "conditions",
    [
        None,
        {},
        {"channel_id": 100},
        {"album_id": 21},
        {"tags": ["cat", "meme"]},
        {"vision.is_meme": True},
        {"posted_at": {"gte": "2025-02-01T00:00:00Z"}},
    ],
)
async def test_tenant_a_never_sees_tenant_b(
    filled: QdrantIndex, conditions: dict[str, Any] | None
) -> None:
    for query in ("кот на диване", "monday meme", ""):
        hits = await filled.search_text(query, tenant_id=A, limit=100, filter_conditions=conditions)
        assert all(h["payload"]["tenant_id"] == A for h in hits)
        assert not {h["id"] for h in hits} & {point_id(B, 1), point_id(B, 2)}
    assert await filled.search_text("кот", tenant_id=A, filter_conditions={"album_id": 21}) == []


async def test_a_tenant_id_filter_cannot_widen_the_scope(
    filled: QdrantIndex, embedder: Embedder
) -> None:
    [vector] = embedder.embed(["кот"])
    for widen in ({"tenant_id": B}, {"tenant_id": [A, B]}, {"tenant_id": ""}):
        with pytest.raises(ValueError, match="tenant"):
            await filled.search_vectors(COLLECTION, vector, filter_conditions=widen, tenant_id=A)
    for tenant in (None, "", "a b", "x" * 65, "../etc", "a*"):
        with pytest.raises(ValueError, match="tenant_id"):
            await filled.search_vectors(COLLECTION, vector, tenant_id=tenant)
    with pytest.raises(ValueError, match="tenant_id"):
        await filled.search_text("кот", tenant_id="")
    with pytest.raises(ValueError, match="tenant_id"):
        await filled.count("not a tenant")


@pytest.mark.parametrize(
    "conditions",
    [
        {"score": 0.5},
        {"tags": []},
        {"tags": ["cat", 1]},
        {"tags": [True]},
        {"position": {"between": 1}},
        {"position": {}},
        {"posted_at": {"gte": "yesterday"}},
        {"posted_at": {"gte": "2025-01-01", "lt": 5}},
        {"album_id": None},
        {"": 1},
    ],
)
def test_unsupported_filters_are_refused(conditions: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="filter"):
        build_filter(A, conditions)


async def test_reupserting_the_same_batch_changes_nothing(filled: QdrantIndex) -> None:
    before = {a: await filled.album_points(t, a) for t, a in ((A, 11), (A, 12), (A, 13), (B, 21))}
    # the same version again: every point holds it already (schemas.events.supersedes)
    assert await filled.upsert_albums(ALBUMS) == 0
    after = {a: await filled.album_points(t, a) for t, a in ((A, 11), (A, 12), (A, 13), (B, 21))}
    assert after == before
    assert await filled.count() == 9


async def test_an_older_version_after_a_newer_one_changes_nothing(index: QdrantIndex) -> None:
    v1 = ALBUMS[0]
    v2 = dict(v1, version=2, event_id="11:2", caption_text="Кот, версия 2")
    assert await index.upsert_albums([v2]) == 3
    newest = await index.album_points(A, 11)
    assert {p["payload"]["album_version"] for p in newest} == {2}
    assert await index.upsert_albums([v1]) == 0
    assert await index.album_points(A, 11) == newest
    # several versions in one batch: the highest wins whatever the order
    v3 = dict(v1, version=3, event_id="11:3", caption_text="Кот, версия 3")
    assert await index.upsert_albums([v3, v1, v2]) == 3
    points = await index.album_points(A, 11)
    assert {p["payload"]["album_version"] for p in points} == {3}
    assert points[0]["payload"]["text"] == post_text("Кот, версия 3", v1["items"][0]["vision"])
    assert await index.upsert_albums([]) == 0
    assert await index.count() == 3


async def test_the_embedded_store_survives_reopen(tmp_path: Path, embedder: Embedder) -> None:
    path = tmp_path / "qdrant"
    async with QdrantIndex(path=path, embedder=embedder) as idx:
        assert await idx.upsert_albums(ALBUMS) == 9
        expected = await idx.album_points(A, 12)
    async with QdrantIndex(path=path, embedder=embedder) as idx:  # start() on an existing one
        assert await idx.count() == 9
        assert await idx.album_points(A, 12) == expected
        hits = await idx.search_text("monday meme", tenant_id=A, limit=1)
        assert hits[0]["id"] == point_id(A, 4)


async def test_an_embedded_path_open_elsewhere_is_a_clear_error(
    index: QdrantIndex, embedder: Embedder
) -> None:
    assert index.path is not None
    other = QdrantIndex(path=index.path, embedder=embedder)
    with warnings.catch_warnings():
        # qdrant-client leaves the lock file of the refused instance open; collect it here
        warnings.simplefilter("ignore", ResourceWarning)
        with pytest.raises(QdrantError, match="already accessed") as exc_info:
            await other.start()
        retriable = exc_info.value.retriable
        del exc_info
        gc.collect()
    assert not retriable
    with pytest.raises(QdrantError, match="before start"):
        await other.count()


async def test_server_mode_builds_a_remote_client_with_url_and_api_key(
    embedder: Embedder,
) -> None:
    idx = QdrantIndex("https://qdrant.example.test:6333", "s3cret", embedder=embedder, timeout=3)
    assert not idx.embedded
    client = idx._build_client()
    try:
        remote: Any = client._client
        assert type(remote).__name__ == "AsyncQdrantRemote"
        assert remote.rest_uri == "https://qdrant.example.test:6333"
        assert remote._rest_headers["api-key"] == "s3cret"
    finally:
        await client.close()
    with pytest.raises(ValueError, match="url or an embedded path"):
        QdrantIndex(embedder=embedder)


async def test_an_unreachable_server_is_a_retriable_error(embedder: Embedder) -> None:
    idx = QdrantIndex(f"http://127.0.0.1:{free_port()}", embedder=embedder, timeout=2)
    with pytest.raises(QdrantError, match="collection_exists") as exc_info:
        await idx.start()
    assert exc_info.value.retriable
    assert isinstance(exc_info.value.__cause__, Exception)


@pytest.mark.parametrize(
    ("status", "retriable"), [(500, True), (503, True), (429, True), (400, False), (404, False)]
)
def test_http_errors_are_retriable_only_when_temporary(
    embedder: Embedder, status: int, retriable: bool
) -> None:
    idx = QdrantIndex("http://qdrant:6333", embedder=embedder)
    err = idx._wrap("upsert", UnexpectedResponse(status, "reason", b"{}", Headers()))
    assert isinstance(err, QdrantError)
    assert err.retriable is retriable
    assert idx._wrap("upsert", ValueError("Collection x not found")).retriable is False


def test_the_example_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QDRANT_")}
    env["DATA_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, str(EXAMPLE.relative_to(ROOT))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "embedded Qdrant in" in out
    assert "== within one album (int)" in out
    assert "== memes only (bool)" in out
    assert "== posted in February 2025 (dict range)" in out
    assert "globex sees albums [301]" in out
    assert "upsert v1 again after v2: 0 points written" in out
    assert out.rstrip().endswith("OK")


async def test_a_point_missing_from_a_stored_version_is_written_again(filled: QdrantIndex) -> None:
    # a process killed in the middle of an upsert: some points of the version are missing
    client = filled._live
    album = ALBUMS[0]
    first = point_id(A, int(album["items"][0]["post_id"]))
    await client.delete(filled.collection, points_selector=models.PointIdsList(points=[first]))
    assert len(await filled.album_points(A, 11)) == len(album["items"]) - 1
    assert await filled.upsert_albums([album]) == 1  # only the missing one
    assert len(await filled.album_points(A, 11)) == len(album["items"])
