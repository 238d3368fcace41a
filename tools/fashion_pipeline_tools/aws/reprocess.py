"""Re-run conversion for a dataset: what ``fashion-pipeline reprocess`` does.

Annotation uploads may race image uploads; an annotation converted before its image
arrived is reported as ``image_missing``. After the images are in, the stack's "Reprocess"
state machine (``infrastructure/reprocess.py``) puts the same notifications S3 would send
back on the converter's queue, so the normal path reconverts them (fragments and reports are
overwritten in place). The listing and the sending run server-side, in a Distributed Map;
this module starts the execution and follows it, with the Map Run's item counts as progress.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any, Callable

from fashion_pipeline.training import check_dataset_name


class NothingToReprocess(Exception):
    """The dataset has no annotation object: nothing was enqueued."""


class ReprocessFailed(Exception):
    """The execution did not succeed; the message carries its error and cause."""


def start_reprocess(sfn: Any, state_machine_arn: str, *, dataset: str) -> str:
    check_dataset_name(dataset)  # the machine checks again; this fails before anything starts
    name = f"reprocess-{re.sub(r'[^A-Za-z0-9-_]', '-', dataset)[:40]}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    return sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps({"dataset": dataset}))["executionArn"]


def map_progress(sfn: Any, execution_arn: str) -> dict[str, int] | None:
    """The Distributed Map's item counts (``succeeded``, ``failed``, ``total``...), once it runs."""
    runs = sfn.list_map_runs(executionArn=execution_arn).get("mapRuns") or []
    if not runs:
        return None
    counts = sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"]).get("itemCounts") or {}
    return {key: int(value) for key, value in counts.items() if isinstance(value, int)}


def follow_reprocess(
    sfn: Any,
    execution_arn: str,
    *,
    interval: float = 5.0,
    on_progress: Callable[[dict[str, int]], None] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Poll until the execution ends; returns its output ``{"dataset", "objects", "batches"}``.

    Raises ``ReprocessFailed`` if it fails, ``NothingToReprocess`` if it enqueued nothing.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    last: dict[str, int] | None = None

    def report() -> None:
        nonlocal last
        counts = map_progress(sfn, execution_arn)
        if counts is not None and counts != last:
            last = counts
            on_progress(counts)  # type: ignore[misc]

    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            break
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{execution_arn} still running")
        time.sleep(interval)
        if on_progress:  # after a pause: the execution has begun (moto cannot list its map runs before)
            report()
    if on_progress:
        report()
    if described["status"] != "SUCCEEDED":
        raise ReprocessFailed(f"{described['status'].lower()}: {_reason(described)}")
    result = json.loads(described.get("output") or "{}")
    if not result.get("objects"):
        raise NothingToReprocess(
            f"dataset {result.get('dataset')!r} has no object under annotations/{result.get('dataset')}/: "
            "check the name (it is case-sensitive) or upload its annotations first "
            f"(aws s3 sync ANNOTATIONS s3://DATASET_BUCKET/annotations/{result.get('dataset')}/)")
    return result


def _reason(described: dict[str, Any]) -> str:
    """The error and cause; a Lambda's cause is JSON whose errorMessage is the reason."""
    cause = described.get("cause") or ""
    try:
        cause = json.loads(cause).get("errorMessage", cause)
    except (ValueError, AttributeError):
        pass
    return f"{described.get('error', '')}: {cause}".strip(": ")
