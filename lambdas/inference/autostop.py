"""Idle auto-stop: every few minutes (EventBridge schedule), stop the deployed model when
nobody has used it for IDLE_MINUTES.

A running model bills about $4 per inference unit and hour whether it answers or not. The
inference API records ``last_request_at`` in the activity table (at most once a minute per
container) and ``started_at`` when it starts the model; this function also notes when it
first sees the model RUNNING after having seen it in another status (a start from the console
or the CLI), so a freshly started model gets its full idle window. The decision itself is
``fashion_pipeline.lifecycle.idle_decision``.
"""

from __future__ import annotations

import warnings
from datetime import datetime, timezone
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from fashion_pipeline import lifecycle
from inference.model import Runtime, error_code, status_of

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
    """Look at the deployed model and stop it when idle; returns what was decided and why."""
    settings = rt.settings
    now = datetime.fromtimestamp(rt.wall(), timezone.utc)
    pointer = rt.read_pointer()
    if pointer is None:
        return {"action": "none", "stop": False, "reason": "no model is deployed", "status": lifecycle.NONE}
    arn = pointer.project_version_arn
    status = status_of(rt.describe(pointer))
    activity = rt.read_activity(arn)
    changes: dict[str, Any] = {}
    seen_running = lifecycle.parse_time(activity.get("running_seen_at"))
    previous = activity.get("observed_status")
    if status == lifecycle.RUNNING and previous is not None and previous != lifecycle.RUNNING:
        seen_running = now  # started since the last look, by someone other than the API
        changes["running_seen_at"] = int(now.timestamp())
    last_activity = lifecycle.parse_time(activity.get("last_request_at"))
    running_since = lifecycle.latest(pointer.deployed_at, lifecycle.parse_time(activity.get("started_at")), seen_running)
    if status == lifecycle.RUNNING and last_activity is None and running_since is None:
        # Nothing says since when: count from now, and decide on a later round.
        running_since = now
        changes["running_seen_at"] = int(now.timestamp())
    decision = lifecycle.idle_decision(status, last_activity, running_since, now, settings.idle_minutes)
    result: dict[str, Any] = {
        "action": "keep",
        "model": arn,
        "version": pointer.version_name,
        "status": status,
        "idle_minutes": settings.idle_minutes,
        "last_activity": lifecycle.iso(last_activity),
        "running_since": lifecycle.iso(running_since),
        **decision.to_dict(),
    }
    if decision.stop:
        try:
            answer = rt.client("rekognition").stop_project_version(ProjectVersionArn=arn)
        except ClientError as exc:
            if error_code(exc) not in ("ResourceInUseException", "InvalidParameterException"):
                raise
            # It changed status since DescribeProjectVersions (stopping already, say).
            result.update(action="none", stop=False, reason=f"stop refused ({error_code(exc)}): {decision.reason}")
            status_after = status
        else:
            status_after = str(answer.get("Status") or lifecycle.STOPPING)
            result.update(action="stopped", status=status_after)
            changes.update(stopped_at=int(now.timestamp()), stop_reason="idle")
            metrics.add_metric(name="ModelsStoppedIdle", unit=MetricUnit.Count, value=1)
            metrics.add_metric(name="IdleMinutesBeforeStop", unit=MetricUnit.Count, value=round((decision.idle_seconds or 0) / 60, 1))
            logger.warning("idle model stopped", extra=result)
        changes["observed_status"] = status_after
    else:
        changes["observed_status"] = status
        logger.info("model kept", extra=result)
    rt.record(arn, **changes)
    return result


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return check(_runtime())
