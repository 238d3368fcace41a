"""The pure IAM policy evaluator: each rule AWS documents, and the cases moto decides wrongly."""

import json

import pytest

from fashion_pipeline_tools.local.iam_policy import Decision, Request, access_denied_message, evaluate

ACCOUNT = "123456789012"
OTHER = "210987654321"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/PipelineRole"
SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/PipelineRole/session-1"
USER = f"arn:aws:iam::{ACCOUNT}:user/alice"
BUCKET = "arn:aws:s3:::b"


def policy(*statements, version="2012-10-17"):
    return {"Version": version, "Statement": list(statements)}


def allow(action, resource="*", **extra):
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action, resource="*", **extra):
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def request(action="s3:GetObject", resource=f"{BUCKET}/images/a.jpg", principal=SESSION, account=ACCOUNT, **context):
    return Request(action, resource, principal, account, context)


def allowed(statement_or_policy, req=None, **kwargs):
    doc = statement_or_policy if "Statement" in statement_or_policy else policy(statement_or_policy)
    return evaluate(req or request(), [doc], **kwargs).allowed


# --- actions and resources ----------------------------------------------------------------------


def test_actions_match_case_insensitively_with_star_and_question_mark_wildcards():
    assert allowed(allow("S3:getobject"))
    assert allowed(allow("s3:Get?bject"))
    assert allowed(allow("s3:*"))
    assert not allowed(allow("s3:Get?Object"))
    assert not allowed(allow("s3:PutObject"))
    assert not allowed(allow("s3x:GetObject"))


def test_a_resource_scoped_statement_does_not_grant_an_action_evaluated_against_star():
    req = request("s3:ListAllMyBuckets", "*")
    assert not allowed(allow("s3:*", "arn:aws:s3:::*"), req)
    assert allowed(allow("s3:*", "*"), req)


def test_resources_glob_case_sensitively():
    assert allowed(allow("s3:GetObject", f"{BUCKET}/images/*"))
    assert allowed(allow("s3:GetObject", f"{BUCKET}/images/?.jpg"))
    assert not allowed(allow("s3:GetObject", f"{BUCKET}/Images/*"))
    assert not allowed(allow("s3:GetObject", f"{BUCKET}/images/??.jpg"))
    assert allowed(allow("s3:GetObject", ["arn:aws:s3:::other/*", "arn:aws:s3:::b/*"]))


def test_not_action_and_not_resource_cover_everything_they_do_not_list():
    everything_but_delete = {"Effect": "Allow", "NotAction": "s3:Delete*", "Resource": "*"}
    assert allowed(everything_but_delete)
    assert not allowed(everything_but_delete, request("s3:DeleteObject"))
    outside_secrets = {"Effect": "Allow", "Action": "s3:*", "NotResource": f"{BUCKET}/secrets/*"}
    assert allowed(outside_secrets)
    assert not allowed(outside_secrets, request(resource=f"{BUCKET}/secrets/k"))
    # "*" is outside every listed ARN, as for ListAllMyBuckets under a NotResource deny on AWS.
    assert allowed(outside_secrets, request("s3:ListAllMyBuckets", "*"))


def test_cdk_style_grant_read():
    grant = allow(["s3:GetObject*", "s3:GetBucket*", "s3:List*"], ["arn:aws:s3:::b", "arn:aws:s3:::b/images/*"])
    assert allowed(grant)
    assert allowed(grant, request("s3:ListBucket", BUCKET))
    assert allowed(grant, request("s3:GetObjectTagging"))
    assert allowed(grant, request("s3:GetBucketLocation", BUCKET))
    assert not allowed(grant, request(resource=f"{BUCKET}/labels/a.json"))
    assert not allowed(grant, request("s3:PutObject"))
    assert not allowed(grant, request("s3:ListAllMyBuckets", "*"))


# --- decisions ----------------------------------------------------------------------------------


def test_explicit_deny_beats_allow_and_names_the_deciding_statement():
    decision = evaluate(
        request(), [policy(allow("s3:*")), policy({"Sid": "NoImages", **deny("s3:GetObject", f"{BUCKET}/images/*")})]
    )
    assert decision == Decision(False, "with an explicit deny in an identity-based policy", ("NoImages",))


def test_no_allow_is_an_implicit_deny_and_unnamed_statements_are_numbered():
    assert evaluate(request(), []) == Decision(False, "because no identity-based policy allows the s3:GetObject action")
    decision = evaluate(request(), [policy(allow("sqs:*"), allow("s3:GetObject"))])
    assert decision.allowed and decision.matched == ("#1",)


def test_policies_may_be_json_strings_and_a_single_statement_may_be_a_dict():
    doc = json.dumps({"Version": "2012-10-17", "Statement": allow("s3:GetObject")})
    assert evaluate(request(), [doc]).allowed


def test_statements_with_an_unknown_effect_are_ignored():
    assert not allowed({"Effect": "allow", "Action": "s3:*", "Resource": "*"})


# --- conditions ---------------------------------------------------------------------------------


def when(condition, **context):
    return allowed(allow("s3:GetObject", Condition=condition), request(**context))


def test_string_operators_and_or_between_values():
    assert when({"StringEquals": {"s3:x-amz-acl": ["public-read", "private"]}}, **{"s3:x-amz-acl": "private"})
    assert not when({"StringEquals": {"s3:x-amz-acl": "Private"}}, **{"s3:x-amz-acl": "private"})
    assert when({"StringEqualsIgnoreCase": {"s3:x-amz-acl": "Private"}}, **{"s3:x-amz-acl": "private"})
    assert when({"StringLike": {"s3:prefix": "images/*"}}, **{"s3:prefix": "images/2024/a"})
    # Condition key names are case-insensitive.
    assert when({"StringEquals": {"S3:X-Amz-Acl": "private"}}, **{"s3:x-amz-acl": "private"})


def test_negated_operators_are_nor_over_the_values():
    condition = {"StringNotEquals": {"aws:PrincipalTag/role": ["audit", "security"]}}
    assert not when(condition, **{"aws:PrincipalTag/role": "audit"})
    assert when(condition, **{"aws:PrincipalTag/role": "dev"})
    assert not when({"StringNotLike": {"s3:prefix": "private/*"}}, **{"s3:prefix": "private/x"})


def test_an_unqualified_operator_on_a_list_value_tests_any_of_it_and_negation_inverts_that():
    assert when({"StringEquals": {"aws:TagKeys": "team"}}, **{"aws:TagKeys": ["owner", "team"]})
    assert not when({"StringNotEquals": {"aws:TagKeys": "team"}}, **{"aws:TagKeys": ["owner", "team"]})
    assert when({"StringNotEquals": {"aws:TagKeys": "team"}}, **{"aws:TagKeys": ["owner"]})


def test_bool_compares_without_regard_to_case():
    assert when({"Bool": {"aws:SecureTransport": "true"}}, **{"aws:SecureTransport": "True"})
    assert not when({"Bool": {"aws:SecureTransport": "true"}}, **{"aws:SecureTransport": "False"})


def test_all_operators_and_all_keys_must_hold():
    condition = {
        "StringEquals": {"aws:SourceAccount": ACCOUNT, "kms:ViaService": "sns.us-east-1.amazonaws.com"},
        "Bool": {"aws:SecureTransport": "true"},
    }
    context = {"aws:SourceAccount": ACCOUNT, "kms:ViaService": "sns.us-east-1.amazonaws.com"}
    assert when(condition, **context, **{"aws:SecureTransport": True})
    assert not when(condition, **context, **{"aws:SecureTransport": False})
    assert not when(condition, **{"aws:SourceAccount": ACCOUNT, "aws:SecureTransport": True})


def test_a_missing_key_fails_positive_operators_and_passes_negated_ones():
    assert not when({"StringEquals": {"aws:SourceAccount": ACCOUNT}})
    assert when({"StringNotEquals": {"aws:SourceAccount": OTHER}})
    assert when({"ArnNotLike": {"aws:SourceArn": "arn:aws:sns:*:*:t"}})
    assert not when({"NumericLessThan": {"s3:max-keys": "10"}})


def test_if_exists_passes_a_missing_key_and_tests_a_present_one():
    condition = {"StringEqualsIfExists": {"aws:SourceAccount": ACCOUNT}}
    assert when(condition)
    assert when(condition, **{"aws:SourceAccount": ACCOUNT})
    assert not when(condition, **{"aws:SourceAccount": OTHER})


def test_null_checks_presence():
    assert when({"Null": {"aws:TokenIssueTime": "true"}})
    assert not when({"Null": {"aws:TokenIssueTime": "true"}}, **{"aws:TokenIssueTime": "2024-01-01T00:00:00Z"})
    assert when({"Null": {"aws:TokenIssueTime": "false"}}, **{"aws:TokenIssueTime": "2024-01-01T00:00:00Z"})


def test_set_qualifiers_on_multivalued_keys():
    only_known = {"ForAllValues:StringEquals": {"aws:TagKeys": ["team", "env"]}}
    assert when(only_known, **{"aws:TagKeys": ["team"]})
    assert not when(only_known, **{"aws:TagKeys": ["team", "owner"]})
    assert when(only_known)  # ForAllValues is true for a missing key
    assert when(only_known, **{"aws:TagKeys": []})
    any_team = {"ForAnyValue:StringEquals": {"aws:TagKeys": "team"}}
    assert when(any_team, **{"aws:TagKeys": ["owner", "team"]})
    assert not when(any_team, **{"aws:TagKeys": ["owner"]})
    assert not when(any_team)  # ForAnyValue is false for a missing key...
    assert not when({"ForAnyValue:StringEqualsIfExists": {"aws:TagKeys": "team"}})  # ...even with IfExists
    none_secret = {"ForAllValues:StringNotEquals": {"aws:TagKeys": "secret"}}
    assert when(none_secret, **{"aws:TagKeys": ["team"]})
    assert not when(none_secret, **{"aws:TagKeys": ["team", "secret"]})


NOW = "2024-06-01T12:00:00Z"


@pytest.mark.parametrize(
    ("condition", "context", "expected"),
    [
        ({"NumericLessThanEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": 10}, True),
        ({"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": "10"}, False),
        ({"NumericGreaterThan": {"s3:max-keys": "1.5"}}, {"s3:max-keys": 2}, True),
        ({"NumericNotEquals": {"s3:max-keys": ["1", "2"]}}, {"s3:max-keys": 3}, True),
        ({"NumericEquals": {"s3:max-keys": "ten"}}, {"s3:max-keys": 10}, False),
        ({"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}, {"aws:CurrentTime": NOW}, True),
        ({"DateGreaterThan": {"aws:CurrentTime": "2030-01-01"}}, {"aws:CurrentTime": NOW}, False),
        ({"DateEquals": {"aws:EpochTime": "1700000000"}}, {"aws:EpochTime": 1700000000}, True),
        ({"DateGreaterThanEquals": {"aws:CurrentTime": "1700000000"}}, {"aws:CurrentTime": NOW}, True),
        ({"DateLessThan": {"aws:CurrentTime": "2024-06-01T14:30:00+02:00"}}, {"aws:CurrentTime": NOW}, True),
        ({"IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "2001:DB8::/32"]}}, {"aws:SourceIp": "203.0.113.7"}, True),
        ({"IpAddress": {"aws:SourceIp": "2001:DB8::/32"}}, {"aws:SourceIp": "2001:db8::1"}, True),
        ({"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, {"aws:SourceIp": "2001:db8::1"}, False),
        ({"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, {"aws:SourceIp": "198.51.100.1"}, True),
        ({"IpAddress": {"aws:SourceIp": "198.51.100.1"}}, {"aws:SourceIp": "198.51.100.1"}, True),
        ({"BinaryEquals": {"k": "QmluYXJ5"}}, {"k": "QmluYXJ5"}, True),
        ({"BinaryEquals": {"k": "QmluYXJ5"}}, {"k": b"Binary"}, True),
        ({"ArnLike": {"aws:SourceArn": "arn:aws:sns:*:123456789012:topic-?"}},
         {"aws:SourceArn": "arn:aws:sns:us-east-1:123456789012:topic-1"}, True),
        ({"ArnEquals": {"aws:SourceArn": "arn:aws:lambda:*:123456789012:function:*"}},
         {"aws:SourceArn": "arn:aws:lambda:us-east-1:123456789012:function:f:live"}, True),
        ({"ArnNotEquals": {"aws:SourceArn": "arn:aws:sns:*:123456789012:t"}},
         {"aws:SourceArn": "arn:aws:sns:us-east-1:123456789012:t"}, False),
        ({"ArnLike": {"aws:SourceArn": "arn:aws:sns:us-east-1:123456789012:*"}}, {"aws:SourceArn": "nope"}, False),
    ],
)
def test_typed_operators(condition, context, expected):
    assert when(condition, **context) is expected


def test_arn_wildcards_stay_within_their_part_where_string_like_does_not():
    # The example of the Condition operators page.
    pattern = "arn:aws:someservice:*:111122223333:finance/*"
    value = "arn:aws:someservice:us-east-2:999999999999:store/abc:111122223333:finance/document.txt"
    assert when({"StringLike": {"aws:SourceArn": pattern}}, **{"aws:SourceArn": value})
    assert not when({"ArnLike": {"aws:SourceArn": pattern}}, **{"aws:SourceArn": value})


def test_an_unknown_operator_never_matches_and_never_raises():
    assert not when({"StringEqualz": {"aws:SourceAccount": ACCOUNT}}, **{"aws:SourceAccount": ACCOUNT})
    assert not when({"ForSomeValues:StringEquals": {"aws:TagKeys": "a"}}, **{"aws:TagKeys": ["a"]})
    assert not when({"NullIfExists": {"aws:TokenIssueTime": "true"}})
    forbidden = {"Effect": "Deny", "Action": "s3:*", "Resource": "*", "Condition": {"Bogus": {"k": "v"}}}
    assert allowed(policy(allow("s3:*"), forbidden))  # a Deny that cannot match denies nothing


def test_a_failed_condition_on_an_allow_is_no_deny():
    """moto turns it into an explicit deny; on AWS the statement simply does not apply."""
    conditional = allow("s3:*", Condition={"StringEquals": {"aws:SourceAccount": OTHER}})
    decision = evaluate(request(**{"aws:SourceAccount": ACCOUNT}), [policy(conditional, allow("s3:GetObject"))])
    assert decision.allowed and decision.matched == ("#1",)


# --- policy variables ---------------------------------------------------------------------------


def test_policy_variables_in_resources_and_conditions():
    home = allow("s3:GetObject", "arn:aws:s3:::b/home/${aws:username}/*")
    resource = f"{BUCKET}/home/alice/a.txt"
    assert allowed(home, request(resource=resource, principal=USER, **{"aws:username": "alice"}))
    assert not allowed(home, request(resource=resource, principal=USER, **{"aws:username": "bob"}))
    # Unresolvable (here: a role session has no aws:username): the value does not match.
    assert not allowed(home, request(resource=resource))
    same_account = {"StringEquals": {"aws:SourceAccount": "${aws:PrincipalAccount}"}}
    assert when(same_account, **{"aws:SourceAccount": ACCOUNT, "aws:PrincipalAccount": ACCOUNT})
    assert not when(same_account, **{"aws:SourceAccount": OTHER, "aws:PrincipalAccount": ACCOUNT})
    # A default value stands in for a missing key.
    assert when({"StringEquals": {"aws:SourceAccount": "${aws:PrincipalAccount, '123456789012'}"}},
                **{"aws:SourceAccount": ACCOUNT})


def test_variable_values_and_escapes_are_literal_not_wildcards():
    star = request(resource="arn:aws:s3:::b/a*b")
    assert allowed(allow("s3:GetObject", "arn:aws:s3:::b/a${*}b"), star)
    assert not allowed(allow("s3:GetObject", "arn:aws:s3:::b/a${*}b"), request(resource="arn:aws:s3:::b/axxb"))
    named = allow("s3:GetObject", "arn:aws:s3:::b/${aws:username}")
    assert not allowed(named, request(resource="arn:aws:s3:::b/x", **{"aws:username": "*"}))
    assert when({"StringEquals": {"s3:prefix": "cost${$}${?}"}}, **{"s3:prefix": "cost$?"})


def test_variables_are_literal_text_without_the_2012_version():
    old = policy(allow("s3:GetObject", "arn:aws:s3:::b/${aws:username}"), version="2008-10-17")
    literal = request(resource="arn:aws:s3:::b/${aws:username}", **{"aws:username": "alice"})
    assert evaluate(literal, [old]).allowed
    assert not evaluate(request(resource="arn:aws:s3:::b/alice", **{"aws:username": "alice"}), [old]).allowed


# --- resource-based policies and principals -----------------------------------------------------

DENY_INSECURE = {
    "Sid": "DenyInsecure",  # as CDK's enforceSSL writes it
    "Effect": "Deny",
    "Principal": {"AWS": "*"},
    "Action": "s3:*",
    "Resource": [BUCKET, f"{BUCKET}/*"],
    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
}


def test_a_bucket_policy_denying_insecure_transport():
    identity = [policy(allow("s3:GetObject", f"{BUCKET}/*"))]
    bucket = policy(DENY_INSECURE)
    insecure = evaluate(request(**{"aws:SecureTransport": False}), identity, bucket)
    assert insecure == Decision(False, "with an explicit deny in a resource-based policy", ("DenyInsecure",))
    assert evaluate(request(**{"aws:SecureTransport": True}), identity, bucket).allowed
    assert evaluate(request(**{"aws:SecureTransport": "true"}), identity, bucket).allowed
    # The bucket policy grants nothing; the identity policy still has to.
    assert not evaluate(request(**{"aws:SecureTransport": True}), [], bucket).allowed


def test_a_service_principal_grant_does_not_grant_a_role():
    bucket = policy({"Effect": "Allow", "Principal": {"Service": "logging.s3.amazonaws.com"}, "Action": "s3:PutObject",
                     "Resource": f"{BUCKET}/*"})
    assert not evaluate(request("s3:PutObject"), [], bucket).allowed
    assert evaluate(request("s3:PutObject", principal="logging.s3.amazonaws.com"), [], bucket).allowed


def test_a_same_account_resource_policy_naming_the_role_grants_its_sessions():
    for role in (ROLE, f"arn:aws:iam::{ACCOUNT}:role/service-role/PipelineRole"):
        bucket = policy({"Sid": "Pipeline", "Effect": "Allow", "Principal": {"AWS": [USER, role]},
                         "Action": "s3:GetObject", "Resource": f"{BUCKET}/*"})
        decision = evaluate(request(), [], bucket)
        assert decision == Decision(True, "allowed by resource-based policy", ("Pipeline",))
    other_role = policy({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/Other"},
                         "Action": "s3:GetObject", "Resource": f"{BUCKET}/*"})
    assert not evaluate(request(), [], other_role).allowed
    assert evaluate(request(principal=USER), [], policy({"Effect": "Allow", "Principal": {"AWS": USER},
                                                          "Action": "s3:*", "Resource": "*"})).allowed
    assert evaluate(request(), [], policy({"Effect": "Allow", "Principal": "*", "Action": "s3:*"})).allowed


def test_naming_only_the_account_delegates_and_grants_nothing_by_itself():
    for principal in (ACCOUNT, f"arn:aws:iam::{ACCOUNT}:root"):
        bucket = policy({"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "s3:*", "Resource": "*"})
        assert not evaluate(request(), [], bucket).allowed
        assert evaluate(request(), [policy(allow("s3:GetObject"))], bucket).allowed
        denying = policy({"Effect": "Deny", "Principal": {"AWS": principal}, "Action": "s3:*", "Resource": "*"})
        assert not evaluate(request(), [policy(allow("s3:*"))], denying).allowed


def test_not_principal_applies_to_everyone_it_does_not_list():
    others = {"Effect": "Deny", "NotPrincipal": {"AWS": ROLE}, "Action": "s3:*", "Resource": "*"}
    assert evaluate(request(), [policy(allow("s3:*"))], policy(others)).allowed
    assert not evaluate(request(principal=USER), [policy(allow("s3:*"))], policy(others)).allowed


def test_cross_account_needs_both_sides():
    identity = [policy(allow("s3:GetObject", f"{BUCKET}/*"))]
    trusting = policy({"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "s3:GetObject",
                       "Resource": f"{BUCKET}/*"})
    assert evaluate(request(), identity, trusting, resource_account=OTHER).allowed
    assert evaluate(request(), [], trusting, resource_account=OTHER) == Decision(
        False, "because no identity-based policy allows the s3:GetObject action"
    )
    assert evaluate(request(), identity, None, resource_account=OTHER) == Decision(
        False, "because no resource-based policy allows the s3:GetObject action"
    )
    assert evaluate(request(), identity, None, resource_account=ACCOUNT).allowed


# --- messages -----------------------------------------------------------------------------------


def test_access_denied_message_uses_the_aws_wording():
    req = request()
    assert access_denied_message(req, evaluate(req, [])) == (
        f"User: {SESSION} is not authorized to perform: s3:GetObject on resource: {BUCKET}/images/a.jpg "
        "because no identity-based policy allows the s3:GetObject action"
    )
    listing = request("s3:ListAllMyBuckets", "*", principal=USER)
    denied = evaluate(listing, [policy(deny("s3:*"))])
    assert access_denied_message(listing, denied) == (
        f"User: {USER} is not authorized to perform: s3:ListAllMyBuckets "
        "with an explicit deny in an identity-based policy"
    )
