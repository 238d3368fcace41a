"""The error contract: each domain error's handler, what each route can answer, the OpenAPI
document and the README's table say the same thing (``inference.openapi.ANSWERS``)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from inference import errors, openapi

from .conftest import LambdaContext, api_event, call, client_error, image_bytes, install

ROOT = Path(__file__).resolve().parents[2]
JPEG = image_bytes(640, 480)

# -- each domain error -> status, code, Retry-After -------------------------------------------
MAPPING = [
    (errors.RequestInvalid("bad option", details=[{"location": "query.x", "message": "m"}]), 400, "invalid_request", None),
    (errors.DatasetRequired("several datasets have a live model", datasets=["a", "b"]), 400, "dataset_required", None),
    (errors.ImageRejected("image_corrupt", "the image cannot be decoded: JPEG truncated at byte 12"), 400, "image_corrupt", None),
    (errors.ImageRejected("image_dimensions", "32x32 px"), 400, "image_dimensions", None),
    (errors.ImageRejected("image_aspect_ratio", "2000x64 px"), 400, "image_aspect_ratio", None),
    (errors.ImageNotFound("no object images/x.jpg"), 404, "image_not_found", None),
    (errors.RouteNotFound("no route GET /x"), 404, "not_found", None),
    (errors.ModelConflict("cannot start", model={"status": "RUNNING"}), 409, "model_conflict", None),
    (errors.ImageTooLarge("5000000 bytes"), 413, "image_too_large", None),
    (errors.UnsupportedMediaType("GIF image"), 415, "unsupported_media_type", None),
    (errors.Throttled("Rekognition"), 429, "throttled", 2),
    (errors.Internal("internal error"), 500, "internal_error", None),
    (RuntimeError("secret"), 500, "internal_error", None),
    (errors.ModelNotDeployed(), 503, "model_not_deployed", None),
    (errors.ModelNotRunning("the model is STOPPED", model={"status": "STOPPED"}, auto_start=False), 503, "model_not_running", None),
    (errors.ModelStarting("the model is STARTING", 60, model={"status": "STARTING"}), 503, "model_starting", 60),
    (errors.ModelStarting("just becoming available", 5, model={"status": "RUNNING"}), 503, "model_starting", 5),
]


def _raise_through_a_resolver(exc: Exception) -> dict:
    app = APIGatewayRestResolver()
    errors.register(app)

    @app.get("/boom")
    def boom():
        raise exc

    return app.resolve(api_event("GET", "/boom"), LambdaContext())


@pytest.mark.parametrize("exc, status, code, retry_after", MAPPING, ids=lambda v: type(v).__name__ if isinstance(v, Exception) else None)
def test_each_domain_error_has_its_answer(exc, status, code, retry_after):
    raw = _raise_through_a_resolver(exc)
    headers = {k: v[-1] for k, v in (raw.get("multiValueHeaders") or {}).items()} | (raw.get("headers") or {})
    error = json.loads(raw["body"])["error"]
    assert (raw["statusCode"], error["code"]) == (status, code)
    assert headers["Content-Type"] == "application/json"
    if retry_after is None:
        assert "Retry-After" not in headers and "retry_after" not in error
    else:
        assert (headers["Retry-After"], error["retry_after"]) == (str(retry_after), retry_after)
    if isinstance(exc, errors.InferenceError) and code != "internal_error":
        assert error["message"] == exc.message
        assert {k: error[k] for k in exc.extra} == exc.extra
    else:
        assert "secret" not in raw["body"]


def test_the_mapping_is_the_documented_one():
    for exc, status, code, retry_after in MAPPING:
        if code != "not_found":
            assert (openapi.ANSWERS[code].status, openapi.ANSWERS[code].retry_after) == (status, retry_after is not None), code
    assert {code for _, _, code, _ in MAPPING} - {"not_found"} == set(openapi.ANSWERS)


def test_every_registered_handler_is_tested():
    tested = {type(exc) for exc, *_ in MAPPING}
    # Exception: through RuntimeError above; the validation errors through the routes (test_handler).
    assert set(errors.HANDLERS) - tested == {Exception, errors.RequestValidationError, errors.ValidationError}


def test_an_unknown_image_rejection_is_a_programming_error():
    with pytest.raises(ValueError):
        errors.ImageRejected("image_blurry", "no such reason")


# -- what each route can answer ---------------------------------------------------------------
class S3:
    def __init__(self, objects):
        self.objects = objects

    def get_object(self, Bucket, Key, Range=None):
        if Key not in self.objects:
            raise client_error("NoSuchKey", "GetObject")
        data = self.objects[Key]
        return {"Body": io.BytesIO(data), "ContentLength": len(data), "ContentRange": f"bytes 0-{len(data) - 1}/{len(data)}"}


def _detect(**kwargs):
    return call(api_event("POST", "/detections", **kwargs))


def _no_model(fakes):
    fakes.ssm.value = json.dumps({"status": "none"})


def _status(status):
    def apply(fakes):
        fakes.rekognition.status = status

    return apply


def _fail(operation, code):
    def apply(fakes):
        fakes.rekognition.fail(operation, code)

    return apply


def _ssm_fails(code):
    def apply(fakes):
        def refused(**params):
            raise client_error(code, "GetParametersByPath")

        fakes.ssm.get_parameters_by_path = refused

    return apply


_ssm_throttled = _ssm_fails("ThrottlingException")


def _two_datasets(fakes):
    """A second dataset with a model, and no default: a request must name one."""
    fakes.ssm.others = {"shoes": json.dumps({**json.loads(fakes.ssm.value), "dataset": "shoes"})}


BAD_DATASET = {"dataset": "no such/name"}


DETECTIONS = [
    ("invalid_request", None, dict(body=JPEG, query={"max_results": "0"})),
    ("invalid_request", None, dict(body=JPEG, query=BAD_DATASET)),
    ("dataset_required", _two_datasets, dict(body=JPEG)),
    ("image_corrupt", None, dict(body=b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x00" * 4)),
    ("image_corrupt", _fail("DetectCustomLabels", "InvalidImageFormatException"), dict(body=JPEG[:200])),
    ("image_dimensions", None, dict(body=image_bytes(32, 32, "PNG"), content_type="image/png")),
    ("image_aspect_ratio", None, dict(body=image_bytes(2000, 64, "PNG"), content_type="image/png")),
    ("image_not_found", None, dict(body={"s3_key": "images/missing.jpg"})),
    ("image_too_large", None, dict(body=JPEG + bytes(4 * 1024 * 1024))),
    ("unsupported_media_type", None, dict(body=b"GIF89a" + bytes(100), content_type="image/gif")),
    ("throttled", _fail("DetectCustomLabels", "ThrottlingException"), dict(body=JPEG)),
    ("throttled", _ssm_throttled, dict(body=JPEG)),
    ("internal_error", _fail("DetectCustomLabels", "AccessDeniedException"), dict(body=JPEG)),
    ("model_not_deployed", _no_model, dict(body=JPEG)),
    ("model_not_running", _status("STOPPED"), dict(body=JPEG)),
    ("model_starting", _status("STARTING"), dict(body=JPEG)),
]
MODEL = [
    ("GET /model", "throttled", _fail("DescribeProjectVersions", "ThrottlingException")),
    ("GET /model", "internal_error", _fail("DescribeProjectVersions", "AccessDeniedException")),
    ("GET /models", "throttled", _ssm_throttled),
    ("GET /models", "internal_error", _ssm_fails("AccessDeniedException")),
]
for _route in ("GET /model", "POST /model/start", "POST /model/stop"):
    MODEL += [(_route, "invalid_request", BAD_DATASET), (_route, "dataset_required", _two_datasets)]
for _route in ("POST /model/start", "POST /model/stop"):
    MODEL += [
        (_route, "model_conflict", _status("STOPPING")),
        (_route, "throttled", _fail("DescribeProjectVersions", "ThrottlingException")),
        (_route, "internal_error", _fail("DescribeProjectVersions", "AccessDeniedException")),
        (_route, "model_not_deployed", _no_model),
    ]
SCENARIOS = [("POST /detections", code, setup, request) for code, setup, request in DETECTIONS] + [
    (route, code, setup, None) for route, code, setup in MODEL
]


def _run(fakes, route, setup, request):
    fakes.s3 = S3({"images/a.jpg": JPEG})
    install(fakes)
    query = None
    if isinstance(setup, dict):  # a query string, not a setup
        setup, query = None, setup
    if setup:
        setup(fakes)
    if route == "POST /detections":
        return _detect(**request)
    method, path = route.split(" ")
    return call(api_event(method, path, query=query))


@pytest.mark.parametrize("route, code, setup, request_", SCENARIOS, ids=[f"{r} {c}" for r, c, *_ in SCENARIOS])
def test_route_answers_the_documented_error(fakes, route, code, setup, request_):
    answer = _run(fakes, route, setup, request_)
    expected = openapi.ANSWERS[code]
    assert (answer.status, answer.error["code"]) == (expected.status, code), answer.raw
    assert ("Retry-After" in answer.headers) == expected.retry_after
    assert ("retry_after" in answer.error) == expected.retry_after


def test_every_documented_error_of_a_route_is_one_it_answers():
    answered = {(route, code) for route, code, *_ in SCENARIOS}
    documented = {(route, code) for route, codes in openapi.ROUTE_ERRORS.items() for code in codes}
    assert answered == documented


# -- the OpenAPI document as served, and the README -------------------------------------------
def test_the_served_document_lists_each_routes_codes_and_headers(fakes):
    document = call(api_event("GET", "/openapi.json")).json
    found = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            route = f"{method.upper()} {path}"
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                codes = response["x-error-codes"]
                assert all(openapi.ANSWERS[code].status == int(status) for code in codes), (route, status)
                retrying = [code for code in codes if openapi.ANSWERS[code].retry_after]
                assert ("Retry-After" in response.get("headers", {})) == bool(retrying), (route, status)
                for code in codes:
                    assert code in response["description"]
                found.setdefault(route, set()).update(codes)
    assert found == {route: set(codes) for route, codes in openapi.ROUTE_ERRORS.items()}


def _readme_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Using the model")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_the_readme_table_is_the_documented_mapping():
    rows = re.findall(r"^\| (\d{3}) \| `(\w+)` \| ([^|]+) \|", _readme_section(), re.MULTILINE)
    table = {code: (int(status), retry.strip() != "no") for status, code, retry in rows}
    assert table == {code: (answer.status, answer.retry_after) for code, answer in openapi.ANSWERS.items()}
    assert re.search(r"404\s+`not_found`", _readme_section())


def test_the_readme_says_what_the_model_routes_answer():
    section = " ".join(_readme_section().split())
    model_route = re.search(r"`GET /model` can answer (.*?) only", section).group(1)
    transitions = re.search(r"`POST /model/start` and `/model/stop` (.*?)\. ", section).group(1)
    statuses = {route: {openapi.ANSWERS[code].status for code in codes} for route, codes in openapi.ROUTE_ERRORS.items()}
    assert {int(n) for n in re.findall(r"\d{3}", model_route)} == statuses["GET /model"]
    assert {int(n) for n in re.findall(r"\d{3}", transitions)} == statuses["POST /model/start"] == statuses["POST /model/stop"]
    assert re.findall(r"`(\w+)`", transitions) == [c for c in openapi.ROUTE_ERRORS["POST /model/start"] if openapi.ANSWERS[c].status == 503]
