"""Assembly spread over a Distributed Map: the same bytes whatever the batching, at per-file scale."""

from __future__ import annotations

import json
import random
import uuid

import boto3
import pytest
from moto import mock_aws

from fashion_pipeline.labels import CATEGORY_NAMES, LabelCatalogue
from fashion_pipeline.manifest import ManifestAssembler, manifest_problems, write_report
from fashion_pipeline.records import Box, Record, Rejection
from fashion_pipeline.s3_events import s3_notification
from fashion_pipeline_tools.local.server import sqs_record
from workflow.assembly import assemble_in_process, merge_shards, write_shard

RUN = dict(dataset="demo", dataset_bucket="data", artifacts_bucket="artifacts", catalogue=LabelCatalogue(), test_fraction=0.2, seed=3, job_name="job")
OUTPUTS = ("train.manifest", "test.manifest", "report.json", "summary.json")


def _records(rng: random.Random, path: str) -> list[Record]:
    """A fragment's records: duplicates across files, images outside the dataset, unknown
    categories and boxless images among them, so every rule of the merge is exercised."""
    categories = [*CATEGORY_NAMES.values(), "unknown_thing"]
    out = []
    for _ in range(rng.choice([1, 1, 1, 3])):
        image = rng.randint(0, 800)
        bucket = "data" if rng.random() > 0.02 else "elsewhere"
        boxes = tuple(Box(rng.choice(categories), 1, 2, rng.randint(5, 300), rng.randint(5, 300)) for _ in range(rng.randint(0, 3)))
        pair = str(rng.randint(0, 200)) if rng.random() > 0.3 else None
        out.append(Record(f"annotations/demo/{path}", f"s3://{bucket}/images/demo/{image}.jpg", 640, 480, 3, pair, boxes, "2024-01-01T00:00:00"))
    return out


@pytest.fixture
def fragments():
    """300 fragments (and most of their reports) in moto S3, as the converter writes them."""
    rng = random.Random(1)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in ("data", "artifacts"):
            s3.create_bucket(Bucket=bucket)
        written: list[tuple[str, list[Record], list[dict] | None]] = []
        for index in range(300):
            path = f"part{rng.randint(0, 5)}/{index:04d}.json"
            records = _records(rng, path)
            s3.put_object(Bucket="artifacts", Key=f"fragments/demo/{path}.jsonl", Body="\n".join(json.dumps(r.to_dict()) for r in records).encode())
            report = None
            if rng.random() > 0.1:  # a fragment whose report is not written yet has none
                report = [Rejection(f"annotations/demo/{path}", "x.jpg", "image_missing", "not found").to_dict() for _ in range(rng.randint(0, 2))]
                s3.put_object(Bucket="artifacts", Key=f"reports/demo/{path}.json", Body=json.dumps({"rejected": report}).encode())
            written.append((path, records, report))
        yield s3, written


def _sequential(written, workdir) -> dict[str, bytes]:
    """What the assembly did before it was distributed: one reader, every fragment in key
    order, then every report in key order, into one ManifestAssembler."""
    prefix = "s3://data/images/demo/"
    outside = 0
    with ManifestAssembler(RUN["catalogue"], test_fraction=RUN["test_fraction"], seed=RUN["seed"], job_name=RUN["job_name"], workdir=workdir) as assembler:
        for path, records, _ in sorted(written, key=lambda w: f"fragments/demo/{w[0]}.jsonl"):
            for record in records:
                if not record.image_uri.startswith(prefix):
                    outside += 1
                    assembler.reject(Rejection(record.source, record.image_name, "image_outside_dataset", f"{record.image_uri} is not under {prefix}"))
                else:
                    assembler.add(record)
        for _, _, report in sorted(written, key=lambda w: f"reports/demo/{w[0]}.json"):
            for entry in report or []:
                assembler.reject(Rejection.from_dict(entry))
        with open(f"{workdir}/train", "w+b") as train, open(f"{workdir}/test", "w+b") as test:
            summary = assembler.finish(train, test)
            train.seek(0), test.seek(0)
            manifests = {"train.manifest": train.read(), "test.manifest": test.read()}
        summary["fragments"] = len(written)
        summary["problems"] = manifest_problems(summary, image_prefix=prefix, outside=outside)
        with open(f"{workdir}/report", "w+", encoding="utf-8") as report_file:
            write_report(report_file, summary, assembler.iter_rejections())
            report_file.seek(0)
            report = report_file.read().encode()
    return {**manifests, "report.json": report, "summary.json": json.dumps(summary, indent=2).encode()}


def _outputs(s3, prefix: str) -> dict[str, bytes]:
    return {name: s3.get_object(Bucket="artifacts", Key=prefix + name)["Body"].read() for name in OUTPUTS}


@pytest.mark.parametrize("batch_size", [3, 7, 1000])
def test_the_merged_manifests_and_report_are_the_sequential_bytes_whatever_the_batch_size(fragments, batch_size, tmp_path):
    s3, written = fragments
    expected = _sequential(written, str(tmp_path))
    assert expected["train.manifest"] and b"image_outside_dataset" in expected["report.json"] and b"duplicate_image" in expected["report.json"]
    prefix = f"runs/demo/{batch_size}/"
    result = assemble_in_process(s3, batch_size=batch_size, concurrency=4, prefix=prefix, **RUN)
    assert result["shards"] == -(-300 // batch_size)
    assert _outputs(s3, prefix) == expected


def test_batches_in_any_order_and_a_stale_shard_of_an_earlier_attempt_change_nothing(fragments, tmp_path):
    s3, written = fragments
    items = s3.list_objects_v2(Bucket="artifacts", Prefix="fragments/demo/")["Contents"]
    random.Random(5).shuffle(items)  # batches that are not ranges of the listing, overlapping in key range
    run = {k: v for k, v in RUN.items() if k != "test_fraction"}
    # An earlier attempt of the Map, with other batch boundaries, left a shard behind.
    write_shard(s3, items=items[5:40], run_prefix="runs/demo/x/", concurrency=3, **run)
    for start in range(0, len(items), 13):
        write_shard(s3, items=items[start : start + 13], run_prefix="runs/demo/x/", concurrency=3, **run)
    merge_shards(s3, prefix="runs/demo/x/", **RUN)
    assert _outputs(s3, "runs/demo/x/") == _sequential(written, str(tmp_path))


def test_an_empty_dataset_has_no_shards_and_says_why(fragments):
    s3, _ = fragments
    result = assemble_in_process(s3, prefix="runs/none/1/", **{**RUN, "dataset": "none"})
    assert result["shards"] == 0 and result["images"] == {"train": 0, "test": 0}
    assert result["problems"][0].startswith("the training manifest is empty")


PER_FILE_IMAGES = 2000
CONVERTED = 100  # of them through the converter; the others are its output copied under new names


def _backend():
    """moto's S3 itself (no request, no IAM): for setting the scene, which is not under test."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]


@pytest.mark.slow
def test_two_thousand_per_file_annotations_are_assembled_by_the_distributed_map(harness, sample):
    """DeepFashion2's layout (one JSON per image) at 2,000 images, read by the Map's children
    (two batches of at most 1,000) and merged, IAM enforced (that any batching gives the same
    bytes is shown above, at unit scale). The first 100 annotations go through
    the converter as its role; 1,900 more fragments and reports are theirs copied under new
    image names (converting all 2,000 in moto would take 80 s; conversion has its own tests)."""
    dataset, s3 = "perfile", harness.s3
    pool = sorted(sample.files)
    converter = harness.pipeline.function("converter.handler.handler")
    records = []
    for index in range(CONVERTED):
        name, stem = pool[index % len(pool)], f"{index:06d}"
        image = next(sample.images.glob(name[:-5] + ".*"))
        s3.put_object(Bucket=harness.dataset_bucket, Key=f"images/{dataset}/{stem}{image.suffix}", Body=image.read_bytes())
        key = f"annotations/{dataset}/{stem}.json"
        annotation = (sample.annotations / name).read_bytes()
        etag = s3.put_object(Bucket=harness.dataset_bucket, Key=key, Body=annotation)["ETag"].strip('"')
        body = s3_notification(harness.dataset_bucket, key, size=len(annotation), etag=etag)
        records.append(sqs_record({"MessageId": uuid.uuid4().hex, "ReceiptHandle": "r", "Body": json.dumps(body)},
                                  "arn:aws:sqs:us-east-1:123456789012:annotations", "us-east-1"))
    assert json.loads(harness.pipeline.runtime.invoke(converter, json.dumps({"Records": records}))) == {"batchItemFailures": []}
    backend = _backend()
    for index in range(CONVERTED, PER_FILE_IMAGES):
        original, stem = f"{index % CONVERTED:06d}", f"{index:06d}"
        for folder, suffix in (("fragments", ".json.jsonl"), ("reports", ".json.json")):
            body = backend.get_object(harness.artifacts_bucket, f"{folder}/{dataset}/{original}{suffix}").value
            backend.put_object(harness.artifacts_bucket, f"{folder}/{dataset}/{stem}{suffix}", body.replace(original.encode(), stem.encode()))
        image = next(sample.images.glob(pool[index % CONVERTED % len(pool)][:-5] + ".*"))
        backend.put_object(harness.dataset_bucket, f"images/{dataset}/{stem}{image.suffix}", image.read_bytes())

    described = harness.wait(harness.start(dataset), timeout=300)
    assert described["status"] == "SUCCEEDED", described.get("cause")
    (prefix,) = {entry["Key"].rsplit("/", 1)[0] + "/" for entry in s3.list_objects_v2(Bucket=harness.artifacts_bucket, Prefix=f"runs/{dataset}/")["Contents"]
                 if entry["Key"].endswith("/summary.json")}
    shards = s3.list_objects_v2(Bucket=harness.artifacts_bucket, Prefix=prefix + "shards/")["Contents"]
    assert len(shards) == 2  # 2,000 fragments in batches of cdk.json's assemblyBatchSize (1,000)
    summary = harness.object(prefix + "summary.json")
    assert summary["annotations_in"] == PER_FILE_IMAGES and summary["fragments"] == PER_FILE_IMAGES
    assert summary["lines_out"] + summary["rejections"]["images"] == PER_FILE_IMAGES
    assert summary["lines_out"] > 0.9 * PER_FILE_IMAGES
    shard_function = harness.pipeline.function("workflow.handler.shard")
    shard_children = [event for name, event in harness.pipeline.runtime.invocations if name == shard_function]
    assert len(shard_children) == 2 and sorted(len(event["Items"]) for event in shard_children) == [1000, 1000]
