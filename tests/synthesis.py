"""Synthesize the CDK app once per test session; infrastructure and workflow tests read the result."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Node 20 works for synthesis; the jsii banner about it is only noise in test output.
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk.assertions import Template  # noqa: E402

import app as cdk_app  # noqa: E402
from infrastructure.config import CONTEXT_KEY  # noqa: E402

ALARM_EMAIL = "alerts@example.com"
# Report validation failures instead of raising, so one finding fails one test, not the session.
_REPORT_INSTEAD_OF_FAILING = {"@aws-cdk/core:failSynthOnValidationErrors": False}


@dataclass(frozen=True)
class Synthesized:
    template: Template
    template_dict: dict[str, Any]
    template_path: Path
    outdir: Path
    validation_report: dict[str, Any]
    nag_findings: list[dict[str, Any]]
    """Unacknowledged AwsSolutions violations: ruleName, severity, construct paths."""
    app: Any
    stack: Any
    seconds: float

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.template_dict["Resources"].items()
            if resource["Type"] == resource_type
        }

    def logical_id(self, construct: Any) -> str:
        return self.stack.get_logical_id(construct.node.default_child)


def shipped_config() -> dict[str, Any]:
    return dict(cdk_app.cdk_json_context()[CONTEXT_KEY])


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The app exactly as app.py builds it from cdk.json, plus an alarm e-mail.

    The e-mail only adds the alarm topic, so the shipped defaults are otherwise what is tested.
    """
    outdir = tmp_path_factory.mktemp("cdk.out")
    started = time.perf_counter()
    app = cdk_app.build_app(
        outdir=str(outdir),
        # A partial override, as `cdk deploy -c` would pass it: the other keys stay as shipped.
        overrides={CONTEXT_KEY: {"alarmEmail": ALARM_EMAIL}, **_REPORT_INSTEAD_OF_FAILING},
    )
    assembly = app.synth()
    seconds = time.perf_counter() - started

    stack = app.node.find_child(cdk_app.STACK_ID)
    artifact = assembly.get_stack_by_name(stack.stack_name)
    report = json.loads((outdir / "validation-report.json").read_text())
    findings = [
        {
            "ruleName": violation["ruleName"],
            "severity": violation["severity"],
            "paths": [c.get("constructPath") for c in violation.get("violatingConstructs", [])],
        }
        for plugin in report.get("pluginReports", [])
        if plugin.get("pluginName") == "AwsSolutions"
        for violation in plugin.get("violations", [])
    ]
    return Synthesized(
        template=Template.from_json(artifact.template),
        template_dict=artifact.template,
        template_path=Path(artifact.template_full_path),
        outdir=outdir,
        validation_report=report,
        nag_findings=findings,
        app=app,
        stack=stack,
        seconds=seconds,
    )
