"""The API and the idle auto-stop against moto with the Custom Labels emulator: a tiny model
trained, deployed and published as the workflow does, then used through real botocore clients."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws
from PIL import Image

from fashion_pipeline.labels import LabelCatalogue
from fashion_pipeline_tools.local.custom_labels_emulator import install as install_emulator
from fashion_pipeline.manifest import manifest_line
from fashion_pipeline.records import Box, Record
from inference import autostop
from inference import handler as api
from inference import runtime as inference_runtime
from inference.render import label_colour

from .conftest import ACTIVITY_TABLE, DATASET_BUCKET, MODEL_PARAMETER, Clock, LambdaContext, api_event, call, settings

REGION = "us-east-1"
DEPLOYED_AT = datetime(2026, 11, 28, 10, 0, tzinfo=timezone.utc)
T0 = DEPLOYED_AT.timestamp()


def png(size, colour):
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


IMAGE = png((200, 100), (200, 30, 30))  # trained on: the memoriser knows its garments
UNSEEN = png((160, 120), (30, 200, 30))
BOXES = [("trousers", Box("trousers", 20, 10, 100, 50)), ("skirt", Box("skirt", 120, 40, 60, 50))]


class Model:
    def __init__(self, rekognition, project, version, name):
        self.rek, self.project, self.arn, self.name = rekognition, project, version, name

    def status(self):
        described = self.rek.describe_project_versions(ProjectArn=self.project, VersionNames=[self.name])
        return described["ProjectVersionDescriptions"][0]["Status"]

    def settle(self, done=("RUNNING", "STOPPED", "TRAINING_COMPLETED")):
        for _ in range(5):
            status = self.status()
            if status in done:
                return status
        raise AssertionError(f"stuck at {status}")


def trained(rek, project_name, name):
    """A project with the sample manifest as its datasets, and a version trained on it."""
    project = rek.create_project(ProjectName=project_name)["ProjectArn"]
    for kind in ("TRAIN", "TEST"):
        source = {"GroundTruthManifest": {"S3Object": {"Bucket": DATASET_BUCKET, "Name": "manifests/train.manifest"}}}
        dataset = rek.create_dataset(ProjectArn=project, DatasetType=kind, DatasetSource=source)["DatasetArn"]
        assert rek.describe_dataset(DatasetArn=dataset)["DatasetDescription"]["Status"] == "CREATE_COMPLETE"
    version = rek.create_project_version(ProjectArn=project, VersionName=name,
                                         OutputConfig={"S3Bucket": DATASET_BUCKET, "S3KeyPrefix": "output/"})["ProjectVersionArn"]  # fmt: skip
    model = Model(rek, project, version, name)
    assert model.settle() == "TRAINING_COMPLETED"
    return model


@pytest.fixture
def deployed():
    """A RUNNING model (memoriser), its pointer in SSM, the activity table, the API wired to it."""
    controller = install_emulator()
    controller.reset()
    controller.settings(dataset_ticks=0, training_ticks=0, start_ticks=0, stop_ticks=0)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=DATASET_BUCKET)
        s3.put_object(Bucket=DATASET_BUCKET, Key="images/demo/a.png", Body=IMAGE)
        s3.put_object(Bucket=DATASET_BUCKET, Key="images/demo/b.png", Body=UNSEEN)
        record = Record("ann.json", f"s3://{DATASET_BUCKET}/images/demo/a.png", 200, 100, 3, None, tuple(b for _, b in BOXES), "2026-11-28T00:00:00")
        line = manifest_line(record, BOXES, LabelCatalogue())
        s3.put_object(Bucket=DATASET_BUCKET, Key="manifests/train.manifest", Body=line + "\n")
        rek = boto3.client("rekognition", region_name=REGION)
        model = trained(rek, "fashion-pipeline-demo", "fashion.v1")
        project, version, name = model.project, model.arn, model.name
        rek.start_project_version(ProjectVersionArn=version, MinInferenceUnits=1)
        assert model.settle() == "RUNNING"
        pointer = {"project_version_arn": version, "project_arn": project, "version_name": name, "dataset": "demo",
                   "f1": 1.0, "inference_units": 1, "deployed_at": "2026-11-28T10:00:00.000Z", "status": "RUNNING"}  # fmt: skip
        boto3.client("ssm", region_name=REGION).put_parameter(Name=MODEL_PARAMETER, Type="String", Value=json.dumps(pointer))
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName=ACTIVITY_TABLE, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "model", "KeyType": "HASH"}], AttributeDefinitions=[{"AttributeName": "model", "AttributeType": "S"}],
        )  # fmt: skip
        model.clock, model.wall = Clock(), Clock(T0 + 60)
        inference_runtime.reset(settings=settings(emulated=True), clock=model.clock, wall=model.wall)
        model.controller = controller
        yield model
        inference_runtime.reset(settings=settings(), clients={})
        autostop.runtime = None
    controller.reset()


def run_round(minutes_after_deploy, idle_minutes=30):
    autostop.reset(settings=settings(idle_minutes=idle_minutes), wall=lambda: T0 + minutes_after_deploy * 60)
    event = {"version": "0", "id": "e-1", "detail-type": "Scheduled Event", "source": "aws.events", "account": "123456789012",
             "time": "2026-11-28T12:00:00Z", "region": REGION, "resources": ["arn:aws:events:us-east-1:123456789012:rule/autostop"], "detail": {}}  # fmt: skip
    result = autostop.handler(event, LambdaContext(function_name="autostop"))
    assert result["failures"] == []
    return result


def run_autostop(model, minutes_after_deploy, idle_minutes=30):
    """One round; what it decided for ``model``."""
    [found] = [m for m in run_round(minutes_after_deploy, idle_minutes)["models"] if m["model"] == model.arn]
    return found


def activity(model):
    item = boto3.client("dynamodb", region_name=REGION).get_item(TableName=ACTIVITY_TABLE, Key={"model": {"S": model.arn}}).get("Item", {})
    return {k: v.get("N", v.get("S")) for k, v in item.items()}


def test_detection_end_to_end(deployed):
    answer = call(api_event("POST", "/detections", body=IMAGE, content_type="image/png"))
    assert answer.status == 200, answer.raw
    body = answer.json
    assert body["model"]["arn"] == deployed.arn and body["model"]["emulated"] is True and "emulator" in body["model"]["note"]
    assert body["image"] == {"width": 200, "height": 100, "format": "png"}
    assert [(g["label"], g["pixels"]) for g in body["garments"]] == [
        ("skirt", {"left": 120, "top": 40, "width": 60, "height": 50}),  # ties at 99% go by label
        ("trousers", {"left": 20, "top": 10, "width": 100, "height": 50}),
    ]
    assert activity(deployed)["last_request_at"] == str(int(deployed.wall.now))
    assert call(api_event("POST", "/detections", body=UNSEEN, content_type="image/png")).json["garments"] == []


def test_s3_key_and_rendering_end_to_end(deployed):
    answer = call(api_event("POST", "/detections", body={"s3_key": "images/demo/a.png"}, accept="image/png"))
    assert answer.status == 200 and answer.content_type == "image/png"
    image = Image.open(io.BytesIO(answer.bytes))
    assert image.getpixel((20, 35))[:3] == label_colour("trousers")
    assert call(api_event("POST", "/detections", body={"s3_key": "images/demo/nope.png"})).status == 404


def test_model_routes_end_to_end(deployed):
    body = call(api_event("GET", "/model")).json
    assert (body["status"], body["version"], body["inference_units"], body["running_since"]) == ("RUNNING", "fashion.v1", 1, "2026-11-28T10:00:00Z")
    assert call(api_event("POST", "/model/start")).status == 409
    stopped = call(api_event("POST", "/model/stop"))
    assert stopped.status == 202 and stopped.json["model"]["status"] == "STOPPING"
    assert deployed.settle() == "STOPPED"
    answer = call(api_event("POST", "/detections", body=IMAGE, content_type="image/png"))
    assert (answer.status, answer.error["code"], answer.error["model"]["status"]) == (503, "model_not_running", "STOPPED")
    assert "Retry-After" not in answer.headers and "POST /model/start" in answer.error["message"]  # waiting would not help
    assert call(api_event("POST", "/model/start")).status == 202
    assert deployed.settle() == "RUNNING"
    assert call(api_event("POST", "/detections", body=IMAGE, content_type="image/png")).status == 200


def test_auto_start_end_to_end(deployed):
    deployed.rek.stop_project_version(ProjectVersionArn=deployed.arn)
    deployed.settle()
    inference_runtime.reset(settings=settings(emulated=True, auto_start=True), clock=deployed.clock, wall=deployed.wall)
    answer = call(api_event("POST", "/detections", body=IMAGE, content_type="image/png"))
    assert (answer.status, answer.error["code"]) == (503, "model_starting")
    assert deployed.settle() == "RUNNING"
    assert call(api_event("POST", "/detections", body=IMAGE, content_type="image/png")).status == 200
    starts = [p for op, p in deployed.controller.calls if op == "StartProjectVersion"]
    assert starts[-1] == {"ProjectVersionArn": deployed.arn, "MinInferenceUnits": 1}


def test_throttled_detection_end_to_end(deployed):
    # The deployed client tries twice with back-off; here once, so the test does not sleep.
    inference_runtime.current()._clients["rekognition"] = boto3.client("rekognition", region_name=REGION, config=Config(retries={"total_max_attempts": 1}))
    deployed.controller.inject_error("DetectCustomLabels", "ThrottlingException")
    answer = call(api_event("POST", "/detections", body=IMAGE, content_type="image/png"))
    assert (answer.status, answer.error["code"]) == (429, "throttled")


def test_autostop_keeps_a_recently_used_model(deployed):
    deployed.wall.now = T0 + 50 * 60
    assert call(api_event("POST", "/detections", body=IMAGE, content_type="image/png")).status == 200
    result = run_autostop(deployed, 70)
    assert (result["action"], result["stop"]) == ("keep", False)
    assert result["last_activity"] == "2026-11-28T10:50:00Z"
    assert deployed.status() == "RUNNING"
    assert activity(deployed)["observed_status"] == "RUNNING"


def test_autostop_stops_an_idle_model(deployed):
    deployed.wall.now = T0 + 10 * 60
    call(api_event("POST", "/detections", body=IMAGE, content_type="image/png"))
    result = run_autostop(deployed, 41)
    assert (result["action"], result["stop"], result["status"]) == ("stopped", True, "STOPPING")
    assert "idle for 31.0 min" in result["reason"]
    assert deployed.settle() == "STOPPED"
    item = activity(deployed)
    assert (item["stop_reason"], item["observed_status"]) == ("idle", "STOPPING")
    # Next round: nothing to stop.
    result = run_autostop(deployed, 46)
    assert (result["action"], result["status"]) == ("keep", "STOPPED")


def test_autostop_counts_from_deployment_when_never_used(deployed):
    assert run_autostop(deployed, 29)["action"] == "keep"
    assert run_autostop(deployed, 31)["action"] == "stopped"


def test_autostop_gives_a_restarted_model_its_window(deployed):
    assert run_autostop(deployed, 40)["action"] == "stopped"
    deployed.settle()
    assert run_autostop(deployed, 45)["status"] == "STOPPED"
    # Someone starts it from the console, an hour after the last request or deployment.
    deployed.rek.start_project_version(ProjectVersionArn=deployed.arn, MinInferenceUnits=1)
    deployed.settle()
    result = run_autostop(deployed, 100)
    assert (result["action"], result["running_since"]) == ("keep", "2026-11-28T11:40:00Z")
    assert run_autostop(deployed, 125)["action"] == "keep"
    assert run_autostop(deployed, 131)["action"] == "stopped"


def test_autostop_with_no_model_deployed(deployed):
    boto3.client("ssm", region_name=REGION).put_parameter(Name=MODEL_PARAMETER, Type="String", Value='{"status":"none"}', Overwrite=True)
    result = run_round(100)
    assert result["deployed"] == []
    # Still watched: no longer deployed and never seen before, it gets a full window.
    assert [(m["model"], m["action"], m["deployed"]) for m in result["models"]] == [(deployed.arn, "keep", False)]
    assert run_autostop(deployed, 130)["action"] == "stopped"


def test_a_model_started_from_the_console_is_listed_and_stopped_when_idle(deployed):
    console = trained(deployed.rek, "fashion-pipeline-shoes", "shoes.v1")
    deployed.rek.start_project_version(ProjectVersionArn=console.arn, MinInferenceUnits=2)
    assert console.settle() == "RUNNING"
    listed = [{"version": "shoes.v1", "arn": console.arn, "project": "fashion-pipeline-shoes", "status": "RUNNING",
               "inference_units": 2, "estimated_usd_per_hour": 8.0}]  # fmt: skip
    assert call(api_event("GET", "/model")).json["running"] == listed
    stopped = call(api_event("POST", "/model/stop")).json
    assert stopped["running"] == listed and "1 other model(s)" in stopped["message"]
    first = run_round(100)
    assert [(m["model"], m["action"]) for m in first["models"]] == [(deployed.arn, "keep"), (console.arn, "keep")]  # STOPPING, and never seen
    assert run_autostop(console, 129)["action"] == "keep"
    assert run_autostop(console, 130)["action"] == "stopped"
    assert console.settle() == "STOPPED"
