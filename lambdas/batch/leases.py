"""The DynamoDB side of batch leases on a model (``fashion_pipeline.batch_leases`` decides).

Every write is one UpdateItem on the model's activity item; the two that must not race (the
claim of a start, the release that makes a stop its own) are conditional writes, so two jobs
never both start the model and a job that joins while another leaves keeps the model running
("Condition expressions", Amazon DynamoDB Developer Guide:
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.ConditionExpressions.html).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from fashion_pipeline.batch_leases import (
    DROP_UPDATE, HOLD_UPDATE, LEASE_NAMES, RELEASED_AT, RELEASED_BY, START_CLAIM_SECONDS, STARTED_AT, STARTED_BY, STOPPED_AT, LeaseState,
    Release, release_decision,
)

# A release whose conditional write loses to another job's lease change reads and decides
# again; each loss means another job changed the leases, so a few rounds settle it.
RELEASE_ROUNDS = 5
_CONFLICT = "ConditionalCheckFailedException"


def _key(model_arn: str) -> dict[str, Any]:
    return {"model": {"S": model_arn}}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def hold(dynamodb: Any, table: str, model_arn: str, lease: str) -> LeaseState:
    """Add the job's lease (again, on a retry: a set holds it once); the item as it is now."""
    return _change_leases(dynamodb, table, model_arn, HOLD_UPDATE, lease)


def drop(dynamodb: Any, table: str, model_arn: str, lease: str) -> LeaseState:
    """Remove the job's lease (nothing happens when it is gone already); the item as it is now."""
    return _change_leases(dynamodb, table, model_arn, DROP_UPDATE, lease)


def _change_leases(dynamodb: Any, table: str, model_arn: str, update: str, lease: str) -> LeaseState:
    """One lease in or out, the version one up (what a release's condition compares)."""
    answer = dynamodb.update_item(
        TableName=table, Key=_key(model_arn), UpdateExpression=update,
        ExpressionAttributeNames=LEASE_NAMES, ExpressionAttributeValues={":lease": {"SS": [lease]}, ":one": {"N": "1"}},
        ReturnValues="ALL_NEW",
    )
    return LeaseState.of(answer.get("Attributes"))


def claim_start(dynamodb: Any, table: str, model_arn: str, execution: str, now: int) -> bool:
    """Claim the start of a STOPPED model for this job: False when another job claimed it moments
    ago (it is starting the model; this job waits for it). A retry by the claimer wins again."""
    try:
        dynamodb.update_item(
            TableName=table, Key=_key(model_arn), UpdateExpression="SET #by = :me, #at = :now",
            # A claim of an earlier run of the model (older than its last recorded stop) is stale too.
            ConditionExpression="attribute_not_exists(#by) OR #by = :me OR #at < :stale OR #at <= #stopped",
            ExpressionAttributeNames={"#by": STARTED_BY, "#at": STARTED_AT, "#stopped": STOPPED_AT},
            ExpressionAttributeValues={":me": {"S": execution}, ":now": {"N": str(now)}, ":stale": {"N": str(now - START_CLAIM_SECONDS)}},
        )
    except ClientError as exc:
        if _code(exc) == _CONFLICT:
            return False
        raise
    return True


def release(dynamodb: Any, table: str, model_arn: str, lease: str, execution: str, now: int) -> Release:
    """Drop the job's lease and decide whether the job stops the model, in one conditional write
    (on the lease version the decision was made from): the drop and a stop are never apart, so
    a release that dies midway leaves either its lease, to be released again, or its decision.
    A stop write also clears the start claim and every lease left (all expired by then). A
    write that loses to another job's lease change reads and decides again."""
    for _ in range(RELEASE_ROUNDS):
        state = read(dynamodb, table, model_arn)
        decision = release_decision(state, execution, now)
        if state.released_by == execution:
            return decision  # a retry of a release that wrote its stop
        if decision.claim:  # the stop: every lease goes (the others are expired), and the claim with them
            update = "SET #rby = :me, #rat = :now REMOVE #sby, #sat, #leases ADD #version :one"
            names = {**LEASE_NAMES, "#rby": RELEASED_BY, "#rat": RELEASED_AT, "#sby": STARTED_BY, "#sat": STARTED_AT}
            values = {":me": {"S": execution}, ":now": {"N": str(now)}}
        else:
            update, names, values = DROP_UPDATE, LEASE_NAMES, {":lease": {"SS": [lease]}}
        condition, seen = ("#version = :seen", {":seen": {"N": str(state.version)}}) if state.version else ("attribute_not_exists(#version)", {})
        try:
            dynamodb.update_item(TableName=table, Key=_key(model_arn), UpdateExpression=update, ConditionExpression=condition,
                                 ExpressionAttributeNames=names, ExpressionAttributeValues={**values, ":one": {"N": "1"}, **seen})
        except ClientError as exc:
            if _code(exc) != _CONFLICT:
                raise
            continue
        return Release(decision.stop, decision.reason, decision.others)
    raise LeaseConflict(f"the model's leases changed under each of {RELEASE_ROUNDS} releases; the release is retried")


class LeaseConflict(RuntimeError):
    """Other jobs kept changing the leases: the machine retries the release (it is idempotent)."""


def read(dynamodb: Any, table: str, model_arn: str) -> LeaseState:
    return LeaseState.of(dynamodb.get_item(TableName=table, Key=_key(model_arn), ConsistentRead=True).get("Item"))
