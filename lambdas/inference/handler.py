"""Inference API: API Gateway (REST, Lambda proxy) -> the deployed Custom Labels model.

Routes:

* ``POST /detections``: garments in an image, as JSON with boxes in ratios and pixels, or
  (``Accept: image/png|image/jpeg`` or ``?render=true``) the image with the garments drawn;
* ``GET /model``: the deployed model and its live status (200 ``{"status": "NONE"}`` when
  nothing is deployed: an empty deployment is a state, not a missing route), and which other
  models of the pipeline run (``running``);
* ``POST /model/start``, ``POST /model/stop``: start or stop the deployed model (202); the
  stop's answer says which other models still run;
* ``GET /openapi.json``: the OpenAPI document of these routes.

Every error is JSON ``{"error": {"code", "message", ...}}``. Validation errors of options
answer 400 (``invalid_request``), not Powertools' default 422, like every other bad request.

The handler is thin: it parses, calls ``fashion_pipeline.detections`` and Rekognition, and
shapes the answer. Pillow is imported only when an image is rendered (``inference.render``).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
import warnings
from functools import lru_cache
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from pydantic import ValidationError

from fashion_pipeline import lifecycle
from fashion_pipeline.detections import MAX_CONFIDENCE, MAX_RESULTS, MIN_CONFIDENCE, MIN_RESULTS, shape_answer
from fashion_pipeline.images import MAX_FILE_BYTES, ImageError, ImageInfo, check_rules, probe, probe_bytes
from fashion_pipeline.lifecycle import ModelPointer
from inference.model import THROTTLING, Runtime, Settings, describe_version, error_code, status_of
from inference.requests import DetectionRequest

logger = Logger()
# Only botocore is traced: its calls are all this function makes, and the default (patch
# everything supported that is installed) imports libraries it never uses at cold start.
tracer = Tracer(patch_modules=["botocore"])
metrics = Metrics()
# GET /model and the OpenAPI document count nothing: no warning for an empty metrics flush.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

API_TITLE = "Fashion pipeline inference API"
API_VERSION = "1.0.0"
API_DESCRIPTION = (
    "Detects garments (short_sleeved_shirt, trousers, vest_dress, ...) in a JPEG or PNG image with the "
    "Amazon Rekognition Custom Labels model the training pipeline deployed, and outlines them on the image "
    "on request. Requests are signed with AWS Signature Version 4 (IAM authorisation). Every error answer is "
    'JSON {"error": {"code", "message"}}; 429 and 503 answers carry a Retry-After header.'
)
MAX_IMAGE_BYTES = 4 * 1024 * 1024  # DetectCustomLabels' limit for Image.Bytes
MAX_BASE64_CHARS = 4 * math.ceil(MAX_IMAGE_BYTES / 3)
JSON_OVERHEAD = 64 * 1024  # room for the rest of a JSON body around its base64 image
THROTTLE_RETRY_AFTER = 2
JSON_TYPES = ("", "application/json")
RAW_TYPES = ("application/octet-stream",)
EMULATOR_NOTE = "The model is the project's offline emulator of Rekognition Custom Labels, not a trained model."
STARTABLE = frozenset({"TRAINING_COMPLETED", "STOPPED", "FAILED"})
STOPPABLE = frozenset({lifecycle.RUNNING, lifecycle.STARTING})


class ApiError(Exception):
    """An answer other than 2xx: status, stable code, message, extra fields and headers."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.extra = {k: v for k, v in extra.items() if v is not None}


runtime = Runtime()


def reset(**kwargs: Any) -> Runtime:
    """A fresh container state (tests and the benchmark inject clients and clocks here)."""
    global runtime
    runtime = Runtime(**kwargs)
    return runtime


def _cors(origin: str) -> CORSConfig | None:
    if not origin:
        return None
    return CORSConfig(
        allow_origin=origin,
        allow_headers=["Accept"],
        expose_headers=["Retry-After", "X-Garment-Count", "X-Render-Scale"],
        max_age=600,
    )


app = APIGatewayRestResolver(enable_validation=True, cors=_cors(Settings.from_env().cors_origin))


# -- answers ----------------------------------------------------------------------------
def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    # Serialised here: the validation middleware then has a string to pass through.
    return Response(status, "application/json", body=json.dumps(body, separators=(",", ":")), headers=headers)


def _model_summary(pointer: ModelPointer, status: str) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "version": pointer.version_name,
        "arn": pointer.project_version_arn,
        "status": status,
        "f1": pointer.f1,
        "emulated": runtime.settings.emulated,
    }
    if runtime.settings.emulated:
        summary["note"] = EMULATOR_NOTE
    return summary


def _error_response(exc: ApiError) -> Response:
    metrics.add_metric(name="Errors", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name=f"Error_{exc.code}", unit=MetricUnit.Count, value=1)
    log = logger.warning if exc.status >= 500 or exc.status == 429 else logger.info
    log("request refused", extra={"status": exc.status, "code": exc.code, "reason": exc.message})
    return _json(exc.status, {"error": {"code": exc.code, "message": exc.message, **exc.extra}}, exc.headers)


@app.exception_handler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return _error_response(exc)


@app.exception_handler([RequestValidationError, ValidationError])
def _invalid(exc: RequestValidationError | ValidationError) -> Response:
    details = [
        {"location": ".".join(str(part) for part in error.get("loc", ())), "message": error.get("msg", "")}
        for error in exc.errors()
    ]
    message = "; ".join(f"{d['location']}: {d['message']}" if d["location"] else d["message"] for d in details) or "invalid request"
    return _error_response(ApiError(400, "invalid_request", message, details=details))


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response:
    logger.exception("unhandled error")
    request_id = (app.current_event.request_context.request_id if app.current_event else None) or "unknown"
    return _error_response(ApiError(500, "internal_error", f"internal error; quote request id {request_id} when reporting it"))


@app.not_found
def _not_found(exc: Exception) -> Response:
    event = app.current_event
    return _error_response(ApiError(404, "not_found", f"no route {event.http_method} {event.path}"))


# -- request parsing --------------------------------------------------------------------
def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _b64decode(text: str | bytes, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "invalid_request", f"{what} is not valid base64") from None


def _too_large(size: int) -> ApiError:
    return ApiError(413, "image_too_large", f"the image is {size} bytes; the limit is {MAX_IMAGE_BYTES} bytes (4 MB)")


def _image_bytes(text: str, what: str) -> bytes:
    if text.startswith("data:"):  # data:image/png;base64,....
        text = text.partition(",")[2]
    if len(text) > MAX_BASE64_CHARS + 4:
        raise _too_large(len(text) * 3 // 4)
    data = _b64decode(text, what)
    if len(data) > MAX_IMAGE_BYTES:
        raise _too_large(len(data))
    return data


def _read_request(event: Any) -> tuple[bytes | None, DetectionRequest | None]:
    """The image bytes (raw body or JSON ``image``) and the JSON request, when there is one."""
    body = event.body
    if not body:
        raise ApiError(400, "invalid_request", "no image: send it as the body (image/jpeg, image/png) or as JSON {\"image\": base64} or {\"s3_key\": key}")
    media_type = _media_type(event.headers.get("content-type"))
    if media_type.startswith("image/") or media_type in RAW_TYPES:
        if event.is_base64_encoded:
            return _image_bytes(body, "the body"), None
        # Binary bodies arrive base64-encoded only for the API's binary media types.
        logger.warning("image body not base64-encoded: check the API's binary media types", extra={"content_type": media_type})
        data = body.encode("utf-8", "surrogateescape")
        if len(data) > MAX_IMAGE_BYTES:
            raise _too_large(len(data))
        return data, None
    if media_type in JSON_TYPES or media_type.endswith("+json"):
        if len(body) > (MAX_BASE64_CHARS + JSON_OVERHEAD) * (4 / 3 if event.is_base64_encoded else 1):
            raise _too_large(len(body) * 3 // 4)
        text = _b64decode(body, "the body") if event.is_base64_encoded else body
        try:
            document = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "invalid_request", "the body is not valid JSON") from None
        if not isinstance(document, dict):
            raise ApiError(400, "invalid_request", "the JSON body must be an object")
        request = DetectionRequest.model_validate(document)  # ValidationError -> 400
        data = _image_bytes(request.image, "image") if request.image is not None else None
        return data, request
    raise ApiError(
        415, "unsupported_media_type", f"Content-Type {media_type} is not accepted: send image/jpeg, image/png or application/json"
    )


def _check_image(info: ImageInfo, size: int) -> None:
    try:
        check_rules(info, size)
    except ImageError as exc:
        raise _image_error(exc) from None


def _image_error(exc: ImageError) -> ApiError:
    if exc.reason == "image_unsupported_format":
        return ApiError(415, "unsupported_media_type", f"{exc.detail}")
    if exc.reason == "image_file_too_large":
        return ApiError(413, "image_too_large", exc.detail)
    return ApiError(400, exc.reason, exc.detail)  # image_corrupt, image_dimensions, image_aspect_ratio


def _probe(data: bytes) -> ImageInfo:
    try:
        info = probe_bytes(data)
    except ImageError as exc:
        raise _image_error(exc) from None
    _check_image(info, len(data))
    return info


def _wanted_format(accept: str | None, render: bool) -> str | None:
    """``"png"``/``"jpeg"`` for a rendered image, None for JSON.

    Only an explicit image/png or image/jpeg in Accept asks for the drawing (``*/*`` and
    ``image/*`` do not); it wins over application/json when its quality is higher or, at
    equal quality, when it comes first. ``render=true`` draws a PNG unless Accept prefers
    image/jpeg.
    """
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept or "").split(",")):
        media, *params = (piece.strip() for piece in part.split(";"))
        media = media.lower()
        if media not in ("image/png", "image/jpeg", "application/json"):
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, position, media))
    ranked.sort()
    images = [media for _, _, media in ranked if media.startswith("image/")]
    if render:
        return "jpeg" if images and images[0] == "image/jpeg" else "png"
    if ranked and ranked[0][2].startswith("image/"):
        return ranked[0][2].split("/")[1]
    return None


# -- S3 ---------------------------------------------------------------------------------
def _s3_failure(exc: ClientError, key: str) -> ApiError:
    code = error_code(exc)
    if code in ("NoSuchKey", "404", "NotFound", "AccessDenied", "403"):
        # AccessDenied too: without s3:ListBucket S3 says 403 for a missing key.
        return ApiError(404, "image_not_found", f"no object {key} in the dataset bucket")
    if code == "InvalidRange":  # only an empty object has no byte 0
        return ApiError(400, "image_corrupt", f"{key} is empty")
    if code in THROTTLING or code == "SlowDown":
        return ApiError(429, "throttled", "S3 is throttling requests; retry shortly", headers={"Retry-After": str(THROTTLE_RETRY_AFTER)}, retry_after=THROTTLE_RETRY_AFTER)
    raise exc


@tracer.capture_method(capture_response=False)
def _probe_s3(key: str) -> tuple[ImageInfo, int]:
    """Type and size of an image in the dataset bucket, from its first bytes (ranged GETs)."""
    s3, bucket = runtime.client("s3"), runtime.settings.dataset_bucket
    total: list[int] = []

    def read_at(offset: int, length: int) -> bytes:
        answer = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={offset}-{offset + length - 1}")
        if not total:
            total.append(int(str(answer.get("ContentRange", "/0")).rsplit("/", 1)[-1] or 0) or int(answer.get("ContentLength", 0)))
        return answer["Body"].read()

    try:
        info, _ = probe(read_at)
    except ImageError as exc:
        raise _image_error(exc) from None
    except ClientError as exc:
        raise _s3_failure(exc, key) from None
    size = total[0] if total else 0
    _check_image(info, size)
    return info, size


@tracer.capture_method(capture_response=False)
def _get_s3(key: str) -> bytes:
    try:
        answer = runtime.client("s3").get_object(Bucket=runtime.settings.dataset_bucket, Key=key)
    except ClientError as exc:
        raise _s3_failure(exc, key) from None
    if int(answer.get("ContentLength", 0)) > MAX_FILE_BYTES:
        raise ApiError(413, "image_too_large", f"{key} is {answer['ContentLength']} bytes; the limit is {MAX_FILE_BYTES} bytes (15 MB)")
    return answer["Body"].read()


# -- model ------------------------------------------------------------------------------
def _current_pointer() -> ModelPointer | None:
    try:
        return runtime.pointer.get()
    except ClientError as exc:
        if error_code(exc) in THROTTLING:
            raise _throttled("SSM") from None
        raise


def _pointer() -> ModelPointer:
    pointer = _current_pointer()
    if pointer is None:
        raise ApiError(503, "model_not_deployed", "no model is deployed yet: train one with the training pipeline",
                       model={"status": lifecycle.NONE})  # fmt: skip
    return pointer


def _throttled(service: str) -> ApiError:
    return ApiError(429, "throttled", f"{service} is throttling requests; retry shortly",
                    headers={"Retry-After": str(THROTTLE_RETRY_AFTER)}, retry_after=THROTTLE_RETRY_AFTER)  # fmt: skip


def _describe(pointer: ModelPointer) -> dict[str, Any] | None:
    try:
        return describe_version(runtime.client("rekognition"), pointer)
    except ClientError as exc:
        if error_code(exc) in THROTTLING:
            raise _throttled("Rekognition") from None
        raise


def _start(pointer: ModelPointer) -> str:
    answer = runtime.client("rekognition").start_project_version(
        ProjectVersionArn=pointer.project_version_arn, MinInferenceUnits=pointer.inference_units
    )
    try:
        runtime.record(pointer.project_version_arn, started_at=int(runtime.wall()))
    except Exception:  # the auto-stop then counts from the last request or deployment
        logger.warning("could not record the start time", exc_info=True)
    return str(answer.get("Status") or lifecycle.STARTING)


def _not_running(pointer: ModelPointer) -> ApiError:
    """The 503 for a model that is not RUNNING; starts a STOPPED model when AUTO_START is on."""
    status = status_of(_describe(pointer))
    message = f"the model is {status}, not RUNNING"
    if status == lifecycle.STOPPED and runtime.settings.auto_start:
        try:
            status = _start(pointer)
            metrics.add_metric(name="ModelAutoStarts", unit=MetricUnit.Count, value=1)
            logger.info("model auto-started", extra={"model": pointer.project_version_arn})
            message = f"the model was STOPPED and this request started it ({pointer.inference_units} inference unit(s)); it takes several minutes"
        except ClientError as exc:
            code = error_code(exc)
            if code == "ResourceInUseException":  # another request started it first
                status, message = lifecycle.STARTING, "the model is STARTING"
            else:
                logger.warning("auto-start failed", exc_info=True)
                message = "the model is STOPPED and could not be started automatically"
    elif status == lifecycle.STOPPED:
        message += "; an administrator must start it (POST /model/start)"
    elif status == lifecycle.RUNNING:  # it became RUNNING since the call failed
        message = "the model is just becoming available"
    code = "model_starting" if status == lifecycle.STARTING else "model_not_running"
    seconds = 5 if status == lifecycle.RUNNING else lifecycle.retry_after(status)
    return ApiError(503, code, message, headers={"Retry-After": str(seconds)}, model=_model_summary(pointer, status),
                    retry_after=seconds, auto_start=runtime.settings.auto_start)  # fmt: skip


@tracer.capture_method(capture_response=False)
def _detect(pointer: ModelPointer, image: dict[str, Any], min_confidence: float | None, max_results: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {"ProjectVersionArn": pointer.project_version_arn, "Image": image}
    if min_confidence is not None:
        params["MinConfidence"] = min_confidence
    if max_results is not None:
        params["MaxResults"] = max_results
    try:
        return runtime.client("rekognition").detect_custom_labels(**params)
    except ClientError as exc:
        code = error_code(exc)
        if code in THROTTLING:
            raise _throttled("Rekognition") from None
        if code in ("ResourceNotReadyException", "ResourceNotFoundException"):
            raise _not_running(pointer) from None
        if code == "ImageTooLargeException":
            raise ApiError(413, "image_too_large", "Rekognition refused the image as too large") from None
        if code == "InvalidImageFormatException":
            raise ApiError(400, "image_corrupt", "Rekognition could not read the image") from None
        if code == "InvalidS3ObjectException":
            raise ApiError(404, "image_not_found", "Rekognition could not read the object") from None
        if code == "InvalidParameterException":
            raise ApiError(400, "invalid_request", "Rekognition refused the request's parameters") from None
        raise


def _option(name: str, query: Any, body: Any) -> Any:
    if query is not None and body is not None and query != body:
        raise ApiError(400, "invalid_request", f"{name} is given both in the query string and in the body")
    return query if query is not None else body


# -- routes -----------------------------------------------------------------------------
_ERRORS = {
    400: "Bad request: invalid_request (options, JSON body, base64), image_corrupt, image_dimensions (a side outside 64-4096 px), image_aspect_ratio",
    404: "image_not_found: no such s3_key in the dataset bucket",
    413: "image_too_large: over 4 MB as bytes (15 MB for an s3_key)",
    415: "unsupported_media_type: neither JPEG nor PNG, or a Content-Type other than image/jpeg, image/png, application/json",
    429: "throttled: Rekognition or S3 is throttling; see Retry-After",
    500: "internal_error: nothing about internals; the request id to quote",
    503: "model_not_deployed, model_not_running or model_starting (the model's status is in the body; Retry-After when a model exists)",
}


def _ref(name: str) -> dict[str, Any]:
    """A JSON answer described by ``inference.schemas.<name>`` (added to the document lazily)."""
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def _error_responses(*codes: int) -> dict[int, dict[str, Any]]:
    return {code: {"description": _ERRORS[code], "content": _ref("ErrorAnswer")} for code in codes}


_BINARY = {"schema": {"type": "string", "format": "binary"}}
_DETECTION_BODY = {
    "requestBody": {
        "required": True,
        "description": "The image as the raw body, or JSON naming it (with optional min_confidence and max_results).",
        "content": {
            "image/jpeg": _BINARY,
            "image/png": _BINARY,
            "application/json": {"schema": {"$ref": "#/components/schemas/DetectionRequest"}},
        },
    }
}


@app.post(
    "/detections",
    summary="Detect garments in an image",
    description=(
        "Send the image as the body (Content-Type image/jpeg or image/png) or as JSON {\"image\": base64} / "
        "{\"s3_key\": \"images/...\"}. The JSON answer lists garments most confident first, each box in ratios "
        "of the image (as Rekognition returns them) and in pixels. With Accept: image/png or image/jpeg "
        "(or ?render=true) the answer is the image with each garment outlined and captioned. Without "
        "min_confidence, each label's own threshold chosen in training applies."
    ),
    tags=["detections"],
    responses={
        200: {
            "description": "Garments found (JSON), or the image with the garments drawn",
            "content": {**_ref("DetectionAnswer"), "image/png": _BINARY, "image/jpeg": _BINARY},
        },
        **_error_responses(400, 404, 413, 415, 429, 500, 503),
    },
    openapi_extensions=_DETECTION_BODY,
)
def detect(
    min_confidence: Annotated[float | None, Query(ge=MIN_CONFIDENCE, le=MAX_CONFIDENCE, description="Lowest confidence (percent) of a garment in the answer.")] = None,
    max_results: Annotated[int | None, Query(ge=MIN_RESULTS, le=MAX_RESULTS, description="At most this many garments.")] = None,
    render: Annotated[bool, Query(description="Answer with the image (PNG unless Accept prefers image/jpeg).")] = False,
):  # no return annotation: Powertools would validate the (binary) body against it
    event = app.current_event
    data, request = _read_request(event)
    if request is not None:
        min_confidence = _option("min_confidence", min_confidence, request.min_confidence)
        max_results = _option("max_results", max_results, request.max_results)
    fmt = _wanted_format(event.headers.get("accept"), render)
    info = _probe(data) if data is not None else None
    pointer = _pointer()
    if data is None:  # an object in the dataset bucket, by key
        key = request.s3_key
        if fmt:  # the drawing needs the whole image anyway: one GET
            data = _get_s3(key)
            info = _probe(data)
        else:  # the header is enough: a ranged GET or two
            info, _ = _probe_s3(key)
        image = {"S3Object": {"Bucket": runtime.settings.dataset_bucket, "Name": key}}
    else:
        image = {"Bytes": data}
    started = time.perf_counter()
    response = _detect(pointer, image, min_confidence, max_results)
    elapsed_ms = (time.perf_counter() - started) * 1000
    answer, garments = shape_answer(response, info, min_confidence=min_confidence, max_results=max_results,
                                    model=_model_summary(pointer, lifecycle.RUNNING))  # fmt: skip
    runtime.activity.touch(pointer.project_version_arn)
    metrics.add_metric(name="Detections", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="GarmentsDetected", unit=MetricUnit.Count, value=len(garments))
    logger.info("detected", extra={"garments": len(garments), "image": answer["image"], "rekognition_ms": round(elapsed_ms, 1),
                                   "source": "s3" if request and request.s3_key else "bytes", "render": fmt})  # fmt: skip
    headers = {"Vary": "Accept", "X-Garment-Count": str(len(garments))}
    if fmt:
        from inference import render as drawing  # Pillow: only on this path

        try:
            rendered = drawing.render(data, garments, fmt)
        except drawing.RenderError as exc:
            raise ApiError(400, "image_corrupt", str(exc)) from None
        metrics.add_metric(name="RenderedImages", unit=MetricUnit.Count, value=1)
        headers["X-Render-Scale"] = f"{rendered.scale:.3f}"
        return Response(200, rendered.content_type, body=rendered.body, headers=headers)
    return _json(200, answer, headers)


@app.get(
    "/model",
    summary="The deployed model and its live status",
    description="status NONE (200) when nothing is deployed yet. running lists the pipeline's other models that run (and bill).",
    tags=["model"],
    responses={200: {"description": "The model", "content": _ref("ModelState")}, **_error_responses(429, 500)},
)
def get_model():
    pointer = _current_pointer()
    settings = runtime.settings
    if pointer is None:
        return _json(200, {"status": lifecycle.NONE, "message": "no model is deployed yet", "auto_start": settings.auto_start,
                           "emulated": settings.emulated, **_running_besides(None)})  # fmt: skip
    description = _describe(pointer)
    status = status_of(description)
    try:
        activity = runtime.read_activity(pointer.project_version_arn)
    except Exception:
        logger.warning("could not read the activity table", exc_info=True)
        activity = {}
    running_since = lifecycle.latest(pointer.deployed_at, lifecycle.parse_time(activity.get("started_at")), lifecycle.parse_time(activity.get("running_seen_at")))
    answer = {
        "status": status,
        "version": pointer.version_name,
        "arn": pointer.project_version_arn,
        "project_arn": pointer.project_arn,
        "status_message": (description or {}).get("StatusMessage"),
        "f1": pointer.f1,
        "inference_units": (description or {}).get("MinInferenceUnits") or pointer.inference_units,
        "dataset": pointer.dataset,
        "deployed_at": lifecycle.iso(pointer.deployed_at),
        "running_since": lifecycle.iso(running_since) if status == lifecycle.RUNNING else None,
        "last_request_at": lifecycle.iso(lifecycle.parse_time(activity.get("last_request_at"))),
        "auto_start": settings.auto_start,
        "emulated": settings.emulated,
        **_running_besides(pointer),
    }
    if settings.emulated:
        answer["message"] = EMULATOR_NOTE
    return _json(200, answer)


def _running_besides(pointer: ModelPointer | None) -> dict[str, Any]:
    """``running``: the pipeline's other RUNNING or STARTING models, with hourly cost estimates;
    or ``running_error`` when they cannot be listed, which must not fail the answer."""
    try:
        projects = lifecycle.watched_projects(runtime.list_projects(), pointer)
        versions = [version for project in projects for version in runtime.list_versions(project)]
    except Exception as exc:  # AccessDenied, throttling, a timeout: the answer stands without the list
        logger.warning("could not list the running models", exc_info=True)
        return {"running_error": f"could not list the pipeline's other running models ({error_code(exc) or type(exc).__name__})"}
    running = lifecycle.running_models(versions, exclude=pointer.project_version_arn if pointer else None)
    return {"running": running, "running_cost_note": lifecycle.COST_NOTE}


def _transition(action: str, allowed: frozenset[str]) -> Response:
    pointer = _pointer()
    before = status_of(_describe(pointer))
    if before not in allowed:
        raise _conflict(pointer, action, before)
    client = runtime.client("rekognition")
    try:
        if action == "start":
            after = _start(pointer)
        else:
            after = str(client.stop_project_version(ProjectVersionArn=pointer.project_version_arn).get("Status") or lifecycle.STOPPING)
            try:
                runtime.record(pointer.project_version_arn, stopped_at=int(runtime.wall()), stop_reason="api")
            except Exception:
                logger.warning("could not record the stop", exc_info=True)
    except ClientError as exc:
        code = error_code(exc)
        if code in THROTTLING:
            raise _throttled("Rekognition") from None
        if code in ("ResourceInUseException", "InvalidParameterException", "ResourceNotReadyException"):
            raise _conflict(pointer, action, status_of(_describe(pointer))) from None
        raise
    metrics.add_metric(name=f"Model{action.title()}s", unit=MetricUnit.Count, value=1)
    logger.info(f"model {action} requested", extra={"model": pointer.project_version_arn, "before": before, "after": after})
    answer: dict[str, Any] = {"model": _model_summary(pointer, after), "previous_status": before}
    if action == "start":
        answer["message"] = "the model is starting; it takes several minutes to reach RUNNING"
    else:  # the models that still bill, for whoever stops the API's to save money
        answer.update(message="the model is stopping", **_running_besides(pointer))
        if answer.get("running"):
            answer["message"] += f"; {len(answer['running'])} other model(s) of the pipeline still bill: see running"
    return _json(202, answer)


def _conflict(pointer: ModelPointer, action: str, status: str) -> ApiError:
    allowed = ", ".join(sorted(STARTABLE if action == "start" else STOPPABLE))
    return ApiError(409, "model_conflict", f"cannot {action} the model: it is {status} (possible from {allowed})",
                    model=_model_summary(pointer, status))  # fmt: skip


_TRANSITION_RESPONSES = {
    202: {"description": "The transition was requested; the answer has the resulting status", "content": _ref("Transition")},
    409: {"description": "model_conflict: the model's status does not allow it", "content": _ref("ErrorAnswer")},
    **_error_responses(429, 500, 503),
}


@app.post("/model/start", summary="Start the deployed model", description="Starts it with the inference units it was deployed with. Admin route.",
          tags=["model"], responses=_TRANSITION_RESPONSES, status_code=202)  # fmt: skip
def start_model():
    return _transition("start", STARTABLE)


@app.post("/model/stop", summary="Stop the deployed model",
          description="A stopped model costs nothing and answers 503. The answer lists the pipeline's other models that still run (and bill). Admin route.",
          tags=["model"], responses=_TRANSITION_RESPONSES, status_code=202)  # fmt: skip
def stop_model():
    return _transition("stop", STOPPABLE)


@lru_cache(maxsize=1)
def openapi_document() -> str:
    """The OpenAPI document: routes and parameters from the resolver, answers from
    ``inference.schemas`` (imported here, not at cold start)."""
    from pydantic.json_schema import models_json_schema

    from inference import schemas

    document = json.loads(app.get_openapi_json_schema(title=API_TITLE, version=API_VERSION, description=API_DESCRIPTION))
    models = [schemas.DetectionRequest, schemas.DetectionAnswer, schemas.ErrorAnswer, schemas.ModelState, schemas.Transition]
    _, definitions = models_json_schema([(model, "serialization") for model in models], ref_template="#/components/schemas/{model}")
    components = document.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        components.pop(unused, None)
    components.update(definitions.get("$defs", {}))
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            # Validation errors are answered 400 with the common error body, not Powertools' 422.
            if responses.pop("422", None) is not None and "400" not in responses:
                responses["400"] = {"description": "invalid_request", "content": _ref("ErrorAnswer")}
    return json.dumps(document, separators=(",", ":"))


@app.get("/openapi.json", include_in_schema=False)
def openapi():
    return Response(200, "application/json", body=openapi_document())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)  # a rendered image has no place in a trace
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
