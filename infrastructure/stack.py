"""The deployable unit: wires the constructs together and grants access between them.

Grants live here rather than inside the constructs so that every cross-construct permission
is visible in one place. A later construct (training workflow, inference API) is added the
same way: instantiate it with ``config`` and the buckets it needs, then grant it access below.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from infrastructure.bundling import dependencies_layer
from infrastructure.config import PipelineConfig
from infrastructure.ingestion import Ingestion
from infrastructure.monitoring import AlarmTopic
from infrastructure.nag import acknowledge, object_wildcard
from infrastructure.storage import ANNOTATIONS_PREFIX, FRAGMENTS_PREFIX, IMAGES_PREFIX, REPORTS_PREFIX, Storage


class FashionPipelineStack(Stack):
    def __init__(self, scope: Construct, id: str, *, config: PipelineConfig, **kwargs: Any) -> None:
        super().__init__(scope, id, **kwargs)
        self.config = config

        self.storage = Storage(self, "Storage", config=config)
        # One layer with the third-party packages, shared by every function.
        self.python_dependencies = dependencies_layer(self, "PythonDependencies")
        self.ingestion = Ingestion(
            self,
            "Ingestion",
            config=config,
            dataset_bucket=self.storage.dataset_bucket,
            artifacts_bucket=self.storage.artifacts_bucket,
            dependencies=self.python_dependencies,
        )
        self._grant_converter()

        self.alarm_topic: AlarmTopic | None = None
        if config.alarm_email:
            self.alarm_topic = AlarmTopic(self, "Alarms", config=config, email=config.alarm_email)
            self.alarm_topic.notify(*self.ingestion.alarms)

        CfnOutput(self, "DatasetBucketName", value=self.storage.dataset_bucket.bucket_name)
        CfnOutput(self, "ArtifactsBucketName", value=self.storage.artifacts_bucket.bucket_name)
        CfnOutput(self, "DeadLetterQueueUrl", value=self.ingestion.dead_letter_queue.queue_url)

    def _grant_converter(self) -> None:
        """Read annotations and images, write fragments and reports; nothing else."""
        dataset = self.storage.dataset_bucket
        artifacts = self.storage.artifacts_bucket
        converter = self.ingestion.converter
        reads = [f"{ANNOTATIONS_PREFIX}*", f"{IMAGES_PREFIX}*"]
        writes = [f"{FRAGMENTS_PREFIX}*", f"{REPORTS_PREFIX}*"]

        iam.Grant.add_to_principal(
            grantee=converter,
            actions=["s3:GetObject"],
            resource_arns=[dataset.arn_for_objects(pattern) for pattern in reads],
        )
        # Unconditioned ListBucket makes a missing image a 404 rather than a 403 when probing.
        iam.Grant.add_to_principal(grantee=converter, actions=["s3:ListBucket"], resource_arns=[dataset.bucket_arn])
        iam.Grant.add_to_principal(
            grantee=converter,
            actions=["s3:PutObject"],
            resource_arns=[artifacts.arn_for_objects(pattern) for pattern in writes],
        )

        role = self.ingestion.converter_role
        for bucket, pattern in [(dataset, p) for p in reads] + [(artifacts, p) for p in writes]:
            acknowledge(
                role,
                object_wildcard(bucket, pattern),
                f"The converter handles any dataset, so it needs every key under '{pattern}'; "
                "the grant is limited to this prefix and to the listed object actions.",
            )
