"""Where the pipeline speaks up: one encrypted SNS topic for alarms and training runs."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infrastructure.config import PipelineConfig

CLOUDWATCH_PRINCIPAL = "cloudwatch.amazonaws.com"


class NotificationTopic(Construct):
    """SNS topic for alarms and training-run outcomes, encrypted with a customer-managed key.

    The AWS-managed SNS key cannot be used: its key policy cannot be changed to let
    CloudWatch encrypt the messages it publishes, so every alarm action would fail.
    """

    def __init__(self, scope: Construct, id: str, *, config: PipelineConfig, email: str | None) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        # Only this account's alarms may publish (the documented aws:SourceArn restriction).
        from_own_alarms = {
            "ArnLike": {
                "aws:SourceArn": stack.format_arn(
                    service="cloudwatch",
                    resource="alarm",
                    resource_name="*",
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            }
        }

        self.key = kms.Key(
            self,
            "Key",
            description="Encrypts the fashion pipeline alarm topic",
            enable_key_rotation=True,
            removal_policy=config.stateful_removal,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsEncrypt",
                principals=[iam.ServicePrincipal(CLOUDWATCH_PRINCIPAL)],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" means this key
                # No confused-deputy condition here: the request reaches KMS through SNS, and
                # the documented statement for alarm topics has none (callers are limited by
                # the topic policy below).
            )
        )

        self.topic = sns.Topic(self, "Topic", master_key=self.key, enforce_ssl=True)
        # An explicit topic policy replaces the default one, so CloudWatch must be admitted.
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal(CLOUDWATCH_PRINCIPAL)],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions=from_own_alarms,
            )
        )
        if email:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        self.action = cloudwatch_actions.SnsAction(self.topic)

    def notify(self, *alarms: cloudwatch.IAlarm) -> None:
        for alarm in alarms:
            alarm.add_alarm_action(self.action)

    def grant_publish(self, grantee: iam.IGrantable) -> None:
        """Publishing to an encrypted topic needs the key too."""
        self.topic.grant_publish(grantee)
        self.key.grant(grantee, "kms:Decrypt", "kms:GenerateDataKey*")
