"""`fashion-pipeline runs` and `models` over real workflow runs: the synthesized state machine in
moto, the Custom Labels emulator, IAM enforced, the commands reading as the operator."""

from __future__ import annotations

import json

import pytest

from fashion_pipeline_tools import cli
from fashion_pipeline_tools.aws.fleet import dataset_of, list_models, list_runs, live_models

from .conftest import FAST, MODEL_PARAMETER_PREFIX, harness_for


@pytest.fixture(scope="module")
def trained_twice(synthesized, sample):
    """demo trained twice (the second deploys and stops the first), then a run whose training
    fails: once for the module, whose tests read it and, last, deploy from it."""
    with harness_for(synthesized.template_dict) as harness:
        yield _train_twice(harness, sample)


def _train_twice(harness, sample):
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
    live = live_models(ssm, MODEL_PARAMETER_PREFIX)
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
    outputs = {"StateMachineArn": harness.machine, "ArtifactsBucketName": harness.artifacts_bucket, "ModelParameterPrefix": MODEL_PARAMETER_PREFIX}
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


def _api(harness, method, path, query=None):
    """The inference function, as its own role in the emulated stack, answering one API request
    in a new execution environment (its pointer cache empty, as after a cold start)."""
    from inference import runtime
    from tests.inference.conftest import api_event

    runtime._current = None
    answer = json.loads(harness.pipeline.runtime.invoke(harness.pipeline.function("inference.handler.handler"),
                                                        json.dumps(api_event(method, path, query=query))))  # fmt: skip
    return answer["statusCode"], json.loads(answer["body"])


def _status(harness, arn):
    project = arn.split("/version/")[0]
    rekognition = harness.session.client("rekognition")
    [project_arn] = [p["ProjectArn"] for p in rekognition.describe_projects()["ProjectDescriptions"] if p["ProjectArn"].startswith(project)]
    return {v["ProjectVersionArn"]: v["Status"] for v in rekognition.describe_project_versions(ProjectArn=project_arn)["ProjectVersionDescriptions"]}[arn]


def test_deploy_rolls_back_and_forward_and_the_api_answers_with_the_live_model(trained_twice, monkeypatch, capsys):
    harness, (first, second, _) = trained_twice
    outputs = {"ModelParameterPrefix": MODEL_PARAMETER_PREFIX}
    monkeypatch.setattr(cli, "_session", lambda args: harness.session)
    monkeypatch.setattr("fashion_pipeline_tools.aws.stack.stack_outputs", lambda session, name: outputs)
    while _status(harness, first["model_arn"]) != "STOPPED":  # deploying the second stopped it; each describe is a tick
        pass
    assert _api(harness, "GET", "/model", {"dataset": "demo"})[1]["version"] == second["project_version"]
    assert cli.main(["deploy", "--dataset", "demo", "--version", first["project_version"], "--wait", "--interval", "0"]) == 0
    said = capsys.readouterr().out
    assert f"starting {first['project_version']} (STOPPED -> STARTING)" in said and "$4 per hour" in said
    assert f"'demo' now serves {first['project_version']} (was {second['project_version']})" in said
    assert f"stopping the previous model {second['project_version']}" in said
    pointer = harness.current_model()
    assert (pointer["project_version_arn"], pointer["status"], pointer["dataset"]) == (first["model_arn"], "RUNNING", "demo")
    assert pointer["f1"] == first["f1"] and pointer["deployed_at"]
    assert _status(harness, first["model_arn"]) == "RUNNING" and _status(harness, second["model_arn"]) in ("STOPPING", "STOPPED")
    status, model = _api(harness, "GET", "/model", {"dataset": "demo"})
    assert (status, model["version"], model["status"]) == (200, first["project_version"], "RUNNING")
    # Again: nothing to do. A version that cannot be deployed, or does not exist, is refused.
    assert cli.main(["deploy", "--dataset", "demo", "--version", first["project_version"]]) == 0
    assert "already 'demo''s live model" in capsys.readouterr().out
    failed_version = [m["version"] for m in list_models(harness.session.client("rekognition"), live={}) if m["status"] == "TRAINING_FAILED"][0]
    assert cli.main(["deploy", "--dataset", "demo", "--version", failed_version]) == 1
    assert "TRAINING_FAILED cannot be deployed" in capsys.readouterr().err
    assert cli.main(["deploy", "--dataset", "demo", "--version", "demo-nope"]) == 1
    assert "has no model version 'demo-nope'" in capsys.readouterr().err
    # Forward again, without --wait: the version starts, the pointer stays until it runs.
    while _status(harness, second["model_arn"]) != "STOPPED":
        pass
    harness.pipeline.custom_labels.settings(start_ticks=3)
    assert cli.main(["deploy", "--dataset", "demo", "--version", second["project_version"], "--keep-previous", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["moved"] is False
    assert harness.current_model()["project_version_arn"] == first["model_arn"]  # not moved to a model that cannot answer
    while _status(harness, second["model_arn"]) != "RUNNING":
        pass
    assert cli.main(["deploy", "--dataset", "demo", "--version", second["project_version"], "--keep-previous", "--json"]) == 0
    out = capsys.readouterr()
    done = json.loads(out.out)
    assert (done["moved"], done["stopped_previous"], done["previous"]) == (True, False, first["project_version"])
    assert "--keep-previous" in out.err and _status(harness, first["model_arn"]) == "RUNNING"  # kept, and said to bill
