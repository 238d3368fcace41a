"""The API's domain errors, and the one exception handler of each that turns it into an answer.

A route (or the model and dataset adapters) raises what went wrong in domain terms:
``ModelNotRunning(summary)``, ``Throttled("S3")``. The handler registered for that class
alone decides the status, the stable ``code``, the headers and the JSON body
``{"error": {"code", "message", ...}}``. ``inference.openapi`` documents the same mapping
(``ANSWERS``), and tests/inference/test_contract.py keeps the two and the README equal.

Retry-After is sent only where waiting helps (RFC 9110 §10.2.3: on a 503 it is how long the
service is expected to be unavailable): 429 ``throttled`` and 503 ``model_starting``. A model
that is not deployed, STOPPED, STOPPING or FAILED does not come back by itself, so its 503
says what helps instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from fashion_pipeline.images import ImageError
from inference.observability import logger, metrics
from inference.responses import json_response

THROTTLE_RETRY_AFTER = 2  # seconds; the clients already retried once with back-off


class InferenceError(Exception):
    """A request the API answers with an error; ``extra`` goes into the error body."""

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = {k: v for k, v in extra.items() if v is not None}


class RequestInvalid(InferenceError):
    """Options, JSON body or base64 that cannot be used (``details``: which parameter)."""


class UnsupportedMediaType(InferenceError):
    """Neither JPEG nor PNG, or a Content-Type the route does not read."""


class ImageTooLarge(InferenceError):
    """Over Rekognition's 4 MB for image bytes (15 MB for an S3 object)."""


class ImageRejected(InferenceError):
    """A JPEG or PNG Rekognition would refuse; ``reason`` is the core's stable code
    (``fashion_pipeline.images``): image_corrupt, image_dimensions, image_aspect_ratio."""

    REASONS = ("image_corrupt", "image_dimensions", "image_aspect_ratio")

    def __init__(self, reason: str, message: str) -> None:
        if reason not in self.REASONS:
            raise ValueError(f"unknown image rejection {reason!r}")
        super().__init__(message)
        self.reason = reason


class ImageNotFound(InferenceError):
    """No such ``s3_key`` in the dataset bucket (or Rekognition cannot read it)."""


class RouteNotFound(InferenceError):
    """No route for the method and path."""


class ModelConflict(InferenceError):
    """A start or stop the model's status does not allow (``model``: its summary)."""


class DatasetRequired(InferenceError):
    """Several datasets have a live model and the request names none (``datasets``: which)."""


class ModelNotDeployed(InferenceError):
    """The dataset has no deployed model (or no dataset has one yet)."""

    def __init__(self, dataset: str | None = None, *, others: list[str] | None = None) -> None:
        if dataset is None:
            message = "no model is deployed yet: train one first (fashion-pipeline train --dataset NAME)"
        else:
            message = (f"dataset {dataset!r} has no deployed model: train it (fashion-pipeline train --dataset {dataset}) "
                       f"or deploy one of its versions (fashion-pipeline deploy --dataset {dataset} --version V)")
        others = [name for name in others or [] if name != dataset]
        if others:
            message += f"; datasets with a model: {', '.join(others)}"
        super().__init__(message, model={"status": "NONE", **({"dataset": dataset} if dataset else {})})


class ModelNotRunning(InferenceError):
    """The deployed model is STOPPED, STOPPING, FAILED or gone: waiting does not help."""


class ModelStarting(InferenceError):
    """The model is on its way to RUNNING: ask again after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.retry_after = retry_after


class Throttled(InferenceError):
    """An AWS service the request needs is throttling it."""

    def __init__(self, service: str) -> None:
        super().__init__(f"{service} is throttling requests; retry in {THROTTLE_RETRY_AFTER} s")
        self.service = service


class Internal(InferenceError):
    """Anything else: the answer names nothing internal, only the request id to quote."""


def image_refusal(exc: ImageError) -> InferenceError:
    """The domain error for an image ``fashion_pipeline.images`` refuses."""
    if exc.reason == "image_unsupported_format":
        return UnsupportedMediaType(exc.detail)
    if exc.reason == "image_file_too_large":
        return ImageTooLarge(exc.detail)
    if exc.reason == "image_corrupt":
        return ImageRejected(exc.reason, f"the image cannot be decoded: {exc.detail}")
    return ImageRejected(exc.reason, exc.detail)  # image_dimensions, image_aspect_ratio


# -- the handlers --------------------------------------------------------------------------
E = TypeVar("E", bound=Exception)
HANDLERS: dict[type[Exception], Callable[[Any], Response]] = {}


def _handles(kind: type[E]) -> Callable[[Callable[[E], Response]], Callable[[E], Response]]:
    def register(handler: Callable[[E], Response]) -> Callable[[E], Response]:
        HANDLERS[kind] = handler
        return handler

    return register


def _answer(status: int, code: str, exc: InferenceError, *, retry_after: int | None = None, **extra: Any) -> Response:
    metrics.add_metric(name="Errors", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name=f"Error_{code}", unit=MetricUnit.Count, value=1)
    log = logger.warning if status >= 500 or status == 429 else logger.info
    log("request refused", extra={"status": status, "code": code, "reason": exc.message})
    body: dict[str, Any] = {"code": code, "message": exc.message, **exc.extra, **extra}
    headers = None
    if retry_after is not None:  # the body says what the header says, never more
        body["retry_after"] = retry_after
        headers = {"Retry-After": str(retry_after)}
    return json_response(status, {"error": body}, headers)


@_handles(RequestInvalid)
def _request_invalid(exc: RequestInvalid) -> Response:
    return _answer(400, "invalid_request", exc)


@_handles(DatasetRequired)
def _dataset_required(exc: DatasetRequired) -> Response:
    return _answer(400, "dataset_required", exc)


@_handles(ImageRejected)
def _image_rejected(exc: ImageRejected) -> Response:
    return _answer(400, exc.reason, exc)


@_handles(ImageNotFound)
def _image_not_found(exc: ImageNotFound) -> Response:
    return _answer(404, "image_not_found", exc)


@_handles(RouteNotFound)
def _route_not_found(exc: RouteNotFound) -> Response:
    return _answer(404, "not_found", exc)


@_handles(ModelConflict)
def _model_conflict(exc: ModelConflict) -> Response:
    return _answer(409, "model_conflict", exc)


@_handles(ImageTooLarge)
def _image_too_large(exc: ImageTooLarge) -> Response:
    return _answer(413, "image_too_large", exc)


@_handles(UnsupportedMediaType)
def _unsupported_media_type(exc: UnsupportedMediaType) -> Response:
    return _answer(415, "unsupported_media_type", exc)


@_handles(Throttled)
def _throttled(exc: Throttled) -> Response:
    return _answer(429, "throttled", exc, retry_after=THROTTLE_RETRY_AFTER)


@_handles(ModelNotDeployed)
def _model_not_deployed(exc: ModelNotDeployed) -> Response:
    return _answer(503, "model_not_deployed", exc)


@_handles(ModelNotRunning)
def _model_not_running(exc: ModelNotRunning) -> Response:
    return _answer(503, "model_not_running", exc)


@_handles(ModelStarting)
def _model_starting(exc: ModelStarting) -> Response:
    return _answer(503, "model_starting", exc, retry_after=exc.retry_after)


@_handles(Internal)
def _internal(exc: Internal) -> Response:
    return _answer(500, "internal_error", exc)


# Powertools' and pydantic's validation errors are bad requests like any other (400, not 422).
@_handles(RequestValidationError)
def _validation_failed(exc: RequestValidationError | ValidationError) -> Response:
    details = [
        {"location": ".".join(str(part) for part in error.get("loc", ())), "message": error.get("msg", "")}
        for error in exc.errors()
    ]
    message = "; ".join(f"{d['location']}: {d['message']}" if d["location"] else d["message"] for d in details) or "invalid request"
    return _request_invalid(RequestInvalid(message, details=details))


HANDLERS[ValidationError] = _validation_failed


@_handles(Exception)
def _unexpected(exc: Exception) -> Response:
    logger.exception("unhandled error")
    request_id = logger.get_correlation_id() or "unknown"
    return _internal(Internal(f"internal error; quote request id {request_id} when reporting it"))


def answer(exc: Exception) -> Response:
    """The answer for ``exc``: its class's handler, or its nearest base class's."""
    for kind in type(exc).__mro__:
        if kind in HANDLERS:
            return HANDLERS[kind](exc)
    raise TypeError(f"no handler for {type(exc).__name__}")  # unreachable: Exception has one


def register(app: Any) -> None:
    """Register every handler on the resolver (Powertools picks the most specific class)."""
    for kind, handler in HANDLERS.items():
        app.exception_handler(kind)(handler)
