"""The converter as deployed: its synthesized role, IAM enforced, the template's bucket layout.
A grant missing for unassigned reports or for removing outputs fails here as on AWS."""

import json
import uuid

from fashion_pipeline.s3_events import s3_notification
from fashion_pipeline_tools.local.server import sqs_record
from tests.workflow.conftest import harness_for


def deliver(harness, *events):
    """What S3 -> SQS -> Lambda hands the converter, one message per S3 event."""
    records = [sqs_record({"MessageId": uuid.uuid4().hex, "ReceiptHandle": "local", "Body": json.dumps(event)},
                          "arn:aws:sqs:us-east-1:123456789012:annotations", "us-east-1") for event in events]
    answer = harness.pipeline.runtime.invoke(harness.pipeline.function("converter.handler.handler"), json.dumps({"Records": records}))
    return json.loads(answer)


def outputs(harness):
    listed = harness.s3.list_objects_v2(Bucket=harness.artifacts_bucket).get("Contents", [])
    return sorted(o["Key"] for o in listed)


def test_the_converter_role_reports_unassigned_keys_and_removes_outputs(synthesized, sample_set):
    with harness_for(synthesized.template_dict) as harness:
        bucket, s3 = harness.dataset_bucket, harness.s3
        body = (sample_set.annotations / "000001.json").read_bytes()
        s3.put_object(Bucket=bucket, Key="images/demo/000001.jpg", Body=(sample_set.images / "000001.jpg").read_bytes())
        keys = ["annotations/demo/000001.json", "annotations/000001.json", "annotations/My Data/000001.json"]
        for key in keys:
            s3.put_object(Bucket=bucket, Key=key, Body=body)
        assert deliver(harness, *(s3_notification(bucket, key) for key in keys)) == {"batchItemFailures": []}
        assert outputs(harness) == [
            "fragments/demo/000001.json.jsonl", "reports/demo/000001.json.json",
            "unassigned/annotations/000001.json.json", "unassigned/annotations/My Data/000001.json.json",
        ]
        assert harness.object("reports/demo/000001.json.json")["records"] == 1

        for key in keys:  # the bucket is versioned: each deletion adds a delete marker
            s3.delete_object(Bucket=bucket, Key=key)
        removed = [s3_notification(bucket, key, event_name="ObjectRemoved:DeleteMarkerCreated") for key in keys]
        assert deliver(harness, *removed) == {"batchItemFailures": []}
        assert outputs(harness) == []
