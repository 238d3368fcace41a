"""Every AWS error name the inference functions catch is one the service can answer: an error
of the operation in botocore's model, or one of the documented common errors."""

from __future__ import annotations

import ast
from pathlib import Path

import botocore.session

from inference.runtime import THROTTLING

PACKAGE = Path(__file__).resolve().parents[2] / "lambdas" / "inference"
# Not in the operations' models, documented for every request of the service:
# https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html#ErrorCodeList and
# https://docs.aws.amazon.com/systems-manager/latest/APIReference/CommonErrors.html
COMMON = {"s3": {"AccessDenied", "InvalidRange", "SlowDown"}, "ssm": {"ThrottlingException"}}
SERVICES = {"Rekognition": "rekognition", "S3": "s3", "SSM": "ssm"}


def _errors(service: str) -> set[str]:
    model = botocore.session.get_session().get_service_model(service)
    return {shape.name for name in model.operation_names for shape in model.operation_model(name).error_shapes}


KNOWN = {service: _errors(service) | COMMON.get(service, set()) for service in ("rekognition", "s3", "ssm", "dynamodb")}


def _caught_names() -> dict[str, set[str]]:
    """String literals compared with an error code (``error_code(exc) == "X"``, ``code in (...)``), by module."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Compare):
                continue
            left = node.left
            is_code = (isinstance(left, ast.Name) and left.id == "code") or (
                isinstance(left, ast.Call) and getattr(left.func, "id", "") == "error_code") or (
                isinstance(left, ast.Call) and getattr(left.func, "attr", "") == "get" and left.args
                and isinstance(left.args[0], ast.Constant) and left.args[0].value == "Code")  # fmt: skip
            if is_code:
                for comparator in node.comparators:
                    for leaf in ast.walk(comparator):
                        if isinstance(leaf, ast.Constant) and isinstance(leaf.value, str):
                            found.setdefault(path.name, set()).add(leaf.value)
    return found


def test_caught_error_names_exist():
    caught = _caught_names()
    assert {"model.py", "dataset.py", "runtime.py", "activity.py", "autostop.py"} <= set(caught)  # the scan finds them
    every = set().union(*KNOWN.values())
    unknown = {module: sorted(names - every) for module, names in caught.items() if names - every}
    assert not unknown


def test_throttling_names_are_the_services_own():
    for service, names in THROTTLING.items():
        assert names <= KNOWN[SERVICES[service]], service
