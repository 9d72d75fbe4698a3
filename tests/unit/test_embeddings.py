"""storage.embeddings with the real USE multilingual model: offline load, vectors, post_text."""

# ruff: noqa: RUF001  (Russian text is what is tested)
from __future__ import annotations

import asyncio
import math
import socket
import threading

import pytest

from storage.embeddings import Embedder, post_text


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    e = Embedder()
    e.load()
    return e


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_loading_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access while loading the model: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    fresh = Embedder()
    assert not fresh.loaded
    fresh.load()
    assert fresh.loaded
    assert len(fresh.embed(["Кот на диване"])[0]) == 512


def test_dim_and_unit_length(embedder: Embedder) -> None:
    assert embedder.dim == 512
    vectors = embedder.embed(["A cat on a sofa", "Кот на диване", "x" * 5000])
    assert len(vectors) == 3
    for v in vectors:
        assert len(v) == embedder.dim
        assert all(isinstance(x, float) for x in v)
        assert math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, abs_tol=1e-5)


def test_empty_text_and_empty_batch(embedder: Embedder) -> None:
    [v] = embedder.embed([""])
    assert len(v) == 512
    assert math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, abs_tol=1e-5)
    assert embedder.embed([]) == []


def test_a_single_str_is_refused(embedder: Embedder) -> None:
    with pytest.raises(TypeError):
        embedder.embed("not a list")


def test_deterministic(embedder: Embedder) -> None:
    assert embedder.embed(["Кот на диване"]) == embedder.embed(["Кот на диване"])


@pytest.mark.parametrize(
    ("ru", "en", "unrelated"),
    [
        ("Кот спит на диване", "A cat is sleeping on the sofa", "Курс доллара вырос на бирже"),
        (
            "Новый смартфон получил улучшенную камеру",
            "The new smartphone got an improved camera",
            "Рецепт борща со сметаной",
        ),
        ("Смешной мем про понедельник", "A funny meme about Monday", "Quarterly tax report"),
    ],
)
def test_cross_lingual_paraphrase_beats_unrelated(
    embedder: Embedder, ru: str, en: str, unrelated: str
) -> None:
    a, b, c = embedder.embed([ru, en, unrelated])
    assert cosine(a, b) > 0.6
    assert cosine(a, b) > cosine(a, c) + 0.3
    assert cosine(a, b) > cosine(b, c) + 0.3


async def test_aembed_runs_off_the_event_loop(embedder: Embedder) -> None:
    texts = [f"Пост номер {i}: кот на диване, a cat on a sofa" for i in range(400)]
    loop_thread = threading.get_ident()
    seen: list[int] = []
    original = embedder.embed

    def spy(batch: list[str]) -> list[list[float]]:
        seen.append(threading.get_ident())
        return original(batch)

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    embedder.embed = spy  # type: ignore[method-assign]
    task = asyncio.create_task(ticker())
    try:
        vectors = await embedder.aembed(texts)
    finally:
        task.cancel()
        del embedder.embed
    assert seen
    assert seen[0] != loop_thread
    assert ticks > 5  # the loop kept running while the batch was embedded
    assert vectors == embedder.embed(texts)


def test_post_text_joins_non_empty_parts() -> None:
    vision = {"description": "a cat on a sofa", "ocr_text": "MONDAY", "labels": ["cat"]}
    assert post_text("Кот", vision) == "Кот\na cat on a sofa\nMONDAY"
    assert post_text(None, vision) == "a cat on a sofa\nMONDAY"
    assert post_text("  ", {"description": "", "ocr_text": "  txt "}) == "txt"
    assert post_text("caption", None) == "caption"
    assert post_text(None, {}) == ""
    assert post_text("", {"description": None, "ocr_text": None}) == ""


def test_a_text_seen_before_is_not_embedded_again() -> None:
    e = Embedder(cache_size=2)
    first = e.embed(["Кот на диване", "a red car", "Кот на диване"])
    assert (e.computed, e.cache_hits) == (2, 1)
    assert first[0] == first[2]
    again = e.embed(["a red car", "Кот на диване"])
    assert (e.computed, e.cache_hits) == (2, 3)
    assert again == [first[1], first[0]]
    e.embed(["горы и озеро"])  # a third text: the least recently used one leaves the cache
    e.embed(["a red car"])
    assert e.computed == 4
    uncached = Embedder(cache_size=0)
    # (a vector computed alone differs from one of a batch in the last float digits)
    assert cosine(uncached.embed(["Кот на диване"])[0], first[0]) > 0.9999
    assert cosine(uncached.embed(["Кот на диване"])[0], first[0]) > 0.9999
    assert (uncached.computed, uncached.cache_hits) == (2, 0)
