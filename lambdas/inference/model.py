"""AWS side of the models: the SSM pointer, Rekognition status and listings, the activity table.

Shared by the API function (``handler``) and the idle auto-stop (``autostop``). What a
container keeps between requests lives in a ``Runtime``: clients, the pointer (cached for
``POINTER_TTL_SECONDS``) and the time of its last activity write (at most one a minute).
Both clocks are injectable so tests can move time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import botocore.session
from aws_lambda_powertools import Logger
from botocore.config import Config
from botocore.exceptions import ClientError

from fashion_pipeline.lifecycle import NOT_FOUND, ModelPointer, parse_pointer

logger = Logger(child=True)

THROTTLING = frozenset({"ThrottlingException", "ProvisionedThroughputExceededException", "LimitExceededException", "TooManyRequestsException"})
ACTIVITY_INTERVAL_SECONDS = 60.0

# API Gateway gives up after 29 s: each call's worst case (attempts x (connect + read))
# stays under that, so the caller gets our answer (429, 500), not a gateway timeout.
_CONFIGS = {
    "rekognition": Config(connect_timeout=2, read_timeout=10, retries={"mode": "standard", "total_max_attempts": 2}),
    "s3": Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 2}),
    "ssm": Config(connect_timeout=1, read_timeout=3, retries={"mode": "standard", "total_max_attempts": 2}),
    "dynamodb": Config(connect_timeout=1, read_timeout=3, retries={"mode": "standard", "total_max_attempts": 2}),
}


def error_code(exc: BaseException) -> str:
    return exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _number(name: str, default: float, minimum: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum:g}, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    model_parameter: str
    dataset_bucket: str
    activity_table: str
    auto_start: bool = False
    cors_origin: str = ""
    pointer_ttl_seconds: float = 60.0
    emulated: bool = False
    idle_minutes: int = 30

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            model_parameter=os.environ.get("MODEL_PARAMETER", ""),
            dataset_bucket=os.environ.get("DATASET_BUCKET", ""),
            activity_table=os.environ.get("ACTIVITY_TABLE", ""),
            auto_start=_flag(os.environ.get("AUTO_START")),
            cors_origin=os.environ.get("CORS_ORIGIN", "").strip(),
            pointer_ttl_seconds=_number("POINTER_TTL_SECONDS", 60.0, 0.0),
            emulated=_flag(os.environ.get("CUSTOM_LABELS_EMULATED")),
            idle_minutes=int(_number("IDLE_MINUTES", 30, 1)),
        )


class PointerCache:
    """The model pointer, read at most once per ``ttl`` seconds per container.

    "Nothing deployed" is cached too. When a refresh fails and an earlier value exists, the
    earlier value is served (and the refresh retried after another ``ttl``) rather than
    failing requests because SSM hiccuped.
    """

    def __init__(self, load: Callable[[], ModelPointer | None], ttl: float, clock: Callable[[], float]) -> None:
        self._load, self._ttl, self._clock = load, ttl, clock
        self._value: ModelPointer | None = None
        self._loaded_at: float | None = None
        self.loads = 0

    def get(self) -> ModelPointer | None:
        now = self._clock()
        if self._loaded_at is not None and now - self._loaded_at < self._ttl:
            return self._value
        try:
            value = self._load()
        except Exception:
            if self._loaded_at is None:
                raise
            logger.warning("model pointer refresh failed; serving the cached pointer", exc_info=True)
            self._loaded_at = now
            return self._value
        self.loads += 1
        self._value, self._loaded_at = value, now
        return value

    def invalidate(self) -> None:
        self._loaded_at = None


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


class Runtime:
    """What one container keeps between invocations."""

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        clients: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.clock, self.wall = clock, wall
        self._clients: dict[str, Any] = dict(clients or {})
        self.pointer = PointerCache(self.read_pointer, self.settings.pointer_ttl_seconds, clock)
        self.activity = ActivityRecorder(self._write_activity, clock, wall)

    def client(self, name: str) -> Any:
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = _session().create_client(name, config=_CONFIGS.get(name))
        return client

    # -- pointer and status -------------------------------------------------------------
    def read_pointer(self) -> ModelPointer | None:
        return read_pointer(self.client("ssm"), self.settings.model_parameter)

    def describe(self, pointer: ModelPointer) -> dict[str, Any] | None:
        return describe_version(self.client("rekognition"), pointer)

    def list_projects(self) -> list[str]:
        return project_arns(self.client("rekognition"))

    def list_versions(self, project_arn: str) -> list[dict[str, Any]]:
        return project_versions(self.client("rekognition"), project_arn)

    # -- activity -----------------------------------------------------------------------
    def _write_activity(self, model_arn: str, epoch: int) -> None:
        record_request(self.client("dynamodb"), self.settings.activity_table, model_arn, epoch)

    def record(self, model_arn: str, **attributes: Any) -> None:
        record(self.client("dynamodb"), self.settings.activity_table, model_arn, **attributes)

    def read_activity(self, model_arn: str) -> dict[str, Any]:
        return read_activity(self.client("dynamodb"), self.settings.activity_table, model_arn)

    def read_all_activity(self) -> dict[str, dict[str, Any]]:
        return read_all_activity(self.client("dynamodb"), self.settings.activity_table)


@lru_cache(maxsize=1)
def _session() -> Any:
    """One botocore session per container. botocore rather than boto3: boto3 adds nothing
    for these calls but its import (s3transfer and friends, ~80 ms of cold start)."""
    return botocore.session.get_session()


def read_pointer(ssm: Any, name: str) -> ModelPointer | None:
    try:
        value = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except ClientError as exc:
        if error_code(exc) == "ParameterNotFound":
            return None
        raise
    return parse_pointer(value)


def describe_version(rekognition: Any, pointer: ModelPointer) -> dict[str, Any] | None:
    """The pointer's version as DescribeProjectVersions describes it, or None when gone."""
    try:
        answer = rekognition.describe_project_versions(ProjectArn=pointer.project_arn, VersionNames=[pointer.version_name])
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":  # the project itself is gone
            return None
        raise
    descriptions = answer.get("ProjectVersionDescriptions") or []
    for description in descriptions:
        if description.get("ProjectVersionArn") == pointer.project_version_arn:
            return description
    return descriptions[0] if descriptions else None


def project_arns(rekognition: Any) -> list[str]:
    """Every Custom Labels project of the account and region (DescribeProjects, every page)."""
    return [str(p["ProjectArn"]) for p in _pages(rekognition.describe_projects, "ProjectDescriptions") if p.get("ProjectArn")]


def project_versions(rekognition: Any, project_arn: str) -> list[dict[str, Any]]:
    """Every version of a project (DescribeProjectVersions, every page); none once it is gone."""
    try:
        return _pages(rekognition.describe_project_versions, "ProjectVersionDescriptions", ProjectArn=project_arn)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return []
        raise


def _pages(call: Callable[..., Mapping[str, Any]], key: str, **params: Any) -> list[Any]:
    """The ``key`` items of every page of a NextToken-paginated call."""
    items: list[Any] = []
    while True:
        page = call(**params)
        items += page.get(key) or []
        if not page.get("NextToken"):
            return items
        params["NextToken"] = page["NextToken"]


def status_of(description: Mapping[str, Any] | None) -> str:
    return str(description.get("Status") or "UNKNOWN") if description else NOT_FOUND


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
        if error_code(exc) != "ConditionalCheckFailedException":
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
