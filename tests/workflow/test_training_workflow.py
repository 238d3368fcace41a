import json

import pytest

from tests.workflow.conftest import FAST, eventbridge_object_created


def output(described):
    return json.loads(described.get("output") or "null")


def test_happy_path_trains_evaluates_deploys_and_publishes(harness, sample):
    harness.upload_and_convert(sample)
    described = harness.run(min_f1=0.0)
    assert described["status"] == "SUCCEEDED", described
    result = output(described)
    assert result["status"] == "succeeded" and result["dataset"] == "demo"
    model = harness.current_model()
    assert model["status"] == "RUNNING" and model["project_version_arn"] == result["model_arn"]
    assert model["version_name"] == result["project_version"] and model["inference_units"] == 1
    run_prefix = f"runs/demo/{result['run_id']}/"
    summary = harness.object(run_prefix + "summary.json")
    assert summary["train"]["images"] > 0 and summary["test"]["images"] > 0
    assert set(summary["test"]["boxes"]) <= set(summary["train"]["boxes"])
    evaluation = harness.object(run_prefix + "evaluation.json")
    # The emulated model memorises its training images, so on unseen test images it finds nothing.
    assert evaluation["overall"]["f1"] == 0.0 and evaluation["labels"]
    assert {"label", "precision", "recall", "f1", "threshold", "test_images"} <= set(evaluation["labels"][0])
    [version] = harness.calls("CreateProjectVersion")
    assert version["OutputConfig"] == {"S3Bucket": harness.artifacts_bucket, "S3KeyPrefix": run_prefix + "output/"}
    [train, test] = harness.calls("CreateDataset")
    assert train["DatasetType"] == "TRAIN" and train["DatasetSource"]["GroundTruthManifest"]["S3Object"]["Name"] == run_prefix + "train.manifest"
    assert test["DatasetType"] == "TEST"
    # Polling asks for this run's version only; stopping earlier models looks at them all.
    polls = [p for p in harness.calls("DescribeProjectVersions") if "VersionNames" in p]
    assert polls and all(p["VersionNames"] == [result["project_version"]] for p in polls)
    assert harness.calls("StartProjectVersion")[0]["MinInferenceUnits"] == 1
    assert harness.object(run_prefix + "outcome.json")["status"] == "succeeded"
    # The dataset's lease is free again.
    locks = harness.session.client("dynamodb")
    table = harness.pipeline.deployment.find("AWS::DynamoDB::GlobalTable", "RunLocks")
    assert locks.scan(TableName=table)["Count"] == 0


def test_training_failure_ends_failed_with_the_service_message(harness, sample):
    harness.upload_and_convert(sample)
    harness.pipeline.custom_labels.fail_next_training("The manifest file contains too many invalid data objects")
    described = harness.run()
    assert described["status"] == "FAILED"
    assert "TrainingFailed" in described["cause"] and "too many invalid data objects" in described["cause"]
    assert harness.current_model() is None
    assert not harness.calls("StartProjectVersion")


def test_dataset_creation_failure_is_surfaced(harness, sample):
    harness.upload_and_convert(sample)
    harness.pipeline.custom_labels.fail_next_dataset("ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT")
    described = harness.run()
    assert described["status"] == "FAILED"
    assert "DatasetCreationFailed" in described["cause"] and "ERROR_MANIFEST_INACCESSIBLE" in described["cause"]
    assert not harness.calls("CreateProjectVersion")


def test_f1_below_the_gate_trains_but_does_not_deploy(harness, sample):
    harness.upload_and_convert(sample)
    described = harness.run(min_f1=0.5)
    assert described["status"] == "SUCCEEDED"
    result = output(described)
    assert result["status"] == "not_deployed" and "below the minimum 0.500" in result["reason"]
    assert not harness.calls("StartProjectVersion")
    assert harness.current_model() is None


def test_retraining_reuses_the_project_and_replaces_its_datasets(harness, sample):
    harness.upload_and_convert(sample)
    first = output(harness.run(deploy=False))
    second = output(harness.run(deploy=False))
    assert first["status"] == second["status"] == "not_deployed"
    assert first["project_version"] != second["project_version"]
    assert len(harness.calls("CreateProject")) == 1
    assert len(harness.calls("DeleteDataset")) == 2  # the first run's TRAIN and TEST
    assert len(harness.calls("CreateProjectVersion")) == 2


@pytest.mark.parametrize("code", ["ThrottlingException", "InternalServerError"])
def test_transient_errors_are_retried_with_backoff(harness, sample, code):
    """By their modelled names (InternalServerError is Rekognition.InternalServerErrorException);
    a describe that outlasts its retries inside a polling loop counts as a poll without news."""
    harness.upload_and_convert(sample)
    harness.pipeline.custom_labels.inject_error("CreateProjectVersion", code, times=2)
    harness.pipeline.custom_labels.inject_error("DescribeDataset", code, times=3)
    described = harness.run()
    assert described["status"] == "SUCCEEDED", described
    assert len(harness.calls("CreateProjectVersion")) == 3


def test_a_second_execution_for_the_same_dataset_does_not_train(harness, sample):
    harness.upload_and_convert(sample)
    harness.pipeline.custom_labels.settings(training_ticks=20)
    first = harness.start()
    while not harness.calls("CreateProjectVersion"):  # the first run holds the lease by now
        pass
    second = harness.wait(harness.start())
    assert second["status"] == "FAILED" and "DatasetBusy" in second["cause"] and "already being trained" in second["cause"]
    assert harness.wait(first)["status"] == "SUCCEEDED"
    assert len(harness.calls("CreateProjectVersion")) == 1


def test_invalid_manifests_fail_before_any_spending(harness, sample):
    one_label = [name for name in sample.files if json.loads((sample.annotations / name).read_text())["item1"]["category_id"] == 1]
    for name in one_label:  # keep a single garment so the dataset has a single label
        data = json.loads((sample.annotations / name).read_text())
        assert data["item1"]["category_id"] == 1
    harness.upload_and_convert(sample, dataset="tiny", names=one_label[:1])
    described = harness.run("tiny")
    assert described["status"] == "FAILED"
    assert "ManifestValidationError" in described["cause"]
    assert not harness.calls("CreateProject") and not harness.calls("CreateDataset")


def test_bad_options_are_refused_with_the_option_named(harness, sample):
    described = harness.run(test_fraction=2)
    assert described["status"] == "FAILED" and "test_fraction" in described["cause"]


def test_a_training_request_upload_starts_a_run_with_its_options(harness, sample):
    """EventBridge delivers S3 "Object Created" for requests/<dataset>.json to the machine."""
    harness.upload_and_convert(sample)
    harness.s3.put_object(Bucket=harness.dataset_bucket, Key="requests/demo.json", Body=json.dumps({**FAST, "deploy": False}).encode())
    event = eventbridge_object_created(harness.dataset_bucket, "requests/demo.json")
    arn = harness.start_with(event)
    described = harness.wait(arn)
    assert described["status"] == "SUCCEEDED", described
    assert output(described)["status"] == "not_deployed"


def test_cli_train_waits_and_reports(harness, sample, monkeypatch, capsys):
    """`fashion-pipeline train --wait` against the emulated stack (its outputs from CloudFormation)."""
    from fashion_pipeline_tools import cli

    harness.upload_and_convert(sample)
    monkeypatch.setattr("fashion_pipeline_tools.aws.stack.stack_outputs", lambda session, name: {"StateMachineArn": harness.machine})
    operator = harness.pipeline.operator  # the CLI signs with the user's own credentials
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", operator.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", operator.secret_access_key)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    code = cli.main(["train", "--dataset", "demo", "--wait", "--interval", "0.2", "--poll-seconds", "0", "--start-poll-seconds", "0",
                     "--training-timeout-hours", "0.01", "--wait-timeout-minutes", "1", "--no-deploy"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "started arn:aws:states" in out and "-> Assemble manifests" in out and "not_deployed" in out


def test_cli_train_refuses_bad_options_before_starting(capsys):
    from fashion_pipeline_tools import cli

    assert cli.main(["train", "--dataset", "demo", "--min-f1", "3"]) == 2
    assert "min_f1" in capsys.readouterr().err
