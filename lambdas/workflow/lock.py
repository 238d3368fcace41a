"""One training run per dataset at a time: a lease in DynamoDB, taken with a conditional write.

The lease expires on its own (training timeout plus a margin), so an execution that was
aborted or timed out cannot block its dataset forever.
"""

from __future__ import annotations

import time
from typing import Any


class DatasetBusy(Exception):
    """Another execution holds the dataset's lease."""


def acquire(dynamodb: Any, table: str, *, dataset: str, execution: str, seconds: int) -> None:
    now = int(time.time())
    try:
        dynamodb.put_item(
            TableName=table,
            Item={"dataset": {"S": dataset}, "execution": {"S": execution}, "expires_at": {"N": str(now + seconds)}},
            ConditionExpression="attribute_not_exists(dataset) OR expires_at < :now OR execution = :me",
            ExpressionAttributeValues={":now": {"N": str(now)}, ":me": {"S": execution}},
        )
    except dynamodb.exceptions.ConditionalCheckFailedException:
        holder = dynamodb.get_item(TableName=table, Key={"dataset": {"S": dataset}}).get("Item", {})
        raise DatasetBusy(
            f"dataset {dataset!r} is already being trained by execution {holder.get('execution', {}).get('S', '?')}; "
            "wait for it to finish (or stop it) and start again"
        ) from None


def release(dynamodb: Any, table: str, *, dataset: str, execution: str) -> None:
    try:
        dynamodb.delete_item(
            TableName=table,
            Key={"dataset": {"S": dataset}},
            ConditionExpression="execution = :me",
            ExpressionAttributeValues={":me": {"S": execution}},
        )
    except dynamodb.exceptions.ConditionalCheckFailedException:
        pass  # not ours (never taken, or expired and taken by another run): leave it
