"""The synthesized rule that starts batch jobs, evaluated by moto's EventBridge pattern matcher."""

from __future__ import annotations

import json

from moto.events.models import EventPattern

from tests.workflow.conftest import eventbridge_object_created


def test_an_upload_of_json_under_batch_starts_a_job_and_nothing_else_does(synthesized):
    [(lid, rule)] = [(lid, r) for lid, r in synthesized.resources("AWS::Events::Rule").items() if lid.startswith("BatchBatchRequestRule")]
    pattern = rule["Properties"]["EventPattern"]
    bucket = pattern["detail"]["bucket"]["name"][0]
    matcher = EventPattern.load(json.dumps({**pattern, "detail": {**pattern["detail"], "bucket": {"name": ["datasets"]}}}))
    assert isinstance(bucket, dict)  # the dataset bucket, by reference
    matches = {key: matcher.matches_event(eventbridge_object_created("datasets", key))
               for key in ("batch/nightly.json", "batch/a/b.json", "batch/nightly.txt", "requests/demo.json", "images/batch/x.json")}
    # batch/a/b.json matches too (a wildcard's * spans slashes): Prepare ends that one as no job.
    assert matches == {"batch/nightly.json": True, "batch/a/b.json": True, "batch/nightly.txt": False,
                       "requests/demo.json": False, "images/batch/x.json": False}
    assert not matcher.matches_event(eventbridge_object_created("another-bucket", "batch/nightly.json"))
    [target] = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Ref": synthesized.logical_id(synthesized.stack.batch.state_machine)}
