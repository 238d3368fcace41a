"""The one function of the "Reprocess" state machine: re-enqueue a dataset's annotation objects.

The machine (``infrastructure/reprocess.py``) calls it in three steps, told apart by the
shape of the event (``workflow.events.ReprocessStep``, the parser model of each; an event of
none fails with ``ValidationError`` "not a Reprocess step"):

* ``{"check": {"dataset": NAME}}``: the name is checked with the rule ``train`` uses
  (``OptionsError`` fails the execution with the reason); returns ``{"dataset", "prefix"}``.
* ``{"Items": [...], "BatchInput": {"dataset": NAME}}``: a child of the Distributed Map, a
  batch of the S3 ItemReader's items (``Key``, ``Size``, ``Etag``). Each object gets the
  notification S3 would send (``fashion_pipeline.s3_events.s3_notification``) on the
  converter's queue, 10 per SendMessageBatch; entries SQS reports Failed are sent again, a
  bounded number of times, then the child fails (and the Map with it). Returns ``{"sent": n}``.
* ``{"total": {"dataset": NAME, "batches": [{"sent": n}, ...]}}``: the children's counts
  summed into the execution's output ``{"dataset", "objects", "batches"}``.

A child retried by Step Functions sends its batch again: the converter overwrites an
object's fragment and report in place, so a duplicate costs a conversion, nothing else.
"""

from __future__ import annotations

import json
import os
import time
from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from fashion_pipeline.s3_events import s3_notification
from fashion_pipeline.layout import ANNOTATIONS_PREFIX
from fashion_pipeline.training import check_dataset_name
from workflow.events import CheckStep, ListedObject, ReprocessStep, SendBatchStep, TotalArguments

logger = Logger()
tracer = Tracer()

EVENT_NAME = "ObjectCreated:Reprocess"
SQS_BATCH = 10  # the SendMessageBatch maximum
SEND_ATTEMPTS = 5  # per entry, the first included
RETRY_SECONDS = 0.2  # doubled after each round of failed entries


class SendFailed(Exception):
    """SQS kept refusing some messages of the batch."""


@lru_cache(maxsize=None)
def client(name: str) -> Any:
    return boto3.client(name)


def dataset_prefix(dataset: str) -> str:
    return f"{ANNOTATIONS_PREFIX}{dataset}/"


def check(dataset: Any) -> dict[str, str]:
    check_dataset_name(dataset)
    return {"dataset": dataset, "prefix": dataset_prefix(dataset)}


def notifications(bucket: str, items: list[ListedObject]) -> list[str]:
    """The message bodies for a batch of ItemReader items; folder markers ('.../') are skipped."""
    return [
        json.dumps(s3_notification(bucket, item.Key, size=item.Size, etag=item.Etag.strip('"'), event_name=EVENT_NAME))
        for item in items
        if not item.Key.endswith("/")
    ]


def send_all(sqs: Any, queue_url: str, bodies: list[str], *, attempts: int = SEND_ATTEMPTS, pause: float = RETRY_SECONDS) -> int:
    """Send every body, 10 per call; only the entries SQS reports Failed are sent again."""
    for start in range(0, len(bodies), SQS_BATCH):
        pending = {str(i): body for i, body in enumerate(bodies[start : start + SQS_BATCH], start)}
        for attempt in range(attempts):
            response = sqs.send_message_batch(QueueUrl=queue_url, Entries=[{"Id": i, "MessageBody": b} for i, b in pending.items()])
            failed = response.get("Failed") or []
            if not failed:
                break
            pending = {entry["Id"]: pending[entry["Id"]] for entry in failed}
            if attempt + 1 == attempts:
                first = failed[0]
                raise SendFailed(f"SQS refused {len(failed)} messages after {attempts} attempts: "
                                 f"{first.get('Code')}: {first.get('Message')}")
            time.sleep(pause * 2**attempt)
    return len(bodies)


def send_batch(event: SendBatchStep) -> dict[str, int]:
    bodies = notifications(os.environ["DATASET_BUCKET"], event.Items)
    sent = send_all(client("sqs"), os.environ["QUEUE_URL"], bodies)
    logger.info("batch re-enqueued", extra={"dataset": event.BatchInput.dataset, "sent": sent, "items": len(event.Items)})
    return {"sent": sent}


def total(event: TotalArguments) -> dict[str, Any]:
    return {"dataset": event.dataset, "objects": sum(batch.sent for batch in event.batches), "batches": len(event.batches)}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=ReprocessStep)
def handler(event: ReprocessStep, context: LambdaContext) -> dict[str, Any]:
    if isinstance(event, SendBatchStep):
        return send_batch(event)
    if isinstance(event, CheckStep):
        return check(event.check.dataset)
    return total(event.total)
