"""One pure IAM policy evaluator: does AWS allow this request under these policies?

moto's ``access_control`` authenticates requests well but decides them loosely (case-sensitive
actions, ``*`` as the resource of most services, failed Allow conditions turned into denies,
no NotResource, resource-based policies or policy variables). Local mode asks this module
instead, so a missing grant fails locally where it would fail on AWS. It imports neither moto
nor boto3: callers gather the policies and the request context.

Rules follow the IAM User Guide (https://docs.aws.amazon.com/IAM/latest/UserGuide/...):
  [EVAL]      reference_policies_evaluation-logic.html (single account) and
  [XACCOUNT]  reference_policies_evaluation-logic-cross-account.html
  [ACTION]    reference_policies_elements_action.html
  [RESOURCE]  reference_policies_elements_resource.html
  [PRINCIPAL] reference_policies_elements_principal.html
  [CONDITION] reference_policies_elements_condition.html,
              reference_policies_condition-logic-multiple-context-keys-or-values.html
  [OPERATORS] reference_policies_elements_condition_operators.html
  [SETS]      reference_policies_condition-single-vs-multi-valued-context-keys.html
  [VARIABLES] reference_policies_variables.html
  [DENIED]    troubleshoot_access-denied.html
  [REPOST]    https://repost.aws/questions/QU9HFmDzP0QGuU-fd7rS6B7w (ForAnyValue with ...IfExists)

Not modelled: permissions boundaries, session policies, SCPs/RCPs, KMS key policies and role
trust policies (which must name the principal themselves), and the ``aws:*`` keys AWS adds on
its own: callers put every key they want tested in ``Request.context``.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import operator
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

IDENTITY, RESOURCE = "identity-based", "resource-based"


@dataclass(frozen=True)
class Request:
    action: str  # "s3:GetObject"
    resource: str  # an ARN, or "*" for actions without resource-level permissions
    principal: str  # caller ARN (IAM user, role session "arn:aws:sts::A:assumed-role/R/S", ...)
    account: str  # the caller's account id
    context: Mapping[str, Any] = field(default_factory=dict)  # condition key -> value or list


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # AWS wording, e.g. "because no identity-based policy allows the s3:GetObject action"
    matched: tuple[str, ...] = ()  # Sids (or "#<index>") of the statements that decided


def evaluate(
    request: Request,
    identity_policies: Iterable[Mapping[str, Any] | str],
    resource_policy: Mapping[str, Any] | str | None = None,
    resource_account: str | None = None,
) -> Decision:
    """An explicit Deny in any policy wins, then an Allow is needed [EVAL]: within one account an
    identity-based Allow or a resource-based Allow naming the caller; for a resource in another
    account both, the resource's may name just the caller's account [XACCOUNT]."""
    ctx = {key.lower(): value for key, value in request.context.items()}
    policies = [(IDENTITY, p) for p in identity_policies]
    policies += [(RESOURCE, resource_policy)] if resource_policy is not None else []
    found: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for kind, policy in policies:
        for sid, stmt, variables in _statements(policy):
            via = "caller" if kind == IDENTITY else _principal(stmt, request)
            if via and _applies(stmt, request, ctx, variables, implied_resource=kind == RESOURCE):
                found[kind, stmt["Effect"], via].append(sid)
    for kind, article in ((IDENTITY, "an"), (RESOURCE, "a")):
        denied = found[kind, "Deny", "caller"] + found[kind, "Deny", "account"]
        if denied:
            return Decision(False, f"with an explicit deny in {article} {kind} policy", tuple(denied))
    by_identity, by_resource = found[IDENTITY, "Allow", "caller"], found[RESOURCE, "Allow", "caller"]
    if resource_account is not None and resource_account != request.account:
        by_resource = by_resource + found[RESOURCE, "Allow", "account"]
        missing = IDENTITY if not by_identity else None if by_resource else RESOURCE
    else:
        # Naming only the account "delegates authority to the account" [PRINCIPAL]: within it,
        # that is no grant by itself; the caller's identity-based policies must allow.
        missing = None if by_identity or by_resource else IDENTITY
    if missing:
        return Decision(False, f"because no {missing} policy allows the {request.action} action")
    kinds = " and ".join(kind for kind, sids in ((IDENTITY, by_identity), (RESOURCE, by_resource)) if sids)
    return Decision(True, f"allowed by {kinds} policy", tuple(by_identity + by_resource))


def access_denied_message(request: Request, decision: Decision) -> str:
    """AWS's format "User: user is not authorized to perform: action on resource: resource
    because context" [DENIED]; AWS leaves out "on resource:" when the action has no resource."""
    on = "" if request.resource == "*" else f" on resource: {request.resource}"
    return f"User: {request.principal} is not authorized to perform: {request.action}{on} {decision.reason}"


# --- statements -------------------------------------------------------------------------------


def _statements(policy: Mapping[str, Any] | str) -> list[tuple[str, Mapping[str, Any], bool]]:
    """(sid, statement, variables enabled) of every well-formed statement. Variables need
    "Version": "2012-10-17"; otherwise they are literal text [VARIABLES]."""
    document = json.loads(policy) if isinstance(policy, str) else policy
    statements = document.get("Statement", [])
    variables = document.get("Version") == "2012-10-17"
    return [
        (str(s.get("Sid") or f"#{i}"), s, variables)
        for i, s in enumerate(_list(statements))
        if isinstance(s, Mapping) and s.get("Effect") in ("Allow", "Deny")
    ]


def _applies(
    stmt: Mapping[str, Any], req: Request, ctx: dict[str, Any], variables: bool, implied_resource: bool
) -> bool:
    """Action/NotAction (case-insensitive [ACTION]), Resource/NotResource (case-sensitive
    [RESOURCE]; a resource-based policy may leave its own resource implied) and Condition."""
    actions = stmt.get("Action", stmt.get("NotAction"))
    if actions is None or any(_like(a, req.action) for a in _list(actions)) != ("Action" in stmt):
        return False
    resources = stmt.get("Resource", stmt.get("NotResource"))
    if resources is None:
        if not implied_resource:
            return False
    elif any(_resource(r, req.resource, ctx, variables) for r in _list(resources)) != ("Resource" in stmt):
        return False
    return "Condition" not in stmt or _condition(stmt["Condition"], ctx, variables)


def _resource(pattern: Any, resource: str, ctx: dict[str, Any], variables: bool) -> bool:
    """Glob over the whole ARN. An action without resource-level permissions is covered only by
    "Resource": "*" [RESOURCE]."""
    if resource == "*" or pattern == "*":
        return pattern == "*"
    parts = _expand(str(pattern), ctx, variables)
    return parts is not None and _regex(parts).fullmatch(resource) is not None


_SESSION = re.compile(r"arn:([\w-]+):sts::(\d{12}):assumed-role/([^/]+)/[^/]+")
_ROLE = re.compile(r"arn:([\w-]+):iam::(\d{12}):role/(?:.+/)?([^/]+)")
_ROOT = re.compile(r"arn:[\w-]+:iam::(\d{12}):root")


def _principal(stmt: Mapping[str, Any], req: Request) -> str | None:
    """"caller" if a resource-policy statement names the caller (or everyone), "account" if it
    names only the caller's account, else None. NotPrincipal covers everyone it does not list."""
    if "Principal" in stmt:
        return _names(stmt["Principal"], req)
    if "NotPrincipal" in stmt:
        return None if _names(stmt["NotPrincipal"], req) else "caller"
    return None


def _names(spec: Any, req: Request) -> str | None:
    if spec == "*":
        return "caller"
    found = None
    for kind, values in (spec.items() if isinstance(spec, Mapping) else ()):
        for value in _list(values):
            aws = kind == "AWS"
            if value == req.principal or aws and (value == "*" or _is_role_of(value, req.principal)):
                return "caller"
            root = _ROOT.fullmatch(str(value))
            if aws and req.account in (value, root and root.group(1)):
                found = "account"
    return found


def _is_role_of(role_arn: Any, principal: str) -> bool:
    """A role ARN names its sessions [PRINCIPAL]. Session ARNs carry no role path, so a role ARN
    with a path matches by partition, account and role name (unique within an account)."""
    role, session = _ROLE.fullmatch(str(role_arn)), _SESSION.fullmatch(principal)
    return bool(role and session and role.groups() == session.groups())


# --- conditions -------------------------------------------------------------------------------


def _condition(block: Any, ctx: dict[str, Any], variables: bool) -> bool:
    """Operators AND, keys AND, values OR (NOR for negated operators) [CONDITION]."""
    if not isinstance(block, Mapping):
        return False
    return all(_operator(op, keys, ctx, variables) for op, keys in block.items())


def _operator(op: str, keys: Any, ctx: dict[str, Any], variables: bool) -> bool:
    qualifier, _, name = op.rpartition(":")
    if_exists = name.endswith("IfExists")
    base = name[: -len("IfExists")] if if_exists else name
    test = None if if_exists and base == "Null" else _TESTS.get(base)
    if test is None or qualifier not in ("", "ForAnyValue", "ForAllValues") or not isinstance(keys, Mapping):
        return False  # an unknown operator: the statement never applies
    compare, negated, takes_variables = test
    for key, wanted in keys.items():
        actual = ctx.get(str(key).lower())
        wanted = _list(wanted)
        if base == "Null":  # "true": the key is absent; "false": it is present [OPERATORS]
            if not any(str(w).lower() == ("true" if actual is None else "false") for w in wanted):
                return False
            continue
        values = list(actual) if isinstance(actual, (list, tuple)) else [] if actual is None else [actual]
        if not values:
            # A missing or empty key: ForAllValues is true and ForAnyValue false [SETS], even with
            # IfExists (as observed on AWS [REPOST]); otherwise
            # ...IfExists is true, a negated operator true and a positive one false [OPERATORS].
            ok = qualifier == "ForAllValues" if qualifier else if_exists or negated
        else:
            def hit(value: Any) -> bool:
                return any(compare(value, w, ctx, variables and takes_variables) for w in wanted)
            if qualifier == "ForAllValues":
                ok = all(hit(v) != negated for v in values)
            elif qualifier == "ForAnyValue":
                ok = any(hit(v) != negated for v in values)
            else:
                ok = any(hit(v) for v in values) != negated
        if not ok:
            return False
    return True


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _string(ignore_case: bool = False, like: bool = False) -> Callable[..., bool]:
    def compare(actual: Any, wanted: Any, ctx: dict[str, Any], variables: bool) -> bool:
        parts = _expand(_text(wanted), ctx, variables)
        if parts is None:
            return False
        if like:
            return _regex(parts).fullmatch(_text(actual)) is not None
        text = "".join(t for t, _ in parts)
        return text.lower() == _text(actual).lower() if ignore_case else text == _text(actual)
    return compare


def _parsed(parse: Callable[[Any], Any], relation: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    def compare(actual: Any, wanted: Any, ctx: dict[str, Any], variables: bool) -> bool:
        try:
            return relation(parse(actual), parse(wanted))
        except (TypeError, ValueError):  # binascii.Error is a ValueError
            return False
    return compare


def _date(value: Any) -> float:
    """ISO 8601 (W3C profile) or epoch seconds [OPERATORS]."""
    text = _text(value)
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return float(text)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def _binary(value: Any) -> bytes:
    return value if isinstance(value, bytes) else base64.b64decode(_text(value), validate=True)


def _ip(actual: Any, wanted: Any, ctx: dict[str, Any], variables: bool) -> bool:
    try:
        return ipaddress.ip_address(_text(actual)) in ipaddress.ip_network(_text(wanted), strict=False)
    except ValueError:
        return False


def _arn(actual: Any, wanted: Any, ctx: dict[str, Any], variables: bool) -> bool:
    """Each colon-separated part of the six is matched separately, case-sensitively [OPERATORS]."""
    parts = _expand(_text(wanted), ctx, variables)
    text = _text(actual)
    return parts is not None and text.count(":") >= 5 and _regex(parts, arn=True).fullmatch(text) is not None


def _number(value: Any) -> float:
    return float(_text(value))


# name -> (positive comparison, negated?, policy variables allowed? [OPERATORS])
_TESTS: dict[str, tuple[Callable[..., bool], bool, bool]] = {
    "StringEquals": (_string(), False, True), "StringNotEquals": (_string(), True, True),
    "StringEqualsIgnoreCase": (_string(ignore_case=True), False, True),
    "StringNotEqualsIgnoreCase": (_string(ignore_case=True), True, True),
    "StringLike": (_string(like=True), False, True), "StringNotLike": (_string(like=True), True, True),
    "Bool": (_string(ignore_case=True), False, True), "BinaryEquals": (_parsed(_binary, operator.eq), False, False),
    "IpAddress": (_ip, False, False), "NotIpAddress": (_ip, True, False),
    "ArnEquals": (_arn, False, True), "ArnLike": (_arn, False, True),
    "ArnNotEquals": (_arn, True, True), "ArnNotLike": (_arn, True, True),
    "Null": (operator.eq, False, False),  # decided in _operator
}
_RELATIONS = {"Equals": (operator.eq, False), "NotEquals": (operator.eq, True), "LessThan": (operator.lt, False),
              "LessThanEquals": (operator.le, False), "GreaterThan": (operator.gt, False),
              "GreaterThanEquals": (operator.ge, False)}
_TESTS.update({family + suffix: (_parsed(parse, rel), neg, False)
               for family, parse in (("Numeric", _number), ("Date", _date)) for suffix, (rel, neg) in _RELATIONS.items()})


# --- patterns and policy variables ------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def _expand(template: str, ctx: dict[str, Any], variables: bool) -> list[tuple[str, bool]] | None:
    """Split into (text, literal) pieces, replacing ${key} and ${key, 'default'} from the context
    and ${*} ${?} ${$} by literal characters [VARIABLES]. None if a variable has no value (a
    multivalued key never has one); the caller then treats the policy value as not matching."""
    if not variables:
        return [(template, False)]
    pieces, end = [], 0
    for match in _VARIABLE.finditer(template):
        body = match.group(1)
        name, comma, default = body.partition(",")
        value, default = (body if body in ("*", "?", "$") else ctx.get(name.strip().lower())), default.strip()
        if value is None or isinstance(value, (list, tuple)):
            if not (comma and len(default) >= 2 and default[0] == default[-1] == "'"):
                return None
            value = default[1:-1].replace("''", "'")
        pieces += [(template[end:match.start()], False), (_text(value), True)]
        end = match.end()
    return pieces + [(template[end:], False)]


def _regex(pieces: list[tuple[str, bool]], ignore_case: bool = False, arn: bool = False) -> re.Pattern[str]:
    """'*' matches any run of characters and '?' any one, except in literal pieces. For an ARN
    they stay within one of the first five colon-separated parts."""
    source, colons = [], 0
    for text, literal in pieces:
        for char in text:
            within = arn and colons < 5
            if literal or char not in "*?":
                source.append(re.escape(char))
            else:
                source.append(("[^:]" if within else ".") + ("*" if char == "*" else ""))
            colons += char == ":"
    return re.compile("".join(source), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _like(pattern: Any, value: str) -> bool:
    return _regex([(str(pattern), False)], ignore_case=True).fullmatch(value) is not None


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]
