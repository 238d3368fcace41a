"""The payloads the state machines hand the workflow functions, as parser models.

Each model is what the synthesized definition passes (``infrastructure/training_flow.py``,
``infrastructure/reprocess.py``): a task's ``Parameters``, or a Distributed Map child's default
input ``{"Items": [...], "BatchInput": {...}}``. A payload that does not fit fails the task with
pydantic's ``ValidationError``, whose message names the field (``run.prefix: Field required``).
Unknown keys are ignored, as the handlers always have.

What is optional is what the machine may leave out: the execution input (a user's) and what
earlier states have produced by the time a run finishes (``FinishState``). What our own
functions return (``Run``, ``Evaluation``, ``Retired``) is required as they return it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from pydantic import BaseModel, Discriminator, Field, JsonValue, Tag

from fashion_pipeline.item_reader import ListedObject


class Run(BaseModel):
    """What ``prepare`` returns, at ``$.run`` for every later state."""

    dataset: str
    execution: str
    run_id: str
    project_name: str
    version_name: str
    prefix: str
    options: dict[str, Any]  # TrainingOptions.to_dict(), parsed again by whoever needs them
    limits: dict[str, int]
    dataset_bucket: str
    artifacts_bucket: str


# Training state machine ------------------------------------------------------------------


class DirectStart(BaseModel):
    """``fashion-pipeline train`` (``StartExecution`` with ``{"dataset", "options"}``)."""

    # Not typed str: the dataset rule (check_dataset_name, OptionsError) judges it, with its
    # own message; a missing name fails there too ("dataset name None must be ...").
    dataset: JsonValue = None
    options: dict[str, Any] | None = None


def _start_kind(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "upload" if isinstance(value, S3EventNotificationEventBridgeModel) else "direct"
    return "upload" if isinstance(value, dict) and "detail" in value else "direct"


# The execution input: a direct start, or the EventBridge "Object Created" event of a
# requests/<dataset>.json upload (the rule's target passes the event as it is).
ExecutionInput = Annotated[
    Annotated[S3EventNotificationEventBridgeModel, Tag("upload")] | Annotated[DirectStart, Tag("direct")],
    Discriminator(_start_kind),
]


class PrepareEvent(BaseModel):
    """Prepare: ``{"input.$": "$$.Execution.Input", "execution.$": "$$.Execution.Id"}``."""

    input: ExecutionInput
    execution: str


class ShardBatchInput(BaseModel):
    run: Run


class ShardEvent(BaseModel):
    """A child of "Read fragments": its batch of fragments and ``BatchInput {"run.$": "$.run"}``."""

    Items: list[ListedObject]
    BatchInput: ShardBatchInput


class AssembleEvent(BaseModel):
    """Assemble manifests: ``{"run.$": "$.run"}``."""

    run: Run


class EvaluationLocation(BaseModel):
    Bucket: str | None = None
    Name: str | None = None


class EvaluationSummary(BaseModel):
    S3Object: EvaluationLocation | None = None


class VersionEvaluation(BaseModel):
    # Every member of Rekognition's EvaluationResult is optional (botocore's model).
    F1Score: float | None = None
    Summary: EvaluationSummary | None = None


class ProjectVersion(BaseModel):
    """A ``ProjectVersionDescriptions`` entry of DescribeProjectVersions (the trained version)."""

    ProjectVersionArn: str
    EvaluationResult: VersionEvaluation | None = None


class EvaluateEvent(BaseModel):
    """Evaluate: ``{"run.$": "$.run", "version.$": "$.training.ProjectVersionDescriptions[0]"}``."""

    run: Run
    version: ProjectVersion


class RetireEvent(BaseModel):
    """Stop previous models: ``{"run.$", "project_arn.$": "$.project.arn", "model_arn.$": "$.version.ProjectVersionArn"}``."""

    run: Run
    project_arn: str
    model_arn: str


class CreatedVersion(BaseModel):
    """CreateProjectVersion's answer, at ``$.version``. Optional: "Version created?: unexpected
    answer" fails the run on an answer without it, and that run is recorded too."""

    ProjectVersionArn: str | None = None


class Evaluation(BaseModel):
    """What ``evaluate`` returns, at ``$.evaluation``."""

    f1: float | None
    deploy: bool
    reason: str


class Retired(BaseModel):
    """What ``retire`` returns, at ``$.retired``."""

    stopped: list[str]
    kept: str | None = None


class WrittenReport(BaseModel):
    """What the report function (lambdas/evaluation_report) returns, at ``$.report``; only its key is read."""

    key: str


class StateError(BaseModel):
    """What a Catch writes at ``$.error`` (and the failure Passes written in its shape)."""

    Error: str = "Error"
    Cause: str | None = None


class FinishState(BaseModel):
    """The whole execution state when a run ends (``"state.$": "$"``): the execution input with
    what the states before produced. Each is absent when the run ended before the state that
    writes it (a failure in prepare leaves only the input and ``error``)."""

    dataset: JsonValue = None  # the execution input's, unchecked: prepare may have refused it
    run: Run | None = None
    evaluation: Evaluation | None = None
    version: CreatedVersion | None = None
    retired: Retired | None = None
    error: StateError | None = None
    report: WrittenReport | None = None  # the evaluation report, once written
    report_error: StateError | None = None  # why it was not (the run goes on regardless)


class FinishEvent(BaseModel):
    """Record success / not deployed / failure: ``{"outcome": ..., "state.$": "$"}``."""

    outcome: Literal["succeeded", "not_deployed", "failed"]
    state: FinishState = Field(default_factory=FinishState)


# Reprocess state machine -----------------------------------------------------------------


class CheckArguments(BaseModel):
    dataset: JsonValue = None  # the execution input's: check_dataset_name judges it (OptionsError)


class CheckStep(BaseModel):
    """Check dataset: ``{"check": {"dataset.$": "$.dataset"}}``."""

    check: CheckArguments


class ReprocessBatchInput(BaseModel):
    dataset: str


class SendBatchStep(BaseModel):
    """A child of "Re-enqueue objects": its batch of annotation objects, ``BatchInput {"dataset.$"}``."""

    Items: list[ListedObject]
    BatchInput: ReprocessBatchInput


class SentBatch(BaseModel):
    sent: int  # what send_batch returns


class TotalArguments(BaseModel):
    dataset: str
    batches: list[SentBatch]


class TotalStep(BaseModel):
    """Count: ``{"total": {"dataset.$": "$.dataset", "batches.$": "$.batches"}}``."""

    total: TotalArguments


def _reprocess_step(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return {SendBatchStep: "batch", CheckStep: "check", TotalStep: "total"}.get(type(value))
    if not isinstance(value, dict):
        return None
    return next((tag for key, tag in (("Items", "batch"), ("check", "check"), ("total", "total")) if key in value), None)


ReprocessStep = Annotated[
    Annotated[SendBatchStep, Tag("batch")] | Annotated[CheckStep, Tag("check")] | Annotated[TotalStep, Tag("total")],
    Discriminator(_reprocess_step, custom_error_type="not_a_reprocess_step",
                  custom_error_message="not a Reprocess step: expected a key check, Items or total"),
]
