import io
import json
import zipfile

import pytest
from PIL import Image

from converter import handler
from converter.ingest import Limits, convert_object
from converter.s3 import RequestLog, S3ImageStore
from fashion_pipeline.images import FIRST_READ
from fashion_pipeline.records import Record
from fashion_pipeline_tools.sample import add_app_segments, to_coco

from .conftest import ARTIFACTS_BUCKET, DATASET_BUCKET, LambdaContext, invoke, s3_event, sqs_event, upload_images


def fragment(s3, key):
    body = s3.get_object(Bucket=ARTIFACTS_BUCKET, Key=key)["Body"].read().decode()
    return [Record.from_dict(json.loads(line)) for line in body.splitlines()]


def report(s3, key):
    return json.loads(s3.get_object(Bucket=ARTIFACTS_BUCKET, Key=key)["Body"].read())


def keys(s3, prefix):
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=ARTIFACTS_BUCKET, Prefix=prefix).get("Contents", []))


def put(s3, key, body):
    s3.put_object(Bucket=DATASET_BUCKET, Key=key, Body=body)


def test_one_deepfashion2_file(aws, sample_set):
    upload_images(aws, sample_set)
    put(aws, "annotations/demo/000001.json", (sample_set.annotations / "000001.json").read_bytes())
    assert invoke(s3_event("annotations/demo/000001.json")) == {"batchItemFailures": []}
    [record] = fragment(aws, "fragments/demo/000001.json.jsonl")
    assert record.image_uri == f"s3://{DATASET_BUCKET}/images/demo/000001.jpg"
    truth = json.loads((sample_set.annotations / "000001.json").read_text())
    assert record.pair_id == str(truth["pair_id"])
    assert [b.left for b in record.boxes] == [truth[k]["bounding_box"][0] for k in sorted(k for k in truth if k.startswith("item"))]
    assert report(aws, "reports/demo/000001.json.json")["records"] == 1


def test_zip_coco_and_jsonl_objects(aws, sample_set, tmp_path):
    upload_images(aws, sample_set)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for name in sample_set.files:
            zf.write(sample_set.annotations / name, name)
    put(aws, "annotations/demo/batch.zip", archive.getvalue())
    put(aws, "annotations/demo/coco.json", json.dumps(to_coco(sample_set)).encode())
    lines = []
    for name in sample_set.files[:4]:
        record = json.loads((sample_set.annotations / name).read_text())
        lines.append(json.dumps({**record, "image": name[:-5]}))
    put(aws, "annotations/demo/batch.jsonl", ("\n".join(lines) + "\n").encode())
    result = invoke(s3_event("annotations/demo/batch.zip"), s3_event("annotations/demo/coco.json"), s3_event("annotations/demo/batch.jsonl"))
    assert result == {"batchItemFailures": []}
    # Records with too many boxes or none left are judged at assembly, after the label mapping;
    # the image with one dropped box survives too.
    good = len(sample_set.files) - len(sample_set.defects) + 3
    zipped = fragment(aws, "fragments/demo/batch.zip.jsonl")
    coco = fragment(aws, "fragments/demo/coco.json.jsonl")
    assert len(zipped) == good
    assert [(r.image_uri, r.boxes) for r in coco] == [(r.image_uri, r.boxes) for r in zipped]
    assert len(fragment(aws, "fragments/demo/batch.jsonl.jsonl")) == 4
    rejected = report(aws, "reports/demo/batch.zip.json")["rejected"]
    for name, reason in sample_set.defects.items():
        if reason in ("too_many_boxes", "no_valid_boxes"):
            continue  # decided at assembly, after the label mapping
        assert any(r["source"] == f"annotations/demo/batch.zip/{name}" and r["reason"] == reason for r in rejected), name


def test_duplicate_delivery_rewrites_the_same_objects(aws, sample_set):
    upload_images(aws, sample_set)
    put(aws, "annotations/demo/000002.json", (sample_set.annotations / "000002.json").read_bytes())
    event = s3_event("annotations/demo/000002.json")
    invoke(event, event)
    first = aws.get_object(Bucket=ARTIFACTS_BUCKET, Key="fragments/demo/000002.json.jsonl")["Body"].read()
    invoke(event)
    assert keys(aws, "fragments/") == ["fragments/demo/000002.json.jsonl"]
    assert aws.get_object(Bucket=ARTIFACTS_BUCKET, Key="fragments/demo/000002.json.jsonl")["Body"].read() == first
    assert len(first.splitlines()) == 1


def test_url_encoded_key(aws, sample_set):
    upload_images(aws, sample_set)
    key = "annotations/demo/my photos/a+b.json"
    put(aws, key, (sample_set.annotations / "000003.json").read_bytes())
    aws.copy_object(Bucket=DATASET_BUCKET, Key="images/demo/a+b.jpg", CopySource={"Bucket": DATASET_BUCKET, "Key": "images/demo/000003.jpg"})
    event = s3_event(key)
    assert event["Records"][0]["s3"]["object"]["key"] == "annotations/demo/my+photos/a%2Bb.json"
    assert invoke(event) == {"batchItemFailures": []}
    [record] = fragment(aws, "fragments/demo/my photos/a+b.json.jsonl")
    assert record.image_uri.endswith("/images/demo/a+b.jpg")


def test_missing_image_and_corrupt_file_are_reported_not_retried(aws, sample_set):
    put(aws, "annotations/demo/000004.json", (sample_set.annotations / "000004.json").read_bytes())  # no image uploaded
    put(aws, "annotations/demo/bad.json", b'{"item1": {')
    assert invoke(s3_event("annotations/demo/000004.json"), s3_event("annotations/demo/bad.json")) == {"batchItemFailures": []}
    [missing] = report(aws, "reports/demo/000004.json.json")["rejected"]
    assert missing["reason"] == "image_missing" and "000004.jpg" in missing["detail"]
    [corrupt] = report(aws, "reports/demo/bad.json.json")["rejected"]
    assert corrupt["reason"] == "invalid_json" and corrupt["source"] == "annotations/demo/bad.json"
    assert fragment(aws, "fragments/demo/bad.json.jsonl") == []


def test_one_failing_record_does_not_fail_the_batch(aws, sample_set):
    upload_images(aws, sample_set)
    put(aws, "annotations/demo/000005.json", (sample_set.annotations / "000005.json").read_bytes())
    event = sqs_event(s3_event("annotations/demo/000005.json"), s3_event("annotations/demo/x.json", bucket="no-such-bucket"), "not json")
    result = handler.handler(event, LambdaContext())
    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    assert failed == {event["Records"][1]["messageId"], event["Records"][2]["messageId"]}
    assert len(fragment(aws, "fragments/demo/000005.json.jsonl")) == 1


def test_s3_test_event_and_other_prefixes_are_ignored(aws):
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-28T00:00:00Z", "Bucket": DATASET_BUCKET}
    put(aws, "elsewhere/x.json", b"{}")
    assert invoke(test_event, s3_event("elsewhere/x.json")) == {"batchItemFailures": []}
    assert keys(aws, "") == []


def test_oversized_object_is_reported_with_advice(aws):
    put(aws, "annotations/demo/huge.json", b"{" + b" " * 2000 + b"}")
    result = convert_object(aws, bucket=DATASET_BUCKET, key="annotations/demo/huge.json", artifacts_bucket=ARTIFACTS_BUCKET, limits=Limits(max_document_bytes=1000))
    [entry] = report(aws, result.report_key)["rejected"]
    assert entry["reason"] == "object_too_large" and "split it into several COCO files" in entry["detail"]


def encode(fmt, size):
    out = io.BytesIO()
    Image.new("RGB", size, "red").save(out, fmt)
    return out.getvalue()


def test_headers_are_probed_with_ranged_gets(aws):
    put(aws, "images/demo/p.png", encode("PNG", (300, 200)))
    far = add_app_segments(encode("JPEG", (640, 480)), 200_000)
    put(aws, "images/demo/far.jpg", far)
    log = RequestLog()
    store = S3ImageStore(aws, DATASET_BUCKET, "images/demo/", log)
    from fashion_pipeline.images import probe

    png = store.open(("p.png",))
    assert (probe(png.read_at)[0].width, png.size) == (300, len(encode("PNG", (300, 200))))
    assert log.ranges == [("images/demo/p.png", f"bytes=0-{FIRST_READ - 1}")]
    jpeg = store.open(("missing.jpg", "far.jpg"))
    info, _ = probe(jpeg.read_at)
    assert (info.width, info.height, jpeg.size) == (640, 480, len(far))
    jpeg_ranges = [r for k, r in log.ranges if k == "images/demo/far.jpg"]
    assert jpeg_ranges[0] == f"bytes=0-{FIRST_READ - 1}"
    starts = [int(r[6:].split("-")[0]) for r in jpeg_ranges]
    assert starts == sorted(starts) and starts[-1] > 190_000  # hopped to the far frame header
    assert all(int(r.split("-")[1]) - int(r[6:].split("-")[0]) < FIRST_READ for r in jpeg_ranges)
    assert log.bytes < 30_000 < len(far)


def test_events_delivered_again_after_the_images_arrive_convert_the_annotations(aws, sample_set):
    """What reprocess relies on (the enqueuing itself is tests/workflow/test_reprocess.py's):
    annotations first, images later; the same notifications sent again convert them in place."""
    names = sample_set.files[:2]
    for name in names:
        put(aws, f"annotations/demo/{name}", (sample_set.annotations / name).read_bytes())
    events = [s3_event(f"annotations/demo/{n}") for n in names]
    invoke(*events)
    assert report(aws, "reports/demo/000001.json.json")["rejected"][0]["reason"] == "image_missing"
    upload_images(aws, sample_set)
    assert invoke(*events) == {"batchItemFailures": []}
    assert report(aws, "reports/demo/000001.json.json")["records"] == 1
    assert keys(aws, "fragments/") == [f"fragments/demo/{n}.jsonl" for n in names]
