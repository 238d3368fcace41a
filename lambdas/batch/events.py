"""The payloads the batch state machine hands its functions, as parser models.

Each is what ``infrastructure/batch.py`` passes: a task's ``Parameters``, or a Distributed Map
child's default input ``{"Items": [...], "BatchInput": {...}}``. A payload that does not fit
fails the task with pydantic's ``ValidationError``, naming the field. What prepare returns
(``Job``) is required as it returns it; what a failed execution may lack is optional
(``FinishState``).
"""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from pydantic import BaseModel, Field, JsonValue

from fashion_pipeline.item_reader import ListedObject


class PrepareEvent(BaseModel):
    """Prepare: ``{"input.$": "$$.Execution.Input", "execution.$": "$$.Execution.Id", "started.$":
    "$$.Execution.StartTime"}``; the input is the EventBridge "Object Created" event of a
    ``batch/<job>.json`` upload, as the rule passes it."""

    input: S3EventNotificationEventBridgeModel
    execution: str
    started: str  # ISO 8601, as the context object gives it: the job's lease is made from it


class Model(BaseModel):
    """The dataset's live model, from its pointer and DescribeProjectVersions."""

    arn: str
    project_arn: str
    version_name: str
    status: str
    inference_units: int


class Job(BaseModel):
    """What prepare returns, at ``$.job``. ``action`` decides the path: ``run``, ``refuse`` (the
    reason goes to the summary) or ``ignore`` (the key requests no job: ``batch/a/b.json``)."""

    action: Literal["run", "refuse", "ignore"]
    key: str
    job: str | None = None
    execution: str
    run_id: str
    request_etag: str | None = None
    received_at: str
    dataset_bucket: str
    artifacts_bucket: str
    dataset: str | None = None
    source: str | None = None  # the s3:// URI as requested
    source_prefix: str | None = None
    render: bool = False
    min_confidence: float | None = None
    model: Model | None = None
    lease: str | None = None  # the job's lease on the model (fashion_pipeline.batch_leases), once it holds one
    start: bool = False  # the job starts the model (the last job out stops it: the release decides)
    wait: bool = False  # the job waits for the model to be RUNNING
    concurrency: int = 1
    poll_seconds: int = 0
    start_polls: int = 1
    images: int = 0  # listed when prepared
    estimate: dict[str, Any] | None = None
    reason: str | None = None
    reason_code: str | None = None


class DetectBatchInput(BaseModel):
    job: Job


class DetectEvent(BaseModel):
    """A child of "Detect images": its batch of listed objects and ``BatchInput {"job.$": "$.job"}``."""

    Items: list[ListedObject]
    BatchInput: DetectBatchInput


class Batch(BaseModel):
    n: int  # what detect returns: the items of its batch, each with its line


class StateError(BaseModel):
    """What a Catch writes (``$.error``, ``$.stop_error``)."""

    Error: str = "Error"
    Cause: str | None = None


class Release(BaseModel):
    """What the release wrote at ``$.release`` (``fashion_pipeline.batch_leases.Release.to_dict``)."""

    stop: bool
    reason: str
    others: int = 0


class ReleaseEvent(BaseModel):
    """Release model: ``{"job.$": "$.job"}``, after the Map or on the failure path."""

    job: Job


class MergeState(BaseModel):
    """Merge results: ``{"state.$": "$"}`` after the Map, the release (and the model's stop, when
    the release decided it)."""

    job: Job
    batches: list[Batch]
    release: Release | None = None
    release_error: StateError | None = None
    stopped: JsonValue = None  # present once the job stopped the model it started
    stop_error: StateError | None = None


class MergeEvent(BaseModel):
    state: MergeState


class FinishState(BaseModel):
    """The state when a job fails or is refused: each member is absent when the execution ended
    before the state that writes it (a failure in prepare leaves only ``error``)."""

    job: Job | None = None
    error: StateError | None = None
    release: Release | None = None
    release_error: StateError | None = None
    stopped: JsonValue = None
    stop_error: StateError | None = None


class FinishEvent(BaseModel):
    """Record failure: ``{"input.$": "$$.Execution.Input", "execution.$": "$$.Execution.Id", "state.$": "$"}``."""

    input: JsonValue = None
    execution: str
    state: FinishState = Field(default_factory=FinishState)
