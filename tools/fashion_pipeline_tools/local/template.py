"""Read a synthesized CloudFormation template the way CloudFormation would resolve it.

Local mode and the workflow tests build their emulated resources from the CDK template
itself, not from a second hand-kept list: this module names each resource and resolves
``Ref``, ``Fn::GetAtt``, ``Fn::Join``, ``Fn::Sub`` and ``Fn::Select`` against those names.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from fashion_pipeline.layout import STACK_NAME

ACCOUNT = "123456789012"

# (resource type) -> (name property, how Ref resolves, {attribute: how it resolves})
_KINDS: dict[str, tuple[str | None, str, dict[str, str]]] = {
    "AWS::S3::Bucket": ("BucketName", "{name}", {"Arn": "arn:aws:s3:::{name}", "RegionalDomainName": "{name}.s3.{region}.amazonaws.com"}),
    "AWS::Lambda::Function": ("FunctionName", "{name}", {"Arn": "arn:aws:lambda:{region}:{account}:function:{name}"}),
    "AWS::DynamoDB::Table": ("TableName", "{name}", {"Arn": "arn:aws:dynamodb:{region}:{account}:table/{name}"}),
    "AWS::DynamoDB::GlobalTable": ("TableName", "{name}", {"Arn": "arn:aws:dynamodb:{region}:{account}:table/{name}"}),
    "AWS::SSM::Parameter": ("Name", "{name}", {"Value": ""}),
    "AWS::SNS::Topic": ("TopicName", "arn:aws:sns:{region}:{account}:{name}", {"TopicArn": "arn:aws:sns:{region}:{account}:{name}", "TopicName": "{name}"}),
    "AWS::SQS::Queue": ("QueueName", "{endpoint}/{account}/{name}", {"Arn": "arn:aws:sqs:{region}:{account}:{name}", "QueueName": "{name}", "QueueUrl": "{endpoint}/{account}/{name}"}),
    "AWS::StepFunctions::StateMachine": ("StateMachineName", "arn:aws:states:{region}:{account}:stateMachine:{name}", {"Name": "{name}", "Arn": "arn:aws:states:{region}:{account}:stateMachine:{name}"}),
    "AWS::Logs::LogGroup": ("LogGroupName", "{name}", {"Arn": "arn:aws:logs:{region}:{account}:log-group:{name}:*"}),
    "AWS::IAM::Role": ("RoleName", "{name}", {"Arn": "arn:aws:iam::{account}:role/{name}", "RoleId": "AROA{name}"}),
    "AWS::Lambda::LayerVersion": (None, "arn:aws:lambda:{region}:{account}:layer:{name}:1", {}),
    "AWS::Events::Rule": ("Name", "{name}", {"Arn": "arn:aws:events:{region}:{account}:rule/{name}"}),
    "AWS::KMS::Key": (None, "{name}", {"Arn": "arn:aws:kms:{region}:{account}:key/{name}"}),
    "AWS::ApiGateway::RestApi": (None, "{name}", {"RootResourceId": "root"}),
}


def load(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


class Template:
    def __init__(self, template: dict[str, Any], *, region: str = "us-east-1", account: str = ACCOUNT,
                 stack_name: str = STACK_NAME, endpoint: str = "https://sqs.us-east-1.amazonaws.com") -> None:
        self.template = template
        self.region = region
        self.account = account
        self.stack_name = stack_name
        self.endpoint = endpoint.rstrip("/")
        self.resources: dict[str, dict[str, Any]] = template.get("Resources", {})
        self._names: dict[str, str] = {}

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.resources.items() if r["Type"] == kind}

    def properties(self, logical_id: str) -> dict[str, Any]:
        return self.resolve(self.resources[logical_id].get("Properties", {}))

    def name(self, logical_id: str) -> str:
        """The physical name: the template's own, or one derived as CloudFormation would."""
        if logical_id not in self._names:
            kind = self.resources[logical_id]["Type"]
            prop = _KINDS.get(kind, (None, "", {}))[0]
            given = self.resources[logical_id].get("Properties", {}).get(prop) if prop else None
            if given is not None:
                self._names[logical_id] = self.resolve(given)
            else:
                digest = hashlib.sha1(f"{self.stack_name}/{logical_id}".encode()).hexdigest()[:8]
                base = f"{self.stack_name}-{logical_id}"[:50]
                if kind == "AWS::S3::Bucket":  # lower case, no underscores, at most 63
                    base = re.sub(r"[^a-z0-9-]", "-", base.lower())
                self._names[logical_id] = f"{base}-{digest}"
        return self._names[logical_id]

    def _format(self, pattern: str, logical_id: str) -> str:
        return pattern.format(name=self.name(logical_id), region=self.region, account=self.account, endpoint=self.endpoint)

    def ref(self, logical_id: str) -> str:
        pseudo = {
            "AWS::Region": self.region, "AWS::AccountId": self.account, "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account}:stack/{self.stack_name}/local",
            "AWS::NoValue": None,
        }
        if logical_id in pseudo:
            return pseudo[logical_id]  # type: ignore[return-value]
        if logical_id in self.template.get("Parameters", {}):
            return self.template["Parameters"][logical_id].get("Default", "")
        kind = self.resources[logical_id]["Type"]
        return self._format(_KINDS.get(kind, (None, "{name}", {}))[1], logical_id)

    def get_att(self, logical_id: str, attribute: str) -> str:
        kind = self.resources[logical_id]["Type"]
        pattern = _KINDS.get(kind, (None, "", {}))[2].get(attribute)
        if pattern is None:
            return f"arn:aws:local:{self.region}:{self.account}:{logical_id}/{attribute}"
        return self._format(pattern, logical_id)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical_id, attribute)
            if key == "Fn::Join":
                separator, parts = arg
                return separator.join(str(self.resolve(p)) for p in parts)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                separator, text = arg
                return str(self.resolve(text)).split(separator)
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                variables = {k: self.resolve(v) for k, v in variables.items()}

                def substitute(match: re.Match[str]) -> str:
                    token = match.group(1)
                    if token in variables:
                        return str(variables[token])
                    if "." in token:
                        return self.get_att(*token.split(".", 1))
                    return str(self.ref(token))

                return re.sub(r"\$\{([^}!]+)\}", substitute, text)
        return {k: self.resolve(v) for k, v in value.items()}
