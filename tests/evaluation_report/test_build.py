"""build_report end to end: a model trained by the Custom Labels emulator, its files read from S3."""

from __future__ import annotations

import io

import pytest
from botocore.exceptions import ClientError

from fashion_pipeline.evaluation import EvaluationError, evaluation_files, load_evaluation, stream_lines, version_name
from evaluation_report.build import build_report
from tests.fashion_pipeline_tools.local.test_custom_labels_emulator import (  # noqa: F401 (fixtures)
    BUCKET, aws, describe_version, emulator, make_model, wait,
)  # fmt: skip


def opener(s3):
    def open_object(bucket, key):
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise LookupError(f"s3://{bucket}/{key} does not exist") from None
            raise

    return open_object


def test_report_of_an_emulated_training(aws, tmp_path):
    s3, rek = aws
    project, _ = make_model(rek)
    v1, _ = wait(describe_version(rek, project), [], {"TRAINING_COMPLETED"})
    rek.create_project_version(ProjectArn=project, VersionName="v2", OutputConfig={"S3Bucket": BUCKET, "S3KeyPrefix": "output/"})
    v2, _ = wait(describe_version(rek, project, "v2"), [], {"TRAINING_COMPLETED"})
    s3.delete_object(Bucket=BUCKET, Key="img/c.png")  # one gallery image gone from the bucket

    evaluation, files = build_report(v1, opener(s3), tmp_path, compare_with=v2)
    assert evaluation.version == "v1" and evaluation.overall.f1 == pytest.approx(v1["EvaluationResult"]["F1Score"])
    names = {f.relative_to(tmp_path).as_posix() for f in files}
    assert {"index.html", "charts/metrics.svg", "charts/distribution.svg", "thumbs/0001.jpg", "compare.html", "charts/compare.svg"} <= names
    assert "thumbs/0000.jpg" not in names  # mistakes first: image C, its trousers missed, is not in the bucket
    page = (tmp_path / "index.html").read_text()
    assert "Image not available: s3://cl-data/img/c.png does not exist" in page
    assert "<td>(overall)</td><td>1.000</td><td>0.667</td><td>0.800</td><td>0.500 (summary)</td><td>2</td><td>0</td><td>1</td>" in page
    compare = (tmp_path / "compare.html").read_text()
    assert "v1 compared with v2" in compare  # the same data both times: no change
    assert "+0.000" in compare


def test_evaluation_files_and_helpers():
    description = {
        "ProjectVersionArn": "arn:aws:rekognition:us-east-1:123456789012:project/clothes/version/v7/1700000000000",
        "EvaluationResult": {"F1Score": 1.0, "Summary": {"S3Object": {"Bucket": "b", "Name": "out/EvaluationSummary-clothes-v7.json"}}},
        "TestingDataResult": {"Input": {"Assets": []}, "Output": {"Assets": [{"GroundTruthManifest": {"S3Object": {"Bucket": "b", "Name": "t.manifest"}}}]}},
    }  # fmt: skip
    files = evaluation_files(description)
    assert files.summary == {"Bucket": "b", "Name": "out/EvaluationSummary-clothes-v7.json"}
    assert files.testing == [{"Bucket": "b", "Name": "t.manifest"}] and files.training == []
    assert version_name(description) == "v7"
    assert list(stream_lines(io.BytesIO(b"a\nbb\n\nccc"), chunk=2)) == [b"a", b"bb", b"", b"ccc"]
    with pytest.raises(EvaluationError, match="names no summary file"):
        load_evaluation({"ProjectVersionArn": description["ProjectVersionArn"], "Status": "TRAINING_FAILED"}, None)
    objects = {("b", "t.manifest"): b"{broken\n"}
    with pytest.raises(EvaluationError, match=r"s3://b/t.manifest line 1: not JSON"):
        load_evaluation({**description, "EvaluationResult": {}}, lambda b, k: io.BytesIO(objects[(b, k)]))
