"""A dataset's deployed model, as the routes see it: ``pointer``, ``describe``, ``start``, ``stop``, ``detect``.

Which dataset: the one the request names (``?dataset=``), else the configured default, else
the one dataset with a live model (``fashion_pipeline.lifecycle.choose_dataset``).

This adapter is the only code of the API that talks to Rekognition, SSM and the activity
table; it answers in domain terms (``fashion_pipeline.lifecycle`` statuses and summaries) and
raises ``inference.errors`` (throttling through ``runtime.aws_call``), so no route sees a
client or a botocore error. Error names are those of botocore's rekognition model
(DetectCustomLabels, StartProjectVersion, StopProjectVersion).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ClientError

from fashion_pipeline import lifecycle
from fashion_pipeline.lifecycle import ModelPointer
from fashion_pipeline.training import run_id_of
from inference.errors import (
    ImageNotFound,
    ImageRejected,
    DatasetRequired,
    ImageTooLarge,
    InferenceError,
    ModelConflict,
    ModelNotDeployed,
    ModelNotRunning,
    ModelStarting,
    RequestInvalid,
)
from inference.observability import logger, metrics, tracer
from inference.runtime import Runtime, aws_call, current, error_code, status_of

EMULATOR_NOTE = "The model is the project's offline emulator of Rekognition Custom Labels, not a trained model."
STARTABLE = lifecycle.STARTABLE
STOPPABLE = frozenset({lifecycle.RUNNING, lifecycle.STARTING})
START_HINT = "start it with POST /model/start?dataset=NAME (an admin route; fashion-pipeline start --dataset NAME)"


@dataclass(frozen=True)
class Transition:
    pointer: ModelPointer
    before: str
    after: str


class DeployedModel:
    """The model a dataset's SSM pointer names, through one container's ``Runtime``."""

    def __init__(self, runtime: Runtime, dataset: str | None = None) -> None:
        self._runtime = runtime
        self.settings = runtime.settings
        self._requested = dataset
        self.dataset: str | None = dataset  # the dataset chosen, once current_pointer has chosen

    # -- which model, and its status ----------------------------------------------------
    def pointers(self) -> lifecycle.Pointers:
        """Every dataset's pointer (cached per container)."""
        with aws_call("SSM"):
            return self._runtime.pointers.get()

    def current_pointer(self) -> ModelPointer | None:
        """The chosen dataset's pointer, or None when it has no live model."""
        pointers = self.pointers()
        try:
            self.dataset = lifecycle.choose_dataset(self._requested, self.settings.default_dataset, pointers.datasets)
        except lifecycle.DatasetRequired as exc:
            raise DatasetRequired(str(exc), datasets=exc.datasets) from None
        return pointers.of(self.dataset) if self.dataset else None

    def pointer(self) -> ModelPointer:
        pointer = self.current_pointer()
        if pointer is None:
            raise ModelNotDeployed(self.dataset, others=sorted(self.pointers().live))
        return pointer

    def describe(self, pointer: ModelPointer) -> dict[str, Any] | None:
        """DescribeProjectVersions' description of the version, or None when it is gone."""
        with aws_call("Rekognition"):
            return self._runtime.describe(pointer)

    def status(self, pointer: ModelPointer) -> str:
        return status_of(self.describe(pointer))

    def summary(self, pointer: ModelPointer, status: str) -> dict[str, Any]:
        summary: dict[str, Any] = {"dataset": pointer.dataset, "version": pointer.version_name, "arn": pointer.project_version_arn,
                                   "status": status, "f1": pointer.f1, "emulated": self.settings.emulated}  # fmt: skip
        if self.settings.emulated:
            summary["note"] = EMULATOR_NOTE
        return summary

    def activity(self, pointer: ModelPointer) -> dict[str, Any]:
        """What the activity table records of the model; nothing when it cannot be read."""
        try:
            return self._runtime.read_activity(pointer.project_version_arn)
        except Exception:
            logger.warning("could not read the activity table", exc_info=True)
            return {}

    def running_besides(self, pointer: ModelPointer | None) -> dict[str, Any]:
        """``running``: the pipeline's other RUNNING or STARTING models, with hourly cost estimates;
        or ``running_error`` when they cannot be listed, which must not fail the answer."""
        try:
            projects = lifecycle.watched_projects(self._runtime.list_projects(), self.pointers().live.values())
            versions = [version for project in projects for version in self._runtime.list_versions(project)]
        except Exception as exc:  # AccessDenied, throttling, a timeout: the answer stands without the list
            logger.warning("could not list the running models", exc_info=True)
            return {"running_error": f"could not list the pipeline's other running models ({error_code(exc) or type(exc).__name__})"}
        running = lifecycle.running_models(versions, exclude=pointer.project_version_arn if pointer else None)
        return {"running": running, "running_cost_note": lifecycle.COST_NOTE}

    # -- start and stop -----------------------------------------------------------------
    def start(self) -> Transition:
        return self._transition("start", STARTABLE)

    def stop(self) -> Transition:
        return self._transition("stop", STOPPABLE)

    def _transition(self, action: str, allowed: frozenset[str]) -> Transition:
        pointer = self.pointer()
        before = self.status(pointer)
        if before not in allowed:
            raise self._conflict(pointer, action, before)
        try:
            with aws_call("Rekognition"):
                after = self._start_version(pointer) if action == "start" else self._stop_version(pointer)
        except ClientError as exc:
            if error_code(exc) in ("ResourceInUseException", "InvalidParameterException", "ResourceNotFoundException"):
                raise self._conflict(pointer, action, self.status(pointer)) from None  # it changed meanwhile
            raise
        metrics.add_metric(name=f"Model{action.title()}s", unit=MetricUnit.Count, value=1)
        logger.info(f"model {action} requested", extra={"model": pointer.project_version_arn, "before": before, "after": after})
        return Transition(pointer, before, after)

    def _conflict(self, pointer: ModelPointer, action: str, status: str) -> ModelConflict:
        allowed = ", ".join(sorted(STARTABLE if action == "start" else STOPPABLE))
        return ModelConflict(f"cannot {action} the model: it is {status} (possible from {allowed})", model=self.summary(pointer, status))

    def _start_version(self, pointer: ModelPointer) -> str:
        answer = self._runtime.client("rekognition").start_project_version(
            ProjectVersionArn=pointer.project_version_arn, MinInferenceUnits=pointer.inference_units
        )
        try:
            self._runtime.record(pointer.project_version_arn, started_at=int(self._runtime.wall()))
        except Exception:  # the auto-stop then counts from the last request or deployment
            logger.warning("could not record the start time", exc_info=True)
        return str(answer.get("Status") or lifecycle.STARTING)

    def _stop_version(self, pointer: ModelPointer) -> str:
        answer = self._runtime.client("rekognition").stop_project_version(ProjectVersionArn=pointer.project_version_arn)
        try:
            self._runtime.record(pointer.project_version_arn, stopped_at=int(self._runtime.wall()), stop_reason="api")
        except Exception:
            logger.warning("could not record the stop", exc_info=True)
        return str(answer.get("Status") or lifecycle.STOPPING)

    # -- detection ----------------------------------------------------------------------
    @tracer.capture_method(capture_response=False)
    def detect(self, pointer: ModelPointer, *, data: bytes | None = None, s3_key: str | None = None,
               min_confidence: float | None = None, max_results: int | None = None) -> dict[str, Any]:  # fmt: skip
        """DetectCustomLabels on image bytes or an object of the dataset bucket; a successful
        call counts as activity (``last_request_at``) for the auto-stop."""
        image = {"Bytes": data} if data is not None else {"S3Object": {"Bucket": self.settings.dataset_bucket, "Name": s3_key}}
        params: dict[str, Any] = {"ProjectVersionArn": pointer.project_version_arn, "Image": image}
        if min_confidence is not None:
            params["MinConfidence"] = min_confidence
        if max_results is not None:
            params["MaxResults"] = max_results
        try:
            with aws_call("Rekognition"):
                response = self._runtime.client("rekognition").detect_custom_labels(**params)
        except ClientError as exc:
            raise self._refusal(exc, pointer) from None
        self._runtime.activity.touch(pointer.project_version_arn)
        return response

    def _refusal(self, exc: ClientError, pointer: ModelPointer) -> Exception:
        code = error_code(exc)
        if code in ("ResourceNotReadyException", "ResourceNotFoundException"):
            return self._unavailable(pointer)
        if code == "ImageTooLargeException":
            return ImageTooLarge("Rekognition refused the image as too large (over 4 MB, or too many pixels)")
        if code == "InvalidImageFormatException":
            # The header probe passed (a JPEG or PNG header), the rest of the file did not.
            return ImageRejected("image_corrupt", "Rekognition could not decode the image: it is not a valid JPEG or PNG file")
        if code == "InvalidS3ObjectException":
            return ImageNotFound("Rekognition could not read the object from the dataset bucket")
        if code == "InvalidParameterException":
            return RequestInvalid("Rekognition refused the request's parameters")
        return exc  # AccessDeniedException, InternalServerError: 500

    def _unavailable(self, pointer: ModelPointer) -> InferenceError:
        """Why the model cannot answer; starts a STOPPED model when AUTO_START is on."""
        status = self.status(pointer)
        auto_start = self.settings.auto_start
        message = f"the model is {status}, not RUNNING"
        if status == lifecycle.STOPPED and auto_start:
            try:
                with aws_call("Rekognition"):
                    status = self._start_version(pointer)
                metrics.add_metric(name="ModelAutoStarts", unit=MetricUnit.Count, value=1)
                logger.info("model auto-started", extra={"model": pointer.project_version_arn})
                message = f"the model was STOPPED and this request started it ({pointer.inference_units} inference unit(s)); it takes several minutes"
            except ClientError as exc:
                if error_code(exc) != "ResourceInUseException":  # that one: another request started it first
                    logger.warning("auto-start failed", exc_info=True)
                    return ModelNotRunning(f"the model is STOPPED and could not be started automatically; {START_HINT}",
                                           model=self.summary(pointer, status), auto_start=auto_start)  # fmt: skip
                status, message = lifecycle.STARTING, "the model is STARTING"
        elif status == lifecycle.RUNNING:  # it became RUNNING since the call failed
            message = "the model is just becoming available"
        retry_after = lifecycle.retry_after(status)
        if retry_after is not None:
            return ModelStarting(message, retry_after, model=self.summary(pointer, status), auto_start=auto_start)
        return ModelNotRunning(f"{message}; {_hint(status)}", model=self.summary(pointer, status), auto_start=auto_start)


def _hint(status: str) -> str:
    """What helps a model that will not become RUNNING by waiting."""
    if status == lifecycle.STOPPING:
        return f"wait until it is STOPPED, then {START_HINT}"
    if status == lifecycle.NOT_FOUND:
        return "the deployed version no longer exists: train and deploy a model again (fashion-pipeline train --dataset NAME)"
    return START_HINT  # STOPPED, FAILED, TRAINING_COMPLETED: a start is possible


def deployed(dataset: str | None = None) -> DeployedModel:
    """``dataset``'s deployed model (None: the default one), through this container's runtime."""
    return DeployedModel(current(), dataset)


def list_models() -> dict[str, Any]:
    """Every dataset's deployed model with its live status (GET /models). A model that cannot
    be described is listed with the reason, so one denied or throttled call spoils no other."""
    model = deployed()
    settings = model.settings
    pointers = model.pointers()
    try:
        default = lifecycle.choose_dataset(None, settings.default_dataset, pointers.datasets)
    except lifecycle.DatasetRequired:
        default = None
    models = []
    for dataset, pointer in sorted(pointers.live.items()):
        entry: dict[str, Any] = {"dataset": dataset, "default": dataset == default, "version": pointer.version_name,
                                 "arn": pointer.project_version_arn, "f1": pointer.f1, "inference_units": pointer.inference_units,
                                 "deployed_at": lifecycle.iso(pointer.deployed_at), "run_id": run_id_of(dataset, pointer.version_name)}  # fmt: skip
        try:
            description = model.describe(pointer)
        except Exception as exc:  # Throttled, AccessDenied: this entry says so, the others stand
            logger.warning("could not describe a deployed model", exc_info=True, extra={"dataset": dataset})
            entry.update(status="UNKNOWN", error=f"could not describe the model ({error_code(exc) or type(exc).__name__})")
        else:
            entry["status"] = status_of(description)
            units = (description or {}).get("MinInferenceUnits") or pointer.inference_units
            entry["inference_units"] = units
            if entry["status"] in lifecycle.BILLING:
                entry["estimated_usd_per_hour"] = round(units * lifecycle.USD_PER_INFERENCE_UNIT_HOUR, 2)
        models.append(entry)
    answer: dict[str, Any] = {"default_dataset": settings.default_dataset, "models": models, "emulated": settings.emulated,
                              "running_cost_note": lifecycle.COST_NOTE}  # fmt: skip
    if pointers.broken:
        answer["broken"] = dict(pointers.broken)
    return answer
