"""Finding the deployed pipeline's resources from its CloudFormation outputs."""

from __future__ import annotations

from typing import Any

from fashion_pipeline.layout import STACK_NAME

DEFAULT_STACK = STACK_NAME


class StackNotFound(Exception):
    pass


def stack_outputs(session: Any, stack_name: str = DEFAULT_STACK) -> dict[str, str]:
    from botocore.exceptions import ClientError

    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        raise StackNotFound(f"stack {stack_name!r}: {exc.response['Error'].get('Message', exc)}") from None
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
