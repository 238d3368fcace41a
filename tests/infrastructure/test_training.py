"""The training workflow as synthesized: logging, tracing, resilience and scoped IAM."""

from __future__ import annotations

import json

from fashion_pipeline.training import MAX_RUN_SECONDS
from infrastructure.training_flow import TRANSIENT_REKOGNITION_ERRORS
from tests.infrastructure.workflow_contract import all_states, definition
from tests.synthesis import Synthesized


def test_state_machine_is_logged_traced_and_bounded(synthesized: Synthesized) -> None:
    [machine] = [r for lid, r in synthesized.resources("AWS::StepFunctions::StateMachine").items() if lid.startswith("Training")]
    props = machine["Properties"]
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    # A backstop above the longest run any options allow; each wait ends sooner by its poll count.
    assert MAX_RUN_SECONDS < definition(synthesized)["TimeoutSeconds"] <= MAX_RUN_SECONDS + 2 * 3600


def test_every_task_retries_transient_errors_and_every_failure_is_caught(synthesized: Synthesized) -> None:
    states = all_states(definition(synthesized)["States"])
    tasks = {name: s for name, s in states.items() if s["Type"] == "Task"}
    assert len(tasks) >= 15
    for name, task in tasks.items():
        retried = {error for retry in task.get("Retry", []) for error in retry["ErrorEquals"]}
        if "rekognition" in task["Resource"]:
            assert set(TRANSIENT_REKOGNITION_ERRORS) <= retried, name
        if name in ("Delete dataset", "Write shard"):
            continue  # inside a Map: the Map itself is caught
        if name.startswith(("Notify", "Record failure")):
            continue  # the failure path and notifications cannot fail into themselves
        if name == "Write evaluation report":
            # A report that cannot be written never fails the run: recorded, and the run goes on.
            assert [(c["ErrorEquals"], c["Next"], c["ResultPath"]) for c in task["Catch"]] == [
                (["States.ALL"], "Report not written", "$.report_error")]
            assert states["Report not written"]["Next"] == task["Next"] == "Deploy?"
            continue
        catchers = [c for c in task.get("Catch", []) if "States.ALL" in c["ErrorEquals"]]
        assert catchers and catchers[0]["Next"] == "Record failure", name


def test_training_polls_its_own_version_on_a_configurable_interval(synthesized: Synthesized) -> None:
    states = definition(synthesized)["States"]
    assert states["Wait for training"]["SecondsPath"] == "$.run.options.poll_seconds"
    describe = states["Describe training"]
    assert describe["Resource"].endswith(":aws-sdk:rekognition:describeProjectVersions")
    assert describe["Parameters"]["VersionNames.$"] == "States.Array($.run.version_name)"


def test_rekognition_permissions_are_scoped_to_the_pipelines_projects(synthesized: Synthesized) -> None:
    policies = synthesized.resources("AWS::IAM::Policy")
    statements = [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]]
    rekognition = [s for s in statements if any(str(a).startswith("rekognition:") for a in _list(s["Action"]))]
    assert rekognition
    for statement in rekognition:
        actions = {a for a in _list(statement["Action"]) if a.startswith("rekognition:")}
        if statement["Resource"] == "*":
            # No resource-level permission exists for these (Service Authorization Reference).
            assert actions <= {"rekognition:DescribeProjects", "rekognition:CreateProject"}, actions
            continue
        assert "project/fashion-pipeline-*" in json.dumps(statement["Resource"]), statement


def test_workflow_functions_and_lease_table(synthesized: Synthesized) -> None:
    functions = synthesized.resources("AWS::Lambda::Function")
    handlers = {f["Properties"].get("Handler") for f in functions.values()}
    assert {"workflow.handler.prepare", "workflow.handler.assemble", "workflow.handler.evaluate", "workflow.handler.retire",
            "workflow.handler.finish"} <= handlers
    [table] = [t for lid, t in synthesized.resources("AWS::DynamoDB::GlobalTable").items() if "RunLocks" in lid]
    assert table["Properties"]["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def _ssm_arn(path: str) -> str:
    return json.dumps({"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":ssm:", {"Ref": "AWS::Region"}, ":", {"Ref": "AWS::AccountId"}, f":parameter/{path}"]]})


def _granted(synthesized: Synthesized, action: str) -> list[str]:
    policies = synthesized.resources("AWS::IAM::Policy")
    return sorted(json.dumps(s["Resource"]) for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]
                  if action in json.dumps(s["Action"]))  # fmt: skip


def test_the_model_pointers_are_no_stack_resources(synthesized: Synthesized) -> None:
    """A stack update that touched a CloudFormation-managed pointer would reset it and leave the
    running model unserved and unwatched; the workflow creates and overwrites each dataset's."""
    assert not synthesized.resources("AWS::SSM::Parameter")
    states = definition(synthesized)["States"]
    publish = states["Publish current model"]
    assert publish["Resource"].endswith(":aws-sdk:ssm:putParameter")
    assert publish["Parameters"]["Name.$"] == "States.Format('/fashion-pipeline/models/{}', $.run.dataset)"
    assert publish["Parameters"]["Overwrite"] is True
    # The machine writes the pointers and nothing else of SSM; the API's functions list them, read-only.
    assert _granted(synthesized, "ssm:PutParameter") == [_ssm_arn("fashion-pipeline/models/*")]
    assert _granted(synthesized, "ssm:GetParametersByPath") == [_ssm_arn("fashion-pipeline/models")] * 2


def test_training_requests_start_the_machine(synthesized: Synthesized) -> None:
    [rule] = [r for lid, r in synthesized.resources("AWS::Events::Rule").items() if "EventPattern" in r["Properties"] and lid.startswith("Training")]
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "requests/"}]
    # CDK applies bucket notifications through its custom resource.
    [notifications] = synthesized.resources("Custom::S3BucketNotifications").values()
    assert notifications["Properties"]["NotificationConfiguration"]["EventBridgeConfiguration"] == {}


def _list(value):
    return value if isinstance(value, list) else [value]
