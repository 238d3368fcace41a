"""Resources and properties of the synthesized stack (shipped cdk.json config + alarm e-mail)."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from infrastructure.bundling import runtime_interpreter
from aws_cdk.assertions import Match, Template

import app as cdk_app
from infrastructure import bundling
from infrastructure.config import CONTEXT_KEY, ConfigError, PipelineConfig
from infrastructure.storage import Storage
from tests.synthesis import ALARM_EMAIL, Synthesized, shipped_config

DEFAULTS = PipelineConfig()


def ref(logical_id: str) -> dict[str, Any]:
    return {"Ref": logical_id}


def arn(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def object_arn(logical_id: str, pattern: str) -> dict[str, Any]:
    return {"Fn::Join": ["", [arn(logical_id), f"/{pattern}"]]}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="module")
def ids(synthesized: Synthesized) -> dict[str, str]:
    stack = synthesized.stack
    return {
        "dataset": synthesized.logical_id(stack.storage.dataset_bucket),
        "artifacts": synthesized.logical_id(stack.storage.artifacts_bucket),
        "logs": synthesized.logical_id(stack.storage.access_logs_bucket),
        "queue": synthesized.logical_id(stack.ingestion.queue),
        "dlq": synthesized.logical_id(stack.ingestion.dead_letter_queue),
        "converter": synthesized.logical_id(stack.ingestion.converter),
        "role": synthesized.logical_id(stack.ingestion.converter_role),
        "log_group": synthesized.logical_id(stack.ingestion.converter_log_group),
        "layer": synthesized.logical_id(stack.python_dependencies),
        "topic": synthesized.logical_id(stack.notifications.topic),
        "key": synthesized.logical_id(stack.notifications.key),
    }


def bucket_policy(synthesized: Synthesized, bucket_id: str) -> list[dict[str, Any]]:
    [policy] = [
        p
        for p in synthesized.resources("AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == ref(bucket_id)
    ]
    return policy["Properties"]["PolicyDocument"]["Statement"]


def converter_statements(synthesized: Synthesized, ids: dict[str, str]) -> list[dict[str, Any]]:
    statements = []
    for policy in synthesized.resources("AWS::IAM::Policy").values():
        if ref(ids["role"]) in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    role = synthesized.template_dict["Resources"][ids["role"]]["Properties"]
    for inline in role.get("Policies", []):
        statements += inline["PolicyDocument"]["Statement"]
    return statements


def test_synthesis_is_fast_enough(synthesized: Synthesized) -> None:
    assert synthesized.seconds < 60


# --- storage -----------------------------------------------------------------------------


def test_three_buckets_all_private_encrypted_and_owner_enforced(synthesized: Synthesized) -> None:
    synthesized.template.resource_count_is("AWS::S3::Bucket", 3)
    synthesized.template.all_resources_properties(
        "AWS::S3::Bucket",
        {
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        },
    )


def test_every_bucket_policy_denies_insecure_transport(synthesized: Synthesized, ids: dict[str, str]) -> None:
    for name in ("dataset", "artifacts", "logs"):
        statements = bucket_policy(synthesized, ids[name])
        assert any(
            s["Effect"] == "Deny"
            and s["Action"] == "s3:*"
            and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            and arn(ids[name]) in as_list(s["Resource"])
            for s in statements
        ), name


def test_data_buckets_are_versioned_and_log_to_the_log_bucket(synthesized: Synthesized, ids: dict[str, str]) -> None:
    resources = synthesized.template_dict["Resources"]
    for name, prefix in (("dataset", "dataset/"), ("artifacts", "artifacts/")):
        properties = resources[ids[name]]["Properties"]
        assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
        logging = {"DestinationBucketName": ref(ids["logs"]), "LogFilePrefix": prefix}
        assert properties["LoggingConfiguration"] == logging
    assert "LoggingConfiguration" not in resources[ids["logs"]]["Properties"]


def test_lifecycle_rules(synthesized: Synthesized, ids: dict[str, str]) -> None:
    resources = synthesized.template_dict["Resources"]
    version_cleanup = {
        "Id": "ExpireNoncurrentVersions",
        "NoncurrentVersionExpiration": {"NoncurrentDays": DEFAULTS.noncurrent_version_expiration_days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
        "Status": "Enabled",
    }
    for name in ("dataset", "artifacts"):
        rules = resources[ids[name]]["Properties"]["LifecycleConfiguration"]["Rules"]
        assert any(version_cleanup.items() <= rule.items() for rule in rules), name

    artifact_rules = resources[ids["artifacts"]]["Properties"]["LifecycleConfiguration"]["Rules"]
    expiring = {rule["Prefix"]: rule["ExpirationInDays"] for rule in artifact_rules if "ExpirationInDays" in rule}
    # Fragments and reports feed every training run, so only old runs expire.
    assert expiring == {"runs/": 365}

    [log_rule] = resources[ids["logs"]]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert log_rule["ExpirationInDays"] == DEFAULTS.access_log_expiration_days
    assert log_rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}


def test_default_removal_policy_retains_data(synthesized: Synthesized) -> None:
    for bucket in synthesized.resources("AWS::S3::Bucket").values():
        assert bucket["DeletionPolicy"] == "Retain"
    assert not synthesized.resources("Custom::S3AutoDeleteObjects")


def bare_stack(id: str) -> cdk.Stack:
    """A stack in an app with the cdk.json context, for constructs tested in isolation."""
    return cdk.Stack(cdk.App(context=cdk_app.cdk_json_context()), id)


def test_destroy_removal_policy_empties_and_deletes_buckets() -> None:
    # Storage alone: no Lambda assets, so this needs no second bundling run.
    stack = bare_stack("StorageOnly")
    Storage(stack, "Storage", config=PipelineConfig(removal_policy="destroy"))
    template = Template.from_stack(stack)
    template.all_resources("AWS::S3::Bucket", {"DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete"})
    template.resource_count_is("Custom::S3AutoDeleteObjects", 3)


def test_configured_bucket_names_are_used() -> None:
    stack = bare_stack("Named")
    Storage(
        stack,
        "Storage",
        config=PipelineConfig(dataset_bucket_name="my-dataset", artifacts_bucket_name="my-artifacts"),
    )
    template = Template.from_stack(stack)
    template.has_resource_properties("AWS::S3::Bucket", {"BucketName": "my-dataset"})
    template.has_resource_properties("AWS::S3::Bucket", {"BucketName": "my-artifacts"})


# --- Rekognition Custom Labels access ----------------------------------------------------
# With the current API Custom Labels reads training data and writes its output with the
# caller's permissions ("Set up SDK permissions"): the training state machine's role carries
# them, and no bucket policy admits the service principal any more.


def machine_statements(synthesized: Synthesized) -> list[dict[str, Any]]:
    role = synthesized.logical_id(synthesized.stack.training.state_machine.role)
    return [s for p in synthesized.resources("AWS::IAM::Policy").values() if {"Ref": role} in p["Properties"]["Roles"]
            for s in p["Properties"]["PolicyDocument"]["Statement"]]


def grants(statements: list[dict[str, Any]], action: str) -> list[Any]:
    return [r for s in statements if action in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
            for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])]


def test_no_bucket_policy_admits_the_rekognition_service(synthesized: Synthesized, ids: dict[str, str]) -> None:
    for bucket in ("dataset", "artifacts", "logs"):
        assert not [s for s in bucket_policy(synthesized, ids[bucket]) if s.get("Principal") == {"Service": "rekognition.amazonaws.com"}]


def test_training_reads_images_and_run_manifests_only(synthesized: Synthesized, ids: dict[str, str]) -> None:
    statements = machine_statements(synthesized)
    for action in ("s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:GetObjectAcl"):
        assert sorted(map(json.dumps, grants(statements, action))) == sorted(map(json.dumps, [
            object_arn(ids["dataset"], "images/*"),
            object_arn(ids["artifacts"], "runs/*/train.manifest"),
            object_arn(ids["artifacts"], "runs/*/test.manifest"),
        ])), action
    for action in ("s3:ListBucket", "s3:GetBucketLocation", "s3:GetBucketAcl"):
        assert set(map(json.dumps, grants(statements, action))) == set(map(json.dumps, [arn(ids["dataset"]), arn(ids["artifacts"])])), action
    # The "Read fragments" Distributed Map lists the artifacts bucket (its S3 ItemReader).
    reader = [s for s in statements if s["Action"] in ("s3:ListBucket", ["s3:ListBucket"])]
    assert [s["Resource"] for s in reader] == [arn(ids["artifacts"])]


def test_training_writes_only_the_runs_output(synthesized: Synthesized, ids: dict[str, str]) -> None:
    statements = machine_statements(synthesized)
    assert grants(statements, "s3:PutObject") == [object_arn(ids["artifacts"], "runs/*/output/*")]
    assert not grants(statements, "s3:DeleteObject") and not grants(statements, "s3:*")
    # Tagging the new version at creation is authorized as rekognition:TagResource.
    assert [json.dumps(r) for r in grants(statements, "rekognition:TagResource")] == [json.dumps(
        {"Fn::Join": ["", ["arn:", ref("AWS::Partition"), ":rekognition:", ref("AWS::Region"), ":", ref("AWS::AccountId"), ":project/fashion-pipeline-*"]]})]


# --- ingestion ---------------------------------------------------------------------------


def test_annotations_prefix_notifies_the_queue_of_created_and_removed_objects(synthesized: Synthesized, ids: dict[str, str]) -> None:
    synthesized.template.has_resource_properties(
        "Custom::S3BucketNotifications",
        {
            "BucketName": ref(ids["dataset"]),
            "NotificationConfiguration": {
                "QueueConfigurations": [
                    {
                        "Events": [event],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "annotations/"}]}},
                        "QueueArn": arn(ids["queue"]),
                    }
                    for event in ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")
                ]
            },
        },
    )
    synthesized.template.resource_count_is("Custom::S3BucketNotifications", 1)


def test_queue_is_encrypted_with_dlq_and_long_visibility(synthesized: Synthesized, ids: dict[str, str]) -> None:
    queue = synthesized.template_dict["Resources"][ids["queue"]]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True
    assert queue["RedrivePolicy"] == {"deadLetterTargetArn": arn(ids["dlq"]), "maxReceiveCount": 5}
    assert queue["VisibilityTimeout"] >= 6 * DEFAULTS.converter_timeout_seconds

    dlq = synthesized.template_dict["Resources"][ids["dlq"]]["Properties"]
    assert dlq["SqsManagedSseEnabled"] is True
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_queues_deny_insecure_transport_and_admit_only_the_dataset_bucket(
    synthesized: Synthesized, ids: dict[str, str]
) -> None:
    policies = {
        p["Properties"]["Queues"][0]["Ref"]: p["Properties"]["PolicyDocument"]["Statement"]
        for p in synthesized.resources("AWS::SQS::QueuePolicy").values()
    }
    assert set(policies) == {ids["queue"], ids["dlq"]}
    for statements in policies.values():
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
        )
    [s3_send] = [s for s in policies[ids["queue"]] if s.get("Principal") == {"Service": "s3.amazonaws.com"}]
    assert s3_send["Condition"] == {"ArnLike": {"aws:SourceArn": arn(ids["dataset"])}}


def test_converter_function(synthesized: Synthesized, ids: dict[str, str]) -> None:
    function = synthesized.template_dict["Resources"][ids["converter"]]["Properties"]
    assert function["Runtime"] == "python3.12"
    assert function["Architectures"] == ["arm64"]
    assert function["Handler"] == "converter.handler.handler"
    assert function["MemorySize"] == DEFAULTS.converter_memory_mb
    assert function["Timeout"] == DEFAULTS.converter_timeout_seconds
    assert function["TracingConfig"] == {"Mode": "Active"}
    assert function["Layers"] == [ref(ids["layer"])]
    assert function["LoggingConfig"] == {"LogGroup": ref(ids["log_group"])}
    assert "ReservedConcurrentExecutions" not in function
    assert function["Environment"]["Variables"] == {
        "ARTIFACTS_BUCKET": ref(ids["artifacts"]),
        "PROBE_CONCURRENCY": "32",
        "QUEUE_URL": ref(ids["queue"]),  # its own queue, for the ranges of a large COCO file
        "POWERTOOLS_SERVICE_NAME": "converter",
        "POWERTOOLS_METRICS_NAMESPACE": "FashionPipeline",
        "LOG_LEVEL": "INFO",
    }
    synthesized.template.has_resource_properties(
        "AWS::Logs::LogGroup", {"RetentionInDays": DEFAULTS.log_retention_days}
    )


def test_event_source_mapping(synthesized: Synthesized, ids: dict[str, str]) -> None:
    synthesized.template.resource_count_is("AWS::Lambda::EventSourceMapping", 1)
    synthesized.template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": arn(ids["queue"]),
            "FunctionName": ref(ids["converter"]),
            "BatchSize": 100,
            "MaximumBatchingWindowInSeconds": 20,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        },
    )


def test_dependencies_layer_targets_the_function_platform(synthesized: Synthesized, ids: dict[str, str]) -> None:
    layer = synthesized.template_dict["Resources"][ids["layer"]]["Properties"]
    assert layer["CompatibleRuntimes"] == ["python3.12"]
    assert layer["CompatibleArchitectures"] == ["arm64"]


# --- alarms ------------------------------------------------------------------------------


def test_dead_letter_queue_alarm(synthesized: Synthesized, ids: dict[str, str]) -> None:
    synthesized.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [ids["dlq"], "QueueName"]}}],
            "ComparisonOperator": "GreaterThanThreshold",
            "Threshold": 0,
            "AlarmActions": [ref(ids["topic"])],
        },
    )


def test_converter_errors_alarm(synthesized: Synthesized, ids: dict[str, str]) -> None:
    synthesized.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Namespace": "AWS/Lambda",
            "MetricName": "Errors",
            "Dimensions": [{"Name": "FunctionName", "Value": ref(ids["converter"])}],
            "ComparisonOperator": "GreaterThanThreshold",
            "Threshold": 0,
            "AlarmActions": [ref(ids["topic"])],
        },
    )


def test_alarm_topic_is_encrypted_ssl_only_and_mails_the_configured_address(
    synthesized: Synthesized, ids: dict[str, str]
) -> None:
    template = synthesized.template
    template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": arn(ids["key"])})
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    template.has_resource_properties("AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": ALARM_EMAIL})
    template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                        ),
                        Match.object_like(
                            {"Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"}}
                        ),
                    ]
                )
            }
        },
    )


# --- least privilege for the converter ---------------------------------------------------


def test_converter_role_has_no_managed_policies(synthesized: Synthesized, ids: dict[str, str]) -> None:
    role = synthesized.template_dict["Resources"][ids["role"]]["Properties"]
    assert "ManagedPolicyArns" not in role


def test_converter_s3_access_is_least_privilege(synthesized: Synthesized, ids: dict[str, str]) -> None:
    s3_statements = [
        s
        for s in converter_statements(synthesized, ids)
        if any(action.startswith("s3:") for action in as_list(s["Action"]))
    ]
    grants: dict[str, list[Any]] = {}
    conditions: dict[str, Any] = {}
    for statement in s3_statements:
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            grants.setdefault(action, []).extend(as_list(statement["Resource"]))
            for resource in as_list(statement["Resource"]):
                conditions[json.dumps(resource)] = statement.get("Condition")
    assert set(grants) == {"s3:GetObject", "s3:ListBucket", "s3:PutObject", "s3:DeleteObject"}
    assert sorted(map(json.dumps, grants["s3:GetObject"])) == sorted(
        json.dumps(object_arn(ids["dataset"], p)) for p in ("annotations/*", "images/*")
    )
    # The dataset bucket unconditioned (a missing image is a 404); the artifacts bucket only
    # under fragments/ and reports/ (the parts of a COCO file converted in ranges).
    assert sorted(map(json.dumps, grants["s3:ListBucket"])) == sorted(json.dumps(arn(i)) for i in (ids["dataset"], ids["artifacts"]))
    assert conditions[json.dumps(arn(ids["artifacts"]))] == {"StringLike": {"s3:prefix": ["fragments/*", "reports/*"]}}
    # Written and, when their annotation is removed, deleted: fragments, reports, and the
    # reports of annotation objects outside every dataset.
    for action in ("s3:PutObject", "s3:DeleteObject"):
        assert sorted(map(json.dumps, grants[action])) == sorted(
            json.dumps(object_arn(ids["artifacts"], p)) for p in ("fragments/*", "reports/*", "unassigned/*")
        )


def test_converter_sends_only_to_its_own_queue(synthesized: Synthesized, ids: dict[str, str]) -> None:
    sqs_statements = [s for s in converter_statements(synthesized, ids) if any(a.startswith("sqs:") for a in as_list(s["Action"]))]
    assert sqs_statements and all(as_list(s["Resource"]) == [arn(ids["queue"])] for s in sqs_statements), sqs_statements
    # What the event source mapping consumes with (CDK merges it with the send into one
    # statement), and SendMessage for range messages: nothing more.
    actions = {a for s in sqs_statements for a in as_list(s["Action"])}
    assert actions == {"sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl", "sqs:DeleteMessage",
                       "sqs:GetQueueAttributes", "sqs:SendMessage"}


def test_converter_cannot_write_to_the_dataset_bucket(synthesized: Synthesized, ids: dict[str, str]) -> None:
    dataset = json.dumps(arn(ids["dataset"]))
    for statement in converter_statements(synthesized, ids):
        actions = as_list(statement["Action"])
        if dataset in json.dumps(statement["Resource"]):
            assert set(actions) <= {"s3:GetObject", "s3:ListBucket"}, statement
        assert not any(a.endswith("*") for a in actions if not a.startswith("xray:")), statement


def test_converter_logs_only_to_its_own_log_group(synthesized: Synthesized, ids: dict[str, str]) -> None:
    [logs] = [s for s in converter_statements(synthesized, ids) if "logs:PutLogEvents" in as_list(s["Action"])]
    assert logs["Resource"] == arn(ids["log_group"])


# --- bundling ----------------------------------------------------------------------------


def asset_dir(synthesized: Synthesized, properties: dict[str, Any]) -> Path:
    key = properties.get("Code", properties.get("Content"))["S3Key"]
    return synthesized.outdir / f"asset.{key.removesuffix('.zip')}"


def test_function_asset_holds_project_code_only(synthesized: Synthesized, ids: dict[str, str]) -> None:
    root = asset_dir(synthesized, synthesized.template_dict["Resources"][ids["converter"]]["Properties"])
    assert (root / "converter" / "handler.py").is_file()
    assert (root / "fashion_pipeline" / "__init__.py").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["converter", "fashion_pipeline"]
    assert not list(root.rglob("__pycache__"))


def test_layer_asset_holds_arm64_wheels_under_python(synthesized: Synthesized, ids: dict[str, str]) -> None:
    root = asset_dir(synthesized, synthesized.template_dict["Resources"][ids["layer"]]["Properties"])
    assert [p.name for p in root.iterdir()] == ["python"]
    for package in ("aws_lambda_powertools", "aws_xray_sdk", "pydantic", "pydantic_core"):
        assert (root / "python" / package).is_dir(), package
    native = list((root / "python" / "pydantic_core").glob("*.so"))
    assert native and all("aarch64" in so.name and "cpython-312" in so.name for so in native)
    # Byte-code only for the runtime's Python (Lambda cannot write it to /opt at cold start).
    compiled = list(root.rglob("*.pyc"))
    if runtime_interpreter():
        assert compiled and all(p.name.endswith(".cpython-312.pyc") for p in compiled)
    else:
        assert not compiled


def test_code_asset_hash_tracks_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "lambdas" / "demo_fn"
    package.mkdir(parents=True)
    (tmp_path / "lambdas" / "fashion_pipeline").mkdir()
    (package / "handler.py").write_text("def handler(event, context): return 1\n")
    monkeypatch.setattr(bundling, "LAMBDAS_DIR", tmp_path / "lambdas")

    def asset_hash() -> str:
        stack = bare_stack("Hash")
        code = bundling.python_code("demo_fn").bind(stack)
        return code.s3_location.object_key

    first = asset_hash()
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "handler.cpython-312.pyc").write_bytes(b"ignored")
    assert asset_hash() == first
    (package / "handler.py").write_text("def handler(event, context): return 2\n")
    assert asset_hash() != first


def test_an_installed_layer_is_kept_by_its_hash_and_copied_instead_of_installed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundling, "LAYER_CACHE_DIR", tmp_path / "cache")
    installs = []

    def pip(command, **_kwargs):
        target = Path(command[command.index("--target") + 1])
        (target / "demo").mkdir(parents=True)
        (target / "demo" / "__init__.py").write_text(f"INSTALL = {len(installs)}\n")
        installs.append(target)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(bundling.subprocess, "run", pip)
    monkeypatch.setattr(bundling, "_compile_for_runtime", lambda target: None)
    installer = bundling._PipInstaller(tmp_path / "requirements.txt", "abc123")

    assert installer.try_bundle(str(tmp_path / "first"))
    assert installer.try_bundle(str(tmp_path / "second"))
    assert len(installs) == 1  # the second came from the cache
    assert (tmp_path / "second" / "python" / "demo" / "__init__.py").read_text() == "INSTALL = 0\n"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["abc123"]  # nothing half-built left
    # Another hash (other requirements or wheels) is installed anew.
    assert bundling._PipInstaller(tmp_path / "requirements.txt", "def456").try_bundle(str(tmp_path / "third"))
    assert len(installs) == 2


def test_missing_wheelhouse_fails_with_instructions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundling, "WHEELHOUSE_DIR", tmp_path / "wheelhouse")
    with pytest.raises(bundling.BundlingError, match=r"make test"):
        bundling.dependencies_layer(bare_stack("NoWheels"), "Deps")


def test_missing_function_package_is_reported() -> None:
    with pytest.raises(bundling.BundlingError, match="no_such_function"):
        bundling.python_code("no_such_function")


# --- configuration -----------------------------------------------------------------------


def test_cdk_json_documents_every_key_with_the_dataclass_default() -> None:
    shipped = shipped_config()
    assert PipelineConfig.from_context(shipped) == PipelineConfig()
    documented = {re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower() for key in shipped if not key.startswith("//")}
    assert documented == {field.name for field in dataclasses.fields(PipelineConfig)}


def test_config_parses_overrides_and_json_strings() -> None:
    config = PipelineConfig.from_context(
        json.dumps({"removalPolicy": "destroy", "labelMapping": {"short_sleeved_shirt": "top"}, "converterBatchSize": 10})
    )
    assert config.destroy_on_removal
    assert json.loads(config.training_defaults_json)["label_mapping"] == {"short_sleeved_shirt": "top"}
    assert config.converter_batch_size == 10
    assert PipelineConfig.from_context(None) == PipelineConfig()


def test_partial_override_keeps_the_other_base_values() -> None:
    config = PipelineConfig.from_context(
        '{"converterMemoryMb": 2048}', base={"converterMemoryMb": 1024, "probeConcurrency": 8, "//": "note"}
    )
    assert (config.converter_memory_mb, config.probe_concurrency) == (2048, 8)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"converterMemoryMb": "1024"}, "converterMemoryMb"),
        ({"converterMemoryMb": 64}, "converterMemoryMb"),
        ({"converterTimeoutSeconds": 901}, "converterTimeoutSeconds"),
        ({"converterBatchSize": True}, "converterBatchSize"),
        ({"testFraction": 1.0}, "testFraction"),
        ({"removalPolicy": "delete"}, "removalPolicy"),
        ({"logRetentionDays": 31}, "logRetentionDays"),
        ({"datasetBucketName": "Not_A_Bucket"}, "datasetBucketName"),
        ({"labelMapping": ["top"]}, "labelMapping"),
        ({"alarmEmail": "nobody"}, "alarmEmail"),
        ({"converterBatchWindowSeconds": 0}, "converterBatchWindowSeconds"),
        ({"labelMapping": {"short sleeve top": "top"}}, "labelMapping"),  # not a category name: every run would fail
        # 240 h polled every 10 min would outgrow an execution's 25,000 history events.
        ({"trainingTimeoutHours": 240, "trainingPollSeconds": 600}, "trainingPollSeconds"),
        ({"converterMemoryMB": 1024}, "converterMemoryMB"),
        ({"modelParameterPrefix": "/fashion-pipeline/models/"}, "modelParameterPrefix"),  # the dataset is the next level
        ({"modelParameterPrefix": "fashion-pipeline"}, "modelParameterPrefix"),
        ({"modelParameterPrefix": "/aws/models"}, "modelParameterPrefix"),  # SSM reserves aws and ssm
        ({"defaultDataset": "my data"}, "defaultDataset"),
        # The old single pointer: a deployment that still sets it is told, not silently ignored.
        ({"modelParameterName": "/fashion-pipeline/model"}, "modelParameterName"),
    ],
)
def test_invalid_config_names_the_key(overrides: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{CONTEXT_KEY}\.{key}: "):
        PipelineConfig.from_context({**shipped_config(), **overrides})


def test_invalid_config_fails_the_app_before_synthesis() -> None:
    with pytest.raises(ConfigError, match=r"fashion-pipeline:config\.removalPolicy: must be one of retain, destroy"):
        cdk_app.build_app(overrides={CONTEXT_KEY: {"removalPolicy": "sometimes"}})


def test_invalid_json_context_is_reported() -> None:
    with pytest.raises(ConfigError, match="not valid JSON"):
        PipelineConfig.from_context("{removalPolicy: destroy}")
