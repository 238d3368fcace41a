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

Ranges. A COCO file with more images than ``Limits.images_per_invocation`` is converted in
parts, ranges of that many image entries (``CocoStream.items(start, stop)``), so that no
invocation runs into the function's timeout with nothing written: the invocation handling the
S3 event converts range 0 into part 1 (``fragments/<dataset>/<path>.part-00001-of-0000N.jsonl``
and its report, ``layout.output_keys``) and sends one range message per further part to the
converter's own queue (``RANGE_MESSAGE``); each message is converted by another invocation into
its own part. Assembly reads fragments and then reports in key order, and the parts' keys sort
in range order, so the parts give the same manifests and report as one whole conversion.
A range message names the upload it was planned for (version, ETag, LastModified): if the
object has changed or gone since, it writes nothing (the newer upload's own event converts it,
or the removal removes every part); if it changes while the range is written, that write may
have replaced a newer upload's part, so the key is converted again from scratch (an S3-style
event on the queue). Converting range 0 (or the whole object) deletes the parts no longer
produced: those of an earlier upload split otherwise, or the unsplit outputs.

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
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aws_lambda_powertools import Logger
from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError

from fashion_pipeline.s3_events import s3_notification
from converter.s3 import RequestLog, S3ImageStore, download
from fashion_pipeline.convert import Converted, convert_annotation, error_rejection
from fashion_pipeline.ordered import PER_THREAD, in_order
from fashion_pipeline.records import AnnotationError, Rejection
from fashion_pipeline.sources import InputError, open_source
from fashion_pipeline.training import OptionsError, check_dataset_name
from fashion_pipeline.layout import (
    ANNOTATIONS_PREFIX, MAX_KEY_BYTES, MAX_PARTS, REPORT_SUFFIX, UNASSIGNED_PREFIX, is_part_name, output_keys,
    part_of, part_prefixes, report_key_of,
)
from fashion_pipeline.layout import bounded as _bounded

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


class SourceChanged(Exception):
    """The object is no longer the upload a range message was planned for: nothing is written."""


# The body of a range message: {"kind": RANGE_MESSAGE, "bucket", "key", "versionId", "eTag",
# "lastModified", "start", "stop", "part", "parts"} (converter.messages.RangeMessage reads it).
RANGE_MESSAGE = "fashion-pipeline/coco-range/1"
Send = Callable[[list[dict[str, Any]]], None]  # puts message bodies on the converter's queue


@dataclass
class Limits:
    # Every kind streams from /tmp (a COCO file through ijson and an on-disk spool, see
    # fashion_pipeline.coco), so size is bounded by the function's /tmp (4 GB, Ingestion):
    # the object and a spool of about its size.
    max_document_bytes: int = 1024 * 1024 * 1024  # a JSON or COCO file
    max_archive_bytes: int = 1024 * 1024 * 1024  # a .zip or .jsonl
    max_entries: int = 50_000  # annotations per object (not COCO), to finish well within the timeout
    # Images of a COCO file per invocation; a larger file is converted in ranges of this many
    # (see the module docstring). Probing runs at ~275 images/s with 32 threads and 20 ms per
    # S3 GET (bench/README.md), so 20,000 take ~75 s: a quarter of the default 300 s timeout,
    # leaving room for downloading and spooling a file of up to 1 GB.
    images_per_invocation: int = 20_000


@dataclass(frozen=True)
class Part:
    """Image entries ``start`` up to ``stop`` of a COCO file: part ``index`` (1-based) of ``count``."""

    index: int
    count: int
    start: int
    stop: int


def plan_parts(images: int, per_invocation: int) -> list[Part]:
    """The ranges a COCO file of ``images`` entries is converted in (one part when it fits)."""
    per = max(1, per_invocation)
    count = max(1, -(-images // per))
    if count > MAX_PARTS:  # the key layout's five digits; a file this large fails /tmp long before
        raise UnsupportedObject("too_many_entries", f"{images} images would take {count} parts; the limit is {MAX_PARTS}: split the file")
    return [Part(i + 1, count, i * per, min(images, (i + 1) * per)) for i in range(count)]


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
    part: Part | None = None  # the range converted, when the object is converted in parts
    pending: list[Part] = field(default_factory=list)  # the ranges left to other invocations (range messages)


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
    if is_part_name(path):
        # Its outputs would sit among the parts of another object's (and be deleted with them).
        problem = UnsupportedObject(
            "reserved_name",
            f"{key}: a name ending in '.part-NNNNN-of-NNNNN' is reserved for the parts of a large COCO file's outputs: "
            "rename it (e.g. end it in .json)",
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
    send: Send | None = None,
) -> ObjectResult | None:
    """Make the outputs of ``key`` match the object as it is now (see the module docstring).

    ``removed``: the event was an ObjectRemoved one. Returns None for a key that is no
    annotation object. Raises an ``AWS_ERRORS`` error (S3 failed) or ``ObjectChanging``: both
    mean "deliver this event again". A COCO file converted in parts converts its first here;
    the other ranges are sent as range messages through ``send`` (the converter's queue), or,
    without ``send``, converted here one after the other (for callers that have no queue and
    no timeout, such as tests and benchmarks).
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
                if target.dataset is not None:
                    _remove_other_parts(s3, artifacts_bucket, target, result)
            except ClientError as exc:
                if _missing(exc):  # deleted while it was read: the next pass removes the outputs
                    continue
                raise
        # Checked after writing: a change that raced with this pass is seen here (and the pass
        # repeated); a change after this check comes with its own event, processed after it.
        now = _head(s3, bucket, key)
        if (now is None) if result.source is None else (now is not None and _identity(now) == result.source):
            if result.pending:
                # Sent only once the first part matches the object, and after the stale parts
                # were deleted, so no deletion of this pass can remove a part these messages write.
                _continue_ranges(s3, bucket=bucket, key=key, artifacts_bucket=artifacts_bucket, result=result,
                                 concurrency=concurrency, limits=limits or Limits(), send=send)
            return result
    raise ObjectChanging(f"s3://{bucket}/{key} changed during each of {MAX_PASSES} passes; SQS delivers the event again")


def _delete_outputs(s3: Any, artifacts_bucket: str, target: Target) -> None:
    for output in target.output_keys:
        s3.delete_object(Bucket=artifacts_bucket, Key=output)
    if target.dataset is not None:
        _delete_parts(s3, artifacts_bucket, target, keep=set(), orphan_reports=True)


def _may_have_parts(key: str) -> bool:
    # Only a .json object can be COCO (fashion_pipeline.sources.open_source), hence in parts; a
    # key keeps its name across uploads, so other keys never need the listing.
    return key.lower().endswith(".json")


def _list(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [entry["Key"] for entry in page.get("Contents", [])]
    return keys


def _delete_parts(s3: Any, artifacts_bucket: str, target: Target, *, keep: set[str], orphan_reports: bool) -> None:
    """Delete the parts' outputs of ``target`` not in ``keep``: each fragment, then its report
    (so that a listed fragment always has its report), then, with ``orphan_reports``, reports
    left without their fragment by an interrupted deletion (listing them costs a request more,
    spent on removals only: assembly reads a report only beside its fragment)."""
    if not _may_have_parts(target.key):
        return
    assert target.dataset is not None
    path = target.key[len(ANNOTATIONS_PREFIX) + len(target.dataset) + 1 :]
    fragments_prefix, reports_prefix = part_prefixes(target.dataset, path)
    fragments = [k for k in _list(s3, artifacts_bucket, fragments_prefix) if part_of(k, fragments_prefix) and k not in keep]
    for fragment in fragments:
        s3.delete_object(Bucket=artifacts_bucket, Key=fragment)
        report = report_key_of(fragment)
        if report not in keep:
            s3.delete_object(Bucket=artifacts_bucket, Key=report)
    if orphan_reports:
        for report in _list(s3, artifacts_bucket, reports_prefix):
            if part_of(report, reports_prefix) and report not in keep:
                s3.delete_object(Bucket=artifacts_bucket, Key=report)


def _remove_other_parts(s3: Any, artifacts_bucket: str, target: Target, result: ObjectResult) -> None:
    """After converting the whole object or its range 0: remove what an earlier upload left that
    this one does not produce (its parts, or the unsplit outputs when this one is in parts).
    Every part but the first is deleted too, even one of the same count: it may hold an earlier
    upload's images, and this upload's range messages, sent next, write it again."""
    if result.part is None:
        _delete_parts(s3, artifacts_bucket, target, keep=set(), orphan_reports=False)
        return
    for output in target.output_keys:  # fragment, then report
        s3.delete_object(Bucket=artifacts_bucket, Key=output)
    _delete_parts(s3, artifacts_bucket, target, keep={result.fragment_key or "", result.report_key}, orphan_reports=False)


def range_message(bucket: str, key: str, source: tuple[str, str, str], part: Part) -> dict[str, Any]:
    """The body of the message that asks another invocation to convert ``part``."""
    version, etag, modified = source
    return {"kind": RANGE_MESSAGE, "bucket": bucket, "key": key, "versionId": version or None, "eTag": etag,
            "lastModified": modified, "start": part.start, "stop": part.stop, "part": part.index, "parts": part.count}


def _continue_ranges(s3: Any, *, bucket: str, key: str, artifacts_bucket: str, result: ObjectResult,
                     concurrency: int, limits: Limits, send: Send | None) -> None:
    assert result.source is not None
    if send is not None:
        send([range_message(bucket, key, result.source, part) for part in result.pending])
        return
    for part in result.pending:
        convert_range(s3, bucket=bucket, key=key, artifacts_bucket=artifacts_bucket, source=result.source, part=part,
                      concurrency=concurrency, limits=limits, send=None)


def convert_range(
    s3: Any,
    *,
    bucket: str,
    key: str,
    artifacts_bucket: str,
    source: tuple[str, str, str],
    part: Part,
    concurrency: int = 32,
    limits: Limits | None = None,
    send: Send | None = None,
) -> ObjectResult | None:
    """Convert one range of a COCO file (a range message) into its part, if the object is still
    the upload ``source`` names (version, ETag, LastModified); else write nothing and return an
    outcome ``stale``. None for a key that is no dataset's annotation object.

    If the object changes while the part is written, this write may have replaced the newer
    upload's part: the key is then converted again from the start (through ``send``, or here
    without it), and the outcome is ``superseded``. Raises ``AWS_ERRORS`` only.
    """
    target = target_of(key)
    if target is None or target.problem is not None:
        return None
    head = _head(s3, bucket, key)
    stale = ObjectResult(target.dataset, None, target.report_key, outcome="stale", part=part)
    if head is None or _identity(head) != source:
        return stale
    try:
        result = convert_object(s3, bucket=bucket, key=key, artifacts_bucket=artifacts_bucket, concurrency=concurrency,
                                limits=limits, head=head, part=part, expected=source)
    except SourceChanged:
        return stale
    except ClientError as exc:
        if _missing(exc):  # deleted between the check and the download
            return stale
        raise
    now = _head(s3, bucket, key)
    if now is None or _identity(now) != source:
        result.outcome = "superseded"
        if send is not None:
            send([s3_notification(bucket, key, event_name="ObjectCreated:Put")])
        else:
            sync_object(s3, bucket=bucket, key=key, artifacts_bucket=artifacts_bucket, concurrency=concurrency, limits=limits)
    return result


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
    part: Part | None = None,
    expected: tuple[str, str, str] | None = None,
) -> ObjectResult:
    """Convert ``annotations/<dataset>/<path>`` into its fragment and report.

    Whatever is wrong with the content ends in the report; only AWS errors (``AWS_ERRORS``)
    propagate. ``head`` is the object's HeadObject answer when the caller has it.

    A COCO file of more than ``limits.images_per_invocation`` images is converted in parts:
    without ``part``, its first range is converted here into part 1 and the others are left in
    ``result.pending``; with ``part`` (a range message), that range, if the object read is still
    the upload ``expected`` names (else ``SourceChanged``, and nothing is written).
    """
    limits = limits or Limits()
    target = target_of(key)
    if target is None or target.problem is not None:
        problem = target.problem if target else UnsupportedObject("outside_annotations_prefix", f"{key} is not under {ANNOTATIONS_PREFIX}<dataset>/")
        raise problem
    dataset, fragment_key, report_key = target.dataset, target.fragment_key, target.report_key
    assert dataset is not None and fragment_key is not None
    path = key[len(ANNOTATIONS_PREFIX) + len(dataset) + 1 :]
    if part is not None:
        fragment_key, report_key = output_keys(dataset, path, part.index, part.count)
    result = ObjectResult(dataset, fragment_key, report_key, part=part)
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
                # The current object, not the planned version by its id: reading a version by id
                # needs s3:GetObjectVersion, and a range of any other upload is of no use anyway.
                # What was read is checked to be the upload range 0 planned (version, ETag, date).
                local, head = download(s3, bucket, key, workdir)
                if expected is not None and _identity(head) != expected:
                    raise SourceChanged(f"s3://{bucket}/{key} is no longer the upload the range was planned for")
                _check_archive(key, local)
                source = open_source(local, name=key)
                items: Iterable[Any] = source
                if source.kind == "coco":
                    plan = plan_parts(source.total, limits.images_per_invocation)
                    if part is None and len(plan) > 1:
                        part, result.pending = plan[0], plan[1:]
                        result.part = part
                        result.fragment_key, result.report_key = fragment_key, report_key = output_keys(dataset, path, part.index, part.count)
                    if part is not None:
                        if not (0 <= part.start < part.stop <= source.total and 1 <= part.index <= part.count):
                            raise UnsupportedObject("invalid_range", f"{key}: images {part.start}..{part.stop} are not within its {source.total} images")
                        items = source.items(part.start, part.stop)
                elif part is not None:
                    raise UnsupportedObject("invalid_range", f"{key} is no longer a COCO file, so it has no ranges of images")
                elif source.total > limits.max_entries:
                    raise UnsupportedObject(
                        "too_many_entries",
                        f"{key} holds {source.total} annotations; the limit per object is {limits.max_entries}: split it",
                    )
                for converted in _convert_all(items, source.name, images, concurrency):
                    for rejection in converted.rejections:
                        rejected.append(rejection.to_dict())
                        result.rejections[rejection.reason] = result.rejections.get(rejection.reason, 0) + 1
                    if converted.record is not None:
                        fragment.write(json.dumps(converted.record.to_dict(), ensure_ascii=False) + "\n")
                        result.records += 1
                        result.boxes += len(converted.record.boxes)
            except SourceChanged:
                raise
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
        **({"part": {"index": part.index, "of": part.count, "images": [part.start, part.stop]}} if part is not None else {}),
        "fragment": f"s3://{artifacts_bucket}/{fragment_key}",
        "records": result.records,
        "boxes": result.boxes,
        "rejections": dict(sorted(result.rejections.items())),
        "probe": {"requests": log.requests, "bytes": log.bytes},
        "rejected": rejected,
    }
    s3.put_object(Bucket=artifacts_bucket, Key=report_key, Body=json.dumps(report, indent=1).encode(), ContentType="application/json", Metadata=metadata)
    return result


def _convert_all(source: Iterable[Any], name: str, images: S3ImageStore, concurrency: int) -> Iterator[Converted]:
    """Probe images concurrently, yielding results in input order (see ordered.in_order)."""
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:

        def jobs() -> Iterator[tuple[Any, int]]:
            for item, created in source:
                if isinstance(item, Rejection):
                    yield Converted(None, [item]), 0
                elif isinstance(item, AnnotationError):
                    yield Converted(None, [error_rejection(item, name)]), 0
                else:
                    yield pool.submit(convert_annotation, item, images, created=created), 0

        yield from in_order(jobs(), window=max(1, concurrency) * PER_THREAD)
