#!/usr/bin/env python3
"""CDK entry point: `cdk deploy` (via cdk.json) or `python app.py` to synthesize into cdk.out/.

One app, one stack (``FashionPipeline``, wired in ``infrastructure/stack.py``: storage, the shared
dependency layer, ingestion, notifications, training and reprocess workflows, inference API),
with the cdk-nag AwsSolutions checks applied to the whole app.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
# The constructs check the shipped core's rules at synthesis (training options and their
# history budget), so its package must import even where the project is not pip-installed.
if str(ROOT / "lambdas") not in sys.path:
    sys.path.insert(0, str(ROOT / "lambdas"))

import aws_cdk as cdk  # noqa: E402

from fashion_pipeline.layout import STACK_NAME  # noqa: E402
from infrastructure.config import CONTEXT_KEY, PipelineConfig  # noqa: E402
from infrastructure.nag import add_security_checks  # noqa: E402
from infrastructure.stack import FashionPipelineStack  # noqa: E402

STACK_ID = STACK_NAME


def cdk_json_context() -> dict[str, Any]:
    """The ``context`` of cdk.json, so that `python app.py` synthesizes what `cdk synth` would.

    The CDK CLI passes this context itself, and CLI values override these defaults.
    """
    return json.loads((ROOT / "cdk.json").read_text())["context"]


def build_app(*, overrides: Mapping[str, Any] | None = None, outdir: str | None = None) -> cdk.App:
    """The app with its stack and security checks; ``overrides`` take precedence over all context."""
    shipped = cdk_json_context()
    app = cdk.App(context=shipped, post_cli_context=dict(overrides or {}), outdir=outdir)
    # A partial override (-c) changes only the keys it names.
    config = PipelineConfig.from_node(app.node, base=shipped.get(CONTEXT_KEY))
    FashionPipelineStack(
        app,
        STACK_ID,
        config=config,
        description="DeepFashion2/COCO to Rekognition Custom Labels: ingestion, training workflow and inference API",
        # Environment-agnostic unless the CLI resolved an account/region from the profile.
        env=cdk.Environment(
            account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
            region=os.environ.get("CDK_DEFAULT_REGION"),
        ),
    )
    cdk.Tags.of(app).add("project", "fashion-pipeline")
    add_security_checks(app)
    return app


if __name__ == "__main__":
    build_app(outdir=os.environ.get("CDK_OUTDIR", str(ROOT / "cdk.out"))).synth()
