"""batch-detect's waiting, against fake clients: the summary of its own upload, or why there is none."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest

from fashion_pipeline_tools import batch_commands
from fashion_pipeline_tools.batch_commands import ended_without_summary, summary_text, wait_for_summary

NOW = dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.timezone.utc)


class NoSuchKey(Exception):
    pass


class FakeS3:
    class exceptions:
        NoSuchKey = NoSuchKey

    def __init__(self, *answers):
        self.answers = list(answers)
        self.gets = 0

    def get_object(self, Bucket, Key):
        self.gets += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if answer is None:
            raise NoSuchKey(Key)
        return {"Body": io.BytesIO(json.dumps(answer).encode())}


class FakeSfn:
    def __init__(self, executions):
        self.executions = executions  # newest first, as ListExecutions answers

    def get_paginator(self, name):
        assert name == "list_executions"
        return self

    def paginate(self, stateMachineArn):
        yield {"executions": [{k: e[k] for k in ("executionArn", "name", "status", "startDate")} for e in self.executions]}

    def describe_execution(self, executionArn):
        return next(e for e in self.executions if e["executionArn"] == executionArn)


def execution(name, status, key, minutes=1, **extra):
    event = {"detail": {"object": {"key": key}}}
    return {"executionArn": f"arn:{name}", "name": name, "status": status, "startDate": NOW + dt.timedelta(minutes=minutes),
            "input": json.dumps(event), **extra}


def test_the_wait_skips_an_earlier_uploads_summary(monkeypatch):
    monkeypatch.setattr(batch_commands.time, "sleep", lambda seconds: None)
    old, new = {"status": "succeeded", "request": {"etag": "old"}}, {"status": "succeeded", "request": {"etag": "new"}}
    s3 = FakeS3(None, old, old, new)
    assert wait_for_summary(s3, "artifacts", "j", "new", interval=0) == new and s3.gets == 4


def test_an_execution_that_ended_without_a_summary_ends_the_wait(monkeypatch):
    monkeypatch.setattr(batch_commands.time, "sleep", lambda seconds: None)
    sfn = FakeSfn([execution("other", "FAILED", "batch/other.json", 3), execution("mine", "FAILED", "batch/j.json", 2,
                                                                                    error="BatchJobFailed", cause="the failure could not be recorded"),
                   execution("older", "FAILED", "batch/j.json", -10)])
    s3 = FakeS3(None)
    summary = wait_for_summary(s3, "artifacts", "j", "e", interval=0, ended=lambda: ended_without_summary(sfn, "m", "batch/j.json", NOW))
    assert summary["status"] == "failed" and "execution mine ended FAILED without a summary: BatchJobFailed" in summary["reason"]
    assert s3.gets == batch_commands.CHECK_EXECUTIONS_EVERY


@pytest.mark.parametrize("status", ["RUNNING", "SUCCEEDED"])
def test_a_running_or_succeeded_execution_keeps_the_wait_going(status):
    sfn = FakeSfn([execution("mine", status, "batch/j.json")])
    assert ended_without_summary(sfn, "m", "batch/j.json", NOW) is None


def test_the_summary_text_says_what_happened_to_the_model():
    summary = {"status": "succeeded", "duration_seconds": 3.25, "images": 3, "answered": 2, "with_garments": 1, "errors": 1,
               "garments": 2, "errors_by_reason": {"not_an_image": 1}, "garments_by_label": {"skirt": 2},
               "model": {"version": "v1", "started_by_job": True, "stopped_by_job": False, "stop_error": "Rekognition.X: no"},
               "results": "s3://a/batch/j/results.jsonl"}
    text = summary_text(summary)
    assert text.splitlines() == [
        "succeeded in 3.2 s: 3 objects, 2 answered (1 with garments), 1 errors, 2 garments",
        "errors by reason: not_an_image 1", "garments by label: skirt 2",
        "model v1: started by the job; stopping it failed: Rekognition.X: no", "results: s3://a/batch/j/results.jsonl",
    ]
    assert summary_text({"status": "refused", "reason": "batch/j.json: no model"}) == "refused: batch/j.json: no model"


@pytest.mark.parametrize(("model", "said"), [
    ({"started_by_job": True, "stopped_by_job": True}, "started by the job and stopped"),
    ({"started_by_job": False, "stopped_by_job": True, "release": {"reason": "batch job job-a started the model and no other batch job uses it"}},
     "stopped by the job: batch job job-a started the model and no other batch job uses it"),
    ({"started_by_job": True, "stopped_by_job": False, "release": {"reason": "1 other batch job(s) still use the model"}},
     "started by the job and left running: 1 other batch job(s) still use the model"),
    ({"started_by_job": False, "stopped_by_job": False}, "left as it was"),
])
def test_the_summary_text_says_which_job_stopped_a_shared_model(model, said):
    text = summary_text({"status": "refused", "reason": "r", "model": {"version": "v1", **model}})
    assert text.splitlines()[-1] == f"model v1: {said}"
