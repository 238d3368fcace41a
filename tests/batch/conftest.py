"""The batch detection machine in moto, end to end, IAM enforced: one trained model for the module.

Training (the real workflow, ``tests.workflow.conftest``) deploys a model of the sample's
dataset; the emulated model answers exactly the training images, byte for byte, so the job's
images are copies of them under many keys, plus the objects that must become error lines.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from fashion_pipeline_tools.sample import generate
from tests.workflow.conftest import eventbridge_object_created, harness_for

IMAGES = 500
PREFIX = "images/demo/batch/"


class BatchHarness:
    def __init__(self, harness):
        self.h = harness
        self.s3 = harness.s3
        self.sfn = harness.sfn
        self.dataset_bucket = harness.dataset_bucket
        self.artifacts_bucket = harness.artifacts_bucket
        self.machine = harness.pipeline.state_machine("BatchStateMachine")
        self.rekognition = harness.session.client("rekognition")

    def start(self, job: str, body: bytes | dict, *, key: str | None = None) -> str:
        """Upload the request as a user would, then start what EventBridge delivers for it; the
        execution's ARN, without waiting for it (jobs at once)."""
        key = key or f"batch/{job}.json"
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        put = self.s3.put_object(Bucket=self.dataset_bucket, Key=key, Body=data)
        return self._started(eventbridge_object_created(self.dataset_bucket, key, size=len(data), etag=put["ETag"].strip('"')))

    def request(self, job: str, body: bytes | dict, *, key: str | None = None) -> dict:
        """``start``, then the execution's description once it ends."""
        return self.h.wait(self.start(job, body, key=key), timeout=120)

    def deliver(self, key: str) -> dict:
        """What EventBridge delivers for an object already uploaded; the execution once it ends."""
        head = self.s3.head_object(Bucket=self.dataset_bucket, Key=key)
        event = eventbridge_object_created(self.dataset_bucket, key, size=head["ContentLength"], etag=head["ETag"].strip('"'))
        return self.h.wait(self._started(event), timeout=120)

    def _started(self, event: dict) -> str:
        return self.sfn.start_execution(stateMachineArn=self.machine, name=f"job-{uuid.uuid4().hex[:12]}", input=json.dumps(event))["executionArn"]

    def summary(self, job: str) -> dict:
        return self.h.object(f"batch/{job}/summary.json")

    def results(self, job: str) -> list[dict]:
        body = self.s3.get_object(Bucket=self.artifacts_bucket, Key=f"batch/{job}/results.jsonl")["Body"].read()
        return [json.loads(line) for line in body.splitlines()]

    def listed(self, prefix: str) -> list[str]:
        keys = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.dataset_bucket, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    @property
    def activity_table(self) -> str:
        return self.h.pipeline.deployment.find("AWS::DynamoDB::GlobalTable", "Activity")

    def model(self, dataset: str = "demo") -> dict:
        pointer = self.h.current_model(dataset)
        [described] = self.rekognition.describe_project_versions(
            ProjectArn=pointer["project_arn"], VersionNames=[pointer["version_name"]])["ProjectVersionDescriptions"]
        return described

    def settle(self, status: str) -> None:
        """Describe the model until it is ``status`` (the emulator moves statuses on Describe)."""
        deadline = time.monotonic() + 10
        while self.model()["Status"] != status:
            assert time.monotonic() < deadline, f"the model did not become {status}"

    def ensure_stopped(self) -> None:
        """Bring the dataset's model to STOPPED from whatever an earlier test left."""
        status = self.model()["Status"]
        if status == "STARTING":
            self.settle("RUNNING")
            status = "RUNNING"
        if status == "RUNNING":
            self.stop_model()
        self.settle("STOPPED")

    def stop_model(self) -> None:
        """Stop the dataset's model and wait until it is STOPPED (the emulator moves on Describe)."""
        self.rekognition.stop_project_version(ProjectVersionArn=self.model()["ProjectVersionArn"])
        deadline = time.monotonic() + 10
        while self.model()["Status"] != "STOPPED":
            assert time.monotonic() < deadline, "the model did not stop"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("batch-sample"), images=30, seed=11)


@pytest.fixture(scope="module")
def batch(synthesized, sample):
    with harness_for(synthesized.template_dict) as harness:
        harness.upload_and_convert(sample)
        described = harness.run(min_f1=0.0)
        assert described["status"] == "SUCCEEDED", described
        assert harness.current_model("demo")["status"] == "RUNNING"
        yield BatchHarness(harness)


@pytest.fixture(scope="module")
def training_images(batch):
    """The bytes of every image the model was trained on (the emulated model knows only those)."""
    s3 = batch.s3
    runs = s3.list_objects_v2(Bucket=batch.artifacts_bucket, Prefix="runs/demo/")["Contents"]
    manifest = next(o["Key"] for o in runs if o["Key"].endswith("train.manifest"))
    lines = s3.get_object(Bucket=batch.artifacts_bucket, Key=manifest)["Body"].read().splitlines()
    images = []
    for line in lines:
        bucket, key = json.loads(line)["source-ref"][len("s3://"):].split("/", 1)
        images.append((key, s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    return images
