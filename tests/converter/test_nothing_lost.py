"""Every object under annotations/ ends in a fragment or a report, a removed object takes its
outputs with it, and only AWS's own failures make SQS deliver an event again."""

import json

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from converter import handler, ingest
from converter.ingest import sync_object, target_of, unassigned_report_key
from fashion_pipeline import layout
from fashion_pipeline.layout import MAX_KEY_BYTES, output_keys
from fashion_pipeline.training import check_dataset_name

from .conftest import ARTIFACTS_BUCKET, DATASET_BUCKET, LambdaContext, invoke, s3_event, sqs_event, upload_images


def put(s3, key, body):
    s3.put_object(Bucket=DATASET_BUCKET, Key=key, Body=body)


def keys(s3, prefix=""):
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=ARTIFACTS_BUCKET, Prefix=prefix).get("Contents", []))


def report(s3, key):
    return json.loads(s3.get_object(Bucket=ARTIFACTS_BUCKET, Key=key)["Body"].read())


def only_rejection(s3, key):
    [entry] = report(s3, key)["rejected"]
    return entry


def metric_names(out: str) -> list[str]:
    docs = [json.loads(line) for line in out.splitlines() if '"_aws"' in line]
    return [m["Name"] for doc in docs for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]]


def removed(key):
    return s3_event(key, event="ObjectRemoved:DeleteMarkerCreated")


# --- objects that cannot be read --------------------------------------------------------------


@pytest.mark.parametrize(("name", "body", "reason"), [
    ("empty.zip", b"", "invalid_archive"),
    ("not-a.zip", b"this is not a zip archive", "invalid_archive"),
    ("truncated.zip", b"PK\x03\x04" + b"\0" * 40, "invalid_archive"),
    ("empty.jsonl", b"", "empty_object"),
    ("empty.json", b"", "empty_object"),
])
def test_unreadable_objects_are_reported_once_not_retried(aws, name, body, reason):
    key = f"annotations/demo/{name}"
    put(aws, key, body)
    assert invoke(s3_event(key)) == {"batchItemFailures": []}
    entry = only_rejection(aws, f"reports/demo/{name}.json")
    assert (entry["source"], entry["reason"]) == (key, reason)
    assert "upload" in entry["detail"]
    assert aws.get_object(Bucket=ARTIFACTS_BUCKET, Key=f"fragments/demo/{name}.jsonl")["Body"].read() == b""


def test_an_unexpected_failure_on_the_content_is_reported_with_what_was_kept(aws, sample_set, monkeypatch):
    upload_images(aws, sample_set)
    put(aws, "annotations/demo/000001.json", (sample_set.annotations / "000001.json").read_bytes())

    def broken(path, name=None):
        raise UnicodeDecodeError("utf-8", b"\xed\xa0\x80", 0, 1, "lone surrogate")

    monkeypatch.setattr(ingest, "open_source", broken)
    assert invoke(s3_event("annotations/demo/000001.json")) == {"batchItemFailures": []}
    entry = only_rejection(aws, "reports/demo/000001.json.json")
    assert entry["reason"] == "conversion_failed" and "UnicodeDecodeError" in entry["detail"] and "after 0 records" in entry["detail"]


# --- keys outside every dataset -----------------------------------------------------------------


def test_a_key_without_a_dataset_folder_is_reported_under_unassigned_and_counted(aws, sample_set, capsys):
    key = "annotations/000001.json"
    put(aws, key, (sample_set.annotations / "000001.json").read_bytes())
    assert invoke(s3_event(key)) == {"batchItemFailures": []}
    assert keys(aws) == ["unassigned/annotations/000001.json.json"]
    written = report(aws, "unassigned/annotations/000001.json.json")
    assert written["source"] == f"s3://{DATASET_BUCKET}/{key}" and written["dataset"] is None and written["rejections"] == {"no_dataset": 1}
    [entry] = written["rejected"]
    assert entry["reason"] == "no_dataset" and "annotations/<dataset>/000001.json" in entry["detail"]
    assert "ObjectsUnassigned" in metric_names(capsys.readouterr().out)


def test_a_folder_train_would_refuse_is_reported_with_the_rule_and_a_valid_name(aws, sample_set, capsys):
    key = "annotations/My Data/part 1/000001.json"
    with pytest.raises(Exception):
        check_dataset_name("My Data")
    put(aws, key, (sample_set.annotations / "000001.json").read_bytes())
    assert invoke(s3_event(key)) == {"batchItemFailures": []}
    assert keys(aws) == [f"unassigned/{key}.json"]  # nothing converted for "My Data"
    entry = only_rejection(aws, f"unassigned/{key}.json")
    assert entry["reason"] == "invalid_dataset_name"
    assert "1-64 letters, digits" in entry["detail"] and "train --dataset" in entry["detail"]
    assert "annotations/My_Data/part 1/000001.json" in entry["detail"]
    assert "ObjectsUnassigned" in metric_names(capsys.readouterr().out)


def test_the_unassigned_layout_cannot_collide_with_a_dataset(aws):
    # "_unassigned" and "unassigned" are valid dataset names: their reports stay under reports/.
    for dataset in ("_unassigned", "unassigned"):
        check_dataset_name(dataset)
        fragment, report_key = output_keys(dataset, "x.json")
        assert report_key.startswith("reports/") and not report_key.startswith(layout.UNASSIGNED_PREFIX)
    assert unassigned_report_key("annotations/x.json") == "unassigned/annotations/x.json.json"
    assert not layout.UNASSIGNED_PREFIX.startswith((layout.REPORTS_PREFIX, layout.FRAGMENTS_PREFIX))


def test_folder_placeholders_and_other_prefixes_are_not_annotation_objects(aws):
    put(aws, "annotations/demo/", b"")  # the S3 console's "Create folder"
    put(aws, "annotations/My Data/", b"")
    assert target_of("annotations/demo/") is None and target_of("images/demo/x.json") is None
    assert invoke(s3_event("annotations/demo/"), s3_event("annotations/My Data/")) == {"batchItemFailures": []}
    assert keys(aws) == []


def test_output_keys_stay_within_s3s_key_limit(aws):
    long_path = "deep/" * 150 + "é" * 100 + ".json"  # 950 bytes of path: its outputs would not fit
    fragment, report_key = output_keys("demo", long_path)
    other_fragment, _ = output_keys("demo", long_path.replace("deep", "Deep", 1))
    assert max(len(fragment.encode()), len(report_key.encode())) <= MAX_KEY_BYTES and fragment != other_fragment
    assert fragment.startswith("fragments/demo/deep/") and fragment.endswith(".jsonl")
    assert report_key == "reports/" + fragment[len("fragments/"):-len(".jsonl")] + ".json"  # found from the fragment
    assert len(unassigned_report_key("annotations/" + long_path).encode()) <= MAX_KEY_BYTES
    assert output_keys("demo", "a.json") == ("fragments/demo/a.json.jsonl", "reports/demo/a.json.json")


# --- removal and reordering -----------------------------------------------------------------------


def converted(s3, sample_set, name="000001.json", dataset="demo"):
    upload_images(s3, sample_set, dataset)
    key = f"annotations/{dataset}/{name}"
    put(s3, key, (sample_set.annotations / name).read_bytes())
    assert invoke(s3_event(key)) == {"batchItemFailures": []}
    assert keys(s3) == [f"fragments/{dataset}/{name}.jsonl", f"reports/{dataset}/{name}.json"]
    return key


def test_object_removed_removes_its_fragment_and_report(aws, sample_set, capsys):
    key = converted(aws, sample_set)
    aws.delete_object(Bucket=DATASET_BUCKET, Key=key)
    assert invoke(removed(key)) == {"batchItemFailures": []}
    assert keys(aws) == []
    assert "ObjectsRemoved" in metric_names(capsys.readouterr().out)
    assert invoke(removed(key)) == {"batchItemFailures": []}  # a duplicate: nothing left to do


def test_object_removed_removes_an_unassigned_report(aws):
    put(aws, "annotations/loose.json", b"{}")
    invoke(s3_event("annotations/loose.json"))
    assert keys(aws) == ["unassigned/annotations/loose.json.json"]
    aws.delete_object(Bucket=DATASET_BUCKET, Key="annotations/loose.json")
    assert invoke(removed("annotations/loose.json")) == {"batchItemFailures": []}
    assert keys(aws) == []


def test_a_late_object_removed_does_not_delete_what_a_new_upload_made(aws, sample_set):
    key = converted(aws, sample_set)
    aws.delete_object(Bucket=DATASET_BUCKET, Key=key)
    put(aws, key, (sample_set.annotations / "000002.json").read_bytes())  # uploaded again under the same key
    invoke(s3_event(key))
    fragment = aws.get_object(Bucket=ARTIFACTS_BUCKET, Key="fragments/demo/000001.json.jsonl")["Body"].read()
    assert invoke(removed(key)) == {"batchItemFailures": []}  # the first deletion's event, delivered last
    assert aws.get_object(Bucket=ARTIFACTS_BUCKET, Key="fragments/demo/000001.json.jsonl")["Body"].read() == fragment
    assert report(aws, "reports/demo/000001.json.json")["records"] == 1


def test_a_late_object_created_for_a_deleted_object_writes_nothing_and_removes(aws, sample_set):
    key = converted(aws, sample_set)
    aws.delete_object(Bucket=DATASET_BUCKET, Key=key)
    assert invoke(s3_event(key)) == {"batchItemFailures": []}  # created, then deleted: events arrive late
    assert keys(aws) == []
    put(aws, "annotations/demo/never-seen.json", b"{}")
    aws.delete_object(Bucket=DATASET_BUCKET, Key="annotations/demo/never-seen.json")
    assert invoke(s3_event("annotations/demo/never-seen.json")) == {"batchItemFailures": []}
    assert keys(aws) == []


def test_an_object_deleted_while_it_is_converted_leaves_no_outputs(aws, sample_set, monkeypatch):
    upload_images(aws, sample_set)
    key = "annotations/demo/000001.json"
    put(aws, key, (sample_set.annotations / "000001.json").read_bytes())
    original = ingest.convert_object

    def convert_then_delete(*args, **kwargs):
        result = original(*args, **kwargs)  # outputs written ...
        aws.delete_object(Bucket=DATASET_BUCKET, Key=key)  # ... and the ObjectRemoved handled before they landed
        return result

    monkeypatch.setattr(ingest, "convert_object", convert_then_delete)
    result = sync_object(aws, bucket=DATASET_BUCKET, key=key, artifacts_bucket=ARTIFACTS_BUCKET)
    assert result.outcome == "removed" and keys(aws) == []


def test_an_object_replaced_while_it_is_converted_ends_with_the_new_content(aws, sample_set, monkeypatch):
    upload_images(aws, sample_set)
    key = "annotations/demo/000001.json"
    put(aws, key, (sample_set.annotations / "000001.json").read_bytes())
    original = ingest.convert_object
    calls = []

    def convert_then_replace(*args, **kwargs):
        result = original(*args, **kwargs)
        if not calls:
            put(aws, key, (sample_set.annotations / "000002.json").read_bytes())
        calls.append(result.source)
        return result

    monkeypatch.setattr(ingest, "convert_object", convert_then_replace)
    result = sync_object(aws, bucket=DATASET_BUCKET, key=key, artifacts_bucket=ARTIFACTS_BUCKET)
    assert len(calls) == 2 and calls[0] != calls[1] and result.source == calls[1]
    assert report(aws, "reports/demo/000001.json.json")["source_etag"] == aws.head_object(Bucket=DATASET_BUCKET, Key=key)["ETag"].strip('"')


def test_an_object_that_never_settles_is_retried_through_the_queue(aws, monkeypatch):
    put(aws, "annotations/demo/a.json", b"{}")
    original = ingest.convert_object
    passes = []

    def convert_then_replace(*args, **kwargs):
        result = original(*args, **kwargs)
        passes.append(result)
        put(aws, "annotations/demo/a.json", b"{" + b" " * len(passes) + b"}")  # a new version every time
        return result

    monkeypatch.setattr(ingest, "convert_object", convert_then_replace)
    event = sqs_event(s3_event("annotations/demo/a.json"))
    result = handler.handler(event, LambdaContext())
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert len(passes) == ingest.MAX_PASSES


# --- what is retried ------------------------------------------------------------------------------


class FailingS3:
    """The converter's S3 client with one operation failing the way AWS fails."""

    def __init__(self, client, operation, error):
        self._client, self._operation, self._error = client, operation, error

    def __getattr__(self, name):
        if name == self._operation:
            def fail(*args, **kwargs):
                raise self._error
            return fail
        return getattr(self._client, name)


@pytest.mark.parametrize("error", [
    ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "HeadObject"),
    ClientError({"Error": {"Code": "InternalError", "Message": "We encountered an internal error."}, "ResponseMetadata": {"HTTPStatusCode": 500}}, "HeadObject"),
    EndpointConnectionError(endpoint_url="https://s3.us-east-1.amazonaws.com"),
], ids=["throttled", "internal-error", "connection"])
def test_aws_failures_fail_the_record_and_say_why(aws, sample_set, monkeypatch, caplog, error):
    put(aws, "annotations/demo/000001.json", (sample_set.annotations / "000001.json").read_bytes())
    import boto3

    monkeypatch.setattr(handler, "s3_client", lambda: FailingS3(boto3.client("s3", region_name="us-east-1"), "head_object", error))
    event = sqs_event(s3_event("annotations/demo/000001.json"))
    with caplog.at_level("WARNING"):
        result = handler.handler(event, LambdaContext())
    message_id = event["Records"][0]["messageId"]
    assert result == {"batchItemFailures": [{"itemIdentifier": message_id}]}
    assert keys(aws) == []  # nothing half-written
    [failure] = [r for r in caplog.records if getattr(r, "message_id", None) == message_id]
    assert failure.error.startswith(type(error).__name__) and failure.receive_count == "1"


def test_throttled_image_probes_fail_the_record_and_bad_content_never_does(aws, sample_set, monkeypatch):
    upload_images(aws, sample_set)
    put(aws, "annotations/demo/000001.json", (sample_set.annotations / "000001.json").read_bytes())
    put(aws, "annotations/demo/bad.zip", b"not a zip")
    import boto3

    throttled = ClientError({"Error": {"Code": "SlowDown", "Message": "Slow Down"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject")
    monkeypatch.setattr(handler, "s3_client", lambda: FailingS3(boto3.client("s3", region_name="us-east-1"), "get_object", throttled))
    event = sqs_event(s3_event("annotations/demo/000001.json"), s3_event("annotations/demo/bad.zip"))
    result = handler.handler(event, LambdaContext())
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert only_rejection(aws, "reports/demo/bad.zip.json")["reason"] == "invalid_archive"
