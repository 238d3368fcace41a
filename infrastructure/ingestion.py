"""Annotation uploads -> SQS -> converter Lambda -> manifest fragments."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3_notifications
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infrastructure.bundling import ARCHITECTURE, RUNTIME, python_code
from infrastructure.config import PipelineConfig
from infrastructure.nag import acknowledge, acknowledge_notifications_handler
from infrastructure.storage import ANNOTATIONS_PREFIX

CONVERTER_HANDLER = "converter.handler.handler"
METRICS_NAMESPACE = "FashionPipeline"
MAX_RECEIVE_COUNT = 5

_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def log_retention(days: int) -> logs.RetentionDays:
    return _RETENTION[days]


class Ingestion(Construct):
    """Queue-buffered conversion of every object created under ``annotations/``.

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
        removal = RemovalPolicy.DESTROY if config.destroy_on_removal else RemovalPolicy.RETAIN

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
        dataset_bucket.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3_notifications.SqsDestination(self.queue),
            s3.NotificationKeyFilter(prefix=ANNOTATIONS_PREFIX),
        )
        acknowledge_notifications_handler(Stack.of(self))

        self.converter_log_group = logs.LogGroup(
            self,
            "ConverterLogs",
            retention=log_retention(config.log_retention_days),
            removal_policy=removal,
        )
        # A dedicated role with inline, resource-scoped statements instead of the
        # AWSLambdaBasicExecutionRole managed policy (which allows logging to any group).
        self.converter_role = iam.Role(
            self,
            "ConverterRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Fashion pipeline annotation converter",
        )
        self.converter_log_group.grant_write(self.converter_role)

        self.converter = lambda_.Function(
            self,
            "Converter",
            description="Converts uploaded annotations into Rekognition manifest fragments",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=CONVERTER_HANDLER,
            code=python_code("converter"),
            layers=[dependencies],
            memory_size=config.converter_memory_mb,
            timeout=timeout,
            reserved_concurrent_executions=config.converter_reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
            role=self.converter_role,
            log_group=self.converter_log_group,
            environment={
                "DATASET_BUCKET": dataset_bucket.bucket_name,
                "ARTIFACTS_BUCKET": artifacts_bucket.bucket_name,
                "LABEL_MAPPING": config.label_mapping_json,
                "PROBE_CONCURRENCY": str(config.probe_concurrency),
                "POWERTOOLS_SERVICE_NAME": "converter",
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "LOG_LEVEL": "INFO",
            },
        )
        acknowledge(
            self.converter,
            "AwsSolutions-L1",
            "Python 3.12 is pinned on purpose: the dependency layer is built from cp312 "
            "aarch64 wheels (Makefile wheelhouse target); upgrade runtime and wheelhouse together.",
        )
        acknowledge(
            self.converter_role,
            "AwsSolutions-IAM5[Resource::*]",
            "Active X-Ray tracing: xray:PutTraceSegments and xray:PutTelemetryRecords do not "
            "support resource-level permissions, so CDK grants them on '*'.",
        )

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
