"""Raw storage: the landing zone for projectviews files, a local folder or an S3 prefix.

Ingestion writes here and bronze lists from here; both see the same keys
(``YYYY/YYYY-MM/projectviews-YYYYMMDD-HHMMSS``), relative to the store's root.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlparse

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client  # pragma: no cover

    from wikichurn.core.settings import S3Settings


@dataclass(frozen=True, order=True)
class StoredFile:
    """One object in raw storage."""

    key: str
    size: int


class RawStore(Protocol):
    """What ingestion and bronze need from raw storage."""

    root: str

    def list_files(self, prefix: str = "") -> list[StoredFile]:
        """Every object under ``prefix`` (relative to the root), sorted by key."""
        ...

    def size(self, key: str) -> int | None:
        """Size in bytes of ``key``, or None when it does not exist."""
        ...

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` at ``key`` atomically: readers see the old object or the whole new one."""
        ...

    def read(self, key: str) -> bytes:
        """The bytes of ``key``."""
        ...

    def uri(self, key: str) -> str:
        """A URI for ``key`` that Spark can read."""
        ...


def _check_key(key: str) -> str:
    # Keys come from our own name pattern, but a store must never write outside its root.
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in key:
        raise ValueError(f"unsafe storage key: {key!r}")
    return key


class LocalStore:
    """Raw storage in a local folder."""

    def __init__(self, root: str | Path) -> None:
        self.path = Path(root).expanduser().resolve()
        self.root = str(self.path)

    def list_files(self, prefix: str = "") -> list[StoredFile]:
        base = self.path / _check_key(prefix) if prefix else self.path
        if not base.exists():
            return []
        found = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith("."):  # temporary files of an unfinished put
                    continue
                full = Path(dirpath) / name
                found.append(StoredFile(full.relative_to(self.path).as_posix(), full.stat().st_size))
        return sorted(found)

    def size(self, key: str) -> int | None:
        target = self.path / _check_key(key)
        return target.stat().st_size if target.is_file() else None

    def put(self, key: str, data: bytes) -> None:
        target = self.path / _check_key(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write a hidden temporary file in the same folder, then rename: never a partial file.
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def read(self, key: str) -> bytes:
        return (self.path / _check_key(key)).read_bytes()

    def uri(self, key: str) -> str:
        return str(self.path / _check_key(key))


class S3Store:
    """Raw storage under ``s3://bucket/prefix``."""

    def __init__(self, uri: str, client: S3Client) -> None:
        parsed = urlparse(uri)
        if parsed.scheme not in ("s3", "s3a") or not parsed.netloc:
            raise ValueError(f"not an S3 URI: {uri!r}")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.root = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.client = client

    def _key(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def list_files(self, prefix: str = "") -> list[StoredFile]:
        full_prefix = self._key(prefix) + "/" if prefix else (f"{self.prefix}/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        found = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
            for obj in page.get("Contents", []):
                found.append(StoredFile(obj["Key"][strip:], int(obj["Size"])))
        return sorted(found)

    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(head["ContentLength"])

    def put(self, key: str, data: bytes) -> None:
        # A single PUT is atomic on S3: the object appears whole or not at all.
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def read(self, key: str) -> bytes:
        body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        return bytes(body.read())

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"


def s3_client(s3: S3Settings) -> S3Client:
    """A boto3 S3 client for the configured endpoint (path-style, as local servers need)."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    signing = {"signature_version": UNSIGNED} if s3.anonymous else {}
    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        region_name=s3.region,
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=s3.secret_access_key,
        config=Config(
            s3={"addressing_style": "path"} if s3.endpoint_url else {},
            retries={"max_attempts": 5, "mode": "standard"},
            **signing,
        ),
    )


def open_store(uri: str, s3: S3Settings) -> RawStore:
    """The store behind ``uri``: ``s3://bucket/prefix`` or a local folder."""
    if uri.startswith(("s3://", "s3a://")):
        return S3Store(uri, s3_client(s3))
    if "://" in uri and not uri.startswith("file://"):
        raise ValueError(f"unsupported storage URI {uri!r}: use a folder or s3://bucket/prefix")
    return LocalStore(uri.removeprefix("file://"))


def delta_storage_options(s3: S3Settings) -> dict[str, str]:
    """``storage_options`` for ``deltalake`` (delta-rs) on S3 from the same settings Spark uses."""
    options = {"AWS_REGION": s3.region}
    if s3.endpoint_url:
        options["AWS_ENDPOINT_URL"] = s3.endpoint_url
        options["AWS_ALLOW_HTTP"] = str(s3.allow_http).lower()
    if s3.access_key_id and s3.secret_access_key:
        options["AWS_ACCESS_KEY_ID"] = s3.access_key_id
        options["AWS_SECRET_ACCESS_KEY"] = s3.secret_access_key
    elif s3.anonymous:
        options["AWS_SKIP_SIGNATURE"] = "true"
    return options
