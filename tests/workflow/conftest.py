"""Run the synthesized training state machine in moto, end to end, offline, with IAM enforced.

The definition comes from the CDK template (not a hand-kept copy); Lambda tasks run the
project's real handlers in-process, each as its own synthesized role; the state machine's
SDK tasks call as the machine's role; Rekognition Custom Labels is the project's emulator,
which reads training data and writes output as its caller. The test itself acts as an
administrator (the operator), as the person who deploys and starts runs would.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
import uuid
import zipfile

import boto3
import pytest
from moto import mock_aws

from fashion_pipeline.s3_events import s3_notification
from fashion_pipeline_tools.local.environment import emulate
from fashion_pipeline_tools.local.server import sqs_record
from fashion_pipeline_tools.sample import generate

MODEL_PARAMETER_PREFIX = "/fashion-pipeline/models"  # cdk.json's modelParameterPrefix
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
# Emulated waits take no time; the bounds keep each loop within the history budget.
FAST = {"poll_seconds": 0, "start_poll_seconds": 0, "training_timeout_hours": 0.01, "wait_timeout_minutes": 1}


@pytest.fixture(scope="session")
def sample(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("workflow-sample"), images=30, seed=11)


class Harness:
    def __init__(self, session, pipeline):
        self.session = session
        self.pipeline = pipeline
        self.s3 = session.client("s3")
        self.sfn = session.client("stepfunctions")
        self.dataset_bucket = pipeline.bucket("DatasetBucket")
        self.artifacts_bucket = pipeline.bucket("ArtifactsBucket")
        self.machine = pipeline.state_machine()

    def upload_and_convert(self, sample, dataset="demo", names=None):
        """Images and a zip of annotations, converted by the converter function as its role."""
        names = names or sample.files
        for name in names:
            stem = name[:-5]
            for image in sample.images.glob(stem + ".*"):
                self.s3.put_object(Bucket=self.dataset_bucket, Key=f"images/{dataset}/{image.name}", Body=image.read_bytes())
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zf:
            for name in names:
                zf.write(sample.annotations / name, name)
        key = f"annotations/{dataset}/batch.zip"
        self.s3.put_object(Bucket=self.dataset_bucket, Key=key, Body=archive.getvalue())
        return self.convert(key)

    def convert(self, key):
        """What S3 -> SQS -> Lambda delivers for an uploaded annotation object."""
        head = self.s3.head_object(Bucket=self.dataset_bucket, Key=key)
        notification = s3_notification(self.dataset_bucket, key, size=head["ContentLength"], etag=head["ETag"].strip('"'))
        message = {"MessageId": uuid.uuid4().hex, "ReceiptHandle": "local", "Body": json.dumps(notification)}
        record = sqs_record(message, "arn:aws:sqs:us-east-1:123456789012:annotations", "us-east-1")
        answer = json.loads(self.pipeline.runtime.invoke(self.pipeline.function("converter.handler.handler"), json.dumps({"Records": [record]})))
        assert answer == {"batchItemFailures": []}, answer
        return answer

    def start(self, dataset="demo", **options):
        payload = {"dataset": dataset, "options": {**FAST, **options}}
        return self.start_with(payload)

    def start_with(self, payload):
        name = f"run-{uuid.uuid4().hex[:12]}"
        return self.sfn.start_execution(stateMachineArn=self.machine, name=name, input=json.dumps(payload))["executionArn"]

    def wait(self, execution_arn, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described = self.sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                return described
            time.sleep(0.2)
        raise AssertionError(f"execution still running after {timeout} s")

    def run(self, dataset="demo", **options):
        return self.wait(self.start(dataset, **options))

    def object(self, key, bucket=None):
        return json.loads(self.s3.get_object(Bucket=bucket or self.artifacts_bucket, Key=key)["Body"].read())

    def current_model(self, dataset="demo"):
        """The dataset's model pointer the workflow publishes, or None before any deployment."""
        ssm = self.session.client("ssm")
        try:
            return json.loads(ssm.get_parameter(Name=f"{MODEL_PARAMETER_PREFIX}/{dataset}")["Parameter"]["Value"])
        except ssm.exceptions.ParameterNotFound:
            return None

    def running_versions(self):
        """(ARN, status) of every model version of the pipeline's projects that bills: RUNNING or STARTING."""
        rekognition = self.session.client("rekognition")
        found = []
        for project in rekognition.describe_projects()["ProjectDescriptions"]:
            for version in rekognition.describe_project_versions(ProjectArn=project["ProjectArn"])["ProjectVersionDescriptions"]:
                if version["Status"] in ("RUNNING", "STARTING"):
                    found.append((version["ProjectVersionArn"], version["Status"]))
        return found

    def calls(self, operation):
        return [params for op, params in self.pipeline.custom_labels.calls if op == operation]


def emulated(template):
    """The stack in moto as CloudFormation would create it, then IAM enforced for everyone."""
    pipeline = emulate(boto3.Session(region_name="us-east-1"), template)
    pipeline.custom_labels.reset()
    pipeline.custom_labels.settings(dataset_ticks=1, training_ticks=2, start_ticks=1, stop_ticks=1)
    return pipeline


@contextlib.contextmanager
def harness_for(template):
    """A Harness over the stack a template describes, IAM enforced, moto reset afterwards."""
    with mock_aws(config=MOTO_CONFIG):
        pipeline = emulated(template)
        try:
            with pipeline.enforcing():
                yield Harness(boto3.Session(region_name="us-east-1", **pipeline.operator.client_kwargs()), pipeline)
        finally:
            pipeline.custom_labels.reset()


@pytest.fixture
def harness(synthesized):
    with harness_for(synthesized.template_dict) as built:
        yield built


def eventbridge_object_created(bucket, key, size=1, etag="0"):
    """S3's "Object Created" event on EventBridge, every field AWS sends ("Amazon S3 event
    notifications with EventBridge", the Object Created example:
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html)."""
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3", "account": "123456789012",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "region": "us-east-1", "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket},
                   "object": {"key": key, "size": size, "etag": etag, "sequencer": "617f08299329d189"},
                   "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012", "source-ip-address": "1.2.3.4", "reason": "PutObject"},
    }
