"""Consistency of infra/template.yaml with the code and the state machines.

Run by scripts/lint with pytest from the cfn-lint venv; cfn-lint's loader (cfnlint.decode) parses
the CloudFormation short-form tags (!GetAtt, !Sub, !If, ...) into their long form.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, Iterator

import pytest
from cfnlint.decode import decode

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
TEMPLATE = INFRA / "template.yaml"
EXAMPLES = sorted((INFRA / "examples").glob("*.yaml"))
ASL_FILES = sorted((REPO / "statemachine").glob("*.asl.json"))
FUNCTION_CRATES = sorted(p.parent for p in (REPO / "functions").glob("*/Cargo.toml"))

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
SERVERLESS_STATE_MACHINE = "AWS::Serverless::StateMachine"
PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")

# The custom resource's Data keys (what `!GetAtt <custom resource>.<key>` may read): the keys of
# cfn.rs's data_of.
CFN_DATA_OF = re.compile(r"pub fn data_of\(.*?\n\}", re.S)


def output_data_keys() -> set[str]:
    body = CFN_DATA_OF.search((REPO / "shared" / "src" / "cfn.rs").read_text())
    assert body, "shared/src/cfn.rs has no data_of: has the code changed?"
    keys = set(re.findall(r'\(\s*"(\w+)"\s*,', body.group(0)))
    assert keys, "cfn.rs data_of inserts no key: has the code changed?"
    return keys


def load(path: Path) -> dict[str, Any]:
    template, matches = decode(str(path))
    assert not matches, f"{path}: {[str(m) for m in matches]}"
    assert template is not None, f"{path} did not parse"
    return template


def merge(global_value: Any, local_value: Any) -> Any:
    """SAM's Globals merge: maps merge recursively (local wins), lists concatenate."""
    intrinsic = lambda v: isinstance(v, dict) and len(v) == 1 and (next(iter(v)).startswith("Fn::") or "Ref" in v)  # noqa: E731
    if isinstance(global_value, dict) and isinstance(local_value, dict):
        if intrinsic(global_value) or intrinsic(local_value):
            return local_value
        out = dict(global_value)
        for k, v in local_value.items():
            out[k] = merge(out[k], v) if k in out else v
        return out
    if isinstance(global_value, list) and isinstance(local_value, list):
        return global_value + local_value
    return local_value


def pascal(kebab: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in kebab.split("-"))


def crate_binaries(crate: Path) -> list[str]:
    manifest = tomllib.loads((crate / "Cargo.toml").read_text())
    bins = [b["name"] for b in manifest.get("bin", []) if "name" in b]
    return bins or [manifest["package"]["name"]]


def getatt_target(value: Any, attribute: str = "Arn") -> str | None:
    """The logical id of `!GetAtt X.<attribute>`, else None."""
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        target = value["Fn::GetAtt"]
        if isinstance(target, str):
            target = target.split(".", 1)
        if len(target) == 2 and target[1] == attribute:
            return str(target[0])
    return None


def ref_target(value: Any) -> str | None:
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return str(value["Ref"])
    return None


def statements(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM policy statement anywhere under node (also inside Fn::If branches)."""
    if isinstance(node, dict):
        if "Effect" in node and ("Action" in node or "NotAction" in node):
            yield path, node
        for k, v in node.items():
            yield from statements(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from statements(v, f"{path}[{i}]")


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load(TEMPLATE)


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


@pytest.fixture(scope="module")
def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Logical id -> function resource with its Globals merged into Properties."""
    globals_ = template.get("Globals", {}).get("Function", {})
    out = {}
    for name, res in template["Resources"].items():
        if res.get("Type") == SERVERLESS_FUNCTION:
            res = dict(res)
            res["Properties"] = merge(globals_, res.get("Properties", {}))
            out[name] = res
    return out


@pytest.fixture(scope="module")
def state_machines(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: r for n, r in template["Resources"].items() if r.get("Type") == SERVERLESS_STATE_MACHINE}


def binary_of(function: dict[str, Any]) -> str | None:
    return function.get("Metadata", {}).get("BuildProperties", {}).get("Binary")


def asl_path(state_machine: dict[str, Any]) -> Path:
    uri = state_machine["Properties"].get("DefinitionUri")
    assert isinstance(uri, str), "DefinitionUri must be a local path to statemachine/*.asl.json"
    return (TEMPLATE.parent / uri).resolve()


def test_the_repository_has_what_the_template_describes() -> None:
    assert FUNCTION_CRATES, "no functions/*/Cargo.toml found"
    assert ASL_FILES, "no statemachine/*.asl.json found"


def test_every_function_crate_has_exactly_one_function(functions: dict[str, dict[str, Any]]) -> None:
    crates = {b: crate for crate in FUNCTION_CRATES for b in crate_binaries(crate)}
    by_binary: dict[str, list[str]] = {}
    for name, fn in functions.items():
        by_binary.setdefault(binary_of(fn) or f"<no Binary in {name}>", []).append(name)
    problems = []
    for binary in sorted(crates):
        found = by_binary.get(binary, [])
        if len(found) != 1:
            problems.append(f"functions/{crates[binary].name} (binary {binary}): {len(found)} functions {found}")
    for binary, names in sorted(by_binary.items()):
        if binary not in crates:
            problems.append(f"{names}: binary {binary!r} is not a crate in functions/")
    assert not problems, "\n".join(problems)


def test_functions_are_built_and_configured_for_lambda(functions: dict[str, dict[str, Any]]) -> None:
    problems = []
    for name, fn in functions.items():
        props, meta = fn["Properties"], fn.get("Metadata", {})
        binary = binary_of(fn)
        expect = {
            "Runtime": props.get("Runtime") == "provided.al2023",
            "Architectures [arm64]": props.get("Architectures") == ["arm64"],
            "Handler bootstrap": props.get("Handler") == "bootstrap",
            "BuildMethod rust-cargolambda": meta.get("BuildMethod") == "rust-cargolambda",
            "LoggingConfig.LogFormat JSON": props.get("LoggingConfig", {}).get("LogFormat") == "JSON",
            f"logical id {pascal(binary or '?')}Function": name == f"{pascal(binary or '?')}Function",
        }
        code_uri = props.get("CodeUri")
        if isinstance(code_uri, str):
            code = (TEMPLATE.parent / code_uri).resolve()
            # The workspace root with the binary named, or the function's own crate.
            expect["CodeUri is the workspace root or the crate"] = code == REPO or code == REPO / "functions" / str(binary)
        else:
            expect["CodeUri is a local path"] = False
        problems += [f"{name}: {what}" for what, ok in expect.items() if not ok]
    assert not problems, "\n".join(problems)


def test_every_placeholder_is_a_substitution_and_vice_versa(state_machines: dict[str, dict[str, Any]]) -> None:
    assert state_machines, "the template has no AWS::Serverless::StateMachine"
    used = set()
    problems = []
    for name, sm in state_machines.items():
        path = asl_path(sm)
        used.add(path)
        placeholders = set(PLACEHOLDER.findall(path.read_text()))
        keys = set(sm["Properties"].get("DefinitionSubstitutions", {}))
        if placeholders - keys:
            problems.append(f"{name}: placeholders of {path.name} without a substitution: {sorted(placeholders - keys)}")
        if keys - placeholders:
            problems.append(f"{name}: substitutions not used by {path.name}: {sorted(keys - placeholders)}")
    for asl in ASL_FILES:
        if asl.resolve() not in used:
            problems.append(f"statemachine/{asl.name} is not the DefinitionUri of any state machine")
    assert not problems, "\n".join(problems)


def test_every_substitution_is_a_function_of_the_template(
    state_machines: dict[str, dict[str, Any]], functions: dict[str, dict[str, Any]]
) -> None:
    problems = []
    for name, sm in state_machines.items():
        for key, value in sm["Properties"].get("DefinitionSubstitutions", {}).items():
            target = getatt_target(value)
            if target not in functions:
                problems.append(f"{name}.{key}: must be !GetAtt <Function>.Arn of a function here (got {value})")
            elif key != f"{target}Arn":
                problems.append(f"{name}.{key}: points at {target}; the key must be {target}Arn")
    assert not problems, "\n".join(problems)


def test_state_machines_may_invoke_exactly_their_functions(
    state_machines: dict[str, dict[str, Any]], resources: dict[str, Any]
) -> None:
    problems = []
    for name, sm in state_machines.items():
        wanted = {getatt_target(v) for v in sm["Properties"].get("DefinitionSubstitutions", {}).values()}
        role = getatt_target(sm["Properties"].get("Role"))
        if role not in resources:
            problems.append(f"{name}: Role must be !GetAtt <AWS::IAM::Role>.Arn")
            continue
        allowed = set()
        for _, st in statements(resources[role]["Properties"].get("Policies", [])):
            if "lambda:InvokeFunction" in as_list(st.get("Action")):
                allowed |= {getatt_target(r) for r in as_list(st.get("Resource"))}
        if allowed != wanted:
            problems.append(f"{name}: lambda:InvokeFunction on {sorted(map(str, allowed))}, expected {sorted(map(str, wanted))}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", [TEMPLATE, *EXAMPLES], ids=lambda p: p.name)
def test_no_iam_action_has_a_wildcard(path: Path) -> None:
    found = list(statements(load(path)))
    problems = []
    for where, st in found:
        if "NotAction" in st:
            problems.append(f"{where}: NotAction")
        for action in as_list(st.get("Action")):
            if not isinstance(action, str) or "*" in action:
                problems.append(f"{where}: Action {action!r}")
    assert not problems, "\n".join(problems)
    if path == TEMPLATE:
        assert len(found) > 10, "the statement walker found almost nothing: is the template's shape still what it expects?"


ROLE_GRANT_ACTIONS = {"iam:UpdateAssumeRolePolicy", "iam:AttachRolePolicy", "iam:PutRolePolicy"}
OPT_IN_CONDITIONS = {
    "aws:ResourceTag/o11y-provisioner:irsa": "true",
    "aws:ResourceTag/o11y-provisioner:managed-by": "o11y-provisioner",
}


def resource_text(resource: Any) -> str:
    """A Resource entry as text (`!Sub` strings as written)."""
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        sub = resource["Fn::Sub"]
        return sub if isinstance(sub, str) else str(sub[0])
    return resource if isinstance(resource, str) else json.dumps(resource)


def role_grant_problems(document: Any) -> list[str]:
    """Statements that give trust or attachments over a wildcard role ARN without requiring, by an
    `aws:ResourceTag` condition, the opt-in tag or our own tag (or that grant them over `*`)."""
    problems = []
    for where, st in statements(document):
        if st.get("Effect") != "Allow":
            continue
        actions = set(as_list(st.get("Action", [])))
        if "NotAction" in st:
            actions = ROLE_GRANT_ACTIONS - set(as_list(st["NotAction"]))
        grants = actions & ROLE_GRANT_ACTIONS or {a for a in actions if a in ("*", "iam:*")}
        if not grants:
            continue
        resources = [resource_text(r) for r in as_list(st.get("Resource", []))]
        wide = [r for r in resources if r == "*" or (":role/" in r and ("*" in r.split(":role/", 1)[1] or "Pattern}" in r))]
        if not wide:
            continue
        equals = st.get("Condition", {}).get("StringEquals", {})
        if not any(equals.get(k) == v for k, v in OPT_IN_CONDITIONS.items()) or "*" in resources:
            problems.append(f"{where} ({st.get('Sid')}): {sorted(grants)} on {wide} without an opt-in tag condition")
    return problems


def test_no_unconditioned_trust_or_attach_right_over_a_wildcard_role() -> None:
    """The security boundary, in IAM: iam:UpdateAssumeRolePolicy, iam:AttachRolePolicy and
    iam:PutRolePolicy over a role name pattern only with an aws:ResourceTag condition on the opt-in
    tag (o11y-provisioner:irsa = true) or on our own tag (roles we created)."""
    template = load(TEMPLATE)
    problems = role_grant_problems(template)
    assert not problems, "\n".join(problems)
    guarded = [st for _, st in statements(template) if set(as_list(st.get("Action", []))) & ROLE_GRANT_ACTIONS]
    assert len(guarded) >= 5, "the walker found too few role grants: has the template's shape changed?"


def test_the_role_grant_check_fails_on_what_it_must_refuse() -> None:
    """The check above, against statements it must refuse and ones it must accept."""
    pattern = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${IrsaRoleNamePattern}"}
    bad = [
        {"Effect": "Allow", "Action": "iam:UpdateAssumeRolePolicy", "Resource": pattern},
        {"Effect": "Allow", "Action": ["iam:AttachRolePolicy"], "Resource": "arn:aws:iam::1:role/*"},
        {"Effect": "Allow", "Action": "iam:PutRolePolicy", "Resource": "*",
         "Condition": {"StringEquals": {"aws:ResourceTag/o11y-provisioner:irsa": "true"}}},
        {"Effect": "Allow", "Action": "iam:*", "Resource": pattern},
        {"Effect": "Allow", "NotAction": "s3:*", "Resource": pattern},
        {"Effect": "Allow", "Action": "iam:AttachRolePolicy", "Resource": pattern,
         "Condition": {"StringEquals": {"aws:ResourceTag/o11y-provisioner:irsa": "false"}}},
        {"Effect": "Allow", "Action": "iam:AttachRolePolicy", "Resource": pattern,
         "Condition": {"ArnLike": {"iam:PolicyARN": "arn:aws:iam::1:policy/x"}}},
    ]
    for st in bad:
        assert role_grant_problems({"Statement": [st]}), f"accepted: {st}"
    good = [
        {"Effect": "Allow", "Action": "iam:UpdateAssumeRolePolicy", "Resource": pattern,
         "Condition": {"StringEquals": {"aws:ResourceTag/o11y-provisioner:irsa": "true"}}},
        {"Effect": "Allow", "Action": "iam:AttachRolePolicy", "Resource": "arn:aws:iam::1:role/exact-name"},
        {"Effect": "Allow", "Action": "iam:DetachRolePolicy", "Resource": pattern},
        {"Effect": "Deny", "Action": "iam:PutRolePolicy", "Resource": "*"},
    ]
    for st in good:
        assert not role_grant_problems({"Statement": [st]}), f"refused: {st}"


def test_no_policy_escapes_the_wildcard_check(resources: dict[str, Any]) -> None:
    """Managed policies (by ARN or SAM policy template) cannot be checked here: none are used."""
    problems = []
    for name, res in resources.items():
        props = res.get("Properties", {})
        if props.get("ManagedPolicyArns") or props.get("PermissionsBoundary"):
            problems.append(f"{name}: ManagedPolicyArns/PermissionsBoundary")
        if res.get("Type") in (SERVERLESS_FUNCTION, SERVERLESS_STATE_MACHINE) and "Policies" in props:
            problems.append(f"{name}: SAM Policies (use an explicit AWS::IAM::Role)")
    assert not problems, "\n".join(problems)


def test_every_function_has_its_own_role_and_log_group(
    functions: dict[str, dict[str, Any]], resources: dict[str, Any]
) -> None:
    problems = []
    roles: dict[str, str] = {}
    log_groups: dict[str, str] = {}
    users: dict[str, list[str]] = {}
    for name, res in resources.items():
        role = getatt_target(res.get("Properties", {}).get("Role"))
        if role:
            users.setdefault(role, []).append(name)
    for name, fn in functions.items():
        props = fn["Properties"]
        role = getatt_target(props.get("Role"))
        if role is None or resources.get(role, {}).get("Type") != "AWS::IAM::Role":
            problems.append(f"{name}: Role must be !GetAtt <its own AWS::IAM::Role>.Arn")
            continue
        if role in roles or users.get(role) != [name]:
            problems.append(f"{name}: role {role} is shared ({users.get(role)})")
        roles[role] = name
        trust = resources[role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        principals = [st.get("Principal") for st in as_list(trust)]
        if principals != [{"Service": "lambda.amazonaws.com"}]:
            problems.append(f"{name}: role {role} must be assumable by lambda.amazonaws.com only (got {principals})")

        group = ref_target(props.get("LoggingConfig", {}).get("LogGroup"))
        if group is None or resources.get(group, {}).get("Type") != "AWS::Logs::LogGroup":
            problems.append(f"{name}: LoggingConfig.LogGroup must be !Ref <its own AWS::Logs::LogGroup>")
            continue
        if group in log_groups:
            problems.append(f"{name}: log group {group} is shared with {log_groups[group]}")
        log_groups[group] = name
        writes = [
            st
            for _, st in statements(resources[role]["Properties"].get("Policies", []))
            if "logs:PutLogEvents" in as_list(st.get("Action"))
        ]
        targets = {getatt_target(r) for st in writes for r in as_list(st.get("Resource"))}
        if targets != {group}:
            problems.append(f"{name}: its role may write logs to {sorted(map(str, targets))}, expected only {group}")
    assert not problems, "\n".join(problems)


def test_function_timeouts_fit_the_task_timeouts(
    state_machines: dict[str, dict[str, Any]], functions: dict[str, dict[str, Any]]
) -> None:
    problems = []
    for name, sm in state_machines.items():
        subs = {k: getatt_target(v) for k, v in sm["Properties"].get("DefinitionSubstitutions", {}).items()}
        asl = json.loads(asl_path(sm).read_text())
        for state_name, state in asl.get("States", {}).items():
            match = PLACEHOLDER.fullmatch(str(state.get("Resource", "")))
            fn = functions.get(str(subs.get(match.group(1)))) if match else None
            if fn is None:
                continue
            timeout = int(fn["Properties"].get("Timeout", 3))
            task = state.get("TimeoutSeconds")
            if task is not None and timeout >= int(task):
                problems.append(f"{name}.{state_name}: Lambda Timeout {timeout} s is not below the task's {task} s")
    assert not problems, "\n".join(problems)


def test_wait_budgets_fit_the_machine_timeout(
    state_machines: dict[str, dict[str, Any]], functions: dict[str, dict[str, Any]]
) -> None:
    def env(binary: str, var: str, default: int) -> int:
        for fn in functions.values():
            if binary_of(fn) == binary:
                return int(fn["Properties"].get("Environment", {}).get("Variables", {}).get(var, default))
        return default

    amp = env("amp-status", "O11Y_AMP_WAIT_TOTAL_SECONDS", 900)
    grafana = env("grafana-status", "O11Y_GRAFANA_WAIT_TOTAL_SECONDS", 1800)
    for name, sm in state_machines.items():
        asl = json.loads(asl_path(sm).read_text())
        text = json.dumps(asl)
        if "AmpStatusFunctionArn" in text and "GrafanaStatusFunctionArn" in text and "TimeoutSeconds" in asl:
            assert amp + grafana < int(asl["TimeoutSeconds"]), (
                f"{name}: AMP {amp} s + Grafana {grafana} s of waiting exceed the machine's {asl['TimeoutSeconds']} s"
            )


INPUT_RS = REPO / "shared" / "src" / "domain" / "input.rs"
STRUCT = re.compile(r"pub struct (\w+) \{(.*?)\n\}", re.S)
FIELD = re.compile(r"^\s*pub (\w+): ([^,]+),", re.M)


def input_contract() -> dict[str, Any]:
    """The input contract's field tree, from the serde structs of shared/src/domain/input.rs (camelCase)."""
    structs = {name: FIELD.findall(body) for name, body in STRUCT.findall(INPUT_RS.read_text())}

    def tree(name: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field, ty in structs.get(name, []):
            camel = re.sub(r"_(\w)", lambda m: m.group(1).upper(), field)
            nested = next((t for t in re.findall(r"\w+", ty) if t in structs), None)
            out[camel] = tree(nested) if nested else None
        return out

    contract = tree("ProvisionInput")
    assert "deploymentName" in contract, "shared/src/domain/input.rs has no ProvisionInput struct any more: update this test"
    return contract


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_follow_the_contracts(path: Path) -> None:
    """Custom resource properties are input-contract fields (shared/src/domain/input.rs); the attributes
    read are output-contract fields."""
    contract = input_contract()
    example = load(path)

    def unknown(props: Any, fields: Any, prefix: str) -> list[str]:
        if not isinstance(props, dict) or not isinstance(fields, dict) or ref_target(props) or any(
            k.startswith("Fn::") for k in props
        ):
            return []
        out = []
        for k, v in props.items():
            if k not in fields:
                out.append(f"{prefix}{k}")
            else:
                out += unknown(v, fields[k], f"{prefix}{k}.")
        return out

    problems = []
    custom = {n for n, r in example["Resources"].items() if r.get("Type") == "Custom::O11yProvisioner"}
    assert custom, f"{path.name} declares no Custom::O11yProvisioner"
    for name in custom:
        props = dict(example["Resources"][name]["Properties"])
        assert "ServiceToken" in props, f"{name}: no ServiceToken"
        props.pop("ServiceToken")
        problems += [f"{name}: property {p} is not in the input contract" for p in unknown(props, contract, "")]
        missing = {"deploymentName", "namespace", "irsaRoleName", "cluster"} - set(props)
        problems += [f"{name}: required property {m} missing" for m in sorted(missing)]
        if "action" in props:
            problems.append(f"{name}: the action comes from the CloudFormation request type, not a property")

    def getatts(node: Any) -> Iterator[list[str]]:
        if isinstance(node, dict):
            if set(node) == {"Fn::GetAtt"}:
                target = node["Fn::GetAtt"]
                yield target.split(".", 1) if isinstance(target, str) else list(target)
            for v in node.values():
                yield from getatts(v)
        elif isinstance(node, list):
            for v in node:
                yield from getatts(v)

    data_keys = output_data_keys()
    for target, attribute in getatts(example):
        if target in custom and attribute not in data_keys:
            problems.append(f"!GetAtt {target}.{attribute}: not a Data key of cfn.rs data_of {sorted(data_keys)}")
    assert not problems, "\n".join(problems)


# --- The roles against the code ------------------------------------------------------------------
# Every AWS call in shared/ is labelled `from_sdk("<service>:<Action>", ...)` with its IAM action.

SHARED = REPO / "shared" / "src"
SDK_ACTION = re.compile(r'from_sdk\(\s*"([a-z0-9-]+:[A-Za-z0-9]+)"')
NEEDS_NO_PERMISSION = {"sts:GetCallerIdentity"}
READ_VERBS = ("Get", "List", "Describe")
# plan's only writes: a short-lived Grafana token to read the live data source, deleted right
# after (shared/src/steps/datasource.rs, "Plan").
PLAN_WRITES = {"grafana:CreateWorkspaceServiceAccountToken", "grafana:DeleteWorkspaceServiceAccountToken"}
# What every role may do besides the step's own calls: its logs, X-Ray, the vending role.
INFRASTRUCTURE = {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords", "sts:AssumeRole"}


def sdk_actions(path: Path) -> set[str]:
    return set(SDK_ACTION.findall(path.read_text())) - NEEDS_NO_PERMISSION


def role_actions(resources: dict[str, Any], function: dict[str, Any]) -> set[str]:
    role = resources[str(getatt_target(function["Properties"].get("Role")))]
    return {a for _, st in statements(role["Properties"].get("Policies", [])) for a in as_list(st.get("Action"))}


ITEM_START = re.compile(r"^(pub|async|fn|impl|mod|const|static|struct|enum|use|type|#\[cfg\(test\)\])\b")
FN_DEF = re.compile(r"^(?:pub(?:\([^)]*\))? )?(?:async )?fn (\w+)")
# engine.rs: `impl StepLambda for X {` (inside `mod lambdas`): what step X's Lambda runs, traced as
# the pseudo-function (engine, "StepLambda for X").
STEP_IMPL = re.compile(r"^\s*impl StepLambda for (\w+)\s*\{")
# engine.rs: `run_and_delete!(X => module, ...)`: X's apply is steps::module::run, its delete
# steps::module::delete (the macro writes those impl blocks).
RUN_AND_DELETE = re.compile(r"^\s*run_and_delete!\((.*?)\);", re.M | re.S)
RUN_AND_DELETE_ITEM = re.compile(r"(\w+)\s*=>\s*(\w+)")


def run_and_delete_steps(engine: str) -> dict[str, str]:
    """Step type -> step module, for the steps engine.rs implements with `run_and_delete!`."""
    return {t: m for block in RUN_AND_DELETE.findall(engine) for t, m in RUN_AND_DELETE_ITEM.findall(block)}
IMPL_METHOD = re.compile(r"^\s+(?:async )?fn (\w+)")
STEP_LAMBDA_CALL = re.compile(r"\blambdas::(\w+)::(\w+)\s*\(")
QUALIFIED_CALL = re.compile(r"\b(\w+)::(\w+)\s*\(")
LOCAL_CALL = re.compile(r"(?<![\w:.])(\w+)\s*\(")


def rust_functions() -> dict[tuple[str, str], str]:
    """(module, function) -> body, for the top-level functions of shared/src (tests excluded), and
    the methods of engine.rs's `impl StepLambda for X` blocks as (engine, "StepLambda for X::method")."""
    out: dict[tuple[str, str], str] = {}
    for path in SHARED.rglob("*.rs"):
        module, current, body, step_impl = path.stem, None, [], None
        for line in path.read_text().splitlines():
            impl_start = STEP_IMPL.match(line)
            method = IMPL_METHOD.match(line) if step_impl else None
            if ITEM_START.match(line) or impl_start or method:
                if current:
                    out[(module, current)] = "\n".join(body)
                if impl_start or ITEM_START.match(line):
                    step_impl = impl_start.group(1) if impl_start else None
                m = FN_DEF.match(line)
                current = m.group(1) if m else f"StepLambda for {step_impl}::{method.group(1)}" if method else None
                body = []
            if current:
                body.append(line)
        if current:
            out[(module, current)] = "\n".join(body)
        if path.name == "engine.rs":
            for step_type, step_module in run_and_delete_steps(path.read_text()).items():
                out[("engine", f"StepLambda for {step_type}::apply")] = f"{step_module}::run("
                out[("engine", f"StepLambda for {step_type}::delete")] = f"{step_module}::delete("
    return out


def reachable(
    functions: dict[tuple[str, str], str], starts: list[tuple[str, str]], opaque: frozenset[tuple[str, str]] = frozenset()
) -> set[tuple[str, str]]:
    """The functions `starts` and what they call in shared/src, transitively (not through `opaque`)."""
    seen: set[tuple[str, str]] = set()
    todo = list(starts)
    while todo:
        key = todo.pop()
        if key in seen:
            continue
        seen.add(key)
        if key in opaque:
            continue
        body = functions[key]
        todo += [(m, f) for m, f in QUALIFIED_CALL.findall(body) if (m, f) in functions]
        todo += [(key[0], f) for f in LOCAL_CALL.findall(body) if (key[0], f) in functions]
        for lam, method in STEP_LAMBDA_CALL.findall(body):
            # `run` is the trait's default unless overridden: the step's apply and delete.
            todo += [
                k
                for m in ([method] if ("engine", f"StepLambda for {lam}::{method}") in functions else ["apply", "delete"])
                if (k := ("engine", f"StepLambda for {lam}::{m}")) in functions
            ]
    return seen


def reachable_actions(functions: dict[tuple[str, str], str], starts: list[tuple[str, str]]) -> set[str]:
    """The IAM actions of the functions `starts` and of what they call in shared/src."""
    actions = {a for key in reachable(functions, starts) for a in SDK_ACTION.findall(functions[key])}
    return actions - NEEDS_NO_PERMISSION


STEP_LAMBDA = re.compile(r"\bserve::<(?:\w+::)*(\w+)>")
ENTRY_ENUM = re.compile(r"\bEntry::(\w+)")
SHARED_CALL = re.compile(r"\bo11y_shared::(\w+)::(\w+)\s*\(")


def snake(pascal_name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", pascal_name).lower()


def entry_points(code: dict[tuple[str, str], str], binary: str) -> list[tuple[str, str]] | None:
    """Where function `binary`'s AWS calls start in shared/src, or None when it cannot be told.

    A step Lambda (`lambda::serve::<lambdas::X>()`) runs engine.rs's `impl StepLambda for X`
    (apply and delete, and what they call) and, where there is one, shared/src/steps/<x>.rs (every
    function of it: methods are not traced); any other Lambda runs the shared functions its main.rs
    calls."""
    crates = {b: crate for crate in FUNCTION_CRATES for b in crate_binaries(crate)}
    main = crates[binary] / "src" / "main.rs" if binary in crates else None
    if main is None or not main.exists():
        return None
    text = main.read_text()
    step = STEP_LAMBDA.search(text)
    if step:
        methods = [k for k in code if k[0] == "engine" and k[1].startswith(f"StepLambda for {step.group(1)}::")]
        assert methods, f"{binary}: serves {step.group(1)}, which engine.rs does not implement"
        module = snake(step.group(1))
        return methods + [k for k in code if k[0] == module and (SHARED / "steps" / f"{module}.rs").exists()]
    entry = ENTRY_ENUM.search(text)
    if entry:
        # lambda.rs: `Entry::CfnHandler => crate::cfn::handle(...)` (or `Box::pin(crate::cfn::handle(...))`)
        lambda_rs = (SHARED / "lambda.rs").read_text()
        targets = re.findall(rf"Entry::{entry.group(1)}\s*=>\s*(?:Box::pin\()?crate::(\w+)::(\w+)\s*\(", lambda_rs)
        return [key for key in targets if key in code] or None
    return [key for key in SHARED_CALL.findall(text) if key in code] or None


def test_each_function_may_make_the_calls_its_code_reaches(
    functions: dict[str, dict[str, Any]], resources: dict[str, Any]
) -> None:
    """From each function's entry point through shared/src, every `from_sdk("svc:Action")` call
    reached must be allowed by that function's role (plan: every read; its writes are dry runs)."""
    code = rust_functions()
    assert code, "no Rust functions found in shared/src"
    problems = []
    checked = 0
    for fn in functions.values():
        binary = str(binary_of(fn))
        starts = entry_points(code, binary)
        if starts is None:
            continue
        checked += 1
        wanted = reachable_actions(code, starts)
        if binary == "plan":
            wanted = {a for a in wanted if a.split(":", 1)[1].startswith(READ_VERBS) or a in PLAN_WRITES}
        missing = wanted - role_actions(resources, fn)
        if missing:
            problems.append(f"{binary}: its code may call {sorted(missing)}, which its role does not allow")
    assert not problems, "\n".join(problems)
    assert checked >= len(functions) // 2, f"only {checked} functions could be traced to their code: has the layout changed?"


def test_every_aws_call_of_the_workflow_is_granted_to_some_function(
    functions: dict[str, dict[str, Any]], resources: dict[str, Any]
) -> None:
    """Everything engine::run_step can reach (the status steps included) is allowed somewhere."""
    code = rust_functions()
    used = reachable_actions(code, [key for key in code if key[0] == "engine"])
    assert used, "engine.rs reaches no from_sdk(\"service:Action\") call: has the convention changed?"
    granted = {a for fn in functions.values() for a in role_actions(resources, fn)}
    missing = sorted(used - granted)
    assert not missing, f"reachable from engine.rs but granted to no function: {missing}"


def test_every_labelled_aws_call_is_reached_by_some_function(functions: dict[str, dict[str, Any]]) -> None:
    """The tracer follows every call it should: each `from_sdk("svc:Action")` label in shared/src is
    reached from at least one function's entry point. A label reached by none means a call path the
    tracer no longer sees (an import alias, a method, a new module), so the role checks above would
    pass without checking it."""
    code = rust_functions()
    labelled = {a for body in code.values() for a in SDK_ACTION.findall(body)} - NEEDS_NO_PERMISSION
    reached: set[str] = set()
    for fn in functions.values():
        starts = entry_points(code, str(binary_of(fn)))
        if starts:
            reached |= reachable_actions(code, starts)
    unreached = sorted(labelled - reached)
    assert not unreached, f"labelled in shared/src but reached by no function's entry point: {unreached}"


def test_plan_writes_nothing(functions: dict[str, dict[str, Any]], resources: dict[str, Any]) -> None:
    for fn in functions.values():
        if binary_of(fn) == "plan":
            writes = {
                a
                for a in role_actions(resources, fn) - INFRASTRUCTURE - PLAN_WRITES
                if not a.split(":", 1)[1].startswith(READ_VERBS)
            }
            assert not writes, f"plan only reads (and makes its Grafana token), yet its role allows {sorted(writes)}"


# --- environment ----------------------------------------------------------------------------------
# Every environment variable shared/src reads, and what the template must do with it. A variable
# the code starts reading fails test_every_environment_variable_is_classified until it is added here.
ENV_REQUIRED = "set on every function whose code reads it"
ENV_OPTIONAL = "optional: the code has a default"
ENV_LOCAL_ONLY = "local stack only: never set in AWS"
ENV_EVERYWHERE = "set on every function (test_scope_variables_carry_the_parameters_the_roles_are_scoped_by)"
# The scope variables (shared/src/domain/scope.rs) and the template parameter each carries.
SCOPE = {
    "O11Y_GRAFANA_ROLE_NAME_PATTERN": "GrafanaRoleNamePattern",
    "O11Y_WRITE_POLICY_NAME_PATTERN": "WritePolicyNamePattern",
    "O11Y_READ_POLICY_NAME_PATTERN": "ReadPolicyNamePattern",
    "O11Y_EKS_CLUSTER_NAME_PATTERN": "EksClusterNamePattern",
    "O11Y_SSM_PREFIX": "SsmPrefix",
    "O11Y_VENDING_ROLE_NAME": "VendingRoleName",
}
ENVIRONMENT = {
    # The one state machine the entry points start (lambda::serve_entry): no default.
    "O11Y_STATE_MACHINE_ARN": ENV_REQUIRED,
    # The organisation defaults vending-hook reads: its role may read only that parameter, so the
    # code's default name would be denied whenever the parameter is not the default.
    "O11Y_VENDING_DEFAULTS_PARAMETER": ENV_REQUIRED,
    # The stack's scope (shared/src/domain/scope.rs): what the roles may act on. On every
    # function, so that each one that resolves an input refuses one outside it up front.
    **{var: ENV_EVERYWHERE for var in SCOPE},
    # The wait schedule (shared/src/domain/poll.rs).
    "O11Y_WAIT_FIRST_SECONDS": ENV_OPTIONAL,
    "O11Y_WAIT_MAX_SECONDS": ENV_OPTIONAL,
    "O11Y_AMP_WAIT_TOTAL_SECONDS": ENV_OPTIONAL,
    "O11Y_GRAFANA_WAIT_TOTAL_SECONDS": ENV_OPTIONAL,
    "O11Y_AMP_EXPECTED_SECONDS": ENV_OPTIONAL,
    "O11Y_GRAFANA_EXPECTED_SECONDS": ENV_OPTIONAL,
    "O11Y_WAIT_NEAR_SECONDS": ENV_OPTIONAL,
    # Lambda sets AWS_LAMBDA_LOG_LEVEL from LoggingConfig.ApplicationLogLevel.
    "RUST_LOG": ENV_OPTIONAL,
    "AWS_LAMBDA_LOG_LEVEL": ENV_OPTIONAL,
    # Redirections for the local stack: in AWS, the first would send Grafana API calls (with a
    # service-account token) elsewhere, the second would let cfn-handler PUT to any URL under it.
    "O11Y_GRAFANA_API_URL": ENV_LOCAL_ONLY,
    "O11Y_CFN_RESPONSE_URL_PREFIX": ENV_LOCAL_ONLY,
}
ENV_LITERAL = re.compile(r'"(O11Y_[A-Z0-9_]+)"|env::var\("([A-Z0-9_]+)"\)')


def code_without_tests(path: Path) -> str:
    """The file without its `#[cfg(test)] mod ... { ... }` blocks."""
    out, skipping, previous = [], False, ""
    for line in path.read_text().splitlines():
        if previous.strip() == "#[cfg(test)]" and line.startswith("mod "):
            skipping = True
            out.pop()
        elif not skipping:
            out.append(line)
        elif line == "}":
            skipping = False
        previous = line
    return "\n".join(out)


def environment_read() -> dict[str, set[str]]:
    """Variable -> the shared/src files (stems) that name it, outside tests."""
    out: dict[str, set[str]] = {}
    for path in SHARED.rglob("*.rs"):
        for a, b in ENV_LITERAL.findall(code_without_tests(path)):
            out.setdefault(a or b, set()).add(path.stem)
    return out


def function_code(code: dict[tuple[str, str], str], binary: str) -> set[tuple[str, str]]:
    """The shared/src functions that `binary`'s main.rs reaches (its entry points and the
    o11y_shared functions it calls directly, such as lambda::serve_entry; lambda::entry_handler,
    which dispatches on the entry, stands for the entry point's own function only)."""
    crates = {b: crate for crate in FUNCTION_CRATES for b in crate_binaries(crate)}
    main = crates[binary] / "src" / "main.rs"
    starts = (entry_points(code, binary) or []) + [k for k in SHARED_CALL.findall(main.read_text()) if k in code]
    return reachable(code, starts, frozenset({("lambda", "entry_handler")}))


def variables(fn: dict[str, Any]) -> dict[str, Any]:
    return fn["Properties"].get("Environment", {}).get("Variables", {}) or {}


def test_every_environment_variable_is_classified() -> None:
    read = environment_read()
    assert "O11Y_STATE_MACHINE_ARN" in read, "no environment variable found in shared/src: has the convention changed?"
    unknown = {v: sorted(files) for v, files in read.items() if v not in ENVIRONMENT}
    assert not unknown, f"read by shared/src but not in ENVIRONMENT (decide whether AWS must set it): {unknown}"


def test_required_variables_are_set_where_the_code_reads_them(functions: dict[str, dict[str, Any]]) -> None:
    code = rust_functions()
    problems = []
    for var in (v for v, kind in ENVIRONMENT.items() if kind == ENV_REQUIRED):
        readers = {k for k, body in code.items() if f'"{var}"' in body}
        assert readers, f"{var}: no function of shared/src reads it (move it out of ENV_REQUIRED?)"
        reached_by = []
        for fn in functions.values():
            binary = str(binary_of(fn))
            if readers & function_code(code, binary):
                reached_by.append(binary)
                if var not in variables(fn):
                    problems.append(f"{binary}: its code reads {var} ({sorted(readers)}), which the template does not set")
        if not reached_by:
            problems.append(f"{var}: read by {sorted(readers)}, which no function's code reaches: has the layout changed?")
    assert not problems, "\n".join(problems)


def test_scope_variables_carry_the_parameters_the_roles_are_scoped_by(functions: dict[str, dict[str, Any]]) -> None:
    """Each scope variable is !Ref of the parameter scope.rs names beside it, on every function."""
    scope_rs = (REPO / "shared/src/domain/scope.rs").read_text()
    problems = []
    for var, param in SCOPE.items():
        pairs = re.findall(r"Limit::(\w+) => \"" + var + '"', scope_rs)
        if not pairs or f'Limit::{pairs[0]} => "{param}"' not in scope_rs:
            problems.append(f"scope.rs does not pair {var} with {param}")
        for name, fn in functions.items():
            if variables(fn).get(var) != {"Ref": param}:
                problems.append(f"{name}: {var} is {variables(fn).get(var)!r}, not !Ref {param}")
    assert not problems, "\n".join(problems)


def test_local_stack_variables_are_never_set_in_aws(template: dict[str, Any], functions: dict[str, dict[str, Any]]) -> None:
    local = {v for v, kind in ENVIRONMENT.items() if kind == ENV_LOCAL_ONLY}
    problems = [f"{name}: sets {sorted(local & set(variables(fn)))}" for name, fn in functions.items() if local & set(variables(fn))]
    assert not problems, "\n".join(problems)


def test_entry_points_start_this_stacks_state_machine(
    functions: dict[str, dict[str, Any]], state_machines: dict[str, dict[str, Any]], resources: dict[str, Any]
) -> None:
    """O11Y_STATE_MACHINE_ARN is the template's state machine, which the role may start."""
    problems = []
    for name, fn in functions.items():
        arn = variables(fn).get("O11Y_STATE_MACHINE_ARN")
        if arn is None:
            continue
        target = ref_target(arn)
        if target not in state_machines:
            problems.append(f"{name}: O11Y_STATE_MACHINE_ARN is {arn}, not !Ref of the template's state machine")
            continue
        role = resources[str(getatt_target(fn["Properties"].get("Role")))]
        starts = [
            st
            for _, st in statements(role["Properties"].get("Policies", []))
            if "states:StartExecution" in as_list(st.get("Action"))
        ]
        if not any(ref_target(r) == target for st in starts for r in as_list(st.get("Resource"))):
            problems.append(f"{name}: its role may not states:StartExecution {target}")
    assert not problems, "\n".join(problems)


def test_vending_hook_reads_the_defaults_parameter_its_role_allows(
    template: dict[str, Any], functions: dict[str, dict[str, Any]], resources: dict[str, Any]
) -> None:
    assert "OrganisationDefaultsParameter" in template.get("Parameters", {}), "no OrganisationDefaultsParameter parameter"
    hooks = [fn for fn in functions.values() if binary_of(fn) == "vending-hook"]
    assert len(hooks) == 1, "no vending-hook function"
    fn = hooks[0]
    assert ref_target(variables(fn).get("O11Y_VENDING_DEFAULTS_PARAMETER")) == "OrganisationDefaultsParameter"
    role = resources[str(getatt_target(fn["Properties"].get("Role")))]
    allowed = [
        json.dumps(st.get("Resource"))
        for _, st in statements(role["Properties"].get("Policies", []))
        if "ssm:GetParameter" in as_list(st.get("Action"))
    ]
    assert any("parameter${OrganisationDefaultsParameter}" in r for r in allowed), (
        f"vending-hook's role does not allow ssm:GetParameter on the OrganisationDefaultsParameter: {allowed}"
    )


# --- events ---------------------------------------------------------------------------------------
CFN_RS = SHARED / "cfn.rs"
VENDING_RS = SHARED / "vending.rs"


def rules_to(resources: dict[str, Any], function: str) -> dict[str, dict[str, Any]]:
    """The AWS::Events::Rule resources with a target that is `function`'s ARN."""
    return {
        name: res
        for name, res in resources.items()
        if res.get("Type") == "AWS::Events::Rule"
        and any(getatt_target(t.get("Arn")) == function for t in res["Properties"].get("Targets", []))
    }


def invoke_permission(resources: dict[str, Any], function: str, rule: str) -> bool:
    """An AWS::Lambda::Permission lets EventBridge invoke `function` from `rule` (same Condition)."""
    for res in resources.values():
        p = res.get("Properties", {})
        if (
            res.get("Type") == "AWS::Lambda::Permission"
            and ref_target(p.get("FunctionName")) == function
            and p.get("Action") == "lambda:InvokeFunction"
            and "events." in json.dumps(p.get("Principal"))
            and getatt_target(p.get("SourceArn")) == rule
            and res.get("Condition") == resources[rule].get("Condition")
        ):
            return True
    return False


def test_control_tower_events_reach_the_vending_hook(template: dict[str, Any], resources: dict[str, Any]) -> None:
    """vending.rs handles `aws.controltower` CreateManagedAccount/UpdateManagedAccount: a rule sends
    exactly those to vending-hook (when EnableControlTowerHook), with the permission to invoke it."""
    code = code_without_tests(VENDING_RS)
    handled = set(re.findall(r'"(\w+ManagedAccount)"\s*=>', code))
    assert handled, "vending.rs handles no Control Tower event name: has the code changed?"
    rules = {
        n: r for n, r in rules_to(resources, "VendingHookFunction").items()
        if r["Properties"].get("EventPattern", {}).get("source") == ["aws.controltower"]
    }
    assert len(rules) == 1, f"expected one aws.controltower rule targeting VendingHookFunction, found {sorted(rules)}"
    (name, rule), = rules.items()
    pattern = rule["Properties"]["EventPattern"]
    assert set(pattern.get("detail", {}).get("eventName", [])) == handled, (
        f"{name}: eventName {pattern.get('detail', {}).get('eventName')} but vending.rs handles {sorted(handled)}"
    )
    assert rule.get("Condition") == "ControlTowerHookEnabled", f"{name}: not conditional on EnableControlTowerHook"
    assert "EnableControlTowerHook" in template.get("Parameters", {})
    assert invoke_permission(resources, "VendingHookFunction", name), f"{name}: EventBridge may not invoke vending-hook"


def test_ended_executions_reach_the_cfn_handler(resources: dict[str, Any], state_machines: dict[str, dict[str, Any]]) -> None:
    """cfn.rs answers CloudFormation for an execution that ended without reaching finish: the
    statuses it handles, for the detail-type it checks, come from this stack's state machine."""
    code = code_without_tests(CFN_RS)
    detail_type = re.search(r'Some\("(Step Functions Execution Status Change)"\)', code)
    assert detail_type, "cfn.rs does not check the Step Functions status-change detail-type: has the code changed?"
    handled = re.search(r'matches!\(status,\s*((?:"[A-Z_]+"\s*\|?\s*)+)\)', code)
    assert handled, "cfn.rs: no `matches!(status, \"STATUS\" | ...)` in handle_status_change: has the code changed?"
    statuses = set(re.findall(r'"([A-Z_]+)"', handled.group(1)))
    rules = {
        n: r for n, r in rules_to(resources, "CfnHandlerFunction").items()
        if r["Properties"].get("EventPattern", {}).get("source") == ["aws.states"]
    }
    assert len(rules) == 1, f"expected one aws.states rule targeting CfnHandlerFunction, found {sorted(rules)}"
    (name, rule), = rules.items()
    pattern = rule["Properties"]["EventPattern"]
    assert pattern.get("detail-type") == [detail_type.group(1)], f"{name}: detail-type {pattern.get('detail-type')}"
    detail = pattern.get("detail", {})
    assert set(detail.get("status", [])) == statuses, f"{name}: status {detail.get('status')}, cfn.rs handles {sorted(statuses)}"
    machines = {ref_target(a) for a in detail.get("stateMachineArn", [])}
    assert machines and machines <= set(state_machines), f"{name}: stateMachineArn must be !Ref of this stack's machine"
    assert "Condition" not in rule, f"{name}: CloudFormation requests always need it"
    assert invoke_permission(resources, "CfnHandlerFunction", name), f"{name}: EventBridge may not invoke cfn-handler"


def test_each_step_binary_serves_its_own_step() -> None:
    """functions/<step>/src/main.rs is `lambda::serve::<lambdas::<Step>>()` for its own step: the
    binary links that step only (engine.rs, StepLambda), and the template's Binary is that step."""
    engine = (SHARED / "engine.rs").read_text()
    implemented = set(re.findall(STEP_IMPL.pattern, engine, re.M)) | set(run_and_delete_steps(engine))
    assert implemented, "engine.rs implements StepLambda for no step: has the layout changed?"
    problems, served = [], set()
    for crate in FUNCTION_CRATES:
        main = crate / "src" / "main.rs"
        m = STEP_LAMBDA.search(main.read_text()) if main.exists() else None
        if not m:
            continue
        served.add(m.group(1))
        if m.group(1) != pascal(crate.name):
            problems.append(f"functions/{crate.name}: serves {m.group(1)}, not {pascal(crate.name)}")
    missing = implemented - served
    assert not missing, f"StepLambda types no function serves: {sorted(missing)}"
    assert not problems, "\n".join(problems)
