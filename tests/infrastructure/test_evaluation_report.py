"""The report function as synthesized: its settings, its own layer, and its size against Lambda's quota."""

from __future__ import annotations

from pathlib import Path

from tests.synthesis import Synthesized

# "Deployment package (.zip file archive) size: 250 MB (unzipped)", function and layers together
# ("Lambda quotas", https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html);
# GetAccountSettings gives it in bytes as CodeSizeUnzipped, 262,144,000.
UNZIPPED_QUOTA_BYTES = 262_144_000


def _report_function(synthesized: Synthesized) -> dict:
    [function] = [r["Properties"] for r in synthesized.resources("AWS::Lambda::Function").values()
                  if r["Properties"].get("Handler") == "evaluation_report.handler.handler"]  # fmt: skip
    return function


def _asset(synthesized: Synthesized, code: dict) -> Path:
    return synthesized.outdir / f"asset.{code['S3Key'].removesuffix('.zip')}"


def _bytes(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def test_the_report_function_runs_with_its_own_rendering_layer_and_the_shared_one(synthesized: Synthesized) -> None:
    function = _report_function(synthesized)
    assert (function["MemorySize"], function["Timeout"], function["Architectures"]) == (1024, 300, ["arm64"])
    variables = function["Environment"]["Variables"]
    assert variables["MODEL_PARAMETER_PREFIX"] == synthesized.stack.config.model_parameter_prefix
    assert variables["GALLERY_IMAGES"] == "24" and variables["MPLCONFIGDIR"].startswith("/tmp/")
    layers = synthesized.resources("AWS::Lambda::LayerVersion")
    shared = synthesized.logical_id(synthesized.stack.python_dependencies)
    [own] = [{"Ref": lid} for lid in layers if "ReportFunctionDependencies" in lid]
    assert function["Layers"] == [{"Ref": shared}, own]
    rendering = _asset(synthesized, layers[own["Ref"]]["Properties"]["Content"]) / "python"
    assert {"matplotlib", "numpy", "PIL"} <= {p.name for p in rendering.iterdir()}
    assert not (rendering / "aws_lambda_powertools").exists()  # the shared layer's, not shipped twice


def test_the_function_and_its_layers_fit_lambdas_unzipped_quota(synthesized: Synthesized) -> None:
    function = _report_function(synthesized)
    layers = synthesized.resources("AWS::Lambda::LayerVersion")
    parts = {"code": _bytes(_asset(synthesized, function["Code"]))}
    parts.update({layer["Ref"]: _bytes(_asset(synthesized, layers[layer["Ref"]]["Properties"]["Content"])) for layer in function["Layers"]})
    # Measured: 164 MB for this layer, 50 MB for the shared one, 0.3 MB of code (with .pyc).
    assert sum(parts.values()) < UNZIPPED_QUOTA_BYTES * 0.9, parts  # room left for a dependency's update
