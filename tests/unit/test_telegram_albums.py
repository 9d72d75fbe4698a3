"""Album building over real Telethon types: grouping, order, classification, limits, debounce."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from telethon.extensions import BinaryReader
from telethon.tl import types

from schemas.validation import validate_album_parsed
from storage.telegram.albums import (
    TOO_LARGE,
    AlbumError,
    Grouper,
    StoredMedia,
    album_id_for,
    album_parts,
    build_album,
    content_fingerprint,
    fetch_window,
    media_info,
    post_id_for,
    skip_reason,
    source_fingerprint,
)
from storage.telegram.debounce import Debouncer, safe_cursor
from storage.telegram.samples import (
    document_message,
    photo_message,
    text_message,
    video_message,
)

CHANNEL = -1001234567890
T0 = datetime(2025, 1, 30, 10, 0, tzinfo=UTC)


def album_of(messages: list[types.Message], grouped_id: int = 77) -> dict[str, object]:
    parts = album_parts(messages, grouped_id)
    event = build_album(
        tenant_id="acme",
        channel_id=CHANNEL,
        grouped_id=grouped_id,
        parts=parts,
        media={},
        parsed_at=T0,
    )
    d = event.to_dict()
    d.pop("parsed_at")
    return d


def three_parts(gap: timedelta = timedelta(seconds=0.7)) -> list[types.Message]:
    return [
        photo_message(CHANNEL, 100, date=T0, grouped_id=77, text="Кот на диване"),
        photo_message(CHANNEL, 101, date=T0 + gap, grouped_id=77),
        video_message(CHANNEL, 102, date=T0 + 2 * gap, grouped_id=77),
    ]


def test_every_arrival_order_of_a_three_part_album_gives_the_same_album() -> None:
    parts = three_parts()
    albums = [album_of(list(order)) for order in itertools.permutations(parts)]
    assert all(a == albums[0] for a in albums)
    first = albums[0]
    items = first["items"]
    assert isinstance(items, list)
    assert [i["message_id"] for i in items] == [100, 101, 102]
    assert [i["position"] for i in items] == [0, 1, 2]
    assert [i["media_kind"] for i in items] == ["photo", "photo", "video"]
    assert first["caption_text"] == "Кот на диване"
    assert first["posted_at"] == "2025-01-30T10:00:00Z"
    assert first["album_id"] == album_id_for(CHANNEL, 77)
    # the event passes the pipeline's own validation of albums.parsed
    validate_album_parsed(build_album_dict(parts))


def build_album_dict(parts: list[types.Message]) -> dict[str, object]:
    return build_album(
        tenant_id="acme", channel_id=CHANNEL, grouped_id=77, parts=parts, media={}, parsed_at=T0
    ).to_dict()


@pytest.mark.parametrize("gap", [timedelta(seconds=0.7), timedelta(minutes=10)])
def test_parts_far_apart_in_time_still_make_one_album(gap: timedelta) -> None:
    album = album_of(three_parts(gap))
    assert len(album["items"]) == 3  # type: ignore[arg-type]
    assert album["posted_at"] == "2025-01-30T10:00:00Z"  # the earliest part's date


def test_two_interleaved_albums_in_one_window_are_kept_apart() -> None:
    window = [
        photo_message(CHANNEL, 200, date=T0, grouped_id=1, text="первый"),
        photo_message(CHANNEL, 201, date=T0, grouped_id=2, text="второй"),
        photo_message(CHANNEL, 202, date=T0, grouped_id=1),
        text_message(CHANNEL, 203, date=T0, text="between"),
        photo_message(CHANNEL, 204, date=T0, grouped_id=2),
    ]
    one, two = album_of(window, 1), album_of(window, 2)
    assert [i["message_id"] for i in one["items"]] == [200, 202]  # type: ignore[index]
    assert [i["message_id"] for i in two["items"]] == [201, 204]  # type: ignore[index]
    assert (one["caption_text"], two["caption_text"]) == ("первый", "второй")
    assert [i["position"] for i in two["items"]] == [0, 1]  # type: ignore[index]


def test_a_deleted_id_inside_the_window_is_left_out() -> None:
    a, b, c = three_parts()
    window: list[types.Message | None] = [None, a, None, c, None]
    parts = album_parts(window, 77)
    assert [m.id for m in parts] == [100, 102]
    album = album_of(parts)
    assert [i["position"] for i in album["items"]] == [0, 1]  # type: ignore[index]
    del b


def test_the_caption_may_sit_on_a_later_part() -> None:
    parts = [
        photo_message(CHANNEL, 300, date=T0, grouped_id=9),
        photo_message(CHANNEL, 301, date=T0, grouped_id=9, text="  "),
        photo_message(CHANNEL, 302, date=T0, grouped_id=9, text="подпись"),
    ]
    # the first non-empty text in position order wins (whitespace alone is empty)
    assert album_of(parts, 9)["caption_text"] == "подпись"
    assert album_of([parts[0]], 9)["caption_text"] is None


def test_photo_video_and_document_are_classified() -> None:
    photo = photo_message(CHANNEL, 1, date=T0, size=1234)
    video = video_message(CHANNEL, 2, date=T0, size=5000)
    doc = document_message(CHANNEL, 3, date=T0, mime_type="application/pdf", file_name="a.pdf")
    video_by_type = document_message(CHANNEL, 4, date=T0, mime_type="video/webm", file_name="v")
    text = text_message(CHANNEL, 5, date=T0, text="hi")
    infos = [media_info(m) for m in (photo, video, doc, video_by_type)]
    assert [i.kind for i in infos if i] == ["photo", "video", "document", "video"]
    assert [i.size for i in infos[:2] if i] == [1234, 5000]
    assert media_info(text) is None


def test_media_over_the_limit_is_not_downloaded_and_the_item_is_kept() -> None:
    big = video_message(CHANNEL, 400, date=T0, grouped_id=5, size=60_000_000)
    small = photo_message(CHANNEL, 401, date=T0, grouped_id=5, size=1000)
    assert skip_reason(media_info(big), 52_428_800) == TOO_LARGE
    assert skip_reason(media_info(small), 52_428_800) is None
    album = build_album(
        tenant_id="acme",
        channel_id=CHANNEL,
        grouped_id=5,
        parts=[big, small],
        media={
            400: StoredMedia(skipped=TOO_LARGE, size_bytes=60_000_000),
            401: StoredMedia(sha256="ab" * 32, size_bytes=1000),
        },
        parsed_at=T0,
    )
    first, second = album.items
    assert (first.sha256, first.media_object_id, first.media_kind) == (None, None, "video")
    assert second.sha256 == "ab" * 32
    assert second.media_object_id is not None
    assert album.cover_media_id == second.media_object_id


def test_more_than_ten_parts_is_an_error() -> None:
    parts = [photo_message(CHANNEL, 500 + i, date=T0, grouped_id=3) for i in range(11)]
    with pytest.raises(AlbumError, match="at most 10"):
        album_parts(parts, 3)


def test_ids_are_stable_and_positive() -> None:
    assert album_id_for(CHANNEL, 77) == album_id_for(CHANNEL, 77)
    assert album_id_for(CHANNEL, 77) != album_id_for(CHANNEL, 78)
    assert post_id_for(CHANNEL, 100) != post_id_for(CHANNEL - 1, 100)
    assert 0 < post_id_for(CHANNEL, 100) < 2**63


def test_fingerprints_see_edits_and_ignore_event_ids() -> None:
    parts = three_parts()
    edited = photo_message(
        CHANNEL, 100, date=T0, grouped_id=77, text="Кот ушёл", edit_date=T0 + timedelta(hours=1)
    )
    assert source_fingerprint(parts) == source_fingerprint(list(parts))
    assert source_fingerprint(parts) != source_fingerprint([edited, *parts[1:]])
    a = build_album(
        tenant_id="acme", channel_id=CHANNEL, grouped_id=77, parts=parts, media={}, parsed_at=T0
    )
    b = build_album(
        tenant_id="acme",
        channel_id=CHANNEL,
        grouped_id=77,
        parts=parts,
        media={},
        parsed_at=T0 + timedelta(days=1),
    )
    assert content_fingerprint(a) == content_fingerprint(b)
    assert a.event_id == b.event_id


def test_fetch_window_covers_nine_ids_around_the_known_parts() -> None:
    assert fetch_window([100]) == list(range(91, 110))
    assert fetch_window([105, 100]) == list(range(91, 115))
    assert fetch_window([3]) == list(range(1, 13))
    assert len(fetch_window([1, 10_000])) == 100


def test_grouper_keeps_an_album_whole_across_a_page_boundary_and_interleaving() -> None:
    messages = [text_message(CHANNEL, i, date=T0, text=f"m{i}") for i in range(95, 99)]
    messages += [photo_message(CHANNEL, i, date=T0, grouped_id=42) for i in range(99, 103)]
    messages += [photo_message(CHANNEL, 103, date=T0, grouped_id=43)]
    messages += [photo_message(CHANNEL, 104, date=T0, grouped_id=42)]  # interleaved
    messages += [text_message(CHANNEL, i, date=T0, text=f"m{i}") for i in range(105, 130)]
    g = Grouper()
    out: list[tuple[int | None, list[int]]] = []
    cursors = []
    for m in messages:
        out += [(gid, [p.id for p in parts]) for gid, parts in g.add(m)]
        cursors.append(g.safe_cursor())
    out += [(gid, [p.id for p in parts]) for gid, parts in g.finish()]
    albums = sorted((gid, ids) for gid, ids in out if gid is not None)
    assert albums == [(42, [99, 100, 101, 102, 104]), (43, [103])]
    singles = [ids[0] for gid, ids in out if gid is None]
    assert singles == [*range(95, 99), *range(105, 130)]
    # the cursor never passes an open album, and never goes back
    assert cursors == sorted(cursors)
    assert max(c for c, m in zip(cursors, messages, strict=True) if m.id <= 110) == 98


def test_debouncer_waits_for_quiet_per_album() -> None:
    d = Debouncer(3.0)
    d.touch((CHANNEL, 1), {100}, now=0.0)
    d.touch((CHANNEL, 1), {101}, now=0.7)
    d.touch((CHANNEL, 2), {200}, now=1.0)
    assert d.pop_due(3.5) == []
    assert d.pop_due(3.7) == [((CHANNEL, 1), {100, 101})]
    assert d.pending_ids(CHANNEL) == {200}
    assert safe_cursor(250, d.pending_ids(CHANNEL)) == 199
    assert d.pop_all() == [((CHANNEL, 2), {200})]
    assert safe_cursor(250, set()) == 250


def test_built_messages_round_trip_through_tl_bytes() -> None:
    for m in three_parts():
        again = BinaryReader(bytes(m)).tgread_object()
        assert bytes(again) == bytes(m)
        assert (again.id, again.grouped_id, again.message) == (m.id, m.grouped_id, m.message)
        assert media_info(again) == media_info(m)
        # TL dates are whole seconds
        assert again.date == m.date.replace(microsecond=0)
