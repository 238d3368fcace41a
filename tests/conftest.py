import os

# Tests never talk to AWS: fake credentials and a fixed region for boto3 and moto.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.pop("AWS_PROFILE", None)

import sys

import pytest
from pathlib import Path

# Lambda code is laid out as in the deployed bundle: each function package beside the core.
LAMBDAS = str(Path(__file__).resolve().parents[1] / "lambdas")
if LAMBDAS not in sys.path:
    sys.path.insert(0, LAMBDAS)
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "FashionPipelineTests")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "tests")

from tests.synthesis import synthesized  # noqa: E402,F401  (the session's one synthesis, as a fixture)


@pytest.fixture(scope="session")
def sample_set(tmp_path_factory):
    """40 good images (every category, JPEG and PNG, far frame headers) plus one of each defect."""
    from fashion_pipeline_tools.sample import generate

    return generate(tmp_path_factory.mktemp("sample"), images=40, defects=True)
