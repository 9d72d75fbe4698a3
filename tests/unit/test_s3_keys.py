"""S3 keys of the contract: nothing can escape its prefix."""

from __future__ import annotations

import pytest

from storage.s3 import album_summary_key, media_key


def test_album_summary_key_of_the_contract() -> None:
    assert album_summary_key("acme", 42) == "album/acme/42_vision_summary_v1.json"


@pytest.mark.parametrize("tenant", ["", "../x", "a/b", "a b", "x" * 65, "кот", "a\x00"])
def test_bad_tenants_are_refused(tenant: str) -> None:
    with pytest.raises(ValueError, match="tenant_id"):
        album_summary_key(tenant, 1)


@pytest.mark.parametrize("album_id", [-1, True, "42", 4.2])
def test_bad_album_ids_are_refused(album_id: object) -> None:
    with pytest.raises(ValueError, match="album_id"):
        album_summary_key("acme", album_id)  # type: ignore[arg-type]


def test_media_key_needs_a_lowercase_sha256() -> None:
    sha = "ab" * 32
    assert media_key(sha) == f"media/{sha}"
    for bad in ["AB" * 32, "ab" * 31, "../" + "a" * 61, ""]:
        with pytest.raises(ValueError, match="SHA-256"):
            media_key(bad)
