"""The synthesized training state machine against botocore's service models and Step Functions' quotas.

Each test reads the definition as CloudFormation would resolve it (the session's one
synthesis). What they prove, state by state:

* every SDK task's Parameters are valid input of its operation (names, types, enums, lengths,
  patterns), and the optimized integrations' too;
* every error name in a Retry or Catch is one Step Functions can raise for that task: a
  documented ``States.*`` name, or ``<Service>.<ErrorShape>`` of the service's model;
* no read of a member the model marks optional (or of a list element, or of a member only
  some paths write) is unguarded, so no state can end in States.Runtime, which ``States.ALL``
  does not catch (the abstract interpreter is tests/infrastructure/workflow_contract.py);
* every polling loop is bounded by a poll count, writes at most the history events
  ``WORKFLOW_HISTORY`` allows per poll, and the longest run any options allow fits the
  25,000 events an execution holds;
* every wait-for-status loop polls again only on in-progress statuses of its enum and leaves on
  every other one.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from fashion_pipeline_tools.local.service_model import (
    modelled_errors,
    service_errors,
    step_functions_error_name,
    validate_step_functions_parameters,
)
from fashion_pipeline.training import HISTORY_EVENT_LIMIT, MAX_TRAINING_TIMEOUT_HOURS, WORKFLOW_HISTORY, HistoryBudget, OptionsError, TrainingOptions
from tests.infrastructure import workflow_contract as contract
from tests.synthesis import Synthesized

# Step Functions' own error names ("Error names", https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html).
STATES_ERRORS = {
    "States.ALL", "States.DataLimitExceeded", "States.ExceedToleratedFailureThreshold", "States.HeartbeatTimeout",
    "States.Http.Socket", "States.IntrinsicFailure", "States.ItemReaderFailed", "States.NoChoiceMatched",
    "States.ParameterPathFailure", "States.Permissions", "States.ResultPathMatchFailure", "States.ResultWriterFailed",
    "States.Runtime", "States.TaskFailed", "States.Timeout", "States.QueryEvaluationError",
}  # fmt: skip
# The Lambda integration's client-side errors ("Handle transient Lambda service exceptions",
# https://docs.aws.amazon.com/step-functions/latest/dg/bp-lambda-serviceexception.html).
LAMBDA_CLIENT_ERRORS = {"Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException", "Lambda.ClientExecutionTimeoutException"}
OPTIMIZED = {
    "arn:aws:states:::lambda:invoke": ("lambda", "invoke"),
    "arn:aws:states:::sns:publish": ("sns", "publish"),
    "arn:aws:states:::events:putEvents": ("events", "putEvents"),
}
IN_PROGRESS = re.compile(r"^(.*_IN_PROGRESS|STARTING|STOPPING|DELETING)$")
LOOP_BUDGET = {"deletion_polls": "deletion", "dataset_polls": "dataset", "training_polls": "training", "model_polls": "model"}


@pytest.fixture(scope="module")
def machine(synthesized: Synthesized) -> dict[str, Any]:
    return contract.definition(synthesized)


@pytest.fixture(scope="module")
def analysis(machine: dict[str, Any]) -> contract.Analysis:
    return contract.Analysis(machine["States"], machine["StartAt"], contract.Knowledge(contract.Obj(()), frozenset())).run()


def test_every_sdk_task_sends_valid_parameters(machine: dict[str, Any]) -> None:
    problems, checked = _parameter_problems(machine)
    assert checked >= 20 and not problems, "\n".join(problems)


def _parameter_problems(machine: dict[str, Any]) -> tuple[list[str], int]:
    problems, checked = [], 0
    for name, state in contract.all_states(machine["States"]).items():
        if state["Type"] != "Task":
            continue
        match = contract.SDK.match(state["Resource"])
        if match:
            service, action = match["service"], match["action"]
            parameters = state.get("Parameters", {})
        elif state["Resource"].startswith("arn:aws:lambda:"):
            checked += 1  # a function ARN as the resource: Parameters are the event our handler parses
            continue
        elif state["Resource"] in OPTIMIZED:
            service, action = OPTIMIZED[state["Resource"]]
            # The optimized integrations serialise a JSON Payload / Detail themselves.
            parameters = {k: v for k, v in state.get("Parameters", {}).items() if k not in ("Payload", "Payload.$")}
        else:
            problems.append(f"{name}: {state['Resource']} is an integration this test does not know")
            continue
        checked += 1
        problems += [f"{name}: {p}" for p in validate_step_functions_parameters(service, action, parameters)]
    return problems, checked


def test_a_wrong_parameter_is_caught_by_the_same_check() -> None:
    assert validate_step_functions_parameters("rekognition", "createDataset", {"ProjectArn.$": "$.p", "DatasetType": "VALIDATION"})
    assert validate_step_functions_parameters("rekognition", "describeProjectVersions", {"ProjectArn.$": "$.p", "VersionName.$": "$.v"})


def test_every_retried_or_caught_error_can_happen(machine: dict[str, Any]) -> None:
    problems = _error_problems(machine)
    assert not problems, "\n".join(problems)
    # The name the old definition retried for a 503: no Rekognition shape has it, so it never matched.
    assert "Rekognition.ServiceUnavailableException" not in {step_functions_error_name("rekognition", e) for e in service_errors("rekognition")}


def _error_problems(machine: dict[str, Any]) -> list[str]:
    problems = []
    for name, state in contract.all_states(machine["States"]).items():
        match = contract.SDK.match(state.get("Resource", ""))
        if match:
            service = contract._SERVICE.get(match["service"], match["service"])
            possible = {step_functions_error_name(service, e) for e in service_errors(service)}
        elif state.get("Resource", "").startswith(("arn:aws:lambda:", "arn:aws:states:::lambda:invoke")):
            possible = LAMBDA_CLIENT_ERRORS | {step_functions_error_name("lambda", e) for e in modelled_errors("lambda", "Invoke")}
        else:
            possible = set()
        for handler in state.get("Retry", []) + state.get("Catch", []):
            for error in handler["ErrorEquals"]:
                if error not in STATES_ERRORS | possible:
                    problems.append(f"{name}: {error} is not an error this task can raise")
    return problems


def test_no_state_reads_an_optional_member_unguarded(analysis: contract.Analysis, machine: dict[str, Any]) -> None:
    assert set(analysis.entry) == set(machine["States"]), "every state is reachable"
    assert not analysis.problems, "\n".join(analysis.problems)


def test_the_analysis_catches_an_unguarded_optional_read(machine: dict[str, Any]) -> None:
    """The old definition's Pass read StatusMessage straight after a describe: caught."""
    states = json.loads(json.dumps(machine["States"]))
    states["Training failed (no message)"] = {"Type": "Pass", "Parameters": {"Error": "TrainingFailed", "Cause.$": "$.training.ProjectVersionDescriptions[0].StatusMessage"},
                                              "ResultPath": "$.error", "Next": "Record failure"}
    problems = contract.Analysis(states, machine["StartAt"], contract.Knowledge(contract.Obj(()), frozenset())).run().problems
    assert any("Training failed (no message)" in p and "StatusMessage may be absent" in p for p in problems), problems
    states = json.loads(json.dumps(machine["States"]))
    states["Training status?"]["Choices"][0]["Variable"] = "$.training.ProjectVersionDescriptions[0].Statuss"
    problems = contract.Analysis(states, machine["StartAt"], contract.Knowledge(contract.Obj(()), frozenset())).run().problems
    assert any("does not exist" in p and "Statuss" in p for p in problems), problems


def loops(machine: dict[str, Any]) -> dict[str, tuple[set[str], str, str]]:
    """Each polling loop: its states, its Wait and the budget field its poll limit comes from."""
    states = machine["States"]
    found = {}
    for loop in contract.cycles(states):
        [wait] = [n for n in loop if states[n]["Type"] == "Wait"]
        [start] = [n for n, s in states.items() if n not in loop and s.get("Next") == wait]
        limit = states[start]["Parameters"]["limit.$"].rsplit(".", 1)[1]
        found[wait] = (loop, start, LOOP_BUDGET[limit])
    return found


def measured_budget(machine: dict[str, Any]) -> HistoryBudget:
    states = machine["States"]
    per_poll = {field: contract.iteration_events(states, loop, wait) for wait, (loop, _, field) in loops(machine).items()}
    return HistoryBudget(fixed=contract.longest_path(states, machine["StartAt"]), **per_poll)


def test_every_polling_loop_is_bounded_by_its_poll_count(machine: dict[str, Any]) -> None:
    states = machine["States"]
    found = loops(machine)
    assert sorted(field for _, _, field in found.values()) == ["dataset", "dataset", "deletion", "model", "training"]
    for wait, (loop, start, _) in found.items():
        exits = [rule for name in loop if states[name]["Type"] == "Choice" for rule in states[name]["Choices"]
                 if rule.get("NumericGreaterThanEqualsPath") == "$.poll.limit" and rule["Next"] not in loop]
        assert len(exits) == 1 and exits[0]["Variable"] == "$.poll.count", wait
        counters = [n for n in loop if states[n]["Type"] == "Pass" and states[n].get("ResultPath") == "$.poll"]
        assert len(counters) == 1 and "States.MathAdd($.poll.count, 1)" in json.dumps(states[counters[0]]["Parameters"]), wait


def test_the_history_budget_covers_what_the_definition_writes(machine: dict[str, Any]) -> None:
    measured = measured_budget(machine)
    for field in ("fixed", "deletion", "dataset", "training", "model"):
        assert getattr(WORKFLOW_HISTORY, field) >= getattr(measured, field), (field, measured)
        # ... and not so loose that it forbids runs for nothing.
        assert getattr(WORKFLOW_HISTORY, field) <= getattr(measured, field) * 1.25 + 10, (field, measured)


def shortest_poll(**options: Any) -> int:
    """The smallest poll_seconds the options check accepts with these other options."""
    low, high = 0, 3600
    while low < high:
        middle = (low + high) // 2
        try:
            TrainingOptions.parse({**options, "poll_seconds": middle})
            high = middle
        except OptionsError:
            low = middle + 1
    return low


@pytest.mark.parametrize("hours", [0.01, 1, 72, MAX_TRAINING_TIMEOUT_HOURS])
@pytest.mark.parametrize("wait_minutes", [1, 120, 720])
def test_the_longest_allowed_run_fits_the_execution_history(machine: dict[str, Any], hours: float, wait_minutes: int) -> None:
    measured = measured_budget(machine)
    start_poll = next((p for p in range(0, 3601) if _accepted(hours, wait_minutes, p)), None)
    if start_poll is None:
        pytest.skip("no start_poll_seconds makes these waits fit")  # the options check refuses them all
    poll = shortest_poll(training_timeout_hours=hours, wait_timeout_minutes=wait_minutes, start_poll_seconds=start_poll)
    options = TrainingOptions.parse({"training_timeout_hours": hours, "wait_timeout_minutes": wait_minutes,
                                     "start_poll_seconds": start_poll, "poll_seconds": poll})
    assert options.history_events(measured) <= HISTORY_EVENT_LIMIT


def _accepted(hours: float, wait_minutes: int, start_poll: int) -> bool:
    try:
        TrainingOptions.parse({"training_timeout_hours": hours, "wait_timeout_minutes": wait_minutes, "start_poll_seconds": start_poll, "poll_seconds": 3600})
        return True
    except OptionsError:
        return False


def test_the_seeds_sixty_hour_training_can_be_polled_every_ten_minutes() -> None:
    options = TrainingOptions.parse({"training_timeout_hours": 72, "poll_seconds": 600})
    assert options.limits["training_polls"] == 432 and options.history_events() <= HISTORY_EVENT_LIMIT
    with pytest.raises(OptionsError, match="poll_seconds must be at least"):
        TrainingOptions.parse({"training_timeout_hours": 72, "poll_seconds": 60})


def test_every_status_loop_leaves_on_every_status_but_in_progress_ones(machine: dict[str, Any], analysis: contract.Analysis) -> None:
    states = machine["States"]
    checked = 0
    for wait, (loop, _, _) in loops(machine).items():
        for name in loop:
            state = states[name]
            rules = [r for r in state.get("Choices", []) if "StringEquals" in r]
            if not rules:
                continue
            path = contract.parse_path(rules[0]["Variable"])
            node = contract.node_at(analysis.entry[name].doc, path)
            assert isinstance(node, contract.Sdk), (name, node)
            enum = node.enum(())
            assert enum, f"{name}: {rules[0]['Variable']} is not an enum"
            for value in enum:
                target = next((r["Next"] for r in rules if r["StringEquals"] == value and r["Variable"] == rules[0]["Variable"]), state["Default"])
                if target in loop:
                    assert IN_PROGRESS.match(value), f"{name}: {value} polls again, but it is not an in-progress status"
            assert state["Default"] not in loop, f"{name}: an unexpected status must leave the loop"
            checked += 1
    assert checked == 4  # two datasets, training, the model


# -- the batch detection machine (infrastructure/batch.py) ----------------------------------------


@pytest.fixture(scope="module")
def batch_machine(synthesized: Synthesized) -> dict[str, Any]:
    return contract.definition(synthesized, "Batch")


def test_the_batch_machine_sends_valid_parameters_and_handles_errors_that_can_happen(batch_machine: dict[str, Any]) -> None:
    problems, checked = _parameter_problems(batch_machine)
    assert checked >= 8 and not problems, "\n".join(problems)  # 4 Rekognition tasks, 4 Lambdas (the Map's child included)
    problems = _error_problems(batch_machine)
    assert not problems, "\n".join(problems)


def test_the_batch_machine_reads_no_optional_member_unguarded(batch_machine: dict[str, Any]) -> None:
    analysis = contract.Analysis(batch_machine["States"], batch_machine["StartAt"], contract.Knowledge(contract.Obj(()), frozenset())).run()
    assert set(analysis.entry) == set(batch_machine["States"]), "every state is reachable"
    assert not analysis.problems, "\n".join(analysis.problems)
    # The same check finds a status read without its guard.
    states = json.loads(json.dumps(batch_machine["States"]))
    states["Model described?"]["Choices"][0]["Variable"] = "$.described.Other"
    problems = contract.Analysis(states, batch_machine["StartAt"], contract.Knowledge(contract.Obj(()), frozenset())).run().problems
    assert any("Model status?" in p and "may be absent" in p for p in problems), problems


def test_the_batch_start_poll_is_bounded_and_its_longest_wait_fits_the_history(batch_machine: dict[str, Any]) -> None:
    from fashion_pipeline.batch import MAX_START_POLLS, MAX_START_TIMEOUT_MINUTES, BatchRequest, JobRefused

    states = batch_machine["States"]
    [loop] = contract.cycles(states)
    [wait] = [n for n in loop if states[n]["Type"] == "Wait"]
    [start] = [n for n, s in states.items() if n not in loop and s.get("Next") == wait]
    assert states[start]["Parameters"]["limit.$"] == "$.job.start_polls"
    exits = [rule for name in loop if states[name]["Type"] == "Choice" for rule in states[name]["Choices"]
             if rule.get("NumericGreaterThanEqualsPath") == "$.poll.limit" and rule["Next"] not in loop]
    assert len(exits) == 1 and exits[0]["Variable"] == "$.poll.count"
    per_poll = contract.iteration_events(states, loop, wait)
    assert contract.longest_path(states, batch_machine["StartAt"]) + MAX_START_POLLS * per_poll <= HISTORY_EVENT_LIMIT
    # The request check keeps every job within MAX_START_POLLS.
    assert BatchRequest.parse({"dataset": "d", "source": "s3://b/images/", "start_timeout_minutes": MAX_START_TIMEOUT_MINUTES,
                               "poll_seconds": 8}, dataset_bucket="b").start_polls <= MAX_START_POLLS
    with pytest.raises(JobRefused, match="poll at least every 8 s"):
        BatchRequest.parse({"dataset": "d", "source": "s3://b/images/", "start_timeout_minutes": MAX_START_TIMEOUT_MINUTES,
                            "poll_seconds": 7}, dataset_bucket="b")


def test_the_batch_start_poll_leaves_on_every_status_but_starting(batch_machine: dict[str, Any]) -> None:
    states = batch_machine["States"]
    [loop] = contract.cycles(states)
    analysis = contract.Analysis(states, batch_machine["StartAt"], contract.Knowledge(contract.Obj(()), frozenset())).run()
    [name] = [n for n in loop if any("StringEquals" in r for r in states[n].get("Choices", []))]
    rules = states[name]["Choices"]
    node = contract.node_at(analysis.entry[name].doc, contract.parse_path(rules[0]["Variable"]))
    assert isinstance(node, contract.Sdk) and node.enum(())
    simple = [r for r in rules if "StringEquals" in r]
    # STOPPED polls on only for a job waiting on another job's start ($.job.start false).
    [waiting] = [r for r in rules if "And" in r]
    assert waiting["And"] == [{"Variable": rules[0]["Variable"], "StringEquals": "STOPPED"},
                              {"Variable": "$.job.start", "BooleanEquals": False}] and waiting["Next"] in loop
    for value in node.enum(()):
        target = next((r["Next"] for r in simple if r["StringEquals"] == value), states[name]["Default"])
        assert (target in loop) == (value == "STARTING"), value
    assert next(r["Next"] for r in simple if r["StringEquals"] == "RUNNING") == "Detect images"
