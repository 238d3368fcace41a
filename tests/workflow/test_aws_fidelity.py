"""The training workflow where AWS is less kind than moto was: caller permissions, optional
members, asynchronous deletes, terminal statuses, transient errors, models left running.

Each test runs the synthesized state machine end to end with IAM enforced (see conftest.py);
the numbers refer to the findings of the fidelity issue.
"""

from __future__ import annotations

import copy
import json

import pytest

from tests.workflow.conftest import harness_for

pytestmark = pytest.mark.usefixtures("synthesized")


def output(described):
    return json.loads(described.get("output") or "null")


def without_grant(template: dict, role_marker: str, action: str) -> dict:
    """The template with ``action`` taken out of every statement of the role's policies: what the
    construct would synthesize had it not granted it."""
    changed = copy.deepcopy(template)
    removed = 0
    for resource in changed["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy" or not any(role_marker in json.dumps(r) for r in resource["Properties"]["Roles"]):
            continue
        statements = []
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            kept = [a for a in actions if a != action]
            removed += len(actions) - len(kept)
            if kept:
                statements.append({**statement, "Action": kept})
        resource["Properties"]["PolicyDocument"]["Statement"] = statements
    assert removed, f"no {action} granted to {role_marker}"
    return changed


def failure_of(harness, described) -> dict:
    """The failure path ran: outcome.json written, lease released; returns the outcome."""
    assert described["status"] == "FAILED", described
    [key] = [o["Key"] for o in harness.s3.list_objects_v2(Bucket=harness.artifacts_bucket, Prefix="runs/demo/").get("Contents", [])
             if o["Key"].endswith("outcome.json")]
    outcome = harness.object(key)
    assert outcome["status"] == "failed"
    table = harness.pipeline.deployment.find("AWS::DynamoDB::GlobalTable", "RunLocks")
    assert harness.session.client("dynamodb").scan(TableName=table)["Count"] == 0, "the dataset's lease is released"
    return outcome


# -- 1. training reads its data and writes its output with the caller's permissions ----------------
@pytest.mark.parametrize(("action", "starts", "names"), [
    # Custom Labels reads the manifest as the caller: the dataset fails with its terminal error.
    ("s3:GetObject", "DatasetCreationFailed: train dataset: ERROR_INVALID_PERMISSIONS_MANIFEST_S3_BUCKET",
     "is not authorized to perform: s3:GetObject on resource: arn:aws:s3:::"),
    # ... and writes the training output as the caller: the training fails.
    ("s3:PutObject", "TrainingFailed: training: ERROR_CANNOT_WRITE_OUTPUT_S3_BUCKET",
     "is not authorized to perform: s3:PutObject on resource: arn:aws:s3:::"),
    # Tagging the new version at creation is authorized as rekognition:TagResource.
    ("rekognition:TagResource", "Rekognition.AccessDeniedException", "is not authorized to perform: rekognition:TagResource"),
])
def test_a_run_without_one_machine_grant_fails_naming_the_action(synthesized, sample, action, starts, names):
    template = without_grant(synthesized.template_dict, "TrainingStateMachineRole", action)
    with harness_for(template) as harness:
        harness.upload_and_convert(sample)
        outcome = failure_of(harness, harness.run())
    assert outcome["reason"].startswith(starts) and names in outcome["reason"], outcome["reason"]
    assert "assumed-role/FashionPipeline-TrainingStateMachineRole" in outcome["reason"]


def test_a_function_without_its_grant_fails_where_aws_would(synthesized, sample):
    """The same for a function: the lease table write of prepare, as its own role."""
    template = without_grant(synthesized.template_dict, "TrainingPrepareFunctionRole", "dynamodb:PutItem")
    with harness_for(template) as harness:
        harness.upload_and_convert(sample)
        described = harness.run()
    assert described["status"] == "FAILED"
    assert "AccessDeniedException" in described["cause"] and "dynamodb:PutItem" in described["cause"]


# -- 3. a describe without its optional members never skips the failure path -----------------------
def test_a_failed_dataset_without_a_message_still_records_the_failure(harness, sample):
    harness.upload_and_convert(sample)
    harness.pipeline.custom_labels.fail_next_dataset("ERROR_MANIFEST_TOO_MANY_LABELS")
    harness.pipeline.custom_labels.strip("DescribeDataset", "DatasetDescription.StatusMessage", "DatasetDescription.StatusMessageCode", times=10)
    outcome = failure_of(harness, harness.run())
    assert outcome["reason"] == "DatasetCreationFailed: train dataset (the service gave no message)"


def test_failed_training_without_a_message_still_records_the_failure(harness, sample):
    harness.upload_and_convert(sample)
    harness.pipeline.custom_labels.fail_next_training("The manifest file contains too many invalid data objects")
    harness.pipeline.custom_labels.strip("DescribeProjectVersions", "ProjectVersionDescriptions[].StatusMessage", times=10)
    outcome = failure_of(harness, harness.run())
    assert outcome["reason"] == "TrainingFailed: training (the service gave no message)"


def test_a_version_not_listed_yet_is_polled_again(harness, sample):
    harness.upload_and_convert(sample)
    harness.pipeline.custom_labels.strip("DescribeProjectVersions", "ProjectVersionDescriptions", times=2)
    described = harness.run()
    assert described["status"] == "SUCCEEDED", described


# -- 5. the wait for the model leaves on every end state --------------------------------------------
@pytest.mark.parametrize(("status", "message", "reason"), [
    ("FAILED", "Not enough capacity", "DeploymentFailed: the model failed to start: Not enough capacity"),
    ("FAILED", None, "DeploymentFailed: the model failed to start (the service gave no message)"),
    ("STOPPED", "Stopped by someone", "UnexpectedStatus: the model is STOPPED"),
    ("EXPIRED", None, "UnexpectedStatus: the model is EXPIRED"),
])
def test_a_start_that_ends_other_than_running_fails_the_run(harness, sample, status, message, reason):
    harness.upload_and_convert(sample)
    harness.pipeline.custom_labels.end_next_start(status, message)
    outcome = failure_of(harness, harness.run())
    assert outcome["reason"] == reason
    assert harness.current_model() is None


# -- 6. deleting the previous datasets is asynchronous ----------------------------------------------
def test_retraining_waits_until_the_old_datasets_are_gone(harness, sample):
    harness.upload_and_convert(sample)
    harness.pipeline.custom_labels.settings(delete_ticks=3)
    assert output(harness.run(deploy=False))["status"] == "not_deployed"
    second = harness.run(deploy=False)
    assert second["status"] == "SUCCEEDED", second
    operations = [op for op, _ in harness.pipeline.custom_labels.calls]
    second_run = operations[len(operations) - operations[::-1].index("DeleteDataset") - 1:]
    # Both old datasets are deleted, the project polled until neither is listed, then recreated.
    assert second_run.count("DescribeProjects") >= 3 and second_run.index("DescribeProjects") < second_run.index("CreateDataset")
    assert len(harness.calls("DeleteDataset")) == 2


# -- 8. one model of a dataset runs, whatever the number of trainings --------------------------------
def test_training_a_dataset_twice_leaves_exactly_one_model_running(harness, sample):
    harness.upload_and_convert(sample)
    first = output(harness.run())
    second = output(harness.run())
    assert first["status"] == second["status"] == "succeeded"
    running = harness.running_versions()
    assert [arn for arn, _ in running] == [second["model_arn"]], running
    assert second["stopped_models"] == [first["model_arn"]]
    assert harness.current_model()["project_version_arn"] == second["model_arn"]


def test_keep_previous_model_running_keeps_it(harness, sample):
    harness.upload_and_convert(sample)
    first = output(harness.run())
    second = output(harness.run(keep_previous_model_running=True))
    assert sorted(arn for arn, _ in harness.running_versions()) == sorted([first["model_arn"], second["model_arn"]])
    assert second["stopped_models"] == []
