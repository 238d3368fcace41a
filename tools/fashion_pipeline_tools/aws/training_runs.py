"""Start a training run and follow it: what ``fashion-pipeline train`` does."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any, Callable

from fashion_pipeline.training import check_dataset_name


def start_training(sfn: Any, state_machine_arn: str, *, dataset: str, options: dict[str, Any]) -> str:
    check_dataset_name(dataset)
    name = f"{re.sub(r'[^A-Za-z0-9-_]', '-', dataset)[:40]}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    payload = {"dataset": dataset, "options": options}
    return sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload))["executionArn"]


def follow(
    sfn: Any,
    execution_arn: str,
    *,
    interval: float = 30.0,
    on_state: Callable[[str], None] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Poll until the execution ends, reporting each newly entered state; returns the description."""
    seen: set[int] = set()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        if on_state:
            for event in sfn.get_execution_history(executionArn=execution_arn, maxResults=1000).get("events", []):
                details = event.get("stateEnteredEventDetails")
                if details and event["id"] not in seen:
                    seen.add(event["id"])
                    on_state(details["name"])
        if described["status"] != "RUNNING":
            return described
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{execution_arn} still running")
        time.sleep(interval)
