"""Every training run writes its evaluation report: the synthesized state machine in moto, the
report function under its own role (IAM enforced), the Custom Labels emulator's evaluation files.
A report that cannot be written is recorded and the run goes on."""

from __future__ import annotations

import json

from fashion_pipeline_tools.aws.fleet import list_runs, runs_table


def output(described):
    return json.loads(described["output"])


def test_every_run_writes_its_report_compared_with_the_live_model_and_the_listing_names_it(harness, sample):
    harness.upload_and_convert(sample)
    first = output(harness.run(min_f1=0.0))  # deployed: the dataset's live model from now on
    second = output(harness.run(deploy=False))  # not deployed: reported all the same
    assert (first["status"], second["status"]) == ("succeeded", "not_deployed")
    for run, compared in ((first, False), (second, True)):
        folder = f"runs/demo/{run['run_id']}/evaluation/"
        assert run["report"] == folder + "index.html" and run["report_error"] is None
        assert harness.object(f"runs/demo/{run['run_id']}/outcome.json")["report"] == run["report"]
        keys = {o["Key"][len(folder):] for o in harness.s3.list_objects_v2(Bucket=harness.artifacts_bucket, Prefix=folder)["Contents"]}
        page = harness.s3.get_object(Bucket=harness.artifacts_bucket, Key=run["report"])["Body"].read().decode()
        # Charts and a gallery of the test images, every asset the page links beside it.
        assert {"charts/metrics.svg", "charts/distribution.svg"} <= keys and any(k.startswith("thumbs/") for k in keys)
        assert f"Evaluation of {run['project_version']}" in page and 'class="gallery"' in page
        for asset in keys - {"index.html", "compare.html"}:
            assert f'src="{asset}"' in page or asset == "charts/compare.svg", asset
        # The second run is compared with the first, the live model when it was reported.
        assert ("compare.html" in keys) == compared
        assert (f'<a href="compare.html">Compared with {first["project_version"]}</a>' in page) == compared
    runs = list_runs(harness.sfn, harness.s3, state_machine_arn=harness.machine, artifacts_bucket=harness.artifacts_bucket)
    assert [run["report"] for run in runs] == [second["report"], first["report"]]
    assert f"  {second['run_id']}: {second['report']}" in runs_table(runs).split("evaluation reports (in the artifacts bucket):")[1]


def test_a_report_that_fails_never_fails_the_run(harness, sample):
    harness.upload_and_convert(sample)
    # The report function may no longer read anything: it fails, after the retries of its own.
    role = harness.pipeline.role("ReportFunctionRole").rsplit("/", 1)[-1]
    deny = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "s3:GetObject", "Resource": "*"}]}
    harness.session.client("iam").put_role_policy(RoleName=role, PolicyName="deny-reads", PolicyDocument=json.dumps(deny))
    described = harness.run(min_f1=0.0)
    assert described["status"] == "SUCCEEDED", described
    result = output(described)
    assert result["status"] == "succeeded" and result["model_arn"]  # deployed all the same
    assert result["report"] is None and "AccessDenied" in result["report_error"]
    prefix = f"runs/demo/{result['run_id']}/"
    assert harness.object(prefix + "outcome.json")["report_error"] == result["report_error"]
    assert "Contents" not in harness.s3.list_objects_v2(Bucket=harness.artifacts_bucket, Prefix=prefix + "evaluation/")
