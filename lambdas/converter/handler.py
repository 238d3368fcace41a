"""Converter Lambda: SQS batches of S3 upload notifications -> manifest fragments.

Thin by design: parse the event, call ``ingest.convert_object``, publish metrics. A record
fails (and is retried, then dead-lettered) only on errors worth retrying; a bad annotation
file is a success whose report says what is wrong with it.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from pydantic import BaseModel, Field

from converter.ingest import UnsupportedObject, convert_object

logger = Logger()
tracer = Tracer()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)

CONCURRENCY = int(os.environ.get("PROBE_CONCURRENCY", "32"))


@lru_cache(maxsize=1)
def s3_client() -> Any:
    # One pooled connection per probing thread; adaptive retries absorb S3 503 Slow Down.
    return boto3.client("s3", config=Config(max_pool_connections=CONCURRENCY + 4, retries={"mode": "adaptive", "max_attempts": 8}))


class S3Object(BaseModel):
    key: str
    size: int | None = None
    eTag: str | None = None
    versionId: str | None = None


class S3Bucket(BaseModel):
    name: str


class S3Entity(BaseModel):
    bucket: S3Bucket
    object: S3Object


class S3EventRecord(BaseModel):
    eventName: str = ""
    s3: S3Entity


class S3Notification(BaseModel):
    """The S3 event notification carried in an SQS message body. S3's ``s3:TestEvent``
    (sent when the notification is configured) has no ``Records`` and is skipped."""

    Records: list[S3EventRecord] = Field(default_factory=list)
    Event: str | None = None


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    notification = S3Notification.model_validate_json(record.body)
    for entry in notification.Records:
        if not entry.eventName.startswith("ObjectCreated"):
            continue
        bucket = entry.s3.bucket.name
        key = unquote_plus(entry.s3.object.key)  # keys arrive URL-encoded: "my photos/a+b.json"
        logger.append_keys(object_key=key, bucket=bucket)
        try:
            result = convert_object(s3_client(), bucket=bucket, key=key, artifacts_bucket=os.environ["ARTIFACTS_BUCKET"], concurrency=CONCURRENCY)
        except UnsupportedObject as exc:  # outside annotations/<dataset>/: nothing to write
            logger.warning("object ignored", extra={"reason": exc.reason, "detail": exc.detail})
            continue
        metrics.add_metric(name="ImagesAccepted", unit=MetricUnit.Count, value=result.records)
        metrics.add_metric(name="BoxesAccepted", unit=MetricUnit.Count, value=result.boxes)
        metrics.add_metric(name="Rejections", unit=MetricUnit.Count, value=sum(result.rejections.values()))
        for reason, count in result.rejections.items():
            metrics.add_metric(name=f"Rejected_{reason}", unit=MetricUnit.Count, value=count)
        logger.info(
            "converted",
            extra={"dataset": result.dataset, "fragment": result.fragment_key, "records": result.records, "rejections": result.rejections,
                   "probe_requests": result.probe_requests, "probe_bytes": result.probe_bytes},
        )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
