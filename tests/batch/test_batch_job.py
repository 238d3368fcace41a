"""`batch/<job>.json` -> the synthesized BatchDetection machine, end to end in moto with IAM
enforced: every function as its own role, the SDK tasks as the machine's role, DetectCustomLabels
reading each image as the detecting function's role (the emulator checks it)."""

from __future__ import annotations

import argparse
import json
import time

import pytest

from fashion_pipeline.batch import BATCH_SIZE
from tests.batch.conftest import IMAGES, PREFIX

pytestmark = pytest.mark.slow

CORRUPT = PREFIX + "zz-corrupt.jpg"
NOT_IMAGE = PREFIX + "notes.txt"
FOLDER = PREFIX + "empty-folder/"


@pytest.fixture(scope="module")
def images(batch, training_images):
    """IMAGES copies of the training images under PREFIX, a text file, a truncated JPEG and a folder marker."""
    for i in range(IMAGES):
        _, data = training_images[i % len(training_images)]
        batch.s3.put_object(Bucket=batch.dataset_bucket, Key=f"{PREFIX}{i:04d}.jpg" if data[:2] == b"\xff\xd8" else f"{PREFIX}{i:04d}.png", Body=data)
    jpeg = next(data for _, data in training_images if data[:2] == b"\xff\xd8")
    batch.s3.put_object(Bucket=batch.dataset_bucket, Key=CORRUPT, Body=jpeg[: len(jpeg) // 2])
    batch.s3.put_object(Bucket=batch.dataset_bucket, Key=NOT_IMAGE, Body=b"these are not pixels\n")
    batch.s3.put_object(Bucket=batch.dataset_bucket, Key=FOLDER, Body=b"")
    return batch.listed(PREFIX)


def request(dataset="demo", prefix=PREFIX, **options):
    return {"dataset": dataset, "source": f"s3://{{bucket}}/{prefix}", "poll_seconds": 0, "start_timeout_minutes": 1, **options}


def send(batch, job, body, **kwargs):
    if isinstance(body, dict):
        body = {**body, "source": body["source"].replace("{bucket}", batch.dataset_bucket)}
    return batch.request(job, body, **kwargs)


def test_a_running_model_answers_every_listed_object_and_is_left_running(batch, images):
    assert len(images) == IMAGES + 3
    before = batch.model()
    assert before["Status"] == "RUNNING"
    starts = len(batch.h.calls("StartProjectVersion"))

    described = send(batch, "running", request())

    assert described["status"] == "SUCCEEDED", described
    results = batch.results("running")
    assert len(results) == len(images) and sorted(line["key"] for line in results) == sorted(images)
    assert [line["key"] for line in results] == images  # in the order S3 lists them
    errors = {line["key"]: line["error"]["reason"] for line in results if "error" in line}
    assert errors == {CORRUPT: "image_corrupt", NOT_IMAGE: "not_an_image", FOLDER: "not_an_image"}
    detected = [line for line in results if "garments" in line]
    assert len(detected) == IMAGES and all(line["garments"] for line in detected)
    garment = detected[0]["garments"][0]
    assert set(garment) == {"label", "confidence", "box", "pixels"} and set(garment["pixels"]) == {"left", "top", "width", "height"}
    summary = batch.summary("running")
    assert summary["status"] == "succeeded" and summary["listed"] == summary["images"] == len(images)
    assert summary["answered"] == summary["with_garments"] == IMAGES and summary["errors"] == 3
    assert summary["errors_by_reason"] == {"image_corrupt": 1, "not_an_image": 2}
    assert summary["garments"] == sum(len(line["garments"]) for line in detected) == sum(summary["garments_by_label"].values())
    assert summary["model"]["started_by_job"] is False and summary["model"]["stopped_by_job"] is False
    assert summary["estimate"]["images"] == len(images) and summary["duration_seconds"] >= 0
    assert json.loads(described["output"])["images"] == len(images)
    # Left as it was: running, never started or stopped by the job.
    assert batch.model()["Status"] == "RUNNING"
    assert len(batch.h.calls("StartProjectVersion")) == starts and not batch.h.calls("StopProjectVersion")
    detections = batch.h.calls("DetectCustomLabels")
    assert len(detections) == IMAGES + 1  # the corrupt JPEG is refused by Rekognition; the others never leave the header check
    assert all("S3Object" in call["Image"] for call in detections)
    parts = batch.s3.list_objects_v2(Bucket=batch.artifacts_bucket, Prefix="batch/running/parts/")["KeyCount"]
    assert parts == -(-len(images) // BATCH_SIZE)


def test_the_cli_prints_the_estimate_requests_the_job_and_prints_its_summary(batch, images, monkeypatch, capsys):
    from fashion_pipeline_tools import batch_commands

    outputs = {"DatasetBucketName": batch.dataset_bucket, "ArtifactsBucketName": batch.artifacts_bucket,
               "ModelParameterPrefix": "/fashion-pipeline/models", "BatchStateMachineArn": batch.machine}
    monkeypatch.setattr("fashion_pipeline_tools.aws.stack.stack_outputs", lambda session, name: outputs)
    waited = batch_commands.wait_for_summary
    delivered = []

    def deliver_then_wait(s3, bucket, job, etag, *, interval, ended):
        # What EventBridge does between the upload and the first look for the summary.
        [request] = [k for k in batch.listed("batch/") if k == f"batch/{job}.json"]
        delivered.append(batch.deliver(request))
        assert ended() is None  # it succeeded
        return waited(s3, bucket, job, etag, interval=interval, ended=ended)

    monkeypatch.setattr(batch_commands, "wait_for_summary", deliver_then_wait)
    args = argparse.Namespace(source=f"s3://{batch.dataset_bucket}/{PREFIX}00", dataset="demo", job="cli", render=False,
                              min_confidence=90.0, tps_per_unit=4, wait=True, json=False, interval=0.05, stack="FashionPipeline", region=None)
    assert batch_commands.batch_detect(args, session=batch.h.session) == 0
    out = capsys.readouterr().out
    assert "job cli: 100 objects under s3://" in out and "is RUNNING (1 inference unit): the job leaves it running" in out
    assert "estimate: 100 objects at ~4 images/s" in out and "$4 per inference-unit hour" in out
    assert "succeeded in" in out and "100 objects, 100 answered (100 with garments), 0 errors" in out
    assert f"results: s3://{batch.artifacts_bucket}/batch/cli/results.jsonl" in out
    assert out.index("estimate:") < out.index("requested s3://")  # the estimate comes before the job starts
    assert delivered[0]["status"] == "SUCCEEDED"
    assert json.loads(batch.s3.get_object(Bucket=batch.dataset_bucket, Key="batch/cli.json")["Body"].read())["min_confidence"] == 90.0


def test_the_cli_refuses_a_source_outside_images_before_anything_starts(batch, monkeypatch):
    from fashion_pipeline.sources import InputError
    from fashion_pipeline_tools import batch_commands

    outputs = {"DatasetBucketName": batch.dataset_bucket, "ArtifactsBucketName": batch.artifacts_bucket,
               "ModelParameterPrefix": "/fashion-pipeline/models", "BatchStateMachineArn": batch.machine}
    monkeypatch.setattr("fashion_pipeline_tools.aws.stack.stack_outputs", lambda session, name: outputs)
    args = argparse.Namespace(source=f"s3://{batch.dataset_bucket}/annotations/demo/", dataset="demo", job="outside-cli", render=False,
                              min_confidence=None, tps_per_unit=4, wait=False, json=False, interval=1, stack="FashionPipeline", region=None)
    with pytest.raises(InputError, match="reads only the dataset bucket's images/ prefix"):
        batch_commands.batch_detect(args, session=batch.h.session)
    assert "batch/outside-cli.json" not in batch.listed("batch/")


def test_a_stopped_model_is_started_for_the_job_and_stopped_after_it(batch, images):
    batch.stop_model()
    starts, stops = len(batch.h.calls("StartProjectVersion")), len(batch.h.calls("StopProjectVersion"))

    described = send(batch, "stopped", request(prefix=PREFIX + "000", render=True))

    assert described["status"] == "SUCCEEDED", described
    [start] = batch.h.calls("StartProjectVersion")[starts:]
    assert start["MinInferenceUnits"] == 1
    assert len(batch.h.calls("StopProjectVersion")) == stops + 1
    assert batch.model()["Status"] in ("STOPPING", "STOPPED")
    summary = batch.summary("stopped")
    assert summary["model"]["started_by_job"] is True and summary["model"]["stopped_by_job"] is True
    assert summary["images"] == 10 and summary["errors"] == 0
    rendered = [line["rendered"] for line in batch.results("stopped")]
    assert len(rendered) == 10 and all(key.startswith("batch/stopped/rendered/images/demo/batch/000") for key in rendered)
    head = batch.s3.get_object(Bucket=batch.artifacts_bucket, Key=rendered[0])["Body"].read(8)
    assert head == b"\x89PNG\r\n\x1a\n"


def test_a_job_that_fails_stops_the_model_it_started(batch, images):
    assert batch.model()["Status"] == "STOPPED" or batch.stop_model() is None
    batch.h.pipeline.custom_labels.inject_error("DetectCustomLabels", "AccessDeniedException", "denied by the test", times=1000)
    calls = len(batch.h.pipeline.custom_labels.calls)
    try:
        described = send(batch, "fails", request(prefix=PREFIX + "001"))
        lifecycle = [op for op, _ in batch.h.pipeline.custom_labels.calls[calls:] if op in ("StartProjectVersion", "StopProjectVersion")]
    finally:
        batch.h.pipeline.custom_labels.reset()  # the pending faults (and the call log) go
        batch.h.pipeline.custom_labels.settings(dataset_ticks=1, training_ticks=2, start_ticks=1, stop_ticks=1)
    assert described["status"] == "FAILED" and described["error"] == "BatchJobFailed", described
    # As on AWS, a child that fails fails the Map (no failure is tolerated), and the job.
    assert "States.ExceedToleratedFailureThreshold" in described["cause"]
    assert lifecycle == ["StartProjectVersion", "StopProjectVersion"]
    summary = batch.summary("fails")
    assert summary["status"] == "failed" and "States.ExceedToleratedFailureThreshold" in summary["reason"]
    assert summary["model"]["started_by_job"] is True and summary["model"]["stopped_by_job"] is True


def test_a_model_someone_else_is_starting_is_waited_for_and_left_running(batch, images):
    batch.settle("STOPPED")  # the failed job stopped it
    batch.rekognition.start_project_version(ProjectVersionArn=batch.model()["ProjectVersionArn"], MinInferenceUnits=1)
    calls = len(batch.h.pipeline.custom_labels.calls)

    described = send(batch, "starting", request(prefix=PREFIX + "002"))

    assert described["status"] == "SUCCEEDED", described
    summary = batch.summary("starting")
    assert summary["model"]["status_at_start"] == "STARTING" and summary["model"]["started_by_job"] is False
    assert summary["images"] == summary["answered"] == 10
    lifecycle = [op for op, _ in batch.h.pipeline.custom_labels.calls[calls:] if op in ("StartProjectVersion", "StopProjectVersion")]
    assert lifecycle == [] and batch.model()["Status"] == "RUNNING"


def test_throttling_is_retried_by_the_child_and_every_image_still_answered(batch, images):
    assert batch.model()["Status"] == "RUNNING"
    batch.h.pipeline.custom_labels.inject_error("DetectCustomLabels", "ProvisionedThroughputExceededException",
                                                "Provisioned rate exceeded", times=3)
    described = send(batch, "throttled", request(prefix=PREFIX + "003"))
    assert described["status"] == "SUCCEEDED", described
    summary = batch.summary("throttled")
    assert summary["images"] == summary["answered"] == 10 and summary["errors"] == 0
    assert len(batch.h.calls("DetectCustomLabels")) >= 10 + 3


@pytest.mark.parametrize(("job", "body", "code", "said"), [
    ("badjson", b"{not json", "invalid_request", "not valid JSON"),
    ("nomodel", request(dataset="nomodel"), "no_model", "dataset 'nomodel' has no model"),
    ("outside", {"dataset": "demo", "source": "s3://{bucket}/annotations/demo/"}, "source_outside_images", "outside s3://"),
    ("unknown", request(colour="red"), "invalid_request", "unknown field(s) colour"),
    ("Bad Name", request(), "invalid_job_name", "job name 'Bad Name' must be"),
])
def test_a_bad_job_ends_with_a_summary_saying_why(batch, job, body, code, said):
    calls = len(batch.h.pipeline.custom_labels.calls)
    described = send(batch, job, body)
    assert described["status"] == "FAILED" and described["error"] == "BatchJobRefused", described
    assert said in described["cause"]
    summary = batch.summary(job)
    assert summary["status"] == "refused" and summary["reason_code"] == code and said in summary["reason"]
    assert f"batch/{job}.json" in summary["reason"]  # the file it is about
    started = [op for op, _ in batch.h.pipeline.custom_labels.calls[calls:] if op in ("StartProjectVersion", "DetectCustomLabels")]
    assert not started


def test_a_key_below_a_job_folder_is_no_job(batch):
    described = send(batch, None, request(), key="batch/sub/deeper.json")
    assert described["status"] == "SUCCEEDED" and json.loads(described["output"])["job"]["action"] == "ignore"
    assert batch.s3.list_objects_v2(Bucket=batch.artifacts_bucket, Prefix="batch/sub/")["KeyCount"] == 0


def test_a_job_that_started_the_model_leaves_it_to_a_job_still_using_it_and_the_last_one_stops_it(batch, images):
    from fashion_pipeline.batch_leases import lease

    batch.ensure_stopped()
    arn = batch.model()["ProjectVersionArn"]
    dynamodb = batch.h.session.client("dynamodb")
    other = lease("arn:aws:states:us-east-1:123456789012:execution:BatchDetection:elsewhere", int(time.time()))
    dynamodb.update_item(TableName=batch.activity_table, Key={"model": {"S": arn}}, UpdateExpression="ADD batch_jobs :l, batch_lease_version :one",
                         ExpressionAttributeValues={":l": {"SS": [other]}, ":one": {"N": "1"}})  # a job still detecting
    stops = len(batch.h.calls("StopProjectVersion"))

    first = send(batch, "shared-first", request(prefix=PREFIX + "004"))

    assert first["status"] == "SUCCEEDED", first
    summary = batch.summary("shared-first")
    assert summary["model"]["started_by_job"] is True and summary["model"]["stopped_by_job"] is False
    release = summary["model"]["release"]
    assert release["stop"] is False and release["others"] == 1 and "the last one to end stops it" in release["reason"]
    assert batch.model()["Status"] == "RUNNING" and len(batch.h.calls("StopProjectVersion")) == stops

    # The other job ends; the next job to leave, which found the model running, stops it.
    dynamodb.update_item(TableName=batch.activity_table, Key={"model": {"S": arn}}, UpdateExpression="DELETE batch_jobs :l ADD batch_lease_version :one",
                         ExpressionAttributeValues={":l": {"SS": [other]}, ":one": {"N": "1"}})
    last = send(batch, "shared-last", request(prefix=PREFIX + "005"))

    assert last["status"] == "SUCCEEDED", last
    summary = batch.summary("shared-last")
    assert summary["model"]["status_at_start"] == "RUNNING" and summary["model"]["started_by_job"] is False
    assert summary["model"]["stopped_by_job"] is True and "started the model and no other batch job uses it" in summary["model"]["release"]["reason"]
    assert len(batch.h.calls("StopProjectVersion")) == stops + 1


def test_two_jobs_at_once_on_a_stopped_model_start_it_once_and_stop_it_once(batch, images):
    batch.ensure_stopped()
    starts, stops = len(batch.h.calls("StartProjectVersion")), len(batch.h.calls("StopProjectVersion"))
    body = lambda prefix: {**request(prefix=prefix), "source": f"s3://{batch.dataset_bucket}/{prefix}"}  # noqa: E731

    executions = [batch.start("together-small", body(PREFIX + "006")), batch.start("together-large", body(PREFIX + "01"))]
    described = [batch.h.wait(arn, timeout=120) for arn in executions]

    assert [d["status"] for d in described] == ["SUCCEEDED", "SUCCEEDED"], described
    small, large = batch.summary("together-small"), batch.summary("together-large")
    assert small["images"] == small["answered"] == 10 and large["images"] == large["answered"] == 100
    assert [small["model"]["started_by_job"], large["model"]["started_by_job"]].count(True) == 1
    assert len(batch.h.calls("StartProjectVersion")) == starts + 1
    assert len(batch.h.calls("StopProjectVersion")) == stops + 1
    assert [small["model"]["stopped_by_job"], large["model"]["stopped_by_job"]].count(True) == 1


def test_a_job_does_not_join_a_running_model_its_last_job_is_stopping_and_drops_its_lease(batch, images):
    if batch.model()["Status"] != "RUNNING":
        batch.ensure_stopped()
        batch.rekognition.start_project_version(ProjectVersionArn=batch.model()["ProjectVersionArn"], MinInferenceUnits=1)
        batch.settle("RUNNING")
    arn = batch.model()["ProjectVersionArn"]
    dynamodb = batch.h.session.client("dynamodb")
    leaving = "arn:aws:states:us-east-1:123456789012:execution:BatchDetection:leaving"
    dynamodb.update_item(TableName=batch.activity_table, Key={"model": {"S": arn}},
                         UpdateExpression="SET batch_released_by = :by, batch_released_at = :at",
                         ExpressionAttributeValues={":by": {"S": leaving}, ":at": {"N": str(int(time.time()))}})
    try:
        described = send(batch, "joining", request(prefix=PREFIX + "007"))
    finally:
        dynamodb.update_item(TableName=batch.activity_table, Key={"model": {"S": arn}}, UpdateExpression="REMOVE batch_released_by, batch_released_at")
    assert described["status"] == "FAILED" and described["error"] == "BatchJobRefused", described
    summary = batch.summary("joining")
    assert summary["reason_code"] == "model_unavailable" and "being stopped by batch job leaving" in summary["reason"]
    item = dynamodb.get_item(TableName=batch.activity_table, Key={"model": {"S": arn}})["Item"]
    assert "batch_jobs" not in item  # the refused job's lease is gone again


def test_a_release_that_keeps_failing_drops_the_lease_by_itself_and_leaves_the_model_running(batch, images):
    batch.ensure_stopped()
    role = batch.h.pipeline.role("BatchReleaseFunction").rsplit("/", 1)[-1]
    iam = batch.h.session.client("iam")
    deny = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "dynamodb:*", "Resource": "*"}]}
    iam.put_role_policy(RoleName=role, PolicyName="deny-leases", PolicyDocument=json.dumps(deny))
    stops = len(batch.h.calls("StopProjectVersion"))
    try:
        described = send(batch, "release-fails", request(prefix=PREFIX + "008"))
    finally:
        iam.delete_role_policy(RoleName=role, PolicyName="deny-leases")
    assert described["status"] == "SUCCEEDED", described  # the results stand
    model = batch.summary("release-fails")["model"]
    assert model["started_by_job"] is True and model["stopped_by_job"] is False
    assert model["release"]["stop"] is False and "the release failed" in model["release"]["reason"]
    assert "AccessDenied" in model["release_error"]
    assert len(batch.h.calls("StopProjectVersion")) == stops and batch.model()["Status"] == "RUNNING"
    item = batch.h.session.client("dynamodb").get_item(TableName=batch.activity_table, Key={"model": {"S": batch.model()["ProjectVersionArn"]}})["Item"]
    assert "batch_jobs" not in item  # the machine dropped the lease itself
