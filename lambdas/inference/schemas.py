"""Answer models of the inference API, for its OpenAPI document only.

Answers are built as plain dicts (cheaper than model instances on the hot path). These
models describe them; they are imported when the document is generated, not at cold start
(pydantic builds each model class at import, a few milliseconds apiece).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from inference.requests import DetectionRequest

__all__ = ["DetectionRequest"]  # its schema goes into the document too


class ModelSummary(BaseModel):
    dataset: str | None = Field(None, description="The dataset whose model this is.")
    version: str
    arn: str
    status: str = Field(description="RUNNING in a successful answer; the model's status in a 503.")
    f1: float | None = Field(None, description="F1 score of the model on its test set (0-1).")
    emulated: bool = Field(False, description="True only in local mode: the model is the project's offline Custom Labels emulator.")
    note: str | None = None


class ImageSummary(BaseModel):
    width: int
    height: int
    format: Literal["jpeg", "png"]


class RatioBox(BaseModel):
    left: float
    top: float
    width: float
    height: float


class PixelBox(BaseModel):
    left: int
    top: int
    width: int
    height: int


class Garment(BaseModel):
    label: str
    confidence: float = Field(description="Percent, 0-100.")
    box: RatioBox | None = Field(description="Ratios of the image width and height, as Rekognition returns them.")
    pixels: PixelBox | None = Field(description="The box in whole pixels, rounded and clamped to the image.")


class DetectionAnswer(BaseModel):
    model: ModelSummary
    image: ImageSummary
    garments: list[Garment]


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. image_too_large, model_not_running, throttled.")
    message: str
    model: ModelSummary | None = Field(None, description="The model and its status (503 and 409 answers).")
    retry_after: int | None = Field(None, description="Seconds, as in the Retry-After header: only with 429 throttled and 503 model_starting.")
    auto_start: bool | None = Field(None, description="Whether the API starts a STOPPED model on a request (503 answers).")
    details: list[dict] | None = Field(None, description="Which parameters failed validation (400 invalid_request).")
    datasets: list[str] | None = Field(None, description="The datasets with a live model, to choose from (400 dataset_required).")


class ErrorAnswer(BaseModel):
    error: ErrorDetail


class RunningModel(BaseModel):
    version: str
    arn: str
    project: str = Field(description="The Custom Labels project's name.")
    status: Literal["RUNNING", "STARTING"]
    inference_units: int | None = Field(None, description="MinInferenceUnits, when Rekognition reports them.")
    estimated_usd_per_hour: float | None = Field(
        None, description="An estimate, not a bill: inference_units x $4 per inference-unit hour, the us-east-1 price.")


_RUNNING = "The pipeline's other models that are RUNNING or STARTING (and bill), besides the one this answer is about."
_RUNNING_ERROR = "Why running is missing: the models could not be listed (AccessDenied, throttling)."


class ModelState(BaseModel):
    status: str = Field(description="NONE when no model is deployed; otherwise the live Rekognition status (RUNNING, STOPPED, STARTING, ...).")
    version: str | None = None
    arn: str | None = None
    project_arn: str | None = None
    status_message: str | None = None
    f1: float | None = None
    inference_units: int | None = None
    dataset: str | None = None
    deployed_at: str | None = None
    running_since: str | None = Field(None, description="When the model last started running (RUNNING only).")
    last_request_at: str | None = None
    auto_start: bool = False
    emulated: bool = False
    message: str | None = None
    running: list[RunningModel] | None = Field(None, description=_RUNNING)
    running_cost_note: str | None = Field(None, description="How estimated_usd_per_hour is estimated (with running).")
    running_error: str | None = Field(None, description=_RUNNING_ERROR)


class DatasetModel(BaseModel):
    dataset: str
    default: bool = Field(description="Whether a request that names no dataset gets this one.")
    status: str = Field(description="The live Rekognition status (RUNNING, STOPPED, ...; NOT_FOUND when the version is gone).")
    version: str
    arn: str
    f1: float | None = None
    inference_units: int | None = None
    deployed_at: str | None = None
    run_id: str | None = Field(None, description="The training run that made it: its folder is runs/<dataset>/<run_id>/ in the artifacts bucket, "
                               "its evaluation report runs/<dataset>/<run_id>/evaluation/index.html.")
    estimated_usd_per_hour: float | None = Field(None, description="While it bills (RUNNING, STARTING): inference_units x $4, an estimate.")
    error: str | None = Field(None, description="Why the status is missing: the model could not be described (AccessDenied, throttling).")


class ModelsAnswer(BaseModel):
    default_dataset: str | None = Field(None, description="The configured default dataset, if any.")
    models: list[DatasetModel] = Field(description="One entry per dataset with a live model, by dataset name.")
    broken: dict[str, str] | None = Field(None, description="Datasets whose pointer could not be read, and why.")
    emulated: bool = False
    running_cost_note: str | None = None


class Transition(BaseModel):
    model: ModelSummary
    previous_status: str
    message: str
    running: list[RunningModel] | None = Field(None, description=f"{_RUNNING} Stop answers only.")
    running_cost_note: str | None = Field(None, description="How estimated_usd_per_hour is estimated (with running).")
    running_error: str | None = Field(None, description=_RUNNING_ERROR)
