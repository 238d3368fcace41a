"""The UI server in front of the real inference handler (fake AWS clients): the events
LambdaBackend makes are the ones the handler's resolver understands."""

from __future__ import annotations

import json

import pytest

from fashion_pipeline_tools.api_client import ApiClient
from fashion_pipeline_tools.webui import LambdaBackend, serve
from tests.fashion_pipeline_tools.web.fakes import png_bytes

try:
    from inference import handler as api
    from inference import runtime as inference_runtime
    from inference.settings import Settings
except ImportError as exc:  # pragma: no cover - the inference package is part of the repository
    pytest.skip(f"the inference handler does not import: {exc}", allow_module_level=True)

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

VERSION_ARN = "arn:aws:rekognition:us-east-1:123456789012:project/fashion/version/fashion.v1/1700000000001"
POINTER = {"project_version_arn": VERSION_ARN, "project_arn": VERSION_ARN.split("/version/")[0] + "/1700000000000",
           "version_name": "fashion.v1", "dataset": "demo", "f1": 0.873, "inference_units": 1,
           "deployed_at": "2026-11-28T10:30:00.123Z", "status": "RUNNING"}


class Rekognition:
    status = "RUNNING"

    def detect_custom_labels(self, **params):
        if self.status != "RUNNING":
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "ResourceNotReadyException", "Message": "not ready"}}, "DetectCustomLabels")
        return {"CustomLabels": [
            {"Name": "trousers", "Confidence": 91.5, "Geometry": {"BoundingBox": {"Left": 0.25, "Top": 0.5, "Width": 0.5, "Height": 0.45}}},
        ]}

    def describe_project_versions(self, **params):
        return {"ProjectVersionDescriptions": [{"ProjectVersionArn": VERSION_ARN, "Status": self.status, "MinInferenceUnits": 1}]}


class SSM:
    def get_parameters_by_path(self, Path, **params):
        return {"Parameters": [{"Name": f"{Path}/{POINTER.get('dataset') or 'demo'}", "Value": json.dumps(POINTER)}]}


class DynamoDB:
    def update_item(self, **params):
        return {}

    def get_item(self, **params):
        return {}


@pytest.fixture
def rekognition():
    fake = Rekognition()
    settings = Settings(model_parameter_prefix="/fashion-pipeline/models", dataset_bucket="bucket", activity_table="activity", emulated=True)
    inference_runtime.reset(settings=settings, clients={"rekognition": fake, "ssm": SSM(), "dynamodb": DynamoDB()})
    yield fake
    inference_runtime.reset(settings=Settings(model_parameter_prefix="", dataset_bucket="", activity_table=""), clients={})


def test_the_real_handler_behind_the_ui_server(rekognition):
    image = png_bytes(320, 240)
    with serve(LambdaBackend(api.handler), port=0) as server:
        client = ApiClient(server.url)
        answer = client.detect(image, content_type="image/png", min_confidence=0)
        assert answer.status == 200, answer.body
        document = answer.json()
        assert document["model"]["emulated"] is True and document["image"] == {"width": 320, "height": 240, "format": "png"}
        assert document["garments"][0]["pixels"] == {"left": 80, "top": 120, "width": 160, "height": 108}

        drawn = client.detect(image, content_type="image/png", accept="image/png")
        assert drawn.status == 200 and drawn.content_type == "image/png" and drawn.body.startswith(b"\x89PNG")

        assert client.model().json()["status"] == "RUNNING"
        refused = client.detect(b"GIF89a" + bytes(64), content_type="image/gif")
        assert refused.status == 415 and refused.error()["code"] == "unsupported_media_type"

        rekognition.status = "STOPPED"
        stopped = client.detect(image, content_type="image/png")
        assert stopped.status == 503 and stopped.error()["model"]["status"] == "STOPPED"
        assert stopped.header("Retry-After") is None and "retry_after" not in stopped.error()  # waiting would not help
        assert "retry in" not in stopped.error_message() and "POST /model/start" in stopped.error_message()
