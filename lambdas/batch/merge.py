"""The merge's reading of a job's parts: listed in S3's order, fetched a bounded number at a time,
handed on in the order listed.

A job of ``MAX_IMAGES`` (2,000,000) leaves 20,000 parts (one per child of ``BATCH_SIZE``); read one
GET at a time at ~15 ms each they alone take five of the merge's 15 minutes. Here up to
``CONCURRENCY`` GETs are in flight (boto3 clients are thread-safe: "Low-level clients are thread
safe", Boto3 guide, https://boto3.amazonaws.com/v1/documentation/api/latest/guide/clients.html),
and at most ``WINDOW`` parts are held at once: the one being written and those fetched ahead of it,
handed on strictly in listing order whatever order their GETs end in.

Parts are named after their batch's first key in hex (``batch.detection.part_key``), and S3 lists
keys "in UTF-8 binary order" (ListObjectsV2,
https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html), so the listing is the
batches' order, but for one case: part_key keeps ``PART_NAME_HEX`` hex characters (200 bytes) of the
key, then a digest, so parts whose first keys share their first 200 bytes list in the digests'
order. ``in_order`` reads the first key of each part of such a run and sorts the run by it.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from batch.detection import PART_NAME_HEX

# GETs in flight: 20,000 parts x 15 ms / 32 = 9.4 s of latency (bench/bench_batch_merge.py).
CONCURRENCY = 32
# Parts held at once (~40 KB each at ~400 bytes a line): the GETs in flight and as many done ahead
# of the one being written, so that one slow GET does not stall the others.
WINDOW = 2 * CONCURRENCY

Get = Callable[[str], bytes]


def getter(s3: Any, bucket: str) -> Get:
    """A part's bytes, by one GET."""
    return lambda key: s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def listed(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    """The parts' keys in listing order, a page (1,000 keys) at a time."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for part in page.get("Contents", []):
            yield part["Key"]


def fetch(get: Get, keys: Iterable[str], *, concurrency: int = CONCURRENCY, window: int = WINDOW) -> Iterator[tuple[str, bytes]]:
    """(key, bytes) of each part, in the order of ``keys``, up to ``concurrency`` GETs in flight and
    ``window`` parts held. A failed GET raises here, in its turn; the GETs not yet started are then
    cancelled (the pool is shut down when the caller stops, as it does on an error)."""
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="merge-get")
    pending: deque[tuple[str, Future[bytes]]] = deque()
    try:
        for key in keys:
            pending.append((key, pool.submit(get, key)))
            if len(pending) >= max(window, 1):
                first, future = pending.popleft()
                yield first, future.result()
        while pending:
            first, future = pending.popleft()
            yield first, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def in_order(get: Get, keys: Iterable[str], prefix: str, *, concurrency: int = CONCURRENCY) -> Iterator[str]:
    """``keys`` (the listing) in the order of their batches' first keys: as listed, but for runs of
    parts whose names keep the same cut hex (their first keys share 200 bytes), sorted by the first
    key each holds (read from the part: one more GET for each part of such a run, none otherwise)."""
    run: list[str] = []
    run_hex: str | None = None
    for key in keys:
        cut = _cut_hex(key, prefix)
        if cut is not None and cut == run_hex:
            run.append(key)
            continue
        yield from _sorted(get, run, concurrency)
        run, run_hex = [key], cut
    yield from _sorted(get, run, concurrency)


def _cut_hex(key: str, prefix: str) -> str | None:
    """The hex of a part's name when part_key may have cut it (PART_NAME_HEX characters), else None."""
    head = key[len(prefix):].partition("-")[0] if key.startswith(prefix) else ""
    return head if len(head) == PART_NAME_HEX else None


def _sorted(get: Get, run: list[str], concurrency: int) -> list[str]:
    if len(run) < 2:
        return run
    # Keys are compared as str: Unicode code point order is UTF-8 byte order (RFC 3629, section 1).
    firsts = {key: first_key(body) for key, body in fetch(get, run, concurrency=concurrency)}
    return sorted(run, key=lambda key: firsts[key])


def first_key(body: bytes) -> str:
    """The key of a part's first line ("" for a part without lines)."""
    for raw in body.splitlines():
        if raw.strip():
            return str(json.loads(raw)["key"])
    return ""
