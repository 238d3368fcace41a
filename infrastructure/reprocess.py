"""The "Reprocess" state machine: re-enqueue every annotation object of a dataset, server-side.

``fashion-pipeline reprocess --dataset NAME`` starts it with ``{"dataset": NAME}``:

    Check dataset  ->  Re-enqueue objects (Distributed Map over annotations/NAME/)  ->  Count

A Lambda checks the name with the rule ``train`` uses; the Distributed Map's S3 ItemReader
lists the prefix (the machine's role lists, not a laptop) and its ItemBatcher hands each child
up to 500 objects; each child sends the notifications S3 would send to the converter's
queue (``lambdas/workflow/reprocess.py``) and returns ``{"sent": n}``. Those few bytes per
batch (about 13: the Map's output stays under the 256 KiB a state may pass on up to some
17,000 batches, 8.5 million objects) are summed by the last step into the execution's output
``{"dataset", "objects", "batches"}``. The grant to send to the queue is made in stack.py.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infrastructure.config import PipelineConfig
from infrastructure.functions import ProjectFunction, log_retention
from infrastructure.nag import acknowledge, acknowledge_distributed_map
from infrastructure.storage import ANNOTATIONS_PREFIX
from infrastructure.training_flow import MAX_BATCH_INPUT_BYTES, RETRY, TRANSIENT_LAMBDA_ERRORS

BATCH_SIZE = 500  # objects per child: 50 SendMessageBatch calls
MAX_CONCURRENCY = 10  # children at once: ~10 x 50 calls in flight, far below SQS's limits
MAP_LABEL = "ReprocessObjects"


class ReprocessWorkflow(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: PipelineConfig,
        dataset_bucket: s3.IBucket,
        queue: sqs.IQueue,
        dependencies: lambda_.ILayerVersion,
    ) -> None:
        super().__init__(scope, id)
        self.function = ProjectFunction(
            self, "Function", config=config, package="workflow", handler="workflow.reprocess.handler",
            description="Re-enqueues a batch of a dataset's annotation objects on the converter's queue",
            dependencies=dependencies, timeout=Duration.minutes(2),
            environment={"DATASET_BUCKET": dataset_bucket.bucket_name, "QUEUE_URL": queue.queue_url},
        ).function

        check = self._invoke("Check dataset", {"check": {"dataset.$": "$.dataset"}}, result_path=sfn.JsonPath.DISCARD)
        objects = sfn.DistributedMap(
            self, "Re-enqueue objects",
            item_reader=sfn.S3ObjectsItemReader(
                bucket=dataset_bucket, prefix=sfn.JsonPath.format(ANNOTATIONS_PREFIX + "{}/", sfn.JsonPath.string_at("$.dataset"))),
            item_batcher=sfn.ItemBatcher(max_items_per_batch=BATCH_SIZE, max_input_bytes_per_batch=MAX_BATCH_INPUT_BYTES,
                                         batch_input={"dataset.$": "$.dataset"}),
            max_concurrency=MAX_CONCURRENCY,
            # Each child's {"sent": n}, for the count (see the module docstring for the bound).
            result_path="$.batches",
            label=MAP_LABEL,
        )
        child = tasks.LambdaInvoke(self, "Send batch", lambda_function=self.function, payload_response_only=True,
                                   retry_on_service_exceptions=False)
        child.add_retry(errors=TRANSIENT_LAMBDA_ERRORS, **RETRY)
        objects.item_processor(child)
        count = self._invoke("Count", {"total": {"dataset.$": "$.dataset", "batches.$": "$.batches"}})

        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention(config.log_retention_days),
                                       removal_policy=config.stateful_removal)
        self.state_machine = sfn.StateMachine(
            self, "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(check.next(objects).next(count)),
            timeout=Duration.hours(2),  # 391k objects take minutes; a backstop only
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            comment="fashion-pipeline: re-enqueue every annotation object of a dataset for conversion",
        )
        self._acknowledge()

    def _invoke(self, id: str, payload: dict, **kwargs) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke(self, id, lambda_function=self.function, payload=sfn.TaskInput.from_object(payload),
                                  payload_response_only=True, retry_on_service_exceptions=False, **kwargs)
        task.add_retry(errors=TRANSIENT_LAMBDA_ERRORS, **RETRY)
        return task

    def _acknowledge(self) -> None:
        stack = Stack.of(self)
        role = self.state_machine.role
        acknowledge(role, "AwsSolutions-IAM5[Resource::*]",
                    "X-Ray tracing (xray:PutTraceSegments, PutTelemetryRecords, GetSampling*) and CloudWatch Logs "
                    "delivery have no resource-level permissions, so CDK grants them on '*'.")
        function = stack.get_logical_id(self.function.node.default_child)
        acknowledge(role, f"AwsSolutions-IAM5[Resource::<{function}.Arn>:*]",
                    "CDK grants lambda:InvokeFunction on the function and its versions (ARN:*); "
                    "the grant names this one Reprocess function.")
        acknowledge_distributed_map(self.state_machine, MAP_LABEL)
