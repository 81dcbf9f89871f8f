"""`iam:SimulatePrincipalPolicy` for the local stack, which moto lacks (it answers a bare HTTP 500).

The router answers it here for a role (`PolicySourceArn` of a role): the role's attached managed
policies (their default versions), its inline policies and its permissions boundary, read from
moto, evaluated with `iam_policy.evaluate` for each action and resource asked, as IAM does without
context entries: an explicit Deny anywhere is `explicitDeny`; an Allow of the identity policies
that the boundary (where there is one) also allows is `allowed`; anything else `implicitDeny`. A
condition on a key the request does not supply does not hold (IAM reports such a key as a missing
context value and does not allow). Users and groups as sources are refused as not supported here.

Standard library plus boto3 (the client the caller passes).
"""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import iam_policy

NS = "https://iam.amazonaws.com/doc/2010-05-08/"


def _members(form: dict, name: str) -> list[str]:
    """`Name.member.1`, `Name.member.2`, ... of a query-protocol form, in order."""
    out, i = [], 1
    while f"{name}.member.{i}" in form:
        out.append(form[f"{name}.member.{i}"][0])
        i += 1
    return out


def error(status: int, code: str, message: str) -> tuple[int, bytes]:
    """An IAM (query protocol) error answer: HTTP status and XML."""
    body = (f'<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")
    return status, body.encode()


def _documents(iam, role_name: str) -> tuple[list, dict | None]:
    docs = []
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role_name):
        for p in page["AttachedPolicies"]:
            arn = p["PolicyArn"]
            version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
            doc = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
            docs.append(iam_policy.document(doc))
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=role_name):
        for name in page["PolicyNames"]:
            docs.append(iam_policy.document(iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]))
    boundary = iam.get_role(RoleName=role_name)["Role"].get("PermissionsBoundary")
    bdoc = None
    if boundary:
        arn = boundary["PermissionsBoundaryArn"]
        version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        bdoc = iam_policy.document(iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"])
    return docs, bdoc


def decision(identity: list, boundary: dict | None, action: str, resource: str) -> str:
    """IAM's decision for one action on one resource (no context entries)."""
    ctx = iam_policy.Context({})
    d = iam_policy.evaluate(identity, action, resource, ctx)
    b = iam_policy.evaluate([boundary], action, resource, ctx) if boundary is not None else "Allow"
    if "Deny" in (d, b):
        return "explicitDeny"
    return "allowed" if d == "Allow" and b == "Allow" else "implicitDeny"


def form_of(body: bytes) -> dict:
    """A query-protocol request body as its form."""
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def source_of(form: dict) -> str:
    """The request's `PolicySourceArn` ("" when absent)."""
    return (form.get("PolicySourceArn") or [""])[0]


def simulate(iam, form: dict) -> tuple[int, bytes]:
    """The answer (HTTP status, XML) to a SimulatePrincipalPolicy request of `form` ([`form_of`])."""
    source = source_of(form)
    actions = _members(form, "ActionNames")
    resources = _members(form, "ResourceArns") or ["*"]
    if ":role/" not in source:
        return error(400, "InvalidInput", f"the local stack simulates roles only, not {source}")
    role_name = source.rsplit("/", 1)[-1]
    try:
        identity, boundary = _documents(iam, role_name)
    except iam.exceptions.NoSuchEntityException:
        return error(404, "NoSuchEntity", f"The role with name {role_name} cannot be found.")
    members = []
    for action in actions:
        for resource in resources:
            members.append(
                f"<member><EvalActionName>{escape(action)}</EvalActionName>"
                f"<EvalResourceName>{escape(resource)}</EvalResourceName>"
                f"<EvalDecision>{decision(identity, boundary, action, resource)}</EvalDecision>"
                "<MatchedStatements/><MissingContextValues/></member>")
    body = (f'<SimulatePrincipalPolicyResponse xmlns="{NS}"><SimulatePrincipalPolicyResult>'
            f"<IsTruncated>false</IsTruncated><EvaluationResults>{''.join(members)}</EvaluationResults>"
            f"</SimulatePrincipalPolicyResult><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>"
            "</ResponseMetadata></SimulatePrincipalPolicyResponse>")
    return 200, body.encode()
