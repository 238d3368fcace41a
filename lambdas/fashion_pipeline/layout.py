"""The buckets' key layout, in one place for the runtime and the constructs alike.

Dataset bucket (what users upload):
    images/<dataset>/...               the images
    annotations/<dataset>/...          annotation objects; each upload is converted
    requests/<dataset>.json            a training request
    batch/<job>.json                   a batch detection job (one level: batch/a/b.json is none)
Artifacts bucket (what the pipeline derives):
    fragments/<dataset>/<path>.jsonl   the records converted from annotations/<dataset>/<path>
    reports/<dataset>/<path>.json      what that conversion left out, and why
    fragments/<dataset>/<path>.part-00001-of-00004.jsonl (and its report, .json)
                                       one range of a COCO file converted in several parts
    runs/<dataset>/<run-id>/           one training run: manifests, summary, report, outcome
    runs/<dataset>/<run-id>/shards/    the pieces the Distributed Map's children assemble
    unassigned/<annotation key>.json   the report of an object under no valid dataset folder
    batch/<job>/results.jsonl          a batch job's answers, one line per listed object
    batch/<job>/summary.json           its outcome: counts, errors by reason, garments by label
    batch/<job>/parts/<run-id>/        the pieces its Distributed Map's children write
    batch/<job>/rendered/<image key>.png  with "render": each image, its garments outlined

The constructs grant on these prefixes (infrastructure/storage.py imports them from here).

Resource names live here too: the stack's, which the CLI and local mode look outputs up by, and
the Custom Labels projects', which the IAM grants and the auto-stop match by prefix.
"""

from __future__ import annotations

import hashlib
import re

IMAGES_PREFIX = "images/"
ANNOTATIONS_PREFIX = "annotations/"
REQUESTS_PREFIX = "requests/"
FRAGMENTS_PREFIX = "fragments/"
REPORTS_PREFIX = "reports/"
# A top-level prefix: any name under reports/ could be a valid dataset's.
UNASSIGNED_PREFIX = "unassigned/"
RUNS_PREFIX = "runs/"
# Batch jobs: the request in the dataset bucket, the outputs under the same prefix in the
# artifacts bucket (derived data lives there).
BATCH_PREFIX = "batch/"

# The CloudFormation stack app.py deploys; `--stack` overrides it for a second deployment.
STACK_NAME = "FashionPipeline"
# Each dataset trains in the Custom Labels project "fashion-pipeline-<dataset>"; the pipeline's
# IAM grants (infrastructure/training.py, infrastructure/api.py) and its auto-stop cover exactly
# the projects with this prefix, so a run named any other way would be denied.
PROJECT_PREFIX = "fashion-pipeline-"


def project_name(dataset: str) -> str:
    return f"{PROJECT_PREFIX}{dataset}"


# Each dataset's live model is named by one SSM parameter, "<prefix>/<dataset>" (the model
# pointer, lifecycle.ModelPointer's JSON): the training workflow writes it when it deploys, the
# CLI's ``deploy`` when it promotes or rolls back, and the inference API lists the prefix
# (GetParametersByPath) to answer for every dataset. The prefix is the config's modelParameterPrefix.
MODEL_PARAMETER_PREFIX = "/fashion-pipeline/models"


def model_pointer_name(prefix: str, dataset: str) -> str:
    """The SSM parameter naming ``dataset``'s live model."""
    return f"{prefix.rstrip('/')}/{dataset}"


def dataset_of_pointer(prefix: str, parameter_name: str) -> str | None:
    """The dataset whose pointer ``parameter_name`` is, or None for a name outside the prefix
    (or one level deeper: a dataset name holds no slash)."""
    head = prefix.rstrip("/") + "/"
    if not parameter_name.startswith(head):
        return None
    dataset = parameter_name[len(head):]
    return dataset if dataset and "/" not in dataset else None
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


# A COCO file too large for one invocation is converted in parts, one range of its images each
# (converter.ingest). Five digits, zero-padded, so that key order is range order (assembly reads
# fragments, then reports, sorted by key) and 99,999 parts of 20,000 images cover any file /tmp holds.
MAX_PARTS = 99_999
PART_SUFFIX_LENGTH = len(".part-00001-of-00001")
_PART = re.compile(r"\.part-(\d{5})-of-(\d{5})$")


def output_keys(dataset: str, path: str, part: int | None = None, parts: int | None = None) -> tuple[str, str]:
    """The fragment and report keys of ``annotations/<dataset>/<path>`` (the same ``<rest>``
    in both, so a report is always found from its fragment's key); with ``part`` and
    ``parts``, those of part ``part`` (1-based) of ``parts``: ``<rest>.part-00001-of-00004``."""
    if part is None:
        rest = bounded(f"{dataset}/{path}", MAX_KEY_BYTES - len(FRAGMENTS_PREFIX) - len(FRAGMENT_SUFFIX))
    else:
        if parts is None or not 1 <= part <= parts <= MAX_PARTS:
            raise ValueError(f"part {part} of {parts}: expected 1 <= part <= parts <= {MAX_PARTS}")
        rest = _part_stem(dataset, path) + f".part-{part:05d}-of-{parts:05d}"
    return f"{FRAGMENTS_PREFIX}{rest}{FRAGMENT_SUFFIX}", f"{REPORTS_PREFIX}{rest}{REPORT_SUFFIX}"


def _part_stem(dataset: str, path: str) -> str:
    # Bounded with room for the part suffix, so that every part of one object shares this stem.
    return bounded(f"{dataset}/{path}", MAX_KEY_BYTES - len(FRAGMENTS_PREFIX) - len(FRAGMENT_SUFFIX) - PART_SUFFIX_LENGTH)


def part_prefixes(dataset: str, path: str) -> tuple[str, str]:
    """The prefixes under which every part's fragment and report of ``annotations/<dataset>/<path>``
    are listed (whatever their count); a listed key is one of its parts if ``part_of`` says so."""
    stem = _part_stem(dataset, path)
    return f"{FRAGMENTS_PREFIX}{stem}.part-", f"{REPORTS_PREFIX}{stem}.part-"


_PART_TAIL = re.compile(r"(\d{5})-of-(\d{5})(?:\.jsonl|\.json)")


def part_of(output_key: str, prefix: str | None = None) -> tuple[int, int] | None:
    """(part, parts) of a part's fragment or report key; None for any other key. With
    ``prefix`` (one of ``part_prefixes``), only of that object's parts: the parts of
    ``annotations/d/x.json.part-a.json`` are listed under ``x.json``'s prefix too."""
    if prefix is not None:
        match = _PART_TAIL.fullmatch(output_key[len(prefix) :]) if output_key.startswith(prefix) else None
        return (int(match.group(1)), int(match.group(2))) if match else None
    for suffix in (FRAGMENT_SUFFIX, REPORT_SUFFIX):
        if output_key.endswith(suffix) and (match := _PART.search(output_key[: -len(suffix)])):
            return int(match.group(1)), int(match.group(2))
    return None


def is_part_name(path: str) -> bool:
    """Whether an annotation path ends like a part (``x.part-00001-of-00002``): its outputs
    would be taken for a part of ``x``'s, so the converter reports it instead."""
    return _PART.search(path) is not None


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


# Each run's evaluation report (lambdas/evaluation_report): index.html, its charts/ and thumbs/,
# and compare.html when it was compared with the dataset's previous live model.
EVALUATION_FOLDER = "evaluation/"  # under a run's prefix
REPORT_PAGE = "index.html"


def run_report_prefix(run_prefix: str) -> str:
    """Where a run's evaluation report is written: ``runs/<dataset>/<run-id>/evaluation/``."""
    if not (run_prefix.startswith(RUNS_PREFIX) and run_prefix.endswith("/") and run_prefix.count("/") == 3):
        raise ValueError(f"{run_prefix!r} is not a run's prefix ({RUNS_PREFIX}<dataset>/<run-id>/)")
    return run_prefix + EVALUATION_FOLDER


# -- batch detection jobs ---------------------------------------------------------------------
BATCH_REQUEST_SUFFIX = ".json"


def batch_request_key(job: str) -> str:
    """Where the job ``job`` is requested, in the dataset bucket."""
    return f"{BATCH_PREFIX}{job}{BATCH_REQUEST_SUFFIX}"


def batch_job_of(key: str) -> str | None:
    """The job a dataset-bucket key requests: ``batch/<job>.json`` at one level, else None
    (``batch/a/b.json`` or ``batch/x.txt`` request nothing). The name is not checked here."""
    if not (key.startswith(BATCH_PREFIX) and key.endswith(BATCH_REQUEST_SUFFIX)):
        return None
    job = key[len(BATCH_PREFIX) : -len(BATCH_REQUEST_SUFFIX)]
    return job if job and "/" not in job else None


def batch_output_prefix(job: str) -> str:
    return f"{BATCH_PREFIX}{job}/"


def batch_results_key(job: str) -> str:
    return batch_output_prefix(job) + "results.jsonl"


def batch_summary_key(job: str) -> str:
    return batch_output_prefix(job) + "summary.json"


def batch_parts_prefix(job: str, run_id: str) -> str:
    """One execution's parts: a job run again never reads the parts of an earlier run."""
    return batch_output_prefix(job) + f"parts/{run_id}/"


def batch_rendered_key(job: str, image_key: str) -> str:
    head = batch_output_prefix(job) + "rendered/"
    return head + bounded(image_key, MAX_KEY_BYTES - len(head.encode()) - len(".png")) + ".png"
