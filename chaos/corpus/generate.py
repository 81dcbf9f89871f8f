#!/usr/bin/env python3
"""Writes the hostile-input corpus: console.json (inputs to StartExecution), cfn.json
(CloudFormation requests to cfn-handler) and vending.json (events and requests to vending-hook).

    .venv/bin/python chaos/corpus/generate.py      # rewrites the three files

Every item is an input the product must reject before any AWS write, with a message naming the
field. Item keys:
  id      unique, [a-z0-9-]; the execution or response key is derived from it
  entry   console | cfn | vending
  about   what it tries
  fields  the error (console: Error and Cause; cfn: the response's Reason; vending: the function
          error) must contain at least one of these
  input | raw               console: the execution input (raw: a JSON text sent as is)
  properties, requestType   cfn: ResourceProperties (CloudFormation sends scalars as strings)
  responseUrl               cfn: a hostile ResponseURL ({SINK}: the harness's listener port):
                            never answered, the function fails naming ResponseURL
  event | raw               vending: the event or request
  error                     the expected error name (default ValidationError)
Strings equal to "{LONG}" become 100,000 characters when sent.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE = {"deploymentName": "chaos-bad", "cluster": {"name": "chaos-eks"}, "namespace": "chaos-app",
        "irsaRoleName": "chaos-irsa"}
LONG = "{LONG}"  # the harness expands it to 100,000 characters: over every limit, under Step Functions' 256 KB

# Trust boundary: what a namespace could try in `system:serviceaccount:<namespace>:observability-*`.
NAMESPACE_ATTACKS = [
    ("star", "*"),
    ("prefix-star", "dr-*"),
    ("colon-star", "dr-core:*"),
    ("colon-sa", "dr-core:observability-x"),
    ("full-sub", "system:serviceaccount:*"),
    ("slash", "dr-core/x"),
    ("question", "dr-core?"),
    ("quote", 'dr-core"'),
    ("json-fragment", 'dr-core","StringLike":{"x":"*'),
    ("brace", "dr-core}"),
    ("backslash", "dr-core\\"),
    ("policy-variable", "${aws:username}"),
    ("comma-list", "dr-core,kube-system"),
    ("newline", "dr-core\nx"),
    ("nul", "dr-core\u0000"),
    ("space", "dr core"),
    ("trailing-space", "dr-core "),
    ("uppercase", "DR-CORE"),
    ("underscore", "dr_core"),
    ("dot", "dr.core"),
    ("leading-dash", "-dr"),
    ("trailing-dash", "dr-"),
    ("empty", ""),
    ("too-long", "a" * 64),
    ("oversized", LONG),
    ("unicode-dash", "dr\u2011core"),
    ("cyrillic", "dr-c\u043ere"),
    ("fullwidth", "\uff44\uff52"),
    ("rtl-override", "dr\u202ecore"),
    ("zero-width", "dr\u200bcore"),
    ("emoji", "dr-\U0001F600"),
]

ACCOUNT_ATTACKS = [
    ("11-digits", "12345678901"),
    ("13-digits", "1234567890123"),
    ("letter", "12345678901a"),
    ("star", "*"),
    ("spaces", " 123456789012"),
    ("fullwidth-digits", "\uff11" * 12),
    ("arabic-indic-digits", "\u0661" * 12),
    ("arn", "arn:aws:iam::123456789012:root"),
    ("empty", ""),
]


def with_(patch: dict, base: dict | None = None) -> dict:
    out = json.loads(json.dumps(base or BASE))
    for k, v in patch.items():
        if v is _DROP:
            out.pop(k, None)
        else:
            out[k] = v
    return out


class _Drop:
    pass


_DROP = _Drop()


def console_items() -> list[dict]:
    items = []

    def add(id_, about, input_=None, fields=None, raw=None, error=None):
        item = {"id": f"console-{id_}", "entry": "console", "about": about, "fields": fields}
        if raw is not None:
            item["raw"] = raw
        else:
            item["input"] = input_
        if error:
            item["error"] = error
        items.append(item)

    # the shape of the input
    add("array", "the input is an array", raw="[]", fields=["input"])
    add("string", "the input is a string", raw='"dr-prod"', fields=["input"])
    add("number", "the input is a number", raw="42", fields=["input"])
    add("null", "the input is null", raw="null", fields=["input"])
    # missing fields
    for f in ("deploymentName", "namespace", "irsaRoleName", "cluster"):
        add(f"missing-{f.lower()}", f"{f} missing", with_({f: _DROP}), [f])
    add("cluster-empty", "cluster without name or oidcIssuer", with_({"cluster": {}}), ["cluster"])
    # wrong types
    add("type-deployment-number", "deploymentName is a number", with_({"deploymentName": 42}), ["deploymentName"])
    add("type-namespace-null", "namespace is null", with_({"namespace": None}), ["namespace"])
    add("type-namespace-array", "namespace is an array", with_({"namespace": ["chaos-app"]}), ["namespace"])
    add("type-cluster-string", "cluster is a string", with_({"cluster": "chaos-eks"}), ["cluster"])
    add("type-cluster-array", "cluster is an array", with_({"cluster": ["chaos-eks"]}), ["cluster"])
    add("type-retain-string", "retainMetrics is a string", with_({"retainMetrics": "yes"}), ["retainMetrics"])
    add("type-grafana-string", "grafana is a string", with_({"grafana": "10.4"}), ["grafana"])
    add("type-providers-string", "authenticationProviders is a string",
        with_({"grafana": {"authenticationProviders": "AWS_SSO"}}), ["grafana.authenticationProviders"])
    add("type-default-datasource", "defaultDatasource is an object",
        with_({"grafana": {"defaultDatasource": {"x": 1}}}), ["grafana.defaultDatasource"])
    add("action-unknown", "an unknown action", with_({"action": "destroy"}), ["action"])
    add("verify-unknown", "an unknown verify mode", with_({"verify": "maybe"}), ["verify"])
    # unknown fields
    add("extra-top", "an unknown top-level field", with_({"evil": True}), ["evil"])
    add("extra-nested", "an unknown field in grafana", with_({"grafana": {"permissionType": "SERVICE_MANAGED"}}),
        ["permissionType"])
    add("extra-cluster", "an unknown field in cluster", with_({"cluster": {"name": "chaos-eks", "arn": "*"}}),
        ["arn"])
    add("extra-huge-key", "a 5,000-character unknown key", with_({"k" * 5000: 1}), ["kkkkkkkkkkkkkkkk"])
    add("extra-case", "a field in the wrong case", with_({"DeploymentName": "x"}), ["DeploymentName"])
    # the trust boundary: namespace
    for id_, ns in NAMESPACE_ATTACKS:
        add(f"namespace-{id_}", f"namespace {ns[:40]!r}", with_({"namespace": ns}), ["namespace"])
    # names
    for id_, v in [("empty", ""), ("digit-first", "1abc"), ("double-dash", "a--b"), ("trailing-dash", "a-"),
                   ("too-long", "a" * 41), ("underscore", "dr_prod"), ("slash", "dr/prod"), ("star", "dr*"),
                   ("unicode", "dr-pr\u00f6d"), ("oversized", LONG)]:
        add(f"deployment-{id_}", f"deploymentName {v[:40]!r}", with_({"deploymentName": v}), ["deploymentName"])
    for id_, v in [("star", "*"), ("colon", "role:x"), ("slash", "path/role"), ("too-long", "r" * 65),
                   ("cyrillic", "\u0440ole"), ("empty", "")]:
        add(f"irsa-{id_}", f"irsaRoleName {v[:40]!r}", with_({"irsaRoleName": v}), ["irsaRoleName"])
    for id_, v in [("star", "*"), ("colon", "eks:*"), ("too-long", "c" * 101), ("dot", "a.b")]:
        add(f"cluster-name-{id_}", f"cluster.name {v[:40]!r}", with_({"cluster": {"name": v}}), ["cluster.name"])
    for id_, v in [("wildcard-host", "https://*.example.com/id/X"), ("http", "http://oidc.example.com/id/X"),
                   ("query", "https://oidc.example.com/id/X?a=b"), ("userinfo", "https://u@oidc.example.com/id/X"),
                   ("port", "https://oidc.example.com:8443/id/X"), ("dotdot", "https://oidc.example.com/id/../X"),
                   ("star-path", "https://oidc.eks.us-east-1.amazonaws.com/id/*")]:
        add(f"issuer-{id_}", f"oidcIssuer {v!r}", with_({"cluster": {"oidcIssuer": v}}), ["cluster.oidcIssuer"])
    for id_, v in [("unknown", "us-east-7"), ("uppercase", "US-EAST-1"), ("star", "*"), ("empty", ""),
                   ("local", "local"), ("trailing-space", "us-east-1 ")]:
        add(f"region-{id_}", f"region {v!r}", with_({"region": v}), ["region"])
    for id_, v in ACCOUNT_ATTACKS:
        add(f"target-{id_}", f"target.accountId {v[:30]!r}", with_({"target": {"accountId": v}}),
            ["target.accountId"])
    add("target-number", "target.accountId is a number", with_({"target": {"accountId": 123456789012}}),
        ["target.accountId"])
    add("target-role-star", "target.roleName '*'", with_({"target": {"accountId": "210987654321", "roleName": "*"}}),
        ["target.roleName"])
    add("account-guard", "accountId guard of 11 digits", with_({"accountId": "12345678901"}), ["accountId"])
    # the other names and values
    add("alias-rtl", "amp.alias with a right-to-left override", with_({"amp": {"alias": "dr\u202eprod"}}),
        ["amp.alias"])
    add("alias-too-long", "amp.alias of 101 characters", with_({"amp": {"alias": "a" * 101}}), ["amp.alias"])
    add("alias-leading-space", "amp.alias with a leading space", with_({"amp": {"alias": " dr"}}), ["amp.alias"])
    add("write-policy-star", "writePolicyName '*'", with_({"writePolicyName": "*"}), ["writePolicyName"])
    add("grafana-ws-space", "grafana.workspaceName with a space", with_({"grafana": {"workspaceName": "a b"}}),
        ["grafana.workspaceName"])
    add("grafana-ws-zero-width", "grafana.workspaceName with a zero-width space",
        with_({"grafana": {"workspaceName": "a\u200bb"}}), ["grafana.workspaceName"])
    add("grafana-role-same", "grafana.roleName equal to irsaRoleName (case-insensitively)",
        with_({"grafana": {"roleName": "CHAOS-IRSA"}}), ["grafana.roleName"])
    add("read-policy-same", "readPolicyName equal to writePolicyName",
        with_({"writePolicyName": "p", "grafana": {"readPolicyName": "P"}}), ["grafana.readPolicyName"])
    add("grafana-version-word", "grafana.version 'latest'", with_({"grafana": {"version": "latest"}}),
        ["grafana.version"])
    add("grafana-version-injection", "grafana.version with a shell fragment",
        with_({"grafana": {"version": "10.4; rm -rf /"}}), ["grafana.version"])
    add("providers-empty", "no authentication provider", with_({"grafana": {"authenticationProviders": []}}),
        ["grafana.authenticationProviders"])
    add("providers-unknown", "an unknown authentication provider",
        with_({"grafana": {"authenticationProviders": ["AWS_SSO", "LDAP"]}}), ["grafana.authenticationProviders[1]"])
    add("admins-star", "grafana.admins.users ['*']", with_({"grafana": {"admins": {"users": ["*"]}}}),
        ["grafana.admins.users[0]"])
    add("log-group-aws", "logs.groupName under aws/", with_({"logs": {"groupName": "aws/lambda/x"}}),
        ["logs.groupName"])
    add("log-group-star", "logs.groupName '*'", with_({"logs": {"groupName": "*"}}), ["logs.groupName"])
    add("log-stream-colon", "logs.streamName with ':'", with_({"logs": {"streamName": "a:b"}}), ["logs.streamName"])
    add("log-stream-nul", "logs.streamName with NUL", with_({"logs": {"streamName": "a\u0000b"}}),
        ["logs.streamName"])
    add("log-stream-oversized", "logs.streamName of 100,000 characters", with_({"logs": {"streamName": LONG}}),
        ["logs.streamName"])
    for id_, v in [("aws", "/aws/x"), ("ssm", "/ssm/x"), ("relative", "o11y/x"), ("double-slash", "/o11y//x"),
                   ("dotdot", "/o11y/../x"), ("star", "/o11y/*"), ("too-deep", "/a" * 11)]:
        add(f"ssm-prefix-{id_}", f"ssmPrefix {v!r}", with_({"ssmPrefix": v}), ["ssmPrefix"])
    # a console run pretending to come from CloudFormation: the response must not go to a foreign host
    ctx = {"requestType": "Create", "responseUrl": "https://127.0.0.1:{SINK}#.s3.amazonaws.com/r",
           "stackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/evil/1", "requestId": "evil-1",
           "logicalResourceId": "Observability", "physicalResourceId": "x", "failurePhysicalResourceId": "x"}
    add("cfn-context-foreign-url", "a console input with a cloudFormation context whose ResponseURL is a foreign "
        "host disguised by a fragment", {"input": with_({"namespace": "dr-core:*"}), "cloudFormation": ctx},
        ["namespace"])
    # a valid console input with a cloudFormation block cfn-handler never issued: refused, nobody answered
    ctx_s3 = dict(ctx, responseUrl="https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/"
                  "x?X-Amz-Signature=a")
    add("cfn-context-unproven", "a valid console input with a cloudFormation block that cfn-handler did not issue",
        {"input": with_({"deploymentName": "chaos-bad-cfn"}), "cloudFormation": ctx_s3}, ["cloudFormation"])
    # roles outside the security boundary (chaos.py's seed creates them): refused before any write
    for id_, role, fields in REFUSED_ROLES:
        add(f"role-{id_}", f"irsaRoleName {role}: not opted in", with_({"deploymentName": f"chaos-bad-{id_}",
            "irsaRoleName": role}), fields, error="PreconditionError")
    add("grafana-role-untagged", "grafana.roleName of a foreign Grafana role that is not opted in",
        with_({"deploymentName": "chaos-bad-grafana-role", "irsaRoleName": "chaos-opted-in-irsa",
               "grafana": {"roleName": "chaos-untagged-grafana"}}), ["o11y-provisioner:irsa"], error="PreconditionError")
    return items


# Roles the chaos harness seeds outside the boundary, and what the refusal must name.
REFUSED_ROLES = [
    ("untagged", "chaos-untagged-irsa", ["o11y-provisioner:irsa"]),
    ("tag-false", "chaos-tag-false-irsa", ["o11y-provisioner:irsa"]),
    ("admin", "chaos-admin", ["o11y-provisioner:irsa"]),
    ("service-linked", "AWSServiceRoleForElasticBeanstalk", ["service-linked"]),
]


def cfn_items() -> list[dict]:
    items = []
    token = {"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:cfn-handler"}

    def props(patch: dict) -> dict:
        return with_(patch, dict(token, **BASE, retainMetrics="false"))

    def add(id_, about, properties, fields, request_type="Create", response_url=None):
        item = {"id": f"cfn-{id_}", "entry": "cfn", "about": about, "properties": properties, "fields": fields}
        if request_type != "Create":
            item["requestType"] = request_type
        if response_url:
            item["responseUrl"] = response_url
        items.append(item)

    for f in ("deploymentName", "namespace", "irsaRoleName", "cluster"):
        add(f"missing-{f.lower()}", f"{f} missing", props({f: _DROP}), [f])
    add("retain-maybe", "retainMetrics 'maybe'", props({"retainMetrics": "maybe"}), ["retainMetrics"])
    add("default-datasource-maybe", "grafana.defaultDatasource 'perhaps'",
        props({"grafana": {"defaultDatasource": "perhaps"}}), ["grafana.defaultDatasource"])
    add("cluster-string", "cluster is a string", props({"cluster": "chaos-eks"}), ["cluster"])
    add("extra-field", "an unknown property", props({"Tags": [{"Key": "a", "Value": "b"}]}), ["Tags"])
    add("extra-nested", "an unknown nested property", props({"amp": {"alias": "a", "kmsKeyArn": "x"}}),
        ["kmsKeyArn"])
    for id_, ns in NAMESPACE_ATTACKS:
        if id_ in ("star", "colon-star", "full-sub", "slash", "quote", "json-fragment", "policy-variable",
                   "comma-list", "uppercase", "oversized", "unicode-dash", "rtl-override", "empty", "too-long",
                   "newline"):
            add(f"namespace-{id_}", f"namespace {ns[:40]!r}", props({"namespace": ns}), ["namespace"])
    for id_, v in ACCOUNT_ATTACKS[:6]:
        add(f"target-{id_}", f"target.accountId {v!r}", props({"target": {"accountId": v}}), ["target.accountId"])
    add("region-unknown", "region us-east-7", props({"region": "us-east-7"}), ["region"])
    add("deployment-star", "deploymentName '*'", props({"deploymentName": "*"}), ["deploymentName"])
    add("deployment-oversized", "deploymentName of 100,000 characters", props({"deploymentName": LONG}),
        ["deploymentName"])
    add("ssm-prefix-aws", "ssmPrefix under /aws", props({"ssmPrefix": "/aws/x"}), ["ssmPrefix"])
    add("issuer-wildcard", "oidcIssuer with a wildcard host",
        props({"cluster": {"oidcIssuer": "https://*.example.com/id/X"}}), ["cluster.oidcIssuer"])
    add("providers-number", "authenticationProviders ['1']",
        props({"grafana": {"authenticationProviders": ["1"]}}), ["grafana.authenticationProviders[0]"])
    add("update-namespace-star", "an Update to namespace '*'", props({"namespace": "*"}), ["namespace"],
        request_type="Update")
    add("update-extra", "an Update with an unknown property", props({"evil": "1"}), ["evil"], request_type="Update")
    add("update-region", "an Update to an unknown region", props({"region": "mars-1"}), ["region"],
        request_type="Update")
    # ResponseURLs that are not CloudFormation's: never answered
    bad_ns = props({"namespace": "dr-core:*"})
    for id_, url in [
        ("url-http", "http://127.0.0.1:{SINK}/r"),
        ("url-foreign-https", "https://127.0.0.1:{SINK}/r"),
        ("url-fragment", "https://127.0.0.1:{SINK}#.s3.amazonaws.com/r"),
        ("url-fragment-path", "https://127.0.0.1:{SINK}/#/.amazonaws.com"),
        ("url-suffix-lookalike", "https://127.0.0.1.nip.io.evil:{SINK}/x.amazonaws.com"),
        ("url-userinfo", "https://s3.amazonaws.com@127.0.0.1:{SINK}/r"),
        # AWS hosts that are not CloudFormation's response bucket
        ("url-other-bucket", "https://attacker-bucket.s3.amazonaws.com/r?X-Amz-Signature=a"),
        ("url-other-region-bucket",
         "https://cloudformation-custom-resource-response-euwest1.s3.amazonaws.com/r?X-Amz-Signature=a"),
        ("url-ec2-host", "https://ec2-54-1-2-3.compute-1.amazonaws.com/r?X-Amz-Signature=a"),
        ("url-unsigned", "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/r"),
    ]:
        add(id_, f"ResponseURL {url}", bad_ns, ["ResponseURL"], response_url=url)
    return items


def vending_items() -> list[dict]:
    items = []
    acct = "210987654321"

    def add(id_, about, event, fields, raw=None, ignored=False):
        item = {"id": f"vending-{id_}", "entry": "vending", "about": about, "fields": fields}
        if raw is not None:
            item["raw"] = raw
        else:
            if isinstance(event, dict) and "source" not in event and "accountName" not in event:
                # the organisation's defaults name the cluster "{accountName}-eks": a plain request
                # carries the account name, so that the field under attack is the first one wrong
                event = dict(event, accountName="team-x")
            item["event"] = event
        if ignored:
            item["ignored"] = True
        items.append(item)

    def ct(account_id, account_name="team-x", state="SUCCEEDED", name="CreateManagedAccount"):
        key = "createManagedAccountStatus" if name == "CreateManagedAccount" else "updateManagedAccountStatus"
        return {"version": "0", "id": f"ev-{account_name}-{account_id}"[:60],
                "detail-type": "AWS Service Event via CloudTrail",
                "source": "aws.controltower", "account": "123456789012", "region": "us-east-1",
                "detail": {"eventName": name, "serviceEventDetails": {key: {
                    "account": {"accountName": account_name, "accountId": account_id},
                    "organizationalUnit": {"organizationalUnitName": "Sandbox", "organizationalUnitId": "ou-1"},
                    "state": state, "message": "AWS Control Tower successfully created an enrolled account."}}}}

    add("array", "the request is an array", None, ["(event)"], raw="[]")
    add("string", "the request is a string", None, ["(event)"], raw='"210987654321"')
    add("missing-account", "no accountId", {"region": "us-east-1", "accountName": "a"}, ["accountId"])
    add("account-number", "accountId is a number", {"accountId": 210987654321}, ["accountId"])
    for id_, v in ACCOUNT_ATTACKS:
        add(f"account-{id_}", f"accountId {v[:30]!r}", {"accountId": v}, ["accountId"])
    add("region-unknown", "region us-east-7", {"accountId": acct, "region": "us-east-7"}, ["region"])
    add("region-number", "region is a number", {"accountId": acct, "region": 1}, ["region"])
    for id_ in ("star", "colon-star", "slash", "json-fragment", "policy-variable", "uppercase", "rtl-override",
                "oversized"):
        ns = dict(NAMESPACE_ATTACKS)[id_]
        add(f"namespace-{id_}", f"namespace {ns[:40]!r}", {"accountId": acct, "namespace": ns}, ["namespace"])
    add("extra-field", "an unknown field", {"accountId": acct, "evil": True}, ["evil"])
    add("target-role-star", "target.roleName '*'", {"accountId": acct, "target": {"roleName": "*"}},
        ["target.roleName"])
    add("deployment-star", "deploymentName '*'", {"accountId": acct, "deploymentName": "*"}, ["deploymentName"])
    add("account-name-colon", "accountName that breaks the cluster name template",
        {"accountId": acct, "accountName": "team:*"}, ["cluster.name"])
    add("account-name-quote", "accountName with a quote and a JSON fragment",
        {"accountId": acct, "accountName": 'a","namespace":"*'}, ["cluster.name"])
    add("ct-account-short", "Control Tower event with an 11-digit account", ct("21098765432"), ["accountId"])
    add("ct-account-star", "Control Tower event with account '*'", ct("*"), ["accountId"])
    add("ct-account-number", "Control Tower event with a numeric account id", ct(210987654321), ["accountId"])
    add("ct-account-name-star", "Control Tower event whose account name breaks the cluster name",
        ct(acct, account_name="x*"), ["cluster.name"])
    add("ct-account-name-unicode", "Control Tower event whose account name is not ASCII",
        ct(acct, account_name="\u0442\u0435\u0441\u0442"), ["cluster.name"])
    return items


def main() -> None:
    for name, items in (("console", console_items()), ("cfn", cfn_items()), ("vending", vending_items())):
        ids = [i["id"] for i in items]
        assert len(ids) == len(set(ids)), f"duplicate ids in {name}"
        (HERE / f"{name}.json").write_text(json.dumps(items, indent=1, ensure_ascii=True) + "\n")
        print(f"{name}.json: {len(items)} items")


if __name__ == "__main__":
    main()
