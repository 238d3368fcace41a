"""The report function: every training run's evaluation report, written next to the run.

The training workflow invokes it after Evaluate, whether the model is deployed or not, with the
run and the trained version's DescribeProjectVersions description (``events.ReportEvent``). It
renders ``build.build_report`` into /tmp and uploads the folder to
``runs/<dataset>/<run-id>/evaluation/`` (``fashion_pipeline.layout.run_report_prefix``) in the
artifacts bucket: ``index.html``, ``charts/*.svg``, ``thumbs/*.jpg``. When the dataset has a
live model (its model pointer, ``<MODEL_PARAMETER_PREFIX>/<dataset>``; the report runs before the
new model is deployed, so the pointer still names the previous one) it also writes
``compare.html`` against that model, linked from ``index.html``. A comparison that cannot be
made (no pointer, a pointer or a previous version that cannot be read) is left out and said
in the answer; anything that keeps the report itself from being written fails the invocation,
which the workflow catches: a report never fails a run.

The gallery is bounded (``GALLERY_IMAGES``, the images with the most mistakes first), so the
time and memory an invocation needs do not grow with the test set beyond parsing its snapshot.
"""

from __future__ import annotations

import os
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import ClientError

from fashion_pipeline import lifecycle
from fashion_pipeline.evaluation import Evaluation, EvaluationError, load_evaluation
from fashion_pipeline.layout import REPORT_PAGE, model_pointer_name, run_report_prefix

from .build import build_report
from .events import ReportEvent
from .render import COMPARE_PAGE

logger = Logger()
tracer = Tracer()
metrics = Metrics()

# 24 thumbnails: a page that opens at once, and a few seconds of S3 reads and decoding even for
# 4,096 px photos (each decoded at a reduced JPEG scale, render.thumbnail).
GALLERY_IMAGES = int(os.environ.get("GALLERY_IMAGES", "24"))
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}
_MISSING = {"NoSuchKey", "AccessDenied", "NoSuchBucket", "404", "403"}


@lru_cache(maxsize=None)
def client(name: str) -> Any:
    return boto3.client(name, config=Config(retries={"mode": "standard", "max_attempts": 5}))


def open_object(bucket: str, key: str) -> BinaryIO:
    """``build_report``'s reader: a missing or forbidden object is a LookupError (a gallery image
    is then left out, the page says so; the summary or a manifest fails the report)."""
    try:
        return client("s3").get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in _MISSING:
            raise LookupError(f"s3://{bucket}/{key}: {code}") from None
        raise


def previous_model(dataset: str, this_version_arn: str) -> tuple[Evaluation | None, str | None]:
    """The evaluation of the dataset's live model to compare with, or None and why not."""
    prefix = os.environ.get("MODEL_PARAMETER_PREFIX")
    if not prefix:
        return None, "no MODEL_PARAMETER_PREFIX"
    name = model_pointer_name(prefix, dataset)
    ssm, rekognition = client("ssm"), client("rekognition")
    try:
        pointer = lifecycle.parse_pointer(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    except ssm.exceptions.ParameterNotFound:
        return None, f"no live model ({name} does not exist)"
    except ClientError as exc:  # denied, throttled past botocore's retries: no comparison, still a report
        return None, f"{name}: {exc.response.get('Error', {}).get('Code')}"
    except lifecycle.PointerError as exc:
        return None, f"{name}: {exc}"
    if pointer is None:
        return None, f"no live model ({name} names none)"
    if pointer.project_version_arn == this_version_arn:
        return None, "the live model is this run's"
    try:
        found = rekognition.describe_project_versions(ProjectArn=pointer.project_arn, VersionNames=[pointer.version_name])
    except ClientError as exc:
        return None, f"{pointer.version_name}: {exc.response.get('Error', {}).get('Code')}"
    descriptions = found.get("ProjectVersionDescriptions") or []
    if not descriptions:
        return None, f"{pointer.version_name} no longer exists"
    try:
        before = load_evaluation(descriptions[0], open_object)
    except (EvaluationError, LookupError, ClientError) as exc:
        return None, f"{pointer.version_name}: {exc}"
    # The comparison reads only its metrics: its per-image results go before this run's are read,
    # so that the two test sets are never held at once.
    before.images = []
    return before, None


def upload(bucket: str, prefix: str, root: Path, files: list[Path]) -> int:
    """Every file under ``prefix``, by its path below ``root``; the bytes written."""
    total = 0
    s3 = client("s3")
    for path in files:
        relative = path.relative_to(root).as_posix()
        body = path.read_bytes()
        s3.put_object(Bucket=bucket, Key=prefix + relative, Body=body,
                      ContentType=CONTENT_TYPES.get(path.suffix, "application/octet-stream"))  # fmt: skip
        total += len(body)
    return total


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=ReportEvent)
def handler(event: ReportEvent, context: LambdaContext) -> dict[str, Any]:
    try:
        return _write_report(event)
    except Exception:
        # The workflow records the error and goes on; the metric is what an alarm would watch.
        metrics.add_metric(name="ReportsFailed", unit=MetricUnit.Count, value=1)
        raise


def _write_report(event: ReportEvent) -> dict[str, Any]:
    run, description = event.run, event.version.model_dump()
    prefix = run_report_prefix(run.prefix)  # refuses a prefix outside runs/<dataset>/<run-id>/
    started = time.perf_counter()
    before, skipped = previous_model(run.dataset, event.version.ProjectVersionArn)
    if skipped:
        logger.info("no comparison", extra={"why": skipped})
    with tempfile.TemporaryDirectory(prefix="report-") as folder:
        root = Path(folder)
        evaluation, files = build_report(description, open_object, root, compare_with=before, max_images=GALLERY_IMAGES)
        written = upload(run.artifacts_bucket, prefix, root, files)
    thumbnails = sum(1 for f in files if f.suffix == ".jpg")
    answer = {
        "key": prefix + REPORT_PAGE,
        "compare_key": prefix + COMPARE_PAGE if before is not None else None,
        "compared_with": before.version if before is not None else None,
        "compare_skipped": skipped,
        "files": len(files),
        "bytes": written,
        "thumbnails": thumbnails,
        "test_images": len(evaluation.images),
    }
    seconds = time.perf_counter() - started
    metrics.add_metric(name="ReportsWritten", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="ReportSeconds", unit=MetricUnit.Seconds, value=round(seconds, 3))
    logger.info("report written", extra={**answer, "seconds": round(seconds, 3), "version": evaluation.version})
    return answer
