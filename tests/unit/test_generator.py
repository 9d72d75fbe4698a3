"""streams.generator: seeded synthetic albums, vision events, garbage and their expectations."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

import orjson
import pytest

from schemas.events import AlbumAssembled, AlbumParsed, VisionAnalyzed
from schemas.validation import InvalidEvent, decode_album_parsed, decode_vision_analyzed
from streams.generator import (
    ALBUMS_PARSED,
    MALFORMED_ERROR,
    MALFORMED_KINDS,
    VISION_ANALYZED,
    Generated,
    GeneratorConfig,
    Record,
    generate,
    iter_chunks,
    post_id_of,
)
from tables import album_state, post_index

NOW = datetime(2025, 1, 30, 10, 0, tzinfo=UTC)


def gen(**kw: object) -> Generated:
    return generate(GeneratorConfig(**kw), now=NOW)  # type: ignore[arg-type]


def decode(r: Record) -> AlbumParsed | VisionAnalyzed:
    if r.topic == ALBUMS_PARSED:
        return decode_album_parsed(r.value)
    assert r.topic == VISION_ANALYZED
    return decode_vision_analyzed(r.value)


def distinct(records: list[Record]) -> list[Record]:
    seen: set[tuple[str, bytes | None, bytes]] = set()
    out = []
    for r in records:
        if (r.topic, r.key, r.value) not in seen:
            seen.add((r.topic, r.key, r.value))
            out.append(r)
    return out


# -- determinism and shape ---------------------------------------------------------------------


def test_same_seed_same_records() -> None:
    cfg = {
        "albums": 30,
        "seed": 7,
        "duplicate_share": 0.2,
        "malformed_share": 0.3,
        "missing_vision_share": 0.2,
        "not_in_album": 3,
    }
    a, b = gen(**cfg), gen(**cfg)
    assert a.records == b.records
    assert a.albums == b.albums


def test_other_seed_other_records() -> None:
    assert gen(albums=10, seed=1).records != gen(albums=10, seed=2).records


def test_album_ids_are_consecutive() -> None:
    g = gen(albums=25, first_album_id=500)
    assert sorted(g.albums) == list(range(500, 525))
    parsed = [decode_album_parsed(r.value) for r in g.records if r.kind == "parsed"]
    assert sorted(a.album_id for a in parsed) == list(range(500, 525))


def test_every_album_is_valid_with_one_to_ten_unique_items() -> None:
    g = gen(albums=200, seed=3, tenants=("acme", "globex"))
    sizes = set()
    all_posts: list[int] = []
    for r in g.records:
        if r.kind != "parsed":
            continue
        album = decode_album_parsed(r.value)
        assert r.key == str(album.album_id).encode()
        assert r.album_id == album.album_id
        n = len(album.items)
        sizes.add(n)
        assert 1 <= n <= 10
        assert [i.position for i in album.items] == list(range(n))
        assert len({i.post_id for i in album.items}) == n
        assert [i.post_id for i in album.items] == [post_id_of(album.album_id, p) for p in range(n)]
        exp = g.albums[album.album_id]
        assert (exp.tenant_id, exp.channel_id, exp.grouped_id) == (
            album.tenant_id,
            album.channel_id,
            album.grouped_id,
        )
        assert [it["post_id"] for it in exp.items] == [i.post_id for i in album.items]
        all_posts.extend(i.post_id for i in album.items)
    assert len(all_posts) == len(set(all_posts)), "post ids collide between albums"
    assert 1 in sizes
    assert 10 in sizes


def test_tenants_are_spread_round_robin() -> None:
    g = gen(albums=6, tenants=("a", "b", "c"))
    assert [g.albums[i].tenant_id for i in range(1, 7)] == ["a", "b", "c", "a", "b", "c"]


def test_vision_records_match_their_album() -> None:
    g = gen(albums=50, seed=4)
    by_album: dict[int, list[VisionAnalyzed]] = {}
    for r in g.records:
        if r.kind == "vision":
            ev = decode_vision_analyzed(r.value)
            assert r.key == str(ev.post_id).encode()
            assert ev.in_album is True
            by_album.setdefault(r.album_id or -1, []).append(ev)
    for album_id, exp in g.albums.items():
        events = by_album[album_id]
        assert exp.complete is True
        assert sorted(e.post_id for e in events) == sorted(it["post_id"] for it in exp.items)
        assert {e.tenant_id for e in events} == {exp.tenant_id}
        for e in events:
            assert e.vision.to_dict()["description"] == exp.vision[e.post_id]["description"]
            assert e.album_id in (None, album_id)


# -- knobs -------------------------------------------------------------------------------------


def test_no_duplicates_by_default() -> None:
    g = gen(albums=50)
    assert len(distinct(g.records)) == len(g.records)


@pytest.mark.parametrize("share", [0.1, 0.3])
def test_duplicate_share_is_roughly_right(share: float) -> None:
    g = gen(albums=400, seed=11, duplicate_share=share)
    unique = distinct(g.records)
    dups = len(g.records) - len(unique)
    assert dups / len(unique) == pytest.approx(share, abs=0.04)
    # a duplicate is an exact copy of a record that is there once
    counts = Counter((r.topic, r.key, r.value) for r in g.records)
    assert set(counts.values()) <= {1, 2}


def test_missing_vision_share_makes_incomplete_albums() -> None:
    g = gen(albums=300, seed=5, missing_vision_share=0.3)
    vision_count = Counter(r.album_id for r in g.records if r.kind == "vision")
    incomplete = [a for a in g.albums.values() if not a.complete]
    assert len(incomplete) / len(g.albums) == pytest.approx(0.3, abs=0.08)
    for a in g.albums.values():
        expected = len(a.items) - (0 if a.complete else 1)
        assert vision_count[a.album_id] == expected == len(a.vision)


def test_missing_vision_share_one_leaves_every_album_incomplete() -> None:
    g = gen(albums=40, missing_vision_share=1.0)
    assert not any(a.complete for a in g.albums.values())


@pytest.mark.parametrize(("share", "expected"), [(0.0, False), (1.0, True)])
def test_album_id_share_extremes(share: float, expected: bool) -> None:
    g = gen(albums=60, seed=2, album_id_share=share)
    events = [decode_vision_analyzed(r.value) for r in g.records if r.kind == "vision"]
    assert events
    assert {e.album_id is not None for e in events} == {expected}


def test_album_id_share_half_mixes_both() -> None:
    g = gen(albums=60, seed=2, album_id_share=0.5)
    events = [decode_vision_analyzed(r.value) for r in g.records if r.kind == "vision"]
    with_id = sum(e.album_id is not None for e in events) / len(events)
    assert with_id == pytest.approx(0.5, abs=0.1)


@pytest.mark.parametrize(("share", "vision_first"), [(0.0, False), (1.0, True)])
def test_vision_first_share_without_shuffle(share: float, vision_first: bool) -> None:
    g = gen(albums=20, shuffle=False, vision_first_share=share)
    for album_id in g.albums:
        kinds = [r.kind for r in g.records if r.album_id == album_id]
        assert kinds.count("parsed") == 1
        assert (kinds[-1] == "parsed") is vision_first
        assert (kinds[0] == "parsed") is not vision_first


def test_without_shuffle_albums_come_in_order() -> None:
    g = gen(albums=20, shuffle=False)
    order = [r.album_id for r in g.records]
    assert order == sorted(order)


def test_shuffle_mixes_albums() -> None:
    g = gen(albums=50, seed=9, shuffle=True)
    order = [r.album_id for r in g.records]
    assert order != sorted(order)


# -- garbage -----------------------------------------------------------------------------------


def test_malformed_records_fail_with_the_announced_error_type() -> None:
    n_albums = 30
    g = gen(albums=n_albums, seed=8, malformed_share=1.0)
    bad = g.malformed
    assert len(bad) == n_albums
    seen_types = set()
    for r in bad:
        assert r.error_type is not None
        with pytest.raises(InvalidEvent) as info:
            decode(r)
        assert info.value.error_type == r.error_type, r.value
        seen_types.add(r.error_type)
    assert seen_types == set(MALFORMED_ERROR.values())
    # both topics get garbage
    assert {r.topic for r in bad} == {ALBUMS_PARSED, VISION_ANALYZED}
    # malformed album ids do not collide with real ones
    assert not {r.album_id for r in bad} & set(g.albums)


def test_every_malformed_kind_has_an_error_type() -> None:
    assert set(MALFORMED_KINDS) == set(MALFORMED_ERROR)


def test_valid_records_all_decode() -> None:
    g = gen(albums=80, seed=6, malformed_share=0.5, not_in_album=5, duplicate_share=0.1)
    for r in g.records:
        if r.kind in ("parsed", "vision", "not_in_album"):
            decode(r)


def test_not_in_album_records_decode_as_not_in_album() -> None:
    g = gen(albums=5, not_in_album=7)
    records = [r for r in g.records if r.kind == "not_in_album"]
    assert len(records) == 7
    real_posts = {it["post_id"] for a in g.albums.values() for it in a.items}
    for r in records:
        ev = decode_vision_analyzed(r.value)
        assert r.topic == VISION_ANALYZED
        assert ev.in_album is False
        assert ev.album_id is None
        assert ev.grouped_id is None
        assert ev.post_id not in real_posts
        assert orjson.loads(r.value)["grouped_id"] is None


def test_iter_chunks() -> None:
    records = gen(albums=10).records
    chunks = list(iter_chunks(records, 7))
    assert all(len(c) == 7 for c in chunks[:-1])
    assert 1 <= len(chunks[-1]) <= 7
    assert [r for c in chunks for r in c] == records


# -- the generated stream through the pure pipeline ---------------------------------------------


def run_pipeline(g: Generated) -> dict[int, list[AlbumAssembled]]:
    """Route records as the agents do, through post_index and album_state; then the deadline."""
    policy = album_state.AssemblyPolicy(deadline_seconds=600, retention_seconds=86400)
    albums: dict[int, album_state.AlbumState] = {}
    index: dict[int, post_index.PostEntry] = {}
    emitted: dict[int, list[AlbumAssembled]] = {}
    now = 1_000.0

    def to_album(album_id: int, step: Callable[..., album_state.Outcome]) -> None:
        out = step(albums.get(album_id))
        assert not out.rejected, out.rejected
        if out.emit is not None:
            emitted.setdefault(album_id, []).append(out.emit)
        if out.changed:
            assert out.state is not None
            albums[album_id] = out.state

    for r in g.records:
        now += 0.01
        if r.kind not in ("parsed", "vision", "not_in_album"):
            continue
        ev = decode(r)
        if isinstance(ev, AlbumParsed):
            for item in ev.items:
                out = post_index.apply_index(
                    index.get(item.post_id), item.post_id, ev.album_id, ev.tenant_id, now, 86400
                )
                if out.entry is not None:
                    index[item.post_id] = out.entry
                for fwd in out.forward:
                    to_album(
                        fwd.album_id or -1,
                        partial(album_state.apply_vision, event=fwd, now=now, policy=policy),
                    )
            to_album(
                ev.album_id, partial(album_state.apply_parsed, album=ev, now=now, policy=policy)
            )
        elif not ev.in_album:
            continue
        elif ev.album_id is not None:
            to_album(
                ev.album_id, partial(album_state.apply_vision, event=ev, now=now, policy=policy)
            )
        else:
            out = post_index.apply_vision(index.get(ev.post_id), ev, now, 86400)
            if out.entry is not None:
                index[ev.post_id] = out.entry
            for fwd in out.forward:
                to_album(
                    fwd.album_id or -1,
                    partial(album_state.apply_vision, event=fwd, now=now, policy=policy),
                )
    # every album has been parsed by now: once its deadline passes, each is emitted
    deadline_at = now + policy.deadline_seconds
    for album_id in list(albums):
        to_album(album_id, partial(album_state.on_time, now=deadline_at, policy=policy))
    return emitted


def test_generated_stream_assembles_as_expected() -> None:
    g = gen(
        albums=120,
        seed=12,
        duplicate_share=0.2,
        missing_vision_share=0.25,
        album_id_share=0.5,
        malformed_share=0.2,
        not_in_album=5,
    )
    emitted = run_pipeline(g)
    assert set(emitted) == set(g.albums)
    for album_id, exp in g.albums.items():
        [a] = emitted[album_id]
        assert a.version == 1
        assert a.status == ("complete" if exp.complete else "partial")
        assert a.items_count == len(exp.items)
        assert a.items_analyzed == len(exp.vision)
        assert a.tenant_id == exp.tenant_id
        for item in a.items:
            assert (item.vision is not None) == (item.post_id in exp.vision)
