"""Bring moto's Step Functions interpreter in line with AWS where this project depends on it.

* AWS resolves a definite JSONPath such as ``$.Items[0].Status`` to the value itself; moto 5
  returns it wrapped in a one-element list whenever the path goes through an array index.
  Definite paths (no wildcard, slice, filter or recursive descent) resolve to their single
  match here, as on AWS; every other path keeps moto's behaviour.
* moto's tasks call services with the fixed keys "ak"/"sk", which IAM enforcement refuses. On
  AWS a task calls with the execution's role (the state machine's ``RoleArn``, or the task's
  ``Credentials``), so here every task's client signs as a session of that role.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

_INDEFINITE = re.compile(r"\*|\.\.|\?\(|\[[^\]]*:[^\]]*\]")
_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    from jsonpath_ng.ext import parse
    from moto.stepfunctions.parser.asl.utils import json_path

    original = json_path.extract_json

    def extract_json(path: str, data: Any) -> Any:
        if not _INDEFINITE.search(path):
            matches = parse(path).find(data)
            if len(matches) == 1:
                return matches[0].value
        return original(path, data)

    _replace_everywhere("extract_json", original, extract_json)
    _sign_tasks_with_the_execution_role()
    # The interpreter logs an ERROR for every IsPresent test of an absent path, which is a
    # normal outcome of a Choice state, not a failure.
    logging.getLogger("moto.stepfunctions.parser.asl.component.eval_component").setLevel(logging.CRITICAL)
    _installed = True


def _sign_tasks_with_the_execution_role() -> None:
    from moto.stepfunctions.parser.asl.utils import boto_client

    from . import identities

    original = boto_client.boto_client_for

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        client = original(region=region, service=service, state_credentials=state_credentials)
        role_arn = getattr(state_credentials, "role_arn", None)
        if not role_arn:
            return client
        identity = identities.assume(role_arn, "states.amazonaws.com", session_name="states", source_arn=_machine_of(role_arn, region))
        import boto3

        return boto3.client(
            service_name=service, region_name=region, endpoint_url=client.meta.endpoint_url, config=client.meta.config,
            **identity.client_kwargs(),
        )

    _replace_everywhere("boto_client_for", original, boto_client_for)


def _replace_everywhere(name: str, original: Any, replacement: Any) -> None:
    """The interpreter's modules import its helpers by name: replace every reference (and the
    defining module's, for modules imported later)."""
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("moto.stepfunctions") and getattr(module, name, None) is original:
            setattr(module, name, replacement)


def _machine_of(role_arn: str, region: str) -> str | None:
    """The state machine that runs as ``role_arn`` (Step Functions names it when assuming the role)."""
    from moto.stepfunctions.models import stepfunctions_backends
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    account = role_arn.split(":")[4]
    for backends in (stepfunctions_parser_backends, stepfunctions_backends):  # the interpreter's, then the plain one
        for machine in backends[account][region].state_machines:
            if machine.roleArn == role_arn:
                return machine.arn
    return None
