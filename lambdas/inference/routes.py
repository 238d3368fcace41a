"""The API's routes: parse (``inference.requests``), ask the model (``inference.model``) and the
dataset (``inference.dataset``), shape the answer. Errors are raised as ``inference.errors``
and answered by their handlers; the OpenAPI tables are ``inference.openapi``'s.

* ``POST /detections``: garments in an image, as JSON with boxes in ratios and pixels, or
  (``Accept: image/png|image/jpeg`` or ``?render=true``) the image with the garments drawn;
* ``GET /model``: a dataset's deployed model and its live status (200 ``{"status": "NONE"}``
  when nothing is deployed: an empty deployment is a state, not a missing route), and which
  other models of the pipeline run (``running``);
* ``GET /models``: every dataset's deployed model, its live status and what it bills;
* ``POST /model/start``, ``POST /model/stop``: start or stop a dataset's deployed model (202);

Every model route takes ``?dataset=NAME``; without it, the configured default dataset, or the
one dataset with a model (``inference.model``).
* ``GET /openapi.json``: the OpenAPI document of these routes.

Pillow is imported only when an image is rendered (``inference.render``).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.metrics import MetricUnit

from fashion_pipeline import lifecycle
from fashion_pipeline.detections import MAX_CONFIDENCE, MAX_RESULTS, MIN_CONFIDENCE, MIN_RESULTS, shape_answer
from fashion_pipeline.training import DATASET_NAME
from inference import errors, openapi, requests
from inference.dataset import dataset_images
from inference.model import EMULATOR_NOTE, deployed, list_models
from inference.observability import logger, metrics
from inference.responses import json_response
from inference.runtime import status_of
from inference.settings import Settings


def _cors(origin: str) -> CORSConfig | None:
    if not origin:
        return None
    return CORSConfig(allow_origin=origin, allow_headers=["Accept"], max_age=600,
                      expose_headers=["Retry-After", "X-Garment-Count", "X-Render-Scale"])  # fmt: skip


DatasetParameter = Annotated[str | None, Query(
    pattern=DATASET_NAME.pattern, description="The dataset whose model answers; without it, the configured default "
    "dataset, or the one dataset with a model (400 dataset_required when several have one and none is the default).")]

app = APIGatewayRestResolver(enable_validation=True, cors=_cors(Settings.from_env().cors_origin))
errors.register(app)


def resolve(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)


@app.not_found
def _no_route(exc: Exception) -> Response:
    event = app.current_event
    return errors.answer(errors.RouteNotFound(f"no route {event.http_method} {event.path}"))


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
        200: {"description": "Garments found (JSON), or the image with the garments drawn",
              "content": {**openapi.ref("DetectionAnswer"), "image/png": openapi.BINARY, "image/jpeg": openapi.BINARY}},
        **openapi.error_responses("POST /detections"),
    },  # fmt: skip
    openapi_extensions=openapi.DETECTION_BODY,
)
def detect(
    min_confidence: Annotated[float | None, Query(ge=MIN_CONFIDENCE, le=MAX_CONFIDENCE, description="Lowest confidence (percent) of a garment in the answer.")] = None,
    max_results: Annotated[int | None, Query(ge=MIN_RESULTS, le=MAX_RESULTS, description="At most this many garments.")] = None,
    render: Annotated[bool, Query(description="Answer with the image (PNG unless Accept prefers image/jpeg).")] = False,
    dataset: DatasetParameter = None,
):  # no return annotation: Powertools would validate the (binary) body against it
    wanted = requests.parse(app.current_event, min_confidence=min_confidence, max_results=max_results, render=render)
    model = deployed(dataset)
    pointer = model.pointer()
    data, info = wanted.data, wanted.info
    if wanted.s3_key is not None:
        dataset = dataset_images()
        if wanted.render:  # the drawing needs the whole image anyway: one GET
            data = dataset.read(wanted.s3_key)
            info = requests.probe(data)
        else:  # the header is enough: a ranged GET or two; Rekognition reads the object
            info = dataset.probe(wanted.s3_key)
    started = time.perf_counter()
    response = model.detect(pointer, data=None if wanted.s3_key else data, s3_key=wanted.s3_key,
                            min_confidence=wanted.min_confidence, max_results=wanted.max_results)  # fmt: skip
    elapsed_ms = (time.perf_counter() - started) * 1000
    answer, garments = shape_answer(response, info, min_confidence=wanted.min_confidence, max_results=wanted.max_results,
                                    model=model.summary(pointer, lifecycle.RUNNING))  # fmt: skip
    metrics.add_metric(name="Detections", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="GarmentsDetected", unit=MetricUnit.Count, value=len(garments))
    logger.info("detected", extra={"garments": len(garments), "image": answer["image"], "rekognition_ms": round(elapsed_ms, 1), "dataset": model.dataset,
                                   "source": "s3" if wanted.s3_key else "bytes", "render": wanted.render})  # fmt: skip
    headers = {"Vary": "Accept", "X-Garment-Count": str(len(garments))}
    if wanted.render:
        from inference import render as drawing  # Pillow: only on this path

        try:
            rendered = drawing.render(data, garments, wanted.render)
        except drawing.RenderError as exc:
            raise errors.ImageRejected("image_corrupt", f"the image cannot be decoded: {exc}") from None
        metrics.add_metric(name="RenderedImages", unit=MetricUnit.Count, value=1)
        headers["X-Render-Scale"] = f"{rendered.scale:.3f}"
        return Response(200, rendered.content_type, body=rendered.body, headers=headers)
    return json_response(200, answer, headers)


@app.get(
    "/models",
    summary="Every dataset's deployed model",
    description="One entry per dataset with a live model: its version, live status, F1, and what it bills while it runs.",
    tags=["model"],
    responses={200: {"description": "The models", "content": openapi.ref("ModelsAnswer")}, **openapi.error_responses("GET /models")},
)
def get_models():
    return json_response(200, list_models())


@app.get(
    "/model",
    summary="A dataset's deployed model and its live status",
    description="status NONE (200) when the dataset has no deployed model. running lists the pipeline's other models that run (and bill).",
    tags=["model"],
    responses={200: {"description": "The model", "content": openapi.ref("ModelState")}, **openapi.error_responses("GET /model")},
)
def get_model(dataset: DatasetParameter = None):
    model = deployed(dataset)
    settings = model.settings
    pointer = model.current_pointer()
    if pointer is None:
        message = f"dataset {model.dataset!r} has no deployed model" if model.dataset else "no model is deployed yet"
        return json_response(200, {"status": lifecycle.NONE, "dataset": model.dataset, "message": message, "auto_start": settings.auto_start,
                                   "emulated": settings.emulated, **model.running_besides(None)})  # fmt: skip
    description = model.describe(pointer)
    status = status_of(description)
    description = description or {}
    activity = model.activity(pointer)
    running_since = lifecycle.latest(pointer.deployed_at, lifecycle.parse_time(activity.get("started_at")), lifecycle.parse_time(activity.get("running_seen_at")))
    answer = {
        "status": status,
        "version": pointer.version_name,
        "arn": pointer.project_version_arn,
        "project_arn": pointer.project_arn,
        "status_message": description.get("StatusMessage"),
        "f1": pointer.f1,
        "inference_units": description.get("MinInferenceUnits") or pointer.inference_units,
        "dataset": pointer.dataset,
        "deployed_at": lifecycle.iso(pointer.deployed_at),
        "running_since": lifecycle.iso(running_since) if status == lifecycle.RUNNING else None,
        "last_request_at": lifecycle.iso(lifecycle.parse_time(activity.get("last_request_at"))),
        "auto_start": settings.auto_start,
        "emulated": settings.emulated,
        **model.running_besides(pointer),
    }
    if settings.emulated:
        answer["message"] = EMULATOR_NOTE
    return json_response(200, answer)


def _transition_responses(route: str) -> dict[int, dict[str, Any]]:
    return {202: {"description": "The transition was requested; the answer has the resulting status", "content": openapi.ref("Transition")},
            **openapi.error_responses(route)}  # fmt: skip


@app.post("/model/start", summary="Start a dataset's deployed model", description="Starts it with the inference units it was deployed with. Admin route.",
          tags=["model"], responses=_transition_responses("POST /model/start"), status_code=202)  # fmt: skip
def start_model(dataset: DatasetParameter = None):
    model = deployed(dataset)
    started = model.start()
    return json_response(202, {"model": model.summary(started.pointer, started.after), "previous_status": started.before,
                               "message": "the model is starting; it takes several minutes to reach RUNNING"})  # fmt: skip


@app.post("/model/stop", summary="Stop a dataset's deployed model",
          description="A stopped model costs nothing and answers 503. The answer lists the pipeline's other models that still run (and bill). Admin route.",
          tags=["model"], responses=_transition_responses("POST /model/stop"), status_code=202)  # fmt: skip
def stop_model(dataset: DatasetParameter = None):
    model = deployed(dataset)
    stopped = model.stop()
    answer: dict[str, Any] = {"model": model.summary(stopped.pointer, stopped.after), "previous_status": stopped.before,
                              "message": "the model is stopping", **model.running_besides(stopped.pointer)}  # fmt: skip
    if answer.get("running"):  # the models that still bill, for whoever stops the API's to save money
        answer["message"] += f"; {len(answer['running'])} other model(s) of the pipeline still bill: see running"
    return json_response(202, answer)


@app.get("/openapi.json", include_in_schema=False)
def openapi_document():
    return Response(200, "application/json", body=openapi.document(app))
