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
