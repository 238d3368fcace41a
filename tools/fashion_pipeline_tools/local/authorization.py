"""IAM enforcement in the emulated AWS: moto authenticates every request, ``iam_policy`` decides.

What moto 5 does on its own when IAM is enforced (read in moto/iam/access_control.py and
moto/core/authorization.py; its own docstring lists the gaps):

* it authenticates: the SigV4 signature, and access keys of IAM users or of sessions its STS
  issued (``AssumeRole``);
* it collects the caller's identity-based policies (inline, attached, the user's groups) and
  matches Action and Resource with ``*`` only, case-sensitively;
* the resource is the real ARN only for S3, SQS, IAM and STS; every other request is checked
  against ``"*"``, so a statement scoped to an ARN never grants anything;
* a Condition that fails turns an Allow statement into an explicit deny, and conditions see
  no request context; NotResource, policy variables and resource-based policies are ignored;
* what a call implies elsewhere (SNS encrypting with the caller's KMS grant) is not checked.

So moto keeps authentication, and this module takes the decision: it works out the IAM
action, the resource ARN and the condition context of each request (``_checks``), and asks
``iam_policy.evaluate`` with the caller's identity policies and, for S3, the bucket policy.
An operation without a rule here is checked against resource ``"*"``, which only a
``"Resource": "*"`` grant allows: the strict side, so a missing rule shows up as a denial.

Requests signed by nobody moto knows (the ``testing`` keys of a plain moto test) are refused
while enforcement is on; with it off (moto's default) everything is allowed, as before.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator
from urllib.parse import unquote

from . import iam_policy

_installed = False


@dataclass(frozen=True)
class Check:
    """One authorization question a request asks: may the caller do ``action`` on ``resource``?"""

    action: str
    resource: str
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    """A request as the rules see it."""

    service: str  # the SigV4 signing name ("s3", "states", "monitoring", ...)
    operation: str  # the API operation ("GetObject", "StartExecution", ...)
    params: dict[str, Any]
    path: str
    region: str
    account: str
    headers: Any
    resource: str  # what moto derived: a real ARN for S3/SQS/IAM/STS, else "*"


# The IAM prefix of a signing name where they differ, and IAM actions named unlike their operation.
_PREFIX = {"monitoring": "cloudwatch", "email": "ses"}
_ACTION = {
    ("lambda", "Invoke"): "InvokeFunction",
    ("s3", "HeadBucket"): "ListBucket",
    ("s3", "ListObjects"): "ListBucket",
    ("s3", "ListBuckets"): "ListAllMyBuckets",
    # "You cannot set permissions explicitly for SendMessageBatch, DeleteMessageBatch, or
    # ChangeMessageVisibilityBatch": each is authorized as its single-message action ("Amazon
    # SQS batch actions", https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-batch-api.html).
    ("sqs", "SendMessageBatch"): "SendMessage",
    ("sqs", "DeleteMessageBatch"): "DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "ChangeMessageVisibility",
}


def _arn(call: Call, service: str, resource: str) -> str:
    return f"arn:aws:{service}:{call.region}:{call.account}:{resource}"


def _first(call: Call, *names: str) -> str:
    for name in names:
        value = call.params.get(name)
        if isinstance(value, list):
            value = value[0] if value else None
        if value:
            return str(value)
    return ""


def _simple(check: Callable[[Call], str]) -> Callable[[Call], list[Check]]:
    """A rule whose only resource is one ARN derived from the request."""

    def rule(call: Call) -> list[Check]:
        return [Check(_action(call), check(call))]

    return rule


def _action(call: Call) -> str:
    prefix = _PREFIX.get(call.service, call.service)
    return f"{prefix}:{_ACTION.get((call.service, call.operation), call.operation)}"


def _table(call: Call) -> str:
    return _arn(call, "dynamodb", f"table/{_first(call, 'TableName')}")


def _parameter(call: Call) -> str:
    name = _first(call, "Name")
    return name if name.startswith("arn:") else _arn(call, "ssm", "parameter/" + name.lstrip("/"))


def _state_machine(call: Call) -> str:
    return _first(call, "stateMachineArn")


def _execution(call: Call) -> str:
    return _first(call, "executionArn")


def _function(call: Call) -> str:
    # Lambda is REST: /2015-03-31/functions/<name or ARN>/invocations
    parts = unquote(call.path.split("?", 1)[0]).split("/functions/", 1)
    name = parts[1].split("/invocations", 1)[0].rstrip("/") if len(parts) == 2 else ""
    if name.startswith("arn:"):
        return ":".join(name.split(":")[:7])  # qualifiers are covered by the function ARN's grant
    return _arn(call, "lambda", f"function:{name.split(':')[0]}")


def _topic(call: Call) -> str:
    return _first(call, "TopicArn", "TargetArn")


def _stack(call: Call) -> str:
    name = _first(call, "StackName")
    return name if name.startswith("arn:") else _arn(call, "cloudformation", f"stack/{name}/*")


# Amazon Rekognition resource types, from the Service Authorization Reference ("Actions,
# resources, and condition keys for Amazon Rekognition",
# https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonrekognition.html):
# project/<name>/<created>, project/<name>/dataset/<type>/<created>,
# project/<name>/version/<version>/<created>. CreateProject and DescribeProjects take no
# resource ("*"); creating with Tags also authorizes rekognition:TagResource (see _implied).
def _created_arn(call: Call) -> str:
    """The ARN a Create call with Tags is about to give its resource (for TagResource)."""
    stamp = int(time.time() * 1000)
    if call.operation == "CreateProject":
        return _arn(call, "rekognition", f"project/{_first(call, 'ProjectName')}/{stamp}")
    project = _first(call, "ProjectArn").rsplit("/", 1)[0]
    if call.operation == "CreateProjectVersion":
        return f"{project}/version/{_first(call, 'VersionName')}/{stamp}"
    return f"{project}/dataset/{_first(call, 'DatasetType').lower()}/{stamp}"


def _events(call: Call) -> list[Check]:
    buses = {entry.get("EventBusName") or "default" for entry in call.params.get("Entries") or [] if isinstance(entry, dict)}
    return [Check(_action(call), bus if bus.startswith("arn:") else _arn(call, "events", f"event-bus/{bus}")) for bus in sorted(buses)]


_RULES: dict[tuple[str, str], Callable[[Call], list[Check]]] = {
    **{("dynamodb", op): _simple(_table) for op in (
        "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "DescribeTable", "ConditionCheckItem")},
    **{("ssm", op): _simple(_parameter) for op in ("GetParameter", "PutParameter", "DeleteParameter", "GetParameterHistory")},
    # Authorized on the path itself, which grants every level under it (sysman-paramstore-access.html).
    ("ssm", "GetParametersByPath"): _simple(lambda call: _arn(call, "ssm", "parameter/" + _first(call, "Path").strip("/"))),
    **{("states", op): _simple(_state_machine) for op in ("StartExecution", "DescribeStateMachine", "ListExecutions", "StartSyncExecution")},
    **{("states", op): _simple(_execution) for op in ("DescribeExecution", "GetExecutionHistory", "StopExecution")},
    ("lambda", "Invoke"): _simple(_function),
    ("sns", "Publish"): _simple(_topic),
    ("events", "PutEvents"): _events,
    ("cloudformation", "DescribeStacks"): _simple(_stack),
    ("sqs", "GetQueueUrl"): _simple(lambda call: _arn(call, "sqs", _first(call, "QueueName"))),
    **{("rekognition", op): _simple(lambda call: _first(call, "ProjectArn")) for op in (
        "CreateDataset", "CreateProjectVersion", "DescribeProjectVersions", "DeleteProject")},
    **{("rekognition", op): _simple(lambda call: _first(call, "DatasetArn")) for op in (
        "DescribeDataset", "DeleteDataset", "ListDatasetEntries", "UpdateDatasetEntries")},
    **{("rekognition", op): _simple(lambda call: _first(call, "ProjectVersionArn")) for op in (
        "StartProjectVersion", "StopProjectVersion", "DetectCustomLabels", "DeleteProjectVersion")},
}


def _checks(call: Call) -> list[Check]:
    if call.service == "s3" or call.resource != "*":
        check = Check(_action(call), call.resource, _s3_context(call) if call.service == "s3" else {})
        return [check]
    rule = _RULES.get((call.service, call.operation))
    return rule(call) if rule else [Check(_action(call), "*")]


def _s3_context(call: Call) -> dict[str, Any]:
    context: dict[str, Any] = {}
    acl = call.headers.get("x-amz-acl") if call.headers else None
    if acl:
        context["s3:x-amz-acl"] = acl
    prefix = _first(call, "prefix")
    if prefix:
        context["s3:prefix"] = prefix
    return context


# -- implied checks: what a call makes the service do with the caller's own permissions ----------
_encryption_keys: dict[str, str] = {}  # topic ARN -> KMS key ARN (from the template)


def register_topic_key(topic_arn: str, key_arn: str) -> None:
    """SNS encrypts messages to this topic with this KMS key, using the publisher's permissions."""
    _encryption_keys[topic_arn] = key_arn


def _implied(call: Call, checks: list[Check]) -> list[Check]:
    if call.service == "rekognition" and call.operation.startswith("Create") and call.params.get("Tags"):
        tags = call.params["Tags"]
        context = {"aws:TagKeys": sorted(tags), **{f"aws:RequestTag/{k}": v for k, v in tags.items()}}
        return [Check("rekognition:TagResource", _created_arn(call), context)]
    # "To publish to an encrypted topic, the publisher needs kms:GenerateDataKey* and
    # kms:Decrypt on the key" (SNS developer guide, "Encryption at rest", key management).
    if (call.service, call.operation) == ("sns", "Publish") and checks[0].resource in _encryption_keys:
        key = _encryption_keys[checks[0].resource]
        via = {"kms:ViaService": f"sns.{call.region}.amazonaws.com", "kms:CallerAccount": call.account}
        return [Check("kms:GenerateDataKey", key, via), Check("kms:Decrypt", key, via)]
    return []


# -- the caller ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Caller:
    """An authenticated principal with the identity policies it had when it was resolved."""

    arn: str
    account: str
    policies: tuple[Any, ...]

    @classmethod
    def of(cls, access_key: Any, account: str) -> "Caller":
        """The principal behind a key moto authenticated (its IAMUserAccessKey or AssumedRoleAccessKey)."""
        return cls(access_key.arn, account, _policy_documents(access_key))

    def decide(self, check: Check, resource_policy: Any = None) -> iam_policy.Decision:
        request = self.request(check)
        return iam_policy.evaluate(request, self.policies, resource_policy)

    def request(self, check: Check) -> iam_policy.Request:
        context = {
            "aws:SecureTransport": True,  # AWS endpoints are HTTPS; the local endpoint stands for them
            "aws:PrincipalArn": self.arn,
            "aws:PrincipalAccount": self.account,
            "aws:CurrentTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "aws:EpochTime": int(time.time()),
            **check.context,
        }
        return iam_policy.Request(check.action, check.resource, self.arn, self.account, context)

    def denial(self, check: Check, resource_policy: Any = None) -> str | None:
        """The AccessDenied message for this check, or None when it is allowed."""
        decision = self.decide(check, resource_policy)
        return None if decision.allowed else iam_policy.access_denied_message(self.request(check), decision)


def _policy_documents(access_key: Any) -> tuple[Any, ...]:
    documents = []
    for policy in access_key.collect_policies():
        if isinstance(policy, str):
            documents.append(policy)
        elif isinstance(policy, dict):
            documents.append(policy.get("policy_document") or policy)
        else:  # a managed policy: its default version
            documents.append(next(v.document for v in policy.versions if v.is_default))
    return tuple(documents)


def caller_of(headers: Any, account: str, region: str) -> Caller | None:
    """The caller of a request as moto authenticated it, or None while enforcement is off."""
    if not enforcing_now():
        return None
    from moto.iam.access_control import create_access_key

    authorization = headers.get("Authorization", "")
    key_id = authorization.partition("Credential=")[2].partition("/")[0]
    return Caller.of(create_access_key(account_id=account, partition="aws", access_key_id=key_id, headers=headers), account)


def s3_denial(caller: Caller | None, action: str, bucket: str, key: str) -> str | None:
    """Why ``caller`` may not do ``action`` on ``s3://bucket/key`` (a service acting with the
    caller's permissions asks this), or None when allowed or while enforcement is off."""
    if caller is None:
        return None
    return caller.denial(Check(action, f"arn:aws:s3:::{bucket}/{key}"), _bucket_policy_of(caller.account, bucket))


# -- moto ------------------------------------------------------------------------------------------
def _bucket_policy(call: Call) -> Any:
    if call.service != "s3" or not call.resource.startswith("arn:aws:s3:::"):
        return None
    return _bucket_policy_of(call.account, call.resource[len("arn:aws:s3:::"):].split("/", 1)[0])


def _bucket_policy_of(account: str, bucket: str) -> Any:
    from moto.s3.models import s3_backends

    try:
        found = s3_backends[account]["aws"].get_bucket(bucket)
    except Exception:  # noqa: BLE001 - no such bucket: S3 answers that after authorization
        return None
    return found.policy.decode() if isinstance(found.policy, bytes) else found.policy


def _params(request: Any) -> dict[str, Any]:
    body = request._body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body.lstrip().startswith("{"):
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
    data = request._data
    return dict(data) if isinstance(data, dict) else {}


def _check_action_permitted(self: Any, resource: str) -> None:
    """Replaces moto's IAMRequestBase.check_action_permitted."""
    service, _, operation = self._action.partition(":")
    if self._action == "sts:GetCallerIdentity":  # always allowed, even under an explicit deny
        return
    call = Call(service, operation, _params(self), self._path, self._region, self.account_id, self._headers, resource)
    caller = Caller.of(self._access_key, self.account_id)
    checks = _checks(call)
    for check in checks + _implied(call, checks):
        message = caller.denial(check, _bucket_policy(call) if check.action.startswith("s3:") else None)
        if message is not None:
            raise _denied(service, message, self)


def _denied(service: str, message: str, request: Any) -> Exception:
    """AccessDenied as each service spells it."""
    from moto.core.exceptions import JsonRESTError
    from moto.core.exceptions import _RESTError as RESTError  # moto's XML error; it has no public name

    if service == "s3":
        from moto.s3.exceptions import S3ClientError

        return S3ClientError("AccessDenied", message)
    if service in ("sns",):
        error = RESTError("AuthorizationError", message)
        error.code = 403
        return error
    if service in ("sqs", "sts", "iam", "cloudformation", "monitoring"):
        error = RESTError("AccessDenied", message)
        error.code = 403
        return error
    error = JsonRESTError("AccessDeniedException", message)
    error.code = 400 if service == "dynamodb" else 403
    return error


def install() -> None:
    """Put this module's decision into moto (idempotent); enforcement itself is ``enforcing()``."""
    global _installed
    if _installed:
        return
    from moto.iam.access_control import IAMRequestBase

    IAMRequestBase.check_action_permitted = _check_action_permitted  # type: ignore[method-assign]
    create_aws_request = IAMRequestBase._create_aws_request

    def request_as_signed(self: Any) -> Any:
        # moto rebuilds the signed request from ``body or data``: for a bodiless GET it hashes
        # the parsed query parameters as if they were the payload (Lambda's ListFunctions in
        # moto's server), so the signature never matches. The signed payload is the raw body.
        if not self._body and self._method in ("GET", "HEAD", "DELETE"):
            saved, self._data = self._data, b""
            try:
                return create_aws_request(self)
            finally:
                self._data = saved
        return create_aws_request(self)

    IAMRequestBase._create_aws_request = request_as_signed  # type: ignore[method-assign]
    _installed = True


def enforcing_now() -> bool:
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    return ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT


def enable() -> None:
    """From now on every request is authenticated and authorized (moto's documented switch)."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    install()
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin.request_count = 0


def disable() -> None:
    from moto import settings

    settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")


@contextmanager
def enforcing() -> Iterator[None]:
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    saved = settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count
    enable()
    try:
        yield
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count = saved
