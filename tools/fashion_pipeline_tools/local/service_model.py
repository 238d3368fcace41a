"""Strict checks of requests and response paths against botocore's service models (offline).

botocore's own ParamValidator checks required members, types and minimum lengths only; AWS also
refuses values outside enums, patterns, maximum lengths and ranges. This module checks all of them,
so that the local emulators, the Step Functions contract test and the boto3 call hook refuse what
AWS refuses.
"""

from __future__ import annotations

import decimal
import difflib
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import botocore.session
from botocore import xform_name
from botocore.exceptions import UnknownServiceError
from botocore.model import NoShapeFoundError, OperationModel, ServiceModel, Shape
from botocore.utils import parse_to_aware_datetime


class ModelError(ValueError):
    """An unknown service, operation, member or error shape; the message names it."""


@dataclass(frozen=True)
class Unknown:
    """A value known only at run time (e.g. a Step Functions "Key.$" path): only its member's existence is checked.

    ``kind`` describes the expected value for readers and messages; it is not checked.
    """

    kind: str | None = None


@dataclass(frozen=True)
class MemberInfo:
    """A member of an operation's output, and which prefixes of the path to it may be absent."""

    shape: Shape
    type_name: str
    enum: tuple[str, ...]
    optional_prefixes: list[tuple[str | int, ...]]


# Patterns Python's re cannot compile (Java-only syntax such as \p{L}); they are skipped, not guessed at.
UNCOMPILABLE_PATTERNS: set[str] = set()

# The botocore model of Step Functions is "stepfunctions"; Step Functions' own aws-sdk ARNs call it "sfn",
# and EventBridge "eventbridge". No botocore service has any of these names, so one table serves both spellings.
_SERVICE_ALIASES = {"states": "stepfunctions", "sfn": "stepfunctions", "eventbridge": "events"}

# AWS SDK for Java 2.x renames a few members where the PascalCase rule would give a Java keyword or a clash;
# Step Functions, built on that SDK, uses the renamed spelling ("Nul" is observed in aws-sdk:dynamodb results,
# e.g. https://github.com/boto/boto3/issues/4253).
_SDK_MEMBER_RENAMES = {("AttributeValue", "NULL"): "Nul"}


# -- models -------------------------------------------------------------------------------------
@functools.cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@functools.cache
def _service_model(service: str) -> ServiceModel:
    name = _SERVICE_ALIASES.get(service, service)
    try:
        return _session().get_service_model(name)
    except UnknownServiceError:
        raise ModelError(f"unknown service {service!r}") from None


@functools.cache
def _snake_operations(service: str) -> dict[str, str]:
    return {xform_name(name): name for name in _service_model(service).operation_names}


@functools.cache
def operation_model(service: str, operation: str) -> OperationModel:
    """The operation, named in PascalCase ("CreateProject"), snake_case or Step Functions' camelCase."""
    model = _service_model(service)
    names = model.operation_names
    name = operation[:1].upper() + operation[1:]
    if name not in names:
        name = _snake_operations(service).get(operation, operation)
    if name not in names:
        raise ModelError(f"{model.service_name} has no operation {operation!r}{_did_you_mean(name, names)}")
    return model.operation_model(name)


def enum_of(service: str, shape_name: str) -> tuple[str, ...]:
    """The values of an enum shape, e.g. enum_of("rekognition", "DatasetType") == ("TRAIN", "TEST")."""
    model = _service_model(service)
    try:
        shape = model.shape_for(shape_name)
    except NoShapeFoundError:
        raise ModelError(f"{model.service_name} has no shape {shape_name!r}") from None
    if not shape.metadata.get("enum"):
        raise ModelError(f"{model.service_name} shape {shape_name!r} is a {shape.type_name}, not an enum")
    return tuple(shape.metadata["enum"])


def modelled_errors(service: str, operation: str) -> frozenset[str]:
    """The error shapes the model lists for the operation."""
    return frozenset(shape.name for shape in operation_model(service, operation).error_shapes)


def service_errors(service: str) -> frozenset[str]:
    """Every error shape of the service (the shapes marked "exception")."""
    return frozenset(shape.name for shape in _service_model(service).error_shapes)


# -- requests -----------------------------------------------------------------------------------
def validate_request(service: str, operation: str, params: Mapping[str, Any]) -> list[str]:
    """Every violation of the operation's input shape, as "<path>: <reason>"; [] when valid."""
    op = operation_model(service, operation)
    errors: list[str] = []
    if op.input_shape is None:
        if params:
            errors.append(f"(input): {op.name} takes no parameters, got {', '.join(params)}")
        return errors
    _check(op.input_shape, params, "", errors)
    return errors


def _check(shape: Shape, value: Any, path: str, errors: list[str]) -> None:
    if isinstance(value, Unknown) or getattr(shape, "is_document_type", False):
        return
    kind = shape.type_name
    if not _IS_TYPE[kind](value):
        errors.append(f"{path or '(input)'}: expected {kind}, got {type(value).__name__} {_show(shape, value)}")
    elif kind == "structure":
        _check_structure(shape, value, path, errors)
    elif kind == "list":
        _check_size(shape, len(value), "items", path, errors)
        for index, item in enumerate(value):
            _check(shape.member, item, f"{path}[{index}]", errors)
    elif kind == "map":
        _check_size(shape, len(value), "entries", path, errors)
        for key, item in value.items():
            _check(shape.key, key, f"{path} key {key!r}", errors)
            _check(shape.value, item, f"{path}[{key!r}]", errors)
    elif kind == "string":
        _check_string(shape, value, path, errors)
    elif kind == "blob" and isinstance(value, (bytes, bytearray, str)):  # a stream's length is unknown here
        _check_size(shape, len(value.encode() if isinstance(value, str) else value), "bytes", path, errors)
    elif kind in ("integer", "long", "float", "double"):
        if "min" in shape.metadata and value < shape.metadata["min"]:
            errors.append(f"{path}: {value} is less than the minimum {shape.metadata['min']}")
        if "max" in shape.metadata and value > shape.metadata["max"]:
            errors.append(f"{path}: {value} is greater than the maximum {shape.metadata['max']}")


def _check_structure(shape: Shape, value: Mapping[str, Any], path: str, errors: list[str]) -> None:
    prefix = f"{path}." if path else ""
    members = shape.members
    for name in value:
        if name not in members:
            errors.append(f"{prefix}{name}: unknown member of {shape.name} (members: {', '.join(members) or 'none'})")
    for name in shape.required_members:
        if name not in value:
            errors.append(f"{prefix}{name}: required member of {shape.name} missing")
    if shape.is_tagged_union:
        present = [name for name in value if name in members]
        if len(present) != 1:
            errors.append(f"{path or '(input)'}: exactly one of {', '.join(members)} must be set, "
                          f"got {', '.join(present) or 'none'}")
    for name, item in value.items():
        if name in members:
            _check(members[name], item, prefix + name, errors)


def _check_string(shape: Shape, value: str, path: str, errors: list[str]) -> None:
    enum = shape.metadata.get("enum")
    if enum:
        if value not in enum:
            errors.append(f"{path}: {_show(shape, value)} is not one of {', '.join(enum)}")
        return
    _check_size(shape, len(value), "characters", path, errors)
    pattern = shape.metadata.get("pattern")
    regex = _compiled(pattern) if pattern is not None else None
    if regex is not None and not regex.fullmatch(value):
        errors.append(f"{path}: {_show(shape, value)} does not match pattern {pattern}")


def _check_size(shape: Shape, size: int, unit: str, path: str, errors: list[str]) -> None:
    if "min" in shape.metadata and size < shape.metadata["min"]:
        errors.append(f"{path}: {size} {unit}, at least {shape.metadata['min']}")
    if "max" in shape.metadata and size > shape.metadata["max"]:
        errors.append(f"{path}: {size} {unit}, at most {shape.metadata['max']}")


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str] | None:
    # Services validate with Java's Matcher.matches(): the whole value, and \d, \w, \s are ASCII-only
    # (Java's default), hence fullmatch and re.ASCII.
    try:
        return re.compile(pattern, re.ASCII)
    except re.error:
        UNCOMPILABLE_PATTERNS.add(pattern)
        return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool)


def _is_timestamp(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        parse_to_aware_datetime(value)  # what botocore serialises: datetime, ISO 8601 string or epoch number
    except (TypeError, ValueError, AttributeError, OverflowError):
        return False
    return True


_IS_TYPE = {
    "structure": lambda value: isinstance(value, Mapping),
    "map": lambda value: isinstance(value, Mapping),
    "list": lambda value: isinstance(value, (list, tuple)),
    "string": lambda value: isinstance(value, str),
    "boolean": lambda value: isinstance(value, bool),
    # As botocore: str is sent UTF-8 encoded, a file-like object is streamed.
    "blob": lambda value: isinstance(value, (bytes, bytearray, str)) or hasattr(value, "read"),
    "integer": _is_int,
    "long": _is_int,
    "float": _is_number,
    "double": _is_number,
    "timestamp": _is_timestamp,
}


def _show(shape: Shape, value: Any) -> str:
    if shape.metadata.get("sensitive"):  # e.g. an SSM parameter's value must not end up in a log
        return "<sensitive>"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- Step Functions -----------------------------------------------------------------------------
def validate_step_functions_parameters(service: str, action: str, parameters: Mapping[str, Any]) -> list[str]:
    """Check the Parameters of an "arn:aws:states:::aws-sdk:<service>:<action>" task.

    Keys ending in ".$" take a JSONPath or intrinsic function: their member must exist, the value is an Unknown.
    """
    # https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html ("API naming
    # conventions"): the action is camelCase ("startSyncExecution") and "Parameters in Step Functions are
    # expressed in PascalCase, even if the native service API is in camelCase" ("StateMachineArn").
    # The page does not say how acronyms are PascalCased. Step Functions calls services through the AWS
    # SDK for Java 2.x, and public reports show its spelling: "Bool" not "BOOL" for DynamoDB
    # (https://repost.aws/questions/QUyLUoqYlGTC2m36ibrtGXSQ), "KmsKeyArn" not "KMSKeyArn" for Lambda
    # (https://github.com/ministackorg/ministack/pull/1072). So a member is spelt _pascal(model name), the
    # Java SDK's rule; for every member without an acronym that is simply the model name, first letter upper.
    op = operation_model(service, action)
    camel = op.name[:1].lower() + op.name[1:]
    if action != camel:
        raise ModelError(f"Step Functions names aws-sdk actions in camelCase: {camel!r}, not {action!r}")
    errors: list[str] = []
    params = _from_states(op.input_shape, parameters, "", errors)
    return errors + validate_request(service, op.name, params)


def _from_states(shape: Shape | None, value: Any, path: str, errors: list[str]) -> Any:
    """Step Functions Parameters as boto3 parameters: model member names, Unknown for ".$" values."""
    if isinstance(value, list):
        member = shape.member if shape is not None and shape.type_name == "list" else None
        return [_from_states(member, item, f"{path}[{index}]", errors) for index, item in enumerate(value)]
    if not isinstance(value, Mapping):
        return value
    is_structure = shape is not None and shape.type_name == "structure"
    spellings = {_states_member_name(shape, name): name for name in shape.members} if is_structure else {}
    converted: dict[str, Any] = {}
    for key, item in value.items():
        dynamic = key.endswith(".$")
        name = key[:-2] if dynamic else key
        where = _child_path(shape, path, name)
        if is_structure and name not in spellings and name in shape.members:
            # Reported once here; the value is still checked under the model's name.
            errors.append(f"{where}: Step Functions spells this member {_states_member_name(shape, name)}")
        name = spellings.get(name, name)
        if dynamic and not isinstance(item, str):
            errors.append(f"{_child_path(shape, path, key)}: a JSONPath or intrinsic function string, got {item!r}")
        elif dynamic:
            converted[name] = Unknown()
        else:
            converted[name] = _from_states(_child(shape, name), item, where, errors)
    return converted


def boto_parameters(service: str, action: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """An aws-sdk task's evaluated Parameters as boto3 takes them: Step Functions' spelling of
    each member (``_states_member_name``) back to the model's, at every depth (what
    ``_from_states`` does for the check; evaluated Parameters have no ".$" keys left)."""
    return _from_states(operation_model(service, action).input_shape, parameters, "", [])


def _child_path(shape: Shape | None, path: str, name: str) -> str:
    """The path validate_request would report for a member (or map entry) of shape."""
    if shape is not None and shape.type_name == "map":
        return f"{path}[{name!r}]"
    return f"{path}.{name}" if path else name


def _child(shape: Shape | None, name: str) -> Shape | None:
    if shape is None:
        return None
    if shape.type_name == "structure":
        return shape.members.get(name)
    return shape.value if shape.type_name == "map" else None


def _states_member_name(shape: Shape, member: str) -> str:
    return _SDK_MEMBER_RENAMES.get((shape.name, member)) or _pascal(member)


def step_functions_error_name(service: str, error_shape: str) -> str:
    """The Error name Step Functions gives a modelled error of an aws-sdk task, e.g. "Ssm.ParameterNotFoundException"."""
    # https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html: the Error is
    # "ServiceName.ErrorName", both in PascalCase, and always ends in "Exception", added when the service's
    # name lacks it (S3's BucketAlreadyExists -> "S3.BucketAlreadyExistsException"; acmpca's
    # ResourceNotFoundException -> "AcmPca.ResourceNotFoundException").
    # Ambiguous there: how a name is PascalCased. "AcmPca" is the AWS SDK for Java 2.x rule applied to the
    # model's serviceId "ACM PCA", so that rule (_pascal) is used for both parts; it also gives the names seen
    # in public state machines: "Ssm.", "DynamoDb." (not "DynamoDB.", the optimised integration's prefix),
    # "Lambda.Ec2ThrottledException" (from EC2ThrottledException).
    if error_shape not in service_errors(service):
        raise ModelError(f"{error_shape!r} is not an error of {_service_model(service).service_name}"
                         f"{_did_you_mean(error_shape, service_errors(service))}")
    error = _pascal(error_shape)
    if not error.endswith("Exception"):
        error += "Exception"
    return f"{_pascal(_service_model(service).metadata['serviceId'])}.{error}"


def _pascal(name: str) -> str:
    """PascalCase as the AWS SDK for Java 2.x does (CodegenNamingUtils): "ACM PCA" -> "AcmPca", "BOOL" -> "Bool"."""
    # A port of splitOnWordBoundaries, https://github.com/aws/aws-sdk-java-v2 utils/.../CodegenNamingUtils.java
    words = re.sub(r"[^A-Za-z0-9]+", " ", name)
    words = re.sub(r"([^a-z]{2,})v([0-9]+)", r"\1 v\2 ", words)
    words = re.sub(r"([^A-Z]{2,})V([0-9]+)", r"\1 V\2 ", words)
    words = re.sub(r"(?<=[a-z])(?=[A-Z][a-zA-Z0-9])", " ", words)
    words = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", words)
    words = re.sub(r"([0-9])([a-zA-Z])", r"\1 \2", words)
    return "".join(word[:1].upper() + word[1:].lower() for word in words.split())


# -- responses ----------------------------------------------------------------------------------
def output_member(service: str, operation: str, path: Sequence[str | int]) -> MemberInfo:
    """Walk the operation's output shape along path (str: member or map key, int: list index)."""
    op = operation_model(service, operation)
    shape = op.output_shape
    if shape is None:
        raise ModelError(f"{op.name} has no output")
    optional: list[tuple[str | int, ...]] = []
    walked: tuple[str | int, ...] = ()
    for step in path:
        walked += (step,)
        if shape.type_name == "structure" and isinstance(step, str):
            if step not in shape.members:
                raise ModelError(f"{op.name} output has no {_path_text(walked)}: {shape.name} has "
                                 f"{', '.join(shape.members) or 'no members'}")
            if step not in shape.required_members:
                optional.append(walked)
            shape = shape.members[step]
        elif shape.type_name == "list" and _is_int(step):
            optional.append(walked)  # the list may be shorter
            shape = shape.member
        elif shape.type_name == "map" and isinstance(step, str):
            optional.append(walked)  # any key may be missing
            shape = shape.value
        else:
            raise ModelError(f"{op.name} output: {_path_text(walked[:-1]) or 'the output'} is a {shape.type_name} "
                             f"({shape.name}) and cannot be indexed by {step!r}")
    return MemberInfo(shape, shape.type_name, tuple(shape.metadata.get("enum", ())), optional)


def _path_text(path: Iterable[str | int]) -> str:
    return "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in path).lstrip(".")


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""
