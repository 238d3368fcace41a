"""One child's work: each listed object's header read, its detection and, with ``render``, its
outlined image. Every object gets exactly one result line, garments or an error with its reason
(``fashion_pipeline.batch.REASONS``); only a failure of our own access (AccessDenied, a bad
request) raises, failing the child and with it the job.

Errors by name: GetObject's in botocore's s3 model (NoSuchKey, InvalidObjectState) and S3's
common ones (InvalidRange for an empty object); DetectCustomLabels' in botocore's rekognition
model (ThrottlingException, ProvisionedThroughputExceededException, LimitExceededException,
InternalServerError, InvalidImageFormatException, ImageTooLargeException,
InvalidS3ObjectException, ResourceNotReadyException, InvalidParameterException).
"""

from __future__ import annotations

import hashlib
import random
import time
from typing import Any, Callable

from botocore.exceptions import ClientError

from batch.events import Job, ListedObject
from fashion_pipeline import batch as rules
from fashion_pipeline import layout
from fashion_pipeline.detections import shape_answer
from fashion_pipeline.images import MAX_FILE_BYTES, ImageError, ImageInfo, check_rules, probe

_THROTTLING = {"ThrottlingException", "ProvisionedThroughputExceededException", "LimitExceededException"}
_TRANSIENT = {"InternalServerError"}
_IMAGE_REFUSALS = {
    "InvalidImageFormatException": rules.IMAGE_CORRUPT, "ImageTooLargeException": rules.IMAGE_TOO_LARGE,
    "InvalidS3ObjectException": rules.IMAGE_MISSING, "ResourceNotReadyException": rules.MODEL_NOT_RUNNING,
    "InvalidParameterException": rules.IMAGE_REJECTED,
}  # fmt: skip


# Hex characters of a batch's first key kept in its part's name (200 bytes; batch.merge reads it).
PART_NAME_HEX = 400


def part_key(job: Job, first_key: str) -> str:
    """The part of the batch whose first item is ``first_key``: the key's bytes in hex, so parts
    list in the items' order (S3 lists keys in UTF-8 byte order; hex keeps it), cut to 400
    characters with a digest of the whole (a retried child overwrites its own part). Two batches
    whose first keys share their first 200 bytes may merge out of order; none is lost."""
    assert job.job is not None
    data = first_key.encode("utf-8")
    return f"{layout.batch_parts_prefix(job.job, job.run_id)}{data.hex()[:PART_NAME_HEX]}-{hashlib.sha256(data).hexdigest()[:12]}.jsonl"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", "")) or _code(exc)


class Detector:
    def __init__(self, s3: Any, rekognition: Any, job: Job, *, deadline: float | None = None, sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[], float] = random.random, clock: Callable[[], float] = time.monotonic) -> None:
        """``deadline`` (on ``clock``): no backoff sleeps past it, so that the child writes its part
        before its timeout even if every image is throttled (a retry it cannot wait for is the
        image's "throttled" line)."""
        assert job.model is not None
        self.s3, self.rekognition, self.job = s3, rekognition, job
        self.bucket = job.dataset_bucket
        self._sleep, self._jitter, self._clock, self._deadline = sleep, jitter, clock, deadline
        self.throttled = 0  # calls answered with throttling, retried or not

    def line(self, item: ListedObject) -> dict[str, Any]:
        key = item.Key
        if key.endswith("/"):
            return rules.error_line(key, rules.NOT_AN_IMAGE, "a folder marker (the key ends in '/'), not an image")
        if item.Size > MAX_FILE_BYTES:
            return rules.error_line(key, rules.IMAGE_TOO_LARGE, f"{item.Size} bytes; the limit is {MAX_FILE_BYTES} bytes (15 MB)")
        if item.Size == 0:
            return rules.error_line(key, rules.IMAGE_CORRUPT, "the object is empty")
        try:
            info = self._probe(key)
        except ImageError as exc:
            return rules.error_line(key, rules.IMAGE_REASONS.get(exc.reason, rules.IMAGE_CORRUPT), exc.detail)
        except ClientError as exc:
            missing = self._missing(exc, key)
            if missing is None:
                raise
            return missing
        response = self._detect(key)
        if "error" in response:
            return response
        answer, garments = shape_answer(response, info, min_confidence=self.job.min_confidence)
        rendered = None
        if self.job.render:
            rendered, problem = self._render(key, garments)
            if problem is not None:
                line = rules.garments_line(key, answer)
                line["render_error"] = problem
                return line
        return rules.garments_line(key, answer, rendered)

    def _probe(self, key: str) -> ImageInfo:
        """Type and size from the header, by ranged GETs (``fashion_pipeline.images.probe``)."""
        total: list[int] = []

        def read_at(offset: int, length: int) -> bytes:
            answer = self.s3.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={offset}-{offset + length - 1}")
            if not total:
                total.append(int(str(answer.get("ContentRange", "/0")).rsplit("/", 1)[-1] or 0) or int(answer.get("ContentLength", 0)))
            return answer["Body"].read()

        info, _ = probe(read_at)
        check_rules(info, total[0] if total else 0)
        return info

    @staticmethod
    def _missing(exc: ClientError, key: str) -> dict[str, Any] | None:
        code = _code(exc)
        if code == "NoSuchKey":
            return rules.error_line(key, rules.IMAGE_MISSING, "deleted since it was listed")
        if code == "InvalidObjectState":
            return rules.error_line(key, rules.IMAGE_MISSING, "archived (a storage class that needs a restore before it is read)")
        if code == "InvalidRange":
            return rules.error_line(key, rules.IMAGE_CORRUPT, "the object is empty")
        return None

    def _detect(self, key: str) -> dict[str, Any]:
        """DetectCustomLabels on the object; throttling and internal errors are retried at most
        RETRY_ATTEMPTS times with capped, fully jittered exponential backoff, then the image's
        line says so."""
        model = self.job.model
        assert model is not None
        options = {} if self.job.min_confidence is None else {"MinConfidence": self.job.min_confidence}
        for attempt in range(rules.RETRY_ATTEMPTS):
            try:
                return self.rekognition.detect_custom_labels(
                    ProjectVersionArn=model.arn, Image={"S3Object": {"Bucket": self.bucket, "Name": key}}, **options)
            except ClientError as exc:
                code = _code(exc)
                if code in _THROTTLING or code in _TRANSIENT:
                    self.throttled += code in _THROTTLING
                    pause = self._jitter() * min(rules.RETRY_CAP_SECONDS, rules.RETRY_BASE_SECONDS * 2**attempt)
                    late = self._deadline is not None and self._clock() + pause > self._deadline
                    if attempt + 1 < rules.RETRY_ATTEMPTS and not late:
                        self._sleep(pause)
                        continue
                    reason = rules.THROTTLED if code in _THROTTLING else rules.SERVICE_ERROR
                    why = " (no time left in the batch for another)" if late else ""
                    return rules.error_line(key, reason, f"{code} after {attempt + 1} attempt(s){why}: {_message(exc)}")
                if code in _IMAGE_REFUSALS:
                    return rules.error_line(key, _IMAGE_REFUSALS[code], f"{code}: {_message(exc)}")
                raise
        raise AssertionError("unreachable: the last attempt returns")

    def _render(self, key: str, garments: list[Any]) -> tuple[str | None, str | None]:
        """The image with its garments outlined, written beside the results; (key, None) or (None, why not)."""
        from fashion_pipeline.render import RenderError, render  # Pillow: only for a job that renders

        assert self.job.job is not None
        try:
            data = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if self._missing(exc, key) is None:
                raise
            return None, f"the image could not be read again to draw it: {_code(exc)}"
        try:
            drawn = render(data, garments, "png", max_bytes=MAX_FILE_BYTES)
        except RenderError as exc:
            return None, str(exc)
        target = layout.batch_rendered_key(self.job.job, key)
        self.s3.put_object(Bucket=self.job.artifacts_bucket, Key=target, Body=drawn.body, ContentType=drawn.content_type)
        return target, None
