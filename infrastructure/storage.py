"""Buckets: the dataset users upload, the artifacts the pipeline derives, and access logs."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infrastructure.config import PipelineConfig

# Key layout: one definition, the runtime's (fashion_pipeline.layout), granted on here.
from fashion_pipeline.layout import (  # noqa: E402  (re-exported for the constructs)
    ANNOTATIONS_PREFIX, FRAGMENTS_PREFIX, IMAGES_PREFIX, REPORTS_PREFIX, REQUESTS_PREFIX, RUNS_PREFIX, UNASSIGNED_PREFIX,
)

S3_ACCESS_LOGS_USE_BUCKET_POLICY = "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy"
ABORT_INCOMPLETE_UPLOADS_AFTER = Duration.days(7)


class Storage(Construct):
    """The three buckets, hardened alike.

    No bucket policy admits Rekognition: with the current (dataset) API, Custom Labels reads
    the images and manifests and writes training output with the permissions of the caller of
    CreateDataset and CreateProjectVersion ("Set up SDK permissions", Custom Labels developer
    guide), so the training workflow's role carries those grants (training.py). Encryption is
    SSE-S3: with SSE-KMS every caller would also need kms:Decrypt/GenerateDataKey on the key,
    a moving part that protects against no one the bucket policies do not already stop, and
    access logs cannot be delivered to a KMS-encrypted bucket at all.
    """

    def __init__(self, scope: Construct, id: str, *, config: PipelineConfig) -> None:
        super().__init__(scope, id)
        # Log delivery must be granted by bucket policy: the ACL alternative (the default
        # without this flag) is incompatible with BucketOwnerEnforced, whatever the app sets.
        self.node.set_context(S3_ACCESS_LOGS_USE_BUCKET_POLICY, True)
        self._config = config
        removal = config.stateful_removal

        self.access_logs_bucket = s3.Bucket(
            self,
            "AccessLogsBucket",
            **self._hardening(removal),
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireAccessLogs",
                    expiration=Duration.days(config.access_log_expiration_days),
                    abort_incomplete_multipart_upload_after=ABORT_INCOMPLETE_UPLOADS_AFTER,
                )
            ],
        )
        self.dataset_bucket = s3.Bucket(
            self,
            "DatasetBucket",
            bucket_name=config.dataset_bucket_name,
            **self._hardening(removal),
            versioned=True,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix="dataset/",
            lifecycle_rules=[self._version_cleanup_rule()],
            # Training requests (requests/<dataset>.json) start runs through EventBridge.
            event_bridge_enabled=True,
        )

        self.artifacts_bucket = s3.Bucket(
            self,
            "ArtifactsBucket",
            bucket_name=config.artifacts_bucket_name,
            **self._hardening(removal),
            versioned=True,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix="artifacts/",
            lifecycle_rules=[
                self._version_cleanup_rule(),
                # Fragments and reports are the input of the next training run, so they live as
                # long as their annotations (replaced versions expire with the rule above).
                # Old runs' manifests and outputs are not needed again: models keep their own
                # copy of the data they were trained on.
                s3.LifecycleRule(
                    id="ExpireOldRuns",
                    prefix=RUNS_PREFIX,
                    expiration=Duration.days(config.derived_object_expiration_days),
                ),
            ],
        )


    def _hardening(self, removal: RemovalPolicy) -> dict:
        return dict(
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=removal,
            auto_delete_objects=removal == RemovalPolicy.DESTROY,
        )

    def _version_cleanup_rule(self) -> s3.LifecycleRule:
        # Versioning protects against overwrites and deletes; old versions need not live forever.
        return s3.LifecycleRule(
            id="ExpireNoncurrentVersions",
            noncurrent_version_expiration=Duration.days(self._config.noncurrent_version_expiration_days),
            expired_object_delete_marker=True,
            abort_incomplete_multipart_upload_after=ABORT_INCOMPLETE_UPLOADS_AFTER,
        )
