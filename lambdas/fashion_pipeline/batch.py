"""Batch detection over an S3 prefix: the job request, the decisions and the tallies. No AWS here.

A job is requested by uploading ``batch/<job>.json`` to the dataset bucket (``layout``):

    {"dataset": "demo", "source": "s3://<dataset bucket>/images/demo/", "render": false,
     "min_confidence": null, "tps_per_unit": 4, "poll_seconds": 30, "start_timeout_minutes": 30}

``dataset`` names the model (its pointer, ``layout.model_pointer_name``); ``source`` is the
prefix whose every object is sent to it. Only the dataset bucket's ``images/`` prefix may be
read: "For Amazon Rekognition to process an S3 object, the user must have permission to access
the S3 object" (Rekognition API reference, S3Object,
https://docs.aws.amazon.com/rekognition/latest/APIReference/API_S3Object.html), so the job's
detecting role, which calls DetectCustomLabels with the image's S3Object, may read ``images/*`` only.

How fast a model answers is not a documented constant: "The transactions per second (TPS) that a
single inference unit supports is affected by" the kind of model, its complexity, the image's
resolution and size, the number of objects, and bytes versus S3 ("Running a trained Amazon
Rekognition Custom Labels model", Inference units,
https://docs.aws.amazon.com/rekognition/latest/customlabels-dg/running-model.html), and calls
beyond it are answered ``ProvisionedThroughputExceededException``. So the job assumes
``tps_per_unit`` (default ``DEFAULT_TPS_PER_UNIT``) for both its bound and its estimate: as many
children run at once as the model's units times that figure, each making one call at a time
(a call and its header read take about a second, so each child asks at most about once a
second); throttling above it is retried with a bounded backoff, then reported per image.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .layout import IMAGES_PREFIX
from .lifecycle import USD_PER_INFERENCE_UNIT_HOUR
from .training import DATASET_NAME

JOB_NAME = DATASET_NAME  # the same rule as dataset names: 1-64 letters, digits, '.', '_' or '-'
DEFAULT_TPS_PER_UNIT = 4
MAX_TPS_PER_UNIT = 50
# A Distributed Map runs at most 10,000 child executions in parallel ("Quotas related to
# Distributed Map", https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html);
# Lambda's default account concurrency, 1,000, shared with the rest of the stack, binds first.
MAX_CONCURRENCY = 500
# Images per child (the ItemBatcher's MaxItemsPerBatch): ~100 s of calls at a second each, far
# inside the child's 15 minutes; a child whose images are throttled stops backing off a minute
# before its timeout (batch.detection's deadline), so it always writes its part. Each child
# returns 10 bytes ({"n":100} and a comma); the Map's output (every child's) stays under the
# 256 KiB a state may pass on up to ~26,000 batches, 2.6 million images: MAX_IMAGES is below.
BATCH_SIZE = 100
MAX_IMAGES = 2_000_000
# The Custom Labels guide's estimate of a restart's downtime, "10-20 minutes" (Running a trained
# model, "Manually add or remove inference units"): the estimate takes the upper end.
START_MINUTES = 20
DEFAULT_POLL_SECONDS = 30
MAX_POLL_SECONDS = 600
DEFAULT_START_TIMEOUT_MINUTES = 30
MAX_START_TIMEOUT_MINUTES = 120
# An execution holds at most 25,000 history events (training.HISTORY_EVENT_LIMIT); one poll of
# the model's start writes 21 at most, its retries included (tests/infrastructure/
# test_workflow_contract.py measures it and checks that this many polls fit with the rest of the
# job), so a job polls at most this many times, and a request whose timeout needs more is refused.
MAX_START_POLLS = 1000
# Throttling of one image: retried this many times at most, the wait doubling from the base
# with full jitter and capped ("Exponential backoff and jitter", AWS Architecture Blog,
# https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/), then the
# image's line says "throttled". 6 attempts wait at most 0.5+1+2+4+8 = 15.5 s.
RETRY_ATTEMPTS = 6
RETRY_BASE_SECONDS = 0.5
RETRY_CAP_SECONDS = 8.0

# What a result line's "error.reason" may say.
NOT_AN_IMAGE = "not_an_image"  # not a JPEG or PNG (a text file, a GIF, a folder marker)
IMAGE_CORRUPT = "image_corrupt"  # the header does not parse, or Rekognition cannot decode the rest
IMAGE_TOO_LARGE = "image_too_large"  # over 15 MB
IMAGE_DIMENSIONS = "image_dimensions"  # a side outside 64-4096 px
IMAGE_ASPECT_RATIO = "image_aspect_ratio"  # longer side over 20 x the shorter
IMAGE_MISSING = "image_missing"  # deleted (or archived) since it was listed
THROTTLED = "throttled"  # still throttled after RETRY_ATTEMPTS
MODEL_NOT_RUNNING = "model_not_running"  # the model stopped during the job
SERVICE_ERROR = "service_error"  # Rekognition's internal error, after the retries
IMAGE_REJECTED = "image_rejected"  # Rekognition refused the image as a parameter (its message says why)
REASONS = (NOT_AN_IMAGE, IMAGE_CORRUPT, IMAGE_TOO_LARGE, IMAGE_DIMENSIONS, IMAGE_ASPECT_RATIO, IMAGE_MISSING,
           THROTTLED, MODEL_NOT_RUNNING, SERVICE_ERROR, IMAGE_REJECTED)  # fmt: skip
# fashion_pipeline.images' ImageError reasons, as result reasons.
IMAGE_REASONS = {
    "image_unsupported_format": NOT_AN_IMAGE, "image_corrupt": IMAGE_CORRUPT, "image_file_too_large": IMAGE_TOO_LARGE,
    "image_dimensions": IMAGE_DIMENSIONS, "image_aspect_ratio": IMAGE_ASPECT_RATIO,
}  # fmt: skip

# Why a job did not run (the summary's "reason_code").
INVALID_JOB_NAME = "invalid_job_name"
INVALID_REQUEST = "invalid_request"
SOURCE_OUTSIDE_IMAGES = "source_outside_images"
NO_MODEL = "no_model"
MODEL_UNAVAILABLE = "model_unavailable"
TOO_MANY_IMAGES = "too_many_images"


class JobRefused(ValueError):
    """A job that will not run; ``code`` is one of the codes above, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_job_name(job: Any) -> str:
    if not isinstance(job, str) or not JOB_NAME.match(job):
        raise JobRefused(INVALID_JOB_NAME, f"job name {job!r} must be 1-64 letters, digits, '.', '_' or '-' "
                                           "(the request is batch/<job>.json)")
    return job


def parse_source(source: Any, dataset_bucket: str) -> str:
    """The key prefix of ``s3://<dataset bucket>/images/...``; JobRefused for anything else."""
    if not isinstance(source, str) or not source.startswith("s3://"):
        raise JobRefused(INVALID_REQUEST, f"source must be an s3://BUCKET/PREFIX/ URI, got {source!r}")
    bucket, _, prefix = source[len("s3://"):].partition("/")
    if bucket != dataset_bucket or not prefix.startswith(IMAGES_PREFIX) or ".." in prefix.split("/"):
        raise JobRefused(SOURCE_OUTSIDE_IMAGES, f"source {source} is outside s3://{dataset_bucket}/{IMAGES_PREFIX}: a batch job "
                                                f"reads only the dataset bucket's {IMAGES_PREFIX} prefix")
    return prefix


@dataclass(frozen=True)
class BatchRequest:
    dataset: str
    source_prefix: str
    render: bool = False
    min_confidence: float | None = None
    tps_per_unit: int = DEFAULT_TPS_PER_UNIT
    poll_seconds: int = DEFAULT_POLL_SECONDS
    start_timeout_minutes: int = DEFAULT_START_TIMEOUT_MINUTES

    FIELDS = ("dataset", "source", "render", "min_confidence", "tps_per_unit", "poll_seconds", "start_timeout_minutes")

    @classmethod
    def parse(cls, doc: Any, *, dataset_bucket: str) -> BatchRequest:
        """A job request's JSON object -> BatchRequest; JobRefused naming the field otherwise."""
        if not isinstance(doc, Mapping):
            raise JobRefused(INVALID_REQUEST, "the request must be a JSON object")
        unknown = sorted(set(doc) - set(cls.FIELDS))
        if unknown:
            raise JobRefused(INVALID_REQUEST, f"unknown field(s) {', '.join(unknown)}; a request has {', '.join(cls.FIELDS)}")
        dataset = doc.get("dataset")
        if not isinstance(dataset, str) or not DATASET_NAME.match(dataset):
            raise JobRefused(INVALID_REQUEST, f"dataset {dataset!r} must be a dataset name (1-64 letters, digits, '.', '_' or '-')")
        if "source" not in doc:
            raise JobRefused(INVALID_REQUEST, "source is required (s3://BUCKET/images/PREFIX/)")
        prefix = parse_source(doc["source"], dataset_bucket)
        render = doc.get("render", False)
        if not isinstance(render, bool):
            raise JobRefused(INVALID_REQUEST, f"render must be true or false, got {render!r}")
        confidence = doc.get("min_confidence")
        if confidence is not None and (isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 <= confidence <= 100):
            raise JobRefused(INVALID_REQUEST, f"min_confidence must be a number from 0 to 100, got {confidence!r}")
        poll_seconds = _whole(doc, "poll_seconds", DEFAULT_POLL_SECONDS, 0, MAX_POLL_SECONDS)
        timeout = _whole(doc, "start_timeout_minutes", DEFAULT_START_TIMEOUT_MINUTES, 1, MAX_START_TIMEOUT_MINUTES)
        if _polls(timeout, poll_seconds) > MAX_START_POLLS:
            raise JobRefused(INVALID_REQUEST, f"start_timeout_minutes {timeout} at poll_seconds {poll_seconds} needs "
                                              f"{_polls(timeout, poll_seconds)} polls, more than the {MAX_START_POLLS} an execution's "
                                              f"history holds: poll at least every {math.ceil(timeout * 60 / MAX_START_POLLS)} s")
        return cls(
            dataset=dataset, source_prefix=prefix, render=render, min_confidence=None if confidence is None else float(confidence),
            tps_per_unit=_whole(doc, "tps_per_unit", DEFAULT_TPS_PER_UNIT, 1, MAX_TPS_PER_UNIT),
            poll_seconds=poll_seconds, start_timeout_minutes=timeout,
        )

    @property
    def start_polls(self) -> int:
        """How many polls the start may take: the timeout at the poll interval (0 s counts as 1 s)."""
        return _polls(self.start_timeout_minutes, self.poll_seconds)


def _polls(timeout_minutes: int, poll_seconds: int) -> int:
    return max(1, math.ceil(timeout_minutes * 60 / max(poll_seconds, 1)))


def _whole(doc: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = doc.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise JobRefused(INVALID_REQUEST, f"{name} must be a whole number from {low} to {high}, got {value!r}")
    return value


def max_concurrency(inference_units: int, tps_per_unit: int = DEFAULT_TPS_PER_UNIT) -> int:
    """Children at once (the Map's MaxConcurrency): each makes one call at a time, so this is
    the calls in flight, bounded by what the units answer (see the module's docstring)."""
    if inference_units < 1 or tps_per_unit < 1:
        raise ValueError(f"inference units and TPS per unit must be positive, got {inference_units}, {tps_per_unit}")
    return min(inference_units * tps_per_unit, MAX_CONCURRENCY)


# What the model's status at the start means for the job: (start it, wait for it) or a refusal.
STARTABLE = ("STOPPED", "TRAINING_COMPLETED")


def start_decision(status: str) -> tuple[bool, bool]:
    """(start, wait): RUNNING runs at once, STARTING is waited for, STOPPED is started and
    waited for; any other status refuses the job (JobRefused, MODEL_UNAVAILABLE)."""
    if status == "RUNNING":
        return False, False
    if status == "STARTING":
        return False, True
    if status in STARTABLE:
        return True, True
    hint = " (wait until it is STOPPED, then run the job again)" if status == "STOPPING" else ""
    raise JobRefused(MODEL_UNAVAILABLE, f"the dataset's model is {status}; a batch job needs it RUNNING, STARTING or STOPPED{hint}")


def estimate(images: int, inference_units: int, *, starts_model: bool, tps_per_unit: int = DEFAULT_TPS_PER_UNIT) -> dict[str, Any]:
    """Model time and cost of a job: ``images`` at ``inference_units`` x ``tps_per_unit`` images a
    second (the concurrency cannot ask faster), plus START_MINUTES when the job starts the model.
    The cost is inference-unit hours x USD_PER_INFERENCE_UNIT_HOUR (us-east-1; an estimate)."""
    rate = max_concurrency(inference_units, tps_per_unit)
    detect_hours = images / rate / 3600
    start_hours = START_MINUTES / 60 if starts_model else 0.0
    model_hours = detect_hours + start_hours
    unit_hours = model_hours * inference_units
    return {
        "images": images, "inference_units": inference_units, "starts_model": starts_model,
        "images_per_second": rate, "detect_hours": round(detect_hours, 4), "start_hours": round(start_hours, 4),
        "model_hours": round(model_hours, 4), "inference_unit_hours": round(unit_hours, 4),
        "usd_per_inference_unit_hour": USD_PER_INFERENCE_UNIT_HOUR, "estimated_usd": round(unit_hours * USD_PER_INFERENCE_UNIT_HOUR, 2),
    }  # fmt: skip


def describe_estimate(found: Mapping[str, Any]) -> str:
    """One line: the model time, the inference-unit hours and their cost."""
    start = f" + {START_MINUTES} min to start the model" if found["starts_model"] else ""
    units = found["inference_units"]
    return (f"{found['images']} objects at ~{found['images_per_second']} images/s: {found['detect_hours'] * 60:.1f} min of detection"
            f"{start} = {found['model_hours']:.3f} model hours x {units} inference unit{'s' if units != 1 else ''}"
            f" = {found['inference_unit_hours']:.3f} inference-unit hours, ~${found['estimated_usd']:.2f}"
            f" at ${found['usd_per_inference_unit_hour']:g} per inference-unit hour (us-east-1 price; an estimate)")


# -- result lines and the summary ----------------------------------------------------------------
def error_line(key: str, reason: str, message: str) -> dict[str, Any]:
    if reason not in REASONS:
        raise ValueError(f"unknown error reason {reason!r}")
    return {"key": key, "error": {"reason": reason, "message": message}}


def garments_line(key: str, answer: Mapping[str, Any], rendered: str | None = None) -> dict[str, Any]:
    """A detected image's line: its size and garments as ``detections.shape_answer`` gives them."""
    line: dict[str, Any] = {"key": key, "image": answer["image"], "garments": answer["garments"]}
    if rendered is not None:
        line["rendered"] = rendered
    return line


class Tally:
    """Counts of the result lines as they are read: images, errors by reason, garments by label.

    Lines come in the order the Map listed the objects, S3's: "returned in UTF-8 binary order"
    (ListObjectsV2, https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html), so
    each key must be greater than the one before. Only that one is kept (a set of 2,000,000 keys
    would not be): a key equal to it is a second line for its object (``duplicates``), a smaller
    one is out of order (``out_of_order``: a line repeated further on, or parts merged in the
    wrong order); any repeated key is one or the other. Keys are compared as ``str``: Unicode
    code point order is UTF-8 byte order (RFC 3629, section 1)."""

    def __init__(self) -> None:
        self.lines = 0
        self.answered = 0  # lines with the model's answer (garments, perhaps none)
        self.with_garments = 0
        self.previous: str | None = None  # the last key read
        self.duplicates = 0
        self.first_duplicate: str | None = None
        self.out_of_order = 0
        self.first_out_of_order: tuple[str, str] | None = None  # (key, the key before it)
        self.errors: Counter[str] = Counter()
        self.garments: Counter[str] = Counter()

    def add(self, line: Mapping[str, Any]) -> None:
        self.lines += 1
        key = str(line["key"])
        previous = self.previous
        if previous is not None and key <= previous:
            if key == previous:
                self.duplicates += 1
                self.first_duplicate = self.first_duplicate or key
            else:
                self.out_of_order += 1
                self.first_out_of_order = self.first_out_of_order or (key, previous)
        self.previous = key
        if "error" in line:
            self.errors[line["error"]["reason"]] += 1
        else:
            self.answered += 1
            garments = line.get("garments") or ()
            self.with_garments += bool(garments)
            self.garments.update(g["label"] for g in garments)

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.lines, "answered": self.answered, "with_garments": self.with_garments, "errors": sum(self.errors.values()),
            "errors_by_reason": dict(sorted(self.errors.items())),
            "garments": sum(self.garments.values()), "garments_by_label": dict(sorted(self.garments.items())),
        }  # fmt: skip


def completeness(tally: Tally, listed: int) -> str | None:
    """None when every listed object has exactly one line, else what is wrong (naming the first
    key out of place: lines in strictly increasing key order are distinct, see Tally)."""
    if tally.duplicates:
        return f"{tally.duplicates} object(s) have more than one result line (the first: {tally.first_duplicate!r})"
    if tally.first_out_of_order is not None:
        key, previous = tally.first_out_of_order
        return (f"{tally.out_of_order} result line(s) out of S3's listing order, a repeated object or parts merged out "
                f"of order (the first: {key!r} after {previous!r})")
    if tally.lines != listed:
        return f"{tally.lines} result lines for {listed} listed objects"
    return None


def listed_count(batches: Iterable[Mapping[str, Any]]) -> int:
    """How many objects the Map's reader listed: the sum of its children's ``n``."""
    return sum(int(batch["n"]) for batch in batches)
