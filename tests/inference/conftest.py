"""Inference API tests: API Gateway REST (v1) proxy events, fake AWS clients, images."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fashion_pipeline_tools.local.lambda_runtime import LambdaContext as LocalContext
from botocore.exceptions import ClientError
from PIL import Image

from inference import handler as api
from inference import runtime as inference_runtime
from inference.settings import Settings

MODEL_PARAMETER_PREFIX = "/fashion-pipeline/models"  # cdk.json's modelParameterPrefix
DATASET = "demo"
MODEL_PARAMETER = f"{MODEL_PARAMETER_PREFIX}/{DATASET}"  # the demo dataset's pointer
DATASET_BUCKET = "fashion-dataset-test"
ACTIVITY_TABLE = "fashion-model-activity-test"
PROJECT_ARN = "arn:aws:rekognition:us-east-1:123456789012:project/fashion-pipeline-demo/1700000000000"
VERSION_NAME = "fashion.2026-11-28T10.00.00"
VERSION_ARN = f"{PROJECT_ARN.rsplit('/', 1)[0]}/version/{VERSION_NAME}/1700000000001"
POINTER = {
    "project_version_arn": VERSION_ARN,
    "project_arn": PROJECT_ARN,
    "version_name": VERSION_NAME,
    "dataset": "demo",
    "f1": 0.873,
    "inference_units": 2,
    "deployed_at": "2026-11-28T10:30:00.123Z",
    "status": "RUNNING",
}


def pytest_collection_modifyitems(config, items):
    # The handlers silence Powertools' "no metrics" warning for routes that count nothing;
    # pytest resets warning filters per test, so say it again here.
    here = str(Path(__file__).parent)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.filterwarnings("ignore:No application metrics to publish"))


# -- events ------------------------------------------------------------------------------
def LambdaContext(function_name: str = "inference"):
    return LocalContext(function_name, 1024, f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}", 29)


def api_event(
    method: str,
    path: str,
    *,
    body: bytes | str | dict | None = None,
    content_type: str | None = None,
    accept: str | None = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    request_id: str = "api-request-1",
    base64_body: bool | None = None,
) -> dict[str, Any]:
    """An API Gateway REST API (v1) Lambda proxy event, as API Gateway sends it.

    A bytes body arrives base64-encoded (``isBase64Encoded: true``), as for a binary media
    type; a dict is sent as JSON.
    """
    encoded = False
    if isinstance(body, bytes):
        body, encoded = base64.b64encode(body).decode(), True
        content_type = content_type or "image/jpeg"
    elif isinstance(body, dict):
        body = json.dumps(body)
        content_type = content_type or "application/json"
    if base64_body is not None and base64_body and not encoded and body is not None:
        body, encoded = base64.b64encode(body.encode()).decode(), True
    all_headers = {
        "Host": "abc123.execute-api.us-east-1.amazonaws.com",
        "User-Agent": "pytest",
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Proto": "https",
    }
    if content_type:
        all_headers["Content-Type"] = content_type
    if accept:
        all_headers["Accept"] = accept
    all_headers.update(headers or {})
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "resourceId": "res123",
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": request_id,
            "extendedRequestId": "ext-" + request_id,
            "requestTime": "28/Nov/2026:12:00:00 +0000",
            "requestTimeEpoch": 1795867200000,
            "protocol": "HTTP/1.1",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "identity": {
                "accountId": "123456789012",
                "caller": "AIDAEXAMPLE",
                "user": "AIDAEXAMPLE",
                "userArn": "arn:aws:iam::123456789012:user/tester",
                "accessKey": "AKIAEXAMPLE",
                "sourceIp": "203.0.113.9",
                "userAgent": "pytest",
            },
        },
        "body": body,
        "isBase64Encoded": encoded,
    }


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    raw: dict[str, Any]

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def json(self) -> Any:
        assert not self.raw["isBase64Encoded"], self.raw
        return json.loads(self.raw["body"])

    @property
    def bytes(self) -> bytes:
        assert self.raw["isBase64Encoded"], self.raw
        return base64.b64decode(self.raw["body"])

    @property
    def error(self) -> dict[str, Any]:
        return self.json["error"]


def call(event: dict[str, Any]) -> Answer:
    raw = api.handler(event, LambdaContext())
    headers = {k: v[-1] if isinstance(v, list) else v for k, v in (raw.get("multiValueHeaders") or {}).items()}
    headers.update(raw.get("headers") or {})
    return Answer(raw["statusCode"], headers, raw)


# -- images ------------------------------------------------------------------------------
def image_bytes(width: int, height: int, fmt: str = "JPEG", colour: Any = (128, 128, 128), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), colour).save(out, format=fmt)
    return out.getvalue()


# -- fake AWS clients --------------------------------------------------------------------
def client_error(code: str, operation: str, message: str = "injected") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}, operation)


def labels(*items: tuple[str, float, tuple[float, float, float, float] | None]) -> dict[str, Any]:
    """A DetectCustomLabels response: (name, confidence, (left, top, width, height) or None)."""
    out = []
    for name, confidence, box in items:
        label: dict[str, Any] = {"Name": name, "Confidence": confidence}
        if box is not None:
            left, top, width, height = box
            label["Geometry"] = {"BoundingBox": {"Width": width, "Height": height, "Left": left, "Top": top}}
        out.append(label)
    return {"CustomLabels": out}


def version(project_arn: str, name: str, status: str = "RUNNING", units: int | None = 1) -> dict[str, Any]:
    """A DescribeProjectVersions description of version ``name`` of a project."""
    arn = f"{project_arn.rsplit('/', 1)[0]}/version/{name}/1700000000002"
    return {"ProjectVersionArn": arn, "Status": status, "StatusMessage": f"The model is {status}.", "MinInferenceUnits": units}


@dataclass
class FakeRekognition:
    """DetectCustomLabels and the model lifecycle, answered from attributes: ``status`` is the
    deployed version's (in PROJECT_ARN), ``others`` more versions by project ARN, listed
    ``page_size`` to a page."""

    response: dict[str, Any] = field(default_factory=lambda: labels(("trousers", 91.5, (0.25, 0.5, 0.5, 0.45))))
    status: str = "RUNNING"
    others: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    page_size: int = 100
    failures: dict[str, list[Exception]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def fail(self, operation: str, error: Exception | str, times: int = 1) -> None:
        exc = client_error(error, operation) if isinstance(error, str) else error
        self.failures.setdefault(operation, []).extend([exc] * times)

    def _call(self, operation: str, params: dict[str, Any]) -> None:
        self.calls.append((operation, params))
        pending = self.failures.get(operation)
        if pending:
            raise pending.pop(0)

    def ops(self, operation: str) -> list[dict[str, Any]]:
        return [params for op, params in self.calls if op == operation]

    def detect_custom_labels(self, **params: Any) -> dict[str, Any]:
        self._call("DetectCustomLabels", params)
        if self.status != "RUNNING":
            raise client_error("ResourceNotReadyException", "DetectCustomLabels")
        return self.response

    def _page(self, key: str, items: list[Any], params: dict[str, Any]) -> dict[str, Any]:
        start = int(params.get("NextToken") or 0)
        end = start + self.page_size
        return {key: items[start:end], **({"NextToken": str(end)} if end < len(items) else {})}

    def describe_projects(self, **params: Any) -> dict[str, Any]:
        self._call("DescribeProjects", params)
        return self._page("ProjectDescriptions", [{"ProjectArn": arn, "Status": "CREATED"} for arn in dict.fromkeys([PROJECT_ARN, *self.others])], params)

    def describe_project_versions(self, **params: Any) -> dict[str, Any]:
        self._call("DescribeProjectVersions", params)
        project = params["ProjectArn"]
        if project != PROJECT_ARN and project not in self.others:
            raise client_error("ResourceNotFoundException", "DescribeProjectVersions")
        deployed = [{**version(PROJECT_ARN, VERSION_NAME, self.status, POINTER["inference_units"]), "ProjectVersionArn": VERSION_ARN}]
        versions = (deployed if project == PROJECT_ARN else []) + self.others.get(project, [])
        names = params.get("VersionNames")
        return self._page("ProjectVersionDescriptions", [v for v in versions if not names or v["ProjectVersionArn"].split("/")[-2] in names], params)

    def start_project_version(self, **params: Any) -> dict[str, Any]:
        self._call("StartProjectVersion", params)
        self.status = "STARTING"
        return {"Status": "STARTING"}

    def stop_project_version(self, **params: Any) -> dict[str, Any]:
        self._call("StopProjectVersion", params)
        other = [v for versions in self.others.values() for v in versions if v["ProjectVersionArn"] == params["ProjectVersionArn"]]
        if not other:
            self.status = "STOPPING"
        elif other[0]["Status"] != "RUNNING":  # as the emulator: only a RUNNING model stops
            raise client_error("ResourceInUseException", "StopProjectVersion")
        else:
            other[0]["Status"] = "STOPPING"
        return {"Status": "STOPPING"}


@dataclass
class FakeSSM:
    """The pointers' path as GetParametersByPath pages it: ``value`` is the demo dataset's
    pointer (None: no parameter), ``others`` more datasets' by name."""

    value: str | None = json.dumps(POINTER)
    others: dict[str, str] = field(default_factory=dict)
    calls: int = 0

    def get_parameters_by_path(self, Path: str, Recursive: bool = False, MaxResults: int = 10, NextToken: str | None = None) -> dict[str, Any]:
        assert Path == MODEL_PARAMETER_PREFIX and Recursive is False and 1 <= MaxResults <= 10  # SSM's bounds for the call
        self.calls += 1
        values = ({DATASET: self.value} if self.value is not None else {}) | self.others
        names = sorted(values)
        start = int(NextToken or 0)
        page = {"Parameters": [{"Name": f"{Path}/{name}", "Type": "String", "Value": values[name]} for name in names[start:start + MaxResults]]}
        if start + MaxResults < len(names):
            page["NextToken"] = str(start + MaxResults)
        return page


@dataclass
class FakeDynamoDB:
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    updates: list[dict[str, Any]] = field(default_factory=list)

    def update_item(self, **params: Any) -> dict[str, Any]:
        self.updates.append(params)
        item = self.items.setdefault(params["Key"]["model"]["S"], {"model": params["Key"]["model"]})
        names = params.get("ExpressionAttributeNames", {})
        values = params["ExpressionAttributeValues"]
        for assignment in params["UpdateExpression"].removeprefix("SET ").split(", "):
            name, value = (part.strip() for part in assignment.split("="))
            item[names.get(name, name)] = values[value]
        return {}

    def get_item(self, **params: Any) -> dict[str, Any]:
        item = self.items.get(params["Key"]["model"]["S"])
        return {"Item": item} if item else {}

    def scan(self, **params: Any) -> dict[str, Any]:
        return {"Items": [{**item, "model": {"S": model}} for model, item in self.items.items()]}


class Clock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Fakes:
    rekognition: FakeRekognition
    ssm: FakeSSM
    dynamodb: FakeDynamoDB
    clock: Clock
    wall: Clock
    s3: Any = None


def settings(**changes: Any) -> Settings:
    base = {"model_parameter_prefix": MODEL_PARAMETER_PREFIX, "dataset_bucket": DATASET_BUCKET, "activity_table": ACTIVITY_TABLE}
    return Settings(**{**base, **changes})


def install(fakes: Fakes, **setting_changes: Any) -> Fakes:
    clients = {"rekognition": fakes.rekognition, "ssm": fakes.ssm, "dynamodb": fakes.dynamodb}
    if fakes.s3 is not None:
        clients["s3"] = fakes.s3
    inference_runtime.reset(settings=settings(**setting_changes), clients=clients, clock=fakes.clock, wall=fakes.wall)
    return fakes


@pytest.fixture
def fakes() -> Fakes:
    """The API with fake Rekognition, SSM and DynamoDB clients and a manual clock."""
    made = Fakes(FakeRekognition(), FakeSSM(), FakeDynamoDB(), Clock(), Clock(1_795_867_200.0))
    install(made)
    yield made
    inference_runtime.reset(settings=settings(), clients={})
