"""ARNs of what the pipeline names at run time (Custom Labels projects and their versions, the
model pointers), and the acknowledgement of each wildcard, for every construct that grants them.

The model pointers (one SSM parameter per dataset, ``<modelParameterPrefix>/<dataset>``, naming
its live model) are not CloudFormation resources: a stack update that touched one would reset it
to its template value, and then nothing would watch or serve the running model. The workflow and
``fashion-pipeline deploy`` create and overwrite them; the stack only grants access to their names.
"""

from __future__ import annotations

from aws_cdk import Aws
from constructs import Construct

from fashion_pipeline.layout import PROJECT_PREFIX
from infrastructure.nag import acknowledge


def project_arns() -> list[str]:
    """Every Custom Labels project of this pipeline, with its datasets and model versions."""
    return [f"arn:{Aws.PARTITION}:rekognition:{Aws.REGION}:{Aws.ACCOUNT_ID}:project/{PROJECT_PREFIX}*"]


def acknowledge_projects(target: Construct, why: str = "") -> None:
    """Acknowledge the wildcard of ``project_arns`` on ``target``: runs name their models."""
    acknowledge(target, f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:rekognition:<AWS::Region>:<AWS::AccountId>:project/{PROJECT_PREFIX}*]",
                "Projects, datasets and model versions are created per dataset and per run, so their ARNs are known only "
                f"at run time; the grant covers this pipeline's '{PROJECT_PREFIX}' projects only.{' ' + why if why else ''}")


def pointer_path_arn(prefix: str) -> str:
    """The ARN of the pointers' path: what ssm:GetParametersByPath is authorized on. Access to a
    path is access to every level under it ("Restricting access to Systems Manager parameters
    using IAM policies", https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-access.html),
    so it is granted on the pointers' own path only, and only with the read action."""
    return f"arn:{Aws.PARTITION}:ssm:{Aws.REGION}:{Aws.ACCOUNT_ID}:parameter/{prefix.strip('/')}"


def pointer_arns(prefix: str) -> list[str]:
    """Every dataset's model pointer, ``<prefix>/<dataset>``."""
    return [f"{pointer_path_arn(prefix)}/*"]


def acknowledge_pointers(target: Construct, prefix: str, why: str) -> None:
    """Acknowledge the wildcard of ``pointer_arns`` on ``target``: datasets are named at run time."""
    acknowledge(target, f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:parameter/{prefix.strip('/')}/*]",
                f"Each dataset's live model is the SSM parameter {prefix.rstrip('/')}/<dataset>, and datasets are named at "
                f"run time; the grant covers only that path and the listed parameter actions. {why}")
