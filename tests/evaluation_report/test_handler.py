"""The report function's handler: versions trained by the Custom Labels emulator in moto, the
report written to S3 under the run's evaluation/ folder, compared with the dataset's live model."""

from __future__ import annotations

import json

import boto3
import pytest
from pydantic import ValidationError

from evaluation_report import handler
from fashion_pipeline.lifecycle import ModelPointer
from fashion_pipeline_tools.local.lambda_runtime import LambdaContext
from tests.fashion_pipeline_tools.local.test_custom_labels_emulator import (  # noqa: F401 (fixtures)
    BUCKET, aws, describe_version, emulator, make_model, wait,
)  # fmt: skip

PREFIX = "/fashion-pipeline/models"
RUN = {"dataset": "clothes", "run_id": "20261202T000000Z-abcdef12", "version_name": "v2",
       "prefix": "runs/clothes/20261202T000000Z-abcdef12/", "artifacts_bucket": BUCKET}  # fmt: skip
REPORT = RUN["prefix"] + "evaluation/"


def context():
    return LambdaContext("report", 1024, "arn:aws:lambda:us-east-1:123456789012:function:report", 300)


@pytest.fixture
def trained(aws, monkeypatch):
    """Two versions of the "clothes" project, v1 and v2, trained on the same data."""
    monkeypatch.setenv("MODEL_PARAMETER_PREFIX", PREFIX)
    handler.client.cache_clear()  # clients of this mock_aws
    s3, rek = aws
    project, v1_arn = make_model(rek)
    v1, _ = wait(describe_version(rek, project), [], {"TRAINING_COMPLETED"})
    rek.create_project_version(ProjectArn=project, VersionName="v2", OutputConfig={"S3Bucket": BUCKET, "S3KeyPrefix": "output/"})
    v2, _ = wait(describe_version(rek, project, "v2"), [], {"TRAINING_COMPLETED"})
    yield s3, project, v1, v2
    handler.client.cache_clear()


def invoke(version, run=RUN):
    return handler.handler({"run": run, "version": json.loads(json.dumps(version, default=str))}, context())


def written(s3):
    objects = s3.list_objects_v2(Bucket=BUCKET, Prefix=REPORT).get("Contents", [])
    return {o["Key"][len(REPORT):]: s3.head_object(Bucket=BUCKET, Key=o["Key"])["ContentType"] for o in objects}


def put_pointer(project, version, value=None):
    ssm = boto3.client("ssm", region_name="us-east-1")
    pointer = ModelPointer(version["ProjectVersionArn"], project, "v1", dataset="clothes", f1=0.8)
    ssm.put_parameter(Name=f"{PREFIX}/clothes", Type="String", Value=value or json.dumps(pointer.to_dict()))


def test_the_report_is_written_under_the_runs_evaluation_folder_with_a_bounded_gallery(trained, monkeypatch):
    s3, _, _, v2 = trained
    monkeypatch.setattr(handler, "GALLERY_IMAGES", 1)
    answer = invoke(v2)
    assert answer["key"] == REPORT + "index.html" and answer["compare_key"] is None
    assert "does not exist" in answer["compare_skipped"]  # no live model yet: nothing to compare with
    assert (answer["thumbnails"], answer["test_images"]) == (1, 2)
    files = written(s3)
    assert files == {
        "index.html": "text/html; charset=utf-8", "charts/metrics.svg": "image/svg+xml",
        "charts/distribution.svg": "image/svg+xml", "thumbs/0000.jpg": "image/jpeg",
    }  # fmt: skip
    assert answer["files"] == 4 and answer["bytes"] > 0
    page = s3.get_object(Bucket=BUCKET, Key=REPORT + "index.html")["Body"].read().decode()
    assert "Evaluation of v2" in page and "1 of 2 images shown, those with mistakes first" in page
    assert 'src="charts/metrics.svg"' in page and 'src="thumbs/0000.jpg"' in page and "compare.html" not in page


def test_it_compares_with_the_datasets_live_model_and_links_the_comparison(trained):
    s3, project, v1, v2 = trained
    put_pointer(project, v1)
    answer = invoke(v2)
    assert answer["compared_with"] == "v1" and answer["compare_key"] == REPORT + "compare.html" and not answer["compare_skipped"]
    assert {"compare.html", "charts/compare.svg"} <= set(written(s3))
    page = s3.get_object(Bucket=BUCKET, Key=REPORT + "index.html")["Body"].read().decode()
    assert '<a href="compare.html">Compared with v1</a>' in page
    compare = s3.get_object(Bucket=BUCKET, Key=REPORT + "compare.html")["Body"].read().decode()
    assert "v2 compared with v1" in compare and '<a href="index.html">' in compare


@pytest.mark.parametrize("pointer, why", [
    ("{not json", "model pointer is not JSON"),
    ('{"status": "none"}', "names none"),
])  # fmt: skip
def test_a_pointer_it_cannot_use_leaves_only_the_comparison_out(trained, pointer, why):
    s3, project, v1, v2 = trained
    put_pointer(project, v1, pointer)
    answer = invoke(v2)
    assert answer["compare_key"] is None and why in answer["compare_skipped"]
    assert "index.html" in written(s3) and "compare.html" not in written(s3)


def test_the_live_model_is_not_compared_with_itself(trained):
    s3, project, v1, _ = trained
    put_pointer(project, v1)
    answer = invoke(v1, {**RUN, "version_name": "v1"})
    assert answer["compare_skipped"] == "the live model is this run's" and "compare.html" not in written(s3)


def test_what_keeps_the_report_from_being_written_fails_the_invocation(trained):
    s3, _, _, v2 = trained
    with pytest.raises(ValueError, match="is not a run's prefix"):
        invoke(v2, {**RUN, "prefix": "fragments/clothes/"})  # never outside runs/<dataset>/<run-id>/
    with pytest.raises(ValidationError, match="ProjectVersionArn"):
        invoke({"Status": "TRAINING_COMPLETED"})
    summary = v2["EvaluationResult"]["Summary"]["S3Object"]
    s3.delete_object(Bucket=summary["Bucket"], Key=summary["Name"])
    with pytest.raises(LookupError, match="EvaluationSummary"):
        invoke(v2)
    assert written(s3) == {}
