"""Contract: every AWS call in a deployed function's code is a real operation, and its role allows it.

The end-to-end tests enforce IAM on the paths they run; this test reads every path statically
(tests/infrastructure/calls.py says how calls are attributed to a handler and what is checked),
against the session's one synthesis. The last tests run the analysis on small made-up packages
so that it cannot pass by finding nothing.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.infrastructure import calls
from tests.synthesis import Synthesized

# Calls known to exist: the analysis must find at least these (handler -> (service, operation)).
KNOWN_CALLS = {
    "workflow.handler.prepare": {("dynamodb", "PutItem"), ("s3", "GetObject")},
    "workflow.handler.shard": {("s3", "GetObject"), ("s3", "PutObject")},
    "workflow.handler.assemble": {("s3", "ListObjectsV2"), ("s3", "GetObject"), ("s3", "PutObject")},
    "workflow.handler.evaluate": {("s3", "GetObject"), ("s3", "PutObject")},
    "workflow.handler.retire": {("rekognition", "DescribeProjectVersions"), ("rekognition", "StopProjectVersion")},
    "workflow.handler.finish": {("dynamodb", "DeleteItem"), ("s3", "PutObject")},
    "evaluation_report.handler.handler": {("s3", "GetObject"), ("s3", "PutObject"), ("ssm", "GetParameter"),
                                          ("rekognition", "DescribeProjectVersions")},
    "converter.handler.handler": {("s3", "GetObject"), ("s3", "HeadObject"), ("s3", "PutObject"), ("s3", "DeleteObject"),
                                  ("s3", "ListObjectsV2"), ("sqs", "SendMessageBatch")},
    "inference.handler.handler": {("rekognition", "DetectCustomLabels"), ("ssm", "GetParametersByPath"), ("s3", "GetObject")},
    "inference.autostop.handler": {("rekognition", "StopProjectVersion"), ("ssm", "GetParametersByPath")},
}


@pytest.fixture(scope="module")
def functions(synthesized: Synthesized) -> list[calls.DeployedFunction]:
    return calls.deployed_functions(synthesized.template_dict)


def _by_handler(functions: list[calls.DeployedFunction]) -> dict[str, calls.DeployedFunction]:
    return {f.handler: f for f in functions}


def test_every_function_with_code_under_lambdas_is_analysed(synthesized: Synthesized, functions: list[calls.DeployedFunction]) -> None:
    # A Handler naming a missing module or function fails in the fixture (LookupError); CDK's own
    # custom-resource handlers ("index.handler", inline code) are the only ones left out.
    analysed = {f.logical_id for f in functions}
    skipped = {}
    for logical_id, resource in synthesized.resources("AWS::Lambda::Function").items():
        handler = resource["Properties"]["Handler"]
        if calls.lambda_handler_package(handler) is not None:
            assert logical_id in analysed, f"{logical_id} ({handler}) was not analysed"
        else:
            skipped[logical_id] = handler
    assert analysed, "no Lambda function of lambdas/ found in the template"
    assert all(h == "index.handler" for h in skipped.values()), f"functions left out of the analysis: {skipped}"


def test_the_inventory_finds_the_known_calls(functions: list[calls.DeployedFunction]) -> None:
    found = _by_handler(functions)
    missing = {
        handler: sorted(expected - found[handler].operations()) if handler in found else "handler not deployed"
        for handler, expected in KNOWN_CALLS.items()
        if handler not in found or not expected <= found[handler].operations()
    }
    assert not missing, f"calls the analysis should find but did not: {missing}\n\n{calls.inventory_text(functions)}"


def test_handlers_of_one_module_are_analysed_separately(functions: list[calls.DeployedFunction]) -> None:
    found = _by_handler(functions)
    prepare, retire = found["workflow.handler.prepare"].operations(), found["workflow.handler.retire"].operations()
    assert not {op for op in prepare if op[0] == "rekognition"}, prepare
    assert not {op for op in retire if op[0] in ("s3", "dynamodb")}, retire
    assert ("s3", "ListObjectsV2") not in prepare  # assemble's listing


def test_every_call_is_a_real_operation_with_a_valid_request(functions: list[calls.DeployedFunction]) -> None:
    problems = calls.call_problems(functions)
    assert not problems, "\n".join(problems)


def test_every_call_is_allowed_by_its_function_role(synthesized: Synthesized, functions: list[calls.DeployedFunction]) -> None:
    violations = calls.grant_violations(synthesized.template_dict, functions)
    assert not violations, "\n".join(violations) + "\n\ninventory:\n" + calls.inventory_text(functions)


# -- the analysis itself, on made-up packages ----------------------------------------------------
def _package(root: Path, name: str, files: dict[str, str]) -> None:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    for file, text in files.items():
        (root / name / file).write_text(textwrap.dedent(text))


FAKE_PACKAGE = {
    "handler.py": """
        import boto3
        from botocore.session import get_session
        from pkg import helpers
        from pkg.store import Store

        def client(name):
            return boto3.client(name)

        def sqs_client():
            return boto3.client("sqs")

        def handler(event, context):
            s3 = boto3.client("s3")
            s3.get_objekt(Bucket="b", Key="k")
            s3.get_object(Bucket="b", Kye="k")
            s3.put_object("b", "k")
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket="b", Prefx="p"):
                pass
            s3.upload_file("/tmp/x", "b", "k", ExtraArgs={"ContentTyp": "text/plain"})
            helpers.put(client("dynamodb"), "table")
            Store(s3).read("key")
            params = {"QueueUrl": "u"}
            params["MaxNumberOfMessages"] = 5
            sqs_client().receive_message(**params)
            get_session().create_client("ssm").get_parameter(Name="p", WithDecryption=True)

        def other(event, context):
            boto3.client("sns").publish(TopicArn="t", Message="m")
        """,
    "helpers.py": """
        def put(dynamodb, table):
            dynamodb.put_item(TableName=table, Item={"id": {"S": "1"}}, ConditionExpresion="x")
        """,
    "store.py": """
        class Store:
            def __init__(self, client):
                self.client = client

            def read(self, key):
                return self.client.get_object(Bucket="b", Key=key)["Body"].read()

            def unused(self):
                return self.client.delete_object(Bucket="b", Key="k")
        """,
}


def test_the_analysis_attributes_calls_and_finds_invalid_ones(tmp_path: Path) -> None:
    _package(tmp_path, "pkg", FAKE_PACKAGE)
    found = calls.Program("pkg", tmp_path, shared=()).calls("pkg.handler.handler")
    operations = {(c.service, c.operation) for c in found if c.operation}
    assert operations == {
        ("s3", "GetObject"), ("s3", "PutObject"), ("s3", "ListObjectsV2"), ("dynamodb", "PutItem"),
        ("sqs", "ReceiveMessage"), ("ssm", "GetParameter"),
    }  # fmt: skip  # not sns (another handler), not DeleteObject (a method nobody calls)
    problems = "\n".join(p for c in found for p in c.problems)
    for expected in (
        "handler.py:15 calls s3.get_objekt, which is not an operation",
        "handler.py:16 calls s3.GetObject with an invalid request: Kye: unknown member",
        "handler.py:16 calls s3.GetObject with an invalid request: Key: required member",
        "handler.py:17 calls s3.PutObject with positional arguments",
        "handler.py:18 calls s3.ListObjectsV2 with an invalid request: Prefx: unknown member",
        "handler.py:20 calls s3.upload_file with ExtraArgs 'ContentTyp'",
        "handler.py:20 calls s3.upload_file with invalid ExtraArgs: ContentTyp: unknown member of PutObjectRequest",
        "helpers.py:3 calls dynamodb.PutItem with an invalid request: ConditionExpresion: unknown member",
    ):
        assert expected in problems, f"{expected!r} not in:\n{problems}"
    assert "ReceiveMessage" not in problems and "GetParameter" not in problems, problems
    assert len(problems.splitlines()) == 8, problems


def _template(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Resources": {
            "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "b"}},
            "Role": {"Type": "AWS::IAM::Role", "Properties": {}},
            "Policy": {
                "Type": "AWS::IAM::Policy",
                "Properties": {"PolicyDocument": {"Statement": statements}, "Roles": [{"Ref": "Role"}]},
            },
            "Function": {
                "Type": "AWS::Lambda::Function",
                "Properties": {"Handler": "pkg.handler.handler", "Role": {"Fn::GetAtt": ["Role", "Arn"]}},
            },
            "Custom": {"Type": "AWS::Lambda::Function", "Properties": {"Handler": "index.handler", "Role": "x"}},
        }
    }


def test_grants_are_matched_by_action_wildcard_and_s3_resource_shape(tmp_path: Path) -> None:
    _package(tmp_path, "pkg", {"handler.py": """
        import boto3

        def handler(event, context):
            s3 = boto3.client("s3")
            s3.head_object(Bucket="b", Key="k")
            s3.list_objects_v2(Bucket="b")
            s3.put_object(Bucket="b", Key="k", Body=b"")
            boto3.client("dynamodb").get_item(TableName="t", Key={"id": {"S": "1"}})
            boto3.client("rekognition").describe_projects()
            boto3.client("lambda").invoke(FunctionName="f")
        """})  # fmt: skip
    bucket_arn = {"Fn::GetAtt": ["Bucket", "Arn"]}
    objects = {"Fn::Join": ["", [bucket_arn, "/*"]]}
    template = _template([
        {"Effect": "Allow", "Action": "s3:get*", "Resource": objects},  # HeadObject -> s3:GetObject, any case
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:PutObject"], "Resource": objects},  # ListBucket on objects: useless
        {"Effect": "Allow", "NotAction": ["dynamodb:Scan", "s3:*"], "Resource": "*"},
        {"Effect": "Deny", "Action": "rekognition:*", "Resource": "*"},
        {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "*"},
    ])  # fmt: skip
    functions = calls.deployed_functions(template, root=tmp_path)
    assert [f.logical_id for f in functions] == ["Function"]  # index.handler is CDK's, not analysed
    violations = calls.grant_violations(template, functions)
    assert violations == [
        "pkg.handler.handler: pkg/handler.py:7 calls s3.ListObjectsV2, which needs s3:ListBucket; the role Role allows "
        "it only on arn:aws:s3:::b/*, none of which can be a bucket ARN (arn:aws:s3:::<bucket>)",
        "pkg.handler.handler: pkg/handler.py:10 calls rekognition.DescribeProjects, which needs "
        "rekognition:DescribeProjects; the role Role denies it",
    ], violations
    # Without the NotAction statement, GetItem is not allowed at all.
    template["Resources"]["Policy"]["Properties"]["PolicyDocument"]["Statement"].pop(2)
    assert "the role Role does not allow it" in "\n".join(calls.grant_violations(template, functions))
