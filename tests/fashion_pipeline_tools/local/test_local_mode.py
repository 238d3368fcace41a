"""Local mode end to end, as a user runs it: `fashion-pipeline local up` in its own process,
then uploads, conversion, training, deployment and detections through its endpoints."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest

from fashion_pipeline.labels import CATEGORY_NAMES, DEFAULT_MAPPING
from fashion_pipeline_tools.sample import generate
from tests.fashion_pipeline_tools.web.browser import launch, missing

ROOT = Path(__file__).resolve().parents[3]
# The template's 1,820 s visibility timeout, scaled to local mode's 1 s floor, so that a failing
# message comes back (and reaches the dead-letter queue) within seconds.
VISIBILITY_SCALE = "0.0001"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Output:
    """The lines a process writes to one of its pipes, read as they come (so the pipe never
    fills up and blocks the process)."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in self.lines if text in line]
            if found:
                return found[0]
            time.sleep(0.1)
        raise AssertionError(f"no line with {text!r} within {timeout} s; got: {self.lines[-20:]}")


def start_local(template: Path, *options: str):
    """`local up` in its own process: (process, the endpoints of its first stdout line, the
    rest of stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["FASHION_PIPELINE_LOCAL_VISIBILITY_SCALE"] = VISIBILITY_SCALE
    process = subprocess.Popen(
        [sys.executable, "-m", "fashion_pipeline_tools.cli", "local", "up", "--port", str(free_port()),
         "--api-port", str(free_port()), "--template", str(template), *options],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    ready, _, _ = select.select([process.stdout], [], [], 90)
    assert ready, "local mode did not start within 90 s"
    info = json.loads(process.stdout.readline())
    return process, info, Output(process.stdout), Output(process.stderr)


@pytest.fixture(scope="module")
def local_template(synthesized, tmp_path_factory):
    template = tmp_path_factory.mktemp("local") / "template.json"
    template.write_text(json.dumps(synthesized.template_dict))
    return template


@pytest.fixture(scope="module")
def local_process(local_template):
    process, info, stdout, stderr = start_local(local_template)
    yield info, stdout, stderr
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture(scope="module")
def local(local_process):
    return local_process[0]


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
    result = subprocess.run([sys.executable, "-m", "fashion_pipeline_tools.cli", "train", "--dataset", "demo", "--wait", "--interval", "0.5"],
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
    machines = {m["stateMachineArn"] for m in aws("stepfunctions").list_state_machines()["stateMachines"]}
    assert len(machines) == len([r for r in template.values() if r["Type"] == "AWS::StepFunctions::StateMachine"])
    assert local["state_machine_arn"] in machines
    queues = aws("sqs").list_queues()["QueueUrls"]
    relays = [q for q in queues if q.rsplit("/", 1)[-1].startswith("local-request-relay-")]  # one per request rule
    rules = [r for r in template.values() if r["Type"] == "AWS::Events::Rule" and "EventPattern" in r["Properties"]]
    assert len(relays) == len(rules) == 2
    assert len([r for r in template.values() if r["Type"] == "AWS::SQS::Queue"]) == len(queues) - len(relays)
    tables = aws("dynamodb").list_tables()["TableNames"]
    assert len(tables) == len([r for r in template.values() if r["Type"] == "AWS::DynamoDB::GlobalTable"])
    roles = {r["RoleName"] for r in aws("iam").list_roles()["Roles"]}
    assert len(roles) == len([r for r in template.values() if r["Type"] == "AWS::IAM::Role"])
    # The model pointers are not stack resources: nothing is deployed until a run publishes one.
    assert aws("ssm").get_parameters_by_path(Path=local["model_parameter_prefix"])["Parameters"] == []


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


def test_model_status_answers_while_a_large_image_renders(local, trained, tmp_path):
    """A render of seconds runs in one execution environment while GET /model runs in another
    and the emulator describes the model meanwhile: the status comes back in a fraction of the
    render's time (the slowest of three tries bounds it, so one slow answer on a loaded machine
    does not fail the test)."""
    from PIL import Image

    side = 3000  # ~3.96 MB of noise at quality 55: just under the 4 MB an image may have
    photo = tmp_path / "noise.jpg"
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(photo, format="JPEG", quality=55)
    api = local["api_url"].rstrip("/")

    def get_model() -> float:
        started = time.monotonic()
        with urllib.request.urlopen(api + "/model", timeout=30) as response:
            assert json.loads(response.read())["status"] == "RUNNING"
        return time.monotonic() - started

    get_model()
    tries = []
    for _ in range(3):
        rendered: list[float] = []

        def render() -> None:
            started = time.monotonic()
            status, png = detect(local, photo, accept="image/png")
            assert status == 200 and png.startswith(b"\x89PNG")
            rendered.append(time.monotonic() - started)

        rendering = threading.Thread(target=render)
        rendering.start()
        time.sleep(0.3)  # the render is under way: decoding, detecting or drawing
        status_seconds = get_model()
        rendering.join()
        assert rendered, "the render failed"
        tries.append((status_seconds, rendered[0]))
        if rendered[0] >= 1 and status_seconds < 0.3 * rendered[0]:
            break
    status_seconds, render_seconds = tries[-1]
    # A second is ~30 times what GET /model takes here unhindered (0.03 s): room to tell a wait from none.
    assert render_seconds >= 1, f"the render took {render_seconds:.2f} s: too quick to tell a wait from none ({tries})"
    assert status_seconds < 0.3 * render_seconds, f"GET /model took {status_seconds:.2f} s beside a {render_seconds:.2f} s render ({tries})"


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
    from fashion_pipeline_tools.local.server import _schedules
    from fashion_pipeline_tools.local.template import Template

    resolver = Template(synthesized.template_dict)
    [(function, seconds)] = _schedules(resolver)
    [autostop] = [lid for lid, r in synthesized.resources("AWS::Lambda::Function").items() if r["Properties"].get("Handler") == "inference.autostop.handler"]
    assert (function, seconds) == (resolver.name(autostop), 300)


def stack_outputs(aws):
    [stack] = aws("cloudformation").describe_stacks(StackName="FashionPipeline")["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}


def test_queues_have_the_templates_attributes(aws, synthesized):
    """Dead-letter queue, maxReceiveCount, visibility timeout and retention, as synthesized."""
    outputs, sqs = stack_outputs(aws), aws("sqs")
    queue = sqs.get_queue_attributes(QueueUrl=outputs["AnnotationQueueUrl"], AttributeNames=["All"])["Attributes"]
    dead_letters = sqs.get_queue_attributes(QueueUrl=outputs["DeadLetterQueueUrl"], AttributeNames=["All"])["Attributes"]
    [declared] = [r["Properties"] for r in synthesized.resources("AWS::SQS::Queue").values() if "RedrivePolicy" in r["Properties"]]
    [declared_dlq] = [r["Properties"] for r in synthesized.resources("AWS::SQS::Queue").values() if "RedrivePolicy" not in r["Properties"]]
    assert queue["VisibilityTimeout"] == str(declared["VisibilityTimeout"])
    assert json.loads(queue["RedrivePolicy"]) == {"deadLetterTargetArn": dead_letters["QueueArn"],
                                                   "maxReceiveCount": declared["RedrivePolicy"]["maxReceiveCount"]}
    assert dead_letters["MessageRetentionPeriod"] == str(declared_dlq["MessageRetentionPeriod"])
    assert queue["SqsManagedSseEnabled"] == dead_letters["SqsManagedSseEnabled"] == "true"


def wait_for_keys(s3, bucket, keys, present=True, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        listed = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
        missing = set(keys) - listed if present else set(keys) & listed
        if not missing:
            return
        assert time.monotonic() < deadline, f"{'missing' if present else 'still there'}: {sorted(missing)}"
        time.sleep(0.3)


def test_every_annotation_object_ends_in_a_fragment_or_a_report_and_deletions_remove_them(local, aws, tmp_path):
    sample = generate(tmp_path, images=1, seed=3)
    [name] = sample.files
    body = (sample.annotations / name).read_bytes()
    s3, bucket, artifacts = aws("s3"), local["dataset_bucket"], local["artifacts_bucket"]
    for image in sample.images.iterdir():
        s3.upload_file(str(image), bucket, f"images/intake/{image.name}")
    uploads = {f"annotations/intake/{name}": body, "annotations/intake/empty.zip": b"", "annotations/intake/not-a.zip": b"not a zip",
               f"annotations/{name}": body, f"annotations/My Data/{name}": body}
    for key, data in uploads.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    converted = [f"fragments/intake/{name}.jsonl", f"reports/intake/{name}.json"]
    unassigned = [f"unassigned/annotations/{name}.json", f"unassigned/annotations/My Data/{name}.json"]
    wait_for_keys(s3, artifacts, [*converted, *unassigned, "reports/intake/empty.zip.json", "reports/intake/not-a.zip.json"])

    def reasons(key):
        return [r["reason"] for r in json.loads(s3.get_object(Bucket=artifacts, Key=key)["Body"].read())["rejected"]]

    assert reasons("reports/intake/empty.zip.json") == reasons("reports/intake/not-a.zip.json") == ["invalid_archive"]
    assert [reasons(key) for key in unassigned] == [["no_dataset"], ["invalid_dataset_name"]]
    assert json.loads(s3.get_object(Bucket=artifacts, Key=converted[1])["Body"].read())["records"] == 1

    # `aws s3 rm`: the versioned bucket adds delete markers, S3 notifies ObjectRemoved:DeleteMarkerCreated.
    for key in (f"annotations/intake/{name}", f"annotations/{name}"):
        s3.delete_object(Bucket=bucket, Key=key)
    wait_for_keys(s3, artifacts, [*converted, unassigned[0]], present=False)
    wait_for_keys(s3, artifacts, [unassigned[1]])


def test_a_poison_message_lands_in_the_dead_letter_queue_and_local_mode_says_so(local_process, aws):
    """A notification the converter fails every time (the object is in a bucket its role may not
    read) is delivered maxReceiveCount times, then moved to the DLQ, and stderr names it."""
    from fashion_pipeline.s3_events import s3_notification

    _, _, stderr = local_process
    outputs, sqs = stack_outputs(aws), aws("sqs")
    body = json.dumps(s3_notification("someone-elses-bucket", "annotations/demo/poison.json"))
    sqs.send_message(QueueUrl=outputs["AnnotationQueueUrl"], MessageBody=body)
    line = stderr.wait_for("s3://someone-elses-bucket/annotations/demo/poison.json", timeout=40)
    assert "moved to the dead-letter queue" in line and "after 5 receives (maxReceiveCount 5)" in line
    assert "HeadObject" in line and "403" in line  # the converter's last error: access denied
    [message] = sqs.receive_message(QueueUrl=outputs["DeadLetterQueueUrl"], MaxNumberOfMessages=10)["Messages"]
    assert message["Body"] == body
    left = sqs.get_queue_attributes(QueueUrl=outputs["AnnotationQueueUrl"], AttributeNames=["ApproximateNumberOfMessages",
                                                                                            "ApproximateNumberOfMessagesNotVisible"])
    assert set(left["Attributes"].values()) == {"0"}


def test_stdout_is_the_one_line_of_endpoints_and_stderr_says_state_is_in_memory(local_process, trained):
    """After uploads, conversion, a training run and detections, stdout still holds only the
    first line (read by the fixture); without --verbose no function record reaches stderr."""
    local, stdout, stderr = local_process
    sample, in_training = trained
    status, _ = detect(local, sample.images / sorted(in_training)[0], accept="image/png")
    assert status == 200
    time.sleep(0.5)
    assert stdout.lines == []
    stderr.wait_for("lives in this process's memory and is lost when it stops", timeout=5)
    records = [line for line in stderr.lines if line.startswith("{")]
    assert records == [], records[:3]


@pytest.fixture(scope="module")
def verbose_process(local_template):
    process, info, stdout, stderr = start_local(local_template, "--verbose")
    yield info, stdout, stderr
    process.terminate()
    process.wait(timeout=20)


def test_verbose_writes_each_functions_records_on_stderr_under_its_service(verbose_process, tmp_path):
    local, stdout, stderr = verbose_process
    session = boto3.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1")
    s3 = session.client("s3", endpoint_url=local["aws_endpoint_url"])
    sample = generate(tmp_path, images=1, seed=4)
    [name] = sample.files
    for image in sample.images.iterdir():
        s3.upload_file(str(image), local["dataset_bucket"], f"images/loud/{image.name}")
    s3.upload_file(str(sample.annotations / name), local["dataset_bucket"], f"annotations/loud/{name}")
    with pytest.raises(urllib.error.HTTPError) as refused:  # logged ("request refused") and counted (Errors)
        urllib.request.urlopen(local["api_url"].rstrip("/") + "/no-such-route", timeout=30)
    assert refused.value.code == 404
    deadline = time.monotonic() + 60
    while True:
        records = [json.loads(line) for line in list(stderr.lines) if line.startswith("{")]
        services = {(r.get("service"), "_aws" in r) for r in records}
        # Log records and EMF metric records (with "_aws" metadata) of the converter and of the
        # API, each under its own function's service name.
        if {("converter", False), ("converter", True), ("inference", False), ("inference", True)} <= services:
            break
        assert time.monotonic() < deadline, f"records seen: {sorted(services, key=str)}"
        time.sleep(0.3)
    converted = [r for r in records if r.get("service") == "converter" and "_aws" in r]
    assert any(r.get("ImagesAccepted") == [1.0] for r in converted)  # EMF: the values of the invocation
    functions = {r.get("function_name", "") for r in records if r.get("service") == "inference" and "_aws" not in r}
    assert any("ApiInferenceFunction" in f for f in functions)
    assert stdout.lines == []  # still only the line of endpoints
