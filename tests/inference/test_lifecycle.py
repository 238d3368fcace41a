"""fashion_pipeline.lifecycle: the model pointer and the idle auto-stop decision."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fashion_pipeline.lifecycle import (
    MAX_CLOCK_SKEW,
    ModelPointer,
    PointerError,
    idle_decision,
    iso,
    latest,
    parse_pointer,
    parse_time,
    retry_after,
)

from .conftest import POINTER

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


def test_retry_after_by_status():
    assert retry_after("STARTING") == retry_after("STOPPING") == 60
    assert retry_after("STOPPED") == retry_after("FAILED") == 300


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
