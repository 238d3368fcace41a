"""fashion_pipeline.lifecycle: the model pointer and the idle auto-stop decision."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fashion_pipeline.lifecycle import (
    MAX_CLOCK_SKEW,
    PROJECT_PREFIX,
    ModelPointer,
    PointerError,
    idle_decision,
    iso,
    latest,
    parse_pointer,
    parse_time,
    project_name,
    retry_after,
    running_models,
    version_name,
    watch,
    watched_projects,
)
from fashion_pipeline.training import run_names

from .conftest import POINTER, PROJECT_ARN, VERSION_ARN, VERSION_NAME, version

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
WINDOW = 30


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


# -- pointer -----------------------------------------------------------------------------
def test_pointer_as_the_workflow_writes_it():
    pointer = parse_pointer(json.dumps(POINTER))
    assert pointer == ModelPointer(
        project_version_arn=POINTER["project_version_arn"], project_arn=POINTER["project_arn"],
        version_name=POINTER["version_name"], dataset="demo", f1=0.873, inference_units=2,
        deployed_at=datetime(2026, 11, 28, 10, 30, 0, 123000, tzinfo=timezone.utc),
    )  # fmt: skip
    assert pointer.to_dict()["deployed_at"] == "2026-11-28T10:30:00.123Z"


@pytest.mark.parametrize("text", [None, "", '{"status": "none"}', '{"status": "NONE"}', '{"project_version_arn": ""}'])
def test_no_model_deployed(text):
    assert parse_pointer(text) is None


@pytest.mark.parametrize("text", ["{not json", "[1]", '{"project_version_arn": "arn:v"}', json.dumps({**POINTER, "f1": "high"})])
def test_bad_pointers(text):
    with pytest.raises(PointerError):
        parse_pointer(text)


def test_pointer_defaults():
    pointer = parse_pointer(json.dumps({"project_version_arn": "v", "project_arn": "p", "version_name": "n"}))
    assert (pointer.inference_units, pointer.f1, pointer.deployed_at, pointer.dataset) == (1, None, None, None)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2026-11-28T10:30:00Z", datetime(2026, 11, 28, 10, 30, tzinfo=timezone.utc)),
        ("2026-11-28T11:30:00+01:00", datetime(2026, 11, 28, 10, 30, tzinfo=timezone.utc)),
        ("2026-11-28T10:30:00", datetime(2026, 11, 28, 10, 30, tzinfo=timezone.utc)),  # naive: UTC
        (1795861800, datetime(2026, 11, 28, 10, 30, tzinfo=timezone.utc)),
        ("1795861800", datetime(2026, 11, 28, 10, 30, tzinfo=timezone.utc)),
        (None, None), ("", None), ("yesterday", None), (float("nan"), None),
    ],
)  # fmt: skip
def test_parse_time(value, expected):
    assert parse_time(value) == expected


def test_iso_and_latest():
    assert iso(NOW) == "2026-11-28T12:00:00Z"
    assert iso(NOW + timedelta(microseconds=1500)) == "2026-11-28T12:00:00.001Z"
    assert iso(None) is None
    assert latest(None, ago(5), ago(1), None) == ago(1)
    assert latest(None, None) is None


def test_retry_after_only_where_waiting_helps():
    assert retry_after("STARTING") == 60
    assert retry_after("RUNNING") == 5  # found RUNNING after a refused call: it just became available
    for status in ("STOPPED", "STOPPING", "FAILED", "TRAINING_COMPLETED", "NOT_FOUND", "NONE"):
        assert retry_after(status) is None, status


# -- idle decision -----------------------------------------------------------------------
@pytest.mark.parametrize("status", ["STOPPED", "STARTING", "STOPPING", "FAILED", "TRAINING_COMPLETED", "NOT_FOUND", "NONE"])
def test_never_stops_a_model_that_is_not_running(status):
    decision = idle_decision(status, ago(600), ago(600), NOW, WINDOW)
    assert not decision.stop
    assert status in decision.reason


def test_idle_running_model_is_stopped():
    decision = idle_decision("RUNNING", ago(45), ago(120), NOW, WINDOW)
    assert decision.stop
    assert decision.idle_seconds == 45 * 60
    assert decision.since == ago(45)
    assert "idle for 45.0 min" in decision.reason


def test_boundary_of_the_idle_window():
    assert not idle_decision("RUNNING", NOW - timedelta(minutes=WINDOW, seconds=-1), ago(300), NOW, WINDOW).stop
    assert idle_decision("RUNNING", ago(WINDOW), ago(300), NOW, WINDOW).stop


def test_recently_used_model_is_kept():
    decision = idle_decision("RUNNING", ago(2), ago(300), NOW, WINDOW)
    assert not decision.stop and decision.idle_seconds == 120


def test_model_running_for_less_than_the_window_is_kept_even_without_requests():
    assert not idle_decision("RUNNING", None, ago(10), NOW, WINDOW).stop
    assert idle_decision("RUNNING", None, ago(31), NOW, WINDOW).stop


def test_a_restart_after_old_activity_counts_from_the_start():
    decision = idle_decision("RUNNING", ago(24 * 60), ago(5), NOW, WINDOW)
    assert not decision.stop and decision.since == ago(5)


def test_small_clock_skew_counts_as_now():
    decision = idle_decision("RUNNING", NOW + timedelta(minutes=2), ago(300), NOW, WINDOW)
    assert not decision.stop and decision.idle_seconds == 0


def test_timestamps_far_in_the_future_are_ignored():
    # A writer with a broken clock must not keep a model billing forever.
    decision = idle_decision("RUNNING", NOW + timedelta(days=365), ago(300), NOW, WINDOW)
    assert decision.stop and "ignored" in decision.reason
    assert not idle_decision("RUNNING", NOW + MAX_CLOCK_SKEW, ago(300), NOW, WINDOW).stop
    decision = idle_decision("RUNNING", NOW + timedelta(days=1), None, NOW, WINDOW)
    assert not decision.stop and "no known" in decision.reason


def test_no_reference_at_all_keeps_the_model():
    decision = idle_decision("RUNNING", None, None, NOW, WINDOW)
    assert not decision.stop and decision.idle_seconds is None


def test_naive_datetimes_are_utc():
    naive_now = NOW.replace(tzinfo=None)
    assert idle_decision("RUNNING", ago(45).replace(tzinfo=None), None, naive_now, WINDOW).stop


def test_idle_minutes_must_be_positive():
    with pytest.raises(ValueError):
        idle_decision("RUNNING", None, None, NOW, 0)


moments = st.one_of(st.none(), st.integers(-3 * 24 * 60, 24 * 60).map(lambda m: NOW - timedelta(minutes=m)))


@given(st.sampled_from(["RUNNING", "STOPPED", "STARTING", "STOPPING", "FAILED"]), moments, moments, st.integers(1, 240))
def test_decision_properties(status, last_activity, running_since, idle_minutes):
    decision = idle_decision(status, last_activity, running_since, NOW, idle_minutes)
    if decision.stop:
        assert status == "RUNNING"
        usable = [m for m in (last_activity, running_since) if m is not None and m - NOW <= MAX_CLOCK_SKEW]
        # stopped only when every usable reference is at least the window old
        assert usable and all(NOW - m >= timedelta(minutes=idle_minutes) for m in usable)
    elif status == "RUNNING" and decision.idle_seconds is not None:
        assert decision.idle_seconds < idle_minutes * 60


# -- every model of the pipeline's projects ----------------------------------------------
DEPLOYED = parse_pointer(json.dumps({**POINTER, "deployed_at": iso(ago(20))}))
SHOES = "arn:aws:rekognition:us-east-1:123456789012:project/fashion-pipeline-shoes/1700000000100"
OTHER = "arn:aws:rekognition:us-east-1:123456789012:project/someone-else/1700000000300"


def epoch(moment):
    return int(moment.timestamp())


def test_names_from_arns():
    assert (project_name(PROJECT_ARN), project_name(VERSION_ARN), version_name(VERSION_ARN)) == ("fashion-pipeline-demo", "fashion-pipeline-demo", VERSION_NAME)


def test_the_pipeline_names_its_projects_with_the_prefix():
    assert run_names("shoes", NOW, "exec-1")["project_name"].startswith(PROJECT_PREFIX)


def test_watched_projects_are_the_deployed_ones_then_the_pipelines():
    assert watched_projects([OTHER, SHOES, PROJECT_ARN], [DEPLOYED]) == [PROJECT_ARN, SHOES]
    assert watched_projects([], [DEPLOYED]) == [PROJECT_ARN]  # listing failed: still the deployed model's
    assert watched_projects([OTHER, SHOES], []) == [SHOES]


def check(*descriptions, activity=None, deployed=DEPLOYED, project=PROJECT_ARN):
    found = watch(project, descriptions, activity or {}, deployed=deployed, now=NOW, idle_minutes=WINDOW)
    return {w.arn: w for w in found}


def test_each_running_version_has_its_own_reference():
    old, newer = version(PROJECT_ARN, "demo.old"), version(PROJECT_ARN, "demo.newer")
    activity = {
        VERSION_ARN: {"observed_status": "RUNNING"},
        old["ProjectVersionArn"]: {"observed_status": "RUNNING", "last_request_at": epoch(ago(35)), "started_at": epoch(ago(50))},
        newer["ProjectVersionArn"]: {"observed_status": "RUNNING", "last_request_at": epoch(ago(90)), "running_seen_at": epoch(ago(10))},
    }
    deployed_version = {**version(PROJECT_ARN, VERSION_NAME), "ProjectVersionArn": VERSION_ARN}
    found = check(deployed_version, old, newer, activity=activity)
    assert not found[VERSION_ARN].decision.stop and found[VERSION_ARN].decision.since == ago(20)  # its deployment
    assert found[VERSION_ARN].deployed and not found[old["ProjectVersionArn"]].deployed
    # The deployment is the deployed version's alone: the old one counts from its last request.
    assert found[old["ProjectVersionArn"]].decision.stop and found[old["ProjectVersionArn"]].decision.since == ago(35)
    assert not found[newer["ProjectVersionArn"]].decision.stop and found[newer["ProjectVersionArn"]].decision.since == ago(10)
    assert all(not w.record for w in found.values())  # nothing changed: nothing to write


def test_a_version_never_seen_counts_from_now():
    console = version(SHOES, "shoes.console")
    [found] = check(console, project=SHOES).values()
    assert not found.decision.stop and found.running_since == NOW
    assert found.record == {"running_seen_at": epoch(NOW), "observed_status": "RUNNING"}
    # Used through the API long ago (deployed then), never seen by the auto-stop: it may just have started.
    [found] = check(console, activity={console["ProjectVersionArn"]: {"last_request_at": epoch(ago(600))}}, project=SHOES).values()
    assert not found.decision.stop and found.decision.since == NOW


def test_the_deployed_version_never_seen_counts_from_its_deployment():
    deployed_version = {**version(PROJECT_ARN, VERSION_NAME), "ProjectVersionArn": VERSION_ARN}
    found = check(deployed_version, deployed=parse_pointer(json.dumps({**POINTER, "deployed_at": iso(ago(31))})))[VERSION_ARN]
    assert found.decision.stop and found.record == {"observed_status": "RUNNING"}


def test_a_start_since_the_last_round_counts_from_now():
    shoes = version(SHOES, "shoes.v1")
    for previous in ("STOPPED", "STARTING", "STOPPING"):
        activity = {shoes["ProjectVersionArn"]: {"observed_status": previous, "last_request_at": epoch(ago(600)), "running_seen_at": epoch(ago(600))}}
        [found] = check(shoes, activity=activity, project=SHOES).values()
        assert not found.decision.stop and found.running_since == NOW and found.record["running_seen_at"] == epoch(NOW), previous


def test_a_starting_version_is_recorded_and_kept():
    starting = version(SHOES, "shoes.v2", status="STARTING")
    [found] = check(starting, activity={starting["ProjectVersionArn"]: {"last_request_at": epoch(ago(600))}}, project=SHOES).values()
    assert not found.decision.stop and "STARTING" in found.decision.reason
    assert found.record == {"observed_status": "STARTING"}


def test_versions_that_do_not_bill_are_ignored_unless_recorded_billing():
    stopped, failed = version(SHOES, "shoes.v1", status="STOPPED"), version(SHOES, "shoes.v0", status="TRAINING_FAILED")
    activity = {stopped["ProjectVersionArn"]: {"observed_status": "RUNNING", "running_seen_at": epoch(ago(60))}}
    found = check(stopped, failed, activity=activity, project=SHOES)
    # Stopped from the console since the last round: noted, so that a later start counts afresh.
    assert list(found) == [stopped["ProjectVersionArn"]]
    assert found[stopped["ProjectVersionArn"]].record == {"observed_status": "STOPPED"} and not found[stopped["ProjectVersionArn"]].decision.stop


def test_the_deployed_version_is_watched_in_any_status():
    deployed_version = {**version(PROJECT_ARN, VERSION_NAME, status="STOPPED"), "ProjectVersionArn": VERSION_ARN}
    assert check(deployed_version)[VERSION_ARN].status == "STOPPED"
    assert check()[VERSION_ARN].status == "NOT_FOUND"  # its project no longer lists it
    assert check(project=SHOES) == {}  # another project's listing says nothing about it


def test_running_models_with_cost_estimates():
    listed = [
        version(SHOES, "shoes.v1", units=2), version(SHOES, "shoes.v2", status="STARTING", units=None),
        version(SHOES, "shoes.v0", status="STOPPED"), {**version(PROJECT_ARN, VERSION_NAME), "ProjectVersionArn": VERSION_ARN},
    ]  # fmt: skip
    assert running_models(listed, exclude=VERSION_ARN) == [
        {"version": "shoes.v1", "arn": listed[0]["ProjectVersionArn"], "project": "fashion-pipeline-shoes", "status": "RUNNING",
         "inference_units": 2, "estimated_usd_per_hour": 8.0},
        {"version": "shoes.v2", "arn": listed[1]["ProjectVersionArn"], "project": "fashion-pipeline-shoes", "status": "STARTING",
         "inference_units": None, "estimated_usd_per_hour": None},
    ]  # fmt: skip
    assert [m["version"] for m in running_models(listed, exclude=None)] == ["shoes.v1", "shoes.v2", VERSION_NAME]


# -- one pointer per dataset ---------------------------------------------------------------
from fashion_pipeline import lifecycle  # noqa: E402
from fashion_pipeline.layout import dataset_of_pointer, model_pointer_name  # noqa: E402

PREFIX = "/fashion-pipeline/models"


def test_pointer_names_and_the_dataset_they_belong_to():
    assert model_pointer_name(PREFIX, "demo") == model_pointer_name(PREFIX + "/", "demo") == "/fashion-pipeline/models/demo"
    assert dataset_of_pointer(PREFIX, "/fashion-pipeline/models/demo") == "demo"
    for outside in ("/fashion-pipeline/model", "/fashion-pipeline/models", "/fashion-pipeline/models/", "/fashion-pipeline/models/a/b", "/other/demo"):
        assert dataset_of_pointer(PREFIX, outside) is None, outside


def test_pointers_are_parsed_one_by_one():
    parameters = [
        {"Name": f"{PREFIX}/demo", "Value": json.dumps(POINTER)},
        {"Name": f"{PREFIX}/shoes", "Value": "{broken"},
        {"Name": f"{PREFIX}/hats", "Value": json.dumps({"status": "none"})},
        {"Name": f"{PREFIX}/deeper/x", "Value": json.dumps(POINTER)},
    ]
    pointers = lifecycle.parse_pointers(PREFIX, parameters)
    assert set(pointers.live) == {"demo"} and set(pointers.broken) == {"shoes"} and pointers.datasets == {"demo", "shoes"}
    assert pointers.of("demo").version_name == VERSION_NAME and pointers.of("hats") is None
    with pytest.raises(PointerError, match="dataset 'shoes'"):
        pointers.of("shoes")
    healed = lifecycle.parse_pointers(PREFIX, [{"Name": f"{PREFIX}/demo", "Value": "{"}]).keeping(pointers)
    assert healed.of("demo") == pointers.of("demo") and not healed.broken


@pytest.mark.parametrize("requested, default, live, chosen", [
    ("shoes", None, ["demo"], "shoes"),  # named: that one, model or not
    (None, "shoes", ["demo", "shoes"], "shoes"),
    (None, "hats", ["demo"], "hats"),  # the default, even without a model: its answer says so
    (None, None, ["demo"], "demo"),
    (None, None, [], None),
])  # fmt: skip
def test_the_dataset_a_request_is_about(requested, default, live, chosen):
    assert lifecycle.choose_dataset(requested, default, live) == chosen


def test_several_datasets_and_no_default_need_a_name():
    with pytest.raises(lifecycle.DatasetRequired) as raised:
        lifecycle.choose_dataset(None, None, ["shoes", "demo"])
    assert raised.value.datasets == ["demo", "shoes"] and "?dataset=" in str(raised.value)


@pytest.mark.parametrize("status, step", [("TRAINING_COMPLETED", "start"), ("STOPPED", "start"), ("FAILED", "start"),
                                          ("STARTING", "wait"), ("RUNNING", "move")])  # fmt: skip
def test_what_deploying_does_from_each_status(status, step):
    assert lifecycle.promotion(status) == step


@pytest.mark.parametrize("status", ["TRAINING_IN_PROGRESS", "TRAINING_FAILED", "STOPPING", "DELETING", "COPYING_IN_PROGRESS"])
def test_statuses_that_cannot_be_deployed(status):
    with pytest.raises(lifecycle.PromotionRefused, match=status):
        lifecycle.promotion(status)


def test_a_promoted_pointer_reads_back_as_the_workflow_writes_it():
    description = {"ProjectVersionArn": VERSION_ARN, "Status": "RUNNING", "EvaluationResult": {"F1Score": 0.5}}
    pointer = lifecycle.promoted_pointer(description, project_arn=PROJECT_ARN, dataset="demo", inference_units=2, now=NOW)
    assert (pointer.project_arn, pointer.version_name, pointer.f1, pointer.inference_units, pointer.deployed_at) == (PROJECT_ARN, VERSION_NAME, 0.5, 2, NOW)
    text = lifecycle.pointer_json(pointer)
    assert parse_pointer(text) == pointer and json.loads(text)["status"] == "RUNNING"
    assert set(json.loads(text)) == set(POINTER)  # the same fields as the workflow's Pass state writes
