"""Create, in an emulated AWS (moto), the resources a synthesized template declares."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any

from . import authorization, identities
from .lambda_runtime import LocalFunction, LocalLambdaRuntime
from .template import Template

_PLACEHOLDER_ZIP = io.BytesIO()
with zipfile.ZipFile(_PLACEHOLDER_ZIP, "w") as _zip:
    _zip.writestr("index.py", "# the real code runs in-process: fashion_pipeline_tools.local.lambda_runtime\n")


@dataclass
class Deployment:
    template: Template
    names: dict[str, str] = field(default_factory=dict)  # logical id -> physical name or ARN
    roles: dict[str, str] = field(default_factory=dict)  # role logical id -> role ARN

    def find(self, kind: str, contains: str = "") -> str:
        """The physical name of the one resource of ``kind`` whose logical id has ``contains``."""
        matches = [lid for lid in self.template.of_type(kind) if contains in lid]
        if len(matches) != 1:
            raise LookupError(f"{len(matches)} resources of type {kind} match {contains!r}: {matches}")
        return self.names[matches[0]]


def provision(session: Any, template: Template, runtime: LocalLambdaRuntime, *, skip_functions: tuple[str, ...] = ()) -> Deployment:
    """Buckets, tables, parameters, topics, queues, functions and state machines."""
    deployment = Deployment(template)
    s3 = session.client("s3", region_name=template.region)
    for lid in template.of_type("AWS::S3::Bucket"):
        name = template.name(lid)
        s3.create_bucket(Bucket=name)
        if template.resources[lid].get("Properties", {}).get("VersioningConfiguration", {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        deployment.names[lid] = name

    dynamodb = session.client("dynamodb", region_name=template.region)
    for kind in ("AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable"):
        for lid in template.of_type(kind):
            props = template.properties(lid)
            dynamodb.create_table(
                TableName=template.name(lid), KeySchema=props["KeySchema"], AttributeDefinitions=props["AttributeDefinitions"],
                BillingMode="PAY_PER_REQUEST",
            )
            deployment.names[lid] = template.name(lid)

    ssm = session.client("ssm", region_name=template.region)
    for lid in template.of_type("AWS::SSM::Parameter"):
        props = template.properties(lid)
        ssm.put_parameter(Name=props["Name"], Value=props["Value"], Type=props.get("Type", "String"), Overwrite=True)
        deployment.names[lid] = props["Name"]

    sns = session.client("sns", region_name=template.region)
    for lid in template.of_type("AWS::SNS::Topic"):
        key = template.properties(lid).get("KmsMasterKeyId")
        arn = sns.create_topic(Name=template.name(lid), Attributes={"KmsMasterKeyId": key} if key else {})["TopicArn"]
        if key:
            authorization.register_topic_key(arn, key)
        deployment.names[lid] = arn

    sqs = session.client("sqs", region_name=template.region)
    for lid in _dead_letter_queues_first(template):
        props = template.properties(lid)
        tags = {tag["Key"]: str(tag["Value"]) for tag in props.get("Tags", [])}
        deployment.names[lid] = sqs.create_queue(QueueName=template.name(lid), Attributes=queue_attributes(props),
                                                 **({"tags": tags} if tags else {}))["QueueUrl"]

    # Every role of the template, with its policies: functions and machines run as them.
    deployment.roles = identities.create_roles(template)

    lambda_client = session.client("lambda", region_name=template.region)
    for lid in template.of_type("AWS::Lambda::Function"):
        props = template.properties(lid)
        name = template.name(lid)
        if any(part in lid for part in skip_functions) or "Handler" not in props:
            continue
        environment = (props.get("Environment") or {}).get("Variables", {})
        runtime.add(LocalFunction(name, props["Handler"], {k: str(v) for k, v in environment.items()},
                                  props.get("MemorySize", 128), props.get("Timeout", 3), props["Role"], lid))
        lambda_client.create_function(
            FunctionName=name, Runtime="python3.12", Role=props["Role"],
            Handler=props["Handler"], Code={"ZipFile": _PLACEHOLDER_ZIP.getvalue()},
        )
        deployment.names[lid] = name

    sfn = session.client("stepfunctions", region_name=template.region)
    for lid in template.of_type("AWS::StepFunctions::StateMachine"):
        props = template.properties(lid)
        definition = props.get("DefinitionString")
        if isinstance(definition, dict):
            definition = json.dumps(definition)
        deployment.names[lid] = sfn.create_state_machine(
            name=template.name(lid), definition=definition, roleArn=props["RoleArn"],
        )["stateMachineArn"]
    return deployment


# AWS::SQS::Queue properties that are CreateQueue attributes of the same name ("AWS::SQS::Queue",
# CloudFormation User Guide, https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-sqs-queue.html).
# Without them a local queue would have no dead-letter queue and SQS's 30 s default visibility,
# and a message that always fails would be delivered again forever.
_QUEUE_ATTRIBUTES = (
    "ContentBasedDeduplication", "DeduplicationScope", "DelaySeconds", "FifoQueue", "FifoThroughputLimit",
    "KmsDataKeyReusePeriodSeconds", "KmsMasterKeyId", "MaximumMessageSize", "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds", "RedriveAllowPolicy", "RedrivePolicy", "SqsManagedSseEnabled", "VisibilityTimeout",
)


def queue_attributes(props: dict[str, Any]) -> dict[str, str]:
    """CreateQueue's Attributes for a resolved AWS::SQS::Queue: every attribute is a string, the
    policies JSON (RedrivePolicy's deadLetterTargetArn already resolved to the DLQ's ARN)."""
    attributes = {}
    for name in _QUEUE_ATTRIBUTES:
        if name not in props:
            continue
        value = props[name]
        if isinstance(value, dict):
            value = json.dumps(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        attributes[name] = str(value)
    return attributes


def _dead_letter_queues_first(template: Template) -> list[str]:
    """Queues in an order where each dead-letter queue exists before the queues redriving to it
    (SQS refuses a RedrivePolicy naming a queue that does not exist)."""
    queues = list(template.of_type("AWS::SQS::Queue"))
    arns = {template.get_att(lid, "Arn"): lid for lid in queues}
    ordered: list[str] = []

    def place(lid: str, seen: tuple[str, ...] = ()) -> None:
        if lid in ordered:
            return
        if lid in seen:
            raise ValueError(f"queues redrive to each other: {' -> '.join(seen + (lid,))}")
        target = (template.properties(lid).get("RedrivePolicy") or {}).get("deadLetterTargetArn")
        if target in arns:
            place(arns[target], seen + (lid,))
        ordered.append(lid)

    for lid in queues:
        place(lid)
    return ordered
