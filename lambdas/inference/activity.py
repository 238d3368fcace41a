"""The activity table (DynamoDB): when each model version was last used, started, stopped, seen.

The API writes ``last_request_at`` (at most once a minute per container, ``ActivityRecorder``)
and ``started_at``/``stopped_at``; the idle auto-stop reads every item and records what it saw.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

logger = Logger(child=True)

ACTIVITY_INTERVAL_SECONDS = 60.0


class ActivityRecorder:
    """Writes ``last_request_at`` for a model at most once per ``interval`` seconds.

    The auto-stop needs minute precision at best (it runs every 5 minutes), so a busy API
    costs one DynamoDB write a minute per container, not one per request. A failed write
    never fails the request; it is retried after the interval.
    """

    def __init__(self, write: Callable[[str, int], None], clock: Callable[[], float], wall: Callable[[], float], interval: float = ACTIVITY_INTERVAL_SECONDS) -> None:
        self._write, self._clock, self._wall, self._interval = write, clock, wall, interval
        self._last: dict[str, float] = {}
        self.writes = 0

    def touch(self, model_arn: str) -> bool:
        now = self._clock()
        last = self._last.get(model_arn)
        if last is not None and now - last < self._interval:
            return False
        self._last[model_arn] = now
        try:
            self._write(model_arn, int(self._wall()))
        except Exception:
            logger.warning("activity write failed", exc_info=True, extra={"model": model_arn})
            return False
        self.writes += 1
        return True


def _key(model_arn: str) -> dict[str, Any]:
    return {"model": {"S": model_arn}}


def record_request(dynamodb: Any, table: str, model_arn: str, epoch: int) -> None:
    """Set ``last_request_at``, never moving it back (another container may be ahead)."""
    try:
        dynamodb.update_item(
            TableName=table,
            Key=_key(model_arn),
            UpdateExpression="SET last_request_at = :t",
            ConditionExpression="attribute_not_exists(last_request_at) OR last_request_at < :t",
            ExpressionAttributeValues={":t": {"N": str(epoch)}},
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise


def record(dynamodb: Any, table: str, model_arn: str, **attributes: Any) -> None:
    """Set attributes of the model's activity item: numbers as N, the rest as S."""
    if not attributes:
        return
    names = {f"#a{i}": name for i, name in enumerate(attributes)}
    values = {f":v{i}": _attribute(value) for i, value in enumerate(attributes.values())}
    dynamodb.update_item(
        TableName=table,
        Key=_key(model_arn),
        UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(attributes))),
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
    )


def read_activity(dynamodb: Any, table: str, model_arn: str) -> dict[str, Any]:
    return _attributes(dynamodb.get_item(TableName=table, Key=_key(model_arn), ConsistentRead=True).get("Item") or {})


def read_all_activity(dynamodb: Any, table: str) -> dict[str, dict[str, Any]]:
    """What the table records of every model, by model ARN (Scan, every page). It holds one
    small item per version the API or the auto-stop touched: a request or two for them all."""
    found: dict[str, dict[str, Any]] = {}
    params: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = dynamodb.scan(**params)
        for item in page.get("Items") or []:
            found[item["model"]["S"]] = _attributes(item)
        if not page.get("LastEvaluatedKey"):
            return found
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _attributes(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _value(value) for name, value in item.items() if name != "model"}


def _attribute(value: Any) -> dict[str, str]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return {"S": str(value)}
    return {"N": str(value)}


def _value(attribute: Mapping[str, Any]) -> Any:
    if "N" in attribute:
        number = float(attribute["N"])
        return int(number) if number.is_integer() else number
    if "S" in attribute:
        return attribute["S"]
    return None
