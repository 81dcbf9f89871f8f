"""An inventory of the whole local account, read through the real APIs (boto3 against moto and the
Managed Grafana emulator), for the harnesses that check what a run left behind (chaos/chaos.py,
chaos/edits.py).

`snapshot(stack)` returns plain JSON-able data, keyed by name or id:

- `roles`: every IAM role: arn, id, trust policy (decoded), tags, attached managed policies (names)
  and inline policy names;
- `policies`: every customer managed policy: arn, default version and its document, the number of
  versions, tags, the roles, users and groups it is attached to;
- `amp`: every AMP workspace that is not DELETING/DELETED: alias, status, ARN, Prometheus endpoint,
  tags;
- `grafana`: every Managed Grafana workspace that is not DELETING/DELETED: name, status, workspace
  role ARN, tags, its data sources (the emulator's `/_emulator/datasources` dump of the Grafana
  HTTP API's state, secrets left out) and its ADMIN users and groups;
- `ssm`: every SSM parameter: type, tier, a SHA-256 of the value, tags, and the value itself for
  the short ones the oracle reads (ARNs, ids, helm values).

`deployment_view()` is chaos's per-deployment reading of a snapshot (what its duplicate and leak
checks count). `normalize()` and `decode_doc()` are the policy-document helpers both harnesses use.

Python 3 standard library plus boto3.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse

DEP_TAG = "o11y-provisioner:deployment"
GONE = ("DELETING", "DELETED")


def decode_doc(doc) -> dict:
    """An IAM policy document as IAM returns it (a dict, JSON text, or URL-encoded JSON text)."""
    if isinstance(doc, dict):
        return doc
    text = urllib.parse.unquote(doc) if doc.lstrip().startswith("%") else doc
    try:
        return json.loads(text)
    except ValueError:
        return json.loads(urllib.parse.unquote(doc))


def normalize(v):
    """A policy document up to what IAM ignores: key order, the order of statements and of values,
    and a one-element list versus its element."""
    if isinstance(v, dict):
        return {k: normalize(x) for k, x in sorted(v.items())}
    if isinstance(v, list):
        items = [normalize(x) for x in v]
        if len(items) == 1:
            return items[0]
        return sorted(items, key=lambda x: json.dumps(x, sort_keys=True))
    return v


def statements(doc: dict) -> list:
    """The statements of a policy document, always as a list."""
    st = (doc or {}).get("Statement", [])
    return st if isinstance(st, list) else [st]


def _tags(items) -> dict:
    return {t["Key"]: t["Value"] for t in items or []}


def _pages(client, op: str, key: str, **kw) -> list:
    out = []
    for page in client.get_paginator(op).paginate(**kw):
        out += page.get(key, [])
    return out


def iam_roles(stack) -> dict:
    roles = {}
    for r in _pages(stack.iam, "list_roles", "Roles"):
        name = r["RoleName"]
        full = stack.iam.get_role(RoleName=name)["Role"]
        attached = _pages(stack.iam, "list_attached_role_policies", "AttachedPolicies", RoleName=name)
        inline = _pages(stack.iam, "list_role_policies", "PolicyNames", RoleName=name)
        roles[name] = {
            "arn": full["Arn"], "id": full["RoleId"],
            "trust": decode_doc(full["AssumeRolePolicyDocument"]),
            "tags": _tags(stack.iam.list_role_tags(RoleName=name).get("Tags")),
            # moto counts a policy attached twice twice (README): kept as a list, not a set
            "attached": sorted(p["PolicyName"] for p in attached),
            "inline": sorted(inline),
        }
    return roles


def iam_policies(stack) -> dict:
    policies = {}
    for p in _pages(stack.iam, "list_policies", "Policies", Scope="Local"):
        arn = p["Arn"]
        default = p["DefaultVersionId"]
        doc = stack.iam.get_policy_version(PolicyArn=arn, VersionId=default)["PolicyVersion"]["Document"]
        versions = stack.iam.list_policy_versions(PolicyArn=arn)["Versions"]
        ents = stack.iam.list_entities_for_policy(PolicyArn=arn)
        policies[p["PolicyName"]] = {
            "arn": arn, "id": p["PolicyId"], "default_version": default, "document": decode_doc(doc),
            "versions": len(versions),
            "tags": _tags(stack.iam.list_policy_tags(PolicyArn=arn).get("Tags")),
            "roles": sorted(r["RoleName"] for r in ents.get("PolicyRoles", [])),
            "users": sorted(u["UserName"] for u in ents.get("PolicyUsers", [])),
            "groups": sorted(g["GroupName"] for g in ents.get("PolicyGroups", [])),
        }
    return policies


def amp_workspaces(stack) -> dict:
    out = {}
    for w in _pages(stack.amp, "list_workspaces", "workspaces"):
        status = (w.get("status") or {}).get("statusCode")
        if status in GONE:
            continue
        d = stack.amp.describe_workspace(workspaceId=w["workspaceId"])["workspace"]
        out[w["workspaceId"]] = {
            "alias": d.get("alias"), "status": status, "arn": d.get("arn"),
            "endpoint": d.get("prometheusEndpoint"), "tags": dict(d.get("tags") or {}),
        }
    return out


def grafana_workspaces(stack) -> dict:
    out = {}
    token = None
    summaries = []
    while True:
        page = stack.grafana.list_workspaces(**({"nextToken": token} if token else {}))
        summaries += page.get("workspaces", [])
        token = page.get("nextToken")
        if not token:
            break
    for s in summaries:
        if s.get("status") in GONE:
            continue
        w = stack.grafana.describe_workspace(workspaceId=s["id"])["workspace"]
        if w.get("status") in GONE:
            continue
        dss = stack.emulator("GET", f"/_emulator/datasources?workspaceId={s['id']}").get("datasources", [])
        admins = []
        try:
            perms = stack.grafana.list_permissions(workspaceId=s["id"]).get("permissions", [])
            admins = sorted(f"{p['user']['type']}:{p['user']['id']}" for p in perms if p.get("role") == "ADMIN")
        except Exception as e:  # noqa: BLE001
            admins = [f"error: {e}"]
        out[s["id"]] = {
            "name": w.get("name"), "status": w.get("status"), "role": w.get("workspaceRoleArn"),
            "tags": dict(w.get("tags") or {}), "admins": admins,
            "datasources": sorted(
                ({k: ds.get(k) for k in ("uid", "type", "url", "isDefault")}
                 | {"jsonData": {k: (ds.get("jsonData") or {}).get(k)
                                 for k in ("sigV4Auth", "sigV4AuthType", "sigV4Region", "httpMethod")}}
                 for ds in dss), key=lambda x: str(x.get("uid"))),
        }
    return out


# Values the oracle reads back (ARNs, ids, URLs, the helm values); the rest is compared by hash.
KEEP_VALUE_MAX = 4096


def ssm_parameters(stack, only: str | None = None) -> dict:
    out = {}
    filters = {"ParameterFilters": [{"Key": "Name", "Option": "Equals", "Values": [only]}]} if only else {}
    meta = _pages(stack.ssm, "describe_parameters", "Parameters", **filters)
    names = [m["Name"] for m in meta]
    values = {}
    for i in range(0, len(names), 10):
        for p in stack.ssm.get_parameters(Names=names[i:i + 10], WithDecryption=True)["Parameters"]:
            values[p["Name"]] = p["Value"]
    for m in meta:
        name = m["Name"]
        value = values.get(name, "")
        out[name] = {
            "type": m.get("Type"), "tier": m.get("Tier", "Standard"),
            "sha256": hashlib.sha256(value.encode()).hexdigest(),
            "tags": _tags(stack.ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)
                          .get("TagList")),
            "value": value if len(value) <= KEEP_VALUE_MAX else None,
        }
    return out


def ssm_parameter(stack, name: str) -> dict | None:
    """One parameter's entry, as in ssm_parameters()."""
    return ssm_parameters(stack, only=name).get(name)


def snapshot(stack) -> dict:
    """The whole account (see the module's docs)."""
    return {
        "roles": iam_roles(stack),
        "policies": iam_policies(stack),
        "amp": amp_workspaces(stack),
        "grafana": grafana_workspaces(stack),
        "ssm": ssm_parameters(stack),
    }


def deployment_view(snap: dict, d: str, irsa_role: str, namespace: str, ssm_prefix: str | None = None) -> dict:
    """What a snapshot holds for deployment `d` by its default names and its ownership tag: AMP and
    Grafana workspaces (by alias or name `d`, or the tag), roles and policies named `<d>-*`, the
    write policies on `irsa_role`, the Grafana role's attachments, the SSM names under
    `ssm_prefix` (default `/o11y/<d>`) and the number of trust statements on `irsa_role` for
    `namespace`'s service accounts."""
    prefix = ssm_prefix or f"/o11y/{d}"
    inv: dict = {}
    inv["amp"] = [i for i, w in snap["amp"].items() if w["alias"] == d or w["tags"].get(DEP_TAG) == d]
    inv["grafana"] = [(i, w["status"]) for i, w in snap["grafana"].items()
                      if w["name"] == d or w["tags"].get(DEP_TAG) == d]
    inv["roles"] = sorted(n for n in snap["roles"] if n.startswith(f"{d}-"))
    inv["policies"] = sorted(n for n in snap["policies"] if n.startswith(f"{d}-"))
    role = snap["roles"].get(irsa_role) or {"attached": [], "trust": {}}
    inv["irsa_attached"] = [p for p in role["attached"] if p.startswith(f"{d}-")]
    if f"{d}-grafana" in snap["roles"]:
        inv["grafana_role_attached"] = list(snap["roles"][f"{d}-grafana"]["attached"])
    inv["ssm"] = sorted(n for n in snap["ssm"] if n.startswith(prefix + "/"))
    # Our grants are Allow statements; a Deny of the role's owners naming the pattern is theirs.
    ours = [s for s in statements(role["trust"])
            if s.get("Effect") == "Allow" and f":{namespace}:observability-*" in json.dumps(s)]
    inv["trust_statements_ours"] = len(ours)
    inv["iam_tagged"] = sorted([r["arn"] for r in snap["roles"].values() if r["tags"].get(DEP_TAG) == d]
                               + [p["arn"] for p in snap["policies"].values() if p["tags"].get(DEP_TAG) == d])
    return inv
