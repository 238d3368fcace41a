import json
import uuid

import boto3
import pytest
from moto import mock_aws

from fashion_pipeline.s3_events import s3_notification
from fashion_pipeline_tools.local.lambda_runtime import LambdaContext as LocalContext
from fashion_pipeline_tools.sample import generate

DATASET_BUCKET = "fashion-dataset-test"
ARTIFACTS_BUCKET = "fashion-artifacts-test"


def LambdaContext():
    return LocalContext("converter", 1024, "arn:aws:lambda:us-east-1:123456789012:function:converter", 300)


@pytest.fixture(scope="session")
def sample_set(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("sample"), images=12, defects=True)


@pytest.fixture
def aws(monkeypatch):
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in (DATASET_BUCKET, ARTIFACTS_BUCKET):
            s3.create_bucket(Bucket=bucket)
        monkeypatch.setenv("ARTIFACTS_BUCKET", ARTIFACTS_BUCKET)
        monkeypatch.setenv("DATASET_BUCKET", DATASET_BUCKET)
        yield s3


def upload_images(s3, sample, dataset="demo"):
    for path in sorted(sample.images.iterdir()):
        s3.put_object(Bucket=DATASET_BUCKET, Key=f"images/{dataset}/{path.name}", Body=path.read_bytes())


def s3_event(key, bucket=DATASET_BUCKET, event="ObjectCreated:Put"):
    """An S3 notification as S3 writes it (key URL-encoded, spaces as '+')."""
    return s3_notification(bucket, key, size=1, etag="0", event_name=event)


def sqs_event(*bodies):
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": "handle",
                "body": body if isinstance(body, str) else json.dumps(body),
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1700000000000",
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": "1700000000001",
                },
                "messageAttributes": {},
                "md5OfBody": "0",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:annotations",
                "awsRegion": "us-east-1",
            }
            for body in bodies
        ]
    }


@pytest.fixture(autouse=True)
def fresh_client():
    """Each test's converter makes its S3 client anew, inside that test's moto."""
    from converter import handler

    handler.s3_client.cache_clear()
    yield
    handler.s3_client.cache_clear()


def invoke(*bodies):
    """The converter handler, given an SQS batch of these S3 notification bodies."""
    from converter import handler

    return handler.handler(sqs_event(*bodies), LambdaContext())
