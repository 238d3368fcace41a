"""What a container keeps between invocations, and the AWS reads both functions share.

A ``Runtime`` holds the clients, every dataset's model pointer (cached for ``pointer_ttl_seconds``) and the
activity recorder; both clocks are injectable so tests can move time. ``current()`` is the
container's runtime, ``reset()`` a fresh one (tests and the benchmark inject clients here).
``aws_call(service)`` is the one place an AWS throttling error becomes ``errors.Throttled``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import botocore.session
from aws_lambda_powertools import Logger
from botocore.config import Config
from botocore.exceptions import ClientError

from fashion_pipeline.lifecycle import NOT_FOUND, ModelPointer, Pointers, parse_pointers
from inference import activity
from inference.errors import Throttled
from inference.settings import Settings

logger = Logger(child=True)

# The throttling errors of the calls the API makes, by service. Rekognition's are in its
# botocore model (DetectCustomLabels, DescribeProjectVersions, StartProjectVersion ...);
# ThrottlingException is also one of the errors common to every AWS API (SSM:
# https://docs.aws.amazon.com/systems-manager/latest/APIReference/CommonErrors.html); S3 says
# SlowDown (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html#ErrorCodeList).
THROTTLING = {
    "Rekognition": frozenset({"ThrottlingException", "ProvisionedThroughputExceededException", "LimitExceededException"}),
    "SSM": frozenset({"ThrottlingException"}),
    "S3": frozenset({"SlowDown"}),
}

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


@contextmanager
def aws_call(service: str) -> Iterator[None]:
    """Run AWS calls to ``service``; its throttling errors raise ``Throttled`` (429)."""
    try:
        yield
    except ClientError as exc:
        if error_code(exc) in THROTTLING[service]:
            raise Throttled(service) from None
        raise


class PointerCache:
    """Every dataset's model pointer, listed at most once per ``ttl`` seconds per container
    (one GetParametersByPath call, a page per 10 datasets).

    "Nothing deployed" is cached too. When a refresh fails and an earlier value exists, the
    earlier value is served (and the refresh retried after another ``ttl``) rather than
    failing requests because SSM hiccuped.
    """

    def __init__(self, load: Callable[[], Pointers], ttl: float, clock: Callable[[], float]) -> None:
        self._load, self._ttl, self._clock = load, ttl, clock
        self._value = Pointers()
        self._loaded_at: float | None = None
        self.loads = 0

    def get(self) -> Pointers:
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
        healed = value.keeping(self._value)
        if healed is not value:
            logger.warning("a model pointer became unreadable; serving its earlier value", extra={"broken": dict(value.broken)})
        self._value, self._loaded_at = healed, now
        return healed

    def invalidate(self) -> None:
        self._loaded_at = None


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
        self.pointers = PointerCache(self.read_pointers, self.settings.pointer_ttl_seconds, clock)
        self.activity = activity.ActivityRecorder(self._write_activity, clock, wall)

    def client(self, name: str) -> Any:
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = _session().create_client(name, config=_CONFIGS.get(name))
        return client

    # -- pointer and status -------------------------------------------------------------
    def read_pointers(self) -> Pointers:
        return read_pointers(self.client("ssm"), self.settings.model_parameter_prefix)

    def describe(self, pointer: ModelPointer) -> dict[str, Any] | None:
        return describe_version(self.client("rekognition"), pointer)

    def list_projects(self) -> list[str]:
        return project_arns(self.client("rekognition"))

    def list_versions(self, project_arn: str) -> list[dict[str, Any]]:
        return project_versions(self.client("rekognition"), project_arn)

    # -- activity -----------------------------------------------------------------------
    def _write_activity(self, model_arn: str, epoch: int) -> None:
        activity.record_request(self.client("dynamodb"), self.settings.activity_table, model_arn, epoch)

    def record(self, model_arn: str, **attributes: Any) -> None:
        activity.record(self.client("dynamodb"), self.settings.activity_table, model_arn, **attributes)

    def read_activity(self, model_arn: str) -> dict[str, Any]:
        return activity.read_activity(self.client("dynamodb"), self.settings.activity_table, model_arn)

    def read_all_activity(self) -> dict[str, dict[str, Any]]:
        return activity.read_all_activity(self.client("dynamodb"), self.settings.activity_table)


_current: Runtime | None = None


def current() -> Runtime:
    """The container's runtime, made from the environment on first use."""
    return _current if _current is not None else reset()


def reset(**kwargs: Any) -> Runtime:
    """A fresh container state (tests and the benchmark inject clients and clocks here)."""
    global _current
    _current = Runtime(**kwargs)
    return _current


@lru_cache(maxsize=1)
def _session() -> Any:
    """One botocore session per container. botocore rather than boto3: boto3 adds nothing
    for these calls but its import (s3transfer and friends, ~80 ms of cold start)."""
    return botocore.session.get_session()


def read_pointers(ssm: Any, prefix: str) -> Pointers:
    """Every dataset's pointer: the parameters one level under ``prefix`` (GetParametersByPath,
    not recursive, every page; none yet is an empty listing, not an error)."""
    return parse_pointers(prefix, _pages(ssm.get_parameters_by_path, "Parameters", Path=prefix.rstrip("/"), Recursive=False, MaxResults=10))


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
