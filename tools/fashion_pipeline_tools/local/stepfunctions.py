"""Bring moto's Step Functions interpreter in line with AWS where this project depends on it.

* AWS resolves a definite JSONPath such as ``$.Items[0].Status`` to the value itself; moto 5
  returns it wrapped in a one-element list whenever the path goes through an array index.
  Definite paths (no wildcard, slice, filter or recursive descent) resolve to their single
  match here, as on AWS; every other path keeps moto's behaviour.
* moto's tasks call services with the fixed keys "ak"/"sk", which IAM enforcement refuses. On
  AWS a task calls with the execution's role (the state machine's ``RoleArn``, or the task's
  ``Credentials``), so here every task's client signs as a session of that role.
* A Distributed Map's S3 ItemReader (``arn:aws:states:::s3:listObjectsV2``) lists every object
  under the prefix, page after page; moto reads only the first page (1,000 keys) and fails on
  an empty prefix. Here it lists them all, each item in the shape AWS gives the Map (``Etag``,
  ``Key``, ``LastModified`` in epoch seconds, ``Size``, ``StorageClass``; "ItemReader (Map)",
  https://docs.aws.amazon.com/step-functions/latest/dg/input-output-itemreader.html).
* moto's parser does not know ``ItemBatcher``, and refuses a definition that has one. Before
  moto parses a definition, each Map's ItemBatcher is moved into its ItemReader's parameters
  (under ``BATCHER_KEY``, where moto evaluates the ``BatchInput`` paths against the state's
  input, as AWS does); the reader then hands the Map batches of items, each child's input
  ``{"Items": [...], "BatchInput": {...}}``, at most ``MaxItemsPerBatch`` items and
  ``MaxInputBytesPerBatch`` bytes each ("ItemBatcher (Map)",
  https://docs.aws.amazon.com/step-functions/latest/dg/input-output-itembatcher.html).
  Definitions stored and described keep their ItemBatcher; only moto's parser sees the move.
* A Distributed Map fails when more of its child executions fail than it tolerates
  (``ToleratedFailureCount``/``ToleratedFailurePercentage``, 0 by default), with
  ``States.ExceedToleratedFailureThreshold`` ("Distributed Map failure threshold",
  https://docs.aws.amazon.com/step-functions/latest/dg/state-map-distributed.html#maprun-fail-threshold);
  moto counts a failed child and goes on, the Map then succeeding with a ``null`` in its results.
  Here a failure past the threshold fails the Map, so its Catch runs as on AWS.
* An aws-sdk task's Parameters spell members the SDK's way, PascalCase (DynamoDB's string set
  is ``"Ss"``, its boolean ``"Bool"``; ``service_model.validate_step_functions_parameters``
  holds definitions to that), and AWS calls the service with the model's names; moto passes
  the Parameters to boto3 as they are, so boto3 refused ``{":lease": {"Ss": [...]}}``. Here
  each task's Parameters are renamed to the model's members first (``service_model.boto_parameters``).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

_INDEFINITE = re.compile(r"\*|\.\.|\?\(|\[[^\]]*:[^\]]*\]")
BATCHER_KEY = "LocalItemBatcher"  # where an ItemBatcher waits for the reader (see the docstring)
_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    from jsonpath_ng.ext import parse
    from moto.stepfunctions.parser.asl.utils import json_path

    original = json_path.extract_json

    def extract_json(path: str, data: Any) -> Any:
        if not _INDEFINITE.search(path):
            matches = parse(path).find(data)
            if len(matches) == 1:
                return matches[0].value
        return original(path, data)

    _replace_everywhere("extract_json", original, extract_json)
    _sign_tasks_with_the_execution_role()
    _batch_and_list_every_page()
    _fail_maps_past_their_tolerated_failures()
    _call_sdk_tasks_with_model_member_names()
    # The interpreter logs an ERROR for every IsPresent test of an absent path, which is a
    # normal outcome of a Choice state, not a failure.
    logging.getLogger("moto.stepfunctions.parser.asl.component.eval_component").setLevel(logging.CRITICAL)
    _installed = True


def _sign_tasks_with_the_execution_role() -> None:
    from moto.stepfunctions.parser.asl.utils import boto_client

    from . import identities

    original = boto_client.boto_client_for

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        client = original(region=region, service=service, state_credentials=state_credentials)
        role_arn = getattr(state_credentials, "role_arn", None)
        if not role_arn:
            return client
        identity = identities.assume(role_arn, "states.amazonaws.com", session_name="states", source_arn=_machine_of(role_arn, region))
        import boto3

        return boto3.client(
            service_name=service, region_name=region, endpoint_url=client.meta.endpoint_url, config=client.meta.config,
            **identity.client_kwargs(),
        )

    _replace_everywhere("boto_client_for", original, boto_client_for)


def _call_sdk_tasks_with_model_member_names() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import StateTaskServiceAwsSdk

    from .service_model import boto_parameters

    original = StateTaskServiceAwsSdk._eval_service_task

    def eval_service_task(self: Any, env: Any, resource_runtime_part: Any, normalised_parameters: dict, state_credentials: Any) -> Any:
        renamed = boto_parameters(self._get_boto_service_name(), self._get_boto_service_action(), normalised_parameters)
        return original(self, env, resource_runtime_part, renamed, state_credentials)

    StateTaskServiceAwsSdk._eval_service_task = eval_service_task


def _batch_and_list_every_page() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_eval_s3 import ResourceEvalS3
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    parse = AmazonStateLanguageParser.parse

    def parse_with_batchers(definition: str) -> Any:
        return parse(_move_batchers(definition))

    AmazonStateLanguageParser.parse = staticmethod(parse_with_batchers)  # type: ignore[method-assign]

    def list_objects_v2(env: Any, resource_runtime_part: Any, state_credentials: Any) -> None:
        s3 = ResourceEvalS3._get_s3_client(resource_runtime_part=resource_runtime_part, state_credentials=state_credentials)
        parameters = dict(env.stack.pop())
        batcher = parameters.pop(BATCHER_KEY, None)
        items = []
        for page in s3.get_paginator("list_objects_v2").paginate(**parameters):
            for entry in page.get("Contents", []):
                items.append({"Etag": entry["ETag"], "Key": entry["Key"], "LastModified": int(entry["LastModified"].timestamp()),
                              "Size": entry["Size"], "StorageClass": entry.get("StorageClass", "STANDARD")})
        env.stack.append(items if batcher is None else batches(items, batcher))

    ResourceEvalS3._handle_list_objects_v2 = staticmethod(list_objects_v2)  # type: ignore[method-assign]


def _fail_maps_past_their_tolerated_failures() -> None:
    from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent, FailureEventException
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (
        DistributedIterationComponent,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    original = DistributedIterationComponent._map_run

    def map_run(self: Any, env: Any, eval_input: Any) -> None:
        original(self, env, eval_input)
        record = eval_input.map_run_record
        failed, total = record.item_counter.failed.get(), record.item_counter.total.get()
        count, percentage = record.tolerated_failure_count or 0, record.tolerated_failure_percentage or 0
        if failed and (failed > count or 100 * failed / max(total, 1) > percentage):
            env.stack.pop()  # the results moto collected: the Map has none
            kind = StatesErrorNameType.StatesExceedToleratedFailureThreshold
            cause = f"{failed} of {total} child executions of the Map Run failed, more than the tolerated failure threshold"
            raise FailureEventException(FailureEvent(
                env=env, error_name=StatesErrorName(typ=kind), event_type=HistoryEventType.ExecutionFailed,
                event_details=EventDetails(executionFailedEventDetails=ExecutionFailedEventDetails(error=kind.to_name(), cause=cause))))

    DistributedIterationComponent._map_run = map_run  # type: ignore[method-assign]


def _move_batchers(definition: str) -> str:
    """The definition with each Map's ItemBatcher moved into its ItemReader's parameters."""
    try:
        document = json.loads(definition)
    except ValueError:
        return definition  # moto's parser will say what is wrong with it

    def visit(states: dict[str, Any]) -> None:
        for state in states.values():
            if not isinstance(state, dict):
                continue
            batcher = state.pop("ItemBatcher", None)
            if batcher is not None:
                reader = state.get("ItemReader")
                if not isinstance(reader, dict) or not str(reader.get("Resource", "")).endswith(":s3:listObjectsV2"):
                    raise ValueError("local mode batches only the items of an S3 listObjectsV2 ItemReader")
                reader.setdefault("Parameters", {})[BATCHER_KEY] = batcher
            for nested in ("ItemProcessor", "Iterator"):
                if isinstance(state.get(nested), dict):
                    visit(state[nested].get("States", {}))
            for branch in state.get("Branches", []) or []:
                visit(branch.get("States", {}))

    visit(document.get("States", {}))
    return json.dumps(document)


def batches(items: list[dict[str, Any]], batcher: dict[str, Any]) -> list[dict[str, Any]]:
    """Items grouped as an ItemBatcher groups them: in order, at most MaxItemsPerBatch items and
    MaxInputBytesPerBatch bytes of input (items and BatchInput, as JSON) to a batch."""
    max_items = batcher.get("MaxItemsPerBatch")
    max_bytes = batcher.get("MaxInputBytesPerBatch", 256 * 1024)
    batch_input = batcher.get("BatchInput")
    fixed = len(json.dumps({"Items": [], **({"BatchInput": batch_input} if batch_input is not None else {})}))
    out: list[dict[str, Any]] = []
    current: list[dict[str, Any]] = []
    size = fixed
    for item in items:
        item_size = len(json.dumps(item)) + 1
        if current and ((max_items and len(current) >= max_items) or size + item_size > max_bytes):
            out.append(_batch(current, batch_input))
            current, size = [], fixed
        current.append(item)
        size += item_size
    if current:
        out.append(_batch(current, batch_input))
    return out


def _batch(items: list[dict[str, Any]], batch_input: Any) -> dict[str, Any]:
    return {"Items": items, **({"BatchInput": batch_input} if batch_input is not None else {})}


def _replace_everywhere(name: str, original: Any, replacement: Any) -> None:
    """The interpreter's modules import its helpers by name: replace every reference (and the
    defining module's, for modules imported later)."""
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("moto.stepfunctions") and getattr(module, name, None) is original:
            setattr(module, name, replacement)


def _machine_of(role_arn: str, region: str) -> str | None:
    """The state machine that runs as ``role_arn`` (Step Functions names it when assuming the role)."""
    from moto.stepfunctions.models import stepfunctions_backends
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    account = role_arn.split(":")[4]
    for backends in (stepfunctions_parser_backends, stepfunctions_backends):  # the interpreter's, then the plain one
        for machine in backends[account][region].state_machines:
            if machine.roleArn == role_arn:
                return machine.arn
    return None
