"""Run the project's Lambda handlers in this process when moto "invokes" a function.

moto without Docker answers Lambda invocations with a canned echo. Here the invocation is
dispatched to the real handler named by the function's ``Handler`` setting, with the
function's environment and as the function's execution role (a session of the role the
template gives it, see ``identities``), and a handler exception is returned the way Lambda
returns it (``X-Amz-Function-Error: Unhandled`` and an ``errorType``/``errorMessage``
payload), so Step Functions sees the same error names as on AWS.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import traceback
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import identities

LAMBDAS_DIR = Path(__file__).resolve().parents[3] / "lambdas"


@dataclass
class LocalFunction:
    name: str
    handler: str  # "package.module.function"
    environment: dict[str, str] = field(default_factory=dict)
    memory_mb: int = 512
    timeout_seconds: int = 60
    role_arn: str | None = None  # the execution role; None runs with whatever credentials resolve

    def load(self) -> Callable[[Any, Any], Any]:
        module, _, attribute = self.handler.rpartition(".")
        return getattr(importlib.import_module(module), attribute)


@dataclass
class LambdaContext:
    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = ""

    def get_remaining_time_in_millis(self) -> int:
        return self.timeout_seconds * 1000


class LocalLambdaRuntime:
    """Holds the functions and patches moto's Docker-less Lambda backend to call them."""

    def __init__(self, region: str = "us-east-1", account: str = "123456789012") -> None:
        self.functions: dict[str, LocalFunction] = {}
        self.region = region
        self.account = account
        self.invocations: list[tuple[str, Any]] = []
        # Environment variables are process-wide: one invocation at a time keeps each
        # handler's environment its own.
        self._lock = threading.RLock()
        if str(LAMBDAS_DIR) not in sys.path:
            sys.path.insert(0, str(LAMBDAS_DIR))

    def add(self, function: LocalFunction) -> None:
        self.functions[function.name] = function

    def install(self) -> "LocalLambdaRuntime":
        from moto.awslambda_simple.models import LambdaSimpleBackend

        _validate_calls_made_by_handlers()
        runtime = self

        def invoke(backend: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: dict[str, str]) -> bytes:
            return runtime.invoke(function_name, body, response_headers)

        LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
        return self

    def invoke(self, function_name: str, body: Any, response_headers: dict[str, str] | None = None) -> bytes:
        name = function_name.split(":function:")[-1].split(":")[0]
        function = self.functions.get(name)
        if function is None:
            raise KeyError(f"no local handler for Lambda function {function_name!r}")
        event = json.loads(body) if body else {}
        self.invocations.append((name, event))
        context = LambdaContext(name, function.memory_mb, f"arn:aws:lambda:{self.region}:{self.account}:function:{name}", function.timeout_seconds)
        # What the Lambda runtime sets for every function (the region is what boto3 and the
        # handlers read); credentials are not in the environment here but in the identity.
        environment = {"AWS_REGION": self.region, "AWS_LAMBDA_FUNCTION_NAME": name, **function.environment}
        identity = identities.assume(function.role_arn, "lambda.amazonaws.com", session_name=name) if function.role_arn else None
        with self._lock:
            saved = {key: os.environ.get(key) for key in environment}
            os.environ.update(environment)
            try:
                with identities.acting_as(identity) if identity else nullcontext():
                    result = function.load()(event, context)
                return json.dumps(result, default=str).encode()
            except Exception as exc:  # reported as Lambda reports an unhandled error
                if response_headers is not None:
                    response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps({
                    "errorType": type(exc).__name__,
                    "errorMessage": str(exc),
                    "stackTrace": traceback.format_exception(exc)[-3:],
                }).encode()
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value


class ModelViolation(ValueError):
    """A handler called AWS with parameters botocore's model refuses (AWS would too)."""


_validating = False


def _validate_calls_made_by_handlers() -> None:
    """Every boto3 call a handler makes during an invocation is checked against botocore's
    model first, strictly (enums, patterns, lengths; see ``service_model``), so a call AWS
    would refuse fails here even where moto would have accepted it."""
    global _validating
    if _validating:
        return
    from botocore.client import BaseClient

    from .service_model import validate_request

    make_api_call = BaseClient._make_api_call

    def checked(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        if identities.current() is not None:
            violations = validate_request(self.meta.service_model.service_name, operation_name, api_params)
            if violations:
                raise ModelViolation(f"{self.meta.service_model.service_name}.{operation_name}: " + "; ".join(violations))
        return make_api_call(self, operation_name, api_params)

    BaseClient._make_api_call = checked  # type: ignore[method-assign]
    _validating = True
