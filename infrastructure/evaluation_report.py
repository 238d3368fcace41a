"""The report function: writes every training run's evaluation report (lambdas/evaluation_report).

Its own layer holds what rendering needs (matplotlib and numpy for the SVG charts, Pillow for the
gallery's thumbnails: lambdas/evaluation_report/requirements.txt); Powertools, pydantic and
boto3 come from the shared layer like every other function's, so the function's asset stays its
package plus fashion_pipeline. The S3 grants are the stack's (stack.py ``_grant_training``): they
cross into the storage construct.

Size: Lambda allows 250 MB for a function and all its layers unzipped ("Lambda quotas",
https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html: the deployment
package's 250 MB unzipped include its layers). Measured on the synthesized assets (with the
runtime's .pyc files): this layer 164 MB (matplotlib 27, numpy 51 with its libs, fontTools 24,
Pillow 21), the shared layer 50 MB, the code 0.3 MB: 215 MB in all.
tests/infrastructure/test_evaluation_report.py keeps the sum under 90% of the quota.

Memory and time (bench/bench_report.py: a synthetic snapshot of 3 boxes and 3 predictions an
image, streamed; the 24 gallery images 4,096 x 3,072 px JPEGs; the 2-core x86 VM): 10,000 test images
2.4 s and a 106 MB peak RSS, 50,000 4.7 s and 228 MB, 100,000 10 s and 380 MB (every image's
results are held for the gallery's choice; 69 MB before building). The largest test set the
manifests allow (250,000 lines) extrapolates to ~25 s and ~850 MB: 1,024 MB and 5 minutes
cover it with room for a cold start, and a report that still runs out fails alone, the run goes
on. The emulator's report (6 test images) takes about 0.3 s warm.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infrastructure.bundling import dependencies_layer
from infrastructure.config import PipelineConfig
from infrastructure.functions import ProjectFunction
from infrastructure.run_time_arns import acknowledge_pointers, acknowledge_projects, pointer_arns, project_arns

REPORT_REQUIREMENTS = "lambdas/evaluation_report/requirements.txt"
GALLERY_IMAGES = 24
MEMORY_MB = 1024
TIMEOUT = Duration.minutes(5)


def report_function(scope: Construct, id: str, *, config: PipelineConfig, dependencies: lambda_.ILayerVersion) -> ProjectFunction:
    """The report function in ``scope``, allowed to describe the pipeline's model versions and to
    read the dataset's model pointer (the previous live model it compares with)."""
    rendering = dependencies_layer(scope, f"{id}Dependencies", REPORT_REQUIREMENTS,
                                   description="matplotlib, numpy and Pillow, for the evaluation reports of training runs")
    built = ProjectFunction(
        scope, id, config=config, package="evaluation_report", handler="evaluation_report.handler.handler",
        description="Writes a training run's evaluation report (charts, per-label metrics, test gallery)",
        dependencies=dependencies, extra_layers=(rendering,), memory_mb=MEMORY_MB, timeout=TIMEOUT,
        environment={
            "MODEL_PARAMETER_PREFIX": config.model_parameter_prefix,
            "GALLERY_IMAGES": str(GALLERY_IMAGES),
            # matplotlib caches its font list under $MPLCONFIGDIR (else ~/.config, read-only on Lambda).
            "MPLCONFIGDIR": "/tmp/matplotlib",
        },
    )
    # The previous live model: its pointer, then its description (where its evaluation files are).
    built.function.add_to_role_policy(iam.PolicyStatement(actions=["rekognition:DescribeProjectVersions"], resources=project_arns()))
    built.function.add_to_role_policy(iam.PolicyStatement(actions=["ssm:GetParameter"], resources=pointer_arns(config.model_parameter_prefix)))
    acknowledge_projects(built.role, "The previous live model to compare with is a version of any of the datasets' projects; "
                                     "rekognition:DescribeProjectVersions only.")
    acknowledge_pointers(built.role, config.model_parameter_prefix,
                         "The report compares a run with its dataset's live model, read from that pointer (ssm:GetParameter only).")
    return built
