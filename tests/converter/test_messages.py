"""The converter's record model: each body shape, the events moto and our own code produce."""

import boto3
import pytest
from aws_lambda_powertools.utilities.parser.models import S3Model
from pydantic import ValidationError

from converter.ingest import Part, range_message
from converter.messages import ConverterRecord, RangeMessage, S3Notification, S3TestEvent
from fashion_pipeline.s3_events import s3_notification
from .conftest import ARTIFACTS_BUCKET, DATASET_BUCKET, LambdaContext, invoke, sqs_event


def keys(s3, prefix):
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=ARTIFACTS_BUCKET, Prefix=prefix).get("Contents", []))


def record(body):
    [parsed] = sqs_event(body)["Records"]
    return ConverterRecord.model_validate(parsed)


def test_our_own_notification_passes_powertools_strict_s3_model():
    for event_name in ("ObjectCreated:Put", "ObjectCreated:Reprocess", "ObjectRemoved:DeleteMarkerCreated"):
        [entry] = S3Model.model_validate(s3_notification("bucket", "annotations/demo/a b.json", event_name=event_name)).Records
        assert entry.s3.object.key == "annotations/demo/a+b.json" and entry.userIdentity and entry.s3.bucket.ownerIdentity


def test_each_body_shape_is_parsed_as_its_model():
    assert isinstance(record(s3_notification("b", "annotations/demo/x.json")).body, S3Notification)
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-28T00:00:00Z", "Bucket": "b",
                  "RequestId": "5582815E1AEA5ADF", "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}
    assert isinstance(record(test_event).body, S3TestEvent)
    message = range_message("b", "annotations/demo/coco.json", ("v1", "etag", "2026-11-28T00:00:00+00:00"), Part(2, 3, 10, 20))
    parsed = record(message).body
    assert isinstance(parsed, RangeMessage) and (parsed.start, parsed.stop, parsed.part, parsed.parts) == (10, 20, 2, 3)


@pytest.mark.parametrize("body, names", [
    ("not json", "body"),
    ({"hello": "world"}, "not an S3 notification (Records), an s3:TestEvent or a range message"),
    ({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": "k", "size": 1, "eTag": "e"}}}]},
     "body.notification.Records.0.eventVersion"),
    ({"kind": "fashion-pipeline/coco-range/1", "bucket": "b"}, "body.range.key"),
])
def test_a_body_of_no_shape_is_refused_naming_the_reason(body, names):
    with pytest.raises(ValidationError) as refused:
        record(body)
    assert names in str(refused.value)


def test_a_refused_body_fails_its_record_and_the_log_says_why(aws, caplog):
    """Can never succeed, so SQS delivers it maxReceiveCount times, then keeps it in the DLQ."""
    event = sqs_event({"hello": "world"}, "not json", {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "t", "Bucket": "b"})
    from converter import handler

    result = handler.handler(event, LambdaContext())
    assert {f["itemIdentifier"] for f in result["batchItemFailures"]} == {r["messageId"] for r in event["Records"][:2]}
    refused = [r for r in caplog.records if str(getattr(r, "error", "")).startswith("message body refused")]
    assert {r.message_id for r in refused} == {r["messageId"] for r in event["Records"][:2]}
    assert "unknown_body" in refused[0].error + refused[1].error and "json_invalid" in refused[0].error + refused[1].error
    assert "S3 test event: nothing to convert" in [r.getMessage() for r in caplog.records]


def test_the_events_moto_sends_to_sqs_are_parsed_and_converted(aws, sample_set):
    """A real moto notification (local mode's): no userIdentity, requestParameters,
    responseElements or ownerIdentity; and moto's s3:TestEvent, which has no RequestId/HostId."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="annotations")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws.put_bucket_notification_configuration(Bucket=DATASET_BUCKET, NotificationConfiguration={"QueueConfigurations": [
        {"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]})
    key = "annotations/demo/my photo.json"
    aws.put_object(Bucket=DATASET_BUCKET, Key=key, Body=(sample_set.annotations / sample_set.files[0]).read_bytes())
    aws.delete_object(Bucket=DATASET_BUCKET, Key=key)
    bodies = [m["Body"] for m in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]]
    test_event, created, removed = (record(body).body for body in bodies)
    assert isinstance(test_event, S3TestEvent) and test_event.RequestId is None
    assert created.Records[0].eventName == "ObjectCreated:Put" and created.Records[0].userIdentity is None
    assert removed.Records[0].eventName.startswith("ObjectRemoved")
    with pytest.raises(ValidationError):  # what Powertools' own model says of moto's event
        S3Model.model_validate_json(bodies[1])
    aws.put_object(Bucket=DATASET_BUCKET, Key=key, Body=(sample_set.annotations / sample_set.files[0]).read_bytes())
    assert invoke(*bodies[:2]) == {"batchItemFailures": []}  # the test event is skipped, the object converted
    assert keys(aws, "reports/") == ["reports/demo/my photo.json.json"]
