"""Who calls the emulated AWS: the template's roles, the sessions services open with them,
and the operator (the person or test driving the deployment).

On AWS each function's process gets its execution role's credentials, Step Functions calls
services with the state machine's role, and Lambda polls SQS with the function's role. Here
everything runs in one process, so the identity of a call is a context variable:
``LocalLambdaRuntime`` sets it for the duration of an invocation and botocore signs with it
(``InvocationCredentials``), whichever client object the handler uses — a client cached at
module level by another function signs as the function now running. Threads a handler starts
through ``ThreadPoolExecutor`` carry the identity along, as the threads of a Lambda process
share its credentials. Outside any invocation, credentials resolve as botocore always does.

A service assumes a role only if the role's trust policy lets that service principal do
``sts:AssumeRole`` (checked with ``iam_policy``); the session itself comes straight from
moto's STS backend, as AWS services do not call the public STS API with anyone's keys.
"""

from __future__ import annotations

import contextvars
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from . import iam_policy

ACCOUNT = "123456789012"
OPERATOR_USER = "local-operator"
ADMINISTRATOR = {"Version": "2012-10-17", "Statement": [{"Sid": "Operator", "Effect": "Allow", "Action": "*", "Resource": "*"}]}


@dataclass(frozen=True)
class Identity:
    arn: str  # the session's (or user's) ARN, as it appears in AccessDenied messages
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def client_kwargs(self) -> dict[str, str]:
        kwargs = {"aws_access_key_id": self.access_key_id, "aws_secret_access_key": self.secret_access_key}
        if self.session_token:
            kwargs["aws_session_token"] = self.session_token
        return kwargs


class RoleNotAssumable(PermissionError):
    """The role's trust policy does not admit the service that tried to assume it."""


_current: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("fashion_pipeline_identity", default=None)
_sessions: dict[tuple[str, str], Identity] = {}
_lock = threading.Lock()
_installed = False


def current() -> Identity | None:
    return _current.get()


@contextmanager
def acting_as(identity: Identity) -> Iterator[None]:
    """Every AWS call made in this block (and threads it starts through executors) signs as ``identity``."""
    token = _current.set(identity)
    try:
        yield
    finally:
        _current.reset(token)


def assume(role_arn: str, service: str, *, session_name: str | None = None, source_arn: str | None = None) -> Identity:
    """A session of ``role_arn`` for ``service`` ("lambda.amazonaws.com", "states.amazonaws.com", ...).

    ``source_arn`` is the resource on whose behalf the service assumes the role (a state
    machine): services send it, with the account, for trust policies' confused-deputy
    conditions (aws:SourceArn, aws:SourceAccount).
    """
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    account = role_arn.split(":")[4] or ACCOUNT
    name = session_name or service.split(".")[0]
    with _lock:
        cached = _sessions.get((role_arn, name))
        sts = sts_backends[account]["aws"]
        if cached is not None and any(r.access_key_id == cached.access_key_id for r in sts.assumed_roles):
            return cached  # still known to this moto backend (moto's reset forgets sessions)
        role = iam_backends[account]["aws"].get_role_by_arn(role_arn)
        _check_trust(role_arn, role.assume_role_policy_document, service, account, source_arn)
        assumed = sts.assume_role(region_name="us-east-1", role_session_name=name, role_arn=role_arn, policy="", duration=43200, external_id="")
        identity = Identity(assumed.arn, assumed.access_key_id, assumed.secret_access_key, assumed.session_token)
        _sessions[(role_arn, name)] = identity
        return identity


def _check_trust(role_arn: str, trust_policy: Any, service: str, account: str, source_arn: str | None) -> None:
    context = {"aws:PrincipalServiceName": service, "aws:SourceAccount": account, **({"aws:SourceArn": source_arn} if source_arn else {})}
    request = iam_policy.Request("sts:AssumeRole", role_arn, service, account, context)
    decision = iam_policy.evaluate(request, (), trust_policy)
    if not decision.allowed:
        raise RoleNotAssumable(f"{service} may not assume {role_arn}: its trust policy does not allow it ({decision.reason})")


def operator(*, access_key_id: str | None = None, secret_access_key: str | None = None) -> Identity:
    """An administrator user for whoever drives the deployment (tests, the local-mode user).

    ``access_key_id``/``secret_access_key`` fix the keys (local mode documents ``local``/``local``);
    by default moto issues random ones.
    """
    from moto.iam.models import iam_backends

    iam = iam_backends[ACCOUNT]["aws"]
    try:
        user = iam.get_user(OPERATOR_USER)
    except Exception:  # noqa: BLE001 - moto raises its own NoSuchEntity
        user = iam.create_user(None, OPERATOR_USER, path="/", tags=[])
        iam.put_user_policy(OPERATOR_USER, "Administrator", json.dumps(ADMINISTRATOR))
    for key in user.access_keys:
        if access_key_id is None or key.access_key_id == access_key_id:
            return Identity(user.arn, key.access_key_id, key.secret_access_key)
    key = iam.create_access_key(OPERATOR_USER)
    if access_key_id is not None:
        key.access_key_id, key.secret_access_key = access_key_id, secret_access_key or access_key_id
    return Identity(user.arn, key.access_key_id, key.secret_access_key)


# -- botocore: sign with the identity of the invocation in progress --------------------------------
class InvocationCredentials:
    """Credentials that are those of the current invocation, else what botocore resolved."""

    method = "fashion-pipeline-local-invocation"
    account_id = None

    def __init__(self, fallback: Any) -> None:
        self._fallback = fallback

    def _now(self) -> Any:
        identity = _current.get()
        if identity is not None:
            from botocore.credentials import ReadOnlyCredentials

            return ReadOnlyCredentials(identity.access_key_id, identity.secret_access_key, identity.session_token, None)
        return self._fallback.get_frozen_credentials() if self._fallback is not None else None

    def get_frozen_credentials(self) -> Any:
        return self._now()

    def get_deferred_property(self, name: str) -> Any:
        return lambda: getattr(self, name, None)

    @property
    def access_key(self) -> str | None:
        frozen = self._now()
        return frozen.access_key if frozen else None

    @property
    def secret_key(self) -> str | None:
        frozen = self._now()
        return frozen.secret_key if frozen else None

    @property
    def token(self) -> str | None:
        frozen = self._now()
        return frozen.token if frozen else None


class _InvocationProvider:
    METHOD = InvocationCredentials.method
    CANONICAL_NAME = "FashionPipelineInvocation"

    def __init__(self, rest: Any) -> None:
        self._rest = rest

    def load(self) -> InvocationCredentials:
        try:
            fallback = self._rest.load_credentials()
        except Exception:  # noqa: BLE001 - no fallback: only invocations can sign
            fallback = None
        return InvocationCredentials(fallback)


def install() -> None:
    """Make botocore sign with the current invocation's identity, and executors carry it."""
    global _installed
    if _installed:
        return
    import botocore.credentials as credentials

    original = credentials.create_credential_resolver

    def create_credential_resolver(session: Any, *args: Any, **kwargs: Any) -> Any:
        rest = original(session, *args, **kwargs)
        return credentials.CredentialResolver(providers=[_InvocationProvider(rest)])

    credentials.create_credential_resolver = create_credential_resolver  # type: ignore[assignment]

    submit = ThreadPoolExecutor.submit

    def submit_in_context(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        if _current.get() is None:
            return submit(self, fn, *args, **kwargs)
        context = contextvars.copy_context()
        return submit(self, context.run, fn, *args, **kwargs)

    ThreadPoolExecutor.submit = submit_in_context  # type: ignore[method-assign]
    _installed = True


# -- the template's roles ---------------------------------------------------------------------------
def create_roles(template: Any) -> dict[str, str]:
    """Every AWS::IAM::Role of the template with its inline policies; logical id -> role ARN.

    AWS::IAM::Policy resources become inline policies of the roles they name, as CloudFormation
    attaches them. AWS-managed policy ARNs are attached when moto knows them.
    """
    from moto.iam.models import iam_backends

    iam = iam_backends[template.account]["aws"]
    arns: dict[str, str] = {}
    for lid in template.of_type("AWS::IAM::Role"):
        props = template.properties(lid)
        name = template.name(lid)
        try:
            role = iam.get_role(name)
        except Exception:  # noqa: BLE001 - moto's NoSuchEntity
            role = iam.create_role(
                role_name=name, assume_role_policy_document=json.dumps(props["AssumeRolePolicyDocument"]), path="/",
                permissions_boundary=None, description=props.get("Description", ""), tags=[], max_session_duration="43200",
                linked_service=None,
            )
        for policy in props.get("Policies") or []:
            iam.put_role_policy(name, policy["PolicyName"], json.dumps(policy["PolicyDocument"]))
        for managed in props.get("ManagedPolicyArns") or []:
            try:
                iam.attach_role_policy(managed, name)
            except Exception:  # noqa: BLE001 - an AWS-managed policy moto does not ship
                pass
        arns[lid] = role.arn
    for lid in template.of_type("AWS::IAM::Policy"):
        props = template.properties(lid)
        for role_name in props.get("Roles") or []:
            iam.put_role_policy(role_name, props["PolicyName"], json.dumps(props["PolicyDocument"]))
    return arns
