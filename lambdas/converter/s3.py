"""S3 access for the converter: image headers by ranged GET, annotation objects to /tmp."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from threading import Lock
from typing import Any

from botocore.exceptions import ClientError

from fashion_pipeline.convert import OpenedImage
from fashion_pipeline.images import FIRST_READ, ImageError
from fashion_pipeline.records import checked_image_names

_MISSING = {"NoSuchKey", "404", "NotFound"}


@dataclass
class RequestLog:
    """What the probing cost: ranged GETs and bytes, shared by the worker threads."""

    requests: int = 0
    bytes: int = 0
    ranges: list[tuple[str, str]] = field(default_factory=list)
    _lock: Lock = field(default_factory=Lock, repr=False)

    def add(self, key: str, byte_range: str, size: int) -> None:
        with self._lock:
            self.requests += 1
            self.bytes += size
            self.ranges.append((key, byte_range))


class S3ImageStore:
    """Images under ``s3://bucket/prefix``: the first GET of an image is a ranged one and
    gives its total size too (Content-Range), so existence, size and header cost one request."""

    def __init__(self, client: Any, bucket: str, prefix: str, log: RequestLog | None = None) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.log = log or RequestLog()
        self._hits: dict[str, int] = {}
        self._hits_lock = Lock()

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _get(self, key: str, offset: int, length: int) -> tuple[bytes, int]:
        byte_range = f"bytes={offset}-{offset + length - 1}"
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key, Range=byte_range)
        except ClientError:
            self.log.add(key, byte_range, 0)  # a 404 is a billed request and a round trip too
            raise
        data = response["Body"].read()
        self.log.add(key, byte_range, len(data))
        total = int(response.get("ContentRange", "/0").rsplit("/", 1)[-1] or 0) or response.get("ContentLength", len(data))
        return data, total

    def _ordered(self, candidates: tuple[str, ...]) -> list[str]:
        """Most successful extension first: a dataset is usually all .jpg or all .png, so after
        the first hits a lookup costs one GET instead of one per wrong guess."""
        with self._hits_lock:
            hits = dict(self._hits)
        return sorted(candidates, key=lambda name: -hits.get(os.path.splitext(name)[1].lower(), 0))

    def open(self, candidates: tuple[str, ...]) -> OpenedImage | None:
        # checked_image_names: no name leaves the dataset's prefix ("../x.jpg"), the local rule too.
        for name in self._ordered(checked_image_names(candidates)):
            key = self.prefix + name
            try:
                first, size = self._get(key, 0, FIRST_READ)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in _MISSING:
                    continue
                if code == "InvalidRange":  # only an empty object has no byte 0
                    raise ImageError("image_corrupt", f"s3://{self.bucket}/{key} is empty") from None
                raise

            with self._hits_lock:
                extension = os.path.splitext(name)[1].lower()
                self._hits[extension] = self._hits.get(extension, 0) + 1

            def read_at(offset: int, length: int, key: str = key, first: bytes = first) -> bytes:
                if offset + length <= len(first) or (offset < len(first) and len(first) < FIRST_READ):
                    return first[offset : offset + length]
                if offset >= size:
                    return b""
                return self._get(key, offset, length)[0]

            return OpenedImage(name, f"s3://{self.bucket}/{key}", size, read_at)
        return None


def download(client: Any, bucket: str, key: str, directory: str, *, version_id: str | None = None) -> tuple[str, dict[str, Any]]:
    """Fetch an object into ``directory`` under its own base name; returns path and head.

    The file's mtime is set to the object's LastModified, which becomes the manifest lines'
    creation date (so re-runs on the same object give the same bytes).
    """
    extra = {"VersionId": version_id} if version_id else {}
    head = client.head_object(Bucket=bucket, Key=key, **extra)
    path = os.path.join(directory, os.path.basename(key) or "object")
    client.download_file(bucket, key, path, ExtraArgs=extra or None)
    stamp = head["LastModified"].timestamp()
    os.utime(path, (stamp, stamp))
    return path, head
