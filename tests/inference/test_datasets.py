"""One live model per dataset: ``?dataset=``, the default dataset, ``GET /models``, and the
auto-stop over every dataset's pointer (the real handler, faked clients)."""

from __future__ import annotations

import json

from inference import autostop
from inference.runtime import Runtime

from .conftest import (
    POINTER,
    PROJECT_ARN,
    FakeDynamoDB,
    FakeRekognition,
    FakeSSM,
    api_event,
    call,
    image_bytes,
    install,
    settings,
    version,
)

JPEG = image_bytes(640, 480)
SHOES_PROJECT = "arn:aws:rekognition:us-east-1:123456789012:project/fashion-pipeline-shoes/1700000000000"
SHOES_VERSION = f"{SHOES_PROJECT.rsplit('/', 1)[0]}/version/shoes.v3/1700000000001"
SHOES = {**POINTER, "project_version_arn": SHOES_VERSION, "project_arn": SHOES_PROJECT, "version_name": "shoes.v3",
         "dataset": "shoes", "f1": 0.61, "inference_units": 1}  # fmt: skip


def two_datasets(fakes, shoes_status="RUNNING", **setting_changes):
    fakes.ssm.others = {"shoes": json.dumps(SHOES)}
    fakes.rekognition.others = {SHOES_PROJECT: [{**version(SHOES_PROJECT, "shoes.v3", shoes_status, 1), "ProjectVersionArn": SHOES_VERSION}]}
    return install(fakes, **setting_changes)


def detect(dataset=None):
    return call(api_event("POST", "/detections", body=JPEG, query={"dataset": dataset} if dataset else None))


def test_each_dataset_is_answered_by_its_own_model(fakes):
    two_datasets(fakes)
    assert detect("demo").json["model"]["dataset"] == "demo"
    assert detect("shoes").json["model"] == {"dataset": "shoes", "version": "shoes.v3", "arn": SHOES_VERSION, "status": "RUNNING",
                                             "f1": 0.61, "emulated": False}  # fmt: skip
    detected = [params["ProjectVersionArn"] for params in fakes.rekognition.ops("DetectCustomLabels")]
    assert detected[-1] == SHOES_VERSION and detected[0] != SHOES_VERSION
    assert fakes.ssm.calls == 1  # one listing serves every dataset for the TTL


def test_without_a_dataset_several_models_need_a_choice(fakes):
    two_datasets(fakes)
    answer = detect()
    assert (answer.status, answer.error["code"], answer.error["datasets"]) == (400, "dataset_required", ["demo", "shoes"])
    assert "?dataset=" in answer.error["message"]
    assert not fakes.rekognition.ops("DetectCustomLabels")


def test_the_configured_default_dataset_answers_a_request_that_names_none(fakes):
    two_datasets(fakes, default_dataset="shoes")
    assert detect().json["model"]["version"] == "shoes.v3"
    assert call(api_event("GET", "/model")).json["dataset"] == "shoes"


def test_the_only_dataset_with_a_model_is_the_default(fakes):
    install(fakes)
    assert detect().json["model"]["dataset"] == "demo"


def test_a_dataset_without_a_model_is_named_in_the_answer(fakes):
    two_datasets(fakes)
    answer = detect("hats")
    assert (answer.status, answer.error["code"], answer.error["model"]) == (503, "model_not_deployed", {"status": "NONE", "dataset": "hats"})
    assert "fashion-pipeline deploy --dataset hats" in answer.error["message"] and "demo, shoes" in answer.error["message"]
    state = call(api_event("GET", "/model", query={"dataset": "hats"}))
    assert (state.status, state.json["status"], state.json["dataset"]) == (200, "NONE", "hats")


def test_an_invalid_dataset_name_is_400(fakes):
    install(fakes)
    answer = call(api_event("GET", "/model", query={"dataset": "../demo"}))
    assert (answer.status, answer.error["code"]) == (400, "invalid_request")
    assert answer.error["details"][0]["location"] == "query.dataset"


def test_start_and_stop_address_the_named_dataset(fakes):
    two_datasets(fakes, shoes_status="RUNNING")
    stopped = call(api_event("POST", "/model/stop", query={"dataset": "shoes"}))
    assert (stopped.status, stopped.json["model"]["dataset"], stopped.json["model"]["version"]) == (202, "shoes", "shoes.v3")
    assert [params["ProjectVersionArn"] for params in fakes.rekognition.ops("StopProjectVersion")] == [SHOES_VERSION]
    assert fakes.rekognition.status == "RUNNING"  # demo's model untouched


def test_models_lists_every_datasets_model_with_its_status_and_cost(fakes):
    two_datasets(fakes, shoes_status="STOPPED", default_dataset="demo")
    answer = call(api_event("GET", "/models"))
    assert answer.status == 200
    body = answer.json
    assert body["default_dataset"] == "demo" and "estimate" in body["running_cost_note"]
    demo, shoes = body["models"]
    assert (demo["dataset"], demo["default"], demo["status"], demo["inference_units"], demo["estimated_usd_per_hour"]) == ("demo", True, "RUNNING", 2, 8.0)
    assert (shoes["dataset"], shoes["default"], shoes["status"], shoes["version"], shoes["f1"]) == ("shoes", False, "STOPPED", "shoes.v3", 0.61)
    assert "estimated_usd_per_hour" not in shoes  # a stopped model bills nothing


def test_models_lists_a_model_it_cannot_describe_with_the_reason(fakes):
    two_datasets(fakes)
    fakes.rekognition.fail("DescribeProjectVersions", "AccessDeniedException")
    first, second = call(api_event("GET", "/models")).json["models"]
    assert (first["status"], "AccessDeniedException" in first["error"]) == ("UNKNOWN", True)
    assert second["status"] == "RUNNING"


def test_models_with_nothing_deployed_is_an_empty_list(fakes):
    fakes.ssm.value = None
    install(fakes)
    assert call(api_event("GET", "/models")).json["models"] == []


def test_a_pointer_that_becomes_unreadable_keeps_serving_its_earlier_model(fakes):
    two_datasets(fakes)
    assert detect("shoes").status == 200
    fakes.ssm.others = {"shoes": "{broken"}
    fakes.clock.advance(61)
    assert detect("shoes").json["model"]["version"] == "shoes.v3"
    assert fakes.ssm.calls == 2


def test_the_autostop_watches_every_datasets_model():
    ssm = FakeSSM(others={"shoes": json.dumps(SHOES)})
    rekognition = FakeRekognition(others={SHOES_PROJECT: [{**version(SHOES_PROJECT, "shoes.v3", "RUNNING", 1), "ProjectVersionArn": SHOES_VERSION}]})
    runtime = Runtime(settings=settings(idle_minutes=30), clients={"rekognition": rekognition, "ssm": ssm, "dynamodb": FakeDynamoDB()})
    result = autostop.check(runtime)
    assert result["deployed"] == sorted([POINTER["project_version_arn"], SHOES_VERSION]) and result["failures"] == []
    watched = {m["project"]: m["deployed"] for m in result["models"]}
    assert watched == {PROJECT_ARN.split(":project/")[1].split("/")[0]: True, "fashion-pipeline-shoes": True}
