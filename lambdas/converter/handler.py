"""Converter Lambda: SQS batches of S3 notifications -> fragments and reports in step with
the annotation objects (``ingest.sync_object``: converted when created, removed when deleted).

Thin by design: parse the event, call ``ingest.sync_object``, publish metrics. What fails an
SQS record, so that the queue delivers it again, is decided here:

* an AWS error (``ingest.AWS_ERRORS``: throttling and 5xx the SDK's own retries did not
  absorb, a lost connection, a denied access or a missing bucket, which an operator fixes),
  an object that changed under every pass, or a message body the record model refuses
  (below);
* nothing about an object's content: a broken archive, bad JSON, a key outside any dataset
  are reports, written once, never retried.

A failing record is delivered again after the queue's visibility timeout, at most
maxReceiveCount times (infrastructure/ingestion.py), then moved to the dead-letter queue,
whose alarm asks for a look and a redrive ("Using dead-letter queues in Amazon SQS",
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html;
"Handling errors for an SQS event source in Lambda",
https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html): nothing retries
forever. Each failure is logged with the message id, the object key (when there is one) and
the error.

Three kinds of message share the queue, told apart by ``messages.ConverterRecord``, the
Powertools parser model of a record (``BatchProcessor(model=...)``): S3 notifications (and
``reprocess``'s copies of them), S3's ``s3:TestEvent`` (skipped), and range messages
(``RangeMessage``), which the converter sends itself for the ranges of a COCO file too large
for one invocation (``ingest`` module docstring). The notification model is Powertools'
``S3Model`` with what moto leaves out made optional (``messages`` says which, and why).

A body the model refuses (not JSON, of none of the three shapes, or of one shape but malformed)
can never succeed, and it fails its record like an AWS error does: logged with the message id
and the model's reason (the field it names), delivered again maxReceiveCount times, then kept in
the dead-letter queue, whose alarm asks for a look. Not reported as a success: only S3 and the
converter write to the queue, so such a message is a bug to see, not input to drop.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.exceptions import ExceptionInfo
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from converter.ingest import Limits, ObjectResult, Part, convert_range, sync_object
from converter.messages import ConverterRecord, RangeMessage, S3Notification, S3TestEvent

logger = Logger()
tracer = Tracer()
metrics = Metrics()
RETRIED = "record failed: SQS delivers it again after the visibility timeout, then to the dead-letter queue"


class ConverterBatch(BatchProcessor):
    def failure_handler(self, record: Any, exception: ExceptionInfo) -> Any:
        # Powertools hands a record its model refused over as the plain SQSRecord (a parsed one is
        # a ConverterRecord, whose failures record_handler logs with the object's key).
        if isinstance(record, SQSRecord):
            logger.warning(RETRIED, extra={"message_id": record.message_id, "receive_count": record.attributes.approximate_receive_count,
                                           "error": f"message body refused: {exception[1]}"})
        return super().failure_handler(record, exception)


# A batch whose every record failed is answered like any other (each record listed as failed),
# not raised: the queue retries the same records either way, and the function's Errors alarm
# stays for crashes and timeouts.
processor = ConverterBatch(event_type=EventType.SQS, model=ConverterRecord, raise_on_entire_batch_failure=False)

CONCURRENCY = int(os.environ.get("PROBE_CONCURRENCY", "32"))
# Per object (the README's "Limits per object"). COCO_IMAGES_PER_INVOCATION, which the stack does
# not set, lowers the threshold for splitting a COCO file, to see the ranges at work on a small
# file (local mode); tests replace LIMITS itself.
LIMITS = Limits(images_per_invocation=int(os.environ.get("COCO_IMAGES_PER_INVOCATION", str(Limits.images_per_invocation))))
# Lifecycle expirations are removals too (the pipeline subscribes to ObjectRemoved only).
REMOVAL_EVENTS = ("ObjectRemoved", "LifecycleExpiration")


@lru_cache(maxsize=1)
def s3_client() -> Any:
    # One pooled connection per probing thread; adaptive retries absorb S3 503 Slow Down. The
    # SDK's standard variables (AWS_RETRY_MODE, AWS_MAX_ATTEMPTS) still override the defaults.
    retries = {"mode": os.environ.get("AWS_RETRY_MODE", "adaptive"), "max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS", "8"))}
    return boto3.client("s3", config=Config(max_pool_connections=CONCURRENCY + 4, retries=retries))


@lru_cache(maxsize=1)
def sqs_client() -> Any:
    return boto3.client("sqs")


# "A batch request can contain up to 10 messages" (SendMessageBatch,
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html).
SEND_BATCH = 10


def send_to_queue(bodies: list[dict[str, Any]]) -> None:
    """Put ``bodies`` on the converter's own queue (QUEUE_URL); a message SQS refuses fails the
    record being handled, so that SQS delivers it again and it sends them again."""
    queue_url = os.environ["QUEUE_URL"]
    for start in range(0, len(bodies), SEND_BATCH):
        entries = [{"Id": str(index), "MessageBody": json.dumps(body)} for index, body in enumerate(bodies[start : start + SEND_BATCH])]
        answer = sqs_client().send_message_batch(QueueUrl=queue_url, Entries=entries)
        if answer.get("Failed"):
            raise RuntimeError(f"SQS refused {len(answer['Failed'])} of {len(entries)} messages: {answer['Failed'][0]}")


def _convert_range(message: RangeMessage) -> None:
    logger.append_keys(object_key=message.key, bucket=message.bucket)
    part = Part(message.part, message.parts, message.start, message.stop)
    result = convert_range(s3_client(), bucket=message.bucket, key=message.key, artifacts_bucket=os.environ["ARTIFACTS_BUCKET"],
                           source=(message.versionId or "", message.eTag, message.lastModified), part=part,
                           concurrency=CONCURRENCY, limits=LIMITS, send=send_to_queue)
    if result is not None and result.outcome == "stale":
        logger.info("range of an upload replaced or removed since: nothing written (the newer upload's event converts it)",
                    extra={"part": f"{message.part}/{message.parts}"})
        return
    _publish(result, message.key, f"range {message.part}/{message.parts}")


def _sync_objects(notification: S3Notification) -> None:
    for entry in notification.Records:
        removed = entry.eventName.startswith(REMOVAL_EVENTS)
        if not removed and not entry.eventName.startswith("ObjectCreated"):
            continue
        assert entry.s3.object is not None  # S3Record requires it
        bucket = entry.s3.bucket.name
        key = unquote_plus(entry.s3.object.key)  # keys arrive URL-encoded: "my photos/a+b.json"
        logger.append_keys(object_key=key, bucket=bucket)
        result = sync_object(s3_client(), bucket=bucket, key=key, artifacts_bucket=os.environ["ARTIFACTS_BUCKET"],
                             removed=removed, concurrency=CONCURRENCY, limits=LIMITS, send=send_to_queue)
        _publish(result, key, entry.eventName)


@tracer.capture_method
def record_handler(record: ConverterRecord) -> None:
    try:
        if isinstance(record.body, RangeMessage):
            _convert_range(record.body)
        elif isinstance(record.body, S3Notification):
            _sync_objects(record.body)
        else:
            assert isinstance(record.body, S3TestEvent)  # sent once when the notification is configured
            logger.info("S3 test event: nothing to convert", extra={"bucket": record.body.Bucket})
    except Exception as exc:
        logger.warning(RETRIED, extra={"message_id": record.messageId, "receive_count": record.attributes.ApproximateReceiveCount,
                                       "error": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        logger.remove_keys(["object_key", "bucket"])


def _publish(result: ObjectResult | None, key: str, event: str) -> None:
    if result is None:  # outside annotations/ (the notification never sends those) or a folder placeholder
        logger.warning("object ignored: not an annotation object", extra={"event": event})
        return
    if result.outcome == "kept":
        logger.info("object exists again: kept its outputs for its own ObjectCreated event", extra={"event": event})
        return
    if result.outcome == "removed":
        metrics.add_metric(name="ObjectsRemoved", unit=MetricUnit.Count, value=1)
        logger.info("object gone: outputs removed", extra={"outputs": [k for k in (result.fragment_key, result.report_key) if k]})
        return
    if result.outcome == "unassigned":
        metrics.add_metric(name="ObjectsUnassigned", unit=MetricUnit.Count, value=1)
        logger.warning("object outside any dataset: reported", extra={"report": result.report_key, "rejections": result.rejections})
        return
    if result.outcome == "superseded":
        logger.warning("object changed while its range was written: converted again from the start", extra={"event": event})
    if result.pending:
        metrics.add_metric(name="RangesQueued", unit=MetricUnit.Count, value=len(result.pending))
    metrics.add_metric(name="ImagesAccepted", unit=MetricUnit.Count, value=result.records)
    metrics.add_metric(name="BoxesAccepted", unit=MetricUnit.Count, value=result.boxes)
    metrics.add_metric(name="Rejections", unit=MetricUnit.Count, value=sum(result.rejections.values()))
    for reason, count in result.rejections.items():
        metrics.add_metric(name=f"Rejected_{reason}", unit=MetricUnit.Count, value=count)
    logger.info(
        "converted",
        extra={"dataset": result.dataset, "fragment": result.fragment_key, "records": result.records, "rejections": result.rejections,
               "part": f"{result.part.index}/{result.part.count}" if result.part else None, "ranges_queued": len(result.pending),
               "probe_requests": result.probe_requests, "probe_bytes": result.probe_bytes},
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
