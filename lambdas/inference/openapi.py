"""The OpenAPI document: the error answers of each route (``ANSWERS``, ``ROUTE_ERRORS``) and the
document itself, routes and parameters from the resolver, bodies from ``inference.schemas``.

``ANSWERS`` is what ``inference.errors``' handlers answer, code by code; tests/inference/
test_contract.py checks the handlers, the routes and the README against it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, NamedTuple

API_TITLE = "Fashion pipeline inference API"
API_VERSION = "1.0.0"
API_DESCRIPTION = (
    "Detects garments (short_sleeved_shirt, trousers, vest_dress, ...) in a JPEG or PNG image with the "
    "Amazon Rekognition Custom Labels model the training pipeline deployed for a dataset (?dataset=NAME; "
    "without it, the configured default dataset, or the one dataset with a model), and outlines them on the image "
    "on request. GET /models lists every dataset's model. Requests are signed with AWS Signature Version 4 (IAM authorisation). Every error answer is "
    'JSON {"error": {"code", "message"}}; an unknown route answers 404 not_found. A Retry-After header (and '
    "retry_after in the body) comes only where waiting helps: 429 throttled and 503 model_starting."
)


class ErrorAnswer(NamedTuple):
    status: int
    retry_after: bool  # a Retry-After header (and ``retry_after`` in the body)
    description: str


ANSWERS = {
    "invalid_request": ErrorAnswer(400, False, "options, JSON body or base64 that cannot be used"),
    "dataset_required": ErrorAnswer(400, False, "several datasets have a model and no default is configured: name one with ?dataset= (datasets lists them)"),
    "image_corrupt": ErrorAnswer(400, False, "a JPEG or PNG that cannot be decoded (its header, or Rekognition, says so)"),
    "image_dimensions": ErrorAnswer(400, False, "a side outside 64-4096 px"),
    "image_aspect_ratio": ErrorAnswer(400, False, "longer side over 20 times the shorter"),
    "image_not_found": ErrorAnswer(404, False, "no such s3_key in the dataset bucket"),
    "model_conflict": ErrorAnswer(409, False, "the model's status does not allow the start or stop (the status is in the body)"),
    "image_too_large": ErrorAnswer(413, False, "over 4 MB as bytes (15 MB for an s3_key)"),
    "unsupported_media_type": ErrorAnswer(415, False, "neither JPEG nor PNG, or a Content-Type other than image/jpeg, image/png, application/json"),
    "throttled": ErrorAnswer(429, True, "Rekognition, S3 or SSM is throttling; retry after Retry-After seconds"),
    "internal_error": ErrorAnswer(500, False, "nothing about internals; the request id to quote"),
    "model_not_deployed": ErrorAnswer(503, False, "the dataset has no deployed model: train or deploy one first; no Retry-After"),
    "model_not_running": ErrorAnswer(503, False, "the model is STOPPED (without auto-start), STOPPING, FAILED or gone: the message says what helps; no Retry-After"),
    "model_starting": ErrorAnswer(503, True, "the model is STARTING (perhaps started by this request) or just became RUNNING; Retry-After says when to ask again"),
}
ROUTE_ERRORS = {
    "POST /detections": ("invalid_request", "dataset_required", "image_corrupt", "image_dimensions", "image_aspect_ratio", "image_not_found", "image_too_large",
                         "unsupported_media_type", "throttled", "internal_error", "model_not_deployed", "model_not_running", "model_starting"),
    "GET /model": ("invalid_request", "dataset_required", "throttled", "internal_error"),
    "GET /models": ("throttled", "internal_error"),
    "POST /model/start": ("invalid_request", "dataset_required", "model_conflict", "throttled", "internal_error", "model_not_deployed"),
    "POST /model/stop": ("invalid_request", "dataset_required", "model_conflict", "throttled", "internal_error", "model_not_deployed"),
}
RETRY_AFTER_HEADER = {"description": "Seconds to wait before asking again", "schema": {"type": "integer"}}


def ref(name: str) -> dict[str, Any]:
    """A JSON answer described by ``inference.schemas.<name>`` (added to the document lazily)."""
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def error_responses(route: str) -> dict[int, dict[str, Any]]:
    """The route's error answers by status: its codes (``x-error-codes``), and Retry-After
    where one of them carries it."""
    by_status: dict[int, list[str]] = {}
    for code in ROUTE_ERRORS[route]:
        by_status.setdefault(ANSWERS[code].status, []).append(code)
    responses: dict[int, dict[str, Any]] = {}
    for status, codes in sorted(by_status.items()):
        response: dict[str, Any] = {
            "description": "; ".join(f"{code}: {ANSWERS[code].description}" for code in codes),
            "content": ref("ErrorAnswer"),
            "x-error-codes": codes,
        }
        with_header = [code for code in codes if ANSWERS[code].retry_after]
        if with_header:
            response["headers"] = {"Retry-After": {**RETRY_AFTER_HEADER, "description": f"Seconds to wait (only with {', '.join(with_header)})"}}
        responses[status] = response
    return responses


BINARY = {"schema": {"type": "string", "format": "binary"}}
DETECTION_BODY = {
    "requestBody": {
        "required": True,
        "description": "The image as the raw body, or JSON naming it (with optional min_confidence and max_results).",
        "content": {"image/jpeg": BINARY, "image/png": BINARY, "application/json": {"schema": {"$ref": "#/components/schemas/DetectionRequest"}}},
    }
}


@lru_cache(maxsize=1)
def document(app: Any) -> str:
    """The OpenAPI document of ``app``'s routes (``inference.schemas`` imported here, not at cold start)."""
    from pydantic.json_schema import models_json_schema

    from inference import schemas

    document = json.loads(app.get_openapi_json_schema(title=API_TITLE, version=API_VERSION, description=API_DESCRIPTION))
    models = [schemas.DetectionRequest, schemas.DetectionAnswer, schemas.ErrorAnswer, schemas.ModelState, schemas.ModelsAnswer, schemas.Transition]
    _, definitions = models_json_schema([(model, "serialization") for model in models], ref_template="#/components/schemas/{model}")
    components = document.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        components.pop(unused, None)
    components.update(definitions.get("$defs", {}))
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            # Validation errors are answered 400 invalid_request (listed per route), not Powertools' 422.
            operation.get("responses", {}).pop("422", None)
    return json.dumps(document, separators=(",", ":"))
