"""Idle auto-stop: every few minutes (EventBridge schedule), stop each model of the pipeline's
projects that nobody has used for IDLE_MINUTES: every dataset's deployed model, and any other.

A running model bills about $4 per inference unit and hour whether it answers or not, and not
only the deployed one runs: a version started from the console or the CLI, one a failed run
left running, one a deployment kept, or one of another dataset after the pointer moved. So
every RUNNING or STARTING version of every ``fashion-pipeline-*`` project is watched. The
inference API records ``last_request_at`` in the activity table (at most once a minute per
container) and ``started_at`` when it starts the model; this function records each version's
``observed_status`` and when it first saw it RUNNING, so a version started behind the API's
back gets its full idle window. The decisions are ``fashion_pipeline.lifecycle.watch``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from fashion_pipeline import lifecycle
from inference.runtime import Runtime, error_code

logger = Logger()
# Only botocore is traced: its calls are all this function makes, and the default (patch
# everything supported that is installed) imports libraries it never uses at cold start.
tracer = Tracer(patch_modules=["botocore"])
metrics = Metrics()
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)  # a kept model counts nothing

runtime: Runtime | None = None


def reset(**kwargs: Any) -> Runtime:
    global runtime
    runtime = Runtime(**kwargs)
    return runtime


def _runtime() -> Runtime:
    return runtime if runtime is not None else reset()


def check(rt: Runtime) -> dict[str, Any]:
    """Look at every model of the pipeline's projects and stop the idle ones; returns what was
    decided for each version and why, and what could not be looked at."""
    settings = rt.settings
    now = datetime.fromtimestamp(rt.wall(), timezone.utc)
    failures: list[dict[str, str]] = []
    pointers = _attempt(failures, "GetParametersByPath", settings.model_parameter_prefix, rt.read_pointers)
    deployed = {pointer.project_arn: pointer for pointer in (pointers.live.values() if pointers else ())}
    for dataset, reason in (pointers.broken.items() if pointers else ()):
        # Its model is still watched (every RUNNING version is), as one nobody deployed.
        failures.append({"step": "ParsePointer", "target": dataset, "error": reason})
    listed = _attempt(failures, "DescribeProjects", "*", rt.list_projects) or []
    activity = rt.read_all_activity()  # without it nothing can be decided: the invocation fails
    models = []
    for project in lifecycle.watched_projects(listed, deployed.values()):
        versions = _attempt(failures, "DescribeProjectVersions", project, rt.list_versions, project)
        if versions is None:
            continue
        for found in lifecycle.watch(project, versions, activity, deployed=deployed.get(project), now=now, idle_minutes=settings.idle_minutes):
            models.append(_act(rt, found, now, failures))
    result = {
        "idle_minutes": settings.idle_minutes,
        "deployed": sorted(pointer.project_version_arn for pointer in deployed.values()),
        "models": models,
        "stopped": [m["model"] for m in models if m["action"] == "stopped"],
        "failures": failures,
    }
    logger.info("models checked", extra=result)
    return result


def _act(rt: Runtime, found: lifecycle.Watch, now: datetime, failures: list[dict[str, str]]) -> dict[str, Any]:
    """Carry out one version's decision and record what changed; a failure is reported."""
    result: dict[str, Any] = {"action": "keep", **found.to_dict()}
    changes = dict(found.record)
    if found.decision.stop:
        try:
            answer = rt.client("rekognition").stop_project_version(ProjectVersionArn=found.arn)
        except Exception as exc:
            code = error_code(exc)
            if code in ("ResourceInUseException", "InvalidParameterException"):
                # It changed status since DescribeProjectVersions (stopping already, say).
                result.update(action="refused", stop=False, reason=f"stop refused ({code}): {found.decision.reason}")
            else:
                _failed(failures, "StopProjectVersion", found.arn, exc)
                result.update(action="failed", stop=False, reason=f"stop failed ({code or type(exc).__name__}): {found.decision.reason}")
        else:
            status = str(answer.get("Status") or lifecycle.STOPPING)
            result.update(action="stopped", status=status)
            changes.update(observed_status=status, stopped_at=int(now.timestamp()), stop_reason="idle")
            metrics.add_metric(name="ModelsStoppedIdle", unit=MetricUnit.Count, value=1)
            metrics.add_metric(name="IdleMinutesBeforeStop", unit=MetricUnit.Count, value=round((found.decision.idle_seconds or 0) / 60, 1))
            logger.warning("idle model stopped", extra=result)
    if changes:
        _attempt(failures, "UpdateItem", found.arn, rt.record, found.arn, **changes)
    return result


def _attempt(failures: list[dict[str, str]], step: str, target: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, or None once its failure is reported: one project or version
    that cannot be looked at must not leave the others unchecked."""
    try:
        return call(*args, **kwargs)
    except Exception as exc:
        _failed(failures, step, target, exc)
        return None


def _failed(failures: list[dict[str, str]], step: str, target: str, exc: Exception) -> None:
    failure = {"step": step, "target": target, "error": f"{error_code(exc) or type(exc).__name__}: {exc}"}
    failures.append(failure)
    metrics.add_metric(name="AutoStopFailures", unit=MetricUnit.Count, value=1)
    logger.warning("auto-stop step failed", exc_info=exc, extra=failure)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return check(_runtime())
