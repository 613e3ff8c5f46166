"""Object store for snapshots, raw crawls and reports: a local folder, or S3 through boto3.

Writes are atomic (a reader never sees half an object) and, unless asked, never overwrite:
`put(..., overwrite=False)` on an existing key keeps what is there, so history is never lost.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from reviewops.errors import ConfigError, StoreError


class ObjectStore:
    def put(self, key: str, data: bytes, overwrite: bool = False) -> bool:
        """Store `data` under `key`; False (and nothing written) when it exists and overwrite is off."""
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def list(self, prefix: str = "") -> list[str]:
        raise NotImplementedError

    def uri(self, key: str) -> str:
        raise NotImplementedError

    @staticmethod
    def _check_key(key: str) -> str:
        key = key.strip("/")
        if not key or any(part in ("", ".", "..") for part in key.split("/")):
            raise StoreError(f"invalid object key {key!r}")
        return key


class LocalObjectStore(ObjectStore):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def _path(self, key: str) -> Path:
        return self.root / self._check_key(key)

    def put(self, key: str, data: bytes, overwrite: bool = False) -> bool:
        path = self._path(key)
        if path.exists() and not overwrite:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if overwrite:
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)  # atomic and fails if another writer got there first
                except FileExistsError:
                    return False
                finally:
                    os.unlink(tmp)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return True

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"no object {key!r} in {self.root}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        base = self.root / prefix.strip("/") if prefix.strip("/") else self.root
        if not base.exists():
            return []
        return sorted(
            str(p.relative_to(self.root))
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def uri(self, key: str) -> str:
        return str(self._path(key))


class S3ObjectStore(ObjectStore):
    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None) -> None:
        import boto3

        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.client = boto3.client("s3", endpoint_url=endpoint_url or None)

    def _key(self, key: str) -> str:
        key = self._check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, action: str, key: str, exc: Exception) -> StoreError:
        return StoreError(f"S3 {action} of s3://{self.bucket}/{self._key(key)} failed: {type(exc).__name__}: {exc}")

    def put(self, key: str, data: bytes, overwrite: bool = False) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs = {} if overwrite else {"IfNoneMatch": "*"}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                return False
            raise self._fail("put", key, exc) from None
        except BotoCoreError as exc:
            raise self._fail("put", key, exc) from None
        return True

    def get(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("get", key, exc) from None

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._fail("head", key, exc) from None

    def list(self, prefix: str = "") -> list[str]:
        full = self._key(prefix) if prefix.strip("/") else self.prefix
        strip = f"{self.prefix}/" if self.prefix else ""
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            out.extend(obj["Key"].removeprefix(strip) for obj in page.get("Contents", []))
        return sorted(out)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"


def open_store(uri: str, endpoint_url: str | None = None) -> ObjectStore:
    """The object store at `uri`: `s3://bucket/prefix` or a local folder (path or file:// URI)."""
    parts = urlsplit(uri)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ConfigError(f"REVIEWOPS_ARTIFACT_URI {uri!r} names no bucket")
        return S3ObjectStore(parts.netloc, parts.path, endpoint_url)
    if parts.scheme in ("", "file"):
        return LocalObjectStore(parts.path if parts.scheme == "file" else uri)
    raise ConfigError(f"REVIEWOPS_ARTIFACT_URI {uri!r}: unsupported scheme {parts.scheme!r} (use a folder or s3://)")
