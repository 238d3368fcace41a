"""inference.autostop.check with fake clients: the branches the emulated tests do not reach."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from inference import autostop
from inference.model import Runtime

from .conftest import POINTER, VERSION_ARN, Clock, FakeDynamoDB, FakeRekognition, FakeSSM, settings

DEPLOYED = 1_795_861_800  # 2026-11-28T10:30:00Z, the pointer's deployed_at (to the second)


def runtime(rekognition, ssm=None, dynamodb=None, minutes_after_deploy=60):
    return Runtime(settings=settings(idle_minutes=30), clients={"rekognition": rekognition, "ssm": ssm or FakeSSM(), "dynamodb": dynamodb or FakeDynamoDB()},
                   wall=Clock(DEPLOYED + minutes_after_deploy * 60))  # fmt: skip


def test_stop_refused_because_the_model_moved_on():
    rekognition = FakeRekognition()
    rekognition.fail("StopProjectVersion", "ResourceInUseException")
    dynamodb = FakeDynamoDB()
    result = autostop.check(runtime(rekognition, dynamodb=dynamodb))
    assert (result["action"], result["stop"]) == ("none", False)
    assert result["reason"].startswith("stop refused (ResourceInUseException)")
    assert dynamodb.items[VERSION_ARN]["observed_status"] == {"S": "RUNNING"}


def test_unexpected_stop_failure_raises():
    rekognition = FakeRekognition()
    rekognition.fail("StopProjectVersion", "AccessDeniedException")
    with pytest.raises(ClientError, match="AccessDenied"):  # surfaces: Lambda retries the scheduled event
        autostop.check(runtime(rekognition))


def test_no_start_time_known_counts_from_now():
    ssm = FakeSSM(json.dumps({**POINTER, "deployed_at": None}))
    dynamodb = FakeDynamoDB()
    first = autostop.check(runtime(FakeRekognition(), ssm, dynamodb, minutes_after_deploy=600))
    assert first["action"] == "keep" and first["running_since"] == "2026-11-28T20:30:00Z"
    assert dynamodb.items[VERSION_ARN]["running_seen_at"] == {"N": str(DEPLOYED + 600 * 60)}
    assert autostop.check(runtime(FakeRekognition(), ssm, dynamodb, minutes_after_deploy=620))["action"] == "keep"
    assert autostop.check(runtime(FakeRekognition(), ssm, dynamodb, minutes_after_deploy=631))["action"] == "stopped"


def test_a_model_that_is_not_running_is_left_alone():
    rekognition = FakeRekognition(status="STOPPED")
    result = autostop.check(runtime(rekognition, minutes_after_deploy=10_000))
    assert (result["action"], result["stop"], result["status"]) == ("keep", False, "STOPPED")
    assert not rekognition.ops("StopProjectVersion")
