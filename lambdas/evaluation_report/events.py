"""The report function's payload, as a parser model.

What the training workflow's "Write evaluation report" state passes
(``infrastructure/training_flow.py``): ``{"run.$": "$.run", "version.$":
"$.training.ProjectVersionDescriptions[0]"}``, the run as ``prepare`` returned it and the trained
version as DescribeProjectVersions described it. A payload that does not fit fails the
invocation with pydantic's ``ValidationError`` naming the field; the workflow catches that as
it catches every other report failure. Unknown keys are ignored.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ReportRun(BaseModel):
    """The members of the workflow's ``Run`` (lambdas/workflow/events.py) the report needs."""

    dataset: str
    run_id: str
    version_name: str
    prefix: str  # runs/<dataset>/<run-id>/
    artifacts_bucket: str


class TrainedVersion(BaseModel):
    """A ``ProjectVersionDescriptions`` entry, kept whole: ``fashion_pipeline.evaluation`` reads
    EvaluationResult, TestingDataResult and TrainingDataResult from it (every one optional in
    botocore's model; a description naming none of the files fails with a readable reason)."""

    model_config = ConfigDict(extra="allow")

    ProjectVersionArn: str


class ReportEvent(BaseModel):
    run: ReportRun
    version: TrainedVersion
