"""The training workflow's resources: its functions, the run lease, the state machine and the
rule that starts it. The definition itself is ``training_flow.TrainingFlow``.

The model pointers are not CloudFormation resources (``run_time_arns`` says why and grants them).
"""

from __future__ import annotations

import math
from dataclasses import fields

from aws_cdk import Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from fashion_pipeline.training import MAX_RUN_SECONDS
from infrastructure.config import PipelineConfig
from infrastructure.evaluation_report import report_function
from infrastructure.functions import ProjectFunction, log_retention
from infrastructure.nag import acknowledge, acknowledge_distributed_map
from infrastructure.run_time_arns import acknowledge_pointers, acknowledge_projects, pointer_arns, project_arns
from infrastructure.storage import IMAGES_PREFIX, REQUESTS_PREFIX, RUNS_PREFIX
from infrastructure.training_flow import READ_FRAGMENTS_LABEL, FlowAssembly, FlowFunctions, FlowGrants, TrainingFlow


class TrainingWorkflow(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: PipelineConfig,
        dataset_bucket: s3.IBucket,
        artifacts_bucket: s3.IBucket,
        dependencies: lambda_.ILayerVersion,
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, id)
        removal = config.stateful_removal
        self._pointer_prefix = config.model_parameter_prefix
        self.lock_table = dynamodb.TableV2(
            self,
            "RunLocks",
            partition_key=dynamodb.Attribute(name="dataset", type=dynamodb.AttributeType.STRING),
            billing=dynamodb.Billing.on_demand(),
            time_to_live_attribute="expires_at",
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(point_in_time_recovery_enabled=True),
            removal_policy=removal,
        )
        functions = self._functions(config, dataset_bucket, artifacts_bucket, dependencies)
        flow = TrainingFlow(
            self,
            functions=functions,
            assembly=FlowAssembly(artifacts_bucket=artifacts_bucket, batch_size=config.assembly_batch_size,
                                  max_concurrency=config.assembly_max_concurrency),
            grants=FlowGrants(
                project_arns=project_arns(),
                model_parameter_prefix=config.model_parameter_prefix,
                model_parameter_arns=pointer_arns(config.model_parameter_prefix),
                training_data_reads=_training_data_reads(dataset_bucket, artifacts_bucket),
                training_output_writes=_training_output_writes(artifacts_bucket),
            ),
            topic=topic,
        )
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention(config.log_retention_days), removal_policy=removal)
        self.state_machine = sfn.StateMachine(
            self, "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(flow.definition()),
            # A backstop only: every wait of a run ends sooner, by its poll count (see TrainingOptions.limits).
            timeout=Duration.hours(math.ceil(MAX_RUN_SECONDS / 3600) + 1),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            comment="fashion-pipeline: assemble manifests, train, evaluate and deploy a Custom Labels model",
        )
        self._acknowledge_machine_role(dataset_bucket, artifacts_bucket, functions)
        self._request_rule(dataset_bucket)

    def _functions(self, config: PipelineConfig, dataset_bucket: s3.IBucket, artifacts_bucket: s3.IBucket,
                   dependencies: lambda_.ILayerVersion) -> FlowFunctions:
        """The workflow's Lambda functions, with what each needs beyond its invocation."""
        environment = {
            "DATASET_BUCKET": dataset_bucket.bucket_name,
            "ARTIFACTS_BUCKET": artifacts_bucket.bucket_name,
            "LOCK_TABLE": self.lock_table.table_name,
            "TRAINING_DEFAULTS": config.training_defaults_json,
        }

        def function(name: str, handler: str, description: str, **kwargs) -> lambda_.Function:
            built = ProjectFunction(
                self, name, config=config, package="workflow", handler=f"workflow.handler.{handler}",
                description=description, dependencies=dependencies, environment=environment, **kwargs,
            )
            return built.function

        self.prepare_function = function("PrepareFunction", "prepare", "Validates a training request and takes the dataset's run lease")
        # A child of the "Read fragments" Distributed Map: reads one batch of fragments into a shard.
        self.shard_function = function(
            "ShardFunction", "shard", "Reads a batch of a dataset's fragments and reports into a shard of the run",
            memory_mb=config.assembler_memory_mb, timeout=Duration.minutes(15), ephemeral_storage_mb=2048,
        )
        self.assemble_function = function(
            "Assemble", "assemble", "Merges a run's shards into train/test manifests",
            memory_mb=config.assembler_memory_mb, timeout=Duration.minutes(15), ephemeral_storage_mb=4096,
        )
        self.evaluate_function = function("EvaluateFunction", "evaluate", "Writes the evaluation report and takes the deploy decision")
        self.retire_function = function("RetireFunction", "retire", "Stops the dataset's other running models once a new one runs")
        self.finish_function = function("FinishFunction", "finish", "Records a run's outcome and frees the dataset's lease")
        # Every run's evaluation report, with its own layer (infrastructure/evaluation_report.py).
        self.report = report_function(self, "ReportFunction", config=config, dependencies=dependencies)
        self.report_function = self.report.function

        self.lock_table.grant_read_write_data(self.prepare_function)
        self.lock_table.grant_read_write_data(self.finish_function)
        self.retire_function.add_to_role_policy(iam.PolicyStatement(
            actions=["rekognition:DescribeProjectVersions", "rekognition:StopProjectVersion"], resources=project_arns()))
        acknowledge_projects(self.retire_function.role)
        return FlowFunctions(self.prepare_function, self.shard_function, self.assemble_function, self.evaluate_function,
                             self.retire_function, self.finish_function, self.report_function)

    def _acknowledge_machine_role(self, dataset_bucket: s3.IBucket, artifacts_bucket: s3.IBucket, functions: FlowFunctions) -> None:
        role = self.state_machine.role
        acknowledge(role, "AwsSolutions-IAM5[Resource::*]",
                    "X-Ray tracing (xray:PutTraceSegments, PutTelemetryRecords, GetSampling*), CloudWatch Logs delivery "
                    "and rekognition:DescribeProjects and CreateProject have no resource-level permissions; every other "
                    "Rekognition action is limited to this pipeline's projects.")
        acknowledge_projects(role)
        acknowledge_pointers(role, self._pointer_prefix, "The workflow publishes the model of the dataset it trained.")
        acknowledge(role, "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
                    "Publishing to the encrypted notification topic needs a data key from its key; the grant "
                    "is on that one key.")
        stack = Stack.of(self)
        for bucket, pattern in ((dataset_bucket, f"{IMAGES_PREFIX}*"), (artifacts_bucket, f"{RUNS_PREFIX}*/train.manifest"),
                                (artifacts_bucket, f"{RUNS_PREFIX}*/test.manifest"), (artifacts_bucket, f"{RUNS_PREFIX}*/output/*")):
            logical_id = stack.get_logical_id(bucket.node.default_child)
            acknowledge(role, f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>/{pattern}]",
                        "Custom Labels reads a run's manifests and the dataset's images, and writes the run's training "
                        "output, with the permissions of the caller (this role); runs and datasets are named at run time, "
                        "so the grant is on these key patterns of this pipeline's buckets only.")
        acknowledge_distributed_map(self.state_machine, READ_FRAGMENTS_LABEL)
        for function in (getattr(functions, field.name) for field in fields(functions)):
            logical_id = stack.get_logical_id(function.node.default_child)
            acknowledge(role, f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>:*]",
                        "CDK grants lambda:InvokeFunction on the function and its versions (ARN:*); "
                        "the grant names this one workflow function.")

    def _request_rule(self, dataset_bucket: s3.IBucket) -> None:
        """Uploading ``requests/<dataset>.json`` to the dataset bucket starts a run."""
        rule = events.Rule(
            self, "TrainingRequestRule",
            description="Starts a training run when requests/<dataset>.json is uploaded",
            event_pattern=events.EventPattern(
                source=["aws.s3"], detail_type=["Object Created"],
                detail={"bucket": {"name": [dataset_bucket.bucket_name]}, "object": {"key": [{"prefix": REQUESTS_PREFIX}]}},
            ),
        )
        rule.add_target(targets.SfnStateMachine(self.state_machine))


# The Custom Labels guide lists, for a bucket it trains from, GetObject, GetObjectAcl,
# GetObjectVersion, GetObjectTagging, ListBucket, GetBucketLocation, GetBucketAcl and PutObject
# ("Accessing external Amazon S3 buckets", https://docs.aws.amazon.com/rekognition/latest/customlabels-dg/su-console-policy.html)
# without saying which call needs which; with the current API they are the caller's
# ("Set up SDK permissions", https://docs.aws.amazon.com/rekognition/latest/customlabels-dg/su-sdk-permissions.html).
# Here they are granted on exactly the keys a run uses. CreateProjectVersion's OutputConfig
# documents "You need s3:PutObject permission on the bucket" (API reference).
_OBJECT_READS = ["s3:GetObject", "s3:GetObjectAcl", "s3:GetObjectVersion", "s3:GetObjectTagging"]
_BUCKET_READS = ["s3:ListBucket", "s3:GetBucketLocation", "s3:GetBucketAcl"]


def _training_data_reads(dataset_bucket: s3.IBucket, artifacts_bucket: s3.IBucket) -> list[iam.PolicyStatement]:
    """CreateDataset: Custom Labels reads the manifest and every image it names as the caller."""
    return [
        iam.PolicyStatement(actions=_OBJECT_READS, resources=[
            dataset_bucket.arn_for_objects(f"{IMAGES_PREFIX}*"),
            artifacts_bucket.arn_for_objects(f"{RUNS_PREFIX}*/train.manifest"),
            artifacts_bucket.arn_for_objects(f"{RUNS_PREFIX}*/test.manifest"),
        ]),
        iam.PolicyStatement(actions=_BUCKET_READS, resources=[dataset_bucket.bucket_arn, artifacts_bucket.bucket_arn]),
    ]


def _training_output_writes(artifacts_bucket: s3.IBucket) -> list[iam.PolicyStatement]:
    """CreateProjectVersion: training output goes to OutputConfig, written as the caller; the
    version is tagged at creation, which needs rekognition:TagResource as well (Service
    Authorization Reference for Amazon Rekognition: CreateProjectVersion's aws:RequestTag)."""
    return [
        iam.PolicyStatement(actions=["s3:PutObject"], resources=[artifacts_bucket.arn_for_objects(f"{RUNS_PREFIX}*/output/*")]),
        iam.PolicyStatement(actions=["rekognition:TagResource"], resources=project_arns()),
    ]
