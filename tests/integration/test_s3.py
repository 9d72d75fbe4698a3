"""The S3 server of the local stack: bucket, gzip JSON put/get with headers, list, delete."""

from __future__ import annotations

import gzip
import json

from aiobotocore.session import get_session

from streams.settings import Settings


async def test_put_get_list_delete(s3_settings: Settings, unique: str) -> None:
    s = s3_settings
    bucket = f"it-{unique}"
    session = get_session()
    async with session.create_client(
        "s3",
        endpoint_url=s.s3_endpoint_url,
        region_name=s.s3_region,
        aws_access_key_id=s.s3_access_key,
        aws_secret_access_key=s.s3_secret_key.get(),
    ) as s3:
        await s3.create_bucket(Bucket=bucket)
        body = gzip.compress(json.dumps({"album_id": 42, "labels": ["кот", "cat"]}).encode())
        for key in ["album/acme/42_vision_summary_v1.json", "album/acme/43_vision_summary_v1.json"]:
            await s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                ContentEncoding="gzip",
            )
        await s3.put_object(Bucket=bucket, Key="media/abc", Body=b"\x00\x01")

        got = await s3.get_object(Bucket=bucket, Key="album/acme/42_vision_summary_v1.json")
        async with got["Body"] as stream:
            raw = await stream.read()
        assert got["ContentEncoding"] == "gzip"
        assert got["ContentType"] == "application/json"
        assert json.loads(gzip.decompress(raw)) == {"album_id": 42, "labels": ["кот", "cat"]}

        listed = await s3.list_objects_v2(Bucket=bucket, Prefix="album/acme/")
        assert [o["Key"] for o in listed["Contents"]] == [
            "album/acme/42_vision_summary_v1.json",
            "album/acme/43_vision_summary_v1.json",
        ]

        everything = await s3.list_objects_v2(Bucket=bucket)
        await s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": o["Key"]} for o in everything["Contents"]]}
        )
        assert (await s3.list_objects_v2(Bucket=bucket)).get("KeyCount", 0) == 0
        await s3.delete_bucket(Bucket=bucket)


async def test_configured_bucket_exists(s3_settings: Settings) -> None:
    s = s3_settings
    async with get_session().create_client(
        "s3",
        endpoint_url=s.s3_endpoint_url,
        region_name=s.s3_region,
        aws_access_key_id=s.s3_access_key,
        aws_secret_access_key=s.s3_secret_key.get(),
    ) as s3:
        head = await s3.head_bucket(Bucket=s.s3_bucket)
        assert head["ResponseMetadata"]["HTTPStatusCode"] == 200
