"""The deployable unit, ``FashionPipeline``: the constructs of ``infrastructure/`` wired together.

In order: ``Storage`` (dataset and artifacts buckets), one shared layer of third-party wheels
(``dependencies_layer``), ``Ingestion`` (queue, dead-letter queue and converter),
``NotificationTopic`` (alarms and run outcomes), ``TrainingWorkflow`` (its state machine, its
functions and the model pointer), ``ReprocessWorkflow`` (re-enqueues a dataset's annotations on
the converter's queue), ``InferenceApi`` (API Gateway, inference function, idle auto-stop) and
``BatchDetection`` (batch jobs over a prefix of images/). Every cross-construct grant is made
here, so that each permission between units is visible in one place, but BatchDetection's: it
receives exactly the buckets and the table it touches and grants itself on their prefixes
(infrastructure/batch.py lists them); the stack's outputs name what the CLI and local mode look up.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from fashion_pipeline.layout import EVALUATION_FOLDER
from infrastructure.bundling import dependencies_layer
from infrastructure.config import PipelineConfig
from infrastructure.ingestion import Ingestion
from infrastructure.monitoring import NotificationTopic
from infrastructure.api import InferenceApi
from infrastructure.batch import BatchDetection
from infrastructure.reprocess import ReprocessWorkflow
from infrastructure.training import TrainingWorkflow
from infrastructure.nag import acknowledge, object_wildcard
from infrastructure.storage import (
    ANNOTATIONS_PREFIX,
    FRAGMENTS_PREFIX,
    IMAGES_PREFIX,
    REPORTS_PREFIX,
    REQUESTS_PREFIX,
    RUNS_PREFIX,
    UNASSIGNED_PREFIX,
    Storage,
)


class FashionPipelineStack(Stack):
    def __init__(self, scope: Construct, id: str, *, config: PipelineConfig, **kwargs: Any) -> None:
        super().__init__(scope, id, **kwargs)
        self.config = config

        self.storage = Storage(self, "Storage", config=config)
        # One layer with the third-party packages, shared by every function.
        self.python_dependencies = dependencies_layer(self, "PythonDependencies")
        # Pillow, for the functions that draw the garments (fashion_pipeline.render): the
        # inference API's outlined answers and batch jobs' rendered images.
        self.imaging_dependencies = dependencies_layer(self, "ImagingDependencies", "lambdas/inference/requirements.txt",
                                                       description="Pillow, for the outlined images of the inference API and of batch jobs")
        self.ingestion = Ingestion(
            self,
            "Ingestion",
            config=config,
            dataset_bucket=self.storage.dataset_bucket,
            artifacts_bucket=self.storage.artifacts_bucket,
            dependencies=self.python_dependencies,
        )
        self._grant_converter()

        self.notifications = NotificationTopic(self, "Notifications", config=config, email=config.alarm_email)
        self.notifications.notify(*self.ingestion.alarms)

        self.training = TrainingWorkflow(
            self,
            "Training",
            config=config,
            dataset_bucket=self.storage.dataset_bucket,
            artifacts_bucket=self.storage.artifacts_bucket,
            dependencies=self.python_dependencies,
            topic=self.notifications.topic,
        )
        self._grant_training()

        self.reprocess = ReprocessWorkflow(
            self,
            "Reprocess",
            config=config,
            dataset_bucket=self.storage.dataset_bucket,
            queue=self.ingestion.queue,
            dependencies=self.python_dependencies,
        )
        # Re-enqueued notifications go to the converter's queue (SSE-SQS: no key to grant);
        # the machine lists annotations/ with the ItemReader's grant, which CDK adds.
        iam.Grant.add_to_principal(grantee=self.reprocess.function, actions=["sqs:SendMessage"],
                                   resource_arns=[self.ingestion.queue.queue_arn])

        self.api = InferenceApi(
            self,
            "Api",
            config=config,
            dependencies=self.python_dependencies,
            imaging=self.imaging_dependencies,
            dataset_bucket_name=self.storage.dataset_bucket.bucket_name,
        )
        # Detections may name an image already in the dataset bucket.
        iam.Grant.add_to_principal(grantee=self.api.inference.function, actions=["s3:GetObject"],
                                   resource_arns=[self.storage.dataset_bucket.arn_for_objects(f"{IMAGES_PREFIX}*")])
        acknowledge(self.api.inference.role, object_wildcard(self.storage.dataset_bucket, f"{IMAGES_PREFIX}*"),
                    "A detection may name any uploaded image by key; reads are limited to the images/ prefix.")

        # Batch detection over a prefix of images/ (it grants itself what it touches of these).
        self.batch = BatchDetection(self, "Batch", config=config, dataset_bucket=self.storage.dataset_bucket,
                                    artifacts_bucket=self.storage.artifacts_bucket, dependencies=self.python_dependencies,
                                    imaging=self.imaging_dependencies, activity_table=self.api.activity_table)

        CfnOutput(self, "DatasetBucketName", value=self.storage.dataset_bucket.bucket_name)
        CfnOutput(self, "ArtifactsBucketName", value=self.storage.artifacts_bucket.bucket_name)
        CfnOutput(self, "AnnotationQueueUrl", value=self.ingestion.queue.queue_url)
        CfnOutput(self, "DeadLetterQueueUrl", value=self.ingestion.dead_letter_queue.queue_url)
        CfnOutput(self, "StateMachineArn", value=self.training.state_machine.state_machine_arn)
        CfnOutput(self, "ReprocessStateMachineArn", value=self.reprocess.state_machine.state_machine_arn)
        CfnOutput(self, "BatchStateMachineArn", value=self.batch.state_machine.state_machine_arn)
        CfnOutput(self, "ModelParameterPrefix", value=self.config.model_parameter_prefix)
        CfnOutput(self, "NotificationTopicArn", value=self.notifications.topic.topic_arn)
        CfnOutput(self, "ApiUrl", value=self.api.api.url)
        if getattr(self.api, "api_key", None) is not None:
            CfnOutput(self, "ApiKeyId", value=self.api.api_key.key_id)

    def _grant_training(self) -> None:
        """Each workflow function gets the objects of its own step, the machine its topic."""
        dataset = self.storage.dataset_bucket
        artifacts = self.storage.artifacts_bucket
        training = self.training
        runs = f"{RUNS_PREFIX}*"
        # Prepare reads training requests; each shard child reads fragments and reports and
        # writes a shard of the run; assemble reads the run's shards and writes its manifests.
        iam.Grant.add_to_principal(grantee=training.prepare_function, actions=["s3:GetObject"], resource_arns=[dataset.arn_for_objects(f"{REQUESTS_PREFIX}*")])
        iam.Grant.add_to_principal(
            grantee=training.shard_function, actions=["s3:GetObject"],
            resource_arns=[artifacts.arn_for_objects(f"{FRAGMENTS_PREFIX}*"), artifacts.arn_for_objects(f"{REPORTS_PREFIX}*")],
        )
        iam.Grant.add_to_principal(grantee=training.assemble_function, actions=["s3:GetObject"], resource_arns=[artifacts.arn_for_objects(runs)])
        for function in (training.shard_function, training.assemble_function, training.evaluate_function, training.finish_function):
            iam.Grant.add_to_principal(grantee=function, actions=["s3:PutObject"], resource_arns=[artifacts.arn_for_objects(runs)])
        # Listing only under runs/ (the merge lists its run's shards).
        training.assemble_function.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[artifacts.bucket_arn], conditions={"StringLike": {"s3:prefix": [runs]}}))
        # Evaluate reads the summary file Rekognition writes under the run's output prefix.
        iam.Grant.add_to_principal(grantee=training.evaluate_function, actions=["s3:GetObject"], resource_arns=[artifacts.arn_for_objects(runs)])
        # The report reads the evaluation files Rekognition writes under a run's output prefix (this
        # run's, and the previous live model's for the comparison) and the test images it draws, and
        # writes only its own folder (fashion_pipeline.layout.run_report_prefix).
        report_reads = [artifacts.arn_for_objects(f"{RUNS_PREFIX}*/output/*"), dataset.arn_for_objects(f"{IMAGES_PREFIX}*")]
        iam.Grant.add_to_principal(grantee=training.report_function, actions=["s3:GetObject"], resource_arns=report_reads)
        iam.Grant.add_to_principal(grantee=training.report_function, actions=["s3:PutObject"],
                                   resource_arns=[artifacts.arn_for_objects(f"{RUNS_PREFIX}*/{EVALUATION_FOLDER}*")])
        self.notifications.grant_publish(training.state_machine)
        grants = [
            (training.prepare_function, dataset, f"{REQUESTS_PREFIX}*"),
            (training.shard_function, artifacts, f"{FRAGMENTS_PREFIX}*"),
            (training.shard_function, artifacts, f"{REPORTS_PREFIX}*"),
            (training.shard_function, artifacts, runs),
            (training.assemble_function, artifacts, runs),
            (training.evaluate_function, artifacts, runs),
            (training.finish_function, artifacts, runs),
            (training.report_function, artifacts, f"{RUNS_PREFIX}*/output/*"),
            (training.report_function, artifacts, f"{RUNS_PREFIX}*/{EVALUATION_FOLDER}*"),
            (training.report_function, dataset, f"{IMAGES_PREFIX}*"),
        ]
        for function, bucket, pattern in grants:
            acknowledge(
                function.role,
                object_wildcard(bucket, pattern),
                f"Runs and datasets are created at run time, so the step needs every key under '{pattern}'; "
                "the grant is limited to this prefix and to the object actions of the step.",
            )

    def _grant_converter(self) -> None:
        """Read annotations and images; write, list and delete fragments and reports (the reports
        of objects outside any dataset under unassigned/); send range messages to its own queue;
        nothing else."""
        dataset = self.storage.dataset_bucket
        artifacts = self.storage.artifacts_bucket
        converter = self.ingestion.converter
        reads = [f"{ANNOTATIONS_PREFIX}*", f"{IMAGES_PREFIX}*"]
        writes = [f"{FRAGMENTS_PREFIX}*", f"{REPORTS_PREFIX}*", f"{UNASSIGNED_PREFIX}*"]

        iam.Grant.add_to_principal(
            grantee=converter,
            actions=["s3:GetObject"],
            resource_arns=[dataset.arn_for_objects(pattern) for pattern in reads],
        )
        # Unconditioned ListBucket makes a missing image a 404 rather than a 403 when probing.
        iam.Grant.add_to_principal(grantee=converter, actions=["s3:ListBucket"], resource_arns=[dataset.bucket_arn])
        # DeleteObject: a removed annotation takes its outputs with it (the versioned bucket
        # keeps them as noncurrent versions until the lifecycle rule expires them).
        iam.Grant.add_to_principal(
            grantee=converter,
            actions=["s3:PutObject", "s3:DeleteObject"],
            resource_arns=[artifacts.arn_for_objects(pattern) for pattern in writes],
        )

        # Listing fragments/ and reports/ only: the parts of a COCO file converted in ranges
        # are found by prefix, to delete those a new upload or a removal leaves behind.
        converter.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[artifacts.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{FRAGMENTS_PREFIX}*", f"{REPORTS_PREFIX}*"]}}))
        # Range messages go to the converter's own queue (SSE-SQS: no key to grant); SendMessage
        # alone, which also authorises SendMessageBatch (SQS batch actions have no IAM action).
        iam.Grant.add_to_principal(grantee=converter, actions=["sqs:SendMessage"], resource_arns=[self.ingestion.queue.queue_arn])

        role = self.ingestion.converter_role
        for bucket, pattern in [(dataset, p) for p in reads] + [(artifacts, p) for p in writes]:
            acknowledge(
                role,
                object_wildcard(bucket, pattern),
                f"The converter handles any dataset, so it needs every key under '{pattern}'; "
                "the grant is limited to this prefix and to the listed object actions.",
            )
