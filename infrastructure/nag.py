"""cdk-nag v3 wiring and helpers for acknowledging findings where the cause is created.

cdk-nag v3 packs are CDK validation plugins: they run during ``app.synth()``, their findings
land in ``<outdir>/validation-report.json``, and an unacknowledged error fails synthesis.
A finding is acknowledged with ``Validations.of(construct).acknowledge(...)`` on the resource
or any of its ancestors. Findings that list several items (IAM4/IAM5) are acknowledged one
by one, as ``RuleId[Finding]``, so a new wildcard can never hide behind an old justification.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, Stack, Validations
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

# The singleton Lambda that CDK adds to configure S3 event notifications.
_NOTIFICATIONS_HANDLER_PREFIX = "BucketNotificationsHandler"
LAMBDA_BASIC_EXECUTION_ROLE = (
    "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
)


def add_security_checks(app: App) -> None:
    """Run the AwsSolutions pack on every stack of the app at synthesis."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one finding on ``scope`` and everything below it, with its justification."""
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def acknowledge_distributed_map(state_machine: IConstruct, label: str) -> None:
    """A Distributed Map runs each batch as a child execution of its state machine, which it
    describes, stops and redrives: CDK grants those on the machine's own executions (``label``
    names the Map's runs), in a policy it keeps under the state machine rather than its role."""
    machine = Stack.of(state_machine).get_logical_id(state_machine.node.default_child)
    executions = f'arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:{{"Fn::Select":[6,{{"Fn::Split":[":",{{"Ref":"{machine}"}}]}}]}}'
    for pattern in (f"{executions}:*", f"{executions}/{label}:*"):
        acknowledge(state_machine, f"AwsSolutions-IAM5[Resource::{pattern}]",
                    "The Distributed Map's child executions are named at run time; the grant (states:DescribeExecution, "
                    "StopExecution, RedriveExecution) is on this state machine's own executions only.")


def object_wildcard(bucket: s3.IBucket, key_pattern: str) -> str:
    """The IAM5 finding for a grant on ``bucket.arn_for_objects(key_pattern)``."""
    logical_id = Stack.of(bucket).get_logical_id(bucket.node.default_child)
    return f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>/{key_pattern}]"


def acknowledge_notifications_handler(stack: Stack) -> None:
    """Acknowledge the managed policy of CDK's bucket-notification handler (a stack singleton)."""
    for child in stack.node.children:
        if child.node.id.startswith(_NOTIFICATIONS_HANDLER_PREFIX):
            acknowledge(
                child,
                f"AwsSolutions-IAM4[{LAMBDA_BASIC_EXECUTION_ROLE}]",
                "CDK-managed custom-resource handler that applies the S3 notification "
                "configuration during deployments; CDK attaches AWSLambdaBasicExecutionRole "
                "only so that it can write its own logs, and its S3 permission is scoped to "
                "the dataset bucket.",
            )
