"""The batch job's pure decisions (fashion_pipeline.batch, fashion_pipeline.layout): no AWS."""

from __future__ import annotations

import pytest

from fashion_pipeline import layout
from fashion_pipeline.batch import (
    BATCH_SIZE, MAX_CONCURRENCY, MAX_START_POLLS, START_MINUTES, BatchRequest, JobRefused, Tally, check_job_name, completeness,
    describe_estimate, error_line, estimate, listed_count, max_concurrency, start_decision,
)
from fashion_pipeline.lifecycle import USD_PER_INFERENCE_UNIT_HOUR

BUCKET = "datasets"


def parse(**doc):
    return BatchRequest.parse({"dataset": "demo", "source": f"s3://{BUCKET}/images/demo/", **doc}, dataset_bucket=BUCKET)


def test_a_minimal_request_takes_the_defaults():
    request = parse()
    assert (request.dataset, request.source_prefix, request.render, request.min_confidence) == ("demo", "images/demo/", False, None)
    assert (request.tps_per_unit, request.poll_seconds, request.start_timeout_minutes, request.start_polls) == (4, 30, 30, 60)
    assert parse(render=True, min_confidence=55, poll_seconds=0, start_timeout_minutes=2).start_polls == 120


@pytest.mark.parametrize(("doc", "code", "said"), [
    ({"source": "s3://other/images/demo/"}, "source_outside_images", "outside s3://datasets/images/"),
    ({"source": f"s3://{BUCKET}/annotations/demo/"}, "source_outside_images", "reads only the dataset bucket's images/"),
    ({"source": f"s3://{BUCKET}/images/../requests/"}, "source_outside_images", "outside"),
    ({"source": "/local/path"}, "invalid_request", "s3://BUCKET/PREFIX/"),
    ({"dataset": "My Data"}, "invalid_request", "dataset 'My Data' must be"),
    ({"render": "yes"}, "invalid_request", "render must be true or false"),
    ({"min_confidence": 101}, "invalid_request", "min_confidence must be a number from 0 to 100"),
    ({"min_confidence": True}, "invalid_request", "min_confidence"),
    ({"tps_per_unit": 0}, "invalid_request", "tps_per_unit must be a whole number from 1 to 50"),
    ({"poll_seconds": 1.5}, "invalid_request", "poll_seconds must be a whole number"),
    ({"start_timeout_minutes": 120, "poll_seconds": 1}, "invalid_request", f"more than the {MAX_START_POLLS} an execution's history holds"),
    ({"colour": "red"}, "invalid_request", "unknown field(s) colour"),
])
def test_a_bad_request_is_refused_naming_the_field(doc, code, said):
    with pytest.raises(JobRefused, match=None) as refused:
        parse(**doc)
    assert refused.value.code == code and said in str(refused.value)


def test_a_request_must_be_an_object_with_a_source():
    for doc, said in (([], "a JSON object"), ({"dataset": "demo"}, "source is required")):
        with pytest.raises(JobRefused, match=said):
            BatchRequest.parse(doc, dataset_bucket=BUCKET)


def test_job_names_follow_the_dataset_rule():
    assert check_job_name("demo-2026.01_a") == "demo-2026.01_a"
    for bad in ("", "a b", "x" * 65, "a/b", None):
        with pytest.raises(JobRefused, match="must be 1-64 letters") as refused:
            check_job_name(bad)
        assert refused.value.code == "invalid_job_name"


def test_the_concurrency_is_the_units_times_their_assumed_rate_capped():
    assert max_concurrency(1) == 4 and max_concurrency(3, 5) == 15
    assert max_concurrency(1000, 50) == MAX_CONCURRENCY
    with pytest.raises(ValueError):
        max_concurrency(0)


@pytest.mark.parametrize(("status", "decision"), [
    ("RUNNING", (False, False)), ("STARTING", (False, True)), ("STOPPED", (True, True)), ("TRAINING_COMPLETED", (True, True)),
])
def test_the_model_is_started_only_when_it_is_stopped(status, decision):
    assert start_decision(status) == decision


@pytest.mark.parametrize("status", ["STOPPING", "FAILED", "TRAINING_IN_PROGRESS", "DELETING", "UNKNOWN"])
def test_a_model_in_any_other_status_refuses_the_job(status):
    with pytest.raises(JobRefused, match=f"the dataset's model is {status}") as refused:
        start_decision(status)
    assert refused.value.code == "model_unavailable"


def test_the_estimate_counts_the_detection_and_a_start():
    running = estimate(14_400, 1, starts_model=False)  # 4 images/s: an hour
    assert running["detect_hours"] == running["model_hours"] == 1.0 and running["estimated_usd"] == USD_PER_INFERENCE_UNIT_HOUR
    started = estimate(14_400 * 2, 2, starts_model=True)  # 8 images/s on 2 units: an hour, plus the start
    assert started["model_hours"] == round(1 + START_MINUTES / 60, 4)
    assert started["inference_unit_hours"] == round(2 * (1 + START_MINUTES / 60), 4)
    assert started["estimated_usd"] == round(started["inference_unit_hours"] * USD_PER_INFERENCE_UNIT_HOUR, 2)
    text = describe_estimate(started)
    assert f"+ {START_MINUTES} min to start the model" in text and "x 2 inference units" in text and "an estimate" in text


def test_the_tally_counts_lines_errors_and_garments_and_checks_completeness():
    tally = Tally()
    lines = [
        {"key": "a.jpg", "image": {}, "garments": [{"label": "skirt"}, {"label": "vest"}]},
        {"key": "b.jpg", "image": {}, "garments": []},
        error_line("c.txt", "not_an_image", "text"),
        error_line("d.jpg", "throttled", "still throttled"),
    ]
    for line in lines:
        tally.add(line)
    assert tally.to_dict() == {"images": 4, "answered": 2, "with_garments": 1, "errors": 2,
                               "errors_by_reason": {"not_an_image": 1, "throttled": 1}, "garments": 2,
                               "garments_by_label": {"skirt": 1, "vest": 1}}
    assert completeness(tally, 4) is None
    assert completeness(tally, 5) == "4 result lines for 5 listed objects"
    tally.add(lines[-1])  # the same key again, next: its object's second line (Tally keeps only the last key)
    assert completeness(tally, 5) == "1 object(s) have more than one result line (the first: 'd.jpg')"
    assert listed_count([{"n": BATCH_SIZE}, {"n": 3}]) == BATCH_SIZE + 3
    with pytest.raises(ValueError, match="unknown error reason"):
        error_line("x", "bad_luck", "")


def test_only_one_level_under_batch_requests_a_job():
    assert layout.batch_job_of("batch/nightly.json") == "nightly"
    assert layout.batch_job_of("batch/My Job.json") == "My Job"  # a name the job then refuses, with the reason
    for key in ("batch/a/b.json", "batch/.json", "batch/x.txt", "requests/x.json", "batchx.json"):
        assert layout.batch_job_of(key) is None, key
    assert layout.batch_request_key("nightly") == "batch/nightly.json"
    assert layout.batch_results_key("n") == "batch/n/results.jsonl" and layout.batch_summary_key("n") == "batch/n/summary.json"
    assert layout.batch_parts_prefix("n", "exec-1") == "batch/n/parts/exec-1/"


def test_a_rendered_key_stays_within_s3s_key_length():
    assert layout.batch_rendered_key("n", "images/d/a.jpg") == "batch/n/rendered/images/d/a.jpg.png"
    long = layout.batch_rendered_key("n", "images/" + "é" * 600)
    assert len(long.encode()) <= layout.MAX_KEY_BYTES and long.endswith(".png")
