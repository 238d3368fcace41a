import json
import uuid
from dataclasses import dataclass
from urllib.parse import quote_plus

import boto3
import pytest
from moto import mock_aws

from fashion_pipeline.sample import generate

DATASET_BUCKET = "fashion-dataset-test"
ARTIFACTS_BUCKET = "fashion-artifacts-test"


@dataclass
class LambdaContext:
    function_name: str = "converter"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:converter"
    aws_request_id: str = "request-1"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


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
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-11-28T12:00:00.000Z",
                "eventName": event,
                "userIdentity": {"principalId": "AWS:EXAMPLE"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": "1", "x-amz-id-2": "2"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "annotations",
                    "bucket": {"name": bucket, "ownerIdentity": {"principalId": "EXAMPLE"}, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": quote_plus(key, safe="/"), "size": 1, "eTag": "0", "sequencer": "0A1B2C3D4E5F678901"},
                },
            }
        ]
    }


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
