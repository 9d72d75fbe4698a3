"""tables.aggregation: album kind, ranked labels, summary, OCR text, flags, timestamps."""

from __future__ import annotations

import pytest

from schemas.events import AlbumItem, Vision
from tables.aggregation import (
    MAX_LABELS,
    MAX_SUMMARY_CHARS,
    album_kind,
    has_meme,
    has_text,
    iso,
    join_ocr,
    rank_labels,
    summarize,
)


def items(*kinds: str) -> list[AlbumItem]:
    return [AlbumItem(post_id=100 + i, position=i, media_kind=k) for i, k in enumerate(kinds)]


def v(*labels: str, description: str = "", ocr: str = "", meme: bool = False) -> Vision:
    return Vision(description=description, labels=labels, ocr_text=ocr, is_meme=meme)


# -- album_kind --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kinds", "expected"),
    [
        (("photo",), "photo"),
        (("photo", "photo", "photo"), "photo"),
        (("video", "video"), "video"),
        (("document",), "document"),
        (("document", "document"), "document"),
        (("photo", "video"), "mixed"),
        (("video", "photo", "photo"), "mixed"),
        (("photo", "document"), "mixed"),
        (("audio",), "mixed"),
        (("audio", "audio"), "mixed"),
        (("Photo",), "mixed"),
    ],
)
def test_album_kind(kinds: tuple[str, ...], expected: str) -> None:
    assert album_kind(items(*kinds)) == expected


def test_album_kind_accepts_any_iterable() -> None:
    assert album_kind(iter(items("video", "video"))) == "video"


# -- rank_labels -------------------------------------------------------------------------------


def test_labels_ranked_by_frequency() -> None:
    visions = [v("sofa"), v("cat", "sofa"), v("cat", "dog"), v("cat")]
    assert rank_labels(visions) == ["cat", "sofa", "dog"]


def test_ties_keep_first_appearance() -> None:
    visions = [v("b", "a"), v("c", "a"), v("c", "b")]
    # every label appears twice: order of first appearance b, a, c
    assert rank_labels(visions) == ["b", "a", "c"]


def test_first_appearance_counts_across_items_in_order() -> None:
    visions = [v("zebra"), v("apple"), v("mango")]
    assert rank_labels(visions) == ["zebra", "apple", "mango"]


def test_case_insensitive_dedupe_keeps_first_spelling() -> None:
    visions = [v("Cat"), v("cat", "dog"), v("CAT", "Dog")]
    assert rank_labels(visions) == ["Cat", "dog"]


def test_surrounding_spaces_do_not_make_a_new_label() -> None:
    visions = [v(" cat "), v("cat")]
    assert rank_labels(visions) == ["cat"]


def test_unicode_case_folding() -> None:
    visions = [v("Кот"), v("кот"), v("Straße"), v("STRASSE"), v("strasse")]
    assert rank_labels(visions) == ["Straße", "Кот"]


def test_a_label_counts_once_per_item() -> None:
    # "cat" three times in one item must not beat "dog" shown by two items
    visions = [v("cat", "cat", "Cat"), v("dog"), v("dog")]
    assert rank_labels(visions) == ["dog", "cat"]


def test_blank_labels_are_ignored() -> None:
    assert rank_labels([v("", "  ", "cat")]) == ["cat"]


def test_no_labels() -> None:
    assert rank_labels([]) == []
    assert rank_labels([v(), v()]) == []


def test_labels_are_capped() -> None:
    visions = [v(*(f"label{i}" for i in range(MAX_LABELS + 20)))]
    ranked = rank_labels(visions)
    assert len(ranked) == MAX_LABELS
    assert ranked[0] == "label0"
    assert ranked[-1] == f"label{MAX_LABELS - 1}"


def test_the_cap_keeps_the_most_frequent() -> None:
    rare = v(*(f"rare{i}" for i in range(MAX_LABELS)))
    visions = [rare, v("common"), v("common")]
    ranked = rank_labels(visions)
    assert ranked[0] == "common"
    assert f"rare{MAX_LABELS - 1}" not in ranked


# -- summarize ---------------------------------------------------------------------------------


def test_summary_in_item_order_joined() -> None:
    visions = [v(description="a cat"), v(description="a sofa"), v(description="a dog")]
    assert summarize(visions) == "a cat | a sofa | a dog"


def test_summary_deduplicates_case_insensitively_keeping_the_first() -> None:
    visions = [v(description="A cat"), v(description="a cat"), v(description="a dog")]
    assert summarize(visions) == "A cat | a dog"


def test_summary_normalizes_whitespace_and_skips_empty() -> None:
    visions = [v(description="  a   cat\n on a sofa "), v(description=""), v(description="   ")]
    assert summarize(visions) == "a cat on a sofa"


def test_summary_empty() -> None:
    assert summarize([]) == ""
    assert summarize([v()]) == ""


def test_summary_is_capped() -> None:
    visions = [v(description=f"{i}" + "x" * 1000) for i in range(20)]
    out = summarize(visions)
    assert len(out) == MAX_SUMMARY_CHARS
    assert out.startswith("0" + "x" * 1000 + " | 1x")


# -- join_ocr ----------------------------------------------------------------------------------


def test_ocr_in_item_order_one_per_line() -> None:
    visions = [v(ocr="SALE -50%"), v(ocr=""), v(ocr="  Привет, мир \n"), v(ocr="   ")]
    assert join_ocr(visions) == "SALE -50%\nПривет, мир"  # noqa: RUF001


def test_ocr_keeps_repeated_texts() -> None:
    assert join_ocr([v(ocr="x"), v(ocr="x")]) == "x\nx"


def test_ocr_empty() -> None:
    assert join_ocr([]) == ""
    assert join_ocr([v(), v(ocr=" ")]) == ""


def test_ocr_is_capped() -> None:
    assert len(join_ocr([v(ocr="y" * 5000), v(ocr="z" * 5000)])) == MAX_SUMMARY_CHARS


# -- flags -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("visions", "expected"),
    [
        ([], False),
        ([Vision()], False),
        ([Vision(ocr_text="   ")], False),
        ([Vision(), Vision(has_text=True)], True),
        ([Vision(ocr_text="hello")], True),
        ([Vision(), Vision(ocr_text=" x ")], True),
    ],
)
def test_has_text(visions: list[Vision], expected: bool) -> None:
    assert has_text(visions) is expected


@pytest.mark.parametrize(
    ("visions", "expected"),
    [
        ([], False),
        ([Vision(), Vision()], False),
        ([Vision(), Vision(is_meme=True)], True),
        ([Vision(is_meme=True)], True),
        # a label "meme" alone does not make a meme; the vision service's flag does
        ([Vision(labels=("meme",))], False),
    ],
)
def test_has_meme(visions: list[Vision], expected: bool) -> None:
    assert has_meme(visions) is expected


# -- iso ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1738231200, "2025-01-30T10:00:00.000Z"),
        (1738231200.5, "2025-01-30T10:00:00.500Z"),
        (1738231206.2, "2025-01-30T10:00:06.200Z"),
        (1738231200.0009, "2025-01-30T10:00:00.000Z"),
    ],
)
def test_iso(ts: float, expected: str) -> None:
    assert iso(ts) == expected
