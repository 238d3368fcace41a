"""The workflow functions' input models, against the payloads the synthesized definitions pass."""

import json

import boto3
import pytest
from moto import mock_aws
from pydantic import TypeAdapter, ValidationError

from workflow.events import (
    AssembleEvent, CheckStep, DirectStart, EvaluateEvent, FinishEvent, PrepareEvent, ReprocessStep, RetireEvent, SendBatchStep,
    ShardEvent, TotalStep,
)
from tests.workflow.conftest import eventbridge_object_created

RUN = {"dataset": "demo", "execution": "arn:aws:states:us-east-1:123456789012:execution:m:run-1", "run_id": "20261202T000000Z-run1",
       "project_name": "fashion-pipeline-demo", "version_name": "demo-20261202T000000Z-run1", "prefix": "runs/demo/20261202T000000Z-run1/",
       "options": {"deploy": False}, "limits": {"training_polls": 3}, "dataset_bucket": "d", "artifacts_bucket": "a"}
ITEM = {"Etag": '"0a1b"', "Key": "fragments/demo/a.json.jsonl", "LastModified": 1764633600, "Size": 10, "StorageClass": "STANDARD"}
VERSION = {"ProjectVersionArn": "arn:aws:rekognition:us-east-1:123456789012:project/p/version/v/1", "Status": "TRAINING_COMPLETED",
           "EvaluationResult": {"F1Score": 0.9, "Summary": {"S3Object": {"Bucket": "a", "Name": "summary.json"}}}}

# (model, what the definition passes, a required field path to drop)
CASES = [
    (PrepareEvent, {"input": {"dataset": "demo", "options": {}}, "execution": RUN["execution"]}, ("execution",)),
    (PrepareEvent, {"input": eventbridge_object_created("d", "requests/demo.json"), "execution": RUN["execution"]},
     ("input", "detail", "object", "key")),
    (ShardEvent, {"Items": [ITEM], "BatchInput": {"run": RUN}}, ("BatchInput", "run", "prefix")),
    (AssembleEvent, {"run": RUN}, ("run", "artifacts_bucket")),
    (EvaluateEvent, {"run": RUN, "version": VERSION}, ("version", "ProjectVersionArn")),
    (RetireEvent, {"run": RUN, "project_arn": "arn:p", "model_arn": VERSION["ProjectVersionArn"]}, ("model_arn",)),
    (FinishEvent, {"outcome": "succeeded", "state": {"dataset": "demo", "run": RUN, "evaluation": {"f1": 0.9, "deploy": True, "reason": "ok"},
                                                     "version": {"ProjectVersionArn": "arn:v"}, "retired": {"stopped": []}}},
     ("state", "evaluation", "deploy")),
    (ReprocessStep, {"check": {"dataset": "demo"}}, ("check",)),
    (ReprocessStep, {"Items": [{**ITEM, "Key": "annotations/demo/a.json"}], "BatchInput": {"dataset": "demo"}}, ("BatchInput", "dataset")),
    (ReprocessStep, {"total": {"dataset": "demo", "batches": [{"sent": 3}, {"sent": 2}]}}, ("total", "batches")),
]


def _without(payload, path):
    copy = json.loads(json.dumps(payload))
    node = copy
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return copy


@pytest.mark.parametrize("model, payload, required", CASES)
def test_each_model_accepts_the_definitions_payload_and_names_a_missing_field(model, payload, required):
    adapter = TypeAdapter(model)
    adapter.validate_python(payload)
    with pytest.raises(ValidationError) as refused:
        adapter.validate_python(_without(payload, required))
    if model is not ReprocessStep or len(required) > 1:  # a step without its key is no step at all
        assert required[-1] in str(refused.value)


def test_optional_members_stay_optional():
    """A run that failed in prepare reaches finish with only the input and the error; a failed
    CreateProjectVersion answer leaves $.version without its ARN."""
    failed = FinishEvent.model_validate({"outcome": "failed", "state": {"dataset": 5, "error": {"Error": "OptionsError", "Cause": "bad"},
                                                                      "version": {}}})
    assert failed.state.run is None and failed.state.dataset == 5 and failed.state.version.ProjectVersionArn is None
    start = PrepareEvent.model_validate({"input": {}, "execution": "e"}).input
    assert isinstance(start, DirectStart) and start.dataset is None  # check_dataset_name refuses it (OptionsError)
    assert TypeAdapter(ReprocessStep).validate_python({"check": {"dataset": 7}}).check.dataset == 7
    assert isinstance(TypeAdapter(ReprocessStep).validate_python({"Items": [], "BatchInput": {"dataset": "d"}}), SendBatchStep)


def test_an_event_of_no_reprocess_step_is_refused():
    with pytest.raises(ValidationError, match="not a Reprocess step"):
        TypeAdapter(ReprocessStep).validate_python({"dataset": "demo"})
    assert isinstance(TypeAdapter(ReprocessStep).validate_python({"check": {"dataset": "d"}}), CheckStep)
    assert isinstance(TypeAdapter(ReprocessStep).validate_python({"total": {"dataset": "d", "batches": []}}), TotalStep)


def test_the_eventbridge_event_moto_sends_for_a_request_upload_is_parsed():
    """Local mode relays moto's S3 -> EventBridge event to StartExecution as it is."""
    with mock_aws():
        s3, events, sqs = (boto3.client(name, region_name="us-east-1") for name in ("s3", "events", "sqs"))
        s3.create_bucket(Bucket="requests-test")
        s3.put_bucket_notification_configuration(Bucket="requests-test", NotificationConfiguration={"EventBridgeConfiguration": {}})
        queue_url = sqs.create_queue(QueueName="relay")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="requests", EventPattern=json.dumps({"source": ["aws.s3"], "detail-type": ["Object Created"]}))
        events.put_targets(Rule="requests", Targets=[{"Id": "relay", "Arn": queue_arn}])
        s3.put_object(Bucket="requests-test", Key="requests/demo.json", Body=b"{}")
        [message] = sqs.receive_message(QueueUrl=queue_url)["Messages"]
    start = PrepareEvent.model_validate({"input": json.loads(message["Body"]), "execution": "e"}).input
    assert (start.detail.bucket.name, start.detail.object.key) == ("requests-test", "requests/demo.json")
