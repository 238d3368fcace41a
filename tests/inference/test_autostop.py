"""inference.autostop.check with fake clients: every model of the pipeline's projects, and the
branches the emulated tests do not reach."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from inference import autostop
from inference.runtime import Runtime

from .conftest import (
    PROJECT_ARN,
    POINTER,
    VERSION_ARN,
    Clock,
    FakeDynamoDB,
    FakeRekognition,
    FakeSSM,
    LambdaContext,
    client_error,
    settings,
    version,
)

DEPLOYED = 1_795_861_800  # 2026-11-28T10:30:00Z, the pointer's deployed_at (to the second)
SHOES = "arn:aws:rekognition:us-east-1:123456789012:project/fashion-pipeline-shoes/1700000000100"
HATS = "arn:aws:rekognition:us-east-1:123456789012:project/fashion-pipeline-hats/1700000000200"


def runtime(rekognition, ssm=None, dynamodb=None, minutes_after_deploy=60):
    return Runtime(settings=settings(idle_minutes=30), clients={"rekognition": rekognition, "ssm": ssm or FakeSSM(), "dynamodb": dynamodb or FakeDynamoDB()},
                   wall=Clock(DEPLOYED + minutes_after_deploy * 60))  # fmt: skip


def at(minutes_after_deploy):
    return {"N": str(DEPLOYED + minutes_after_deploy * 60)}


def by_model(result):
    return {m["model"]: m for m in result["models"]}


def deployed(result):
    [model] = [m for m in result["models"] if m["deployed"]]
    return model


# -- the deployed model ------------------------------------------------------------------
def test_stop_refused_because_the_model_moved_on():
    rekognition = FakeRekognition()
    rekognition.fail("StopProjectVersion", "ResourceInUseException")
    dynamodb = FakeDynamoDB()
    result = autostop.check(runtime(rekognition, dynamodb=dynamodb))
    assert (deployed(result)["action"], deployed(result)["stop"]) == ("refused", False)
    assert deployed(result)["reason"].startswith("stop refused (ResourceInUseException)")
    assert result["stopped"] == [] and result["failures"] == []
    assert dynamodb.items[VERSION_ARN]["observed_status"] == {"S": "RUNNING"}


def test_no_start_time_known_counts_from_now():
    ssm = FakeSSM(json.dumps({**POINTER, "deployed_at": None}))
    dynamodb = FakeDynamoDB()
    first = deployed(autostop.check(runtime(FakeRekognition(), ssm, dynamodb, minutes_after_deploy=600)))
    assert first["action"] == "keep" and first["running_since"] == "2026-11-28T20:30:00Z"
    assert dynamodb.items[VERSION_ARN]["running_seen_at"] == at(600)
    assert deployed(autostop.check(runtime(FakeRekognition(), ssm, dynamodb, minutes_after_deploy=620)))["action"] == "keep"
    assert deployed(autostop.check(runtime(FakeRekognition(), ssm, dynamodb, minutes_after_deploy=631)))["action"] == "stopped"


def test_a_model_that_is_not_running_is_left_alone():
    rekognition = FakeRekognition(status="STOPPED")
    result = autostop.check(runtime(rekognition, minutes_after_deploy=10_000))
    model = deployed(result)
    assert (model["action"], model["stop"], model["status"]) == ("keep", False, "STOPPED")
    assert not rekognition.ops("StopProjectVersion")


def test_a_deleted_deployed_version_is_reported_not_found():
    ssm = FakeSSM(json.dumps({**POINTER, "project_version_arn": VERSION_ARN + "-gone"}))
    dynamodb = FakeDynamoDB()
    result = autostop.check(runtime(FakeRekognition(), ssm, dynamodb))
    assert (deployed(result)["model"], deployed(result)["status"], deployed(result)["action"]) == (VERSION_ARN + "-gone", "NOT_FOUND", "keep")
    assert dynamodb.items[VERSION_ARN + "-gone"]["observed_status"] == {"S": "NOT_FOUND"}
    assert by_model(result)[VERSION_ARN]["action"] == "keep"  # no longer deployed and never seen before: a full window


# -- every model of the pipeline's projects ----------------------------------------------
def test_only_idle_versions_are_stopped_each_by_its_own_reference():
    old = version(PROJECT_ARN, "demo.old")
    shoes = version(SHOES, "shoes.v1")
    # One to a page: the pages of DescribeProjects and DescribeProjectVersions are followed.
    rekognition = FakeRekognition(others={PROJECT_ARN: [old], SHOES: [shoes]}, page_size=1)
    dynamodb = FakeDynamoDB({
        # The deployed model has not been used: it counts from its deployment 20 minutes ago.
        old["ProjectVersionArn"]: {"observed_status": {"S": "RUNNING"}, "last_request_at": at(-15)},
        shoes["ProjectVersionArn"]: {"observed_status": {"S": "RUNNING"}, "last_request_at": at(-60), "running_seen_at": at(10)},
    })  # fmt: skip
    result = autostop.check(runtime(rekognition, dynamodb=dynamodb, minutes_after_deploy=20))
    models = by_model(result)
    assert set(models) == {VERSION_ARN, old["ProjectVersionArn"], shoes["ProjectVersionArn"]}
    assert (models[VERSION_ARN]["action"], models[VERSION_ARN]["since"]) == ("keep", "2026-11-28T10:30:00.123Z")
    # Not the deployment: the old version's last request, 35 minutes ago.
    assert (models[old["ProjectVersionArn"]]["action"], models[old["ProjectVersionArn"]]["since"]) == ("stopped", "2026-11-28T10:15:00Z")
    assert "idle for 35.0 min" in models[old["ProjectVersionArn"]]["reason"]
    # Seen running since 10:40, later than its last request: 10 minutes.
    assert (models[shoes["ProjectVersionArn"]]["action"], models[shoes["ProjectVersionArn"]]["since"]) == ("keep", "2026-11-28T10:40:00Z")
    assert models[shoes["ProjectVersionArn"]]["project"] == "fashion-pipeline-shoes"
    assert result["stopped"] == [old["ProjectVersionArn"]]
    assert rekognition.ops("StopProjectVersion") == [{"ProjectVersionArn": old["ProjectVersionArn"]}]
    assert dynamodb.items[old["ProjectVersionArn"]]["stop_reason"] == {"S": "idle"}


def test_a_version_started_from_the_console_gets_its_full_window():
    console = version(SHOES, "shoes.console")
    rekognition = FakeRekognition(others={SHOES: [console]})
    dynamodb = FakeDynamoDB()
    arn = console["ProjectVersionArn"]
    first = by_model(autostop.check(runtime(rekognition, dynamodb=dynamodb, minutes_after_deploy=600)))[arn]
    assert (first["action"], first["running_since"]) == ("keep", "2026-11-28T20:30:00Z")
    assert dynamodb.items[arn]["running_seen_at"] == at(600)
    assert by_model(autostop.check(runtime(rekognition, dynamodb=dynamodb, minutes_after_deploy=629)))[arn]["action"] == "keep"
    assert by_model(autostop.check(runtime(rekognition, dynamodb=dynamodb, minutes_after_deploy=630)))[arn]["action"] == "stopped"


def test_a_starting_version_is_recorded_not_stopped():
    starting = version(HATS, "hats.v2", status="STARTING")
    rekognition = FakeRekognition(others={HATS: [starting]})
    arn = starting["ProjectVersionArn"]
    dynamodb = FakeDynamoDB({arn: {"observed_status": {"S": "STOPPED"}, "last_request_at": at(-600)}})
    result = autostop.check(runtime(rekognition, dynamodb=dynamodb, minutes_after_deploy=60))
    assert (by_model(result)[arn]["status"], by_model(result)[arn]["action"]) == ("STARTING", "keep")
    assert {"ProjectVersionArn": arn} not in rekognition.ops("StopProjectVersion")
    assert dynamodb.items[arn]["observed_status"] == {"S": "STARTING"}
    # Once RUNNING it counts from then, not from its old last request.
    starting["Status"] = "RUNNING"
    assert by_model(autostop.check(runtime(rekognition, dynamodb=dynamodb, minutes_after_deploy=65)))[arn]["action"] == "keep"
    assert dynamodb.items[arn]["running_seen_at"] == at(65)
    assert by_model(autostop.check(runtime(rekognition, dynamodb=dynamodb, minutes_after_deploy=95)))[arn]["action"] == "stopped"


def test_a_version_stopped_and_restarted_by_someone_else_gets_a_fresh_window():
    shoes = version(SHOES, "shoes.v1")
    rekognition = FakeRekognition(others={SHOES: [shoes]})
    arn = shoes["ProjectVersionArn"]
    dynamodb = FakeDynamoDB({arn: {"observed_status": {"S": "RUNNING"}, "running_seen_at": at(0)}})
    shoes["Status"] = "STOPPED"  # from the console, between two rounds
    assert by_model(autostop.check(runtime(rekognition, dynamodb=dynamodb, minutes_after_deploy=10)))[arn]["status"] == "STOPPED"
    assert dynamodb.items[arn]["observed_status"] == {"S": "STOPPED"}
    shoes["Status"] = "RUNNING"  # and started again, an hour later
    restarted = by_model(autostop.check(runtime(rekognition, dynamodb=dynamodb, minutes_after_deploy=70)))[arn]
    assert (restarted["action"], restarted["running_since"]) == ("keep", "2026-11-28T11:40:00Z")


def test_a_failing_project_does_not_keep_the_others_unchecked(capsys):
    idle = version(HATS, "hats.v1")
    rekognition = FakeRekognition(others={SHOES: [version(SHOES, "shoes.v1")], HATS: [idle]})
    listing = rekognition.describe_project_versions

    def shoes_denied(**params):
        if params["ProjectArn"] == SHOES:
            raise client_error("AccessDeniedException", "DescribeProjectVersions")
        return listing(**params)

    rekognition.describe_project_versions = shoes_denied
    dynamodb = FakeDynamoDB({idle["ProjectVersionArn"]: {"observed_status": {"S": "RUNNING"}, "last_request_at": at(0)}})
    autostop.runtime = runtime(rekognition, dynamodb=dynamodb, minutes_after_deploy=45)
    autostop.metrics.clear_metrics()  # what earlier tests' direct check() calls counted
    try:
        result = autostop.handler({}, LambdaContext(function_name="autostop"))
    finally:
        autostop.runtime = None
    assert [(f["step"], f["target"]) for f in result["failures"]] == [("DescribeProjectVersions", SHOES)]
    assert "AccessDeniedException" in result["failures"][0]["error"]
    assert result["stopped"] == [VERSION_ARN, idle["ProjectVersionArn"]]  # before and after the failing project
    [metrics] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert metrics["AutoStopFailures"] == [1.0] and metrics["ModelsStoppedIdle"] == [1.0, 1.0]


def test_the_deployed_model_is_checked_when_projects_cannot_be_listed():
    rekognition = FakeRekognition(others={SHOES: [version(SHOES, "shoes.v1")]})
    rekognition.fail("DescribeProjects", "ThrottlingException")
    result = autostop.check(runtime(rekognition))
    assert [m["model"] for m in result["models"]] == [VERSION_ARN] and result["stopped"] == [VERSION_ARN]
    assert [(f["step"], f["target"]) for f in result["failures"]] == [("DescribeProjects", "*")]


def test_a_failed_stop_is_reported_and_the_others_still_stopped():
    other = version(SHOES, "shoes.v1")
    rekognition = FakeRekognition(others={SHOES: [other]})
    rekognition.fail("StopProjectVersion", "AccessDeniedException")  # the first stop: the deployed model's
    dynamodb = FakeDynamoDB({other["ProjectVersionArn"]: {"observed_status": {"S": "RUNNING"}, "last_request_at": at(0)}})
    result = autostop.check(runtime(rekognition, dynamodb=dynamodb))
    assert deployed(result)["action"] == "failed" and deployed(result)["reason"].startswith("stop failed (AccessDeniedException)")
    assert result["stopped"] == [other["ProjectVersionArn"]]
    assert [(f["step"], f["target"]) for f in result["failures"]] == [("StopProjectVersion", VERSION_ARN)]
    assert "stop_reason" not in dynamodb.items[VERSION_ARN]


def test_an_unreadable_pointer_leaves_every_model_watched():
    result = autostop.check(runtime(FakeRekognition(), FakeSSM("{broken"), minutes_after_deploy=600))
    assert result["deployed"] == [] and [(f["step"], f["target"]) for f in result["failures"]] == [("ParsePointer", "demo")]
    # The deployed model, never seen before and now of unknown deployment, gets a full window.
    [model] = result["models"]
    assert (model["model"], model["action"], model["deployed"]) == (VERSION_ARN, "keep", False)


def test_nothing_deployed_still_watches_the_projects():
    rekognition = FakeRekognition(status="STOPPED", others={SHOES: [version(SHOES, "shoes.v1")]})
    result = autostop.check(runtime(rekognition, FakeSSM(json.dumps({"status": "none"}))))
    assert result["deployed"] == [] and result["failures"] == []
    assert [m["version"] for m in result["models"]] == ["shoes.v1"]


def test_without_the_activity_table_nothing_is_decided():
    dynamodb = FakeDynamoDB()

    def unavailable(**params):
        raise client_error("ResourceNotFoundException", "Scan")

    dynamodb.scan = unavailable
    rekognition = FakeRekognition()
    with pytest.raises(ClientError, match="ResourceNotFound"):  # surfaces: Lambda retries the scheduled event
        autostop.check(runtime(rekognition, dynamodb=dynamodb))
    assert not rekognition.ops("StopProjectVersion")
