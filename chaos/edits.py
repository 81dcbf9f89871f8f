"""The edit corpus: every input field changed on a converged deployment, alone, in pairs and back
and forth, deployments sharing an IRSA role, a namespace and a cluster, and foreign resources that
merely share a name; after every run, an inventory of the whole account (inventory.snapshot) is
compared with what an independent oracle says the live inputs imply.

The oracle does not call the product's code. From the inputs currently applied (`Edits.live`),
the AMP workspaces retained by deletes (`Edits.retained`) and the foreign baseline (the account as
it was before the phase, plus the foreign resources this phase seeds), it computes the *facts* the
account must hold for us: each deployment's own trust statement on its IRSA role (Sid
`O11yProvisionerIrsa…`, the cluster's OIDC provider, `system:serviceaccount:<ns>:observability-*`),
its write policy attached to the IRSA role and allowing `aps:RemoteWrite` on its AMP workspace and
the logs actions on its log group, its Grafana role trusted by `grafana.amazonaws.com` with the read
policy (`aps:QueryMetrics` on the workspace) attached, its AMP workspace (alias, ownership tag), its
Grafana workspace (name, role, ACTIVE, tag, one Prometheus data source on the workspace's endpoint,
the admins), its SSM parameters under `ssmPrefix` (exactly the published leaves, the record and
`verification`; ARNs and ids equal to the live ones; the helm values naming the role, the log group
and stream) and no lease. The snapshot's facts about everything that is not foreign are compared
with those: `orphans` = facts of ours not implied, `missing` = implied facts absent. Every foreign
resource is compared with its baseline byte for byte (trust documents without our Sid-prefixed
statements, policy versions and attachments, workspaces, parameter hashes, tiers and tags):
`foreign touched`. Names are always given explicitly in the inputs, so the oracle does not depend
on the product's default names. Orphans found are recorded, then removed by the harness (as an
operator would), so that each case is judged on its own.

CloudFormation's flows are cases too (`Edits.cloudformation`, requests to cfn-handler as
CloudFormation sends them): a Create that fails late leaves nothing; an Update that renames the
write policy and the alias, then fails, is rolled back by the Update with the old properties to
exactly the old deployment; a replacement creates the new one and the Delete of the old id removes
only the old one.

Region and target (account) changes are a hook (`REGION_EDITS`): the oracle keys nothing by region
yet; a second region needs its own clients in `inventory.snapshot`.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import time

from inventory import DEP_TAG, amp_workspaces, normalize, snapshot, ssm_parameter, statements
from stack import ACCOUNT_ID, REGION, execution_arn

SID_PREFIX = "O11yProvisionerIrsa"
CLUSTERS = ("edits-eks-a", "edits-eks-b")
IRSA_ROLES = ("edits-irsa-1", "edits-irsa-2")
# The tag by which a role's owners opt it in: the IRSA roles and the team's Grafana role carry it.
OPT_IN = {"Key": "o11y-provisioner:irsa", "Value": "true"}
NAMESPACES = ("edits-a", "edits-b")
# Identity Center ids in the emulator's accepted formats
ADMIN_USER = "906757b8-a0b1-40e5-b2a3-7f6c2d1e0a9b"
ADMIN_GROUP = "1234567890-4a5b6c7d-1111-4222-8333-944445555666"
OUTPUT_LEAVES = (
    "irsa-role-arn", "amp-workspace-id", "amp-workspace-arn", "prometheus-endpoint", "remote-write-url",
    "write-policy-arn", "grafana-role-arn", "read-policy-arn", "grafana-workspace-id", "grafana-url",
    "helm-values",
)
OWN_LEAVES = OUTPUT_LEAVES + ("provisioner-state", "verification")
# Another helper's deployment registry and prefix-independent leases (issue 14): an entry per
# live deployment is allowed, nothing else there.
REGISTRY = re.compile(r"^/o11y-provisioner/deployments/(.+)$")
# The foreign set: what another team owns and merely shares a name with what an input names.
# Foreign names inside the stack's default name patterns (WritePolicyNamePattern, ...): a name
# outside them is a ValidationError before any call, which is not what these cases are about.
FOREIGN_POLICY = "edits-team-x-observability-write"
FOREIGN_READ_POLICY = "edits-team-x-grafana-amp-read"
FOREIGN_ROLE = "edits-team-x-grafana"
FOREIGN_ALIAS = "edits-team-x-metrics"
FOREIGN_LEAF = "team-x-note"  # a foreign parameter under every deployment's ssmPrefix
FOREIGN_APP_POLICY = "edits-app-s3-read"  # the application's own policy on the IRSA role
# Region and account changes (another helper's design): add ("region", fn) / ("target", fn)
# entries here once the stack serves a second region; the oracle then needs snapshots per region.
REGION_EDITS: list = []


CFN_BUCKET = "cfn-responses"  # the chaos stack's response bucket (chaos.py seeds it)
CFN_TOKEN = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:cfn-handler"
CFN_STACK = f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/edits/0e0d0000-1111-2222-3333-444455556666"
UNKNOWN_SSO_PREFIX = "ffffffff"  # IAM Identity Center ids the emulator answers as unknown (a late failure)


def cfn_properties(inp: dict) -> dict:
    """`inp` as CloudFormation delivers a custom resource's properties: every scalar a string."""
    def text(v):
        if isinstance(v, dict):
            return {k: text(x) for k, x in v.items()}
        if isinstance(v, list):
            return [text(x) for x in v]
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)
    return dict(text(inp), ServiceToken=CFN_TOKEN)


def base_input(d: str) -> dict:
    return {
        "deploymentName": d, "cluster": {"name": CLUSTERS[0]}, "namespace": NAMESPACES[0],
        "irsaRoleName": IRSA_ROLES[0], "amp": {"alias": f"{d}-amp"}, "writePolicyName": f"{d}-observability-write",
        "grafana": {"workspaceName": f"{d}-graf", "roleName": f"{d}-grafana", "readPolicyName": f"{d}-grafana-amp-read"},
        "logs": {"groupName": f"/{d}/obs", "streamName": "collector"}, "ssmPrefix": f"/o11y/edits/{d}",
    }


def _set(path: str, value):
    def edit(inp: dict) -> None:
        *parents, leaf = path.split(".")
        node = inp
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value(inp["deploymentName"]) if callable(value) else value
    return edit


# Each field that names or places a resource, and its second value (the first is base_input's).
EDITS = {
    "namespace": _set("namespace", NAMESPACES[1]),
    "irsaRoleName": _set("irsaRoleName", IRSA_ROLES[1]),
    "cluster": _set("cluster", {"name": CLUSTERS[1]}),
    "amp.alias": _set("amp.alias", lambda d: f"{d}-amp2"),
    "writePolicyName": _set("writePolicyName", lambda d: f"{d}-2-observability-write"),
    "grafana.workspaceName": _set("grafana.workspaceName", lambda d: f"{d}-graf2"),
    "grafana.roleName": _set("grafana.roleName", lambda d: f"{d}-2-grafana"),
    "grafana.readPolicyName": _set("grafana.readPolicyName", lambda d: f"{d}-2-grafana-amp-read"),
    "grafana.admins": _set("grafana.admins", {"users": [ADMIN_USER], "groups": [ADMIN_GROUP]}),
    "logs.groupName": _set("logs.groupName", lambda d: f"/{d}/obs2"),
    "logs.streamName": _set("logs.streamName", "collector2"),
    "ssmPrefix": _set("ssmPrefix", lambda d: f"/o11y/edits/{d}-2"),
    "verify": _set("verify", "warn"),
}
# The quick run's sample of pairs (CI); it also runs every field alone and back.
QUICK_PAIRS = (("cluster", "grafana.readPolicyName"), ("namespace", "irsaRoleName"),
               ("ssmPrefix", "amp.alias"))
# Fields the quick run does not edit alone (the full run does): no resource moves with them.
QUICK_SKIP = ("logs.streamName", "verify")


def edited(inp: dict, *fields: str) -> dict:
    out = copy.deepcopy(inp)
    for f in fields:
        EDITS[f](out)
    return out


def reverted(inp: dict, field: str, base: dict) -> dict:
    """`inp` with `field` back to its value in `base` (or absent, as there)."""
    out = copy.deepcopy(inp)
    *parents, leaf = field.split(".")
    node, bnode = out, base
    for p in parents:
        node, bnode = node.setdefault(p, {}), bnode.get(p, {})
    if leaf in bnode:
        node[leaf] = copy.deepcopy(bnode[leaf])
    else:
        node.pop(leaf, None)
    return out


def iam_name(arn: str | None) -> str:
    return (arn or "").rsplit("/", 1)[-1]


def as_list(v) -> list:
    return v if isinstance(v, list) else [v]


def grafana_trusted(st: dict) -> bool:
    return "grafana.amazonaws.com" in as_list((st.get("Principal") or {}).get("Service", []))


def grant_of(st: dict) -> str:
    """A Sid-prefixed trust statement as `<provider arn>|<namespace>|aud`, or its JSON when it does
    not have our shape."""
    fed = (st.get("Principal") or {}).get("Federated")
    cond = st.get("Condition") or {}
    like = {k.lower(): v for k, v in (cond.get("StringLike") or {}).items()}
    eq = {k.lower(): v for k, v in (cond.get("StringEquals") or {}).items()}
    subs = [v for k, v in like.items() if k.endswith(":sub")]
    auds = [v for k, v in {**like, **eq}.items() if k.endswith(":aud")]
    m = re.fullmatch(r"system:serviceaccount:([^:]+):observability-\*", str(subs[0])) if len(subs) == 1 else None
    if st.get("Effect") == "Allow" and isinstance(fed, str) and m and auds == ["sts.amazonaws.com"] \
            and as_list(st.get("Action")) == ["sts:AssumeRoleWithWebIdentity"]:
        return f"{fed}|{m.group(1)}"
    return "odd:" + json.dumps(st, sort_keys=True)


def policy_facts(name: str, doc: dict) -> set:
    facts = set()
    for st in statements(doc):
        if st.get("Effect") != "Allow":
            continue
        actions = as_list(st.get("Action", []))
        resources = as_list(st.get("Resource", []))
        for r in resources:
            if "aps:RemoteWrite" in actions:
                facts.add(f"policy:{name}:remote-write:{r}")
            if "aps:QueryMetrics" in actions:
                facts.add(f"policy:{name}:query:{r}")
            if any(a.startswith("logs:") for a in actions):
                m = re.search(r":log-group:([^:*]+)", r)
                if m:
                    facts.add(f"policy:{name}:logs:{m.group(1)}")
    return facts


HELM_KEYS = {"roleArn": "role", "log_group_name": "group", "log_stream_name": "stream", "endpoint": "endpoint"}


def helm_facts(name: str, text: str) -> set:
    facts = set()
    for key, short in HELM_KEYS.items():
        for m in re.finditer(rf"^\s*{key}:\s*(\S+)\s*$", text or "", re.M):
            facts.add(f"ssm:{name}:helm:{short}={m.group(1)}")
    return facts


TRANSITIONAL = ("CREATING", "UPDATING", "UPGRADING", "VERSION_UPDATING")
VALUE_LEAVES = ("irsa-role-arn", "amp-workspace-id", "write-policy-arn", "grafana-role-arn", "read-policy-arn",
                "grafana-workspace-id")


class Edits:
    """The phase's state: the live inputs, the retained AMP aliases, the foreign baseline and the
    figures (`res.figures["edits_*"]`)."""

    def __init__(self, stack, res, quick: bool):
        self.stack, self.res, self.quick = stack, res, quick
        self.live: dict[str, dict] = {}
        self.retained: list[str] = []  # AMP aliases kept by a delete (retainMetrics default)
        self.runs = 0
        self.gen = 0
        self.findings: list[dict] = []
        self.providers: dict[str, str] = {}
        self.baseline: dict = {}
        for k in ("edits_cases", "edits_runs", "edits_failed_runs", "edits_orphans", "edits_missing",
                  "edits_foreign_touched", "edits_cases_failed"):
            res.figures.setdefault(k, 0)

    # --- the user's side and the foreign set ---------------------------------------------------
    def seed(self) -> None:
        s = self.stack
        for c in CLUSTERS:
            try:
                cl = s.eks.create_cluster(name=c, roleArn=f"arn:aws:iam::{self.account}:role/eks-cluster",
                                          resourcesVpcConfig={"subnetIds": ["subnet-1"]})["cluster"]
            except s.eks.exceptions.ResourceInUseException:
                cl = s.eks.describe_cluster(name=c)["cluster"]
            issuer = cl["identity"]["oidc"]["issuer"]
            host = issuer.removeprefix("https://").rstrip("/")
            try:
                arn = s.iam.create_open_id_connect_provider(
                    Url=issuer, ClientIDList=["sts.amazonaws.com"],
                    ThumbprintList=["9e99a48a9960b14926bb7f3b02e22da2b0ab7280"])["OpenIDConnectProviderArn"]
            except s.iam.exceptions.EntityAlreadyExistsException:
                arn = f"arn:aws:iam::{self.account}:oidc-provider/{host}"
            self.providers[c] = arn
        app = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::edits-app/*"}]}
        app_arn = self._policy(FOREIGN_APP_POLICY, app)
        for i, role in enumerate(IRSA_ROLES):
            trust = {"Version": "2012-10-17", "Statement": []}
            for c in CLUSTERS[: i + 1]:  # role 1 trusts cluster a's app, role 2 both clusters' apps
                host = self.providers[c].split("oidc-provider/", 1)[1]
                trust["Statement"].append({
                    "Effect": "Allow", "Principal": {"Federated": self.providers[c]},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {"StringEquals": {f"{host}:sub": f"system:serviceaccount:{NAMESPACES[0]}:app",
                                                   f"{host}:aud": "sts.amazonaws.com"}}})
            self._role(role, trust, [{"Key": "team", "Value": "app"}, OPT_IN])
            on = s.iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
            if not any(p["PolicyArn"] == app_arn for p in on):  # moto counts a double attach twice
                s.iam.attach_role_policy(RoleName=role, PolicyArn=app_arn)
        for name in (FOREIGN_POLICY, FOREIGN_READ_POLICY):
            self._policy(name, {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::team-x-data/*"}]})
        self._role(FOREIGN_ROLE, {"Version": "2012-10-17", "Statement": [
            {"Sid": "TeamX", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
             "Action": "sts:AssumeRole"},
            {"Effect": "Allow", "Principal": {"Service": "grafana.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
            [{"Key": "team", "Value": "x"}, OPT_IN])
        if not any(w.get("alias") == FOREIGN_ALIAS for w in s.amp.list_workspaces().get("workspaces", [])):
            s.amp.create_workspace(alias=FOREIGN_ALIAS, tags={"team": "x"})
        self.baseline = snapshot(s)

    account = ACCOUNT_ID

    def _policy(self, name: str, doc: dict) -> str:
        try:
            return self.stack.iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(doc))["Policy"]["Arn"]
        except self.stack.iam.exceptions.EntityAlreadyExistsException:
            return f"arn:aws:iam::{self.account}:policy/{name}"

    def _role(self, name: str, trust: dict, tags: list) -> None:
        try:
            self.stack.iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust), Tags=tags)
        except self.stack.iam.exceptions.EntityAlreadyExistsException:
            self.stack.iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))

    def foreign_param(self, prefix: str) -> None:
        """A parameter of another team under `prefix`, before our first run there."""
        name = f"{prefix}/{FOREIGN_LEAF}"
        if name in self.baseline["ssm"]:
            return
        self.stack.ssm.put_parameter(Name=name, Type="String", Value=f"not ours: {prefix}",
                                     Tags=[{"Key": "team", "Value": "x"}])
        self.baseline["ssm"][name] = ssm_parameter(self.stack, name)

    # --- runs ----------------------------------------------------------------------------------
    def new_name(self, stem: str) -> str:
        self.gen += 1
        return f"ed{self.gen}{stem}"

    def run(self, label: str, payload: dict):
        self.runs += 1
        self.res.add("edits_runs")
        name = f"ed{self.runs:03d}-{re.sub(r'[^A-Za-z0-9-]', '-', label)}"[:80]
        t0 = time.time()
        ex = self.stack.run_execution(name, payload, timeout=900)
        self.log(f"{label}: {ex.status} {ex.error or ''} ({time.time() - t0:.0f} s)")
        return ex

    def log(self, msg: str) -> None:
        import sys
        print(f"[edits {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def apply(self, label: str, inp: dict, expect_conflict: bool = False) -> bool:
        """Runs `inp` and records the case; True when the run did what it should (converged, or
        was refused with ConflictError when `expect_conflict`), whatever the inventory found."""
        d = inp["deploymentName"]
        for prefix in {inp.get("ssmPrefix", f"/o11y/{d}")}:
            self.foreign_param(prefix)
        ex = self.run(label, inp)
        ok = True
        run_problem = None
        if expect_conflict:
            text = f"{ex.error} {ex.cause}"
            if ex.status == "SUCCEEDED":
                ok, run_problem = False, "accepted a foreign resource it should have refused"
                self.live[d] = inp
            elif ex.error != "ConflictError":
                ok, run_problem = False, f"failed with {ex.error}, expected ConflictError: {text[:400]}"
        elif ex.status == "SUCCEEDED":
            self.live[d] = inp
        else:
            ok, run_problem = False, f"{ex.status} {ex.error}: {(ex.cause or '')[:600]}"
        if not ok:
            self.res.add("edits_failed_runs")
        self.check(label, run_problem)
        return ok

    def delete(self, label: str, d: str, retain: bool = False) -> bool:
        inp = dict(self.live.get(d) or {}, action="delete")
        if not retain:
            inp["retainMetrics"] = False
        ex = self.run(label, inp)
        problem = None
        if ex.status == "SUCCEEDED":
            old = self.live.pop(d, None) or {}
            alias = (old.get("amp") or {}).get("alias")
            if retain and alias and alias != FOREIGN_ALIAS:
                self.retained.append(alias)
        else:
            self.res.add("edits_failed_runs")
            problem = f"{ex.status} {ex.error}: {(ex.cause or '')[:600]}"
            self.live.pop(d, None)  # what it leaves is an orphan now
        self.check(label, problem)
        return problem is None

    def plan_none(self, label: str, d: str) -> bool:
        """A plan of a live deployment reports `none` for every step (nothing it relies on is gone)."""
        ex = self.run(label, dict(self.live[d], action="plan"))
        changed = []
        if ex.status == "SUCCEEDED" and isinstance(ex.output, dict):
            changed = [(s.get("step"), s.get("action")) for s in ex.output.get("steps", []) if s.get("action") != "none"]
        problem = None if ex.status == "SUCCEEDED" and not changed else \
            f"plan of {d}: {ex.status} {ex.error or ''} {changed or (ex.cause or '')[:400]}"
        self.res.add("edits_cases")
        if problem:
            self.res.add("edits_cases_failed")
            self.findings.append({"case": label, "run": problem})
            self.res.violation("edits", f"{label}: {problem}")
        return problem is None

    # --- the oracle ----------------------------------------------------------------------------
    def amp_by_alias(self, snap: dict, alias: str) -> dict:
        hits = [w for w in snap["amp"].values() if w["alias"] == alias]
        return hits[0] if len(hits) == 1 else {"arn": f"<{len(hits)} AMP workspaces {alias}>",
                                               "endpoint": f"<{len(hits)} AMP workspaces {alias}>", "id": None}

    def expected(self, snap: dict) -> tuple[dict, set]:
        """(facts implied by the live inputs with their counts, facts tolerated either way)."""
        from collections import Counter
        exp: Counter = Counter()
        tolerated: set = set()
        acct = self.account
        for d, inp in self.live.items():
            g = inp.get("grafana") or {}
            irsa, wp, rp = inp["irsaRoleName"], inp["writePolicyName"], g["readPolicyName"]
            grole, gname, alias = g["roleName"], g["workspaceName"], inp["amp"]["alias"]
            prefix = inp["ssmPrefix"]
            provider = self.providers[inp["cluster"]["name"]]
            ws = self.amp_by_alias(snap, alias)
            ws_id = next((i for i, w in snap["amp"].items() if w["alias"] == alias), None)
            exp[f"grant:{irsa}:{provider}|{inp['namespace']}"] += 1
            exp[f"role:{irsa}:attached:{wp}"] += 1
            for f in (f"policy:{wp}", f"policy:{wp}:tag:{d}", f"policy:{wp}:remote-write:{ws['arn']}",
                      f"policy:{wp}:logs:{inp['logs']['groupName']}",
                      f"policy:{rp}", f"policy:{rp}:tag:{d}", f"policy:{rp}:query:{ws['arn']}",
                      f"role:{grole}:attached:{rp}"):
                exp[f] += 1
            if grole != FOREIGN_ROLE:
                for f in (f"role:{grole}", f"role:{grole}:tag:{d}", f"role:{grole}:trust:grafana"):
                    exp[f] += 1
            if alias != FOREIGN_ALIAS:
                exp[f"amp:{alias}"] += 1
                exp[f"amp:{alias}:tag:{d}"] += 1
            exp[f"grafana:{gname}"] += 1
            exp[f"grafana:{gname}:tag:{d}"] += 1
            exp[f"grafana:{gname}:role:{grole}"] += 1
            exp[f"grafana:{gname}:datasource:prometheus:{(ws['endpoint'] or '').rstrip('/')}:ec2_iam_role:"
                f"{inp.get('region', REGION)}:POST"] += 1
            admins = g.get("admins") or {}
            for u in admins.get("users", []):
                exp[f"grafana:{gname}:admin:SSO_USER:{u}"] += 1
            for u in admins.get("groups", []):
                exp[f"grafana:{gname}:admin:SSO_GROUP:{u}"] += 1
            for leaf in OWN_LEAVES:
                exp[f"ssm:{prefix}/{leaf}"] += 1
            gws = next((i for i, w in snap["grafana"].items() if w["name"] == gname), None)
            values = {
                "irsa-role-arn": f"arn:aws:iam::{acct}:role/{irsa}", "amp-workspace-id": ws_id,
                "write-policy-arn": f"arn:aws:iam::{acct}:policy/{wp}",
                "grafana-role-arn": f"arn:aws:iam::{acct}:role/{grole}",
                "read-policy-arn": f"arn:aws:iam::{acct}:policy/{rp}", "grafana-workspace-id": gws,
            }
            for leaf, v in values.items():
                exp[f"ssm:{prefix}/{leaf}={v}"] += 1
            for short, v in (("role", f"arn:aws:iam::{acct}:role/{irsa}"), ("group", inp["logs"]["groupName"]),
                             ("stream", inp["logs"]["streamName"]),
                             ("endpoint", (ws["endpoint"] or "") + "api/v1/remote_write")):
                exp[f"ssm:{prefix}/helm-values:helm:{short}={v}"] += 1
            tolerated.add(f"registry:{d}")
        for alias in self.retained:
            # retained: kept with its data; whether it keeps our tags is the product's to say
            exp[f"amp:{alias}"] += 1
            tolerated.add(f"amp:{alias}:tag:")
        return exp, tolerated

    def actual(self, snap: dict) -> tuple[dict, list]:
        """(facts of ours in the snapshot with their counts, foreign resources changed)."""
        from collections import Counter
        facts: Counter = Counter()
        touched: list = []
        base = self.baseline
        adopted_roles = {(i.get("grafana") or {}).get("roleName") for i in self.live.values()}
        for name, r in snap["roles"].items():
            b = base["roles"].get(name)
            theirs = [s for s in statements(r["trust"]) if not str(s.get("Sid", "")).startswith(SID_PREFIX)]
            for s in statements(r["trust"]):
                if str(s.get("Sid", "")).startswith(SID_PREFIX):
                    facts[f"grant:{name}:{grant_of(s)}"] += 1
            if b is None:
                facts[f"role:{name}"] += 1
                if DEP_TAG in r["tags"]:
                    facts[f"role:{name}:tag:{r['tags'][DEP_TAG]}"] += 1
                for s in theirs:
                    facts[f"role:{name}:trust:" + ("grafana" if grafana_trusted(s) else json.dumps(s, sort_keys=True))] += 1
                for p in r["attached"]:
                    facts[f"role:{name}:attached:{p}"] += 1
                continue
            b_theirs = [s for s in statements(b["trust"]) if not str(s.get("Sid", "")).startswith(SID_PREFIX)]
            if name in adopted_roles:
                # adopted: what it allowed before stays, and a grafana statement of ours may be added
                lost = [s for s in b_theirs if normalize(s) not in [normalize(x) for x in theirs]]
                extra = [s for s in theirs if normalize(s) not in [normalize(x) for x in b_theirs]
                         and not grafana_trusted(s)]
                if lost or extra:
                    touched.append({"role": name, "trust lost": lost, "trust added": extra})
            elif normalize(theirs) != normalize(b_theirs):
                touched.append({"role": name, "trust before": b_theirs, "trust now": theirs})
            if r["tags"] != b["tags"]:
                touched.append({"role": name, "tags before": b["tags"], "tags now": r["tags"]})
            if r["id"] != b["id"]:
                touched.append({"role": name, "recreated": [b["id"], r["id"]]})
            if r["inline"] != b["inline"]:
                touched.append({"role": name, "inline before": b["inline"], "inline now": r["inline"]})
            before = list(b["attached"])
            for p in r["attached"]:
                if p in before:
                    before.remove(p)
                elif p in base["policies"]:
                    touched.append({"role": name, "foreign policy attached": p})
                else:
                    facts[f"role:{name}:attached:{p}"] += 1
            if before:
                touched.append({"role": name, "detached": before})
        for name, b in base["roles"].items():
            if name not in snap["roles"]:
                touched.append({"role": name, "deleted": True})
        for name, p in snap["policies"].items():
            b = base["policies"].get(name)
            if b is None:
                facts[f"policy:{name}"] += 1
                if DEP_TAG in p["tags"]:
                    facts[f"policy:{name}:tag:{p['tags'][DEP_TAG]}"] += 1
                for f in policy_facts(name, p["document"]):
                    facts[f] += 1
                continue
            for k in ("id", "default_version", "versions", "tags", "users", "groups"):
                if p[k] != b[k]:
                    touched.append({"policy": name, k: [b[k], p[k]]})
            if normalize(p["document"]) != normalize(b["document"]):
                touched.append({"policy": name, "document before": b["document"], "document now": p["document"]})
            if p["roles"] != b["roles"]:
                touched.append({"policy": name, "attached before": b["roles"], "attached now": p["roles"]})
        for name in base["policies"]:
            if name not in snap["policies"]:
                touched.append({"policy": name, "deleted": True})
        for wid, w in snap["amp"].items():
            b = base["amp"].get(wid)
            if b is None:
                facts[f"amp:{w['alias']}"] += 1
                if DEP_TAG in w["tags"]:
                    facts[f"amp:{w['alias']}:tag:{w['tags'][DEP_TAG]}"] += 1
                if w["status"] != "ACTIVE":
                    facts[f"amp:{w['alias']}:status:{w['status']}"] += 1
                continue
            for k in ("alias", "tags", "status"):
                if w[k] != b[k]:
                    touched.append({"amp": wid, "alias": b["alias"], k: [b[k], w[k]]})
        for wid, b in base["amp"].items():
            if wid not in snap["amp"]:
                touched.append({"amp": wid, "alias": b["alias"], "deleted": True})
        for wid, w in snap["grafana"].items():
            b = base["grafana"].get(wid)
            if b is None:
                n = w["name"]
                facts[f"grafana:{n}"] += 1
                if DEP_TAG in w["tags"]:
                    facts[f"grafana:{n}:tag:{w['tags'][DEP_TAG]}"] += 1
                facts[f"grafana:{n}:role:{iam_name(w['role'])}"] += 1
                if w["status"] != "ACTIVE":
                    facts[f"grafana:{n}:status:{w['status']}"] += 1
                for ds in w["datasources"]:
                    j = ds["jsonData"]
                    t = "prometheus" if ds["type"] in ("prometheus", "grafana-amazonprometheus-datasource") else ds["type"]
                    facts[f"grafana:{n}:datasource:{t}:{(ds['url'] or '').rstrip('/')}:{j.get('sigV4AuthType')}:"
                          f"{j.get('sigV4Region')}:{j.get('httpMethod')}"] += 1
                for a in w["admins"]:
                    facts[f"grafana:{n}:admin:{a}"] += 1
                continue
            for k in ("name", "status", "role", "tags", "datasources", "admins"):
                if w[k] != b[k]:
                    touched.append({"grafana": wid, "name": b["name"], k: [b[k], w[k]]})
        for wid, b in base["grafana"].items():
            if wid not in snap["grafana"]:
                touched.append({"grafana": wid, "name": b["name"], "deleted": True})
        for name, p in snap["ssm"].items():
            b = base["ssm"].get(name)
            if b is None:
                m = REGISTRY.match(name)
                if m:
                    facts[f"registry:{m.group(1)}"] += 1
                elif name.startswith("/o11y-provisioner/cfn-requests/"):
                    facts[f"cfn-request:{name}"] += 1
                elif name.endswith("/lease") or name.startswith("/o11y-provisioner/leases/"):
                    facts[f"lease:{name}"] += 1
                else:
                    facts[f"ssm:{name}"] += 1
                    leaf = name.rsplit("/", 1)[-1]
                    if leaf in VALUE_LEAVES:
                        facts[f"ssm:{name}={p['value']}"] += 1
                    if leaf == "helm-values":
                        for f in helm_facts(name, p["value"]):
                            facts[f] += 1
                continue
            for k in ("sha256", "tier", "type", "tags"):
                if p[k] != b[k]:
                    touched.append({"parameter": name, k: [b[k], p[k]]})
        for name in base["ssm"]:
            if name not in snap["ssm"]:
                touched.append({"parameter": name, "deleted": True})
        return facts, touched

    def check(self, label: str, run_problem: str | None = None) -> bool:
        """One case: the inventory against the oracle; records it, then removes the orphans."""
        snap = self.settled()
        exp, tolerated = self.expected(snap)
        act, touched = self.actual(snap)
        def judged(f: str) -> bool:
            return f not in tolerated and not any(f.startswith(t) for t in tolerated if t.endswith(":"))
        orphans = sorted(f for f in (act - exp) if judged(f))
        missing = sorted(f for f in (exp - act) if judged(f))
        self.res.add("edits_cases")
        self.res.add("edits_orphans", len(orphans))
        self.res.add("edits_missing", len(missing))
        self.res.add("edits_foreign_touched", len(touched))
        bad = bool(orphans or missing or touched or run_problem)
        if bad:
            self.res.add("edits_cases_failed")
            finding = {"case": label, "live": sorted(self.live), "run": run_problem, "orphans": orphans,
                       "missing": missing, "foreign touched": touched}
            self.findings.append(finding)
            self.res.violation("edits", f"{label}: {len(orphans)} orphans, {len(missing)} missing, "
                               f"{len(touched)} foreign touched" + (f"; run {run_problem}" if run_problem else ""),
                               {k: v for k, v in finding.items() if v and k not in ("case",)})
        if touched:
            self.rebaseline(snap, touched)
        if orphans:
            self.reap(snap, orphans)
        return not bad

    def settled(self, budget: float = 20.0) -> dict:
        """A snapshot once no workspace of ours is CREATING or UPDATING (the emulator takes a
        second), or after `budget` seconds: the steady state is what is judged."""
        deadline = time.time() + budget
        while True:
            snap = snapshot(self.stack)
            moving = [w for k in ("amp", "grafana") for i, w in snap[k].items()
                      if i not in self.baseline[k] and w["status"] in TRANSITIONAL]
            if not moving or time.time() > deadline:
                return snap
            time.sleep(1.0)

    def rebaseline(self, snap: dict, touched: list) -> None:
        """A foreign change is reported once: a foreign trust policy is put back as it was (our
        Sid-prefixed statements kept: they are judged as grants), anything else's baseline becomes
        what it is now."""
        for t in touched:
            if "role" in t and ("trust now" in t or "trust lost" in t) and t["role"] in snap["roles"]:
                name = t["role"]
                ours = [st for st in statements(snap["roles"][name]["trust"])
                        if str(st.get("Sid", "")).startswith(SID_PREFIX)]
                theirs = [st for st in statements(self.baseline["roles"][name]["trust"])
                          if not str(st.get("Sid", "")).startswith(SID_PREFIX)]
                doc = dict(self.baseline["roles"][name]["trust"], Statement=theirs + ours)
                self.stack.iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(doc))
                continue
            for kind, key in (("role", "roles"), ("policy", "policies"), ("amp", "amp"), ("grafana", "grafana"),
                              ("parameter", "ssm")):
                if kind in t:
                    name = t[kind]
                    if name in snap[key]:
                        entry = copy.deepcopy(snap[key][name])
                        if key == "roles":  # our attachments stay ours; the trust is put back above
                            entry["attached"] = [p for p in entry["attached"] if p in self.baseline["policies"]]
                            if name in self.baseline["roles"]:
                                entry["trust"] = self.baseline["roles"][name]["trust"]
                        self.baseline[key][name] = entry
                    else:
                        self.baseline[key].pop(name, None)

    # --- orphans removed, as an operator would ---------------------------------------------
    def reap(self, snap: dict, orphans: list) -> None:
        iam, s = self.stack.iam, self.stack
        acct = self.account
        for f in orphans:
            try:
                if f.startswith("grant:"):
                    role = f.split(":", 2)[1]
                    want = f.split(":", 2)[2]
                    exp_left = sum(1 for o in orphans if o == f)
                    trust = snap["roles"][role]["trust"]
                    kept, dropped = [], 0
                    for st in statements(trust):
                        if str(st.get("Sid", "")).startswith(SID_PREFIX) and grant_of(st) == want and dropped < exp_left:
                            dropped += 1
                            continue
                        kept.append(st)
                    iam.update_assume_role_policy(RoleName=role, PolicyDocument=json.dumps(dict(trust, Statement=kept)))
                    snap["roles"][role]["trust"] = dict(trust, Statement=kept)
                elif re.fullmatch(r"role:[^:]+:attached:[^:]+", f):
                    _, role, _, pol = f.split(":")
                    iam.detach_role_policy(RoleName=role, PolicyArn=f"arn:aws:iam::{acct}:policy/{pol}")
                elif re.fullmatch(r"role:[^:]+", f):
                    role = f.split(":")[1]
                    for p in snap["roles"][role]["attached"]:
                        try:
                            iam.detach_role_policy(RoleName=role, PolicyArn=f"arn:aws:iam::{acct}:policy/{p}")
                        except Exception:  # noqa: BLE001
                            pass
                    for p in snap["roles"][role]["inline"]:
                        iam.delete_role_policy(RoleName=role, PolicyName=p)
                    iam.delete_role(RoleName=role)
                elif re.fullmatch(r"policy:[^:]+", f):
                    pol = f.split(":")[1]
                    arn = snap["policies"][pol]["arn"]
                    for r in snap["policies"][pol]["roles"]:
                        try:
                            iam.detach_role_policy(RoleName=r, PolicyArn=arn)
                        except Exception:  # noqa: BLE001
                            pass
                    for v in iam.list_policy_versions(PolicyArn=arn)["Versions"]:
                        if not v["IsDefaultVersion"]:
                            iam.delete_policy_version(PolicyArn=arn, VersionId=v["VersionId"])
                    iam.delete_policy(PolicyArn=arn)
                elif re.fullmatch(r"amp:[^:]+", f):
                    alias = f.split(":", 1)[1]
                    for wid, w in snap["amp"].items():
                        if w["alias"] == alias and wid not in self.baseline["amp"]:
                            s.amp.delete_workspace(workspaceId=wid)
                            break
                elif re.fullmatch(r"grafana:[^:]+", f):
                    name = f.split(":", 1)[1]
                    for wid, w in snap["grafana"].items():
                        if w["name"] == name and wid not in self.baseline["grafana"]:
                            s.grafana.delete_workspace(workspaceId=wid)
                            break
                elif f.startswith("grafana:") and ":admin:" in f:
                    _, name, _, utype, uid = f.split(":", 4)
                    for wid, w in snap["grafana"].items():
                        if w["name"] == name:
                            s.grafana.update_permissions(workspaceId=wid, updateInstructionBatch=[
                                {"action": "REVOKE", "role": "ADMIN", "users": [{"id": uid, "type": utype}]}])
                elif f.startswith("ssm:") and "=" not in f and ":helm:" not in f:
                    s.ssm.delete_parameter(Name=f[4:])
                elif f.startswith("lease:"):
                    s.ssm.delete_parameter(Name=f[6:])
                elif f.startswith("registry:"):
                    s.ssm.delete_parameter(Name=f"/o11y-provisioner/deployments/{f[9:]}")
            except Exception as e:  # noqa: BLE001
                self.log(f"reap {f}: {e!r}")

    def drop_retained(self) -> None:
        """The customer deletes the AMP workspaces a delete retained (their data is theirs)."""
        for wid, w in self.stack_amp().items():
            if w["alias"] in self.retained and wid not in self.baseline["amp"]:
                self.stack.amp.delete_workspace(workspaceId=wid)
        self.retained.clear()

    def stack_amp(self) -> dict:
        return amp_workspaces(self.stack)

    # --- the corpus ----------------------------------------------------------------------------
    def fresh(self, stem: str, label: str, inp_of=base_input) -> str | None:
        d = self.new_name(stem)
        return d if self.apply(f"{label} {d}: create", inp_of(d)) else d

    def teardown(self, d: str, label: str) -> None:
        if d in self.live:
            self.delete(f"{label} {d}: delete", d)

    def sequence(self, fields) -> None:
        """Each field edited in turn on one converged deployment (cumulative), then back in
        reverse order (A->B->A)."""
        d = self.fresh("q", "sequence")
        inp = base_input(d)
        applied = []
        for f in fields:
            nxt = edited(inp, f)
            if self.apply(f"sequence {d}: {f}", nxt):
                inp = nxt
                applied.append(f)
            elif d not in self.live:
                return
        for f in reversed(applied):
            back = reverted(inp, f, base_input(d))
            if self.apply(f"sequence {d}: {f} back", back):
                inp = back
            elif d not in self.live:
                return
        self.teardown(d, "sequence")

    def combos(self, kind: str, combos) -> None:
        """Each combination of fields edited at once from the converged base, then back to the
        base (A->B->A); a deployment whose run did not converge is deleted and the next
        combination starts on a fresh one."""
        d = None
        for fields in combos:
            if d is None or d not in self.live:
                d = self.fresh(kind[0], kind)
                if d not in self.live:
                    d = None
                    continue
            what = " + ".join(fields)
            ok = self.apply(f"{kind} {d}: {what}", edited(base_input(d), *fields))
            ok = self.apply(f"{kind} {d}: {what} back", base_input(d)) and ok
            if not ok:
                self.teardown(d, kind)
                d = None
        if d is not None:
            self.teardown(d, kind)

    def shared(self, n: int, order: tuple, same_namespace: bool = True) -> None:
        """`n` deployments on one IRSA role, cluster and (or not) namespace, deleted in `order`:
        each delete leaves the others' grants intact (and a plan of each finds nothing to do)."""
        names = [self.new_name("xyz"[i]) for i in range(n)]
        label = f"shared{n} {'same' if same_namespace else 'own'} namespace, delete order {order}"
        for i, d in enumerate(names):
            inp = base_input(d)
            if not same_namespace:
                inp["namespace"] = NAMESPACES[i % 2]
            self.apply(f"{label}: create {d}", inp)
        for i in order:
            d = names[i]
            if d in self.live:
                self.delete(f"{label}: delete {d}", d)
                for other in names:
                    if other in self.live:
                        self.plan_none(f"{label}: plan {other} after deleting {d}", other)

    def foreign(self) -> None:
        """Inputs naming foreign resources that merely share a name, each on a fresh converged
        deployment: a policy of another team as the write or the read policy (refused, untouched),
        a role of another team as the Grafana role (adopted: what it allowed stays; delete keeps
        it as it was), a foreign workspace's alias (adopted; ours retained with its data). A
        foreign parameter sits under every ssmPrefix (seeded before the first run there)."""
        def case(what: str, change, expect_conflict: bool = False, back: bool = True, retained: bool = False):
            d = self.fresh("f", "foreign")
            if d not in self.live:
                return
            base = base_input(d)
            if retained:  # ours is then retired, kept with its data (retainMetrics), no longer in use
                self.retained.append(base["amp"]["alias"])
            ok = self.apply(f"foreign {d}: {what}", change(base), expect_conflict=expect_conflict)
            if retained and (not ok or back):
                self.retained.remove(base["amp"]["alias"])  # the alias names it again
            if ok and back:
                self.apply(f"foreign {d}: back from {what}", base)
            self.teardown(d, "foreign")
            self.drop_retained()

        if not self.quick:  # the quick run has them in a row below
            case("writePolicyName = a foreign policy (refused)",
                 lambda b: dict(b, writePolicyName=FOREIGN_POLICY), expect_conflict=True, back=False)
            case("grafana.readPolicyName = a foreign policy (refused)",
                 lambda b: dict(b, grafana=dict(b["grafana"], readPolicyName=FOREIGN_READ_POLICY)), expect_conflict=True,
                 back=False)
            case("grafana.roleName = a foreign role (adopted)",
                 lambda b: dict(b, grafana=dict(b["grafana"], roleName=FOREIGN_ROLE)), back=False)
        case("grafana.roleName = a foreign role, then back (adopted, then left as it was)",
             lambda b: dict(b, grafana=dict(b["grafana"], roleName=FOREIGN_ROLE)))
        case("amp.alias = a foreign workspace's alias (adopted)",
             lambda b: dict(b, amp={"alias": FOREIGN_ALIAS}), back=False, retained=True)
        d = self.fresh("f", "foreign")
        if d in self.live:
            base = base_input(d)
            self.apply(f"foreign {d}: writePolicyName = a foreign policy, then the run after it (refused)",
                       dict(base, writePolicyName=FOREIGN_POLICY), expect_conflict=True)
            self.apply(f"foreign {d}: grafana.readPolicyName = a foreign policy after a refused writePolicyName",
                       dict(base, grafana=dict(base["grafana"], readPolicyName=FOREIGN_READ_POLICY)), expect_conflict=True)
            self.apply(f"foreign {d}: the base input after two refused runs", base)
            self.teardown(d, "foreign")

    # --- CloudFormation's flows ------------------------------------------------------------------
    def cfn(self, label: str, kind: str, inp: dict, physical: str | None = None, old: dict | None = None):
        """One custom resource request as CloudFormation sends it (properties as strings) to
        cfn-handler; waits for its execution; returns CloudFormation's stored answer (or None)."""
        self.runs += 1
        self.res.add("edits_runs")
        key = f"edits-{self.runs:03d}"
        url = self.stack.s3_presign.generate_presigned_url(
            "put_object", Params={"Bucket": CFN_BUCKET, "Key": key}, ExpiresIn=7200)
        req = {"RequestType": kind, "ServiceToken": CFN_TOKEN, "ResponseURL": url, "StackId": CFN_STACK,
               "RequestId": f"req-{key}", "LogicalResourceId": "Observability",
               "ResourceType": "Custom::O11yProvisioner", "ResourceProperties": cfn_properties(inp)}
        if physical is not None:
            req["PhysicalResourceId"] = physical
        if old is not None:
            req["OldResourceProperties"] = cfn_properties(old)
        t0 = time.time()
        out = json.loads(self.stack.lam.invoke(FunctionName="cfn-handler",
                                               Payload=json.dumps(req).encode())["Payload"].read())
        if isinstance(out, dict) and out.get("executionName"):
            self.stack.wait_execution(execution_arn(out["executionName"]), 900)
        try:
            body = json.loads(self.stack.s3.get_object(Bucket=CFN_BUCKET, Key=key)["Body"].read())
        except Exception:  # noqa: BLE001 - no answer stored is what the caller judges
            body = None
        why = f": {(body.get('Reason') or '')[:160]}" if body and body.get("Status") != "SUCCESS" else ""
        self.log(f"{label}: CloudFormation {kind} answered {body and body.get('Status')} ({time.time() - t0:.0f} s){why}")
        return body

    def cloudformation(self) -> None:
        """CloudFormation's flows, judged by the same inventory: a Create that fails late is
        rolled back (nothing of it left); an Update that renames the write policy and the AMP
        alias, then fails half-way, is rolled back by CloudFormation's Update with the old
        properties to exactly the old deployment; a replacement (new deploymentName, new id)
        creates the new one, and the Delete of the old id removes only the old one."""
        cfg = self.stack.emulator("GET", "/_emulator/config")
        self.stack.emulator("POST", "/_emulator/config", {"unknownSsoIdPrefix": UNKNOWN_SSO_PREFIX})
        failing = {"users": [f"{UNKNOWN_SSO_PREFIX}-0000-4000-8000-000000000001"]}

        def answered(label: str, body, status: str) -> str | None:
            got = body and body.get("Status")
            if got != status:
                self.res.add("edits_failed_runs")
                return f"CloudFormation answered {got}, expected {status}: {(body or {}).get('Reason', '')[:400]}"
            return None

        try:
            d = self.new_name("cfn")
            base = base_input(d)
            self.foreign_param(base["ssmPrefix"])
            bad = dict(base, grafana=dict(base["grafana"], admins=failing))
            label = f"cfn {d}: a Create that fails late (rolled back)"
            self.check(label, answered(label, self.cfn(label, "Create", bad), "FAILED"))

            label = f"cfn {d}: Create"
            body = self.cfn(label, "Create", base)
            problem = answered(label, body, "SUCCESS")
            if problem is None:
                self.live[d] = base
            if not self.check(label, problem) or problem is not None:
                return
            physical = body["PhysicalResourceId"]

            edit = edited(base, "writePolicyName", "amp.alias")
            edit["grafana"] = dict(edit["grafana"], admins=failing)
            label = f"cfn {d}: an Update that renames the write policy and the alias, then fails"
            body = self.cfn(label, "Update", edit, physical=physical, old=base)
            failed = answered(label, body, "FAILED")
            label = f"cfn {d}: CloudFormation's rollback Update (the old properties)"
            body = self.cfn(label, "Update", base, physical=physical, old=edit)
            self.check(label, failed or answered(label, body, "SUCCESS"))

            d2 = self.new_name("cfn")
            new = base_input(d2)
            self.foreign_param(new["ssmPrefix"])
            label = f"cfn {d}: a replacement by {d2} (new deploymentName)"
            body = self.cfn(label, "Update", new, physical=physical, old=base)
            problem = answered(label, body, "SUCCESS")
            if problem is None:
                self.live[d2] = new
            label = f"cfn {d}: CloudFormation deletes the old id after the replacement"
            gone = self.cfn(label, "Delete", dict(base, retainMetrics=False), physical=physical)
            problem = problem or answered(label, gone, "SUCCESS")
            if gone and gone.get("Status") == "SUCCESS":
                self.live.pop(d, None)
            self.check(label, problem)
            if d2 in self.live and body:
                label = f"cfn {d2}: Delete"
                gone = self.cfn(label, "Delete", dict(new, retainMetrics=False), physical=body["PhysicalResourceId"])
                problem = answered(label, gone, "SUCCESS")
                self.live.pop(d2, None)
                self.check(label, problem)
        finally:
            self.stack.emulator("POST", "/_emulator/config",
                                {"unknownSsoIdPrefix": cfg.get("unknownSsoIdPrefix", "unknown-")})

    def retain(self) -> None:
        """Delete with retainMetrics by default: the AMP workspace stays, nothing else of ours."""
        d = self.fresh("r", "retain")
        if d in self.live:
            self.delete(f"retain {d}: delete keeping the metrics", d, retain=True)
        self.drop_retained()


def phase_edits(stack, res, args) -> None:
    quick = bool(args.quick)
    t0 = time.time()
    cfg = stack.emulator("GET", "/_emulator/config")
    # The corpus holds up to four Grafana workspaces of its own at once, besides the foreign ones
    # and what an orphan leaves until it is removed.
    stack.emulator("POST", "/_emulator/config", {"maxWorkspaces": max(20, cfg.get("maxWorkspaces") or 0)})
    e = Edits(stack, res, quick)
    try:
        e.seed()
        fields = list(EDITS)
        if quick:
            e.combos("single", [(f,) for f in fields if f not in QUICK_SKIP])
            e.combos("pair", QUICK_PAIRS)
            e.shared(3, (1, 0, 2))
            e.foreign()
            e.retain()
            e.cloudformation()
        else:
            e.combos("single", [(f,) for f in fields])
            e.sequence(fields)
            e.combos("pair", list(itertools.combinations(fields, 2)))
            e.shared(2, (0, 1))
            e.shared(2, (1, 0), same_namespace=False)
            for order in ((0, 1, 2), (1, 0, 2), (2, 1, 0)):
                e.shared(3, order)
            e.foreign()
            e.retain()
            e.cloudformation()
    finally:
        for d in list(e.live):
            e.delete(f"cleanup {d}", d)
        if cfg.get("maxWorkspaces") is not None:
            stack.emulator("POST", "/_emulator/config", {"maxWorkspaces": cfg["maxWorkspaces"]})
        res.figures["edits_seconds"] = round(time.time() - t0)
        res.figures["edits_findings"] = e.findings
        if getattr(args, "edits_findings", None):
            args.edits_findings.write_text(json.dumps(e.findings, indent=2, default=str))
