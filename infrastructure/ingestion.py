"""Annotation uploads -> SQS -> converter Lambda -> manifest fragments."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3_notifications
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infrastructure.functions import ProjectFunction
from infrastructure.config import PipelineConfig
from infrastructure.nag import acknowledge_notifications_handler
from infrastructure.storage import ANNOTATIONS_PREFIX

CONVERTER_HANDLER = "converter.handler.handler"
MAX_RECEIVE_COUNT = 5
CONVERTER_TMP_MB = 4096

class Ingestion(Construct):
    """Queue-buffered conversion of every object created or removed under ``annotations/``.

    S3 delivers at least once and in bursts (a dataset upload creates many objects at once),
    so notifications go through SQS: the converter consumes them in batches, reports
    per-message failures, and messages that keep failing end up in a dead-letter queue with
    an alarm instead of being lost. Object permissions are granted by the stack.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: PipelineConfig,
        dataset_bucket: s3.IBucket,
        artifacts_bucket: s3.IBucket,
        dependencies: lambda_.ILayerVersion,
    ) -> None:
        super().__init__(scope, id)
        timeout = Duration.seconds(config.converter_timeout_seconds)
        batch_window = config.converter_batch_window_seconds

        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            # The maximum, so that there is time to inspect and redrive failed annotations.
            retention_period=Duration.days(14),
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            # SSE-SQS rather than KMS: S3 can publish to it without a key policy for s3.
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            # AWS guidance for Lambda SQS sources: at least 6x the function timeout (plus the
            # batching window), so retries of a throttled batch do not become duplicates.
            visibility_timeout=Duration.seconds(6 * config.converter_timeout_seconds + batch_window),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=MAX_RECEIVE_COUNT, queue=self.dead_letter_queue),
        )
        # Created and removed objects alike: the converter makes each object's fragment and
        # report match the object as it is (deleting an annotation removes its fragment, so it
        # is not trained again). One queue for both keeps the events of a key in one stream;
        # their order is not guaranteed either way, and the converter does not rely on it.
        for event in (s3.EventType.OBJECT_CREATED, s3.EventType.OBJECT_REMOVED):
            dataset_bucket.add_event_notification(
                event,
                s3_notifications.SqsDestination(self.queue),
                s3.NotificationKeyFilter(prefix=ANNOTATIONS_PREFIX),
            )
        acknowledge_notifications_handler(Stack.of(self))

        converter = ProjectFunction(
            self,
            "Converter",
            config=config,
            package="converter",
            handler=CONVERTER_HANDLER,
            description="Converts uploaded annotations into Rekognition manifest fragments",
            dependencies=dependencies,
            memory_mb=config.converter_memory_mb,
            # An object (up to 1 GB) is downloaded to /tmp and a COCO file spooled beside it.
            ephemeral_storage_mb=CONVERTER_TMP_MB,
            timeout=timeout,
            reserved_concurrency=config.converter_reserved_concurrency,
            environment={
                "ARTIFACTS_BUCKET": artifacts_bucket.bucket_name,
                "PROBE_CONCURRENCY": str(config.probe_concurrency),
                # Its own queue: a COCO file too large for one invocation is converted in
                # ranges, one message each (converter.ingest). The stack grants SendMessage.
                "QUEUE_URL": self.queue.queue_url,
            },
        )
        self.converter = converter.function
        self.converter_role = converter.role
        self.converter_log_group = converter.log_group

        self.converter.add_event_source(
            event_sources.SqsEventSource(
                self.queue,
                batch_size=config.converter_batch_size,
                max_batching_window=Duration.seconds(batch_window) if batch_window else None,
                report_batch_item_failures=True,
            )
        )

        self.dead_letter_alarm = cloudwatch.Alarm(
            self,
            "DeadLetterQueueAlarm",
            alarm_description="Annotation objects failed conversion repeatedly; inspect and redrive the DLQ.",
            metric=self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5), statistic="Maximum"
            ),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.errors_alarm = cloudwatch.Alarm(
            self,
            "ConverterErrorsAlarm",
            # Per-record failures are reported to SQS, not raised; an Error is a crash or timeout.
            alarm_description="The converter Lambda failed whole invocations (crash or timeout).",
            metric=self.converter.metric_errors(period=Duration.minutes(5), statistic="Sum"),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    @property
    def alarms(self) -> list[cloudwatch.Alarm]:
        return [self.dead_letter_alarm, self.errors_alarm]
