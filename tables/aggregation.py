"""Vision aggregation of an album: summary, ranked labels, OCR text, flags and album kind."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from schemas.events import AlbumItem, Vision
from schemas.validation import fit_text

SINGLE_KINDS = frozenset({"photo", "video", "document"})
MAX_SUMMARY_CHARS = 8000
#: the summary and the joined OCR text, as JSON-encoded bytes (schemas/validation.py's limits)
SUMMARY_BUDGET_BYTES = 16 * 1024
MAX_LABELS = 50


def iso(ts: float) -> str:
    """Epoch seconds → ISO 8601 UTC with milliseconds and a `Z`."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def album_kind(items: Iterable[AlbumItem]) -> str:
    """photo|video|document when every item is of that kind, else mixed."""
    kinds = {i.media_kind for i in items}
    if len(kinds) == 1 and (kind := next(iter(kinds))) in SINGLE_KINDS:
        return kind
    return "mixed"


def rank_labels(visions: Sequence[Vision]) -> list[str]:
    """Labels by the number of items showing them, ties by first appearance.

    A label counts once per item; case and surrounding spaces do not make a new label, and the
    first spelling seen is kept.
    """
    counts: dict[str, int] = {}
    first: dict[str, tuple[int, str]] = {}
    order = 0
    for v in visions:
        seen: set[str] = set()
        for label in v.labels:
            norm = label.strip().casefold()
            if not norm or norm in seen:
                continue
            seen.add(norm)
            counts[norm] = counts.get(norm, 0) + 1
            if norm not in first:
                first[norm] = (order, label.strip())
                order += 1
    ranked = sorted(counts, key=lambda n: (-counts[n], first[n][0]))
    return [first[n][1] for n in ranked[:MAX_LABELS]]


def summarize(visions: Sequence[Vision]) -> str:
    """Descriptions in item order, each distinct one once, joined by ' | '."""
    out: list[str] = []
    seen: set[str] = set()
    for v in visions:
        text = " ".join(v.description.split())
        if text and text.casefold() not in seen:
            seen.add(text.casefold())
            out.append(text)
    return fit_text(" | ".join(out)[:MAX_SUMMARY_CHARS], SUMMARY_BUDGET_BYTES)[0]


def join_ocr(visions: Sequence[Vision]) -> str:
    """OCR texts in item order, non-empty ones, one per line."""
    joined = "\n".join(t for v in visions if (t := v.ocr_text.strip()))[:MAX_SUMMARY_CHARS]
    return fit_text(joined, SUMMARY_BUDGET_BYTES)[0]


def has_text(visions: Sequence[Vision]) -> bool:
    return any(v.has_text or v.ocr_text.strip() for v in visions)


def has_meme(visions: Sequence[Vision]) -> bool:
    return any(v.is_meme for v in visions)
