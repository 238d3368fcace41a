"""`fashion-pipeline reprocess` at scale: the synthesized Reprocess state machine lists the
dataset's annotations server-side (Distributed Map, S3 ItemReader, ItemBatcher of 500) and its
child Lambdas re-enqueue one notification per object on the converter's queue, IAM enforced."""

from __future__ import annotations

import argparse
import json
import math
from urllib.parse import unquote_plus

import pytest

from fashion_pipeline_tools import cli

OBJECTS = 1200
BATCH = 500  # infrastructure/reprocess.py's BATCH_SIZE


def converter_queue_url(harness) -> str:
    """The queue the converter's event source mapping reads, from the template."""
    template = harness.pipeline.template
    [mapping] = [lid for lid in template.of_type("AWS::Lambda::EventSourceMapping")]
    source = template.properties(mapping)["EventSourceArn"]
    [queue] = [lid for lid in template.of_type("AWS::SQS::Queue") if template.get_att(lid, "Arn") == source]
    return template.ref(queue)


@pytest.fixture
def quick_queues(monkeypatch):
    """moto's SendMessage recomputes every queue attribute, and its ApproximateNumberOf* each
    scan every message on the queue: quadratic, a minute for 1,200 messages. Nothing here
    receives or delays a message, so these counts are exactly the stored messages."""
    from moto.sqs.models import Queue

    monkeypatch.setattr(Queue, "approximate_number_of_messages", property(lambda self: len(self._messages)))
    monkeypatch.setattr(Queue, "approximate_number_of_messages_delayed", property(lambda self: 0))
    monkeypatch.setattr(Queue, "approximate_number_of_messages_not_visible", property(lambda self: 0))


def queued(sqs, queue_url: str) -> list[dict]:
    """Every message on the queue: the count from SQS, the bodies from moto's store (moto's
    ReceiveMessage re-reads the queue's attributes per message: a minute for 1,200)."""
    from moto.sqs.models import sqs_backends

    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    account, name = queue_url.rstrip("/").split("/")[-2:]
    messages = sqs_backends[account]["us-east-1"].queues[name]._messages
    assert int(attributes["ApproximateNumberOfMessages"]) == len(messages)
    return [json.loads(m.body) for m in messages]


def reprocess(harness, monkeypatch, dataset: str) -> int:
    machine = harness.pipeline.state_machine("Reprocess")
    monkeypatch.setattr("fashion_pipeline_tools.aws.stack.stack_outputs", lambda session, name: {"ReprocessStateMachineArn": machine})
    args = argparse.Namespace(dataset=dataset, stack="FashionPipeline", region=None, interval=0.05)
    return cli.reprocess(args, session=harness.session)


def test_reprocess_enqueues_one_message_per_annotation_object_in_batches(harness, monkeypatch, capsys, quick_queues):
    bucket = harness.dataset_bucket
    keys = {f"annotations/demo/part{i % 3}/{i:06d}.json" for i in range(OBJECTS - 1)} | {"annotations/demo/a b+c.json"}
    for key in sorted(keys):
        harness.s3.put_object(Bucket=bucket, Key=key, Body=b"{}")
    harness.s3.put_object(Bucket=bucket, Key="annotations/demo/part0/", Body=b"")  # a folder marker: skipped
    harness.s3.put_object(Bucket=bucket, Key="annotations/demo2/other.json", Body=b"{}")  # another dataset
    queue_url = converter_queue_url(harness)
    sqs = harness.session.client("sqs")
    assert queued(sqs, queue_url) == []  # local provisioning sends nothing on its own

    assert reprocess(harness, monkeypatch, "demo") == 0

    out, err = capsys.readouterr()
    assert f"re-enqueued {OBJECTS} annotation objects of dataset 'demo' in {math.ceil((OBJECTS + 1) / BATCH)} batches" in out
    assert "started arn:aws:states:" in err and "re-enqueued 3/3 (Map Run items)" in err  # moto's items are the batches
    bodies = queued(sqs, queue_url)
    assert len(bodies) == OBJECTS
    records = [body["Records"][0] for body in bodies]
    assert sorted(unquote_plus(r["s3"]["object"]["key"]) for r in records) == sorted(keys)
    assert {r["eventName"] for r in records} == {"ObjectCreated:Reprocess"}
    assert {r["s3"]["bucket"]["name"] for r in records} == {bucket}
    assert all(r["s3"]["object"]["size"] == 2 and r["s3"]["object"]["eTag"] and '"' not in r["s3"]["object"]["eTag"] for r in records)

    function = harness.pipeline.function("workflow.reprocess.handler")
    events = [event for name, event in harness.pipeline.runtime.invocations if name == function]
    events = [json.loads(e) if isinstance(e, (str, bytes)) else e for e in events]
    children = [e for e in events if "Items" in e]
    assert len(children) == math.ceil((OBJECTS + 1) / BATCH) == 3  # the folder marker is an item, not a message
    assert all(len(e["Items"]) <= BATCH and e["BatchInput"] == {"dataset": "demo"} for e in children)

    [execution] = harness.sfn.list_executions(stateMachineArn=harness.pipeline.state_machine("Reprocess"))["executions"]
    output = json.loads(harness.sfn.describe_execution(executionArn=execution["executionArn"])["output"])
    assert output == {"dataset": "demo", "objects": OBJECTS, "batches": 3}


def test_a_dataset_without_annotations_exits_non_zero_with_a_hint(harness, monkeypatch, capsys):
    harness.s3.put_object(Bucket=harness.dataset_bucket, Key="annotations/demo/x.json", Body=b"{}")
    assert reprocess(harness, monkeypatch, "Demo") == 1
    _, err = capsys.readouterr()
    assert "dataset 'Demo' has no object under annotations/Demo/" in err and "aws s3 sync" in err
    assert queued(harness.session.client("sqs"), converter_queue_url(harness)) == []


def test_the_machine_refuses_a_dataset_name_train_would_refuse(harness):
    machine = harness.pipeline.state_machine("Reprocess")
    arn = harness.sfn.start_execution(stateMachineArn=machine, input=json.dumps({"dataset": "My Data"}))["executionArn"]
    described = harness.wait(arn, timeout=10)
    assert described["status"] == "FAILED"
    assert described["error"] == "OptionsError"
    assert "dataset name 'My Data' must be 1-64 letters" in described["cause"]


def test_the_cli_refuses_a_bad_name_before_starting_anything(capsys):
    assert cli.main(["reprocess", "--dataset", "My Data"]) == 2
    assert "--dataset: dataset name 'My Data'" in capsys.readouterr().err


@pytest.mark.parametrize("failures", [1, 4])
def test_a_child_resends_only_the_failed_entries_and_gives_up_after_a_bound(failures):
    from workflow.reprocess import SEND_ATTEMPTS, SendFailed, send_all

    class Queue:
        def __init__(self):
            self.calls = []

        def send_message_batch(self, QueueUrl, Entries):
            self.calls.append([e["Id"] for e in Entries])
            if len(self.calls) <= failures:  # the first entry keeps failing
                return {"Successful": [{"Id": e["Id"]} for e in Entries[1:]], "Failed": [{"Id": Entries[0]["Id"], "Code": "X", "Message": "busy"}]}
            return {"Successful": [{"Id": e["Id"]} for e in Entries]}

    queue = Queue()
    assert send_all(queue, "url", [f"m{i}" for i in range(12)], pause=0) == 12
    assert queue.calls[0] == [str(i) for i in range(10)] and queue.calls[1:failures + 1] == [["0"]] * failures
    assert queue.calls[-1] == ["10", "11"]

    stuck = Queue()
    stuck.send_message_batch = lambda QueueUrl, Entries: {"Failed": [{"Id": e["Id"], "Code": "X", "Message": "busy"} for e in Entries]}
    with pytest.raises(SendFailed, match=f"after {SEND_ATTEMPTS} attempts"):
        send_all(stuck, "url", ["m"], pause=0)
