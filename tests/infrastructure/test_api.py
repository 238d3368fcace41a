"""The inference API as synthesized: auth on every method, throttling, logs, binary types."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template

from infrastructure.api import BINARY_MEDIA_TYPES, InferenceApi
from infrastructure.config import PipelineConfig
from tests.synthesis import Synthesized


def methods(resources: dict) -> dict[str, dict]:
    return {lid: r["Properties"] for lid, r in resources.items() if r["Type"] == "AWS::ApiGateway::Method"}


def test_every_method_but_preflight_needs_iam(synthesized: Synthesized) -> None:
    found = methods(synthesized.template_dict["Resources"])
    assert len(found) >= 5
    for lid, method in found.items():
        if method["HttpMethod"] == "OPTIONS":
            continue
        assert method["AuthorizationType"] == "AWS_IAM", lid
        assert method["Integration"]["Type"] == "AWS_PROXY", lid


def test_stage_is_throttled_traced_and_logged(synthesized: Synthesized) -> None:
    [stage] = synthesized.resources("AWS::ApiGateway::Stage").values()
    props = stage["Properties"]
    assert props["TracingEnabled"] is True
    assert props["AccessLogSetting"]["DestinationArn"]
    [settings] = props["MethodSettings"]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (10, 20)
    assert settings["LoggingLevel"] == "ERROR" and settings["MetricsEnabled"] is True


def test_images_are_binary_media_types(synthesized: Synthesized) -> None:
    [api] = synthesized.resources("AWS::ApiGateway::RestApi").values()
    assert api["Properties"]["BinaryMediaTypes"] == BINARY_MEDIA_TYPES


def test_inference_and_autostop_functions(synthesized: Synthesized) -> None:
    functions = {f["Properties"]["Handler"]: f["Properties"] for f in synthesized.resources("AWS::Lambda::Function").values() if "Handler" in f["Properties"]}
    inference = functions["inference.handler.handler"]
    assert len(inference["Layers"]) == 2  # shared dependencies + Pillow
    assert {"MODEL_PARAMETER_PREFIX", "DEFAULT_DATASET", "ACTIVITY_TABLE", "DATASET_BUCKET", "AUTO_START"} <= set(inference["Environment"]["Variables"])
    assert inference["Environment"]["Variables"]["POINTER_TTL_SECONDS"] == "15"
    assert functions["inference.autostop.handler"]["Environment"]["Variables"]["IDLE_MINUTES"] == "30"
    schedules = [r["Properties"] for r in synthesized.resources("AWS::Events::Rule").values() if "ScheduleExpression" in r["Properties"]]
    assert [s["ScheduleExpression"] for s in schedules] == ["rate(5 minutes)"]


def test_api_key_mode_keeps_iam_on_the_admin_routes() -> None:
    """A separate, small stack with only the API: apiAuth = apiKey, CORS for one origin."""
    app = cdk.App()
    stack = cdk.Stack(app, "ApiOnly")
    config = PipelineConfig(api_auth="apiKey", cors_origin="https://shop.example.com")
    deps = lambda_.LayerVersion.from_layer_version_arn(stack, "Deps", "arn:aws:lambda:us-east-1:123456789012:layer:deps:1")
    imaging = lambda_.LayerVersion.from_layer_version_arn(stack, "Imaging", "arn:aws:lambda:us-east-1:123456789012:layer:imaging:1")
    InferenceApi(stack, "Api", config=config, dependencies=deps, imaging=imaging, dataset_bucket_name="dataset-bucket")
    template = Template.from_stack(stack).to_json()
    found = methods(template["Resources"])
    by_path = {}
    for lid, method in found.items():
        by_path.setdefault(method["HttpMethod"], []).append((lid, method))
    for lid, method in found.items():
        if method["HttpMethod"] == "OPTIONS":
            assert method["AuthorizationType"] == "NONE"
        elif "modelstart" in lid.lower() or "modelstop" in lid.lower():
            assert method["AuthorizationType"] == "AWS_IAM" and not method.get("ApiKeyRequired"), lid
        else:
            assert method["ApiKeyRequired"] is True and method["AuthorizationType"] == "NONE", lid
    assert any(r["Type"] == "AWS::ApiGateway::UsagePlan" for r in template["Resources"].values())
    preflight = [m for m in found.values() if m["HttpMethod"] == "OPTIONS"]
    assert preflight and all("https://shop.example.com" in str(m["Integration"]) for m in preflight)
