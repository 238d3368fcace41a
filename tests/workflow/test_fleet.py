"""`fashion-pipeline runs` and `models` over real workflow runs: the synthesized state machine in
moto, the Custom Labels emulator, IAM enforced, the commands reading as the operator."""

from __future__ import annotations

import json

import pytest

from fashion_pipeline_tools import cli
from fashion_pipeline_tools.aws.fleet import dataset_of, list_models, list_runs, live_models

from .conftest import FAST, MODEL_PARAMETER


@pytest.fixture
def trained_twice(harness, sample):
    """demo trained twice (the second deploys and stops the first), then a run whose training fails."""
    harness.upload_and_convert(sample)
    first = harness.run(**FAST)
    second = harness.run(**FAST)
    harness.pipeline.custom_labels.fail_next_training("The manifest file contains too many invalid data objects")
    failed = harness.run(**FAST)
    assert [first["status"], second["status"], failed["status"]] == ["SUCCEEDED", "SUCCEEDED", "FAILED"]
    return harness, [json.loads(d["output"]) if d.get("output") else None for d in (first, second, failed)]


def test_runs_lists_every_run_newest_first_with_counts_f1_and_reasons(trained_twice):
    harness, (first, second, _) = trained_twice
    runs = list_runs(harness.sfn, harness.s3, state_machine_arn=harness.machine, artifacts_bucket=harness.artifacts_bucket)
    assert [run["status"] for run in runs] == ["FAILED", "SUCCEEDED", "SUCCEEDED"]
    assert [run["run_id"] for run in runs[1:]] == [second["run_id"], first["run_id"]]
    failed, newest = runs[0], runs[1]
    # The failed run never wrote an outcome the execution returns: its folder is found by the
    # execution name's suffix, and its reason is the service's message.
    assert failed["run_id"] and failed["run_prefix"] == f"runs/demo/{failed['run_id']}/"
    assert "too many invalid data objects" in failed["reason"]
    summary = harness.object(newest["run_prefix"] + "summary.json")
    assert (newest["train_images"], newest["test_images"]) == (summary["train"]["images"], summary["test"]["images"]) != (None, None)
    assert newest["labels"] == len(summary["train"]["boxes"]) and newest["f1"] == second["f1"]
    assert newest["model_version"] == second["project_version"] and all(run["dataset"] == "demo" for run in runs)
    assert all(run["seconds"] >= 0 for run in runs)
    assert list_runs(harness.sfn, harness.s3, state_machine_arn=harness.machine, artifacts_bucket=harness.artifacts_bucket, dataset="other") == []
    assert len(list_runs(harness.sfn, harness.s3, state_machine_arn=harness.machine, artifacts_bucket=harness.artifacts_bucket, limit=1)) == 1


def test_models_lists_every_version_with_the_live_one_and_its_cost(trained_twice):
    harness, (first, second, _) = trained_twice
    rekognition, ssm = harness.session.client("rekognition"), harness.session.client("ssm")
    live = live_models(ssm, MODEL_PARAMETER)
    assert live == {"demo": second["model_arn"]}
    models = list_models(rekognition, live=live)
    by_arn = {model["arn"]: model for model in models}
    assert by_arn[second["model_arn"]]["live"] and by_arn[second["model_arn"]]["status"] == "RUNNING"
    assert by_arn[second["model_arn"]]["billing_now"] and by_arn[second["model_arn"]]["usd_per_hour_running"] == 4.0
    # Deploying the second stopped the first: it is listed, not live, not billing.
    assert by_arn[first["model_arn"]]["status"] in ("STOPPING", "STOPPED") and not by_arn[first["model_arn"]]["live"]
    assert not by_arn[first["model_arn"]]["billing_now"]
    assert sum(model["live"] for model in models) == 1 and {model["dataset"] for model in models} == {"demo"}
    assert len(models) == 3  # the failed run's version is listed too, with its status
    assert list_models(rekognition, live=live, dataset="other") == []


def test_the_commands_print_tables_and_json(trained_twice, monkeypatch, capsys):
    harness, (_, second, _) = trained_twice
    outputs = {"StateMachineArn": harness.machine, "ArtifactsBucketName": harness.artifacts_bucket, "ModelParameterName": MODEL_PARAMETER}
    monkeypatch.setattr(cli, "_session", lambda args: harness.session)
    monkeypatch.setattr("fashion_pipeline_tools.aws.stack.stack_outputs", lambda session, name: outputs)
    assert cli.main(["runs", "--dataset", "demo"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["DATASET", "RUN", "STATUS", "STARTED", "TOOK", "TRAIN/TEST", "LABELS", "F1"]
    assert second["run_id"] in table and "why each ended:" in table and "too many invalid data objects" in table
    assert cli.main(["models", "--json"]) == 0
    models = json.loads(capsys.readouterr().out)
    assert [model["version"] for model in models if model["live"]] == [second["project_version"]]
    assert cli.main(["models", "--dataset", "other"]) == 0
    assert "no models of dataset 'other'" in capsys.readouterr().out


def test_the_dataset_of_an_execution_comes_from_its_input_or_its_request_key():
    assert dataset_of({"dataset": "shoes", "options": {}}) == "shoes"
    assert dataset_of({"detail": {"object": {"key": "requests/shoes.json"}}}) == "shoes"
    assert dataset_of({"detail": {"object": {"key": "images/x.jpg"}}}) is None and dataset_of({}) is None


def test_report_writes_the_second_runs_charts_and_gallery_and_compares_with_the_first(trained_twice, monkeypatch, capsys, tmp_path):
    harness, (first, second, _) = trained_twice
    monkeypatch.setattr(cli, "_session", lambda args: harness.session)
    out = tmp_path / "report"
    assert cli.main(["report", "--dataset", "demo", "--out", str(out), "--compare", first["project_version"]]) == 0
    said = capsys.readouterr().out
    # By default the newest evaluated version: the failed run's training has no EvaluationResult.
    assert said.startswith(str(out / "index.html")) and second["project_version"] in said
    page = (out / "index.html").read_text()
    assert "<svg" in page or list((out / "charts").glob("*.svg"))
    assert list(out.rglob("*.jpg")), "the gallery draws the test images"
    assert (out / "compare.html").is_file()
    assert cli.main(["report", "--dataset", "demo", "--out", str(out), "--version", "demo-nope"]) == 1
    assert "has no model version 'demo-nope'" in capsys.readouterr().err
    assert cli.main(["report", "--dataset", "other", "--out", str(out)]) == 1
    assert "dataset 'other' has no project" in capsys.readouterr().err
