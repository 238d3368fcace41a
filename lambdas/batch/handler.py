"""Lambda tasks of the batch detection job: prepare, detect (a Map child), merge, finish.

The state machine (``infrastructure/batch.py``) starts, polls and stops the model itself (SDK
integrations); these functions do what needs logic. The decisions are the core's
(``fashion_pipeline.batch``); each function owns its AWS I/O (``batch.detection`` for a child's).
Each reads its payload through its parser model (``batch.events``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import time
from contextlib import closing
from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import ClientError

from batch import leases
from batch import merge as reading
from batch.detection import Detector, part_key
from batch.events import DetectEvent, FinishEvent, FinishState, Job, MergeEvent, MergeState, Model, PrepareEvent, ReleaseEvent
from fashion_pipeline import batch_leases, layout, lifecycle
from fashion_pipeline.batch import (
    INVALID_REQUEST, MAX_IMAGES, MODEL_UNAVAILABLE, NO_MODEL, TOO_MANY_IMAGES, BatchRequest, JobRefused, Tally, check_job_name,
    completeness, estimate, listed_count, max_concurrency, start_decision,
)

# A child stops backing off this long before its timeout: time to write its part.
DEADLINE_MARGIN_SECONDS = 60

logger = Logger()
tracer = Tracer()
metrics = Metrics()


class IncompleteResults(Exception):
    """The parts do not hold exactly one line per listed object."""


@lru_cache(maxsize=None)
def client(name: str) -> Any:
    if name == "rekognition":
        # Throttling is retried by the detector itself, bounded and per image (batch.detection).
        return boto3.client(name, config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
    # The merge keeps a connection for each GET in flight (botocore keeps 10 by default,
    # ``max_pool_connections``): twice reading.CONCURRENCY, for a run of parts sorted while GETs
    # are in flight (batch.merge.in_order). Connections are opened as they are needed.
    pool = {"max_pool_connections": 2 * reading.CONCURRENCY} if name == "s3" else {}
    return boto3.client(name, config=Config(retries={"mode": "standard", "max_attempts": 5}, **pool))


def _env(name: str) -> str:
    return os.environ[name]


def _now() -> str:
    return lifecycle.iso(dt.datetime.now(dt.timezone.utc)) or ""


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# -- prepare ------------------------------------------------------------------------------------
@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=PrepareEvent)
def prepare(event: PrepareEvent, context: LambdaContext) -> dict[str, Any]:
    """Read and check the job, find the dataset's model and decide whether to start it."""
    detail = event.input.detail
    key = detail.object.key
    base = {"key": key, "execution": event.execution, "run_id": event.execution.rsplit(":", 1)[-1],
            "request_etag": detail.object.etag or None, "received_at": _now(), "dataset_bucket": _env("DATASET_BUCKET"),
            "artifacts_bucket": _env("ARTIFACTS_BUCKET")}  # fmt: skip
    name = layout.batch_job_of(key)
    if name is None:
        job = Job(action="ignore", reason=f"{key} requests no job: a job is {layout.BATCH_PREFIX}<job>.json, one level under "
                                          f"{layout.BATCH_PREFIX}", **base)
    else:
        try:
            job = _prepared(name, key, base, event.started)
        except JobRefused as exc:
            job = Job(action="refuse", job=name, reason=f"{key}: {exc}", reason_code=exc.code, **base)
    logger.info("job prepared", extra={"action": job.action, "job": job.job, "reason": job.reason})
    return job.model_dump()


def _prepared(name: str, key: str, base: dict[str, Any], started: str) -> Job:
    check_job_name(name)
    document = _request_document(key, base)
    request = BatchRequest.parse(document, dataset_bucket=base["dataset_bucket"])
    pointer, name_of_pointer = _pointer(request.dataset)
    images = _count(base["dataset_bucket"], request.source_prefix)
    lease, model, start, wait = _held_model(pointer, name_of_pointer, base["execution"], started)
    found = estimate(images, model.inference_units, starts_model=start, tps_per_unit=request.tps_per_unit)
    return Job(
        action="run", job=name, dataset=request.dataset, source=f"s3://{base['dataset_bucket']}/{request.source_prefix}",
        source_prefix=request.source_prefix, render=request.render, min_confidence=request.min_confidence, model=model,
        lease=lease, start=start, wait=wait, concurrency=max_concurrency(model.inference_units, request.tps_per_unit),
        poll_seconds=request.poll_seconds, start_polls=request.start_polls, images=images, estimate=found, **base,
    )


def _request_document(key: str, base: dict[str, Any]) -> Any:
    """The request's JSON; ``base`` gets the ETag of the version read (the summary names it, so
    that ``batch-detect --wait`` knows the summary of its own upload)."""
    try:
        answer = client("s3").get_object(Bucket=_env("DATASET_BUCKET"), Key=key)
        body = answer["Body"].read()
        base["request_etag"] = str(answer.get("ETag", "")).strip('"') or base["request_etag"]
    except ClientError as exc:
        if _error_code(exc) in ("NoSuchKey", "404"):
            raise JobRefused(INVALID_REQUEST, "the request was deleted before the job read it") from None
        raise
    try:
        return json.loads(body or b"null")
    except ValueError as exc:
        raise JobRefused(INVALID_REQUEST, f"not valid JSON: {exc}") from None


def _pointer(dataset: str) -> tuple[lifecycle.ModelPointer, str]:
    """The dataset's live model, as its pointer names it; (pointer, the parameter's name)."""
    name = layout.model_pointer_name(_env("MODEL_PARAMETER_PREFIX"), dataset)
    hint = f"train and deploy one first (fashion-pipeline train --dataset {dataset})"
    try:
        value = client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
    except ClientError as exc:
        if _error_code(exc) == "ParameterNotFound":
            raise JobRefused(NO_MODEL, f"dataset {dataset!r} has no model (no model pointer {name}): {hint}") from None
        raise
    try:
        pointer = lifecycle.parse_pointer(value)
    except lifecycle.PointerError as exc:
        raise JobRefused(NO_MODEL, f"the model pointer {name} cannot be read: {exc}") from None
    if pointer is None:
        raise JobRefused(NO_MODEL, f"dataset {dataset!r} has no deployed model ({name} names none): {hint}")
    return pointer, name


def _described(pointer: lifecycle.ModelPointer, name: str) -> Model:
    """The pointer's model with its status and units from Rekognition."""
    try:
        described = client("rekognition").describe_project_versions(
            ProjectArn=pointer.project_arn, VersionNames=[pointer.version_name])["ProjectVersionDescriptions"]
    except ClientError as exc:
        if _error_code(exc) != "ResourceNotFoundException":
            raise
        described = []
    if not described:
        raise JobRefused(MODEL_UNAVAILABLE, f"the model {pointer.version_name} that {name} names no longer exists")
    status = str(described[0].get("Status") or "UNKNOWN")
    units = int(described[0].get("MinInferenceUnits") or pointer.inference_units)
    return Model(arn=pointer.project_version_arn, project_arn=pointer.project_arn, version_name=pointer.version_name,
                 status=status, inference_units=units)


def _held_model(pointer: lifecycle.ModelPointer, name: str, execution: str, started: str) -> tuple[str, Model, bool, bool]:
    """Take the job's lease on the model, then describe it and decide: (lease, model, start, wait).

    The lease comes first and the status after it, so that a job that ends after this hold
    sees the lease and leaves the model running, and one that ended before it has already
    called its stop (the status then says STOPPING) or left its marker (joining_refusal). Of
    two jobs that find the model STOPPED, one claims its start and the other waits for it.
    Anything that refuses or fails the job after the hold drops the lease again."""
    began = lifecycle.parse_time(started)
    if began is None:
        raise ValueError(f"prepare: the execution's start time {started!r} is not a time")
    lease = batch_leases.lease(execution, int(began.timestamp()))
    table, arn = _env("ACTIVITY_TABLE"), pointer.project_version_arn
    state = leases.hold(client("dynamodb"), table, arn, lease)
    try:
        model = _described(pointer, name)
        start, wait = start_decision(model.status)
        refusal = batch_leases.joining_refusal(state, model.status, execution, int(time.time()))
        if refusal is not None:
            raise JobRefused(MODEL_UNAVAILABLE, refusal)
        if start and not leases.claim_start(client("dynamodb"), table, arn, execution, int(time.time())):
            start, wait = False, True  # another job claimed the start moments ago: this one waits for it
    except BaseException:
        leases.drop(client("dynamodb"), table, arn, lease)
        raise
    return lease, model, start, wait


def _count(bucket: str, prefix: str) -> int:
    """The objects under the prefix now (the Map lists them again; its count is the one checked)."""
    count = 0
    for page in client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        count += len(page.get("Contents", []))
        if count > MAX_IMAGES:
            raise JobRefused(TOO_MANY_IMAGES, f"more than {MAX_IMAGES} objects under {prefix}: split the job by prefix")
    return count


# -- detect: one child of the Distributed Map ------------------------------------------------
@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=DetectEvent)
def detect(event: DetectEvent, context: LambdaContext) -> dict[str, int]:
    """Each listed object of the batch gets exactly one line; the lines go to one part object."""
    job = event.BatchInput.job
    if job.model is None or job.job is None:
        raise ValueError("detect: the job has no model or name (prepare decides that a job without one does not run)")
    remaining = context.get_remaining_time_in_millis() / 1000 if hasattr(context, "get_remaining_time_in_millis") else None
    deadline = None if remaining is None else time.monotonic() + remaining - DEADLINE_MARGIN_SECONDS
    detector = Detector(client("s3"), client("rekognition"), job, deadline=deadline)
    lines = [detector.line(item) for item in event.Items]
    if event.Items:
        body = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()
        client("s3").put_object(Bucket=job.artifacts_bucket, Key=part_key(job, event.Items[0].Key), Body=body,
                                ContentType="application/x-ndjson")
    _record_use(job.model.arn)
    errors = sum(1 for line in lines if "error" in line)
    metrics.add_metric(name="BatchImages", unit=MetricUnit.Count, value=len(lines))
    metrics.add_metric(name="BatchImageErrors", unit=MetricUnit.Count, value=errors)
    logger.info("batch detected", extra={"job": job.job, "images": len(lines), "errors": errors, "throttled": detector.throttled})
    return {"n": len(event.Items)}


def _record_use(model_arn: str) -> None:
    """Tell the idle auto-stop the model is in use (the API's activity table, ``last_request_at``,
    never moved back): the job's calls do not go through the API, and a job longer than the idle
    window would otherwise see its model stopped under it. A failed write never fails the batch."""
    table = os.environ.get("ACTIVITY_TABLE")
    if not table:
        return
    now = str(int(dt.datetime.now(dt.timezone.utc).timestamp()))
    try:
        client("dynamodb").update_item(
            TableName=table, Key={"model": {"S": model_arn}}, UpdateExpression="SET last_request_at = :t",
            ConditionExpression="attribute_not_exists(last_request_at) OR last_request_at < :t",
            ExpressionAttributeValues={":t": {"N": now}},
        )
    except ClientError as exc:
        if _error_code(exc) != "ConditionalCheckFailedException":
            logger.warning("activity write failed", extra={"model": model_arn, "error": _error_code(exc)})


# -- release: the job's lease on the model, and whether the job stops it ------------------------
@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=ReleaseEvent)
def release(event: ReleaseEvent, context: LambdaContext) -> dict[str, Any]:
    """Drop the job's lease; ``{"stop", "reason", "others"}``: the machine stops the model when
    ``stop`` (the last job out of a model a batch job started)."""
    job = event.job
    if job.model is None or job.lease is None:
        return {"stop": False, "reason": "the job holds no lease on a model", "others": 0}
    decided = leases.release(client("dynamodb"), _env("ACTIVITY_TABLE"), job.model.arn, job.lease, job.execution, int(time.time()))
    logger.info("model released", extra={"job": job.job, **decided.to_dict()})
    return decided.to_dict()


# -- merge: the parts into results.jsonl and summary.json -------------------------------------
@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=MergeEvent)
def merge(event: MergeEvent, context: LambdaContext) -> dict[str, Any]:
    state = event.state
    job = state.job
    assert job.job is not None  # a running job has a name (prepare)
    s3 = client("s3")
    listed = listed_count(b.model_dump() for b in state.batches)
    tally = Tally()
    prefix = layout.batch_parts_prefix(job.job, job.run_id)
    where = f"parts under s3://{job.artifacts_bucket}/{prefix}"
    get = reading.getter(s3, job.artifacts_bucket)
    with tempfile.TemporaryFile() as results:
        # Parts are named after their batch's first key, hex-encoded: listed in key order, so the
        # results are in the order the Map listed the objects (see detection.part_key and
        # batch.merge). They are read 32 at a time and written in that order, which the tally
        # checks line by line: a repeated or misplaced key stops the merge at its part.
        parts = reading.in_order(get, reading.listed(s3, job.artifacts_bucket, prefix), prefix)
        with closing(reading.fetch(get, parts)) as fetched:  # on a failure, the GETs not yet made are cancelled
            for key, body in fetched:
                results.write(_tallied(tally, body))
                if tally.duplicates or tally.out_of_order:
                    raise IncompleteResults(f"{completeness(tally, listed)} in part {key} ({where})")
        problem = completeness(tally, listed)
        if problem:
            raise IncompleteResults(f"{problem} ({where})")
        results.seek(0)
        # One PUT, streamed from the file: 2,000,000 lines are ~0.8 GB, within a PUT's 5 GB
        # ("Uploading objects", https://docs.aws.amazon.com/AmazonS3/latest/userguide/upload-objects.html).
        s3.put_object(Bucket=job.artifacts_bucket, Key=layout.batch_results_key(job.job), Body=results, ContentType="application/x-ndjson")
    summary = {
        **_summary_head(job, "succeeded", state),
        "listed": listed, **tally.to_dict(),
        "results": f"s3://{job.artifacts_bucket}/{layout.batch_results_key(job.job)}",
    }  # fmt: skip
    if job.render:
        summary["rendered"] = f"s3://{job.artifacts_bucket}/{layout.batch_output_prefix(job.job)}rendered/"
    _write_summary(job, summary)
    logger.info("job merged", extra={"job": job.job, "images": tally.lines, "errors": summary["errors"]})
    return summary


def _tallied(tally: Tally, body: bytes) -> bytes:
    """A part's lines, tallied, as they go to results.jsonl (blank lines dropped)."""
    lines = [raw for raw in body.splitlines() if raw.strip()]
    for raw in lines:
        tally.add(json.loads(raw))
    return b"".join(raw + b"\n" for raw in lines)


def _summary_head(job: Job, status: str, state: MergeState | FinishState) -> dict[str, Any]:
    finished = _now()
    began = lifecycle.parse_time(job.received_at)
    ended = lifecycle.parse_time(finished)
    head: dict[str, Any] = {
        "status": status, "job": job.job, "dataset": job.dataset, "source": job.source,
        "request": {"bucket": job.dataset_bucket, "key": job.key, "etag": job.request_etag}, "execution": job.execution,
        "started_at": job.received_at, "finished_at": finished,
        "duration_seconds": round((ended - began).total_seconds(), 3) if began and ended else None,
    }  # fmt: skip
    if job.model is not None:
        head["model"] = {
            "version": job.model.version_name, "arn": job.model.arn, "status_at_start": job.model.status,
            "inference_units": job.model.inference_units, "started_by_job": job.start,
            "stopped_by_job": state.stopped is not None,
            **({"release": state.release.model_dump()} if state.release is not None else {}),
            **({"release_error": f"{state.release_error.Error}: {state.release_error.Cause}"} if state.release_error is not None else {}),
            **({"stop_error": f"{state.stop_error.Error}: {state.stop_error.Cause}"} if state.stop_error is not None else {}),
        }  # fmt: skip
    if job.estimate is not None:
        head["estimate"] = job.estimate
    return head


def _write_summary(job: Job, summary: dict[str, Any]) -> None:
    assert job.job is not None
    client("s3").put_object(Bucket=job.artifacts_bucket, Key=layout.batch_summary_key(job.job),
                            Body=json.dumps(summary, indent=2).encode(), ContentType="application/json")


# -- finish: a refused or failed job's summary -----------------------------------------------
@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=FinishEvent)
def finish(event: FinishEvent, context: LambdaContext) -> dict[str, Any]:
    """Write the summary of a job that did not run to its end, with the reason; returns
    ``{"status", "reason"}`` for the execution's Fail state."""
    state = event.state
    job = state.job
    if job is not None and job.action == "refuse":
        status, reason = "refused", job.reason or "refused"
    else:
        error = state.error
        status = "failed"
        reason = f"{error.Error}: {error.Cause}" if error is not None else "the job failed (no error recorded)"
    if job is None:
        job = _job_from_input(event)
    if job is None or job.job is None:
        logger.warning("job failed before it had a name", extra={"reason": reason})
        return {"status": status, "reason": reason}
    summary = {**_summary_head(job, status, state), "reason": reason}
    if job.reason_code:
        summary["reason_code"] = job.reason_code
    _write_summary(job, summary)
    metrics.add_metric(name="BatchJobsFailed", unit=MetricUnit.Count, value=1)
    logger.info("job ended", extra={"job": job.job, "status": status, "reason": reason})
    return {"status": status, "reason": reason}


def _job_from_input(event: FinishEvent) -> Job | None:
    """A job prepare never described (it failed): its name from the request's key, if any."""
    started = event.input if isinstance(event.input, dict) else {}
    detail = started.get("detail") if isinstance(started.get("detail"), dict) else {}
    key = (detail.get("object") or {}).get("key") if isinstance(detail.get("object"), dict) else None
    name = layout.batch_job_of(key) if isinstance(key, str) else None
    if name is None or not isinstance(key, str):
        return None
    return Job(action="run", key=key, job=name, execution=event.execution, run_id=event.execution.rsplit(":", 1)[-1],
               received_at=_now(), dataset_bucket=_env("DATASET_BUCKET"), artifacts_bucket=_env("ARTIFACTS_BUCKET"))
