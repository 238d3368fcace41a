"""`fashion-pipeline start|stop --dataset`: through the real inference handler behind the UI
server (fake AWS clients), so the routes, their answers and the CLI's reading of them meet."""

from __future__ import annotations

import pytest

from fashion_pipeline_tools.cli import main
from fashion_pipeline_tools.webui import LambdaBackend, serve
from tests.fashion_pipeline_tools.web import test_real_handler as real

from inference import handler as api

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


class Rekognition(real.Rekognition):
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def start_project_version(self, **params):
        self.calls.append(("start", params))
        self.status = "STARTING"
        return {"Status": "STARTING"}

    def stop_project_version(self, **params):
        self.calls.append(("stop", params))
        self.status = "STOPPING"
        return {"Status": "STOPPING"}


@pytest.fixture
def endpoint(monkeypatch):
    fake = Rekognition()
    fake.status = "STOPPED"
    settings = real.Settings(model_parameter_prefix="/fashion-pipeline/models", dataset_bucket="bucket", activity_table="activity", emulated=True)
    real.inference_runtime.reset(settings=settings, clients={"rekognition": fake, "ssm": real.SSM(), "dynamodb": real.DynamoDB()})
    with serve(LambdaBackend(api.handler), port=0) as server:
        yield server.url.rstrip("/"), fake
    real.inference_runtime.reset(settings=real.Settings(model_parameter_prefix="", dataset_bucket="", activity_table=""), clients={})


def test_start_then_stop_the_datasets_model_with_its_hourly_cost(endpoint, capsys):
    url, rekognition = endpoint
    assert main(["start", "--dataset", "demo", "--endpoint", url]) == 0
    said = capsys.readouterr().out
    assert "fashion.v1: STOPPED -> STARTING" in said and "about $4 per hour while it runs" in said
    assert rekognition.calls == [("start", {"ProjectVersionArn": real.VERSION_ARN, "MinInferenceUnits": 1})]
    rekognition.status = "RUNNING"
    assert main(["stop", "--dataset", "demo", "--endpoint", url]) == 0
    assert "fashion.v1: RUNNING -> STOPPING" in capsys.readouterr().out
    assert [call for call, _ in rekognition.calls] == ["start", "stop"]


def test_a_dataset_without_a_model_is_refused_and_nothing_touched(endpoint, capsys):
    url, rekognition = endpoint
    assert main(["start", "--dataset", "shoes", "--endpoint", url]) == 1
    err = capsys.readouterr().err
    assert "dataset 'shoes' has no deployed model" in err and "fashion-pipeline deploy --dataset shoes" in err
    assert rekognition.calls == []


def test_starting_a_starting_model_is_the_apis_conflict(endpoint, capsys):
    url, rekognition = endpoint
    rekognition.status = "STARTING"
    assert main(["start", "--dataset", "demo", "--endpoint", url]) == 1
    assert "the API refused: 409" in capsys.readouterr().err


def test_wait_follows_the_model_to_running(endpoint, capsys, monkeypatch):
    url, rekognition = endpoint
    statuses = iter(["STARTING", "RUNNING"])
    monkeypatch.setattr(Rekognition, "describe_project_versions", lambda self, **p: {"ProjectVersionDescriptions": [
        {"ProjectVersionArn": real.VERSION_ARN, "Status": self.status if self.status == "STOPPED" else next(statuses, "RUNNING"), "MinInferenceUnits": 1}]})
    assert main(["start", "--dataset", "demo", "--endpoint", url, "--wait", "--interval", "0"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("RUNNING")
