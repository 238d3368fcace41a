"""``fashion-pipeline deploy``: make a model version a dataset's live model (promote or roll back).

In order: start the version if it is not running, wait until it is RUNNING, move the
dataset's model pointer to it (the inference API and the auto-stop read the pointer), then
stop the model the pointer named before. The pointer moves only to a RUNNING model, so the
API never switches to a model that cannot answer; the previous one is stopped only after the
move, so the dataset is never without a running model in between.

Every step is idempotent: without ``wait``, a version that is still STARTING is left starting
and the command says to run it again, which then finds it RUNNING and finishes. The decisions
(what a status allows, the pointer's content) are ``fashion_pipeline.lifecycle``'s; this module
makes the calls, with the caller's credentials.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from fashion_pipeline import lifecycle
from fashion_pipeline.layout import model_pointer_name

from .fleet import describe_version, find_project, read_pointer

# Custom Labels: "starting a model can take a while" (minutes); the bound keeps --wait finite.
DEFAULT_TIMEOUT_SECONDS = 60 * 60


class DeployFailed(RuntimeError):
    """The version did not become RUNNING (FAILED, or still starting at the timeout)."""


@dataclass(frozen=True)
class Deployment:
    dataset: str
    version: str
    arn: str
    status: str  # the new version's status at the end
    moved: bool  # whether the pointer now names it
    previous: str | None  # the version the pointer named before
    stopped_previous: bool
    inference_units: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def deploy(
    rekognition: Any,
    ssm: Any,
    *,
    prefix: str,
    dataset: str,
    version: str,
    inference_units: int | None = None,
    wait: bool = False,
    keep_previous: bool = False,
    interval: float = 10.0,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    say: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> Deployment:
    """Make ``version`` of ``dataset``'s project its live model. Raises VersionNotFound,
    lifecycle.PromotionRefused (a status that cannot be deployed) or DeployFailed."""
    described = describe_version(rekognition, dataset, version)
    project_arn = find_project(rekognition, dataset)
    arn = str(described["ProjectVersionArn"])
    status = str(described.get("Status") or "UNKNOWN")
    step = lifecycle.promotion(status)
    current = read_pointer(ssm, prefix, dataset)
    units = int(inference_units or described.get("MinInferenceUnits") or (current.inference_units if current else 1))
    if current is not None and current.project_version_arn == arn and step == "move":
        say(f"{version} is already {dataset!r}'s live model and RUNNING")
        return Deployment(dataset, version, arn, status, True, current.version_name, False, current.inference_units)
    if step == "start":
        rekognition.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=units)
        say(f"starting {version} ({status} -> STARTING) on {units} inference unit(s): it bills about "
            f"${units * lifecycle.USD_PER_INFERENCE_UNIT_HOUR:g} per hour while it runs, idle or not (us-east-1 price)")
        status = lifecycle.STARTING
    if status != lifecycle.RUNNING:
        if not wait:
            say(f"{version} is {status}; the pointer moves once it is RUNNING: run this command again (or with --wait)")
            return Deployment(dataset, version, arn, status, False, current.version_name if current else None, False, units)
        status = _until_running(rekognition, project_arn, version, interval=interval, timeout=timeout, clock=clock, sleep=sleep, say=say)
    pointer = lifecycle.promoted_pointer(described, project_arn=project_arn, dataset=dataset, inference_units=units, now=now())
    ssm.put_parameter(Name=model_pointer_name(prefix, dataset), Value=lifecycle.pointer_json(pointer), Type="String", Overwrite=True)
    say(f"{dataset!r} now serves {version}" + (f" (was {current.version_name})" if current else ""))
    stopped = False
    if current is not None and current.project_version_arn != arn:
        stopped = _stop_previous(rekognition, current, keep=keep_previous, say=say)
    return Deployment(dataset, version, arn, status, True, current.version_name if current else None, stopped, units)


def _until_running(rekognition: Any, project_arn: str, version: str, *, interval: float, timeout: float,
                   clock: Callable[[], float], sleep: Callable[[float], None], say: Callable[[str], None]) -> str:
    deadline = clock() + timeout
    while True:
        status, found = _described(rekognition, project_arn, version)
        if status == lifecycle.RUNNING:
            say(f"{version} is RUNNING")
            return status
        if status != lifecycle.STARTING:
            message = found.get("StatusMessage") or "no message"
            raise DeployFailed(f"{version} is {status}, not RUNNING ({message}); the pointer was not moved")
        if clock() >= deadline:
            raise DeployFailed(f"{version} is still STARTING after {timeout:g} s; the pointer was not moved "
                               "(run the command again to go on waiting, or stop the version: it bills while it starts)")
        sleep(interval)


def _described(rekognition: Any, project_arn: str, version: str) -> tuple[str, dict[str, Any]]:
    """A version's status and description (NOT_FOUND and nothing when it is gone)."""
    found = rekognition.describe_project_versions(ProjectArn=project_arn, VersionNames=[version]).get("ProjectVersionDescriptions") or []
    return (str(found[0].get("Status") or "UNKNOWN"), found[0]) if found else (lifecycle.NOT_FOUND, {})


def _stop_previous(rekognition: Any, previous: lifecycle.ModelPointer, *, keep: bool, say: Callable[[str], None]) -> bool:
    """Stop the version the pointer named before, if it still bills and is not to be kept."""
    from botocore.exceptions import ClientError

    status, _ = _described(rekognition, previous.project_arn, previous.version_name)
    if status not in lifecycle.BILLING:
        say(f"the previous model {previous.version_name} is {status}: nothing to stop")
        return False
    if keep:
        say(f"kept the previous model {previous.version_name} {status} (--keep-previous): it still bills; "
            f"stop it with fashion-pipeline stop, or the idle auto-stop will")
        return False
    try:
        rekognition.stop_project_version(ProjectVersionArn=previous.project_version_arn)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code not in ("ResourceInUseException", "InvalidParameterException"):  # it changed status meanwhile
            raise
        say(f"the previous model {previous.version_name} could not be stopped now ({code}); the idle auto-stop watches it")
        return False
    say(f"stopping the previous model {previous.version_name} ({status} -> STOPPING)")
    return True
