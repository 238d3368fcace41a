"""The buckets' key layout, in one place for the runtime and the constructs alike.

Dataset bucket (what users upload):
    images/<dataset>/...               the images
    annotations/<dataset>/...          annotation objects; each upload is converted
    requests/<dataset>.json            a training request
Artifacts bucket (what the pipeline derives):
    fragments/<dataset>/<path>.jsonl   the records converted from annotations/<dataset>/<path>
    reports/<dataset>/<path>.json      what that conversion left out, and why
    runs/<dataset>/<run-id>/           one training run: manifests, summary, report, outcome
    runs/<dataset>/<run-id>/shards/    the pieces the Distributed Map's children assemble
    unassigned/<annotation key>.json   the report of an object under no valid dataset folder

The constructs grant on these prefixes (infrastructure/storage.py imports them from here).
"""

from __future__ import annotations

import hashlib

IMAGES_PREFIX = "images/"
ANNOTATIONS_PREFIX = "annotations/"
REQUESTS_PREFIX = "requests/"
FRAGMENTS_PREFIX = "fragments/"
REPORTS_PREFIX = "reports/"
# A top-level prefix: any name under reports/ could be a valid dataset's.
UNASSIGNED_PREFIX = "unassigned/"
RUNS_PREFIX = "runs/"
SHARDS_FOLDER = "shards/"  # under a run's prefix
FRAGMENT_SUFFIX, REPORT_SUFFIX = ".jsonl", ".json"
# "The object key name is a sequence of Unicode characters with UTF-8 encoding of up to 1,024
# bytes long" ("Naming Amazon S3 objects", https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html);
# an output key longer than its input would be refused, so a too-long one ends in a digest.
MAX_KEY_BYTES = 1024


def bounded(text: str, budget: int) -> str:
    """``text`` if it fits ``budget`` UTF-8 bytes, else its start and a digest of the whole."""
    data = text.encode("utf-8")
    if len(data) <= budget:
        return text
    digest = "~" + hashlib.sha256(data).hexdigest()[:16]
    return data[: budget - len(digest)].decode("utf-8", "ignore") + digest


def output_keys(dataset: str, path: str) -> tuple[str, str]:
    """The fragment and report keys of ``annotations/<dataset>/<path>`` (the same ``<rest>``
    in both, so a report is always found from its fragment's key)."""
    rest = bounded(f"{dataset}/{path}", MAX_KEY_BYTES - len(FRAGMENTS_PREFIX) - len(FRAGMENT_SUFFIX))
    return f"{FRAGMENTS_PREFIX}{rest}{FRAGMENT_SUFFIX}", f"{REPORTS_PREFIX}{rest}{REPORT_SUFFIX}"


def fragments_prefix(dataset: str) -> str:
    return f"{FRAGMENTS_PREFIX}{dataset}/"


def report_key_of(fragment_key: str) -> str:
    """The report written beside a fragment (see ``output_keys``)."""
    if not (fragment_key.startswith(FRAGMENTS_PREFIX) and fragment_key.endswith(FRAGMENT_SUFFIX)):
        raise ValueError(f"{fragment_key} is not a fragment key ({FRAGMENTS_PREFIX}<dataset>/<path>{FRAGMENT_SUFFIX})")
    return REPORTS_PREFIX + fragment_key[len(FRAGMENTS_PREFIX) : -len(FRAGMENT_SUFFIX)] + REPORT_SUFFIX


def image_prefix(dataset_bucket: str, dataset: str) -> str:
    """Where a dataset's manifest lines must point."""
    return f"s3://{dataset_bucket}/{IMAGES_PREFIX}{dataset}/"


def shards_prefix(run_prefix: str) -> str:
    return run_prefix + SHARDS_FOLDER
