"""IAM authorization for the local stack: each function runs under its own template role.

From ``infra/template.yaml`` (intrinsics resolved with the parameters' defaults, or overrides) this
module creates, in moto, each function's IAM role with its inline policies, assumes it through
moto's STS, and hands the function process those credentials. Every request the router then sees
signed with such credentials is authorized here, as IAM would: the IAM action(s) and resource ARN
the Service Authorization Reference gives the operation (dependent actions included: ``iam:TagRole``
for a tagged ``CreateRole``, ``ssm:AddTagsToResource`` for a tagged ``PutParameter``, ``iam:PassRole``
for a workspace role...), and the request context (``aws:RequestTag/*``, ``aws:TagKeys``,
``aws:ResourceTag/*`` looked up on the resource, ``iam:PolicyARN``, ``iam:PassedToService``,
``aws:ResourceOrgID``...). Explicit Deny wins; an Allow must match action, resource and every
condition; an absent key fails positive operators (IfExists and ForAllValues excepted) and passes
negated ones; an operator this evaluator does not know fails. Credentials a checked identity obtains
with ``sts:AssumeRole`` (cross-account runs) are checked in turn against the assumed role's policies
read from moto, intersected with the session policy of the request.

Why not moto's own authorization (``INITIAL_NO_AUTH_ACTION_COUNT``): outside IAM, S3 and SQS moto
evaluates every request against the resource ``*`` (so a resource-scoped Allow never matches) and
treats a condition whose key is absent as satisfied, so it would both refuse what AWS allows and
allow what AWS refuses. The harness's own calls (credentials ``testing``) are not checked: they are
the stack's administrator.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from urllib.parse import unquote

import yaml

import iam_policy
from iam_policy import Context, _list, evaluate

#: Credential-scope service -> IAM action prefix.
PREFIX = {"aps": "aps", "grafana": "grafana", "iam": "iam", "sts": "sts", "ssm": "ssm", "eks": "eks",
          "states": "states", "servicequotas": "servicequotas", "logs": "logs", "s3": "s3", "sqs": "sqs",
          "lambda": "lambda", "events": "events", "xray": "xray"}

#: Every account of the local stack is in this one organisation (aws:PrincipalOrgID, aws:ResourceOrgID).
ORG_ID = "o-localstack00"

_NOVALUE = object()


# --- the template --------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form intrinsics (``!Sub`` ...) as their long forms."""


def _intrinsic(name: str):
    def construct(loader, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if name == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {"Ref" if name == "Ref" else f"Fn::{name}": value}
    return construct


for _name in ("Ref", "Sub", "GetAtt", "If", "Equals", "Not", "And", "Or", "Join", "Select", "Split",
              "FindInMap", "Base64", "Condition", "ImportValue", "GetAZs"):
    _Loader.add_constructor("!" + _name, _intrinsic(_name))


class Template:
    """The template's resources with intrinsics resolved for one local deployment of the stack."""

    def __init__(self, path: str, region: str, account: str, stack_name: str, state_machine_name: str,
                 parameters: dict | None = None):
        with open(path, encoding="utf-8") as f:
            self.doc = yaml.load(f, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
        self.region, self.account, self.stack = region, account, stack_name
        self.state_machine_name = state_machine_name
        self.params = {k: str(v.get("Default", "")) for k, v in (self.doc.get("Parameters") or {}).items()}
        self.params.update(parameters or {})
        self.resources = self.doc.get("Resources") or {}
        self.conditions: dict[str, bool] = {}
        for name in self.doc.get("Conditions") or {}:
            self.condition(name)

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.resolve(self.doc["Conditions"][name]))
        return self.conditions[name]

    # Physical names of the resources the roles' policies refer to.
    def physical(self, logical: str) -> str:
        res = self.resources.get(logical) or {}
        t = res.get("Type", "")
        props = res.get("Properties") or {}
        if t == "AWS::Logs::LogGroup":
            return str(self.resolve(props.get("LogGroupName", f"{self.stack}-{logical}")))
        if t in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
            return f"arn:aws:states:{self.region}:{self.account}:stateMachine:{self.state_machine_name}"
        if t == "AWS::IAM::Role":
            return role_name(self.stack, logical)
        return f"{self.stack}-{logical}"

    def getatt(self, logical: str, attribute: str) -> str:
        t = (self.resources.get(logical) or {}).get("Type", "")
        name = self.physical(logical)
        if attribute != "Arn":
            return name
        if t == "AWS::Logs::LogGroup":
            return f"arn:aws:logs:{self.region}:{self.account}:log-group:{name}:*"
        if t == "AWS::IAM::Role":
            return f"arn:aws:iam::{self.account}:role/{name}"
        if t == "AWS::SQS::Queue":
            return f"arn:aws:sqs:{self.region}:{self.account}:{name}"
        if t == "AWS::Serverless::Function":
            return f"arn:aws:lambda:{self.region}:{self.account}:function:{name}"
        return name

    def ref(self, name: str):
        pseudo = {"AWS::Partition": "aws", "AWS::AccountId": self.account, "AWS::Region": self.region,
                  "AWS::StackName": self.stack, "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": _NOVALUE}
        if name in pseudo:
            return pseudo[name]
        if name in self.params:
            return self.params[name]
        return self.physical(name)

    def _sub(self, text: str, variables: dict) -> str:
        def one(m):
            key = m.group(1)
            if key.startswith("!"):
                return "${" + key[1:] + "}"
            if key in variables:
                return str(self.resolve(variables[key]))
            if "." in key:
                logical, attribute = key.split(".", 1)
                return self.getatt(logical, attribute)
            value = self.ref(key)
            return m.group(0) if value is _NOVALUE else str(value)
        return re.sub(r"\$\{([^}]+)\}", one, text)

    def resolve(self, node):
        if isinstance(node, list):
            return [v for v in (self.resolve(x) for x in node) if v is not _NOVALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (k, v), = node.items()
            if k == "Ref":
                return self.ref(v)
            if k == "Fn::Sub":
                return self._sub(v, {}) if isinstance(v, str) else self._sub(v[0], v[1])
            if k == "Fn::GetAtt":
                return self.getatt(v[0], v[1])
            if k == "Fn::If":
                return self.resolve(v[1] if self.condition(v[0]) else v[2])
            if k == "Fn::Equals":
                a, b = self.resolve(v)
                return str(a) == str(b)
            if k == "Fn::Not":
                return not self.resolve(v)[0]
            if k == "Fn::And":
                return all(self.resolve(v))
            if k == "Fn::Or":
                return any(self.resolve(v))
            if k == "Condition":
                return self.condition(v)
            if k == "Fn::Join":
                return str(v[0]).join(str(x) for x in self.resolve(v[1]))
            if k == "Fn::Select":
                return self.resolve(v[1])[int(self.resolve(v[0]))]
        return {k: r for k, r in ((k, self.resolve(x)) for k, x in node.items()) if r is not _NOVALUE}

    def function_roles(self) -> dict:
        """binary -> {"role": role name, "trust": document, "policies": {name: document},
        "environment": the function's variables (Globals merged, resolved)}."""
        globals_env = (((self.doc.get("Globals") or {}).get("Function") or {}).get("Environment") or {})
        out = {}
        for logical, res in self.resources.items():
            if res.get("Type") != "AWS::Serverless::Function":
                continue
            binary = ((res.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
            role_ref = (res.get("Properties") or {}).get("Role")
            if not binary or not isinstance(role_ref, dict) or "Fn::GetAtt" not in role_ref:
                continue
            role_logical = role_ref["Fn::GetAtt"][0]
            props = self.resolve((self.resources[role_logical].get("Properties") or {}))
            policies = {p["PolicyName"]: p["PolicyDocument"] for p in props.get("Policies") or []}
            env = dict(globals_env.get("Variables") or {})
            env.update(((res["Properties"].get("Environment") or {}).get("Variables")) or {})
            out[binary] = {"role": self.physical(role_logical), "trust": props.get("AssumeRolePolicyDocument"),
                           "policies": policies, "managed": props.get("ManagedPolicyArns") or [],
                           "environment": {k: str(v) for k, v in self.resolve(env).items()}}
        return out


def role_name(stack: str, logical: str) -> str:
    return f"{stack}-{logical}"[:64]


def trust_allows(trust: dict, caller: "Identity", org_id: str) -> bool:
    """Whether a role trust policy lets ``caller`` (a role session or the account) call
    sts:AssumeRole: its account (``<id>``, ``arn:…:root``), its role ARN or ``*`` named as an AWS
    principal (iam_policy.trust_allows)."""
    m = re.fullmatch(r"arn:aws[a-z-]*:sts::(\d{12}):assumed-role/([^/]+)/.*", caller.arn)
    role_arn = f"arn:aws:iam::{m.group(1)}:role/{m.group(2)}" if m else caller.arn
    names = {"*", caller.account, f"arn:aws:iam::{caller.account}:root", role_arn}
    ctx = Context({"aws:PrincipalArn": role_arn, "aws:PrincipalAccount": caller.account,
                   "aws:PrincipalOrgID": org_id})
    return iam_policy.trust_allows(trust, "AWS", names, ctx)


# --- identities ------------------------------------------------------------------------------------
class Identity:
    def __init__(self, arn: str, account: str, policies: list, session_policies: list | None = None,
                 secret: str = "", token: str = ""):
        self.arn, self.account = arn, account
        self.policies, self.session_policies = policies, session_policies or []
        self.secret, self.token = secret, token

    def decide(self, action: str, resource: str, ctx: Context) -> str | None:
        """None when allowed, else the reason AWS gives."""
        own = evaluate(self.policies, action, resource, ctx)
        session = evaluate(self.session_policies, action, resource, ctx) if self.session_policies else "Allow"
        if own == "Deny":
            return "with an explicit deny in an identity-based policy"
        if session == "Deny":
            return "with an explicit deny in a session policy"
        if own != "Allow":
            return f"because no identity-based policy allows the {action} action"
        if session != "Allow":
            return f"because no session policy allows the {action} action"
        return None


# --- requests -> (action, resource, context) -----------------------------------------------------
def _tags_list(tags) -> dict:
    if isinstance(tags, dict):
        return {str(k): str(v) for k, v in tags.items()}
    return {str(t.get("Key")): str(t.get("Value", "")) for t in tags or [] if isinstance(t, dict)}


def _request_tags(tags: dict) -> dict:
    ctx = {f"aws:RequestTag/{k}": v for k, v in tags.items()}
    ctx["aws:TagKeys"] = list(tags)
    return ctx


def _create(action: str, arn: str, tags: dict, tag_action: str, tag_arn: str | None = None) -> list:
    """A create that may carry tags: its own check, plus the dependent tagging action when tagged."""
    if not tags:
        return [(action, arn, {})]
    return [(action, arn, _request_tags(tags)), (tag_action, tag_arn or arn, _request_tags(tags))]


def requirements(service: str, op: str, p: dict, region: str, account: str, role_path) -> list:
    """What IAM checks for one request: [(action, resource, context)]."""
    prefix = PREFIX.get(service, service)
    action = f"{prefix}:{op}"
    A, R = account, region
    if service == "iam":
        def role_arn(name):
            return f"arn:aws:iam::{A}:role{role_path(name)}{name}"
        if op == "CreateRole":
            arn = f"arn:aws:iam::{A}:role{p.get('Path') or '/'}{p.get('RoleName', '')}"
            return _create(action, arn, _tags_list(p.get("Tags")), "iam:TagRole")
        if op == "CreatePolicy":
            arn = f"arn:aws:iam::{A}:policy{p.get('Path') or '/'}{p.get('PolicyName', '')}"
            return _create(action, arn, _tags_list(p.get("Tags")), "iam:TagPolicy")
        if op in ("DetachUserPolicy", "AttachUserPolicy"):
            return [(action, f"arn:aws:iam::{A}:user/{p.get('UserName', '')}", {"iam:PolicyARN": p.get("PolicyArn")})]
        if op in ("DetachGroupPolicy", "AttachGroupPolicy"):
            return [(action, f"arn:aws:iam::{A}:group/{p.get('GroupName', '')}", {"iam:PolicyARN": p.get("PolicyArn")})]
        if "RoleName" in p:
            ctx = {}
            if op in ("AttachRolePolicy", "DetachRolePolicy"):
                ctx["iam:PolicyARN"] = p.get("PolicyArn")
            if op == "TagRole":
                ctx = _request_tags(_tags_list(p.get("Tags")))
            if op == "UntagRole":
                ctx = {"aws:TagKeys": _list(p.get("TagKeys"))}
            return [(action, role_arn(p["RoleName"]), ctx)]
        if "PolicyArn" in p:
            ctx = {}
            if op == "TagPolicy":
                ctx = _request_tags(_tags_list(p.get("Tags")))
            if op == "UntagPolicy":
                ctx = {"aws:TagKeys": _list(p.get("TagKeys"))}
            return [(action, p["PolicyArn"], ctx)]
        if op == "GetOpenIDConnectProvider":
            return [(action, p.get("OpenIDConnectProviderArn", "*"), {})]
        if op == "SimulatePrincipalPolicy":
            return [(action, p.get("PolicySourceArn", "*"), {})]
        if op == "CreateServiceLinkedRole":
            svc = p.get("AWSServiceName", "")
            return [(action, f"arn:aws:iam::{A}:role/aws-service-role/{svc}/*", {"iam:AWSServiceName": svc})]
        return [(action, "*", {})]
    if service == "sts":
        if op == "GetCallerIdentity":
            return []  # needs no permission
        if op == "AssumeRole":
            arn = p.get("RoleArn", "")
            parts = arn.split(":")
            role_account = parts[4] if len(parts) > 4 else ""
            return [(action, arn, {"aws:ResourceAccount": role_account, "aws:ResourceOrgID": ORG_ID})]
        return [(action, "*", {})]
    if service == "ssm":
        def param_arn(name):
            name = str(name)
            if name.startswith("arn:"):
                return name
            return f"arn:aws:ssm:{R}:{A}:parameter{name if name.startswith('/') else '/' + name}"
        if op == "PutParameter":
            return _create(action, param_arn(p.get("Name", "")), _tags_list(p.get("Tags")), "ssm:AddTagsToResource")
        if op in ("GetParameters", "DeleteParameters"):
            return [(action, param_arn(n), {}) for n in _list(p.get("Names"))]
        if op == "GetParametersByPath":
            return [(action, param_arn(p.get("Path", "/")), {})]
        if op in ("AddTagsToResource", "RemoveTagsFromResource", "ListTagsForResource"):
            arn = param_arn(p.get("ResourceId", ""))
            ctx = {}
            if op == "AddTagsToResource":
                ctx = _request_tags(_tags_list(p.get("Tags")))
            if op == "RemoveTagsFromResource":
                ctx = {"aws:TagKeys": _list(p.get("TagKeys"))}
            return [(action, arn, ctx)]
        if "Name" in p:
            return [(action, param_arn(p["Name"]), {})]
        return [(action, "*", {})]
    if service == "aps":
        def ws_arn(ws):
            return f"arn:aws:aps:{R}:{A}:workspace/{ws}"
        if op == "CreateWorkspace":
            return _create(action, ws_arn("*"), _tags_list(p.get("tags")), "aps:TagResource")
        if op in ("TagResource", "UntagResource", "ListTagsForResource"):
            ctx = {}
            if op == "TagResource":
                ctx = _request_tags(_tags_list(p.get("tags")))
            if op == "UntagResource":
                ctx = {"aws:TagKeys": _list(p.get("tagKeys"))}
            return [(action, p.get("resourceArn", "*"), ctx)]
        if "workspaceId" in p:
            return [(action, ws_arn(p["workspaceId"]), {})]
        return [(action, "*", {})]
    if service == "grafana":
        def gws_arn(ws):
            return f"arn:aws:grafana:{R}:{A}:/workspaces/{ws}"
        out = []
        if op == "CreateWorkspace":
            out += _create(action, "*", _tags_list(p.get("tags")), "grafana:TagResource", gws_arn("*"))
            if "AWS_SSO" in _list(p.get("authenticationProviders")):
                out += [("sso:CreateManagedApplicationInstance", "*", {}), ("sso:DescribeRegisteredRegions", "*", {})]
        elif op in ("TagResource", "UntagResource", "ListTagsForResource"):
            ctx = {}
            if op == "TagResource":
                ctx = _request_tags(_tags_list(p.get("tags")))
            if op == "UntagResource":
                ctx = {"aws:TagKeys": _list(p.get("tagKeys"))}
            out.append((action, p.get("resourceArn", "*"), ctx))
        elif "workspaceId" in p:
            out.append((action, gws_arn(p["workspaceId"]), {}))
        else:
            out.append((action, "*", {}))
        role = p.get("workspaceRoleArn")
        if op in ("CreateWorkspace", "UpdateWorkspace") and role:
            out.append(("iam:PassRole", role, {"iam:PassedToService": "grafana.amazonaws.com"}))
        return out
    if service == "eks":
        if "name" in p and op in ("DescribeCluster", "DeleteCluster", "UpdateClusterConfig"):
            return [(action, f"arn:aws:eks:{R}:{A}:cluster/{p['name']}", {})]
        if "clusterName" in p:
            return [(action, f"arn:aws:eks:{R}:{A}:cluster/{p['clusterName']}", {})]
        return [(action, "*", {})]
    if service == "states":
        for key in ("executionArn", "stateMachineArn"):
            if key in p:
                return [(action, p[key], {})]
        return [(action, "*", {})]
    if service == "servicequotas":
        if op == "GetServiceQuota":
            return [(action, f"arn:aws:servicequotas:{R}:{A}:{p.get('ServiceCode')}/{p.get('QuotaCode')}", {})]
        return [(action, "*", {})]
    return [(action, "*", {})]


_DATA_PLANE = re.compile(r"^/workspaces/([^/]+)/api/v1/(remote_write|query|query_range|series|labels)")


def _access_key(headers) -> str | None:
    m = re.search(r"Credential=([^/,\s]+)/", headers.get("Authorization") or "")
    return m.group(1) if m else None


def denial(protocol: str, service: str, message: str):
    """AccessDenied as the service answers it: query 403 ``AccessDenied``, json 400 and rest-json
    403 ``AccessDeniedException`` (the shapes of model_check.refusal)."""
    import model_check

    code = "AccessDenied" if protocol == "query" else "AccessDeniedException"
    status = 400 if protocol == "json" else 403
    return model_check.refusal(protocol, service, [message], code, status)[:3]


class Authorizer:
    """The function roles in moto, their credentials, and the authorization of their requests."""

    def __init__(self, template_path: str, moto_url: str, grafana_url: str | None, region: str, account: str,
                 stack_name: str = "o11y-local", state_machine_name: str = "o11y-provisioner",
                 parameters: dict | None = None, iam_propagation_s: float = 0.0):
        self.template = Template(template_path, region, account, stack_name, state_machine_name, parameters)
        self.roles = self.template.function_roles()
        self.moto_url, self.grafana_url = moto_url, grafana_url
        self.region, self.account = region, account
        self.identities: dict[str, Identity] = {}
        self.lock = threading.Lock()
        self.denied = 0
        #: (service, account) -> an administrator's client there (_account_client); emptied by
        #: ensure_roles, as a moto reset forgets the credentials.
        self._account_clients: dict = {}
        #: IAM's eventual consistency: a role younger than this cannot be assumed yet.
        self.iam_propagation_s = float(iam_propagation_s)

    def _client(self, service: str, identity: Identity | None = None, url: str | None = None,
                region: str | None = None):
        import boto3

        if identity is None:
            creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        else:
            key = next(k for k, v in self.identities.items() if v is identity)
            creds = {"aws_access_key_id": key, "aws_secret_access_key": identity.secret,
                     "aws_session_token": identity.token}
        return boto3.client(service, endpoint_url=url or self.moto_url, region_name=region or self.region, **creds)

    def _ensure_role(self, binary: str, spec: dict) -> None:
        iam = self._client("iam")
        name = spec["role"]
        try:
            iam.get_role(RoleName=name)
        except iam.exceptions.NoSuchEntityException:
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(spec["trust"]),
                            Description=f"local stack: template role of {binary}")
            for pname, doc in spec["policies"].items():
                iam.put_role_policy(RoleName=name, PolicyName=pname, PolicyDocument=json.dumps(doc))

    def ensure_roles(self, wait_s: float = 0.0) -> None:
        """Creates every function role of the template in moto (as a deployed stack has them
        before anything runs), waiting up to ``wait_s`` for moto to answer."""
        import time

        with self.lock:
            self._account_clients.clear()
        deadline = time.monotonic() + wait_s
        while True:
            try:
                for binary, spec in self.roles.items():
                    self._ensure_role(binary, spec)
                return
            except Exception:  # noqa: BLE001 - moto not up yet
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)

    def credentials(self, binary: str) -> dict | None:
        """The environment of a function process: credentials of its template role (created in
        moto if missing, e.g. after a reset), or None when the template has no role for it."""
        spec = self.roles.get(binary)
        if spec is None:
            return None
        self._ensure_role(binary, spec)
        name = spec["role"]
        arn = f"arn:aws:iam::{self.account}:role/{name}"
        session = f"{binary}-{secrets.token_hex(4)}"
        c = self._client("sts").assume_role(RoleArn=arn, RoleSessionName=session)["Credentials"]
        with self.lock:
            self.identities[c["AccessKeyId"]] = Identity(
                f"arn:aws:sts::{self.account}:assumed-role/{name}/{session}", self.account,
                list(spec["policies"].values()), secret=c["SecretAccessKey"], token=c["SessionToken"])
        return {"AWS_ACCESS_KEY_ID": c["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": c["SecretAccessKey"],
                "AWS_SESSION_TOKEN": c["SessionToken"]}

    def environment(self, binary: str) -> dict:
        """The function's environment variables as the template sets them ({} if not in it)."""
        return dict((self.roles.get(binary) or {}).get("environment") or {})

    def identity(self, headers) -> Identity | None:
        key = _access_key(headers)
        with self.lock:
            return self.identities.get(key) if key else None

    # Resource tags and role paths, read as the caller (moto does not authorize) or as admin.
    def _role_path(self, identity: Identity, name: str) -> str:
        try:
            return self._client("iam", identity).get_role(RoleName=name)["Role"].get("Path") or "/"
        except Exception:  # noqa: BLE001 - a missing role has the default path
            return "/"

    def _resource_tags(self, identity: Identity, resource: str) -> dict:
        try:
            parts = resource.split(":", 5)
            # A regional resource's tags are read in its own region (the caller may act in another).
            service, region, rest = parts[2], parts[3] or None, parts[5]
            if service == "iam" and rest.startswith("role/"):
                name = rest.rsplit("/", 1)[-1]
                return _tags_list(self._client("iam", identity).list_role_tags(RoleName=name)["Tags"])
            if service == "iam" and rest.startswith("policy/"):
                return _tags_list(self._client("iam", identity).list_policy_tags(PolicyArn=resource)["Tags"])
            if service == "ssm" and rest.startswith("parameter"):
                name = rest[len("parameter"):]
                r = self._client("ssm", identity, region=region).list_tags_for_resource(ResourceType="Parameter", ResourceId=name)
                return _tags_list(r["TagList"])
            if service == "aps" and rest.startswith("workspace/"):
                ws = rest.split("/", 1)[1]
                return self._client("amp", identity, region=region).describe_workspace(workspaceId=ws)["workspace"].get("tags") or {}
            if service == "grafana" and rest.startswith("/workspaces/") and self.grafana_url:
                ws = rest.rsplit("/", 1)[-1]
                c = self._client("grafana", identity, self.grafana_url, region)
                return c.describe_workspace(workspaceId=ws)["workspace"].get("tags") or {}
        except Exception:  # noqa: BLE001 - no such resource: no tags (AWS cannot match them either)
            return {}
        return {}

    def authorize(self, service: str | None, method: str, path: str, query: dict, headers, body: bytes):
        """None when allowed (or not a checked identity); else (status, headers, body, message)."""
        identity = self.identity(headers)
        if identity is None or service is None:
            return None
        import model_check

        m, op, params = model_check.parse(service, headers, method, path, query, body)
        protocol = m.protocol if m is not None else "rest-json"
        dp = _DATA_PLANE.match(path) if service == "aps" else None
        if dp:
            action = "aps:RemoteWrite" if dp.group(2) == "remote_write" else "aps:QueryMetrics"
            reqs = [(action, f"arn:aws:aps:{self._scope_region(headers) or self.region}:{identity.account}:"
                             f"workspace/{dp.group(1)}", {})]
        elif op is None:
            reqs = [(f"{PREFIX.get(service, service)}:{unquote(path)}", "*", {})]
        else:
            region = self._scope_region(headers) or self.region
            reqs = requirements(service, op, params, region, identity.account,
                                lambda name: self._role_path(identity, name))
        base = {"aws:PrincipalArn": identity.arn, "aws:PrincipalAccount": identity.account,
                "aws:PrincipalOrgID": ORG_ID, "aws:RequestedRegion": self._scope_region(headers) or self.region}
        for action, resource, extra in reqs:
            ctx = Context(dict(base, **{k: v for k, v in extra.items() if v is not None}),
                          lambda r=resource: self._resource_tags(identity, r))
            reason = identity.decide(action, resource, ctx)
            if reason is not None:
                return self._deny(protocol, service, f"{self._refusal(identity, action, resource)} {reason}")
        if service == "sts" and op == "AssumeRole":
            arn = params.get("RoleArn", "")
            reason = self._assume_problem(identity, arn)
            if reason is not None:
                # STS answers the same for a missing role, a trust that does not name the caller
                # and a role too young to be seen yet; the log says which.
                return self._deny(protocol, service, self._refusal(identity, "sts:AssumeRole", arn), reason)
        return None

    @staticmethod
    def _refusal(identity: Identity, action: str, resource: str) -> str:
        return f"User: {identity.arn} is not authorized to perform: {action} on resource: {resource}"

    def _deny(self, protocol: str, service: str, message: str, logged: str | None = None):
        """Counts a denial and returns it as authorize does: the service's AccessDenied with
        ``message``, and what the router logs (``message``, with ``logged`` appended)."""
        with self.lock:
            self.denied += 1
        status, hdrs, rbody = denial(protocol, service, message)
        return status, hdrs, rbody, f"{message} ({logged})" if logged else message

    def _assume_problem(self, caller: Identity, role_arn: str) -> str | None:
        """Why STS refuses ``caller`` an AssumeRole of ``role_arn`` beyond the caller's own policies
        (moto checks none of it): the role must exist, be older than the propagation delay, and
        its trust policy must allow the caller. None when it may be assumed."""
        m = re.fullmatch(r"arn:aws[a-z-]*:iam::(\d{12}):role/(?:.*/)?([^/]+)", role_arn)
        if not m:
            return "not a role ARN"
        account, name = m.group(1), m.group(2)
        try:
            role = self._account_client("iam", account).get_role(RoleName=name)["Role"]
        except Exception as e:  # noqa: BLE001 - what cannot be read cannot be assumed
            return f"the role does not exist in account {account} ({type(e).__name__})"
        age = iam_policy.created_less_than(role.get("CreateDate"), self.iam_propagation_s)
        if age is not None:
            return f"the role is {age:.1f}s old: IAM has not propagated it yet ({self.iam_propagation_s}s)"
        trust = iam_policy.document(role.get("AssumeRolePolicyDocument") or {})
        if not trust_allows(trust, caller, ORG_ID):
            return "the role's trust policy does not allow the caller"
        return None

    def _account_client(self, service: str, account: str):
        """An administrator's client in ``account`` (moto maps credentials to an account by the
        role they were issued for; it checks no trust)."""
        import boto3

        if account == self.account:
            return self._client(service)
        with self.lock:
            client = self._account_clients.get((service, account))
        if client is None:
            c = self._client("sts").assume_role(RoleArn=f"arn:aws:iam::{account}:role/o11y-local-admin",
                                                RoleSessionName="authz")["Credentials"]
            client = boto3.client(service, endpoint_url=self.moto_url, region_name=self.region,
                                  aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                                  aws_session_token=c["SessionToken"])
            with self.lock:
                self._account_clients[(service, account)] = client
        return client

    @staticmethod
    def _scope_region(headers) -> str | None:
        m = re.search(r"Credential=[^/]+/\d{8}/([^/]+)/", headers.get("Authorization") or "")
        return m.group(1) if m else None

    def wants_response(self, service: str | None, headers, query: dict, body: bytes) -> bool:
        """True for an sts:AssumeRole by a checked identity: its credentials are checked in turn."""
        if service != "sts" or self.identity(headers) is None:
            return False
        text = body.decode("utf-8", "replace") if body else ""
        return "Action=AssumeRole" in text or (query.get("Action") or [None])[0] == "AssumeRole"

    def observe_assume_role(self, headers, query: dict, body: bytes, status: int, response: bytes) -> None:
        """Registers the credentials an AssumeRole returned, with the role's policies from moto and
        the request's session policy."""
        if status != 200:
            return
        caller = self.identity(headers)
        import model_check

        _, _, params = model_check.parse("sts", headers, "POST", "/", query, body)
        text = response.decode("utf-8", "replace")
        key = re.search(r"<AccessKeyId>([^<]+)</AccessKeyId>", text)
        secret = re.search(r"<SecretAccessKey>([^<]+)</SecretAccessKey>", text)
        token = re.search(r"<SessionToken>([^<]+)</SessionToken>", text)
        if not (key and secret and token and caller):
            return
        role_arn = params.get("RoleArn", "")
        parts = role_arn.split(":")
        account = parts[4] if len(parts) > 4 else self.account
        name = role_arn.rsplit("/", 1)[-1]
        temp = Identity(role_arn, account, [], secret=secret.group(1), token=token.group(1))
        with self.lock:
            self.identities[key.group(1)] = temp
        policies = []
        try:
            iam = self._client("iam", temp)
            for pname in iam.list_role_policies(RoleName=name)["PolicyNames"]:
                policies.append(iam_policy.document(iam.get_role_policy(RoleName=name, PolicyName=pname)["PolicyDocument"]))
            for att in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
                pol = iam.get_policy(PolicyArn=att["PolicyArn"])["Policy"]
                ver = iam.get_policy_version(PolicyArn=att["PolicyArn"], VersionId=pol["DefaultVersionId"])
                policies.append(iam_policy.document(ver["PolicyVersion"]["Document"]))
        except Exception:  # noqa: BLE001 - a role we cannot read grants nothing
            policies = []
        session = [json.loads(params["Policy"])] if params.get("Policy") else []
        session_name = params.get("RoleSessionName", "session")
        temp.arn = f"arn:aws:sts::{account}:assumed-role/{name}/{session_name}"
        temp.policies, temp.session_policies = policies, session
