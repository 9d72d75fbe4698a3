"""storage.s3.S3Storage against the local S3 server: gzip JSON round trip, headers, media."""

from __future__ import annotations

import hashlib

import pytest
from aiobotocore.session import get_session

from storage.s3 import S3Error, S3Storage, album_summary_key
from streams.settings import Settings


@pytest.fixture
async def storage(s3_settings: Settings, unique: str) -> S3Storage:
    s = s3_settings
    bucket = f"it-store-{unique}"
    async with get_session().create_client(
        "s3",
        endpoint_url=s.s3_endpoint_url,
        region_name=s.s3_region,
        aws_access_key_id=s.s3_access_key,
        aws_secret_access_key=s.s3_secret_key.get(),
    ) as admin:
        await admin.create_bucket(Bucket=bucket)
    return S3Storage(s.s3_endpoint_url, bucket, s.s3_access_key, s.s3_secret_key.get(), s.s3_region)


async def test_gzip_json_round_trip_and_headers(storage: S3Storage) -> None:
    doc = {"album_id": 42, "vision_summary": "кот на диване | a cat", "vision_labels": ["cat"]}
    key = album_summary_key("acme", 42)
    async with storage:
        size = await storage.put_json(key, doc, compress=True)
        assert size > 0
        assert await storage.get_json(key) == doc
        head = await storage._call("head_object", Bucket=storage.bucket, Key=key)
        assert head["ContentEncoding"] == "gzip"
        assert head["ContentType"] == "application/json"
        # same document, same bytes: an idempotent re-put changes nothing
        assert await storage.put_json(key, doc) == size
        assert await storage.list_keys("album/acme/") == [key]
        assert await storage.get_json("album/acme/missing.json") is None


async def test_media_is_content_addressed(storage: S3Storage) -> None:
    data = b"\x89PNG fake image bytes"
    sha = hashlib.sha256(data).hexdigest()
    async with storage:
        key = await storage.put_media(sha, data, "image/png")
        assert key == f"media/{sha}"
        assert await storage.list_keys("media/") == [key]


async def test_a_missing_bucket_is_a_clear_error(s3_settings: Settings) -> None:
    s = s3_settings
    store = S3Storage(
        s.s3_endpoint_url, "no-such-bucket-x", s.s3_access_key, s.s3_secret_key.get(), s.s3_region
    )
    with pytest.raises(S3Error, match="head_bucket"):
        await store.start()
    await store.close()


async def test_album_summary_keeps_the_highest_version(storage: S3Storage) -> None:
    v1 = {"album_id": 7, "tenant_id": "acme", "version": 1, "status": "partial"}
    v2 = {**v1, "version": 2, "status": "complete"}
    key = album_summary_key("acme", 7)
    async with storage:
        assert await storage.put_album_summary(v1) is True
        assert await storage.put_album_summary(v1) is False  # same version: nothing written
        assert await storage.put_album_summary(v2) is True
        assert await storage.put_album_summary(v1) is False  # older after newer: ignored
        assert await storage.get_json(key) == v2
        assert await storage.stored_version(key) == 2


async def test_album_summary_put_is_conditional_on_what_was_read(storage: S3Storage) -> None:
    """A writer that read version 1 cannot overwrite a version 3 written meanwhile."""
    v1 = {"album_id": 8, "tenant_id": "acme", "version": 1, "status": "partial"}
    key = album_summary_key("acme", 8)
    async with storage:
        await storage.put_album_summary(v1)
        stale = await storage._stored(key)
        assert stale is not None
        await storage.put_album_summary({**v1, "version": 3})
        with pytest.raises(S3Error) as err:
            await storage.put_json(key, {**v1, "version": 2}, condition={"IfMatch": stale[1]})
        assert err.value.precondition_failed
        with pytest.raises(S3Error) as err:
            await storage.put_json(key, {**v1, "version": 2}, condition={"IfNoneMatch": "*"})
        assert err.value.precondition_failed
        assert await storage.stored_version(key) == 3
        # the racing writer, going through put_album_summary, reads again and backs off
        assert await storage.put_album_summary({**v1, "version": 2}) is False
