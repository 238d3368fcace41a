"""A COCO file too large for one invocation is converted in ranges, one SQS message each.

The threshold is lowered to 10 images (``handler.LIMITS``), so that a 25-image file makes three
parts; the messages go to a moto queue, and ``drain`` delivers them to the handler as the event
source mapping would.
"""

from __future__ import annotations

import io
import json
from unittest.mock import ANY

import boto3
import pytest
from PIL import Image

from converter import handler, ingest
from converter.ingest import RANGE_MESSAGE, Limits
from fashion_pipeline.labels import LabelCatalogue
from fashion_pipeline.layout import output_keys, part_of, report_key_of
from fashion_pipeline.records import Record
from workflow.assembly import assemble_in_process

from .conftest import ARTIFACTS_BUCKET, DATASET_BUCKET, invoke, s3_event

KEY = "annotations/demo/coco.json"
PARTS = [output_keys("demo", "coco.json", part, 3) for part in (1, 2, 3)]


@pytest.fixture
def queue(aws, monkeypatch):
    """The converter's own queue (QUEUE_URL), and a threshold of 10 images per invocation."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="annotations")["QueueUrl"]
    monkeypatch.setenv("QUEUE_URL", url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setattr(handler, "LIMITS", Limits(images_per_invocation=10))
    handler.sqs_client.cache_clear()
    yield sqs, url
    handler.sqs_client.cache_clear()


def receive(queue) -> list[str]:
    """Every message on the queue (taken off it), in no particular order."""
    sqs, url = queue
    bodies = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        bodies += [m["Body"] for m in messages]
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
    return bodies


def drain(queue) -> int:
    """Deliver the queue's messages to the converter until none is left; how many were."""
    delivered = 0
    while bodies := receive(queue):
        assert invoke(*bodies) == {"batchItemFailures": []}
        delivered += len(bodies)
    return delivered


def _jpeg(index: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (100 + index, 80 + index), (index * 9 % 256, 80, 160)).save(out, "JPEG")
    return out.getvalue()


def put_coco(s3, images: int, *, seed: int = 0, key: str = KEY, bucket: str = DATASET_BUCKET) -> None:
    """A COCO file of ``images`` images, with the faults a report carries: an image that is not
    in the bucket, one annotation of no image, one of an unknown category; its images uploaded."""
    entries, annotations = [], []
    for number in range(1, images + 1):
        name = f"{number + seed:05d}.jpg"
        if number != 4:  # image 4 is missing from the bucket: image_missing, in part 1
            s3.put_object(Bucket=bucket, Key=f"images/demo/{name}", Body=_jpeg(number))
        entries.append({"id": number, "file_name": name, "width": 100 + number, "height": 80 + number})
        for box in range(1 + number % 2):
            annotations.append({"id": len(annotations) + 1, "image_id": number, "category_id": 1 if number != 17 else 99,
                                "bbox": [1 + box, 2, 10, 12], "pair_id": number // 2})
    annotations.append({"id": len(annotations) + 1, "image_id": 10_000, "category_id": 1, "bbox": [0, 0, 5, 5]})
    document = {"images": entries, "annotations": annotations, "categories": [{"id": 1, "name": "short_sleeved_shirt"}]}
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(document).encode())


def artifacts(s3, prefix: str = "") -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=ARTIFACTS_BUCKET, Prefix=prefix)
    return sorted(entry["Key"] for page in pages for entry in page.get("Contents", []))


def body(s3, key: str) -> bytes:
    return s3.get_object(Bucket=ARTIFACTS_BUCKET, Key=key)["Body"].read()


def records(s3, key: str) -> list[Record]:
    return [Record.from_dict(json.loads(line)) for line in body(s3, key).splitlines()]


def test_the_part_keys_sort_in_range_order_and_map_to_their_reports():
    keys = [output_keys("demo", "a/coco.json", part, 12) for part in range(1, 13)]
    assert keys[0] == ("fragments/demo/a/coco.json.part-00001-of-00012.jsonl", "reports/demo/a/coco.json.part-00001-of-00012.json")
    assert [f for f, _ in keys] == sorted(f for f, _ in keys) and [r for _, r in keys] == sorted(r for _, r in keys)
    assert all(report_key_of(f) == r and part_of(f) == part_of(r) == (i, 12) for i, (f, r) in enumerate(keys, start=1))
    assert part_of("fragments/demo/a/coco.json.jsonl") is None
    mine = output_keys("demo", "a/coco.json.part-b.json", 1, 2)[0]  # another object's part, under a/coco.json's prefix
    assert part_of(mine) == (1, 2) and part_of(mine, "fragments/demo/a/coco.json.part-") is None
    assert part_of(keys[0][0], "fragments/demo/a/coco.json.part-") == (1, 12)
    long = "x" * 1100 + ".json"  # bounded with a digest: every part keeps one stem and fits S3's 1,024 bytes
    first, last = output_keys("demo", long, 1, 2)[0], output_keys("demo", long, 2, 2)[0]
    assert len(first.encode()) <= 1024 and first[: -len(".part-00001-of-00002.jsonl")] == last[: -len(".part-00002-of-00002.jsonl")]


def test_up_to_the_threshold_one_object_converts_whole(aws, queue):
    put_coco(aws, 10)
    assert invoke(s3_event(KEY)) == {"batchItemFailures": []}
    assert receive(queue) == []
    assert artifacts(aws) == ["fragments/demo/coco.json.jsonl", "reports/demo/coco.json.json"]


def test_above_the_threshold_range_0_converts_part_1_and_queues_the_others(aws, queue):
    put_coco(aws, 25)
    assert invoke(s3_event(KEY)) == {"batchItemFailures": []}
    assert artifacts(aws) == sorted(PARTS[0])  # nothing of the unsplit layout
    head = aws.head_object(Bucket=DATASET_BUCKET, Key=KEY)
    messages = sorted((json.loads(b) for b in receive(queue)), key=lambda m: m["part"])
    assert messages == [
        {"kind": RANGE_MESSAGE, "bucket": DATASET_BUCKET, "key": KEY, "versionId": None, "eTag": head["ETag"].strip('"'),
         "lastModified": head["LastModified"].isoformat(), "start": start, "stop": stop, "part": part, "parts": 3}
        for part, start, stop in ((2, 10, 20), (3, 20, 25))
    ]
    first = json.loads(body(aws, PARTS[0][1]))
    assert first["part"] == {"index": 1, "of": 3, "images": [0, 10]}
    # Part 1 holds the file-level rejections (the orphan annotation) and its range's own.
    assert first["rejections"] == {"image_missing": 1, "orphan_annotation": 1}
    assert len(records(aws, PARTS[0][0])) == 9


def test_each_range_message_writes_its_part_and_duplicates_rewrite_the_same_keys(aws, queue):
    put_coco(aws, 25)
    invoke(s3_event(KEY))
    bodies = receive(queue)
    assert invoke(*bodies, *bodies) == {"batchItemFailures": []}  # each delivered twice
    assert artifacts(aws) == sorted(k for part in PARTS for k in part)
    assert [len(records(aws, fragment)) for fragment, _ in PARTS] == [9, 10, 5]
    assert json.loads(body(aws, PARTS[1][1]))["rejections"] == {"unknown_category": 2}  # image 17's two boxes
    names = [r.image_name for fragment, _ in PARTS for r in records(aws, fragment)]
    assert names == sorted(names) and len(set(names)) == 24


def test_a_message_for_an_upload_replaced_or_removed_since_writes_nothing(aws, queue):
    aws.put_bucket_versioning(Bucket=DATASET_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    put_coco(aws, 25)
    invoke(s3_event(KEY))
    old = receive(queue)
    assert json.loads(old[0])["versionId"]  # planned for that version
    put_coco(aws, 25, seed=100)  # the same key uploaded again: its own event converts it
    assert invoke(*old) == {"batchItemFailures": []}
    assert artifacts(aws) == sorted(PARTS[0])
    aws.delete_object(Bucket=DATASET_BUCKET, Key=KEY)  # and removed: a delete marker
    assert invoke(*old) == {"batchItemFailures": []}
    assert artifacts(aws) == sorted(PARTS[0]) and receive(queue) == []


def test_a_range_written_while_the_object_changes_converts_the_key_again(aws, queue, monkeypatch):
    put_coco(aws, 25)
    invoke(s3_event(KEY))
    bodies = receive(queue)
    original = ingest.convert_object

    def convert_then_replace(*args, **kwargs):
        result = original(*args, **kwargs)
        put_coco(aws, 12, seed=200)  # a newer upload lands after the range was read
        return result

    monkeypatch.setattr(ingest, "convert_object", convert_then_replace)
    assert invoke(bodies[0]) == {"batchItemFailures": []}
    monkeypatch.setattr(ingest, "convert_object", original)
    [again] = [json.loads(b) for b in receive(queue)]
    assert again["Records"][0]["s3"]["object"]["key"] == KEY  # an S3-style event: converted from scratch
    invoke(again)
    drain(queue)
    two = [output_keys("demo", "coco.json", part, 2) for part in (1, 2)]
    assert artifacts(aws) == sorted(k for part in two for k in part)
    assert {r.image_name for fragment, _ in two for r in records(aws, fragment)} == {f"{n + 200:05d}.jpg" for n in range(1, 13) if n != 4}


def test_an_upload_with_fewer_images_removes_the_parts_it_does_not_produce(aws, queue):
    put_coco(aws, 25)
    invoke(s3_event(KEY))
    drain(queue)
    put_coco(aws, 15, seed=300)
    invoke(s3_event(KEY))
    drain(queue)
    two = [output_keys("demo", "coco.json", part, 2) for part in (1, 2)]
    assert artifacts(aws) == sorted(k for part in two for k in part)
    put_coco(aws, 5, seed=400)  # small enough for one invocation: the unsplit layout again
    invoke(s3_event(KEY))
    assert receive(queue) == []
    assert artifacts(aws) == ["fragments/demo/coco.json.jsonl", "reports/demo/coco.json.json"]
    put_coco(aws, 25, seed=500)  # and split again: the unsplit outputs go
    invoke(s3_event(KEY))
    drain(queue)
    assert artifacts(aws) == sorted(k for part in PARTS for k in part)


def test_removing_the_object_removes_every_part(aws, queue):
    put_coco(aws, 25)
    put_coco(aws, 25, key="annotations/demo/coco.json.part-of-mine.json")  # shares the prefix, not a part
    invoke(s3_event(KEY), s3_event("annotations/demo/coco.json.part-of-mine.json"))
    drain(queue)
    aws.put_object(Bucket=ARTIFACTS_BUCKET, Key=output_keys("demo", "coco.json", 2, 7)[1], Body=b"{}")  # a report left alone
    others = artifacts(aws, "fragments/demo/coco.json.part-of-mine") + artifacts(aws, "reports/demo/coco.json.part-of-mine")
    assert len(others) == 6
    aws.delete_object(Bucket=DATASET_BUCKET, Key=KEY)
    assert invoke(s3_event(KEY, event="ObjectRemoved:Delete")) == {"batchItemFailures": []}
    assert artifacts(aws) == others


def test_a_range_that_fails_on_its_content_is_reported_and_aws_errors_are_retried(aws, queue, monkeypatch):
    put_coco(aws, 25)
    invoke(s3_event(KEY))
    bodies = sorted(receive(queue), key=lambda b: json.loads(b)["part"])
    original = ingest.convert_annotation

    def failing(annotation, *args, **kwargs):
        if annotation.image == "00015.jpg":
            raise ValueError("a value nobody expected")
        return original(annotation, *args, **kwargs)

    monkeypatch.setattr(ingest, "convert_annotation", failing)
    assert invoke(bodies[0]) == {"batchItemFailures": []}
    report = json.loads(body(aws, PARTS[1][1]))
    assert report["rejections"] == {"conversion_failed": 1} and "a value nobody expected" in report["rejected"][0]["detail"]
    assert len(records(aws, PARTS[1][0])) == 4  # what came before the failure stays
    monkeypatch.setenv("ARTIFACTS_BUCKET", "no-such-bucket")  # an AWS error: the record fails, SQS retries it
    result = invoke(bodies[1])
    assert len(result["batchItemFailures"]) == 1


def test_a_malformed_range_message_fails_its_record(aws, queue):
    put_coco(aws, 25)
    invoke(s3_event(KEY))
    [message, _] = [json.loads(b) for b in receive(queue)]
    assert invoke({**message, "part": 4}, {**message, "stop": message["start"]})["batchItemFailures"] == [
        {"itemIdentifier": ANY}, {"itemIdentifier": ANY}]
    assert artifacts(aws) == sorted(PARTS[0])


def test_a_key_named_like_a_part_is_reported_not_converted(aws, queue):
    key = "annotations/demo/coco.json.part-00001-of-00002"
    aws.put_object(Bucket=DATASET_BUCKET, Key=key, Body=b"{}")
    assert invoke(s3_event(key)) == {"batchItemFailures": []}
    [report] = artifacts(aws)
    assert report.startswith("unassigned/") and json.loads(body(aws, report))["rejections"] == {"reserved_name": 1}


RUN = dict(dataset="demo", dataset_bucket=DATASET_BUCKET, artifacts_bucket=ARTIFACTS_BUCKET, catalogue=LabelCatalogue(),
           test_fraction=0.3, seed=5, job_name="job")


def _assembled(s3, prefix: str) -> dict[str, bytes]:
    assemble_in_process(s3, batch_size=2, concurrency=2, prefix=prefix, **RUN)
    return {name: body(s3, prefix + name) for name in ("train.manifest", "test.manifest", "report.json")}


def test_the_parts_assemble_into_the_bytes_of_the_whole_conversion(aws, queue, monkeypatch):
    put_coco(aws, 25)
    invoke(s3_event(KEY))
    assert drain(queue) == 2
    parts = _assembled(aws, "runs/demo/parts/")
    for key in artifacts(aws, "fragments/") + artifacts(aws, "reports/"):
        aws.delete_object(Bucket=ARTIFACTS_BUCKET, Key=key)
    monkeypatch.setattr(handler, "LIMITS", Limits())  # 25 images: one invocation
    invoke(s3_event(KEY))
    assert artifacts(aws, "fragments/") == ["fragments/demo/coco.json.jsonl"]
    whole = _assembled(aws, "runs/demo/whole/")
    assert parts["train.manifest"] and parts["test.manifest"] and b"orphan_annotation" in parts["report.json"]
    assert parts["train.manifest"] == whole["train.manifest"] and parts["test.manifest"] == whole["test.manifest"]
    # The one difference: the summary counts fragments read, 3 parts against 1 object.
    assert json.loads(parts["report.json"])["summary"]["fragments"] == 3
    assert parts["report.json"].replace(b'"fragments": 3', b'"fragments": 1', 1) == whole["report.json"]


def test_the_deployed_role_may_list_parts_and_send_ranges(synthesized, monkeypatch):
    """The converter as deployed (its synthesized role, IAM enforced, the versioned bucket):
    range 0 lists and deletes parts and sends to its own queue, each range reads the object."""
    from tests.workflow.conftest import harness_for

    from .test_converter_role import deliver, outputs

    monkeypatch.setattr(handler, "LIMITS", Limits(images_per_invocation=10))
    handler.sqs_client.cache_clear()
    with harness_for(synthesized.template_dict) as harness:
        s3, sqs = harness.s3, harness.session.client("sqs")
        put_coco(s3, 25, bucket=harness.dataset_bucket)
        from fashion_pipeline.s3_events import s3_notification

        assert deliver(harness, s3_notification(harness.dataset_bucket, KEY)) == {"batchItemFailures": []}
        [url] = [u for u in sqs.list_queues()["QueueUrls"] if "IngestionQueue" in u]
        bodies = receive((sqs, url))
        assert sorted(json.loads(b)["part"] for b in bodies) == [2, 3]
        assert deliver(harness, *map(json.loads, bodies)) == {"batchItemFailures": []}
        assert outputs(harness) == sorted(k for part in PARTS for k in part)
        s3.delete_object(Bucket=harness.dataset_bucket, Key=KEY)
        removed = s3_notification(harness.dataset_bucket, KEY, event_name="ObjectRemoved:DeleteMarkerCreated")
        assert deliver(harness, removed) == {"batchItemFailures": []}
        assert outputs(harness) == []
    handler.sqs_client.cache_clear()
