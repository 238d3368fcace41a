"""The one way this project defines a Lambda function: own role, own log group, traced."""

from __future__ import annotations

from aws_cdk import Duration, Size
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infrastructure.bundling import ARCHITECTURE, RUNTIME, python_code
from infrastructure.config import PipelineConfig
from infrastructure.nag import acknowledge

METRICS_NAMESPACE = "FashionPipeline"


class ProjectFunction(Construct):
    """A Python function from ``lambdas/<package>`` with the shared dependency layer.

    Each function gets a dedicated role with inline, resource-scoped statements instead of
    the AWSLambdaBasicExecutionRole managed policy (which allows logging to any group).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: PipelineConfig,
        package: str,
        handler: str,
        description: str,
        dependencies: lambda_.ILayerVersion,
        extra_layers: tuple[lambda_.ILayerVersion, ...] = (),
        environment: dict[str, str] | None = None,
        memory_mb: int = 512,
        timeout: Duration = Duration.minutes(1),
        ephemeral_storage_mb: int | None = None,
        reserved_concurrency: int | None = None,
    ) -> None:
        super().__init__(scope, id)
        removal = config.stateful_removal
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention(config.log_retention_days), removal_policy=removal)
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=description)
        self.log_group.grant_write(self.role)
        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=handler,
            code=python_code(package),
            layers=[dependencies, *extra_layers],
            memory_size=memory_mb,
            timeout=timeout,
            ephemeral_storage_size=None if ephemeral_storage_mb is None else _size_mib(ephemeral_storage_mb),
            reserved_concurrent_executions=reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
            role=self.role,
            log_group=self.log_group,
            environment={
                "POWERTOOLS_SERVICE_NAME": package,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "LOG_LEVEL": "INFO",
                **(environment or {}),
            },
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Python 3.12 is pinned on purpose: the dependency layer is built from cp312 "
            "aarch64 wheels (Makefile wheelhouse target); upgrade runtime and wheelhouse together.",
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "Active X-Ray tracing: xray:PutTraceSegments and xray:PutTelemetryRecords do not "
            "support resource-level permissions, so CDK grants them on '*'.",
        )


def _size_mib(mib: int) -> Size:
    return Size.mebibytes(mib)


# CloudWatch Logs accepts only these retention periods.
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
