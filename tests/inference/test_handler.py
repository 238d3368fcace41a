"""The inference API's routes and error answers, with fake AWS clients."""

from __future__ import annotations

import base64
import importlib
import io
import json

import pytest
from PIL import Image

from inference import handler as api
from inference import openapi, routes, schemas

from .conftest import (
    DATASET_BUCKET,
    POINTER,
    VERSION_ARN,
    VERSION_NAME,
    api_event,
    call,
    client_error,
    image_bytes,
    install,
    labels,
    version,
)

JPEG = image_bytes(640, 480)
PNG = image_bytes(300, 200, "PNG")


def detect(body=JPEG, **kwargs):
    return call(api_event("POST", "/detections", body=body, **kwargs))


# -- POST /detections: JSON ----------------------------------------------------------------
def test_raw_jpeg_body_gives_garments_in_ratios_and_pixels(fakes):
    fakes.rekognition.response = labels(
        ("skirt", 71.25, (0.1, 0.2, 0.3, 0.4)),
        ("trousers", 91.5, (0.25, 0.5, 0.5, 0.45)),
    )
    answer = detect()
    assert answer.status == 200, answer.raw
    assert answer.content_type == "application/json"
    assert answer.headers["Vary"] == "Accept"
    body = answer.json
    assert body["model"] == {"dataset": "demo", "version": VERSION_NAME, "arn": VERSION_ARN, "status": "RUNNING", "f1": 0.873, "emulated": False}
    assert body["image"] == {"width": 640, "height": 480, "format": "jpeg"}
    assert [g["label"] for g in body["garments"]] == ["trousers", "skirt"]  # most confident first
    trousers = body["garments"][0]
    assert trousers["confidence"] == 91.5
    assert trousers["box"] == {"left": 0.25, "top": 0.5, "width": 0.5, "height": 0.45}
    assert trousers["pixels"] == {"left": 160, "top": 240, "width": 320, "height": 216}
    assert body["garments"][1]["pixels"] == {"left": 64, "top": 96, "width": 192, "height": 192}
    [params] = fakes.rekognition.ops("DetectCustomLabels")
    assert params["ProjectVersionArn"] == VERSION_ARN
    assert params["Image"] == {"Bytes": JPEG}
    assert "MinConfidence" not in params and "MaxResults" not in params  # each label's own threshold
    assert answer.headers["X-Garment-Count"] == "2"


def test_png_body_and_options_from_the_query_string(fakes):
    fakes.rekognition.response = labels(("a", 40.0, (0, 0, 1, 1)), ("b", 60.0, (0, 0, 1, 1)), ("c", 80.0, (0, 0, 1, 1)))
    answer = detect(PNG, content_type="image/png", query={"min_confidence": "50", "max_results": "1"})
    assert answer.status == 200
    assert answer.json["image"]["format"] == "png"
    assert [g["label"] for g in answer.json["garments"]] == ["c"]
    [params] = fakes.rekognition.ops("DetectCustomLabels")
    assert (params["MinConfidence"], params["MaxResults"]) == (50.0, 1)


def test_json_body_with_base64_image_and_options(fakes):
    fakes.rekognition.response = labels(("a", 40.0, (0, 0, 1, 1)), ("b", 60.0, (0, 0, 1, 1)))
    answer = detect({"image": base64.b64encode(PNG).decode(), "min_confidence": 50})
    assert answer.status == 200, answer.raw
    assert [g["label"] for g in answer.json["garments"]] == ["b"]
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert detect({"image": data_url}).status == 200


def test_json_body_sent_base64_encoded_is_read(fakes):
    # With binary media type */* API Gateway base64-encodes JSON bodies too.
    event = api_event("POST", "/detections", body=json.dumps({"image": base64.b64encode(PNG).decode()}),
                      content_type="application/json", base64_body=True)  # fmt: skip
    assert call(event).status == 200


def test_image_level_labels_have_no_box(fakes):
    fakes.rekognition.response = labels(("dress", 88.0, None))
    [garment] = detect().json["garments"]
    assert garment == {"label": "dress", "confidence": 88.0, "box": None, "pixels": None}


IMAGE_B64 = base64.b64encode(JPEG).decode()


@pytest.mark.parametrize(
    "query, body",
    [
        ({"min_confidence": "101"}, None),
        ({"min_confidence": "abc"}, None),
        ({"max_results": "0"}, None),
        ({"max_results": "101"}, None),
        (None, {"image": IMAGE_B64, "max_results": 0}),
        (None, {"image": IMAGE_B64, "min_confidence": -1}),
        (None, {"image": IMAGE_B64, "unknown": 1}),
        (None, {}),
        (None, {"image": IMAGE_B64, "s3_key": "images/a.jpg"}),
        (None, {"s3_key": "annotations/demo/a.json"}),
        ({"min_confidence": "10"}, {"image": IMAGE_B64, "min_confidence": 20}),
    ],
)
def test_invalid_options_are_400_not_422(fakes, query, body):
    answer = detect(JPEG if body is None else body, query=query)
    assert answer.status == 400, answer.raw
    assert answer.error["code"] == "invalid_request"
    assert answer.error["message"]
    assert not fakes.rekognition.calls


def test_validation_error_names_the_parameter(fakes):
    error = detect(query={"max_results": "500"}).error
    assert error["details"][0]["location"] == "query.max_results"
    assert "max_results" in error["message"]


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '{"image": "%%%not-base64"}'])
def test_bad_json_bodies_are_400(fakes, body):
    answer = call(api_event("POST", "/detections", body=body, content_type="application/json"))
    assert (answer.status, answer.error["code"]) == (400, "invalid_request")


def test_no_body_is_400(fakes):
    answer = call(api_event("POST", "/detections", content_type="image/jpeg"))
    assert (answer.status, answer.error["code"]) == (400, "invalid_request")


def test_body_over_4_mb_is_413_before_rekognition(fakes):
    big = JPEG + b"\0" * (4 * 1024 * 1024)
    answer = detect(big)
    assert (answer.status, answer.error["code"]) == (413, "image_too_large")
    answer = detect({"image": base64.b64encode(big).decode()})
    assert (answer.status, answer.error["code"]) == (413, "image_too_large")
    assert not fakes.rekognition.calls


def test_exactly_4_mb_is_accepted(fakes):
    body = JPEG + b"\0" * (4 * 1024 * 1024 - len(JPEG))
    assert detect(body).status == 200


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b"GIF89a" + b"\0" * 100, "image/gif"),
        (b"GIF89a" + b"\0" * 100, "image/jpeg"),  # the bytes decide, not the header
        (b"BM" + b"\0" * 100, "application/octet-stream"),
        (b"just some text, long enough to probe", "image/png"),
    ],
)
def test_not_jpeg_or_png_is_415(fakes, body, content_type):
    answer = detect(body, content_type=content_type)
    assert (answer.status, answer.error["code"]) == (415, "unsupported_media_type")


def test_unsupported_content_type_is_415(fakes):
    answer = call(api_event("POST", "/detections", body="hello", content_type="text/plain"))
    assert (answer.status, answer.error["code"]) == (415, "unsupported_media_type")
    assert "text/plain" in answer.error["message"]


def test_undecodable_images_are_400(fakes):
    broken_header = b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x00" * 4  # a JPEG that ends in its first segment
    answer = detect(broken_header)
    assert (answer.status, answer.error["code"]) == (400, "image_corrupt")
    assert answer.error["message"].startswith("the image cannot be decoded: JPEG")
    assert not fakes.rekognition.calls
    # A sound header with garbage after it: Rekognition is the one to notice.
    fakes.rekognition.fail("DetectCustomLabels", "InvalidImageFormatException")
    answer = detect(JPEG[:200])
    assert (answer.status, answer.error["code"]) == (400, "image_corrupt")
    assert "Rekognition could not decode the image" in answer.error["message"]


def test_an_s3_object_rekognition_cannot_decode_is_400(with_s3):
    with_s3.rekognition.fail("DetectCustomLabels", "InvalidImageFormatException")
    answer = detect({"s3_key": "images/demo/a.jpg"})
    assert (answer.status, answer.error["code"]) == (400, "image_corrupt")


@pytest.mark.parametrize("size, code", [((32, 32), "image_dimensions"), ((64, 63), "image_dimensions"), ((4097, 100), "image_dimensions"), ((2000, 64), "image_aspect_ratio")])
def test_image_sides_outside_limits_are_400(fakes, size, code):
    answer = detect(image_bytes(*size, "PNG"), content_type="image/png")
    assert (answer.status, answer.error["code"]) == (400, code)
    assert f"{size[0]}x{size[1]}" in answer.error["message"]


def test_smallest_and_largest_sides_are_accepted(fakes):
    assert detect(image_bytes(64, 64, "PNG", mode="L", colour=0)).status == 200
    assert detect(image_bytes(4096, 205, "PNG", mode="L", colour=0)).status == 200


# -- model status ------------------------------------------------------------------------
def test_no_model_deployed_is_503(fakes):
    fakes.ssm.value = json.dumps({"status": "none"})
    answer = detect()
    assert (answer.status, answer.error["code"]) == (503, "model_not_deployed")
    assert "Retry-After" not in answer.headers and "retry_after" not in answer.error
    assert "train" in answer.error["message"]
    assert answer.error["model"] == {"status": "NONE"}
    assert not fakes.rekognition.calls


def test_missing_pointer_parameter_is_503(fakes):
    fakes.ssm.value = None
    assert detect().error["code"] == "model_not_deployed"


def test_a_starting_model_is_503_with_retry_after(fakes):
    fakes.rekognition.status = "STARTING"
    answer = detect()
    assert (answer.status, answer.error["code"], answer.headers["Retry-After"]) == (503, "model_starting", "60")
    error = answer.error
    assert error["model"]["status"] == "STARTING" and error["retry_after"] == 60 and error["auto_start"] is False
    assert not fakes.rekognition.ops("StartProjectVersion")


@pytest.mark.parametrize("status, hint", [("STOPPED", "POST /model/start"), ("STOPPING", "wait until it is STOPPED"), ("FAILED", "POST /model/start")])
def test_a_model_that_waiting_does_not_help_is_503_without_retry_after(fakes, status, hint):
    fakes.rekognition.status = status
    answer = detect()
    assert (answer.status, answer.error["code"]) == (503, "model_not_running")
    assert "Retry-After" not in answer.headers and "retry_after" not in answer.error
    assert answer.error["model"]["status"] == status and answer.error["auto_start"] is False
    assert hint in answer.error["message"]
    assert not fakes.rekognition.ops("StartProjectVersion")


def test_a_deleted_version_is_503_without_retry_after(fakes):
    fakes.rekognition.fail("DetectCustomLabels", "ResourceNotFoundException")
    fakes.rekognition.fail("DescribeProjectVersions", "ResourceNotFoundException")
    answer = detect()
    assert (answer.status, answer.error["code"], answer.error["model"]["status"]) == (503, "model_not_running", "NOT_FOUND")
    assert "Retry-After" not in answer.headers and "train" in answer.error["message"]


def test_a_model_that_just_became_running_is_503_with_a_short_retry_after(fakes):
    fakes.rekognition.fail("DetectCustomLabels", "ResourceNotReadyException")  # status RUNNING by the time it is described
    answer = detect()
    assert (answer.status, answer.error["code"], answer.headers["Retry-After"], answer.error["retry_after"]) == (503, "model_starting", "5", 5)


def test_stopped_model_is_started_with_auto_start(fakes):
    install(fakes, auto_start=True)
    fakes.rekognition.status = "STOPPED"
    answer = detect()
    assert answer.status == 503
    assert answer.error["code"] == "model_starting"
    assert answer.error["model"]["status"] == "STARTING"
    assert "started" in answer.error["message"]
    assert answer.headers["Retry-After"] == "60" and answer.error["retry_after"] == 60
    assert fakes.rekognition.ops("StartProjectVersion") == [{"ProjectVersionArn": VERSION_ARN, "MinInferenceUnits": 2}]
    assert fakes.dynamodb.items[VERSION_ARN]["started_at"] == {"N": str(int(fakes.wall.now))}
    # The next request sees it starting and does not start it again.
    answer = detect()
    assert (answer.status, answer.error["code"]) == (503, "model_starting")
    assert len(fakes.rekognition.ops("StartProjectVersion")) == 1


def test_auto_start_race_lost_still_reports_starting(fakes):
    install(fakes, auto_start=True)
    fakes.rekognition.status = "STOPPED"
    fakes.rekognition.fail("StartProjectVersion", "ResourceInUseException")
    answer = detect()
    assert (answer.status, answer.error["code"], answer.error["model"]["status"]) == (503, "model_starting", "STARTING")
    assert answer.headers["Retry-After"] == "60"


def test_auto_start_failure_is_503_without_retry_after(fakes):
    install(fakes, auto_start=True)
    fakes.rekognition.status = "STOPPED"
    fakes.rekognition.fail("StartProjectVersion", "AccessDeniedException")
    answer = detect()
    assert (answer.status, answer.error["code"], answer.error["model"]["status"]) == (503, "model_not_running", "STOPPED")
    assert "Retry-After" not in answer.headers and "could not be started" in answer.error["message"]


@pytest.mark.parametrize("code", ["ThrottlingException", "ProvisionedThroughputExceededException", "LimitExceededException"])
def test_throttled_by_rekognition_is_429(fakes, code):
    fakes.rekognition.fail("DetectCustomLabels", code)
    answer = detect()
    assert (answer.status, answer.error["code"]) == (429, "throttled")
    assert (answer.headers["Retry-After"], answer.error["retry_after"]) == ("2", 2)


def test_unexpected_failure_is_500_without_internals(fakes, caplog):
    fakes.rekognition.fail("DetectCustomLabels", RuntimeError(f"secret detail {VERSION_ARN}"))
    answer = call(api_event("POST", "/detections", body=JPEG, request_id="req-500"))
    assert answer.status == 500
    assert answer.error == {"code": "internal_error", "message": "internal error; quote request id req-500 when reporting it"}
    assert "secret" not in answer.raw["body"] and "arn:" not in answer.raw["body"]
    [record] = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert "secret detail" in str(record.exc_info[1])  # the log has it, with the request id
    assert api.logger.get_correlation_id() == "req-500"


def test_unexpected_client_error_is_500(fakes):
    fakes.rekognition.fail("DetectCustomLabels", "AccessDeniedException")
    answer = detect()
    assert (answer.status, answer.error["code"]) == (500, "internal_error")


def test_rekognition_refusals_map_to_client_errors(fakes):
    for code, status in (("ImageTooLargeException", 413), ("InvalidParameterException", 400), ("InvalidS3ObjectException", 404)):
        fakes.rekognition.fail("DetectCustomLabels", code)
        assert detect().status == status


def test_error_metrics_are_counted_per_code(fakes, capsys):
    fakes.rekognition.fail("DetectCustomLabels", "ThrottlingException")
    detect()
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    names = {m["Name"] for doc in metrics for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"Errors", "Error_throttled"} <= names


def test_detection_metrics(fakes, capsys):
    fakes.rekognition.response = labels(("a", 90.0, (0, 0, 0.5, 0.5)), ("b", 80.0, (0.5, 0.5, 0.5, 0.5)))
    detect()
    [doc] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert doc["Detections"] == [1.0] and doc["GarmentsDetected"] == [2.0]


# -- caching -----------------------------------------------------------------------------
def test_pointer_is_read_once_per_ttl(fakes):
    for _ in range(25):
        assert detect().status == 200
    assert fakes.ssm.calls == 1
    fakes.clock.advance(59.9)
    detect()
    assert fakes.ssm.calls == 1
    fakes.clock.advance(0.2)
    detect()
    assert fakes.ssm.calls == 2


def test_pointer_refresh_sees_a_new_deployment(fakes):
    detect()
    fakes.ssm.value = json.dumps({**POINTER, "version_name": "v2", "project_version_arn": VERSION_ARN + "-2"})
    fakes.clock.advance(61)
    assert detect().json["model"]["version"] == "v2"


def test_pointer_refresh_failure_serves_the_cached_pointer(fakes):
    detect()
    fakes.clock.advance(61)
    fakes.ssm.value = "{not json"
    assert detect().status == 200


def test_activity_is_written_at_most_once_a_minute(fakes):
    for _ in range(10):
        detect()
    assert len(fakes.dynamodb.updates) == 1
    update = fakes.dynamodb.updates[0]
    assert update["Key"] == {"model": {"S": VERSION_ARN}}
    assert update["ExpressionAttributeValues"] == {":t": {"N": str(int(fakes.wall.now))}}
    assert "last_request_at < :t" in update["ConditionExpression"]
    fakes.clock.advance(59)
    detect()
    assert len(fakes.dynamodb.updates) == 1
    fakes.clock.advance(2)
    fakes.wall.advance(61)
    detect()
    assert len(fakes.dynamodb.updates) == 2
    assert fakes.dynamodb.items[VERSION_ARN]["last_request_at"] == {"N": str(int(fakes.wall.now))}


def test_failed_detections_record_no_activity(fakes):
    fakes.rekognition.fail("DetectCustomLabels", "ThrottlingException")
    detect()
    assert fakes.dynamodb.updates == []


def test_activity_write_failure_does_not_fail_the_request(fakes):
    def broken(**_):
        raise client_error("ProvisionedThroughputExceededException", "UpdateItem")

    fakes.dynamodb.update_item = broken
    assert detect().status == 200


# -- GET /model, start, stop -------------------------------------------------------------
def test_get_model(fakes):
    fakes.dynamodb.items[VERSION_ARN] = {"last_request_at": {"N": "1795867000"}, "started_at": {"N": "1795866000"}}
    answer = call(api_event("GET", "/model"))
    assert answer.status == 200
    body = answer.json
    assert body["status"] == "RUNNING"
    assert (body["version"], body["arn"], body["f1"], body["inference_units"], body["dataset"]) == (VERSION_NAME, VERSION_ARN, 0.873, 2, "demo")
    assert body["deployed_at"] == "2026-11-28T10:30:00.123Z"
    assert body["running_since"] == "2026-11-28T11:40:00Z"  # the recorded start, later than the deployment
    assert body["last_request_at"] == "2026-11-28T11:56:40Z"
    assert fakes.rekognition.ops("DescribeProjectVersions")[0] == {"ProjectArn": POINTER["project_arn"], "VersionNames": [VERSION_NAME]}
    assert body["running"] == [] and "us-east-1" in body["running_cost_note"]


def test_get_model_when_stopped_and_when_none(fakes):
    fakes.rekognition.status = "STOPPED"
    body = call(api_event("GET", "/model")).json
    assert body["status"] == "STOPPED" and body["running_since"] is None
    fakes.ssm.value = json.dumps({"status": "none"})
    fakes.clock.advance(61)
    answer = call(api_event("GET", "/model"))
    assert answer.status == 200
    assert answer.json["status"] == "NONE"


def test_start_model(fakes):
    fakes.rekognition.status = "STOPPED"
    answer = call(api_event("POST", "/model/start"))
    assert answer.status == 202
    assert answer.json["model"]["status"] == "STARTING"
    assert answer.json["previous_status"] == "STOPPED"
    assert fakes.rekognition.ops("StartProjectVersion") == [{"ProjectVersionArn": VERSION_ARN, "MinInferenceUnits": 2}]
    assert "started_at" in fakes.dynamodb.items[VERSION_ARN]


def test_start_running_model_is_409(fakes):
    answer = call(api_event("POST", "/model/start"))
    assert (answer.status, answer.error["code"], answer.error["model"]["status"]) == (409, "model_conflict", "RUNNING")
    assert not fakes.rekognition.ops("StartProjectVersion")


def test_stop_model_then_stop_again_is_409(fakes):
    answer = call(api_event("POST", "/model/stop"))
    assert answer.status == 202
    assert (answer.json["model"]["status"], answer.json["previous_status"]) == ("STOPPING", "RUNNING")
    assert fakes.rekognition.ops("StopProjectVersion") == [{"ProjectVersionArn": VERSION_ARN}]
    answer = call(api_event("POST", "/model/stop"))
    assert (answer.status, answer.error["code"], answer.error["model"]["status"]) == (409, "model_conflict", "STOPPING")


SHOES = "arn:aws:rekognition:us-east-1:123456789012:project/fashion-pipeline-shoes/1700000000100"


def test_stop_lists_what_still_runs_with_costs(fakes):
    fakes.rekognition.others = {
        POINTER["project_arn"]: [version(POINTER["project_arn"], "demo.old", units=3)],
        SHOES: [version(SHOES, "shoes.v1", status="STARTING", units=1), version(SHOES, "shoes.v0", status="STOPPED")],
    }
    answer = call(api_event("POST", "/model/stop"))
    assert answer.status == 202
    body = answer.json
    assert [(m["version"], m["project"], m["status"], m["inference_units"], m["estimated_usd_per_hour"]) for m in body["running"]] == [
        ("demo.old", "fashion-pipeline-demo", "RUNNING", 3, 12.0),
        ("shoes.v1", "fashion-pipeline-shoes", "STARTING", 1, 4.0),
    ]  # the stopped model itself and the STOPPED one are not listed
    assert body["running"][1]["arn"] == fakes.rekognition.others[SHOES][0]["ProjectVersionArn"]
    assert "estimate" in body["running_cost_note"] and "us-east-1" in body["running_cost_note"]
    assert body["message"] == "the model is stopping; 2 other model(s) of the pipeline still bill: see running"
    assert "running_error" not in body
    schemas.Transition.model_validate(body)  # the answer is what the OpenAPI document says


@pytest.mark.parametrize("code", ["AccessDeniedException", "ThrottlingException"])
def test_stop_succeeds_when_the_running_models_cannot_be_listed(fakes, code):
    fakes.rekognition.fail("DescribeProjects", code)
    answer = call(api_event("POST", "/model/stop"))
    assert answer.status == 202 and answer.json["model"]["status"] == "STOPPING"
    assert "running" not in answer.json and code in answer.json["running_error"]
    assert fakes.rekognition.ops("StopProjectVersion") == [{"ProjectVersionArn": VERSION_ARN}]


def test_get_model_lists_what_else_runs(fakes):
    fakes.rekognition.others = {SHOES: [version(SHOES, "shoes.v1", units=None)]}
    [running] = call(api_event("GET", "/model")).json["running"]
    assert (running["version"], running["inference_units"], running["estimated_usd_per_hour"]) == ("shoes.v1", None, None)
    schemas.ModelState.model_validate(call(api_event("GET", "/model")).json)
    fakes.ssm.value = json.dumps({"status": "none"})
    fakes.clock.advance(61)
    body = call(api_event("GET", "/model")).json
    assert body["status"] == "NONE"
    assert [m["version"] for m in body["running"]] == [VERSION_NAME, "shoes.v1"]  # nothing deployed: everything that runs
    fakes.rekognition.fail("DescribeProjects", "AccessDeniedException")
    body = call(api_event("GET", "/model")).json
    assert body["status"] == "NONE" and "AccessDeniedException" in body["running_error"]


def test_transition_race_is_409(fakes):
    fakes.rekognition.fail("StopProjectVersion", "ResourceInUseException")
    answer = call(api_event("POST", "/model/stop"))
    assert (answer.status, answer.error["code"]) == (409, "model_conflict")


@pytest.mark.parametrize("path", ["/model/start", "/model/stop"])
def test_transitions_without_a_model_are_503(fakes, path):
    fakes.ssm.value = json.dumps({"status": "none"})
    answer = call(api_event("POST", path))
    assert (answer.status, answer.error["code"]) == (503, "model_not_deployed")


def test_describe_throttled_is_429(fakes):
    fakes.rekognition.fail("DescribeProjectVersions", "ThrottlingException")
    answer = call(api_event("GET", "/model"))
    assert (answer.status, answer.error["code"]) == (429, "throttled")


# -- misc routes -------------------------------------------------------------------------
def test_openapi_document(fakes):
    answer = call(api_event("GET", "/openapi.json"))
    assert answer.status == 200
    document = answer.json
    assert document["info"]["title"] == openapi.API_TITLE and document["info"]["version"] == openapi.API_VERSION
    assert document["info"]["description"]
    assert set(document["paths"]) == {"/detections", "/model", "/models", "/model/start", "/model/stop"}
    detect_op = document["paths"]["/detections"]["post"]
    assert {p["name"] for p in detect_op["parameters"]} == {"min_confidence", "max_results", "render", "dataset"}
    for path, method in (("/model", "get"), ("/model/start", "post"), ("/model/stop", "post")):
        assert [p["name"] for p in document["paths"][path][method]["parameters"]] == ["dataset"]
    assert set(detect_op["requestBody"]["content"]) == {"image/jpeg", "image/png", "application/json"}
    assert {"200", "400", "404", "413", "415", "429", "500", "503"} <= set(detect_op["responses"])
    assert "422" not in json.dumps(document["paths"])
    schemas = document["components"]["schemas"]
    for ref in _refs(document):
        assert ref.split("/")[-1] in schemas, ref
    assert set(schemas["DetectionRequest"]["properties"]) == {"image", "s3_key", "min_confidence", "max_results"}
    for answer in ("ModelState", "Transition"):
        assert {"running", "running_cost_note", "running_error"} <= set(schemas[answer]["properties"]), answer
    assert set(schemas["RunningModel"]["properties"]) == {"version", "arn", "project", "status", "inference_units", "estimated_usd_per_hour"}
    assert "estimate" in schemas["RunningModel"]["properties"]["estimated_usd_per_hour"]["description"]


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_unknown_route_is_404_json(fakes):
    answer = call(api_event("GET", "/nowhere"))
    assert (answer.status, answer.error["code"]) == (404, "not_found")


def test_emulated_model_says_so(fakes):
    install(fakes, emulated=True)
    model = detect().json["model"]
    assert model["emulated"] is True and "emulator" in model["note"]
    assert call(api_event("GET", "/model")).json["emulated"] is True


@pytest.fixture
def cors_api(monkeypatch):
    monkeypatch.setenv("CORS_ORIGIN", "https://example.com")
    importlib.reload(routes)
    yield routes
    monkeypatch.delenv("CORS_ORIGIN")
    importlib.reload(routes)


def test_cors_headers_for_the_configured_origin(cors_api, fakes):
    from .conftest import install as reinstall

    reinstall(fakes)
    answer = call(api_event("POST", "/detections", body=JPEG, headers={"Origin": "https://example.com"}))
    assert answer.headers["Access-Control-Allow-Origin"] == "https://example.com"
    assert "Retry-After" in answer.headers["Access-Control-Expose-Headers"]
    other = call(api_event("POST", "/detections", body=JPEG, headers={"Origin": "https://evil.example"}))
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = call(api_event("OPTIONS", "/detections", headers={"Origin": "https://example.com"}))
    assert preflight.status == 204
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]


def test_no_cors_headers_by_default(fakes):
    answer = detect(headers={"Origin": "https://example.com"})
    assert "Access-Control-Allow-Origin" not in answer.headers


# -- s3_key --------------------------------------------------------------------------------
class FakeS3:
    def __init__(self, objects):
        self.objects, self.calls = objects, []

    def get_object(self, Bucket, Key, Range=None):
        self.calls.append((Bucket, Key, Range))
        if Key not in self.objects:
            raise client_error("NoSuchKey", "GetObject")
        data = self.objects[Key]
        if Range:
            first, last = (int(x) for x in Range.removeprefix("bytes=").split("-"))
            if first >= len(data):
                raise client_error("InvalidRange", "GetObject")
            part = data[first : last + 1]
            return {"Body": io.BytesIO(part), "ContentLength": len(part), "ContentRange": f"bytes {first}-{first + len(part) - 1}/{len(data)}"}
        return {"Body": io.BytesIO(data), "ContentLength": len(data)}


@pytest.fixture
def with_s3(fakes):
    fakes.s3 = FakeS3({"images/demo/a.jpg": JPEG, "images/demo/empty.jpg": b"", "images/demo/note.txt": b"hello there, not an image"})
    install(fakes)
    return fakes


def test_s3_key_probes_the_header_and_lets_rekognition_read_the_object(with_s3):
    answer = detect({"s3_key": "images/demo/a.jpg", "max_results": 5})
    assert answer.status == 200, answer.raw
    assert answer.json["image"] == {"width": 640, "height": 480, "format": "jpeg"}
    [params] = with_s3.rekognition.ops("DetectCustomLabels")
    assert params["Image"] == {"S3Object": {"Bucket": DATASET_BUCKET, "Name": "images/demo/a.jpg"}}
    assert all(bucket == DATASET_BUCKET and byte_range for bucket, _, byte_range in with_s3.s3.calls)  # ranged GETs only


def test_unknown_s3_key_is_404(with_s3):
    answer = detect({"s3_key": "images/demo/missing.jpg"})
    assert (answer.status, answer.error["code"]) == (404, "image_not_found")
    assert not with_s3.rekognition.ops("DetectCustomLabels")


def test_s3_objects_that_are_not_images(with_s3):
    assert detect({"s3_key": "images/demo/empty.jpg"}).error["code"] == "image_corrupt"
    assert detect({"s3_key": "images/demo/note.txt"}).status == 415


def test_s3_key_rendered(with_s3):
    answer = detect({"s3_key": "images/demo/a.jpg"}, accept="image/png")
    assert answer.status == 200
    assert Image.open(io.BytesIO(answer.bytes)).size == (640, 480)
    assert with_s3.s3.calls[-1][2] is None  # one whole-object GET for the drawing


def test_no_bucket_can_be_named(with_s3):
    answer = detect({"s3_key": "images/demo/a.jpg", "bucket": "someone-elses"})
    assert (answer.status, answer.error["code"]) == (400, "invalid_request")


def test_ssm_throttled_without_a_cached_pointer_is_429(fakes):
    def throttled(**params):
        raise client_error("ThrottlingException", "GetParametersByPath")

    fakes.ssm.get_parameters_by_path = throttled
    answer = detect()
    assert (answer.status, answer.error["code"], answer.headers["Retry-After"]) == (429, "throttled", "2")


def test_unreadable_pointer_is_500(fakes):
    fakes.ssm.value = "{broken"
    answer = detect()
    assert (answer.status, answer.error["code"]) == (500, "internal_error")
