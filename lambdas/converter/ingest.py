"""Keep each annotation object's outputs in step with the object itself.

Every object under ``annotations/`` ends in outputs of the artifacts bucket:

* ``annotations/<dataset>/<path>`` -> a fragment ``fragments/<dataset>/<path>.jsonl`` and a
  report ``reports/<dataset>/<path>.json`` (what was left out, and why; an object that cannot
  be read at all is one line of that report: ``invalid_archive``, ``empty_object``, ...);
* a key without a dataset folder, or whose folder is not a dataset name ``train`` accepts
  (``training.check_dataset_name``) -> one report ``unassigned/<key>.json``, outside every
  dataset's ``reports/<dataset>/`` so it can never be mistaken for a dataset's report
  (``_unassigned`` is itself a valid dataset name, hence a separate top-level prefix);
* a removed object -> its outputs are removed.

Keys are derived from the input key alone, so a duplicated or retried event, or a re-run,
rewrites the same objects. An event is only a hint that a key changed: ``sync_object`` looks
at the object as it is now (HeadObject) and makes the outputs match it, whatever the event
said. S3 delivers notifications at least once and not necessarily in order ("Amazon S3 Event
Notifications", https://docs.aws.amazon.com/AmazonS3/latest/userguide/EventNotifications.html);
the event's ``sequencer`` orders events of one key but only against a stored last value, and
``reprocess`` sends events with none. Checking the object's state needs no store: a late
ObjectRemoved for a key uploaded again finds the object and leaves its outputs alone (the new
upload's ObjectCreated converts it), and a late ObjectCreated for a deleted object finds
nothing and removes the outputs. Concurrent events for one key (two Lambdas, one converting,
one deleting) are settled by checking again after writing: if the object changed meanwhile,
the pass is repeated, so the last writer always leaves outputs that match the object.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aws_lambda_powertools import Logger
from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError

from fashion_pipeline.aws.s3 import RequestLog, S3ImageStore, download
from fashion_pipeline.convert import Converted, convert_annotation, error_rejection
from fashion_pipeline.records import AnnotationError, Rejection
from fashion_pipeline.sources import InputError, open_source
from fashion_pipeline.training import OptionsError, check_dataset_name
from fashion_pipeline.layout import (
    ANNOTATIONS_PREFIX, MAX_KEY_BYTES, REPORT_SUFFIX, UNASSIGNED_PREFIX, output_keys,
)
from fashion_pipeline.layout import bounded as _bounded

WINDOW_PER_THREAD = 4  # annotations in flight per probing thread
MAX_PASSES = 3  # an object that changes under every pass is retried later through the queue
# Errors of AWS itself (the SDK's, after its own retries): throttling, 5xx, network, denied
# access. They say nothing about the object's content, so they fail the SQS record and the
# queue retries it (maxReceiveCount times, then the dead-letter queue and its alarm).
AWS_ERRORS = (ClientError, BotoCoreError, Boto3Error)
_MISSING = {"404", "NoSuchKey", "NotFound"}

logger = Logger(child=True)


class UnsupportedObject(Exception):
    """An object that cannot be converted as it is; the report says why and how to fix it."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class ObjectChanging(Exception):
    """The object changed during every pass; the SQS record fails and is delivered again."""


@dataclass
class Limits:
    # Every kind streams from /tmp (a COCO file through ijson and an on-disk spool, see
    # fashion_pipeline.coco), so size is bounded by the function's /tmp (4 GB, Ingestion):
    # the object and a spool of about its size.
    max_document_bytes: int = 1024 * 1024 * 1024  # a JSON or COCO file
    max_archive_bytes: int = 1024 * 1024 * 1024  # a .zip or .jsonl
    max_entries: int = 50_000  # annotations per object, to finish well within the timeout


@dataclass(frozen=True)
class Target:
    """Where the outputs of one annotation object live."""

    key: str
    dataset: str | None  # None: the key names no valid dataset (an unassigned object)
    fragment_key: str | None
    report_key: str
    problem: UnsupportedObject | None = None  # why it is unassigned

    @property
    def output_keys(self) -> tuple[str, ...]:
        # The fragment goes first, so that a listed fragment always has its report.
        return tuple(k for k in (self.fragment_key, self.report_key) if k)


@dataclass
class ObjectResult:
    dataset: str | None
    fragment_key: str | None
    report_key: str
    # converted | unassigned (a report under unassigned/) | removed (outputs deleted) |
    # kept (an ObjectRemoved event, but the object exists again: nothing to do)
    outcome: str = "converted"
    records: int = 0
    boxes: int = 0
    rejections: dict[str, int] = field(default_factory=dict)
    probe_requests: int = 0
    probe_bytes: int = 0
    source: tuple[str, str, str] | None = None  # (version, etag, last modified) of what was converted



def unassigned_report_key(key: str) -> str:
    """``unassigned/<annotation key>.json``: the report of a key outside every dataset."""
    return UNASSIGNED_PREFIX + _bounded(key, MAX_KEY_BYTES - len(UNASSIGNED_PREFIX) - len(REPORT_SUFFIX)) + REPORT_SUFFIX


def _suggested_name(name: str) -> str:
    return ("".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in name)[:64]) or "dataset"


def target_of(key: str) -> Target | None:
    """The outputs of ``key``; None for keys that are no annotation object: outside
    ``annotations/`` (the notification never sends them), or a folder placeholder (a key ending
    in ``/``, what the S3 console's "Create folder" writes; the files put in it are reported)."""
    if not key.startswith(ANNOTATIONS_PREFIX) or key.endswith("/"):
        return None
    parts = key[len(ANNOTATIONS_PREFIX) :].split("/", 1)
    if len(parts) == 1:
        problem = UnsupportedObject(
            "no_dataset",
            f"{key} is not in a dataset folder, so it belongs to no dataset: upload it as "
            f"{ANNOTATIONS_PREFIX}<dataset>/{parts[0]} (a dataset name is 1-64 letters, digits, '.', '_' or '-'), "
            "then delete this object",
        )
        return Target(key, None, None, unassigned_report_key(key), problem)
    dataset, path = parts
    try:
        check_dataset_name(dataset)
    except OptionsError as exc:
        suggestion = _suggested_name(dataset)
        problem = UnsupportedObject(
            "invalid_dataset_name",
            f"{key}: {exc}, so `fashion-pipeline train --dataset` refuses it and nothing under "
            f"{ANNOTATIONS_PREFIX}{dataset}/ is converted: move the files to a valid folder, "
            f"e.g. {ANNOTATIONS_PREFIX}{suggestion}/{path}",
        )
        return Target(key, None, None, unassigned_report_key(key), problem)
    fragment_key, report_key = output_keys(dataset, path)
    return Target(key, dataset, fragment_key, report_key)


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code", "")) in _MISSING


def _head(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """The object as it is now; None when it does not exist (or its current version is a
    delete marker: HEAD answers 404, "Working with delete markers",
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/DeleteMarker.html)."""
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _missing(exc):
            return None
        raise


def _identity(head: dict[str, Any]) -> tuple[str, str, str]:
    # Which upload this is: its version (the dataset bucket is versioned), and ETag and
    # LastModified for an unversioned bucket (the same bytes uploaded again get a new
    # LastModified, which the manifest lines carry as their creation date).
    modified = head.get("LastModified")
    return str(head.get("VersionId") or ""), str(head.get("ETag", "")).strip('"'), modified.isoformat() if modified else ""


def _metadata(key: str, head: dict[str, Any]) -> dict[str, str]:
    # User metadata travels in HTTP headers: ASCII only, hence the URL-encoded key
    # ("Working with object metadata", https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingMetadata.html).
    return {"source-key": quote(key, safe="/"), "source-etag": str(head.get("ETag", "")).strip('"'),
            "source-version": str(head.get("VersionId") or "")}


def sync_object(
    s3: Any,
    *,
    bucket: str,
    key: str,
    artifacts_bucket: str,
    removed: bool = False,
    concurrency: int = 32,
    limits: Limits | None = None,
) -> ObjectResult | None:
    """Make the outputs of ``key`` match the object as it is now (see the module docstring).

    ``removed``: the event was an ObjectRemoved one. Returns None for a key that is no
    annotation object. Raises an ``AWS_ERRORS`` error (S3 failed) or ``ObjectChanging``: both
    mean "deliver this event again".
    """
    target = target_of(key)
    if target is None:
        return None
    for attempt in range(MAX_PASSES):
        head = _head(s3, bucket, key)
        if head is None:
            _delete_outputs(s3, artifacts_bucket, target)
            result = ObjectResult(target.dataset, target.fragment_key, target.report_key, outcome="removed")
        elif removed and attempt == 0:
            # Uploaded again since the deletion this event reports: that upload's own
            # ObjectCreated event converts it; deleting now would lose the new outputs.
            return ObjectResult(target.dataset, target.fragment_key, target.report_key, outcome="kept")
        else:
            try:
                result = _write_outputs(s3, target, bucket, head, artifacts_bucket, concurrency, limits or Limits())
            except ClientError as exc:
                if _missing(exc):  # deleted while it was read: the next pass removes the outputs
                    continue
                raise
        # Checked after writing: a change that raced with this pass is seen here (and the pass
        # repeated); a change after this check comes with its own event, processed after it.
        now = _head(s3, bucket, key)
        if (now is None) if result.source is None else (now is not None and _identity(now) == result.source):
            return result
    raise ObjectChanging(f"s3://{bucket}/{key} changed during each of {MAX_PASSES} passes; SQS delivers the event again")


def _delete_outputs(s3: Any, artifacts_bucket: str, target: Target) -> None:
    for output in target.output_keys:
        s3.delete_object(Bucket=artifacts_bucket, Key=output)


def _write_outputs(s3: Any, target: Target, bucket: str, head: dict[str, Any], artifacts_bucket: str,
                   concurrency: int, limits: Limits) -> ObjectResult:
    if target.problem is None:
        return convert_object(s3, bucket=bucket, key=target.key, artifacts_bucket=artifacts_bucket,
                              concurrency=concurrency, limits=limits, head=head)
    problem = target.problem
    metadata = _metadata(target.key, head)
    report = {
        "source": f"s3://{bucket}/{target.key}",
        "source_etag": metadata["source-etag"],
        "source_version": metadata["source-version"] or None,
        "dataset": None,
        "fragment": None,
        "records": 0,
        "boxes": 0,
        "rejections": {problem.reason: 1},
        "rejected": [Rejection(target.key, None, problem.reason, problem.detail).to_dict()],
    }
    s3.put_object(Bucket=artifacts_bucket, Key=target.report_key, Body=json.dumps(report, indent=1).encode(),
                  ContentType="application/json", Metadata=metadata)
    return ObjectResult(None, None, target.report_key, outcome="unassigned", rejections={problem.reason: 1}, source=_identity(head))


def _check_size(key: str, size: int, limits: Limits) -> None:
    lower = key.lower()
    streamed = lower.endswith((".zip", ".jsonl", ".ndjson"))
    limit = limits.max_archive_bytes if streamed else limits.max_document_bytes
    if size > limit:
        hint = (
            "split it into several archives or JSON Lines files"
            if streamed
            else "split it into several COCO files, or upload per-image DeepFashion2 files or a .zip of them"
        )
        raise UnsupportedObject("object_too_large", f"{key} is {size} bytes; the limit is {limit} bytes: {hint}")
    if not lower.endswith((".json", ".zip", ".jsonl", ".ndjson")):
        raise UnsupportedObject("unsupported_file", f"{key}: expected .json, .zip, .jsonl or .ndjson")
    if size == 0:
        reason = "invalid_archive" if lower.endswith(".zip") else "empty_object"
        raise UnsupportedObject(reason, f"{key} is empty (0 bytes), an interrupted upload perhaps: upload it again")


def _check_archive(key: str, local: str) -> None:
    if key.lower().endswith(".zip") and not zipfile.is_zipfile(local):
        size = os.path.getsize(local)
        raise UnsupportedObject(
            "invalid_archive",
            f"{key} ({size} bytes) is not a zip archive (no zip central directory: truncated, or another format "
            "named .zip): upload a zip of DeepFashion2 .json files again, or the files themselves",
        )


def convert_object(
    s3: Any,
    *,
    bucket: str,
    key: str,
    artifacts_bucket: str,
    concurrency: int = 32,
    limits: Limits | None = None,
    head: dict[str, Any] | None = None,
) -> ObjectResult:
    """Convert ``annotations/<dataset>/<path>`` into its fragment and report.

    Whatever is wrong with the content ends in the report; only AWS errors (``AWS_ERRORS``)
    propagate. ``head`` is the object's HeadObject answer when the caller has it.
    """
    limits = limits or Limits()
    target = target_of(key)
    if target is None or target.problem is not None:
        problem = target.problem if target else UnsupportedObject("outside_annotations_prefix", f"{key} is not under {ANNOTATIONS_PREFIX}<dataset>/")
        raise problem
    dataset, fragment_key, report_key = target.dataset, target.fragment_key, target.report_key
    assert dataset is not None and fragment_key is not None
    result = ObjectResult(dataset, fragment_key, report_key)
    log = RequestLog()
    images = S3ImageStore(s3, bucket, f"images/{dataset}/", log)
    rejected: list[dict[str, Any]] = []
    head = head or s3.head_object(Bucket=bucket, Key=key)

    def reject(reason: str, detail: str) -> None:
        rejected.append(Rejection(key, None, reason, detail).to_dict())
        result.rejections[reason] = result.rejections.get(reason, 0) + 1

    with tempfile.TemporaryDirectory(prefix="convert-") as workdir:
        fragment_path = os.path.join(workdir, "fragment.jsonl")
        with open(fragment_path, "w", encoding="utf-8") as fragment:
            try:
                _check_size(key, head["ContentLength"], limits)
                local, head = download(s3, bucket, key, workdir)
                _check_archive(key, local)
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
                reject(exc.reason, exc.detail)
            except InputError as exc:
                reject("unreadable_object", f"{key}: {exc}")
            except AWS_ERRORS:
                raise
            except Exception as exc:  # noqa: BLE001 - about the content: reported, never retried
                # Retrying cannot help: the same bytes fail the same way. What was converted
                # before the failure stays in the fragment; the report says where it stopped.
                logger.exception("conversion failed", extra={"object_key": key})
                reject("conversion_failed", f"{key}: conversion stopped after {result.records} records "
                       f"({type(exc).__name__}: {exc}); fix the file and upload it again")
        result.probe_requests, result.probe_bytes = log.requests, log.bytes
        result.source = _identity(head)
        metadata = _metadata(key, head)
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
