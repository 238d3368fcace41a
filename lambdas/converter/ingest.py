"""Convert one uploaded annotation object into a manifest fragment and a report.

Keys are derived from the input key alone, so a duplicated or retried event, or a re-run,
rewrites the same two objects; the latest content of the annotation object is what is
converted, whatever version the event named, so a late event never resurrects old data.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fashion_pipeline.aws.s3 import RequestLog, S3ImageStore, download
from fashion_pipeline.convert import Converted, convert_annotation, error_rejection
from fashion_pipeline.records import AnnotationError, Rejection
from fashion_pipeline.sources import open_source

ANNOTATIONS_PREFIX = "annotations/"
WINDOW_PER_THREAD = 4  # annotations in flight per probing thread


class UnsupportedObject(Exception):
    """An object that cannot be converted as it is; the report says why and how to fix it."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class Limits:
    max_document_bytes: int = 100 * 1024 * 1024  # a JSON or COCO file is parsed whole
    max_archive_bytes: int = 1024 * 1024 * 1024  # a .zip or .jsonl is streamed from /tmp
    max_entries: int = 50_000  # annotations per object, to finish well within the timeout


@dataclass
class ObjectResult:
    dataset: str
    fragment_key: str
    report_key: str
    records: int = 0
    boxes: int = 0
    rejections: dict[str, int] = field(default_factory=dict)
    probe_requests: int = 0
    probe_bytes: int = 0


def dataset_of(key: str) -> tuple[str, str]:
    """``annotations/<dataset>/<path>`` -> (dataset, path)."""
    if not key.startswith(ANNOTATIONS_PREFIX):
        raise UnsupportedObject("outside_annotations_prefix", f"{key} is not under {ANNOTATIONS_PREFIX}<dataset>/")
    parts = key[len(ANNOTATIONS_PREFIX) :].split("/", 1)
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise UnsupportedObject("no_dataset", f"{key}: upload annotations as {ANNOTATIONS_PREFIX}<dataset>/<file>")
    return parts[0], parts[1]


def output_keys(dataset: str, path: str) -> tuple[str, str]:
    return f"fragments/{dataset}/{path}.jsonl", f"reports/{dataset}/{path}.json"


def _check_size(key: str, size: int, limits: Limits) -> None:
    lower = key.lower()
    streamed = lower.endswith((".zip", ".jsonl", ".ndjson"))
    limit = limits.max_archive_bytes if streamed else limits.max_document_bytes
    if size > limit:
        hint = (
            "split it into several archives or JSON Lines files"
            if streamed
            else "upload per-image DeepFashion2 files, a .zip of them, or JSON Lines (streamed) instead"
        )
        raise UnsupportedObject("object_too_large", f"{key} is {size} bytes; the limit is {limit} bytes: {hint}")
    if not lower.endswith((".json", ".zip", ".jsonl", ".ndjson")):
        raise UnsupportedObject("unsupported_file", f"{key}: expected .json, .zip, .jsonl or .ndjson")


def convert_object(
    s3: Any,
    *,
    bucket: str,
    key: str,
    artifacts_bucket: str,
    concurrency: int = 32,
    limits: Limits | None = None,
) -> ObjectResult:
    limits = limits or Limits()
    dataset, path = dataset_of(key)
    fragment_key, report_key = output_keys(dataset, path)
    result = ObjectResult(dataset, fragment_key, report_key)
    log = RequestLog()
    images = S3ImageStore(s3, bucket, f"images/{dataset}/", log)
    rejected: list[dict[str, Any]] = []
    head: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="convert-") as workdir:
        fragment_path = os.path.join(workdir, "fragment.jsonl")
        with open(fragment_path, "w", encoding="utf-8") as fragment:
            try:
                size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
                _check_size(key, size, limits)
                local, head = download(s3, bucket, key, workdir)
                source = open_source(local, name=key)
                if source.total > limits.max_entries:
                    raise UnsupportedObject(
                        "too_many_entries",
                        f"{key} holds {source.total} annotations; the limit per object is {limits.max_entries}: split it",
                    )
                for converted in _convert_all(source, images, concurrency):
                    for rejection in converted.rejections:
                        rejected.append(rejection.to_dict())
                        result.rejections[rejection.reason] = result.rejections.get(rejection.reason, 0) + 1
                    if converted.record is not None:
                        fragment.write(json.dumps(converted.record.to_dict(), ensure_ascii=False) + "\n")
                        result.records += 1
                        result.boxes += len(converted.record.boxes)
            except UnsupportedObject as exc:
                rejected.append(Rejection(key, None, exc.reason, exc.detail).to_dict())
                result.rejections[exc.reason] = result.rejections.get(exc.reason, 0) + 1
        result.probe_requests, result.probe_bytes = log.requests, log.bytes
        metadata = {"source-key": key, "source-etag": str(head.get("ETag", "")).strip('"'), "source-version": str(head.get("VersionId") or "")}
        s3.upload_file(fragment_path, artifacts_bucket, fragment_key, ExtraArgs={"Metadata": metadata, "ContentType": "application/x-ndjson"})
    report = {
        "source": f"s3://{bucket}/{key}",
        "source_etag": metadata["source-etag"],
        "source_version": metadata["source-version"] or None,
        "fragment": f"s3://{artifacts_bucket}/{fragment_key}",
        "records": result.records,
        "boxes": result.boxes,
        "rejections": dict(sorted(result.rejections.items())),
        "probe": {"requests": log.requests, "bytes": log.bytes},
        "rejected": rejected,
    }
    s3.put_object(Bucket=artifacts_bucket, Key=report_key, Body=json.dumps(report, indent=1).encode(), ContentType="application/json", Metadata=metadata)
    return result


def _convert_all(source: Any, images: S3ImageStore, concurrency: int) -> Iterator[Converted]:
    """Probe images concurrently, yielding results in input order.

    A sliding window of pending work (a few per thread) keeps every thread busy without a
    barrier between chunks, and bounds memory whatever the object's size.
    """
    window = max(1, concurrency) * WINDOW_PER_THREAD
    pending: deque[Any] = deque()
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for item, created in source:
            if isinstance(item, Rejection):
                pending.append(Converted(None, [item]))
            elif isinstance(item, AnnotationError):
                pending.append(Converted(None, [error_rejection(item, source.name)]))
            else:
                pending.append(pool.submit(convert_annotation, item, images, created=created))
            while len(pending) >= window:
                yield _result(pending.popleft())
        while pending:
            yield _result(pending.popleft())


def _result(job: Any) -> Converted:
    return job if isinstance(job, Converted) else job.result()
