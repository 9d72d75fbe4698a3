"""S3 storage (aiobotocore): gzip JSON album summaries and content-addressed media objects."""

from __future__ import annotations

import gzip
import re
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import IO, Any

import orjson
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from schemas.events import TENANT_PATTERN, TENANT_RE, supersedes
from storage.errors import StorageError

SHA256_RE = re.compile(r"[0-9a-f]{64}")
RETRIABLE_CODES = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "503", "500"}
)


VERSION_META = "album-version"
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
PRECONDITION_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})


class S3Error(StorageError):
    """An S3 request failed; `retriable` says whether trying again may help."""

    not_found: bool = False
    precondition_failed: bool = False


def album_summary_key(tenant_id: str, album_id: int) -> str:
    """`album/{tenant_id}/{album_id}_vision_summary_v1.json`; nothing can escape the prefix."""
    if not TENANT_RE.fullmatch(tenant_id):
        raise ValueError(f"tenant_id {tenant_id!r} is not {TENANT_PATTERN}")
    if isinstance(album_id, bool) or not isinstance(album_id, int) or album_id < 0:
        raise ValueError(f"album_id {album_id!r} is not a non-negative integer")
    return f"album/{tenant_id}/{album_id}_vision_summary_v1.json"


def media_key(sha256: str) -> str:
    """`media/{sha256}` for a lowercase hex SHA-256."""
    if not SHA256_RE.fullmatch(sha256):
        raise ValueError(f"{sha256!r} is not a lowercase hex SHA-256")
    return f"media/{sha256}"


#: connections kept open to the S3 server (at least the puts a sink has in flight)
POOL_CONNECTIONS = 64


class S3Storage:
    """One bucket on an S3 endpoint.

    Args:
        endpoint_url: the S3 endpoint (the local stack's versitygw, MinIO, AWS, ...).
        bucket: the bucket holding album summaries and media.
        access_key, secret_key, region: credentials and region of the endpoint.
    """

    def __init__(
        self,
        endpoint_url: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        region: str,
        *,
        timeout: float = 30.0,
    ) -> None:
        self.endpoint_url = endpoint_url
        #: seconds to wait for a response (connecting: 5 s)
        self.timeout = timeout
        self.bucket = bucket
        self._access_key = access_key
        self._secret_key = secret_key
        self._region = region
        self._stack: AsyncExitStack | None = None
        self._client: Any = None

    async def start(self) -> None:
        """Connect and check that the bucket answers."""
        self._stack = AsyncExitStack()
        self._client = await self._stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self._region,
                aws_access_key_id=self._access_key,
                aws_secret_access_key=self._secret_key,
                # fail fast and let the sink's backoff decide about retrying; a pool as large as
                # the puts in flight (the default 10 opened and closed a connection for every
                # put beyond it: a fifth of the sinks' process time)
                config=AioConfig(
                    connect_timeout=5,
                    read_timeout=self.timeout,
                    retries={"max_attempts": 2},
                    max_pool_connections=POOL_CONNECTIONS,
                ),
            )
        )
        await self._call("head_bucket", Bucket=self.bucket)

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
        self._stack = self._client = None

    async def __aenter__(self) -> S3Storage:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, op: str, **kwargs: Any) -> Any:
        if self._client is None:
            raise S3Error(f"S3Storage.{op} before start()")
        try:
            return await getattr(self._client, op)(**kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            err = S3Error(f"S3 {op} failed: {code}: {exc}")
            err.retriable = code in RETRIABLE_CODES
            err.not_found = code in NOT_FOUND_CODES
            err.precondition_failed = code in (
                "PreconditionFailed",
                "412",
                "ConditionalRequestConflict",
            )
            raise err from exc
        except (BotoCoreError, OSError) as exc:
            err = S3Error(f"S3 {op} failed: {exc!r}")
            err.retriable = True
            raise err from exc

    async def put_json(
        self,
        key: str,
        document: Any,
        *,
        compress: bool = True,
        metadata: dict[str, str] | None = None,
        condition: dict[str, str] | None = None,
    ) -> int:
        """Store `document` as JSON (gzip with Content-Encoding when `compress`); returns bytes.

        `condition`: `{"IfMatch": etag}` or `{"IfNoneMatch": "*"}` for a conditional write
        (S3Error.precondition_failed when the object changed meanwhile).
        """
        body = orjson.dumps(document)
        extra: dict[str, Any] = {"Metadata": metadata} if metadata else {}
        extra.update(condition or {})
        if compress:
            body = gzip.compress(body, mtime=0)  # mtime 0: same document, same bytes
            extra["ContentEncoding"] = "gzip"
        await self._call(
            "put_object",
            Bucket=self.bucket,
            Key=key,
            Body=body,
            ContentType="application/json",
            **extra,
        )
        return len(body)

    async def _stored(self, key: str) -> tuple[int, str] | None:
        try:
            resp = await self._call("head_object", Bucket=self.bucket, Key=key)
        except S3Error as exc:
            if exc.not_found:
                return None
            raise
        raw = (resp.get("Metadata") or {}).get(VERSION_META)
        try:
            version = int(raw) if raw is not None else 0
        except ValueError:
            version = 0
        return version, str(resp.get("ETag", ""))

    async def stored_version(self, key: str) -> int | None:
        """The `album-version` metadata of the object at `key`; None when there is no object."""
        stored = await self._stored(key)
        return None if stored is None else stored[0]

    async def put_album_summary(self, event: Mapping[str, Any]) -> bool:
        """Store an album.assembled event at its summary key unless a newer version is there.

        Returns False when the stored version is the same or higher (nothing written), so a
        replay or an older version never overwrites. The first request is a put that only
        creates (If-None-Match); the stored version is read only when the object exists. The
        put after a read is conditional on it (If-Match on its ETag, If-None-Match when there
        was nothing), so two writers racing (a worker still retrying after its partitions
        moved) cannot put an older version last.
        """
        key = album_summary_key(str(event["tenant_id"]), int(event["album_id"]))
        version = int(event["version"])
        metadata = {VERSION_META: str(version)}
        # Most summaries are new: put first, with If-None-Match, and read only on a conflict
        # (one request per album instead of a HEAD and a PUT).
        try:
            await self.put_json(key, dict(event), metadata=metadata, condition={"IfNoneMatch": "*"})
            return True
        except S3Error as exc:
            if not exc.precondition_failed:
                raise
        for _ in range(5):
            stored = await self._stored(key)
            if not supersedes(version, None if stored is None else stored[0]):
                return False
            condition = {"IfNoneMatch": "*"} if stored is None else {"IfMatch": stored[1]}
            try:
                await self.put_json(key, dict(event), metadata=metadata, condition=condition)
                return True
            except S3Error as exc:
                if not exc.precondition_failed:
                    raise
        err = S3Error(f"S3 {key}: changed by another writer at every attempt")
        err.retriable = True
        raise err

    async def get_json(self, key: str) -> Any:
        """The JSON document at `key` (decompressed when stored with gzip), or None."""
        try:
            resp = await self._call("get_object", Bucket=self.bucket, Key=key)
        except S3Error as exc:
            if exc.not_found:
                return None
            raise
        async with resp["Body"] as stream:
            raw = await stream.read()
        if resp.get("ContentEncoding") == "gzip":
            raw = gzip.decompress(raw)
        return orjson.loads(raw)

    async def put_media(self, sha256: str, data: bytes | IO[bytes], content_type: str) -> str:
        """Store media content-addressed under `media/{sha256}`; returns the key.

        `data` is bytes or a binary file positioned at its start (streamed, not read whole).
        """
        key = media_key(sha256)
        await self._call(
            "put_object", Bucket=self.bucket, Key=key, Body=data, ContentType=content_type
        )
        return key

    async def has_object(self, key: str) -> bool:
        try:
            await self._call("head_object", Bucket=self.bucket, Key=key)
        except S3Error as exc:
            if exc.not_found:
                return False
            raise
        return True

    async def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            resp = await self._call("list_objects_v2", **kwargs)
            keys += [o["Key"] for o in resp.get("Contents", [])]
            if not resp.get("IsTruncated"):
                return keys
            token = resp.get("NextContinuationToken")
