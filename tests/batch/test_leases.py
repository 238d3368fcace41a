"""Batch jobs sharing one model: the lease decisions (``fashion_pipeline.batch_leases``) and
their DynamoDB writes (``batch.leases``) against moto's DynamoDB, every interleaving that
matters spelled out: two jobs that find the model STOPPED, a job that joins while another
leaves, a job that dies holding a lease, a retried release."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from batch import leases
from fashion_pipeline.batch_leases import (
    LEASE_SECONDS, START_CLAIM_SECONDS, STOP_GRACE_SECONDS, LeaseState, joining_refusal, lease, lease_expires, lease_holder,
    release_decision,
)

TABLE = "activity"
MODEL = "arn:aws:rekognition:eu-west-1:123456789012:project/demo/version/v1/1"
NOW = 1_800_000_000
A, B, C = (f"arn:aws:states:eu-west-1:123456789012:execution:BatchDetection:job-{n}" for n in "abc")


@pytest.fixture
def dynamodb():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        client.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "model", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "model", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        yield client


def held(dynamodb, execution, *, started=NOW):
    return leases.hold(dynamodb, TABLE, MODEL, lease(execution, started))


def released(dynamodb, execution, *, started=NOW, now=NOW + 60):
    return leases.release(dynamodb, TABLE, MODEL, lease(execution, started), execution, now)


# -- the decisions alone ----------------------------------------------------------------------
def test_a_lease_is_made_from_the_execution_start_so_a_retry_adds_the_same_one():
    made = lease(A, NOW)
    assert made == lease(A, NOW) and lease_holder(made) == A and lease_expires(made) == NOW + LEASE_SECONDS
    assert lease_expires("garbage") == 0 and lease_holder("garbage") == "garbage"


def test_the_last_job_out_stops_a_model_a_batch_job_started_and_only_then():
    started_by_a = LeaseState(started_by=A, started_at=NOW)
    assert release_decision(started_by_a, A, NOW).claim  # A alone: its own start, its stop
    assert release_decision(started_by_a, B, NOW).claim  # B last out of A's start: B stops it
    busy = LeaseState(leases=(lease(B, NOW),), started_by=A, started_at=NOW)
    decided = release_decision(busy, A, NOW)
    assert not decided.stop and decided.others == (B,) and "1 other batch job(s)" in decided.reason
    assert not release_decision(LeaseState(), A, NOW).stop  # nobody started it: left as found
    assert release_decision(LeaseState(released_by=A), A, NOW).stop  # a retried release keeps its word


def test_an_expired_lease_holds_nothing():
    stale = LeaseState(leases=(lease(B, NOW - LEASE_SECONDS - 1),), started_by=A, started_at=NOW)
    assert release_decision(stale, A, NOW).claim


def test_a_running_model_released_moments_ago_is_not_joined():
    state = LeaseState(released_by=A, released_at=NOW)
    refusal = joining_refusal(state, "RUNNING", B, NOW + 10)
    assert refusal is not None and "being stopped by batch job job-a" in refusal
    assert joining_refusal(state, "RUNNING", B, NOW + STOP_GRACE_SECONDS) is None  # a later start's run
    assert joining_refusal(state, "STARTING", B, NOW + 10) is None
    assert joining_refusal(LeaseState(), "RUNNING", B, NOW) is None


# -- against DynamoDB -------------------------------------------------------------------------
def test_two_jobs_finding_the_model_stopped_start_it_once(dynamodb):
    held(dynamodb, A), held(dynamodb, B)
    assert leases.claim_start(dynamodb, TABLE, MODEL, A, NOW) is True
    assert leases.claim_start(dynamodb, TABLE, MODEL, B, NOW + 1) is False  # B waits for A's start
    assert leases.claim_start(dynamodb, TABLE, MODEL, A, NOW + 2) is True  # A's retried prepare
    # A claim its job never acted on goes stale (counted from its last write, the retry's).
    assert leases.claim_start(dynamodb, TABLE, MODEL, C, NOW + 2 + START_CLAIM_SECONDS) is False
    assert leases.claim_start(dynamodb, TABLE, MODEL, C, NOW + 3 + START_CLAIM_SECONDS) is True
    assert leases.read(dynamodb, TABLE, MODEL).started_by == C


def test_the_job_that_started_the_model_leaves_it_to_a_job_still_using_it(dynamodb):
    held(dynamodb, A)
    leases.claim_start(dynamodb, TABLE, MODEL, A, NOW)
    held(dynamodb, B)  # joins the running model

    first = released(dynamodb, A)
    assert not first.stop and first.others == (B,)
    last = released(dynamodb, B)
    assert last.stop and "batch job job-a started the model" in last.reason
    state = leases.read(dynamodb, TABLE, MODEL)
    assert state.leases == () and state.started_by is None and state.released_by == B
    # B's release, retried (its Lambda timed out after the write): the same answer.
    assert released(dynamodb, B).stop
    # A third job arriving now finds a model about to stop.
    assert joining_refusal(held(dynamodb, C), "RUNNING", C, NOW + 61) is not None


def test_a_job_that_joins_between_the_last_release_read_and_its_write_keeps_the_model(dynamodb):
    held(dynamodb, A)
    leases.claim_start(dynamodb, TABLE, MODEL, A, NOW)

    class JoinFirst:
        """DynamoDB as it is when job B's hold lands just before A's conditional release."""

        def __init__(self, real):
            self.real, self.joined = real, False

        def update_item(self, **kwargs):
            if "ConditionExpression" in kwargs and not self.joined:
                self.joined = True
                held(self.real, B)
            return self.real.update_item(**kwargs)

        def get_item(self, **kwargs):
            return self.real.get_item(**kwargs)

    decided = leases.release(JoinFirst(dynamodb), TABLE, MODEL, lease(A, NOW), A, NOW + 60)
    assert not decided.stop and decided.others == (B,)
    assert released(dynamodb, B).stop  # and B, last out, stops it


def test_a_lease_left_by_a_dead_execution_does_not_keep_the_model_running_past_its_expiry(dynamodb):
    held(dynamodb, B, started=NOW - LEASE_SECONDS)  # aborted a week ago, never released
    held(dynamodb, A)
    leases.claim_start(dynamodb, TABLE, MODEL, A, NOW)
    decided = released(dynamodb, A)
    assert decided.stop
    assert leases.read(dynamodb, TABLE, MODEL).leases == ()  # the dead lease is cleared with it


def test_a_job_on_a_model_nobody_started_leaves_it_running(dynamodb):
    held(dynamodb, A)
    decided = released(dynamodb, A)
    assert not decided.stop and "no batch job started the model" in decided.reason


def test_a_start_claim_older_than_the_models_last_recorded_stop_is_no_batch_start(dynamodb):
    """A claims the start and its lease goes without its release (its execution failed before the
    release could decide); the idle auto-stop stops the model and records it; the API starts it
    again; a job that joins and leaves last must not stop the API's model."""
    held(dynamodb, A)
    leases.claim_start(dynamodb, TABLE, MODEL, A, NOW)
    leases.drop(dynamodb, TABLE, MODEL, lease(A, NOW))
    dynamodb.update_item(TableName=TABLE, Key={"model": {"S": MODEL}}, UpdateExpression="SET stopped_at = :t",
                         ExpressionAttributeValues={":t": {"N": str(NOW + 3600)}})  # inference.activity's record of the stop
    assert leases.read(dynamodb, TABLE, MODEL).starter is None
    held(dynamodb, B, started=NOW + 7200)
    decided = released(dynamodb, B, started=NOW + 7200, now=NOW + 7300)
    assert not decided.stop and "no batch job started the model" in decided.reason
    # And the stale claim does not make the next job that finds the model STOPPED wait.
    assert leases.claim_start(dynamodb, TABLE, MODEL, C, NOW + 7400) is True


def test_a_release_writes_its_drop_and_its_stop_together(dynamodb):
    held(dynamodb, A)
    leases.claim_start(dynamodb, TABLE, MODEL, A, NOW)
    decided = released(dynamodb, A)
    state = leases.read(dynamodb, TABLE, MODEL)
    assert decided.stop and state.released_by == A and state.leases == () and state.started_by is None
    # Retried (the Lambda died after the write): the same decision, nothing written twice.
    version = state.version
    assert released(dynamodb, A).stop and leases.read(dynamodb, TABLE, MODEL).version == version
