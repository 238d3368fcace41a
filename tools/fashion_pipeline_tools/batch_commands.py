"""``fashion-pipeline batch-detect``: run the dataset's model over every object under a prefix.

The command checks what the job would check (the names, the source under the dataset bucket's
``images/``, the dataset's model), prints what the job will cost before anything starts, then
uploads ``batch/<job>.json`` to the dataset bucket: that upload is the one way a job starts
(``infrastructure/batch.py``). With ``--wait`` it polls the artifacts bucket for the job's
``summary.json`` (the one written for this very upload: its ETag) and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from typing import Any

from fashion_pipeline import layout, lifecycle
from fashion_pipeline.batch import (
    DEFAULT_POLL_SECONDS, DEFAULT_TPS_PER_UNIT, MAX_POLL_SECONDS, MAX_TPS_PER_UNIT, BatchRequest, JobRefused, check_job_name, describe_estimate, estimate, start_decision,
)
from fashion_pipeline.sources import InputError
from fashion_pipeline.training import OptionsError, check_dataset_name

from .api_commands import CommandError
from .aws.stack import DEFAULT_STACK, StackNotFound

OUTPUTS = ("DatasetBucketName", "ArtifactsBucketName", "ModelParameterPrefix", "BatchStateMachineArn")


def register(commands: Any) -> None:
    """Add ``batch-detect`` to an ``add_subparsers()`` object (``args.func`` runs it)."""
    b = commands.add_parser(
        "batch-detect", help="detect garments in every image under an S3 prefix with a dataset's model (a server-side job)",
        epilog="exit status: 0 requested (with --wait: the job succeeded); 1 the job failed or was refused, or AWS refused a"
               " call; 2 bad arguments, a source outside the dataset bucket's images/, or a dataset without a usable model",
    )
    b.add_argument("source", help="s3://DATASET_BUCKET/images/PREFIX/: every object under it is sent to the model")
    b.add_argument("--dataset", required=True, help="whose model answers (the dataset's live model)")
    b.add_argument("--job", help="the job's name, 1-64 letters, digits, '.', '_' or '-' (default: DATASET-<UTC time>)")
    b.add_argument("--render", action="store_true", help="also write each image with its garments outlined (batch/JOB/rendered/)")
    b.add_argument("--min-confidence", type=float, help="leave out garments below this confidence, 0-100 (default: all)")
    b.add_argument("--tps-per-unit", type=int, default=DEFAULT_TPS_PER_UNIT,
                   help=f"images a second each inference unit is assumed to answer, 1-{MAX_TPS_PER_UNIT}: bounds the job's"
                        " concurrency and its estimate (Custom Labels documents no fixed figure; throttling is retried)")
    b.add_argument("--poll-seconds", type=int, default=DEFAULT_POLL_SECONDS,
                   help=f"how often the job checks a model it starts, 0-{MAX_POLL_SECONDS} (a start takes minutes)")
    b.add_argument("--wait", action="store_true", help="wait for the job's summary and print it; exit 1 if the job fails")
    b.add_argument("--json", action="store_true", help="with --wait, print the summary as JSON")
    b.add_argument("--interval", type=float, default=10.0, help="how often --wait looks for the summary (seconds)")
    b.add_argument("--stack", default=DEFAULT_STACK, help="the deployed stack whose outputs name the resources")
    b.add_argument("--region", help="AWS region (default: your AWS configuration)")
    b.set_defaults(func=batch_detect)


def _session(args: argparse.Namespace) -> Any:
    import boto3

    return boto3.Session(region_name=args.region) if args.region else boto3.Session()


def _outputs(session: Any, stack: str) -> dict[str, str]:
    from .aws.stack import stack_outputs

    outputs = stack_outputs(session, stack)
    missing = [name for name in OUTPUTS if name not in outputs]
    if missing:
        raise StackNotFound(f"stack {stack!r} has no {', '.join(missing)} output: deploy this version of the stack, or pass --stack")
    return outputs


def request_document(args: argparse.Namespace) -> dict[str, Any]:
    """The job's JSON (``fashion_pipeline.batch.BatchRequest``), only the options given."""
    doc: dict[str, Any] = {"dataset": args.dataset, "source": args.source}
    if args.render:
        doc["render"] = True
    if args.min_confidence is not None:
        doc["min_confidence"] = args.min_confidence
    if args.tps_per_unit != DEFAULT_TPS_PER_UNIT:
        doc["tps_per_unit"] = args.tps_per_unit
    if getattr(args, "poll_seconds", DEFAULT_POLL_SECONDS) != DEFAULT_POLL_SECONDS:
        doc["poll_seconds"] = args.poll_seconds
    return doc


def batch_detect(args: argparse.Namespace, session: Any = None) -> int:
    try:
        check_dataset_name(args.dataset)
    except OptionsError as exc:
        raise InputError(f"--dataset: {exc}") from None
    job = args.job or f"{args.dataset}-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}"
    try:
        check_job_name(job)
    except JobRefused as exc:
        raise InputError(f"--job: {exc}") from None
    session = session or _session(args)
    outputs = _outputs(session, args.stack)
    dataset_bucket, artifacts_bucket = outputs["DatasetBucketName"], outputs["ArtifactsBucketName"]
    document = request_document(args)
    try:
        request = BatchRequest.parse(document, dataset_bucket=dataset_bucket)  # the job checks again
    except JobRefused as exc:
        raise InputError(str(exc)) from None

    model = _model(session, outputs["ModelParameterPrefix"], args.dataset)
    try:
        start, _ = start_decision(model["status"])
    except JobRefused as exc:
        raise CommandError(f"dataset {args.dataset!r}: {exc}") from None
    s3 = session.client("s3")
    count = sum(len(page.get("Contents", [])) for page in
                s3.get_paginator("list_objects_v2").paginate(Bucket=dataset_bucket, Prefix=request.source_prefix))
    if not count:
        raise CommandError(f"no objects under s3://{dataset_bucket}/{request.source_prefix}: nothing to detect")
    found = estimate(count, model["units"], starts_model=start, tps_per_unit=request.tps_per_unit)
    print(f"job {job}: {count} objects under s3://{dataset_bucket}/{request.source_prefix}")
    plan = ("the job starts it, and the last batch job on it to end stops it" if start else
            "the job waits until it runs, and leaves it running" if model["status"] == "STARTING" else "the job leaves it running")
    print(f"model {model['version']} is {model['status']} ({model['units']} inference unit{'s' if model['units'] != 1 else ''}): {plan}")
    print(f"estimate: {describe_estimate(found)}", flush=True)

    key = layout.batch_request_key(job)
    uploaded = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)  # clock skew: executions start after the upload
    etag = s3.put_object(Bucket=dataset_bucket, Key=key, Body=json.dumps(document, indent=2).encode(),
                         ContentType="application/json")["ETag"].strip('"')
    print(f"requested s3://{dataset_bucket}/{key}; results go to s3://{artifacts_bucket}/{layout.batch_output_prefix(job)}")
    if not args.wait:
        return 0
    sfn = session.client("stepfunctions")
    summary = wait_for_summary(s3, artifacts_bucket, job, etag, interval=args.interval,
                               ended=lambda: ended_without_summary(sfn, outputs["BatchStateMachineArn"], key, uploaded))
    print(json.dumps(summary, indent=2) if args.json else summary_text(summary))
    if summary.get("status") != "succeeded":
        print(f"fashion-pipeline: job {job} {summary.get('status')}: {summary.get('reason')}", file=sys.stderr)
        return 1
    return 0


def _model(session: Any, prefix: str, dataset: str) -> dict[str, Any]:
    name = layout.model_pointer_name(prefix, dataset)
    ssm = session.client("ssm")
    try:
        pointer = lifecycle.parse_pointer(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    except ssm.exceptions.ParameterNotFound:
        pointer = None
    except lifecycle.PointerError as exc:
        raise CommandError(f"dataset {dataset!r}: the model pointer {name} cannot be read: {exc}") from None
    if pointer is None:
        raise CommandError(f"dataset {dataset!r} has no model (no model pointer {name}): train and deploy one first"
                           f" (fashion-pipeline train --dataset {dataset})")
    described = session.client("rekognition").describe_project_versions(
        ProjectArn=pointer.project_arn, VersionNames=[pointer.version_name])["ProjectVersionDescriptions"]
    if not described:
        raise CommandError(f"dataset {dataset!r}: the model {pointer.version_name} that {name} names no longer exists")
    return {"version": pointer.version_name, "status": str(described[0].get("Status") or "UNKNOWN"),
            "units": int(described[0].get("MinInferenceUnits") or pointer.inference_units)}


CHECK_EXECUTIONS_EVERY = 6  # polls for the summary between two looks at the machine's executions


def wait_for_summary(s3: Any, bucket: str, job: str, etag: str, *, interval: float,
                     ended: Any = None) -> dict[str, Any]:
    """The job's summary.json once the job of this upload (its ETag) has written it. Every few
    polls ``ended()`` may say that the job's execution ended without writing one (a failure
    the job could not record): then a summary of that, and the wait ends."""
    key = layout.batch_summary_key(job)
    polls = 0
    while True:
        try:
            summary = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except s3.exceptions.NoSuchKey:
            summary = None
        if summary is not None and (summary.get("request") or {}).get("etag", "").strip('"') == etag:
            return summary
        polls += 1
        if ended is not None and polls % CHECK_EXECUTIONS_EVERY == 0:
            reason = ended()
            if reason is not None:
                return {"status": "failed", "job": job, "reason": reason}
        time.sleep(interval)


def ended_without_summary(sfn: Any, machine_arn: str, key: str, since: dt.datetime) -> str | None:
    """Why the execution started for ``key`` since ``since`` ended without success, or None
    (still running, not started yet, or it succeeded and its summary is on its way)."""
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine_arn):
        for execution in page["executions"]:
            if execution["startDate"] < since:
                return None  # newest first: nothing older is this upload's
            if execution["status"] in ("RUNNING", "SUCCEEDED", "PENDING_REDRIVE"):
                continue
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            started = json.loads(described.get("input") or "{}")
            if ((started.get("detail") or {}).get("object") or {}).get("key") == key:
                return (f"execution {execution['name']} ended {execution['status']} without a summary:"
                        f" {described.get('error', '')} {described.get('cause', '')}".rstrip())
    return None


def summary_text(summary: dict[str, Any]) -> str:
    lines = []
    took = summary.get("duration_seconds")
    took_text = f" in {took:.1f} s" if isinstance(took, (int, float)) else ""
    if summary.get("status") == "succeeded":
        lines.append(f"succeeded{took_text}: {summary['images']} objects, {summary['answered']} answered"
                     f" ({summary['with_garments']} with garments), {summary['errors']} errors, {summary['garments']} garments")
        if summary["errors_by_reason"]:
            lines.append("errors by reason: " + ", ".join(f"{reason} {n}" for reason, n in summary["errors_by_reason"].items()))
        if summary["garments_by_label"]:
            lines.append("garments by label: " + ", ".join(f"{label} {n}" for label, n in summary["garments_by_label"].items()))
    else:
        lines.append(f"{summary.get('status')}{took_text}: {summary.get('reason')}")
    model = summary.get("model")
    if model:
        lines.append(f"model {model['version']}: {_model_fate(model)}")
    for name in ("results", "rendered"):
        if summary.get(name):
            lines.append(f"{name}: {summary[name]}")
    return "\n".join(lines)


def _model_fate(model: dict[str, Any]) -> str:
    """What the job did with the model: started, stopped (as the last batch job out), or neither."""
    started, stopped = model.get("started_by_job"), model.get("stopped_by_job")
    reason = (model.get("release") or {}).get("reason")
    if model.get("stop_error"):
        return f"{'started by the job; ' if started else ''}stopping it failed: {model['stop_error']}"
    if stopped:
        return "started by the job and stopped" if started else f"stopped by the job: {reason}"
    if started:
        return f"started by the job and left running: {reason}" if reason else "started by the job and left running"
    return "left as it was"
