"""The emulated deployment: the synthesized stack's resources in moto, with the project's
Lambda handlers running in-process as their own roles and the Custom Labels emulator
answering Rekognition.

Used by the workflow tests and by local mode, so both exercise the same wiring. Provisioning
runs with IAM enforcement off, as CloudFormation creates resources with its own powers;
``EmulatedPipeline.enforcing()`` (or ``authorization.enable()``) then turns it on, after which
every request must be signed by a principal moto knows and be allowed by its policies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from . import authorization, custom_labels_emulator, identities, stepfunctions
from .lambda_runtime import LocalLambdaRuntime
from .provision import Deployment, provision
from .template import Template


@dataclass
class EmulatedPipeline:
    deployment: Deployment
    runtime: LocalLambdaRuntime
    custom_labels: Any  # the emulator's controller
    operator: identities.Identity  # an administrator: whoever drives the deployment

    @property
    def template(self) -> Template:
        return self.deployment.template

    def bucket(self, contains: str) -> str:
        return self.deployment.find("AWS::S3::Bucket", contains)

    def state_machine(self, contains: str = "Training") -> str:
        """The training state machine by default; "Reprocess" for the other one."""
        return self.deployment.find("AWS::StepFunctions::StateMachine", contains)

    def function(self, handler: str) -> str:
        """The name of the one function whose handler is ``handler`` ("converter.handler.handler")."""
        [name] = [f.name for f in self.runtime.functions.values() if f.handler == handler]
        return name

    def role(self, contains: str) -> str:
        """The ARN of the one role whose logical id contains ``contains``."""
        matches = [arn for lid, arn in self.deployment.roles.items() if contains in lid]
        if len(matches) != 1:
            raise LookupError(f"{len(matches)} roles match {contains!r}: {sorted(self.deployment.roles)}")
        return matches[0]

    def enforcing(self) -> Iterator[None]:
        return authorization.enforcing()


def emulate(session: Any, template: dict[str, Any], *, region: str = "us-east-1", endpoint: str | None = None,
            operator_keys: tuple[str, str] | None = None) -> EmulatedPipeline:
    """Create everything the template declares in the (already started) moto backend.

    ``endpoint`` is moto's server URL in local mode (queue URLs are made from it);
    ``operator_keys`` fix the operator's access key id and secret (local mode's ``local``).
    """
    controller = custom_labels_emulator.install()
    stepfunctions.install()
    authorization.install()
    identities.install()
    runtime = LocalLambdaRuntime(region=region).install()
    resolver = Template(template, region=region, **({"endpoint": endpoint} if endpoint else {}))
    deployment = provision(session, resolver, runtime)
    key_id, secret = operator_keys or (None, None)
    operator = identities.operator(access_key_id=key_id, secret_access_key=secret)
    return EmulatedPipeline(deployment, runtime, controller, operator)
