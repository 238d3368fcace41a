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
    _zip.writestr("index.py", "# the real code runs in-process: fashion_pipeline.local.lambda_runtime\n")


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
    for lid in template.of_type("AWS::SQS::Queue"):
        deployment.names[lid] = sqs.create_queue(QueueName=template.name(lid))["QueueUrl"]

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
                                  props.get("MemorySize", 128), props.get("Timeout", 3), props["Role"]))
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
