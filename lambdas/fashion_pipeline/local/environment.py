"""The emulated deployment: the synthesized stack's resources in moto, with the project's
Lambda handlers running in-process and the Custom Labels emulator answering Rekognition.

Used by the workflow tests and by local mode, so both exercise the same wiring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import custom_labels_emulator, stepfunctions
from .lambda_runtime import LocalLambdaRuntime
from .provision import Deployment, provision
from .template import Template


@dataclass
class EmulatedPipeline:
    deployment: Deployment
    runtime: LocalLambdaRuntime
    custom_labels: Any  # the emulator's controller

    @property
    def template(self) -> Template:
        return self.deployment.template

    def bucket(self, contains: str) -> str:
        return self.deployment.find("AWS::S3::Bucket", contains)

    def state_machine(self) -> str:
        return self.deployment.find("AWS::StepFunctions::StateMachine")


def emulate(session: Any, template: dict[str, Any], *, region: str = "us-east-1", endpoint: str | None = None) -> EmulatedPipeline:
    """Create everything the template declares in the (already started) moto backend.

    ``endpoint`` is moto's server URL in local mode (queue URLs are made from it).
    """
    controller = custom_labels_emulator.install()
    stepfunctions.install()
    runtime = LocalLambdaRuntime(region=region).install()
    resolver = Template(template, region=region, **({"endpoint": endpoint} if endpoint else {}))
    deployment = provision(session, resolver, runtime)
    return EmulatedPipeline(deployment, runtime, controller)
