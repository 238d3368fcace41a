"""Local mode end to end, as a user runs it: `fashion-pipeline local up` in its own process,
then uploads, conversion, training, deployment and detections through its endpoints."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import pytest

from fashion_pipeline.labels import CATEGORY_NAMES, DEFAULT_MAPPING
from fashion_pipeline.sample import generate
from tests.web.browser import launch, missing

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def local(synthesized, tmp_path_factory):
    template = tmp_path_factory.mktemp("local") / "template.json"
    template.write_text(json.dumps(synthesized.template_dict))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "fashion_pipeline.cli", "local", "up", "--port", str(free_port()),
         "--api-port", str(free_port()), "--template", str(template)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    ready, _, _ = select.select([process.stdout], [], [], 90)
    assert ready, "local mode did not start within 90 s"
    info = json.loads(process.stdout.readline())
    yield info
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture(scope="module")
def aws(local):
    session = boto3.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1")
    return lambda name: session.client(name, endpoint_url=local["aws_endpoint_url"])


@pytest.fixture(scope="module")
def trained(local, aws, tmp_path_factory):
    """The sample uploaded the way a user would, converted, trained and deployed."""
    sample = generate(tmp_path_factory.mktemp("upload"), images=30, seed=5)
    # One box reaching past the image's right edge, to check clipping end to end.
    first = json.loads((sample.annotations / "000001.json").read_text())
    first["item1"]["bounding_box"][2] = 10_000
    (sample.annotations / "000001.json").write_text(json.dumps(first))
    s3 = aws("s3")
    for image in sample.images.iterdir():
        s3.upload_file(str(image), local["dataset_bucket"], f"images/demo/{image.name}")
    for name in sample.files:
        s3.upload_file(str(sample.annotations / name), local["dataset_bucket"], f"annotations/demo/{name}")
    deadline = time.monotonic() + 60
    while s3.list_objects_v2(Bucket=local["artifacts_bucket"], Prefix="reports/demo/").get("KeyCount", 0) < len(sample.files):
        assert time.monotonic() < deadline, "conversion did not finish"
        time.sleep(0.3)
    env = {"AWS_ENDPOINT_URL": local["aws_endpoint_url"], "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
           "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run([sys.executable, "-m", "fashion_pipeline.cli", "train", "--dataset", "demo", "--wait", "--interval", "0.5"],
                            cwd=ROOT, env={**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **env},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    runs = s3.list_objects_v2(Bucket=local["artifacts_bucket"], Prefix="runs/demo/")["Contents"]
    manifest = max(o["Key"] for o in runs if o["Key"].endswith("train.manifest"))
    lines = [json.loads(x) for x in s3.get_object(Bucket=local["artifacts_bucket"], Key=manifest)["Body"].read().splitlines()]
    return sample, {line["source-ref"].rsplit("/", 1)[1] for line in lines}


def detect(local, path: Path, accept="application/json"):
    kind = "image/png" if path.suffix == ".png" else "image/jpeg"
    request = urllib.request.Request(local["api_url"].rstrip("/") + "/detections", data=path.read_bytes(), method="POST",
                                     headers={"Content-Type": kind, "Accept": accept})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read()


def expected_boxes(sample, image: Path):
    """The annotation, clipped to the image and with the default label consolidation."""
    from PIL import Image

    width, height = Image.open(image).size
    truth = json.loads((sample.annotations / (image.stem + ".json")).read_text())
    boxes = []
    for key in (k for k in truth if k.startswith("item")):
        x1, y1, x2, y2 = truth[key]["bounding_box"]
        name = CATEGORY_NAMES[truth[key]["category_id"]]
        boxes.append((DEFAULT_MAPPING.get(name, name), max(0, x1), max(0, y1), min(width, x2), min(height, y2)))
    return sorted(boxes)


def test_resources_match_the_template(local, aws, synthesized):
    template = synthesized.template_dict["Resources"]
    buckets = set(b["Name"] for b in aws("s3").list_buckets()["Buckets"])
    assert len([r for r in template.values() if r["Type"] == "AWS::S3::Bucket"]) == len(buckets)
    assert {local["dataset_bucket"], local["artifacts_bucket"]} <= buckets
    functions = aws("lambda").list_functions()["Functions"]
    assert sorted(f["Handler"] for f in functions) == sorted(
        r["Properties"]["Handler"] for r in template.values() if r["Type"] == "AWS::Lambda::Function" and "Handler" in r["Properties"])
    [machine] = aws("stepfunctions").list_state_machines()["stateMachines"]
    assert machine["stateMachineArn"] == local["state_machine_arn"]
    queues = aws("sqs").list_queues()["QueueUrls"]
    assert len([r for r in template.values() if r["Type"] == "AWS::SQS::Queue"]) == len(queues) - 1  # + the local request relay
    tables = aws("dynamodb").list_tables()["TableNames"]
    assert len(tables) == len([r for r in template.values() if r["Type"] == "AWS::DynamoDB::GlobalTable"])
    roles = {r["RoleName"] for r in aws("iam").list_roles()["Roles"]}
    assert len(roles) == len([r for r in template.values() if r["Type"] == "AWS::IAM::Role"])
    # The model pointer is not a stack resource: nothing is deployed until a run publishes it.
    with pytest.raises(aws("ssm").exceptions.ParameterNotFound):
        aws("ssm").get_parameter(Name="/fashion-pipeline/model")


def test_full_round_trip_from_annotation_pixels_to_api_pixels(local, trained):
    sample, in_training = trained
    checked = 0
    for image in sorted(sample.images.iterdir()):
        status, body = detect(local, image)
        answer = json.loads(body)
        assert status == 200 and answer["model"]["emulated"] is True
        found = sorted((g["label"], g["pixels"]["left"], g["pixels"]["top"], g["pixels"]["left"] + g["pixels"]["width"],
                        g["pixels"]["top"] + g["pixels"]["height"]) for g in answer["garments"])
        if image.name in in_training:
            expected = expected_boxes(sample, image)
            assert [f[0] for f in found] == [e[0] for e in expected], image.name
            for got, want in zip(found, expected):
                assert all(abs(a - b) <= 1 for a, b in zip(got[1:], want[1:])), (image.name, got, want)
            checked += 1
        else:
            assert found == [], "a memorising model knows only its training images"
    assert checked >= 15


def test_rendered_answer_and_model_status(local, trained):
    sample, in_training = trained
    image = sample.images / sorted(in_training)[0]
    status, png = detect(local, image, accept="image/png")
    assert status == 200 and png.startswith(b"\x89PNG")
    with urllib.request.urlopen(local["api_url"].rstrip("/") + "/model", timeout=10) as response:
        model = json.loads(response.read())
    assert model["status"] == "RUNNING"


def test_the_page_from_local_mode_in_a_real_browser(local, trained, tmp_path):
    reason = missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    sample, in_training = trained
    image = sample.images / sorted(in_training)[1]
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(local["api_url"])
        page.set_input_files("#file", str(image))
        page.wait_for_selector("body[data-state=done], body[data-state=error]", timeout=20_000)
        assert page.locator("body").get_attribute("data-state") == "done"
        drawn = page.evaluate("window.lastDrawn")
        expected = expected_boxes(sample, image)
        got = sorted((d["label"], d["left"], d["top"], d["left"] + d["width"], d["top"] + d["height"]) for d in drawn)
        assert [g[0] for g in got] == [e[0] for e in expected]
        assert all(abs(a - b) <= 1 for g, e in zip(got, expected) for a, b in zip(g[1:], e[1:]))
        assert page.locator("#garments li").count() == len(expected)
        browser.close()


def test_local_mode_runs_the_templates_schedules(synthesized):
    """The idle auto-stop runs in local mode on the template's own schedule, as its own role."""
    from fashion_pipeline.local.server import _schedules
    from fashion_pipeline.local.template import Template

    resolver = Template(synthesized.template_dict)
    [(function, seconds)] = _schedules(resolver)
    [autostop] = [lid for lid, r in synthesized.resources("AWS::Lambda::Function").items() if r["Properties"].get("Handler") == "inference.autostop.handler"]
    assert (function, seconds) == (resolver.name(autostop), 300)
