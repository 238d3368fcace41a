"""Lambda tasks of the training workflow: prepare, shard and assemble, evaluate, retire, finish.

The state machine does the Rekognition calls itself (SDK integrations); these functions do
only what needs logic. Each raises a named exception on a business failure, which Step
Functions sees as the error name (``OptionsError``, ``DatasetBusy``,
``ManifestValidationError``) and routes to the failure path with the message as cause.
Each reads its payload through its parser model (``workflow.events``); a payload that does not
fit fails the task as ``ValidationError``, the message naming the field.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from fashion_pipeline import lifecycle
from fashion_pipeline.layout import REQUESTS_PREFIX
from fashion_pipeline.training import OptionsError, TrainingOptions, check_dataset_name, evaluation_report, run_names
from workflow import lock
from workflow.assembly import DEFAULT_CONCURRENCY, ManifestValidationError, merge_shards, write_shard
from workflow.events import (
    AssembleEvent, DirectStart, EvaluateEvent, ExecutionInput, FinishEvent, PrepareEvent, RetireEvent, Run, ShardEvent, StateError,
)

logger = Logger()
tracer = Tracer()
metrics = Metrics()

LOCK_MARGIN_SECONDS = 3600  # the lease outlives the longest run by this much
ASSEMBLY_CONCURRENCY = int(os.environ.get("ASSEMBLY_CONCURRENCY", DEFAULT_CONCURRENCY))  # S3 requests in flight


@lru_cache(maxsize=None)
def client(name: str) -> Any:
    # A connection per assembly thread; adaptive retries absorb S3's 503 Slow Down.
    return boto3.client(name, config=Config(max_pool_connections=ASSEMBLY_CONCURRENCY + 4, retries={"mode": "adaptive", "max_attempts": 8}))


def _env(name: str) -> str:
    return os.environ[name]


def _request_from(start: ExecutionInput) -> tuple[Any, dict[str, Any]]:
    """The dataset and options, from a direct start or a ``requests/<dataset>.json`` upload."""
    if isinstance(start, DirectStart):
        return start.dataset, start.options or {}
    # EventBridge "Object Created" from the dataset bucket
    key = start.detail.object.key
    if not (key.startswith(REQUESTS_PREFIX) and key.endswith(".json")):
        raise OptionsError(f"{key}: training requests are uploaded as {REQUESTS_PREFIX}<dataset>.json")
    dataset = key[len(REQUESTS_PREFIX) : -len(".json")]
    body = client("s3").get_object(Bucket=start.detail.bucket.name, Key=key)["Body"].read()
    try:
        options = json.loads(body or b"{}")
    except ValueError as exc:
        raise OptionsError(f"{key} is not valid JSON: {exc}") from None
    if not isinstance(options, dict):
        raise OptionsError(f"{key} must hold a JSON object of options")
    return dataset, options


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=PrepareEvent)
def prepare(event: PrepareEvent, context: LambdaContext) -> dict[str, Any]:
    execution = event.execution
    dataset, raw_options = _request_from(event.input)
    dataset = check_dataset_name(dataset)
    options = TrainingOptions.parse(raw_options, json.loads(os.environ.get("TRAINING_DEFAULTS", "{}")))
    names = run_names(dataset, dt.datetime.now(dt.timezone.utc), execution.rsplit(":", 1)[-1])
    lease = options.max_run_seconds + LOCK_MARGIN_SECONDS
    lock.acquire(client("dynamodb"), _env("LOCK_TABLE"), dataset=dataset, execution=execution, seconds=lease)
    logger.info("run prepared", extra={"dataset": dataset, **names})
    run = Run(dataset=dataset, execution=execution, **names, options=options.to_dict(), limits=options.limits,
              dataset_bucket=_env("DATASET_BUCKET"), artifacts_bucket=_env("ARTIFACTS_BUCKET"))
    return run.model_dump()


def _assembly(run: Run) -> tuple[TrainingOptions, dict[str, Any]]:
    """The run's options, and what both assembly steps are told about the run."""
    options = TrainingOptions.parse(run.options)
    return options, {
        "dataset": run.dataset, "dataset_bucket": run.dataset_bucket, "artifacts_bucket": run.artifacts_bucket,
        "catalogue": options.catalogue(), "seed": options.seed, "job_name": run.version_name, "concurrency": ASSEMBLY_CONCURRENCY,
    }


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=ShardEvent)
def shard(event: ShardEvent, context: LambdaContext) -> dict[str, Any]:
    """A child of the "Read fragments" Distributed Map: its ItemBatcher's batch of fragments
    (``Items``, as the S3 ItemReader lists them) and the run (``BatchInput``)."""
    run = event.BatchInput.run
    _, arguments = _assembly(run)
    items = [item.model_dump() for item in event.Items]
    result = write_shard(client("s3"), items=items, run_prefix=run.prefix, **arguments)
    logger.info("shard written", extra=result)
    return result


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=AssembleEvent)
def assemble(event: AssembleEvent, context: LambdaContext) -> dict[str, Any]:
    """Merge the run's shards into the manifests, summary and report."""
    run = event.run
    options, arguments = _assembly(run)
    result = merge_shards(client("s3"), prefix=run.prefix, test_fraction=options.test_fraction, region=os.environ.get("AWS_REGION"), **arguments)
    logger.info("assembled", extra=result)
    if result["problems"]:
        raise ManifestValidationError("; ".join(result["problems"]) + f" (details: s3://{run.artifacts_bucket}/{run.prefix}report.json)")
    return result


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=EvaluateEvent)
def evaluate(event: EvaluateEvent, context: LambdaContext) -> dict[str, Any]:
    run, version = event.run, event.version
    options = TrainingOptions.parse(run.options)
    evaluation = version.EvaluationResult
    location = evaluation.Summary.S3Object if evaluation and evaluation.Summary else None
    summary_file: dict[str, Any] = {}
    if location and location.Bucket and location.Name:
        summary_file = json.loads(client("s3").get_object(Bucket=location.Bucket, Key=location.Name)["Body"].read())
    report = evaluation_report(summary_file, f1_score=evaluation.F1Score if evaluation else None, min_f1=options.min_f1, deploy=options.deploy)
    report["project_version_arn"] = version.ProjectVersionArn
    client("s3").put_object(
        Bucket=run.artifacts_bucket, Key=run.prefix + "evaluation.json", Body=json.dumps(report, indent=2).encode(), ContentType="application/json"
    )
    return {"f1": report["overall"]["f1"], "deploy": report["deploy"], "reason": report["reason"]}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=RetireEvent)
def retire(event: RetireEvent, context: LambdaContext) -> dict[str, Any]:
    """Once the run's model runs, stop the project's other running models (each bills by the
    hour, idle or not), unless the run keeps them."""
    run, new_model = event.run, event.model_arn
    if run.options.get("keep_previous_model_running"):
        return {"stopped": [], "kept": "keep_previous_model_running is set"}
    rekognition = client("rekognition")
    descriptions = []
    for page in rekognition.get_paginator("describe_project_versions").paginate(ProjectArn=event.project_arn):
        descriptions += page.get("ProjectVersionDescriptions", [])
    stopped = []
    for arn in lifecycle.models_to_stop(descriptions, keep=new_model):
        try:
            rekognition.stop_project_version(ProjectVersionArn=arn)
        except rekognition.exceptions.ResourceInUseException:
            continue  # stopping already, or no longer running: nothing billing to stop
        stopped.append(arn)
    logger.info("previous models stopped", extra={"stopped": stopped, "kept": new_model})
    return {"stopped": stopped}


def _reason(error: StateError | None) -> str:
    if not error:
        return ""
    cause = error.Cause or ""
    try:
        cause = json.loads(cause).get("errorMessage", cause)
    except (ValueError, AttributeError):
        pass
    return f"{error.Error}: {cause}".strip()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=FinishEvent)
def finish(event: FinishEvent, context: LambdaContext) -> dict[str, Any]:
    """Record the outcome of a run next to its manifests, free the dataset and word the news.

    ``state`` is the whole execution state at that point: whatever earlier steps produced
    (``run``, ``evaluation``, ``model``, ``error``), on top of the execution input.
    """
    outcome, state, run, evaluation = event.outcome, event.state, event.state.run, event.state.evaluation
    reason = _reason(state.error) if outcome == "failed" else (evaluation.reason if evaluation else "")
    message = {
        "status": outcome,
        "dataset": (run.dataset if run else None) or state.dataset,
        "run_id": run.run_id if run else None,
        "project_version": run.version_name if run else None,
        "f1": evaluation.f1 if evaluation else None,
        "reason": reason,
        "model_arn": state.version.ProjectVersionArn if outcome == "succeeded" and state.version else None,
        "stopped_models": state.retired.stopped if state.retired else [],
        # The run's evaluation report, runs/<dataset>/<run-id>/evaluation/index.html in the
        # artifacts bucket (None before it, or when it could not be written: report_error says why).
        "report": state.report.key if state.report else None,
        "report_error": _reason(state.report_error) or None,
        "execution": run.execution if run else None,
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if run:
        client("s3").put_object(Bucket=run.artifacts_bucket, Key=run.prefix + "outcome.json", Body=json.dumps(message, indent=2).encode(), ContentType="application/json")
        lock.release(client("dynamodb"), _env("LOCK_TABLE"), dataset=run.dataset, execution=run.execution)
    metrics.add_metric(name=f"Runs_{outcome}", unit=MetricUnit.Count, value=1)
    logger.info("run finished", extra=message)
    subject = {"succeeded": "deployed", "not_deployed": "trained, not deployed", "failed": "FAILED"}[outcome]
    return {"message": message, "subject": f"fashion-pipeline: {message['dataset']} {subject}"[:99]}
