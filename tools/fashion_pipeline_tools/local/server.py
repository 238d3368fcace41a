"""Local mode: the deployed pipeline, offline, in one process.

moto's server holds the resources of the synthesized stack (buckets, queues, tables, roles
with their policies, the state machine with its synthesized definition, the topic); this
module adds the plumbing AWS would provide — S3 notifications into the queue and a poller
that invokes the converter with real SQS batch events, the request rules (training runs, batch jobs), Lambda
tasks dispatched to the project's handlers — plus the Custom Labels emulator and the
inference API on a local port. Everything a user does against AWS works against it with
``AWS_ENDPOINT_URL`` pointing here.

Each function runs in execution environments of its own, worker processes with its
environment and its role's credentials (``lambda_runtime``), so invocations run concurrently
as on Lambda. stdout carries only the line of endpoints ``local up`` prints; what the
functions print (Powertools' log and EMF metric records) goes to stderr with ``--verbose``,
else nowhere (``FunctionOutput``). All state is moto's, in this process's memory.

IAM is enforced as on AWS: each function runs as its own role, the state machine's tasks as
the machine's role, the queue poller as the converter's role (Lambda polls SQS with the
function's permissions) and each request rule starts executions as its target's role. The
user is an administrator whose keys are ``local``/``local``.

The queues are the template's (``provision.queue_attributes``): a message the converter fails
is not deleted, comes back after the queue's visibility timeout and, after maxReceiveCount
receives, SQS (moto) moves it to the dead-letter queue; local mode then prints one line on
stderr naming the object and the converter's last error. ``FASHION_PIPELINE_LOCAL_VISIBILITY_SCALE``
(a factor, default 1) shortens the visibility timeout the poller receives with, e.g. 0.001
turns the template's 1,820 s into 2 s (never under 1 s), so that retries can be watched; the
template itself is never changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import subprocess
import sys
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote_plus

from fashion_pipeline.layout import STACK_NAME

from . import authorization, identities
from .environment import EmulatedPipeline, emulate
from .template import ACCOUNT, Template

REPO_ROOT = Path(__file__).resolve().parents[3]
# Emulated training takes seconds; the bounds keep every loop within the history budget.
LOCAL_TRAINING = {"poll_seconds": 1, "start_poll_seconds": 1, "training_timeout_hours": 0.1, "wait_timeout_minutes": 2}
REQUESTS_QUEUE = "local-request-relay"  # a prefix: one relay queue per request rule (training, batch)
OPERATOR_KEYS = ("local", "local")  # what the README tells the user to export
VISIBILITY_SCALE_VARIABLE = "FASHION_PIPELINE_LOCAL_VISIBILITY_SCALE"


def synthesized_template(path: str | None = None) -> dict[str, Any]:
    """The stack's template: a given file, or a fresh synthesis of this checkout's app."""
    if path:
        return json.loads(Path(path).read_text())
    outdir = REPO_ROOT / "build" / "local-cdk.out"
    template = outdir / f"{STACK_NAME}.template.json"
    sources = [REPO_ROOT / "app.py", REPO_ROOT / "cdk.json", *REPO_ROOT.glob("infrastructure/*.py")]
    if not template.exists() or template.stat().st_mtime < max(p.stat().st_mtime for p in sources):
        env = {**os.environ, "CDK_OUTDIR": str(outdir), "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
               "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"}
        env.pop("AWS_ENDPOINT_URL", None)
        subprocess.run([sys.executable, "app.py"], cwd=REPO_ROOT, env=env, check=True, capture_output=True)
    return json.loads(template.read_text())


class _EndpointSession:
    """A boto3 session whose clients all talk to the local endpoint, as one identity."""

    def __init__(self, endpoint: str, region: str, identity: identities.Identity | None = None) -> None:
        import boto3

        keys = identity.client_kwargs() if identity else dict(zip(("aws_access_key_id", "aws_secret_access_key"), OPERATOR_KEYS))
        self._session = boto3.Session(region_name=region, **keys)
        self.endpoint = endpoint
        self.region_name = region

    def client(self, name: str, **kwargs: Any) -> Any:
        return self._session.client(name, endpoint_url=self.endpoint, **kwargs)


@dataclass
class LocalPipeline:
    endpoint: str
    api_url: str
    pipeline: EmulatedPipeline
    session: _EndpointSession
    outputs: dict[str, str]
    visibility_scale: float = 1.0  # applied to the queues' visibility timeouts (VISIBILITY_SCALE_VARIABLE)
    output: FunctionOutput = field(default_factory=lambda: FunctionOutput(verbose=False))
    _stops: list[Any] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def info(self) -> dict[str, str]:
        return {
            "aws_endpoint_url": self.endpoint,
            "api_url": self.api_url,
            "dataset_bucket": self.outputs["DatasetBucketName"],
            "artifacts_bucket": self.outputs["ArtifactsBucketName"],
            "state_machine_arn": self.outputs["StateMachineArn"],
            "model_parameter_prefix": self.outputs["ModelParameterPrefix"],
        }

    def client_as(self, role_arn: str, service_principal: str, session_name: str, service: str) -> Any:
        """A client of the local endpoint signing as a session of ``role_arn``, as the AWS
        service ``service_principal`` would use it on the deployment's behalf."""
        identity = identities.assume(role_arn, service_principal, session_name=session_name)
        return _EndpointSession(self.endpoint, self.session.region_name, identity).client(service)

    def shutdown(self) -> None:
        self._stop.set()
        for stop in reversed(self._stops):
            try:
                stop()
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass


def start(*, port: int = 4566, api_port: int = 8000, region: str = "us-east-1", template_path: str | None = None,
          verbose: bool = False) -> LocalPipeline:
    """Start everything; returns once the stack's resources exist and the API answers."""
    from ..webui import ensure_port_free

    # moto's ThreadedMotoServer waits forever when its port is taken (the bind fails in its
    # thread and the ready event never comes), so both ports are checked first.
    if port == api_port:
        raise ValueError(f"--port and --api-port are both {port}")
    for taken in (port, api_port):
        ensure_port_free(taken)
    visibility_scale = _visibility_scale(os.environ.get(VISIBILITY_SCALE_VARIABLE, ""))
    template = synthesized_template(template_path)
    from moto.core.config import default_user_config
    from moto.server import ThreadedMotoServer

    default_user_config["lambda"]["use_docker"] = False
    default_user_config["stepfunctions"]["execute_state_machine"] = True
    endpoint = f"http://127.0.0.1:{port}"
    # The handlers, the SDK tasks of the state machine and the user's own tools all find
    # the emulator through the standard variable.
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, "MOTO_PORT": str(port), "AWS_DEFAULT_REGION": region,
                       "POWERTOOLS_TRACE_DISABLED": "1", "POWERTOOLS_METRICS_NAMESPACE": "FashionPipelineLocal"})
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per emulated AWS call otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    session = _EndpointSession(endpoint, region)
    pipeline = emulate(session, template, region=region, endpoint=endpoint, operator_keys=OPERATOR_KEYS)
    pipeline.custom_labels.settings(dataset_ticks=1, training_ticks=3, start_ticks=1, stop_ticks=1)
    resolver = pipeline.template
    _local_function_settings(pipeline, verbose)
    output = FunctionOutput(verbose)
    # Behind moto's server, each function runs in its own execution environments (processes),
    # so invocations run concurrently as on Lambda (see lambda_runtime).
    pipeline.runtime.isolate(endpoint, output)
    _notify_delete_markers()
    _apply_bucket_notifications(session, resolver)

    api = _serve_api(pipeline, api_port)
    outputs = _publish_outputs(session, resolver, api.url)
    # The page's links to the runs' reports are read as the local user, an administrator, as
    # `fashion-pipeline ui` reads them with its user's credentials.
    from ..webui import S3Reports

    api.reports = S3Reports(session.client("s3"), outputs["ArtifactsBucketName"])
    local = LocalPipeline(endpoint, api.url, pipeline, session, outputs, visibility_scale, output)
    local._stops += [server.stop, api.shutdown, pipeline.runtime.close]
    relays = _request_rules(session, resolver)
    authorization.enable()  # everything is in place, as after a deployment: IAM applies from now on
    local._stops.append(authorization.disable)
    for mapping in resolver.of_type("AWS::Lambda::EventSourceMapping"):
        _thread(local, _poll_queue, resolver.properties(mapping))
    for relay in relays:
        _thread(local, _forward_requests, *relay)
    for function, seconds in _schedules(resolver):
        _thread(local, _run_on_schedule, function, seconds)
    return local


def _thread(local: LocalPipeline, target: Any, *args: Any) -> None:
    threading.Thread(target=target, args=(local, *args), daemon=True, name=target.__name__).start()


def _local_function_settings(pipeline: EmulatedPipeline, verbose: bool) -> None:
    for function in pipeline.runtime.functions.values():
        # Each function's records under its own name, as on AWS where each has its log group.
        function.environment.setdefault("POWERTOOLS_SERVICE_NAME", function.service_name)
        if not verbose:
            # Nobody reads the records (FunctionOutput drops them) but the converter's warnings,
            # which name why a record failed.
            function.environment.update({"LOG_LEVEL": "WARNING", "POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"})
        if "TRAINING_DEFAULTS" in function.environment:
            defaults = json.loads(function.environment["TRAINING_DEFAULTS"] or "{}")
            function.environment["TRAINING_DEFAULTS"] = json.dumps({**defaults, **LOCAL_TRAINING})
        if function.handler.startswith("inference."):
            # Every answer says that the model behind it is the offline emulator.
            function.environment["CUSTOM_LABELS_EMULATED"] = "true"


def _visibility_scale(text: str) -> float:
    if not text.strip():
        return 1.0
    try:
        scale = float(text)
    except ValueError:
        scale = math.nan
    if not (0 < scale <= 1):
        raise ValueError(f"{VISIBILITY_SCALE_VARIABLE}={text!r}: expected a factor in (0, 1], e.g. 0.001")
    return scale


def _notify_delete_markers() -> None:
    """Deleting an object of a versioned bucket without a version id adds a delete marker, and
    S3 notifies ``s3:ObjectRemoved:DeleteMarkerCreated`` ("Event notification types and
    destinations", https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-how-to-event-types-and-destinations.html);
    moto 5 adds the marker but sends no event (it notifies only ``ObjectRemoved:Delete`` of
    an unversioned bucket or of the last version), so local mode sends it. The dataset bucket
    is versioned: without this, ``aws s3 rm`` of an annotation would leave its fragment."""
    from moto.s3 import notifications
    from moto.s3.models import S3Backend

    if getattr(S3Backend.delete_object, "local_mode_notifies", False):
        return
    original = S3Backend.delete_object

    def delete_object(self: Any, bucket_name: str, key_name: str, version_id: str | None = None, bypass: bool = False) -> Any:
        deleted, meta = original(self, bucket_name, key_name, version_id=version_id, bypass=bypass)
        bucket = self.get_bucket(bucket_name)
        if deleted and version_id is None and meta.get("delete-marker") == "true":
            # What S3 sends for a marker: the key and the marker's version, no size or ETag.
            marker = SimpleNamespace(name=key_name, size=0, etag="", version_id=meta.get("version-id"))
            notifications.send_event(self.account_id, notifications.S3NotificationEvent.OBJECT_REMOVED_DELETE_MARKER_CREATED_EVENT,
                                     bucket, marker)
        return deleted, meta

    delete_object.local_mode_notifies = True  # type: ignore[attr-defined]
    S3Backend.delete_object = delete_object  # type: ignore[method-assign]


def _apply_bucket_notifications(session: Any, resolver: Template) -> None:
    s3 = session.client("s3")
    for lid in resolver.of_type("Custom::S3BucketNotifications"):
        props = resolver.properties(lid)
        config = {k: v for k, v in props["NotificationConfiguration"].items() if v not in ({}, None) or k == "EventBridgeConfiguration"}
        s3.put_bucket_notification_configuration(Bucket=props["BucketName"], NotificationConfiguration=config)


def _serve_api(pipeline: EmulatedPipeline, api_port: int) -> Any:
    from ..webui import LambdaBackend, serve

    [name] = [f.name for f in pipeline.runtime.functions.values() if f.handler == "inference.handler.handler"]
    # The API answers the page: two environments kept ready, one for the next request and one
    # for a request arriving while that one runs (a long render), so neither waits seconds
    # for a cold start.
    pipeline.runtime.keep_warm(name, spares=2)

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return json.loads(pipeline.runtime.invoke(name, json.dumps(event)))

    # Each request runs in an execution environment of its own (LocalLambdaRuntime.isolate).
    return serve(LambdaBackend(handler, concurrent=True), port=api_port)


def _publish_outputs(session: Any, resolver: Template, api_url: str) -> dict[str, str]:
    """The stack's outputs, resolved, on a local CloudFormation stack of the same name, so
    that commands which look the deployment up (train, reprocess, detect) work unchanged."""
    outputs = {key: str(resolver.resolve(o["Value"])) for key, o in resolver.template.get("Outputs", {}).items()}
    outputs["ApiUrl"] = api_url
    body = {"Resources": {"LocalMode": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
            "Outputs": {key: {"Value": value} for key, value in outputs.items()}}
    with warnings.catch_warnings():  # moto only records the placeholder resource, which is all we need
        warnings.simplefilter("ignore")
        session.client("cloudformation").create_stack(StackName=STACK_NAME, TemplateBody=json.dumps(body))
    return outputs


_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def _schedules(resolver: Template) -> list[tuple[str, int]]:
    """(function name, period in seconds) of each scheduled rule targeting a function (the
    idle auto-stop), so that local mode stops idle models as the deployment would."""
    found = []
    for lid in resolver.of_type("AWS::Events::Rule"):
        props = resolver.properties(lid)
        match = _RATE.match(props.get("ScheduleExpression") or "")
        if not match:
            continue
        for target in props.get("Targets", []):
            if ":function:" in str(target.get("Arn")):
                found.append((str(target["Arn"]).rsplit(":", 1)[-1], int(match[1]) * _UNIT_SECONDS[match[2].rstrip("s")]))
    return found


def _run_on_schedule(local: LocalPipeline, function: str, seconds: int) -> None:
    """EventBridge's scheduled invocation (as the function's own role, like every invocation)."""
    while not local._stop.wait(seconds):
        event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
                 "account": ACCOUNT, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "region": local.session.region_name,
                 "resources": [], "detail": {}}
        try:
            local.pipeline.runtime.invoke(function, json.dumps(event))
        except Exception as exc:  # noqa: BLE001 - the next round tries again
            print(f"local mode: scheduled {function} failed: {exc}", file=sys.stderr)


def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """A ReceiveMessage message as Lambda's SQS event source hands it to the function."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {"ApproximateReceiveCount": message.get("Attributes", {}).get("ApproximateReceiveCount", "1"),
                       "SentTimestamp": str(int(time.time() * 1000)), "SenderId": ACCOUNT,
                       "ApproximateFirstReceiveTimestamp": str(int(time.time() * 1000))},
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324 - SQS's own checksum
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


@dataclass(frozen=True)
class QueueSettings:
    """What the template says about a queue the poller reads."""

    name: str
    visibility_timeout: int  # seconds
    max_receive_count: int | None  # None: no dead-letter queue
    dead_letter_queue: str | None  # its name

    @classmethod
    def of(cls, resolver: Template, queue_arn: str) -> "QueueSettings":
        [lid] = [lid for lid in resolver.of_type("AWS::SQS::Queue") if resolver.get_att(lid, "Arn") == queue_arn]
        props = resolver.properties(lid)
        redrive = props.get("RedrivePolicy") or {}
        dead_letter = redrive.get("deadLetterTargetArn")
        # 30 s: SQS's default when the template sets none (CreateQueue, VisibilityTimeout).
        return cls(resolver.name(lid), int(props.get("VisibilityTimeout", 30)),
                   int(redrive["maxReceiveCount"]) if dead_letter else None, dead_letter.rsplit(":", 1)[-1] if dead_letter else None)


class _FailureReasons:
    """The error each failed SQS record was logged with, by message id.

    Lambda's answer names the failed records only (``batchItemFailures``); why they failed is
    in the function's log, where the converter writes one warning per failed record with its
    ``message_id`` and ``error``. The function's output lines (its execution environments'
    stdout, see ``FunctionOutput``) are read here for those records."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._errors: dict[str, str] = {}

    def read(self, line: str) -> None:
        if '"message_id"' not in line:
            return
        try:
            record = json.loads(line)
        except ValueError:
            return
        message_id, error = (record.get("message_id"), record.get("error")) if isinstance(record, dict) else (None, None)
        if message_id and error:
            with self._lock:
                self._errors[str(message_id)] = str(error)

    def pop(self, message_id: str) -> str | None:
        with self._lock:
            return self._errors.pop(message_id, None)


class FunctionOutput:
    """Where the lines the functions print go: Powertools' log records and EMF metric records
    (each under its function's service name, ``LocalFunction.service_name``) to stderr with
    ``--verbose``, else nowhere. stdout is the one line of endpoints scripts read. The
    pollers read the converter's lines for the reasons records failed."""

    def __init__(self, verbose: bool, stream: Any = None) -> None:
        self.verbose = verbose
        self._stream = stream
        self._write = threading.Lock()  # one line at a time from concurrent environments
        self._reasons: dict[str, _FailureReasons] = {}

    def reasons(self, function: str) -> _FailureReasons:
        return self._reasons.setdefault(function, _FailureReasons())

    def __call__(self, function: Any, line: str) -> None:
        reasons = self._reasons.get(function.name)
        if reasons is not None:
            reasons.read(line)
        if self.verbose:
            stream = self._stream or sys.stderr
            with self._write:
                print(line, file=stream, flush=True)


def _objects_named(body: str) -> str:
    """The objects an S3 notification is about, as s3:// URIs, for the messages local mode prints."""
    try:
        records = json.loads(body).get("Records") or []
        found = [f"s3://{r['s3']['bucket']['name']}/{unquote_plus(r['s3']['object']['key'])}" for r in records]
    except (ValueError, AttributeError, KeyError, TypeError):
        found = []
    return ", ".join(found) or f"a message that is no S3 notification ({body[:60]!r})"


def _dead_letter_message_ids(region: str, queue_name: str) -> set[str]:
    """The ids of the messages in a queue, without receiving them: SQS has no peek, and a
    ReceiveMessage would count as a receive of the messages the user is to inspect. moto runs
    in this process, so its queue is read directly."""
    from moto.sqs.models import sqs_backends

    queue = sqs_backends[ACCOUNT][region].get_queue(queue_name)
    return {message.id for message in list(queue._messages)}


def _poll_queue(local: LocalPipeline, mapping: dict[str, Any]) -> None:
    """What Lambda's SQS event source does: batch, invoke, delete what succeeded, with the
    permissions of the function's execution role. What failed is left in the queue: SQS makes
    it visible again after the visibility timeout and, past maxReceiveCount receives, moves
    it to the dead-letter queue, which this poller then reports on stderr."""
    function = mapping["FunctionName"]
    settings = local.pipeline.runtime.functions[function]
    sqs = local.client_as(settings.role_arn, "lambda.amazonaws.com", function, "sqs")
    queue_arn = mapping["EventSourceArn"]
    queue_url = sqs.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[-1])["QueueUrl"]
    queue = QueueSettings.of(local.pipeline.template, queue_arn)
    visibility = max(1, math.ceil(queue.visibility_timeout * local.visibility_scale))
    # Unscaled, the queue's own visibility timeout applies, as for Lambda's event source.
    receive_options = {"VisibilityTimeout": visibility} if visibility != queue.visibility_timeout else {}
    reasons = local.output.reasons(function)
    doomed: dict[str, str] = {}  # message id -> what to print once the message is in the DLQ
    batch_size = int(mapping.get("BatchSize", 10))
    window = min(float(mapping.get("MaximumBatchingWindowInSeconds", 0)), 1.0)  # short locally
    while not local._stop.is_set():
        try:
            messages: list[dict[str, Any]] = []
            deadline = time.monotonic() + window
            while len(messages) < batch_size:
                got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=min(10, batch_size - len(messages)),
                                          WaitTimeSeconds=1, AttributeNames=["All"], **receive_options).get("Messages", [])
                messages += got
                if not got or time.monotonic() >= deadline:
                    break
            if doomed:  # SQS moves a message when a receive finds it past maxReceiveCount
                _announce_dead_letters(local, queue, doomed)
            if not messages:
                continue
            event = {"Records": [sqs_record(m, queue_arn, local.session.region_name) for m in messages]}
            result = json.loads(local.pipeline.runtime.invoke(function, json.dumps(event)) or b"{}") or {}
            failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
            if "errorType" in result:
                failed = {m["MessageId"] for m in messages}
            for message in messages:
                reason = reasons.pop(message["MessageId"])
                if message["MessageId"] not in failed:
                    continue
                reason = reason or (f"{result['errorType']}: {result.get('errorMessage', '')}" if "errorType" in result
                                    else "the function reported the record as failed")
                receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
                if queue.max_receive_count is not None and receives >= queue.max_receive_count:
                    doomed[message["MessageId"]] = (
                        f"local mode: {_objects_named(message['Body'])} moved to the dead-letter queue {queue.dead_letter_queue} "
                        f"after {receives} receives (maxReceiveCount {queue.max_receive_count}); last error: {reason}")
            done = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages) if m["MessageId"] not in failed]
            if done:
                sqs.delete_message_batch(QueueUrl=queue_url, Entries=done)
        except Exception as exc:  # noqa: BLE001 - a poller must outlive one bad batch
            if not local._stop.is_set():
                print(f"local mode: queue poller error: {exc}", file=sys.stderr)
                time.sleep(1)


def _announce_dead_letters(local: LocalPipeline, queue: QueueSettings, doomed: dict[str, str]) -> None:
    if queue.dead_letter_queue is None:
        return
    for message_id in sorted(_dead_letter_message_ids(local.session.region_name, queue.dead_letter_queue) & set(doomed)):
        print(doomed.pop(message_id), file=sys.stderr, flush=True)


def _request_rules(session: Any, resolver: Template) -> list[tuple[str, str, str]]:
    """The template's request rules (the training request's, the batch job's), evaluated by the
    emulated EventBridge; each one's target (a state machine) is reached through a local queue
    this process forwards. Returns, per rule, the relay queue's URL, the role the target starts
    executions as and the state machine's ARN."""
    events = session.client("events")
    sqs = session.client("sqs")
    relays = []
    rules = [(lid, resolver.properties(lid)) for lid in resolver.of_type("AWS::Events::Rule") if "EventPattern" in resolver.properties(lid)]
    for index, (lid, props) in enumerate(sorted(rules)):
        queue_url = sqs.create_queue(QueueName=f"{REQUESTS_QUEUE}-{index}")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name=resolver.name(lid), EventPattern=json.dumps(props["EventPattern"]), State="ENABLED")
        events.put_targets(Rule=resolver.name(lid), Targets=[{"Id": "state-machine", "Arn": queue_arn}])
        [target] = props["Targets"]
        relays.append((queue_url, target["RoleArn"], resolver.resolve(target["Arn"])))
    return relays


def _forward_requests(local: LocalPipeline, queue_url: str, role_arn: str, machine_arn: str) -> None:
    sqs = local.session.client("sqs")  # the relay queue is this process's own plumbing
    # EventBridge starts the execution with the target's role.
    sfn = local.client_as(role_arn, "events.amazonaws.com", "events", "stepfunctions")
    while not local._stop.is_set():
        try:
            for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
                sfn.start_execution(stateMachineArn=machine_arn, name=f"request-{uuid.uuid4().hex[:12]}", input=message["Body"])
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        except Exception as exc:  # noqa: BLE001
            if not local._stop.is_set():
                print(f"local mode: request forwarder error ({machine_arn.rsplit(':', 1)[-1]}): {exc}", file=sys.stderr)
                time.sleep(1)
