"""Run the project's Lambda handlers when moto "invokes" a function.

moto without Docker answers Lambda invocations with a canned echo. Here the invocation is
dispatched to the real handler named by the function's ``Handler`` setting, with the
function's environment and as the function's execution role (a session of the role the
template gives it, see ``identities``), and a handler exception is returned the way Lambda
returns it (``X-Amz-Function-Error: Unhandled`` and an ``errorType``/``errorMessage``
payload), so Step Functions sees the same error names as on AWS.

Two ways to run a handler, chosen by where moto is:

* In this process (``mock_aws``, the workflow tests): moto is reachable from this process
  only, so the handler runs here, one invocation at a time (see ``_InProcess``).
* Behind moto's server (local mode, ``LocalLambdaRuntime.isolate``): each invocation runs in
  an *execution environment*, a worker process of the function (``lambda_worker``) holding
  the function's environment variables and its role's credentials, as Lambda runs them
  ("Lambda execution environment",
  https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html). One
  environment runs one invocation at a time and is reused warm; concurrent invocations of a
  function get more environments. What a handler prints (Powertools' log records and EMF
  metrics) is the environment's output, handed line by line to ``on_output``.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import traceback
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Queue
from typing import Any, Callable

from . import identities

LAMBDAS_DIR = Path(__file__).resolve().parents[3] / "lambdas"
TOOLS_DIR = Path(__file__).resolve().parents[2]
# Lambda's init phase is limited to 10 s; importing boto3, Powertools and pydantic on a
# loaded laptop can take longer, so an environment gets this long to load its handler.
INIT_SECONDS = 60
# Credentials and settings of the user's shell that a function's environment must not inherit.
_NOT_INHERITED = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE",
                  "AWS_DEFAULT_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "POWERTOOLS_SERVICE_NAME",
                  "LOG_LEVEL", "POWERTOOLS_LOG_LEVEL", "POWERTOOLS_METRICS_DISABLED")

OutputSink = Callable[["LocalFunction", str], None]


@dataclass
class LocalFunction:
    name: str
    handler: str  # "package.module.function"
    environment: dict[str, str] = field(default_factory=dict)
    memory_mb: int = 512
    timeout_seconds: int = 60
    role_arn: str | None = None  # the execution role; None runs with whatever credentials resolve
    logical_id: str | None = None  # the template's logical id

    def load(self) -> Callable[[Any, Any], Any]:
        module, _, attribute = self.handler.rpartition(".")
        return getattr(importlib.import_module(module), attribute)

    @property
    def service_name(self) -> str:
        """The name its log records and metrics are under: POWERTOOLS_SERVICE_NAME, else its logical id."""
        return self.environment.get("POWERTOOLS_SERVICE_NAME") or self.logical_id or self.name


@dataclass
class LambdaContext:
    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = ""
    deadline: float = field(default=0.0)  # time.monotonic() when the invocation times out; 0: timeout_seconds from now

    def get_remaining_time_in_millis(self) -> int:
        if not self.deadline:
            return self.timeout_seconds * 1000
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def unhandled(exc: BaseException) -> dict[str, Any]:
    """The payload Lambda answers a handler's uncaught exception with."""
    return {"errorType": type(exc).__name__, "errorMessage": str(exc), "stackTrace": traceback.format_exception(exc)[-3:]}


class LocalLambdaRuntime:
    """Holds the functions and patches moto's Docker-less Lambda backend to call them."""

    def __init__(self, region: str = "us-east-1", account: str = "123456789012") -> None:
        self.functions: dict[str, LocalFunction] = {}
        self.region = region
        self.account = account
        self.invocations: list[tuple[str, Any]] = []
        self._in_process = _InProcess()
        self._pools: dict[str, _Pool] | None = None  # set by isolate()
        self._on_output: OutputSink | None = None
        self._endpoint: str | None = None
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

    def isolate(self, endpoint: str, on_output: OutputSink) -> None:
        """From now on, run invocations in execution environments (worker processes) that reach
        AWS at ``endpoint`` (moto's server); every line they print goes to ``on_output``."""
        self._endpoint, self._on_output = endpoint, on_output
        self._pools = {}

    def close(self) -> None:
        """End every execution environment."""
        pools, self._pools = self._pools or {}, None
        for pool in pools.values():
            pool.close()

    def keep_warm(self, name: str, spares: int = 1) -> None:
        """Keep ``spares`` execution environments of ``name`` idle and ready, each started in
        the background when one is taken (like provisioned concurrency), so that a request
        arriving while the others are busy does not wait for a cold start (importing the
        function's code takes seconds here)."""
        pool = self._pool(self.functions[name])
        pool.spares = spares
        pool.top_up()

    def _pool(self, function: LocalFunction) -> "_Pool":
        if self._pools is None:
            raise RuntimeError("execution environments run only behind moto's server (isolate)")
        pool = self._pools.get(function.name)
        return pool if pool is not None else self._pools.setdefault(function.name, _Pool(self, function))

    def invoke(self, function_name: str, body: Any, response_headers: dict[str, str] | None = None) -> bytes:
        name = function_name.split(":function:")[-1].split(":")[0]
        function = self.functions.get(name)
        if function is None:
            raise KeyError(f"no local handler for Lambda function {function_name!r}")
        event = json.loads(body) if body else {}
        self.invocations.append((name, event))
        if self._pools is not None:
            answer = self._pool(function).invoke(event)
        else:
            answer = self._in_process.invoke(self, function, event)
        if "error" in answer:
            if response_headers is not None:
                response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(answer["error"]).encode()
        return answer["result"].encode()

    def context(self, function: LocalFunction, request_id: str | None = None) -> LambdaContext:
        return LambdaContext(function.name, function.memory_mb, f"arn:aws:lambda:{self.region}:{self.account}:function:{function.name}",
                             function.timeout_seconds, **({"aws_request_id": request_id} if request_id else {}))

    def environment(self, function: LocalFunction) -> dict[str, str]:
        """What the Lambda runtime sets for every function (the region is what boto3 and the
        handlers read), then the function's own variables."""
        return {"AWS_REGION": self.region, "AWS_LAMBDA_FUNCTION_NAME": function.name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb), **function.environment}


class _InProcess:
    """Handlers run in this process, where ``mock_aws`` is. Environment variables are
    process-wide and the functions' modules keep per-invocation state in module and class
    globals (Powertools' resolver keeps the current event on a class, Metrics one metric set
    for all instances), so one invocation at a time keeps each its own."""

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def invoke(self, runtime: LocalLambdaRuntime, function: LocalFunction, event: Any) -> dict[str, Any]:
        context = runtime.context(function)
        environment = runtime.environment(function)
        identity = identities.assume(function.role_arn, "lambda.amazonaws.com", session_name=function.name) if function.role_arn else None
        with self._lock:
            saved = {key: os.environ.get(key) for key in environment}
            os.environ.update(environment)
            try:
                with identities.acting_as(identity) if identity else nullcontext():
                    result = function.load()(event, context)
                return {"result": json.dumps(result, default=str)}
            except Exception as exc:  # reported as Lambda reports an unhandled error
                return {"error": unhandled(exc)}
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value


class _Pool:
    """A function's execution environments: idle ones are reused, a busy function gets another."""

    def __init__(self, runtime: LocalLambdaRuntime, function: LocalFunction) -> None:
        self.runtime, self.function = runtime, function
        self._idle: list[_Environment] = []
        self._all: list[_Environment] = []
        self._lock = threading.Lock()
        self._closed = False
        self.spares = 0  # idle environments kept ready (keep_warm)
        self._warming = 0

    def invoke(self, event: Any) -> dict[str, Any]:
        with self._lock:
            environment = self._idle.pop() if self._idle else None
        self.top_up()
        if environment is None:
            environment = self._start()
        answer = environment.invoke(event)
        with self._lock:
            if environment.alive and not self._closed:
                self._idle.append(environment)
            else:
                environment.close()
                if environment in self._all:
                    self._all.remove(environment)
        return answer

    def top_up(self) -> None:
        """Start environments in the background until ``spares`` are idle or on their way."""
        with self._lock:
            wanted = 0 if self._closed else self.spares - len(self._idle) - self._warming
            self._warming += max(0, wanted)
        for _ in range(max(0, wanted)):
            threading.Thread(target=self._warm, daemon=True, name=f"lambda-warm-{self.function.name}").start()

    def _warm(self) -> None:
        try:
            environment = self._start()
        finally:
            with self._lock:
                self._warming -= 1
        with self._lock:
            if environment.alive and not self._closed:
                self._idle.append(environment)
                return
        environment.close()

    def _start(self) -> "_Environment":
        runtime, function = self.runtime, self.function
        identity = identities.assume(function.role_arn, "lambda.amazonaws.com", session_name=function.name) if function.role_arn else None
        inherited = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
        # Lambda hands the role's session to the function in these variables.
        credentials = {"AWS_ACCESS_KEY_ID": identity.access_key_id, "AWS_SECRET_ACCESS_KEY": identity.secret_access_key,
                       **({"AWS_SESSION_TOKEN": identity.session_token} if identity.session_token else {})} if identity else {}
        paths = [str(LAMBDAS_DIR), str(TOOLS_DIR), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        environment = {**inherited, "AWS_ENDPOINT_URL": str(runtime._endpoint), "PYTHONUNBUFFERED": "1",
                       "PYTHONPATH": os.pathsep.join(paths), **credentials, **runtime.environment(function)}
        started = _Environment(function, runtime, environment, runtime._on_output)
        with self._lock:
            self._all.append(started)
        return started

    def close(self) -> None:
        with self._lock:
            self._closed = True
            environments, self._all, self._idle = self._all, [], []
        for environment in environments:
            environment.close()


class _Environment:
    """One worker process of a function (``lambda_worker``): requests on its stdin; its stdout
    and stderr are one pipe carrying what the handler prints and, after each invocation, one
    answer line marked with a token only this process knows."""

    def __init__(self, function: LocalFunction, runtime: LocalLambdaRuntime, environment: dict[str, str], on_output: OutputSink | None) -> None:
        self.function = function
        self._runtime = runtime
        self._on_output = on_output
        self._token = secrets.token_hex(16)
        self._answers: Queue[dict[str, Any]] = Queue()
        spec = {"handler": function.handler, "token": self._token}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "fashion_pipeline_tools.local.lambda_worker", json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environment, cwd=str(LAMBDAS_DIR.parent),
            text=True, encoding="utf-8", errors="replace", bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True, name=f"lambda-output-{function.name}")
        self._reader.start()
        self.alive = True
        self._ready = self._answer(INIT_SECONDS)  # the init phase: the handler's module imported

    def _read(self) -> None:
        assert self._process.stdout is not None
        marker = f"{self._token} "
        for line in self._process.stdout:
            line = line.rstrip("\n")
            if line.startswith(marker):
                self._answers.put(json.loads(line[len(marker):]))
            elif line and self._on_output is not None:
                try:
                    self._on_output(self.function, line)
                except Exception:  # noqa: BLE001 - output is advisory; the invocation goes on
                    pass
        self._answers.put({"exited": self._process.wait()})

    def _answer(self, seconds: float) -> dict[str, Any]:
        try:
            answer = self._answers.get(timeout=seconds)
        except Empty:
            self.close()
            return {"error": {"errorType": "Sandbox.Timedout", "errorMessage": f"Task timed out after {seconds:.2f} seconds"}}
        if "exited" in answer:
            self.alive = False
            return {"error": {"errorType": "Runtime.ExitError", "errorMessage": f"RequestId: - Error: Runtime exited with error: exit status {answer['exited']}"}}
        return answer

    def invoke(self, event: Any) -> dict[str, Any]:
        if "error" in self._ready:  # the handler could not be imported: every invocation says so
            self.alive = False
            return self._ready
        context = self._runtime.context(self.function)
        request = {"event": event, "context": {"function_name": context.function_name, "memory_limit_in_mb": context.memory_limit_in_mb,
                                               "invoked_function_arn": context.invoked_function_arn,
                                               "timeout_seconds": context.timeout_seconds, "aws_request_id": context.aws_request_id}}
        try:
            assert self._process.stdin is not None
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
        except (OSError, ValueError):
            self.alive = False
            return self._answer(1)
        return self._answer(self.function.timeout_seconds)

    def close(self) -> None:
        self.alive = False
        if self._process.poll() is None:
            self._process.kill()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


class ModelViolation(ValueError):
    """A handler called AWS with parameters botocore's model refuses (AWS would too)."""


_validating = False


def _validate_calls_made_by_handlers(always: bool = False) -> None:
    """Every boto3 call a handler makes during an invocation is checked against botocore's
    model first, strictly (enums, patterns, lengths; see ``service_model``), so a call AWS
    would refuse fails here even where moto would have accepted it. In this process the calls
    of an invocation are those made as its identity; in an execution environment
    (``always``) every call is a handler's."""
    global _validating
    if _validating:
        return
    from botocore.client import BaseClient

    from .service_model import validate_request

    make_api_call = BaseClient._make_api_call

    def checked(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        if always or identities.current() is not None:
            violations = validate_request(self.meta.service_model.service_name, operation_name, api_params)
            if violations:
                raise ModelViolation(f"{self.meta.service_model.service_name}.{operation_name}: " + "; ".join(violations))
        return make_api_call(self, operation_name, api_params)

    BaseClient._make_api_call = checked  # type: ignore[method-assign]
    _validating = True
