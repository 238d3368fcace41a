"""What ``fashion-pipeline runs`` and ``fashion-pipeline models`` show: every training run and
every model version of the pipeline, read from the services that hold them.

- A run is an execution of the training state machine (ListExecutions, DescribeExecution) and
  its folder ``runs/<dataset>/<run-id>/`` (summary.json: manifest counts; outcome.json and
  evaluation.json: F1 and why it ended). A run's id ends with its execution's name
  (``training.run_suffix``), so a folder is found while the run is still going.
- A model is a version of a ``fashion-pipeline-<dataset>`` project (DescribeProjects,
  DescribeProjectVersions); the dataset's model pointer says which one the API serves.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

from fashion_pipeline import lifecycle
from fashion_pipeline.layout import PROJECT_PREFIX, REQUESTS_PREFIX, RUNS_PREFIX
from fashion_pipeline.training import run_suffix


def _missing(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    return code in {"NoSuchKey", "ParameterNotFound", "ResourceNotFoundException"}


def _json_object(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        doc = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as exc:
        if _missing(exc):
            return None
        raise
    except ValueError:
        return None  # a file the run is writing or that was edited by hand: shown as unknown
    return doc if isinstance(doc, dict) else None


def dataset_of(execution_input: dict[str, Any]) -> str | None:
    """The dataset an execution trains: from a direct start, or the key of the uploaded
    ``requests/<dataset>.json`` (the EventBridge event the training-request rule passes)."""
    if isinstance(execution_input.get("dataset"), str):
        return execution_input["dataset"]
    key = ((execution_input.get("detail") or {}).get("object") or {}).get("key")
    if isinstance(key, str) and key.startswith(REQUESTS_PREFIX) and key.endswith(".json"):
        return key[len(REQUESTS_PREFIX) : -len(".json")]
    return None


def _executions(sfn: Any, state_machine_arn: str) -> Iterator[dict[str, Any]]:
    # ListExecutions lists the newest first ("Lists all executions of a state machine ...
    # Results are sorted by time, with the most recent execution first").
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn):
        yield from page.get("executions", [])


def _run_folders(s3: Any, bucket: str, dataset: str) -> list[str]:
    folders: list[str] = []
    prefix = f"{RUNS_PREFIX}{dataset}/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        folders += [entry["Prefix"] for entry in page.get("CommonPrefixes", [])]
    return folders


def _seconds(start: dt.datetime, stop: dt.datetime | None, now: dt.datetime) -> int:
    return max(0, int(((stop or now) - start).total_seconds()))


def list_runs(sfn: Any, s3: Any, *, state_machine_arn: str, artifacts_bucket: str, dataset: str | None = None,
              limit: int = 50, now: dt.datetime | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """The newest ``limit`` runs (of ``dataset``, or of every dataset), newest first."""
    now = now or dt.datetime.now(dt.timezone.utc)
    runs: list[dict[str, Any]] = []
    folders: dict[str, list[str]] = {}
    for execution in _executions(sfn, state_machine_arn):
        if len(runs) >= limit:
            break
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        try:
            given = json.loads(described.get("input") or "{}")
        except ValueError:
            given = {}
        trained = dataset_of(given) if isinstance(given, dict) else None
        if dataset is not None and trained != dataset:
            continue
        try:
            output = json.loads(described.get("output") or "{}")
        except ValueError:
            output = {}
        output = output if isinstance(output, dict) else {}
        run_id = output.get("run_id")
        if trained and not run_id:
            if trained not in folders:
                folders[trained] = _run_folders(s3, artifacts_bucket, trained)
            ending = f"-{run_suffix(execution['name'])}/"
            run_id = next((folder.rsplit("/", 2)[-2] for folder in folders[trained] if folder.endswith(ending)), None)
        prefix = f"{RUNS_PREFIX}{trained}/{run_id}/" if trained and run_id else None
        summary = _json_object(s3, artifacts_bucket, prefix + "summary.json") if prefix else None
        outcome = output or (_json_object(s3, artifacts_bucket, prefix + "outcome.json") if prefix else None) or {}
        evaluation = _json_object(s3, artifacts_bucket, prefix + "evaluation.json") if prefix and outcome.get("f1") is None else None
        status = execution["status"] if execution["status"] != "SUCCEEDED" else str(outcome.get("status") or "succeeded").upper()
        reason = outcome.get("reason") or ""
        if execution["status"] in ("FAILED", "TIMED_OUT", "ABORTED") and not reason:
            reason = f"{described.get('error') or execution['status']}: {described.get('cause') or ''}".strip().rstrip(":")
        runs.append({
            "dataset": trained, "run_id": run_id, "status": status, "execution": execution["executionArn"],
            "started": execution["startDate"].isoformat(timespec="seconds"),
            "seconds": _seconds(execution["startDate"], execution.get("stopDate"), now),
            "train_images": (summary or {}).get("train", {}).get("images"),
            "test_images": (summary or {}).get("test", {}).get("images"),
            "labels": len((summary or {}).get("train", {}).get("boxes", {})) if summary else None,
            "f1": outcome.get("f1") if outcome.get("f1") is not None else ((evaluation or {}).get("overall") or {}).get("f1"),
            "model_version": outcome.get("project_version"), "reason": reason,
            "run_prefix": prefix,
            # The key of the run's evaluation report (runs/<dataset>/<run-id>/evaluation/index.html), once written.
            "report": outcome.get("report"),
        })  # fmt: skip
    return runs


def read_pointers(ssm: Any, prefix: str) -> lifecycle.Pointers:
    """Every dataset's model pointer, the parameters one level under ``prefix``."""
    parameters: list[dict[str, Any]] = []
    for page in ssm.get_paginator("get_parameters_by_path").paginate(Path=prefix.rstrip("/"), Recursive=False):
        parameters += page.get("Parameters", [])
    return lifecycle.parse_pointers(prefix, parameters)


def read_pointer(ssm: Any, prefix: str, dataset: str) -> lifecycle.ModelPointer | None:
    """``dataset``'s model pointer, or None when it has no live model."""
    from botocore.exceptions import ClientError

    from fashion_pipeline.layout import model_pointer_name

    try:
        text = ssm.get_parameter(Name=model_pointer_name(prefix, dataset))["Parameter"]["Value"]
    except ClientError as exc:
        if _missing(exc):
            return None
        raise
    return lifecycle.parse_pointer(text)


def live_models(ssm: Any, prefix: str) -> dict[str, str]:
    """dataset -> the model version ARN the API serves for it, from the datasets' pointers."""
    return {dataset: pointer.project_version_arn for dataset, pointer in read_pointers(ssm, prefix).live.items()}


def list_models(rekognition: Any, *, live: dict[str, str], dataset: str | None = None) -> list[dict[str, Any]]:
    """Every model version of the pipeline's projects (of ``dataset``), newest first per project."""
    models: list[dict[str, Any]] = []
    for page in rekognition.get_paginator("describe_projects").paginate():
        for project in page.get("ProjectDescriptions", []):
            name = project["ProjectArn"].split(":project/", 1)[-1].split("/", 1)[0]
            if not name.startswith(PROJECT_PREFIX):
                continue
            owner = name[len(PROJECT_PREFIX) :]
            if dataset is not None and owner != dataset:
                continue
            versions: list[dict[str, Any]] = []
            for versions_page in rekognition.get_paginator("describe_project_versions").paginate(ProjectArn=project["ProjectArn"]):
                versions += versions_page.get("ProjectVersionDescriptions", [])
            for version in sorted(versions, key=lambda v: v.get("CreationTimestamp") or dt.datetime.min, reverse=True):
                units = version.get("MinInferenceUnits")
                created = version.get("CreationTimestamp")
                models.append({
                    "dataset": owner, "version": version["ProjectVersionArn"].split("/version/", 1)[-1].split("/", 1)[0],
                    "arn": version["ProjectVersionArn"], "status": version.get("Status"),
                    "f1": (version.get("EvaluationResult") or {}).get("F1Score"),
                    "created": created.isoformat(timespec="seconds") if created else None,
                    "live": live.get(owner) == version["ProjectVersionArn"],
                    "inference_units": units,
                    # What it bills per hour while it runs (idle or not): an estimate, lifecycle.COST_NOTE.
                    "usd_per_hour_running": units * lifecycle.USD_PER_INFERENCE_UNIT_HOUR if units else lifecycle.USD_PER_INFERENCE_UNIT_HOUR,
                    "billing_now": version.get("Status") in lifecycle.BILLING,
                })  # fmt: skip
    return models


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    cells = [[title for _, title in columns]] + [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells)


def runs_table(runs: list[dict[str, Any]]) -> str:
    rows = [{**run, "took": _duration(run["seconds"]), "images": None if run["train_images"] is None
             else f"{run['train_images']}/{run['test_images']}"} for run in runs]  # fmt: skip
    text = table(rows, [("dataset", "DATASET"), ("run_id", "RUN"), ("status", "STATUS"), ("started", "STARTED"),
                        ("took", "TOOK"), ("images", "TRAIN/TEST"), ("labels", "LABELS"), ("f1", "F1")])  # fmt: skip
    reasons = [f"  {run['run_id'] or run['execution']}: {run['reason']}" for run in runs if run["reason"]]
    reports = [f"  {run['run_id']}: {run['report']}" for run in runs if run.get("report")]
    return (text + ("\n\nwhy each ended:\n" + "\n".join(reasons) if reasons else "")
            + ("\n\nevaluation reports (in the artifacts bucket):\n" + "\n".join(reports) if reports else ""))


def models_table(models: list[dict[str, Any]]) -> str:
    rows = [{**model, "live": "live" if model["live"] else "", "cost": f"${model['usd_per_hour_running']:g}/h"
             + (" now" if model["billing_now"] else "")} for model in models]  # fmt: skip
    text = table(rows, [("dataset", "DATASET"), ("version", "VERSION"), ("status", "STATUS"), ("f1", "F1"),
                        ("created", "CREATED"), ("live", "API"), ("inference_units", "UNITS"), ("cost", "COST WHILE RUNNING")])  # fmt: skip
    return text + f"\n\n{lifecycle.COST_NOTE}"



class VersionNotFound(LookupError):
    """No such model version of the dataset's project."""


def find_project(rekognition: Any, dataset: str) -> str:
    """The ARN of ``dataset``'s Custom Labels project; VersionNotFound when it has none."""
    from botocore.exceptions import ClientError

    from fashion_pipeline.layout import project_name

    try:
        projects = rekognition.describe_projects(ProjectNames=[project_name(dataset)])["ProjectDescriptions"]
    except ClientError as exc:
        if _missing(exc):
            projects = []
        else:
            raise
    if not projects:
        raise VersionNotFound(f"dataset {dataset!r} has no project {project_name(dataset)!r}: train it first")
    return str(projects[0]["ProjectArn"])


def describe_version(rekognition: Any, dataset: str, version: str | None) -> dict[str, Any]:
    """The DescribeProjectVersions description of ``version`` of ``dataset``'s project, or of
    its newest version that was evaluated (TRAINING_COMPLETED and after) when none is given."""
    arn = find_project(rekognition, dataset)
    if version is not None:
        found = rekognition.describe_project_versions(ProjectArn=arn, VersionNames=[version])["ProjectVersionDescriptions"]
        if not found:
            raise VersionNotFound(f"dataset {dataset!r} has no model version {version!r} (fashion-pipeline models --dataset {dataset})")
        return found[0]
    evaluated = []
    for page in rekognition.get_paginator("describe_project_versions").paginate(ProjectArn=arn):
        evaluated += [v for v in page.get("ProjectVersionDescriptions", []) if v.get("EvaluationResult")]
    if not evaluated:
        raise VersionNotFound(f"dataset {dataset!r} has no evaluated model version yet")
    return max(evaluated, key=lambda v: v.get("CreationTimestamp") or dt.datetime.min)


def s3_opener(s3: Any) -> Any:
    """``open_object(bucket, key)`` for the report builder: a missing or forbidden object is a
    LookupError (an image then is left out of the gallery, which says so)."""
    from botocore.exceptions import ClientError

    def open_object(bucket: str, key: str) -> Any:
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in {"NoSuchKey", "AccessDenied", "NoSuchBucket"}:
                raise LookupError(f"s3://{bucket}/{key}: {code}") from None
            raise

    return open_object
