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

# The custom resource's Data keys: the output contract's short fields.
OUTPUT_DATA_KEYS = {
    "irsaRoleArn",
    "ampWorkspaceId",
    "ampWorkspaceArn",
    "remoteWriteUrl",
    "writePolicyArn",
    "grafanaRoleArn",
    "readPolicyArn",
    "grafanaWorkspaceId",
    "grafanaUrl",
    "helmValuesParameter",
}


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


INPUT_RS = REPO / "shared" / "src" / "input.rs"
STRUCT = re.compile(r"pub struct (\w+) \{(.*?)\n\}", re.S)
FIELD = re.compile(r"^\s*pub (\w+): ([^,]+),", re.M)


def input_contract() -> dict[str, Any]:
    """The input contract's field tree, from the serde structs of shared/src/input.rs (camelCase)."""
    structs = {name: FIELD.findall(body) for name, body in STRUCT.findall(INPUT_RS.read_text())}

    def tree(name: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field, ty in structs.get(name, []):
            camel = re.sub(r"_(\w)", lambda m: m.group(1).upper(), field)
            nested = next((t for t in re.findall(r"\w+", ty) if t in structs), None)
            out[camel] = tree(nested) if nested else None
        return out

    contract = tree("ProvisionInput")
    assert "deploymentName" in contract, "shared/src/input.rs has no ProvisionInput struct any more: update this test"
    return contract


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_follow_the_contracts(path: Path) -> None:
    """Custom resource properties are input-contract fields (shared/src/input.rs); the attributes
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

    for target, attribute in getatts(example):
        if target in custom and attribute not in OUTPUT_DATA_KEYS:
            problems.append(f"!GetAtt {target}.{attribute}: not an output-contract field")
    assert not problems, "\n".join(problems)


# --- The roles against the code ------------------------------------------------------------------
# Every AWS call in shared/ is labelled `from_sdk("<service>:<Action>", ...)` with its IAM action.

SHARED = REPO / "shared" / "src"
SDK_ACTION = re.compile(r'from_sdk\(\s*"([a-z0-9-]+:[A-Za-z0-9]+)"')
NEEDS_NO_PERMISSION = {"sts:GetCallerIdentity"}
READ_VERBS = ("Get", "List", "Describe")
# What every role may do besides the step's own calls: its logs, X-Ray, the vending role.
INFRASTRUCTURE = {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords", "sts:AssumeRole"}


def sdk_actions(path: Path) -> set[str]:
    return set(SDK_ACTION.findall(path.read_text())) - NEEDS_NO_PERMISSION


def role_actions(resources: dict[str, Any], function: dict[str, Any]) -> set[str]:
    role = resources[str(getatt_target(function["Properties"].get("Role")))]
    return {a for _, st in statements(role["Properties"].get("Policies", [])) for a in as_list(st.get("Action"))}


ITEM_START = re.compile(r"^(pub|async|fn|impl|mod|const|static|struct|enum|use|type|#\[cfg\(test\)\])\b")
FN_DEF = re.compile(r"^(?:pub(?:\([^)]*\))? )?(?:async )?fn (\w+)")
QUALIFIED_CALL = re.compile(r"\b(\w+)::(\w+)\s*\(")
LOCAL_CALL = re.compile(r"(?<![\w:.])(\w+)\s*\(")


def rust_functions() -> dict[tuple[str, str], str]:
    """(module, function) -> body, for the top-level functions of shared/src (tests excluded)."""
    out: dict[tuple[str, str], str] = {}
    for path in SHARED.rglob("*.rs"):
        module, current, body = path.stem, None, []
        for line in path.read_text().splitlines():
            if ITEM_START.match(line):
                if current:
                    out[(module, current)] = "\n".join(body)
                m = FN_DEF.match(line)
                current, body = (m.group(1) if m else None), []
            if current:
                body.append(line)
        if current:
            out[(module, current)] = "\n".join(body)
    return out


def reachable_actions(functions: dict[tuple[str, str], str], starts: list[tuple[str, str]]) -> set[str]:
    """The IAM actions of the functions `starts` and of what they call in shared/src."""
    seen: set[tuple[str, str]] = set()
    todo = list(starts)
    actions: set[str] = set()
    while todo:
        key = todo.pop()
        if key in seen:
            continue
        seen.add(key)
        body = functions[key]
        actions |= set(SDK_ACTION.findall(body))
        todo += [(m, f) for m, f in QUALIFIED_CALL.findall(body) if (m, f) in functions]
        todo += [(key[0], f) for f in LOCAL_CALL.findall(body) if (key[0], f) in functions]
    return actions - NEEDS_NO_PERMISSION


STEP_ENUM = re.compile(r"\bStep::(\w+)")
ENTRY_ENUM = re.compile(r"\bEntry::(\w+)")
SHARED_CALL = re.compile(r"\bo11y_shared::(\w+)::(\w+)\s*\(")


def snake(pascal_name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", pascal_name).lower()


def entry_points(code: dict[tuple[str, str], str], binary: str) -> list[tuple[str, str]] | None:
    """Where function `binary`'s AWS calls start in shared/src, or None when it cannot be told.

    A step Lambda (`lambda::serve(Step::X)`) runs shared/src/steps/<x>.rs (every function of it:
    apply and delete); any other Lambda runs the shared functions its main.rs calls."""
    crates = {b: crate for crate in FUNCTION_CRATES for b in crate_binaries(crate)}
    main = crates[binary] / "src" / "main.rs" if binary in crates else None
    if main is None or not main.exists():
        return None
    text = main.read_text()
    step = STEP_ENUM.search(text)
    if step:
        module = snake(step.group(1))
        if (SHARED / "steps" / f"{module}.rs").exists():
            return [key for key in code if key[0] == module]
        if ("engine", module) in code:  # plan, finish: a function of the engine
            return [("engine", module)]
        return None  # the status steps run a branch of engine::run_step: not separable
    entry = ENTRY_ENUM.search(text)
    if entry:
        # lambda.rs: `Entry::CfnHandler => crate::cfn::handle(...)`
        lambda_rs = (SHARED / "lambda.rs").read_text()
        targets = re.findall(rf"Entry::{entry.group(1)}\s*=>\s*crate::(\w+)::(\w+)\s*\(", lambda_rs)
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
            wanted = {a for a in wanted if a.split(":", 1)[1].startswith(READ_VERBS)}
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


def test_plan_writes_nothing(functions: dict[str, dict[str, Any]], resources: dict[str, Any]) -> None:
    for fn in functions.values():
        if binary_of(fn) == "plan":
            writes = {
                a for a in role_actions(resources, fn) - INFRASTRUCTURE if not a.split(":", 1)[1].startswith(READ_VERBS)
            }
            assert not writes, f"plan only reads, yet its role allows {sorted(writes)}"
