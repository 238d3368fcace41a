"""Buckets: the dataset users upload, the artifacts the pipeline derives, and access logs."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infrastructure.config import PipelineConfig

# Key layout. Runtime code spells these out itself (lambdas/ never imports CDK); keep in sync.
IMAGES_PREFIX = "images/"  # dataset: images/<dataset>/...
ANNOTATIONS_PREFIX = "annotations/"  # dataset: annotations/<dataset>/... (triggers conversion)
REQUESTS_PREFIX = "requests/"  # dataset: requests/<dataset>.json (training requests)
FRAGMENTS_PREFIX = "fragments/"  # artifacts: one manifest fragment per annotation object
REPORTS_PREFIX = "reports/"  # artifacts: conversion reports
RUNS_PREFIX = "runs/"  # artifacts: runs/<dataset>/<run-id>/ (manifests, reports, output)
# Rekognition trains and tests from runs/<dataset>/<run-id>/{train,test}.manifest ...
RUN_MANIFESTS_PATTERN = "runs/*.manifest"
# ... and writes training output where CreateProjectVersion's OutputConfig.S3KeyPrefix
# points, which must be runs/<dataset>/<run-id>/output/.
RUN_OUTPUT_PATTERN = "runs/*/output/*"

REKOGNITION_PRINCIPAL = "rekognition.amazonaws.com"
S3_ACCESS_LOGS_USE_BUCKET_POLICY = "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy"
ABORT_INCOMPLETE_UPLOADS_AFTER = Duration.days(7)


class Storage(Construct):
    """The three buckets, hardened alike, with Rekognition Custom Labels access.

    Encryption is SSE-S3 on purpose: Rekognition Custom Labels reads the images and manifests
    and writes training output with its own service principal. With SSE-KMS every key policy
    would also have to admit Rekognition (and callers would need kms:Decrypt), which adds a
    moving part without protecting against anyone the bucket policies do not already stop.
    Access logs cannot be delivered to a KMS-encrypted bucket at all.
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

        self._allow_rekognition_custom_labels()

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

    def _allow_rekognition_custom_labels(self) -> None:
        """Bucket policies for Custom Labels training, per the Custom Labels developer guide.

        The guide's policy (SIDs AWSRekognitionS3*20191011) grants bucket ACL/location reads,
        object reads and PutObject with bucket-owner-full-control; here each grant is narrowed
        to the prefixes Rekognition actually uses, and aws:SourceAccount prevents another
        account's Rekognition project from using the service principal as a confused deputy.
        """
        principal = iam.ServicePrincipal(REKOGNITION_PRINCIPAL)
        same_account = {"StringEquals": {"aws:SourceAccount": Stack.of(self).account}}
        object_read = ["s3:GetObject", "s3:GetObjectAcl", "s3:GetObjectVersion", "s3:GetObjectTagging"]
        bucket_read = ["s3:GetBucketAcl", "s3:GetBucketLocation"]

        for bucket, readable in (
            (self.dataset_bucket, f"{IMAGES_PREFIX}*"),
            (self.artifacts_bucket, RUN_MANIFESTS_PATTERN),
        ):
            bucket.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="RekognitionBucketRead",
                    principals=[principal],
                    actions=bucket_read,
                    resources=[bucket.bucket_arn],
                    conditions=same_account,
                )
            )
            bucket.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="RekognitionObjectRead",
                    principals=[principal],
                    actions=object_read,
                    resources=[bucket.arn_for_objects(readable)],
                    conditions=same_account,
                )
            )
        self.artifacts_bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="RekognitionOutputWrite",
                principals=[principal],
                actions=["s3:PutObject"],
                resources=[self.artifacts_bucket.arn_for_objects(RUN_OUTPUT_PATTERN)],
                conditions={
                    "StringEquals": {
                        "aws:SourceAccount": Stack.of(self).account,
                        "s3:x-amz-acl": "bucket-owner-full-control",
                    }
                },
            )
        )
