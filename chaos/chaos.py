#!/usr/bin/env python3
"""Reliability of o11y-provisioner under faults, crashes, concurrency and hostile input.

Runs against a local stack started by `scripts/chaos` (moto with Step Functions execution, the
router serving the real function binaries, the Grafana emulator, Prometheus), whose description
(`devstack.json`) is passed with --stack. Seven phases, each recording violations:

1. faults:      N create-then-delete cycles while the router injects throttling, HTTP 500/503,
                connection resets and latency at --rate on every AWS call, Lambda invokes included;
                every execution converges (its own retries, or one re-run), no duplicate after
                apply, nothing left after delete, the IRSA trust policy back to the original.
2. crashes:     a function process SIGKILLed at a chosen point of a step (after its Nth write);
                the execution is retried or one re-run completes; nothing duplicated or leaked.
3. concurrency: two runs of one deployment at once (console twice; a redelivered CloudFormation
                request; CloudFormation and console): one set of resources, and a run that does
                not proceed fails with ConflictError "another run holds the deployment".
4. corpus:      100+ bad inputs across the console, cfn-handler and vending-hook: each rejected
                naming the field, zero AWS writes, CloudFormation answered FAILED exactly once,
                no response PUT to a non-CloudFormation URL; roles outside the security boundary
                (untagged, tagged false, admin, service-linked) refused with zero writes.
4b. deny:       trust policies with a Deny IAM would apply to our collector (absent keys,
                IfExists, Null, ForAllValues, case-insensitive keys, unknown operators): verify
                fails the apply on irsa-trust-collector, and the delete after it cleans up.
5. edits:       the edit corpus (edits.py): every field changed on a converged deployment, alone,
                in pairs and back and forth, shared IRSA roles, foreign look-alikes; after each
                run the whole account's inventory against an independent oracle: no orphan,
                nothing missing, no foreign resource touched.
6. secrets:     logs, execution outputs and histories, SSM values: no Grafana key, access key id,
                secret key or presigned signature.

Python 3 standard library plus boto3 (from the repository's .venv), and the local stack's client
(tests/localstack/stack.py); what each request in the router's log is for is the router's
`purpose` tag (tests/localstack/router/README.md). See chaos/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path

import botocore.exceptions
from botocore.config import Config

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests/localstack"))
from stack import ACCOUNT_ID as ACCOUNT  # noqa: E402
from stack import FUNCTION_ARN_PLACEHOLDER, REGION, Execution, Stack, execution_arn, kebab  # noqa: E402
from stack import STATE_MACHINE_ARN as SM_ARN  # noqa: E402
from inventory import decode_doc, deployment_view, normalize, snapshot  # noqa: E402

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
CLUSTER = "chaos-eks"
NAMESPACE = "chaos-app"
IRSA_ROLE = "chaos-irsa"  # the corpus's (never created: every corpus input fails validation first)
BUCKET = "cfn-responses"
STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/chaos/0c0a0000-1111-2222-3333-444455556666"
DEP_TAG = "o11y-provisioner:deployment"
OUTPUT_LEAVES = (
    "irsa-role-arn", "amp-workspace-id", "amp-workspace-arn", "prometheus-endpoint", "remote-write-url",
    "write-policy-arn", "grafana-role-arn", "read-policy-arn", "grafana-workspace-id", "grafana-url",
    "helm-values",
)
CONFLICT_MESSAGE = "another run holds the deployment"
# Error names the state machine does not retry but a re-run recovers from (the design's answer to
# a crashed or timed-out Lambda, and to retries exhausted on a transient error).
RERUNNABLE = {"Runtime.ExitError", "Lambda.Unknown", "Sandbox.Timedout", "States.Timeout", "States.TaskFailed",
              "TransientError", "Exception", "IamPropagationError", "Lambda.ServiceException",
              "Lambda.TooManyRequestsException", "Lambda.SdkClientException", "Lambda.AWSLambdaException"}
# Steps that only read (a crash "after write N" does not exist for them).
READ_ONLY_STEPS = ("amp-status", "grafana-status")
LATENCY_SERVICES = ["iam", "sts", "ssm", "aps", "grafana", "eks"]

SECRET_PATTERNS = {
    "grafana-key": re.compile(r"glsa_[A-Za-z0-9]{8,}"),
    "access-key-id": re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    "secret-key-name": re.compile(r"aws_secret_access_key", re.IGNORECASE),
    "secret-key-value": re.compile(r"(?i)\"?secretAccessKey\"?\s*[:=]\s*\"?(?!testing\b)[A-Za-z0-9/+]{30,}"),
}
SIGNATURE = re.compile(r"X-Amz-Signature=", re.IGNORECASE)


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# The stack
# ------------------------------------------------------------------------------------------------

# The harness's own clients retry (it must not fail on a transient error of its own); its Lambda
# invokes through the router do not.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 8}, read_timeout=120, connect_timeout=10)
INVOKE_CONFIG = Config(retries={"total_max_attempts": 1}, read_timeout=300)


class ChaosStack(Stack):
    """The private devstack of scripts/chaos (its `devstack.json`: from_state_file), with the S3
    presigner of CloudFormation's response URLs."""

    @cached_property
    def s3_presign(self):
        """S3 naming the router: CloudFormation's response URLs are SigV4 presigned (X-Amz-Signature
        in the query), and the functions accept response URLs under the router
        (O11Y_CFN_RESPONSE_URL_PREFIX)."""
        return self.client("s3", self.router_url, Config(s3={"addressing_style": "path"}, signature_version="s3v4"))


# ------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------

class Results:
    def __init__(self):
        self.lock = threading.Lock()
        self.violations: list[dict] = []
        self.notes: list[str] = []
        self.figures: dict = {
            "cycles_planned": 0, "cycles_done": 0,
            "runs": 0, "runs_converged": 0, "executions": 0, "converged": 0, "reruns": 0,
            "sfn_retries": 0, "faults": {}, "faults_total": 0, "faults_on_invokes": 0, "sdk_retries": 0,
            "duplicates": 0, "leaked": 0, "trust_restored": 0, "trust_checked": 0,
            "crashes_planned": 0, "crashes_killed": 0, "crashes_missed": 0, "crashes_recovered": 0,
            "concurrency_checks": 0, "concurrency_ok": 0,
            "corpus_size": 0, "corpus_rejected": 0, "corpus_by_entry": {},
            "writes_on_bad_input": 0, "foreign_puts": 0,
            "secrets_found": 0, "presigned_in_history": 0, "ssm_values_scanned": 0,
            "grafana_tokens_left": 0, "deny_cases": 0, "deny_failed_by_verify": 0,
        }

    def violation(self, check: str, what: str, detail=None) -> None:
        with self.lock:
            self.violations.append({"check": check, "what": what, "detail": detail})
        log(f"VIOLATION [{check}] {what}" + (f" :: {str(detail)[:600]}" if detail is not None else ""))

    def note(self, msg: str) -> None:
        with self.lock:
            self.notes.append(msg)
        log(f"note: {msg}")

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.figures[key] += n

    def count_faults(self, entries: list) -> None:
        with self.lock:
            for e in entries:
                k = e.get("fault")
                if k:
                    self.figures["faults"][k] = self.figures["faults"].get(k, 0) + 1
                    self.figures["faults_total"] += 1
                    if e.get("service") == "lambda":
                        self.figures["faults_on_invokes"] += 1
                    elif k != "latency":
                        self.figures["sdk_retries"] += 1


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------

def asl_steps() -> tuple[list[str], list[str]]:
    """(apply steps, delete steps): the functions of the ASL's Task states, in file order (the
    generator writes them in flow order), without Plan; delete steps are the Delete* states'."""
    states = json.loads((REPO / "statemachine/provision.asl.json").read_text())["States"]
    apply, delete = [], []
    for name, st in states.items():
        m = FUNCTION_ARN_PLACEHOLDER.fullmatch(st.get("Resource", ""))
        if not m or name == "Plan":
            continue
        fn = kebab(m.group(1))
        target = delete if name.startswith("Delete") else apply
        if fn not in target and not (name.startswith("GrafanaDeletion")):
            target.append(fn)
    return apply, delete


def eksctl_trust(provider_arn: str, host_path: str) -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                f"{host_path}:sub": f"system:serviceaccount:{NAMESPACE}:app",
                f"{host_path}:aud": "sts.amazonaws.com",
            }},
        }],
    }


def seed(stack: ChaosStack) -> dict:
    """The user's side: an EKS cluster and its IAM OIDC provider (each deployment's IRSA role comes
    with it: make_irsa); the organisation's vending defaults; the CloudFormation response bucket."""
    try:
        cluster = stack.eks.create_cluster(
            name=CLUSTER, roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks-cluster",
            resourcesVpcConfig={"subnetIds": ["subnet-1"]},
        )["cluster"]
    except stack.eks.exceptions.ResourceInUseException:  # a second run on the same stack
        cluster = stack.eks.describe_cluster(name=CLUSTER)["cluster"]
    issuer = cluster["identity"]["oidc"]["issuer"]
    host_path = issuer.removeprefix("https://").rstrip("/")
    try:
        provider = stack.iam.create_open_id_connect_provider(
            Url=issuer, ClientIDList=["sts.amazonaws.com"], ThumbprintList=["9e99a48a9960b14926bb7f3b02e22da2b0ab7280"],
        )["OpenIDConnectProviderArn"]
    except stack.iam.exceptions.EntityAlreadyExistsException:
        provider = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{host_path}"
    stack.ssm.put_parameter(
        Name="/o11y/vending-defaults", Type="String", Overwrite=True,
        Value=json.dumps({"cluster": {"name": "{accountName}-eks"}, "namespace": "obs", "irsaRoleName": "obs-irsa"}),
    )
    try:
        stack.s3.create_bucket(Bucket=BUCKET)
    except stack.s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    seed_boundary_roles(stack, provider, host_path)
    return {"issuer": issuer, "provider": provider, "host_path": host_path, "trust": {}}


OPT_IN_TAG = {"Key": "o11y-provisioner:irsa", "Value": "true"}


def seed_boundary_roles(stack: ChaosStack, provider: str, host_path: str) -> None:
    """The corpus's roles around the security boundary (chaos/corpus/generate.py, REFUSED_ROLES):
    untagged, tagged `false`, an untagged administrator role, a service-linked role (tagged opt-in
    even: still refused), an opted-in IRSA role and an untagged foreign Grafana role."""
    account_root = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}]}
    grafana = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "grafana.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    roles = [
        ("chaos-untagged-irsa", eksctl_trust(provider, host_path), []),
        ("chaos-tag-false-irsa", eksctl_trust(provider, host_path), [dict(OPT_IN_TAG, Value="false")]),
        ("chaos-admin", account_root, []),
        ("chaos-opted-in-irsa", eksctl_trust(provider, host_path), [OPT_IN_TAG]),
        ("chaos-untagged-grafana", grafana, [{"Key": "team", "Value": "x"}]),
    ]
    for name, trust, tags in roles:
        try:
            stack.iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust), Tags=tags)
        except stack.iam.exceptions.EntityAlreadyExistsException:
            pass
    admin = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    try:
        admin_arn = stack.iam.create_policy(PolicyName="chaos-admin-all", PolicyDocument=admin)["Policy"]["Arn"]
    except stack.iam.exceptions.EntityAlreadyExistsException:
        admin_arn = f"arn:aws:iam::{ACCOUNT}:policy/chaos-admin-all"
    stack.iam.attach_role_policy(RoleName="chaos-admin", PolicyArn=admin_arn)
    try:
        stack.iam.create_service_linked_role(AWSServiceName="elasticbeanstalk.amazonaws.com")
    except stack.iam.exceptions.EntityAlreadyExistsException:
        pass
    stack.iam.tag_role(RoleName="AWSServiceRoleForElasticBeanstalk", Tags=[OPT_IN_TAG])


def irsa_role(d: str) -> str:
    return f"irsa-{d}"


def make_irsa(stack: ChaosStack, seeded: dict, d: str) -> None:
    """Each deployment gets its own IRSA role (eksctl's trust shape), so that what one deployment
    leaves behind cannot hide or cause a failure in another's checks."""
    trust = eksctl_trust(seeded["provider"], seeded["host_path"])
    try:
        stack.iam.create_role(RoleName=irsa_role(d), AssumeRolePolicyDocument=json.dumps(trust),
                              Tags=[{"Key": "o11y-provisioner:irsa", "Value": "true"}])  # opted in
    except stack.iam.exceptions.EntityAlreadyExistsException:  # a second run on the same stack
        stack.iam.update_assume_role_policy(RoleName=irsa_role(d), PolicyDocument=json.dumps(trust))
    seeded["trust"][d] = trust


def trust_of(stack: ChaosStack, role: str) -> dict:
    return decode_doc(stack.iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"])


def names_input(d: str) -> dict:
    return {"deploymentName": d, "cluster": {"name": CLUSTER}, "namespace": NAMESPACE, "irsaRoleName": irsa_role(d)}


def sfn_retries(events: list) -> int:
    """Lambda invocations beyond one per task state entered: the state machine's retries."""
    scheduled = sum(1 for e in events if e["type"] == "LambdaFunctionScheduled")
    entered = sum(1 for e in events if e["type"] == "TaskStateEntered")
    return max(0, scheduled - entered)


# ------------------------------------------------------------------------------------------------
# Inventory: what exists for a deployment
# ------------------------------------------------------------------------------------------------

def inventory(stack: ChaosStack, d: str) -> dict:
    """What the account holds for deployment `d` (inventory.deployment_view of a full snapshot)."""
    return deployment_view(snapshot(stack), d, irsa_role(d), NAMESPACE)


def scan_parameters(stack: ChaosStack, res: Results, d: str, where: str) -> None:
    """Every SSM value of the deployment (outputs, record, verification, lease), after each apply."""
    for page in stack.ssm.get_paginator("get_parameters_by_path").paginate(Path=f"/o11y/{d}", Recursive=True,
                                                                          WithDecryption=True):
        for p in page["Parameters"]:
            res.add("ssm_values_scanned")
            found = scan(p["Value"], dict(SECRET_PATTERNS, signature=SIGNATURE))
            if found:
                res.add("secrets_found")
                res.violation("secrets", f"{where}: SSM parameter {p['Name']}", found)


def lease_held(stack: ChaosStack, d: str) -> bool:
    """The deployment's lease exists: a generation /o11y-provisioner/leases/<d>/<N>, or the single
    parameter /o11y-provisioner/leases/<d> of earlier versions (shared/src/ctx/lease.rs)."""
    base = f"/o11y-provisioner/leases/{d}"
    if stack.ssm.get_parameters_by_path(Path=base).get("Parameters"):
        return True
    try:
        stack.ssm.get_parameter(Name=base)
        return True
    except stack.ssm.exceptions.ParameterNotFound:
        return False


def check_applied(stack: ChaosStack, res: Results, d: str, where: str) -> None:
    scan_parameters(stack, res, d, where)
    inv = inventory(stack, d)
    problems = []
    if len(inv["amp"]) != 1:
        problems.append(f"{len(inv['amp'])} AMP workspaces {inv['amp']}")
    live = [g for g in inv["grafana"] if g[1] not in ("DELETING",)]
    if len(live) != 1:
        problems.append(f"{len(live)} Grafana workspaces {live}")
    # The default IAM names carry the region (IAM is global): README "Input contract".
    if inv["roles"] != [f"{d}-{REGION}-grafana"]:
        problems.append(f"roles {inv['roles']}")
    if inv["policies"] != sorted([f"{d}-{REGION}-observability-write", f"{d}-{REGION}-grafana-amp-read"]):
        problems.append(f"policies {inv['policies']}")
    if inv["irsa_attached"] != [f"{d}-{REGION}-observability-write"]:
        problems.append(f"write policy attachments on the IRSA role {inv['irsa_attached']}")
    if inv.get("grafana_role_attached") not in (None, [f"{d}-{REGION}-grafana-amp-read"]):
        problems.append(f"grafana role attachments {inv.get('grafana_role_attached')}")
    if inv["trust_statements_ours"] != 1:
        problems.append(f"{inv['trust_statements_ours']} trust statements for our service accounts")
    missing = [leaf for leaf in OUTPUT_LEAVES if f"/o11y/{d}/{leaf}" not in inv["ssm"]]
    if missing:
        problems.append(f"SSM outputs missing: {missing}")
    if f"/o11y/{d}/lease" in inv["ssm"] or lease_held(stack, d):
        problems.append("the lease is still held after the run ended")
    for ws, _ in live:
        try:
            ds = stack.emulator("GET", f"/_emulator/datasources?workspaceId={ws}").get("datasources", [])
            if len(ds) > 1:
                problems.append(f"{len(ds)} Grafana datasources in {ws}")
            toks = stack.emulator("GET", f"/_emulator/tokens?workspaceId={ws}").get("tokens", [])
            if toks:
                res.add("grafana_tokens_left", len(toks))
                res.note(f"{where}: {len(toks)} live Grafana token(s) left in {ws} (they expire by themselves)")
        except Exception as e:  # noqa: BLE001
            res.note(f"{where}: emulator control endpoints: {e}")
    if problems:
        res.add("duplicates", 1)
        res.violation("duplicates", f"{where}: not exactly one of each resource for {d}", problems)


def check_deleted(stack: ChaosStack, res: Results, d: str, seeded: dict, where: str) -> None:
    original_trust = seeded["trust"][d]
    inv = inventory(stack, d)
    left = {k: v for k, v in inv.items() if v and k != "trust_statements_ours"}
    if inv["trust_statements_ours"]:
        left["trust_statements_ours"] = inv["trust_statements_ours"]
    if left:
        res.add("leaked", 1)
        res.violation("leaked", f"{where}: resources of {d} left after delete", left)
    try:
        stack.iam.get_role(RoleName=irsa_role(d))
    except botocore.exceptions.ClientError:
        res.violation("leaked", f"{where}: the IRSA role (the user's) was deleted")
        return
    res.add("trust_checked")
    now = trust_of(stack, irsa_role(d))
    if normalize(now) == normalize(original_trust):
        res.add("trust_restored")
    else:
        res.violation("trust", f"{where}: the IRSA trust policy differs from the original after delete",
                      {"now": now, "original": original_trust})


# ------------------------------------------------------------------------------------------------
# Converging runs
# ------------------------------------------------------------------------------------------------

def converge(stack: ChaosStack, res: Results, name: str, payload, where: str, reruns_allowed: int = 1) -> Execution | None:
    """Runs an execution; on a failure the design recovers from by re-running, re-runs once.
    Returns the successful execution, or None (a violation is recorded)."""
    attempt = 0
    res.add("runs")
    while True:
        ex_name = name if attempt == 0 else f"{name}-rerun{attempt}"
        ex = stack.run_execution(ex_name, payload)
        res.add("executions")
        try:
            res.add("sfn_retries", sfn_retries(stack.history(ex.arn)))
        except Exception as e:  # noqa: BLE001
            res.note(f"history of {ex_name}: {e}")
        if ex.status == "SUCCEEDED":
            res.add("converged")
            res.add("runs_converged")
            return ex
        log(f"{where}: {ex}")
        if attempt >= reruns_allowed or (ex.error not in RERUNNABLE):
            res.violation("converged", f"{where}: {ex_name} did not converge", repr(ex))
            return None
        attempt += 1
        res.add("reruns")


# ------------------------------------------------------------------------------------------------
# Phase 1: faults
# ------------------------------------------------------------------------------------------------

def deliver_cfn(stack: ChaosStack, res: Results, req: dict, where: str) -> str | None:
    """Delivers a CloudFormation request to cfn-handler as Lambda does for CloudFormation's
    asynchronous invoke: an invoke that fails (here: a fault injected on it) is retried, twice.
    Returns the execution started, or None (the handler answered itself, or never succeeded)."""
    last = None
    for _ in range(3):
        err, out = invoke(stack, "cfn-handler", req)
        if not err and isinstance(out, dict):
            return out.get("executionName")
        last = (err, out)
    res.violation("converged", f"{where}: cfn-handler failed three deliveries", last)
    return None


def cfn_cycle_run(stack: ChaosStack, res: Results, kind: str, d: str, key: str, since: int, where: str,
                  physical: str | None = None) -> dict | None:
    """One CloudFormation request under faults: exactly one response, SUCCESS. Returns it."""
    res.add("runs")
    props = cfn_props(d)
    req = cfn_request(kind, key, presign(stack, key), props, physical=physical)
    name = deliver_cfn(stack, res, req, where)
    body = None
    if name:
        ex = wait_named(stack, name)
        res.add("executions")
        try:
            res.add("sfn_retries", sfn_retries(stack.history(ex.arn)))
        except Exception as e:  # noqa: BLE001
            res.note(f"history of {name}: {e}")
        if ex.status == "SUCCEEDED":
            res.add("converged")
        else:
            log(f"{where}: {ex}")
    body = cfn_response(stack, key)
    stored = sum(1 for e in stack.requests(since) if e.get("method") == "PUT"
                 and (e.get("path") or "") == f"/{BUCKET}/{key}" and e.get("status") == 200)
    if stored != 1:
        res.violation("converged", f"{where}: {stored} CloudFormation responses stored, expected exactly one", body)
    if not body or body.get("Status") != "SUCCESS":
        res.violation("converged", f"{where}: CloudFormation {kind} answered {body and body.get('Status')} "
                      "(no re-run on this path: the stack would fail)", body)
        return None
    res.add("runs_converged")
    return body


def phase_faults(stack: ChaosStack, res: Results, seeded: dict, args) -> None:
    kinds = ["throttle", "500", "503", "reset", "latency"]
    reruns_before = res.figures["reruns"]
    try:
        fault_cycles(stack, res, seeded, args, kinds)
    finally:
        res.figures["reruns_faults"] = res.figures["reruns"] - reruns_before


def fault_cycles(stack: ChaosStack, res: Results, seeded: dict, args, kinds: list) -> None:
    for i in range(args.cycles):
        d = f"chaos-f{args.seed % 1000}-{i}"
        seed = args.seed + i
        via_cfn = args.cfn_every > 0 and (i + 1) % args.cfn_every == 0
        res.add("cycles_planned")
        log(f"cycle {i + 1}/{args.cycles}: {d} via {'CloudFormation' if via_cfn else 'the console'}, faults at "
            f"{args.rate:.0%}, seed {seed}")
        make_irsa(stack, seeded, d)
        since = stack.mark()
        faults = {"rate": args.rate, "seed": seed, "kinds": kinds, "latency_ms": args.latency_ms,
                  "invoke_faults": args.invoke_faults}
        applied = deleted = None
        stack.set_faults(faults)
        try:
            if via_cfn:
                applied = cfn_cycle_run(stack, res, "Create", d, f"{d}-create", since, f"cycle {i + 1} Create")
            else:
                applied = converge(stack, res, f"{d}-apply", names_input(d), f"cycle {i + 1} apply")
            stack.clear_faults()
            if applied:
                check_applied(stack, res, d, f"cycle {i + 1}")
            stack.set_faults(dict(faults, seed=seed + 7919))
            if via_cfn:
                physical = (applied or {}).get("PhysicalResourceId") or f"o11y-provisioner:{ACCOUNT}:{REGION}:{d}"
                deleted = cfn_cycle_run(stack, res, "Delete", d, f"{d}-delete", since, f"cycle {i + 1} Delete",
                                        physical=physical)
            else:
                deleted = converge(stack, res, f"{d}-delete", dict(names_input(d), action="delete",
                                                                   retainMetrics=False), f"cycle {i + 1} delete")
        finally:
            stack.clear_faults()
        res.count_faults(stack.requests(since))
        check_deleted(stack, res, d, seeded, f"cycle {i + 1}")
        if applied and deleted:
            res.add("cycles_done")


# ------------------------------------------------------------------------------------------------
# Phase 2: crashes
# ------------------------------------------------------------------------------------------------

INVOKE_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")


def function_of(entry: dict) -> str | None:
    if entry.get("function"):
        return entry["function"]
    m = INVOKE_PATH.match(entry.get("path") or "")
    if not m:
        return None
    name = urllib.parse.unquote(m.group(1))
    return name.rsplit(":function:", 1)[-1].split(":")[0]


BASE_LATENCY = {"rate": 1.0, "kinds": ["latency"], "latency_ms": 150, "services": LATENCY_SERVICES}
STEP_LATENCY = {"rate": 1.0, "kinds": ["latency"], "latency_ms": 800, "services": LATENCY_SERVICES}


class Killer(threading.Thread):
    """Watches the router's request log; when `step` is invoked, kills its process after the
    invocation's `nth` completed write (0: at its first AWS call). The router delays every AWS call
    (150 ms, and 800 ms once the step is running) so that the process is still inside the step
    when the crash point is seen."""

    def __init__(self, stack: ChaosStack, step: str, nth: int, since: int):
        super().__init__(daemon=True)
        self.stack, self.step, self.nth, self.since = stack, step, nth, since
        self.stop = threading.Event()
        self.outcome = "not reached: the step was not invoked"
        self.killed_pid = None

    def busy_pid(self) -> int | None:
        f = self.stack.functions().get(self.step) or {}
        busy = [p["pid"] for p in f.get("processes", []) if p.get("state") == "busy"]
        return busy[0] if len(busy) == 1 else None

    def run(self):
        try:
            self.watch()
        finally:
            if not self.outcome.startswith("not reached"):
                try:
                    self.stack.set_faults(BASE_LATENCY)  # the rest of the execution at the base latency
                except Exception:  # noqa: BLE001
                    pass

    def watch(self):
        invoke_seq = None
        seen: dict[int, dict] = {}
        while not self.stop.is_set():
            for e in self.stack.requests(self.since):
                seen[e["seq"]] = e
            entries = [seen[k] for k in sorted(seen)]
            if invoke_seq is None:
                for e in entries:
                    if function_of(e) == self.step and e.get("method") == "POST":
                        invoke_seq = e["seq"]
                        self.stack.set_faults(STEP_LATENCY)
                        break
            if invoke_seq is not None:
                inv = seen[invoke_seq]
                if inv.get("status") is not None:
                    self.outcome = "missed: the invocation ended before the crash point"
                    return
                later = [e for e in entries if e["seq"] > invoke_seq and not function_of(e)]
                if self.nth == 0:
                    hit = bool(later)
                else:
                    done_writes = [e for e in later if e.get("write") and e.get("status") is not None
                                   and e.get("purpose") not in ("invoke", "execution")]
                    hit = len(done_writes) >= self.nth
                if hit:
                    pid = self.busy_pid()
                    if pid is None:
                        self.outcome = "missed: the step was no longer running (its last call was the crash point)"
                        return
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        self.outcome = "missed: process already gone"
                        return
                    self.killed_pid = pid
                    what = "at its first AWS call" if self.nth == 0 else f"after its write #{self.nth}"
                    ops = [e.get("operation") for e in later if e.get("write")][: max(self.nth, 1)]
                    self.outcome = f"killed pid {pid} {what} {ops}"
                    return
            time.sleep(0.03)


def crash_run(stack: ChaosStack, res: Results, seeded: dict, spec: str, index: int) -> None:
    """spec: `step@N` (a console apply), `delete:step@N` (a console delete) or `cfn:step@N` (an apply
    started by a CloudFormation Create, which must still be answered exactly once)."""
    phase, _, rest = spec.rpartition(":")
    step, _, nth = rest.partition("@")
    nth = int(nth or 1)
    deleting = phase == "delete"
    via_cfn = phase == "cfn"
    d = f"chaos-k{index}-{step}"[:40].rstrip("-")
    where = f"crash {spec}"
    res.add("crashes_planned")
    log(f"{where}: deployment {d}")
    make_irsa(stack, seeded, d)
    apply_in, delete_in = names_input(d), dict(names_input(d), action="delete", retainMetrics=False)
    if deleting:
        if not converge(stack, res, f"{d}-apply", apply_in, f"{where} (setup apply)"):
            return
    payload = delete_in if deleting else apply_in
    res.add("runs")
    since = stack.mark()
    stack.set_faults(BASE_LATENCY)
    killer = Killer(stack, step, nth, since)
    killer.start()
    key = f"{d}-crash-create"
    try:
        if via_cfn:
            err, out = invoke(stack, "cfn-handler", cfn_request("Create", key, presign(stack, key), cfn_props(d)))
            if err or not isinstance(out, dict) or not out.get("executionName"):
                raise RuntimeError(f"cfn-handler did not start the run: {err} {out}")
            first = wait_named(stack, out["executionName"])
        else:
            first = stack.run_execution(f"{d}-{'delete' if deleting else 'apply'}-crash", payload)
    finally:
        killer.stop.set()
        killer.join(5)
        stack.clear_faults()
    res.add("executions")
    log(f"{where}: {killer.outcome}; execution {first}")
    if killer.killed_pid is None:
        res.add("crashes_missed")
        res.note(f"{where}: {killer.outcome}")
    else:
        res.add("crashes_killed")
    if via_cfn:
        body = cfn_response(stack, key)
        stored = sum(1 for e in stack.requests(since) if e.get("method") == "PUT"
                     and (e.get("path") or "") == f"/{BUCKET}/{key}" and e.get("status") == 200)
        if stored != 1:
            res.violation("crash", f"{where}: the execution ended {first.status} and CloudFormation got {stored} "
                          "responses (none: the stack waits for the one-hour timeout)", repr(first))
        elif first.status == "SUCCEEDED" and body.get("Status") != "SUCCESS":
            res.violation("crash", f"{where}: SUCCEEDED but answered {body.get('Status')}", body)
    ok = first.status == "SUCCEEDED"
    if ok:
        res.add("converged")
    rerun_name = f"{d}-{'delete' if deleting else 'apply'}-after-crash"
    if not ok:
        if first.error not in RERUNNABLE:
            res.violation("crash", f"{where}: the crashed execution failed with {first.error}, which a re-run "
                          "is not meant to fix", repr(first))
        res.add("reruns")
        second = stack.run_execution(rerun_name, payload)
        res.add("executions")
        if second.status == "SUCCEEDED":
            res.add("converged")
            ok = True
        else:
            res.violation("crash", f"{where}: the re-run after the crash did not complete", repr(second))
    else:
        # Whatever the crashed execution says, the deployment must be usable: a second run succeeds.
        second = stack.run_execution(rerun_name, payload)
        res.add("executions")
        if second.status != "SUCCEEDED":
            ok = False
            res.violation("crash", f"{where}: the crashed execution SUCCEEDED, but the next run of the deployment "
                          "fails", repr(second))
    if ok:
        res.add("runs_converged")
    if ok and killer.killed_pid is not None:
        res.add("crashes_recovered")
    if not deleting:
        if ok:
            check_applied(stack, res, d, where)
        done = converge(stack, res, f"{d}-delete", delete_in, f"{where} (cleanup delete)")
        if not done:
            return
    check_deleted(stack, res, d, seeded, where)


def phase_crashes(stack: ChaosStack, res: Results, seeded: dict, specs: list[str]) -> None:
    for i, spec in enumerate(specs):
        try:
            crash_run(stack, res, seeded, spec, i)
        except Exception as e:  # noqa: BLE001
            res.violation("crash", f"crash {spec}: harness error {e!r}", traceback.format_exc()[-1500:])


# ------------------------------------------------------------------------------------------------
# CloudFormation helpers
# ------------------------------------------------------------------------------------------------

def presign(stack: ChaosStack, key: str) -> str:
    return stack.s3_presign.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": key},
                                                   ExpiresIn=7200)


def cfn_request(kind: str, key: str, response_url: str, props, physical: str | None = None, old=None) -> dict:
    r = {
        "RequestType": kind,
        "ServiceToken": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:cfn-handler",
        "ResponseURL": response_url,
        "StackId": STACK_ID,
        "RequestId": f"req-{key}",
        "LogicalResourceId": "Observability",
        "ResourceType": "Custom::O11yProvisioner",
        "ResourceProperties": props,
    }
    if physical is not None:
        r["PhysicalResourceId"] = physical
    if old is not None:
        r["OldResourceProperties"] = old
    return r


def cfn_props(d: str) -> dict:
    return {"ServiceToken": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:cfn-handler", "deploymentName": d,
            "cluster": {"name": CLUSTER}, "namespace": NAMESPACE, "irsaRoleName": irsa_role(d),
            "retainMetrics": "false"}


def invoke(stack: ChaosStack, function: str, event) -> tuple[str | None, object]:
    """(function error type or None, payload)."""
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    r = stack.lam.invoke(FunctionName=function, Payload=body)
    raw = r["Payload"].read()
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = raw.decode("utf-8", "replace")
    if r.get("FunctionError"):
        etype = payload.get("errorType") if isinstance(payload, dict) else "Unhandled"
        return etype or "Unhandled", payload
    return None, payload


def cfn_response(stack: ChaosStack, key: str):
    try:
        body = stack.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    except stack.s3.exceptions.NoSuchKey:
        return None
    except botocore.exceptions.ClientError as e:
        if e.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise
    return json.loads(body)


def response_puts(stack: ChaosStack, key: str, since: int = 0) -> int:
    return sum(1 for e in stack.requests(since)
               if e.get("method") == "PUT" and (e.get("path") or "") == f"/{BUCKET}/{key}")


def wait_named(stack: ChaosStack, name: str, timeout: float = 900) -> Execution:
    """Waits for the end of execution `name` of the local state machine."""
    return stack.wait_execution(execution_arn(name), timeout)


# ------------------------------------------------------------------------------------------------
# Phase 3: concurrency
# ------------------------------------------------------------------------------------------------

def judge_pair(res: Results, where: str, outcomes: list[tuple[str, bool, str]]) -> bool:
    """outcomes: (who, succeeded, failure text). One proceeds; any other fails with the conflict."""
    winners = [o for o in outcomes if o[1]]
    losers = [o for o in outcomes if not o[1]]
    ok = True
    if not winners:
        res.violation("concurrency", f"{where}: no run succeeded", outcomes)
        ok = False
    for who, _, text in losers:
        if CONFLICT_MESSAGE not in (text or ""):
            res.violation("concurrency", f"{where}: {who} failed without saying that another run holds the "
                          "deployment", text[:800] if text else text)
            ok = False
        elif "ConflictError" not in (text or ""):
            res.violation("concurrency", f"{where}: {who} failed with the conflict message but not ConflictError",
                          text[:800])
            ok = False
    return ok


def barrier_run(fns: list) -> list:
    """Runs the functions at once (each waits on a shared barrier itself); their results in order."""
    with ThreadPoolExecutor(len(fns)) as pool:
        futures = [pool.submit(fn) for fn in fns]
        return [f.result() for f in futures]


def phase_concurrency(stack: ChaosStack, res: Results, seeded: dict) -> None:

    # (a) the console, twice at once
    d = "chaos-conc-console"
    make_irsa(stack, seeded, d)
    res.add("concurrency_checks")
    log(f"concurrency (a): two console runs of {d} at once")
    go = threading.Barrier(2)

    def console(tag):
        def run():
            go.wait()
            return stack.run_execution(f"{d}-{tag}", names_input(d))
        return run

    a, b = barrier_run([console("one"), console("two")])
    res.add("executions", 2)
    res.add("converged", sum(1 for x in (a, b) if x.status == "SUCCEEDED"))
    log(f"concurrency (a): {a} | {b}")
    ok = judge_pair(res, "two console runs", [(x.name, x.status == "SUCCEEDED", f"{x.error}: {x.cause}")
                                              for x in (a, b)])
    dup_before = res.figures["duplicates"]
    check_applied(stack, res, d, "two console runs")
    ok = ok and res.figures["duplicates"] == dup_before
    if converge(stack, res, f"{d}-delete", dict(names_input(d), action="delete", retainMetrics=False),
                "two console runs (cleanup delete)"):
        check_deleted(stack, res, d, seeded, "two console runs")
    if ok:
        res.add("concurrency_ok")

    # (b) a CloudFormation Create delivered twice at once
    d = "chaos-conc-cfn"
    make_irsa(stack, seeded, d)
    res.add("concurrency_checks")
    log(f"concurrency (b): one CloudFormation Create of {d} delivered twice at once")
    since = stack.mark()
    req = cfn_request("Create", "conc-create", presign(stack, "conc-create"), cfn_props(d))
    go2 = threading.Barrier(2)

    def deliver():
        go2.wait()
        return invoke(stack, "cfn-handler", req)

    r1, r2 = barrier_run([deliver, deliver])
    log(f"concurrency (b): {r1} | {r2}")
    ok = True
    # Both deliveries name the same execution: the second finds it ("already-started"), or, as
    # StartExecution is idempotent in AWS for the same name and input, is told it started.
    outcomes = [r[1].get("outcome") if isinstance(r[1], dict) else None for r in (r1, r2)]
    names = {r[1].get("executionName") for r in (r1, r2) if isinstance(r[1], dict)}
    if any(o not in ("started", "already-started") for o in outcomes) or len(names) != 1:
        res.violation("concurrency", "redelivered CloudFormation Create: both deliveries must name the same one "
                      "execution", [r1, r2])
        ok = False
    execs = [e for e in stack.sfn.list_executions(stateMachineArn=SM_ARN)["executions"]
             if e["name"] in names]
    if len(execs) != 1:
        res.violation("concurrency", f"redelivered CloudFormation Create: {len(execs)} executions", execs)
        ok = False
    ex = wait_named(stack, next(iter(names))) if names else None
    res.add("executions")
    if ex and ex.status == "SUCCEEDED":
        res.add("converged")
    body = cfn_response(stack, "conc-create")
    puts = response_puts(stack, "conc-create", since)
    if puts != 1 or not body or body.get("Status") != "SUCCESS":
        res.violation("concurrency", f"redelivered CloudFormation Create: {puts} response PUTs, response "
                      f"{body and body.get('Status')}", {"execution": repr(ex), "response": body})
        ok = False
    dup_before = res.figures["duplicates"]
    check_applied(stack, res, d, "redelivered CloudFormation Create")
    ok = ok and res.figures["duplicates"] == dup_before
    physical = (body or {}).get("PhysicalResourceId") or f"o11y-provisioner:{ACCOUNT}:{REGION}:{d}"
    dreq = cfn_request("Delete", "conc-delete", presign(stack, "conc-delete"), cfn_props(d), physical=physical)
    err, out = invoke(stack, "cfn-handler", dreq)
    if err or not isinstance(out, dict) or not out.get("executionName"):
        res.violation("concurrency", "CloudFormation Delete after the redelivered Create did not start", out)
        ok = False
    else:
        dex = wait_named(stack, out["executionName"])
        res.add("executions")
        dbody = cfn_response(stack, "conc-delete")
        if dex.status == "SUCCEEDED" and dbody and dbody.get("Status") == "SUCCESS":
            res.add("converged")
        else:
            res.violation("concurrency", "CloudFormation Delete did not succeed", {"ex": repr(dex), "resp": dbody})
            ok = False
    check_deleted(stack, res, d, seeded, "redelivered CloudFormation Create")
    if ok:
        res.add("concurrency_ok")

    # (c) CloudFormation and the console at once, on one deployment
    d = "chaos-conc-mixed"
    make_irsa(stack, seeded, d)
    res.add("concurrency_checks")
    log(f"concurrency (c): a CloudFormation Create and a console run of {d} at once")
    go3 = threading.Barrier(2)
    creq = cfn_request("Create", "conc-mixed", presign(stack, "conc-mixed"), cfn_props(d))

    def via_cfn():
        go3.wait()
        err, out = invoke(stack, "cfn-handler", creq)
        if err or not isinstance(out, dict) or not out.get("executionName"):
            return ("cfn", False, f"cfn-handler: {err}: {out}")
        ex = wait_named(stack, out["executionName"])
        body = cfn_response(stack, "conc-mixed") or {}
        if ex.status == "SUCCEEDED" and body.get("Status") == "SUCCESS":
            return ("cfn", True, "")
        return ("cfn", False, f"{ex.error}: {ex.cause} | response {body.get('Status')}: {body.get('Reason')}")

    def via_console():
        go3.wait()
        ex = stack.run_execution(f"{d}-console", names_input(d))
        return ("console", ex.status == "SUCCEEDED", f"{ex.error}: {ex.cause}")

    outcomes = barrier_run([via_cfn, via_console])
    res.add("executions", 2)
    res.add("converged", sum(1 for o in outcomes if o[1]))
    log(f"concurrency (c): {outcomes}")
    ok = judge_pair(res, "CloudFormation and console at once", outcomes)
    dup_before = res.figures["duplicates"]
    check_applied(stack, res, d, "CloudFormation and console at once")
    ok = ok and res.figures["duplicates"] == dup_before
    if converge(stack, res, f"{d}-delete", dict(names_input(d), action="delete", retainMetrics=False),
                "CloudFormation and console at once (cleanup delete)"):
        check_deleted(stack, res, d, seeded, "CloudFormation and console at once")
    if ok:
        res.add("concurrency_ok")


# ------------------------------------------------------------------------------------------------
# Phase: trust policies IAM would deny (shared/tests/fixtures/deny/corpus.json)
# ------------------------------------------------------------------------------------------------

DENY_CORPUS = REPO / "shared/tests/fixtures/deny/corpus.json"
# In --quick, one case of each family the corpus covers.
DENY_QUICK = ("stringnotlike-other-issuer-sub", "stringequalsifexists-other-issuer", "null-true-other-issuer",
              "forallvalues-other-issuer", "case-insensitive-key-name")


def phase_deny(stack: ChaosStack, res: Results, seeded: dict, args) -> None:
    """Each Deny shape that IAM applies to our collector (or that the evaluator cannot decide) is
    added to a fresh deployment's IRSA role before its apply: verify must fail the execution on
    `irsa-trust-collector` (never report "passed"); the delete that follows must clean up."""
    other = "oidc.eks.eu-west-1.amazonaws.com/id/AAAABBBBCCCCDDDDEEEEFFFF00001111"
    text = (DENY_CORPUS.read_text()
            .replace("{{PROVIDER}}", seeded["provider"])
            .replace("{{OTHER_PROVIDER}}", f"arn:aws:iam::{ACCOUNT}:oidc-provider/{other}")
            .replace("{{ISSUER_UPPER}}", seeded["host_path"].upper())
            .replace("{{OTHER_ISSUER}}", other)
            .replace("{{ISSUER}}", seeded["host_path"])
            .replace("{{NAMESPACE}}", NAMESPACE))
    cases = [c for c in json.loads(text)["cases"] if c["expect"] in ("denied", "cannot-prove")]
    if args.quick:
        cases = [c for c in cases if c["name"] in DENY_QUICK]
    log(f"deny: {len(cases)} trust policies IAM would deny")

    def one(i_case):
        i, case = i_case
        d = f"chaos-deny-{i}"
        make_irsa(stack, seeded, d)
        trust = dict(seeded["trust"][d])
        trust["Statement"] = list(trust["Statement"]) + [case["statement"]]
        try:
            stack.iam.update_assume_role_policy(RoleName=irsa_role(d), PolicyDocument=json.dumps(trust))
        except stack.iam.exceptions.MalformedPolicyDocumentException:
            return case, None, "IAM refuses this shape in a trust policy"
        seeded["trust"][d] = trust
        ex = stack.run_execution(f"{d}-apply", json.dumps(names_input(d)), timeout=600)
        outcome = (ex.status, ex.error, ex.cause or "")
        dl = stack.run_execution(f"{d}-delete", json.dumps(dict(names_input(d), action="delete",
                                                                retainMetrics=False)), timeout=600)
        return case, outcome, dl.status

    with ThreadPoolExecutor(max(1, min(3, args.parallel))) as pool:
        results = list(pool.map(one, enumerate(cases)))
    for i, (case, outcome, deleted) in enumerate(results):
        res.add("deny_cases")
        if outcome is None:
            res.note(f"deny {case['name']}: {deleted}")
            continue
        status, error, cause = outcome
        if status == "FAILED" and "irsa-trust-collector" in cause:
            res.add("deny_failed_by_verify")
        else:
            res.violation("deny-verified", f"{case['name']}: a trust policy IAM would deny ({case['why']}) was not "
                          f"failed by verify: {status} {error}", cause[:500])
        if deleted != "SUCCEEDED":
            res.violation("deny-delete", f"{case['name']}: the delete after it {deleted}")
        else:
            check_deleted(stack, res, f"chaos-deny-{i}", seeded, f"deny {case['name']}")


# ------------------------------------------------------------------------------------------------
# Phase 4: hostile input
# ------------------------------------------------------------------------------------------------

class Sink(threading.Thread):
    """A TCP listener standing for a host that is not CloudFormation's: counts connections."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.used = False

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            log(f"a connection to the foreign host 127.0.0.1:{self.port}")
            try:
                conn.settimeout(1)
                conn.recv(4096)
            except OSError:
                pass
            conn.close()


def load_corpus() -> list[dict]:
    items = []
    for path in sorted(CORPUS_DIR.glob("*.json")):
        for item in json.loads(path.read_text()):
            item["file"] = path.name
            items.append(item)
    return items


LONG_VALUE = "x" * 100_000


def fill(v, sink: Sink):
    """Expands the corpus placeholders: {SINK} (the item's own listener) and "{LONG}"."""
    if isinstance(v, str):
        if v == "{LONG}":
            return LONG_VALUE
        if "{SINK}" in v:
            sink.used = True
            return v.replace("{SINK}", str(sink.port))
        return v
    if isinstance(v, list):
        return [fill(x, sink) for x in v]
    if isinstance(v, dict):
        return {k: fill(x, sink) for k, x in v.items()}
    return v


def names_field(text: str, fields: list[str]) -> bool:
    """The message names one of the fields, and does not echo an oversized value back."""
    return any(f in (text or "") for f in fields) and LONG_VALUE[:200] not in (text or "")


def corpus_console(stack: ChaosStack, item: dict, sink: Sink) -> tuple[bool, str]:
    name = f"bad-{item['id']}"[:80]
    payload = item["raw"] if "raw" in item else json.dumps(fill(item["input"], sink))
    ex = stack.run_execution(name, payload, timeout=600)
    text = f"{ex.error}: {ex.cause}"
    if ex.status != "FAILED":
        return False, f"execution {ex.status}, expected FAILED: {ex}"
    if ex.error != item.get("error", "ValidationError"):
        return False, f"error {ex.error}, expected {item.get('error', 'ValidationError')}: {text[:500]}"
    if not names_field(text, item["fields"]):
        return False, f"the failure does not name {item['fields']}: {text[:500]}"
    return True, text


def corpus_cfn(stack: ChaosStack, item: dict, sink: Sink, seq0: int) -> tuple[bool, str]:
    key = f"bad-{item['id']}"
    url = fill(item["responseUrl"], sink) if "responseUrl" in item else presign(stack, key)
    props = fill(item["properties"], sink)
    kind = item.get("requestType", "Create")
    physical = item.get("physicalResourceId")
    if kind in ("Update", "Delete") and physical is None:
        physical = f"o11y-provisioner:{ACCOUNT}:{REGION}:chaos-cfn-old"
    req = cfn_request(kind, key, url, props, physical=physical,
                      old=cfn_props("chaos-cfn-old") if kind == "Update" else None)
    err, out = invoke(stack, "cfn-handler", req)
    if "responseUrl" in item:
        # Not CloudFormation's URL: never answered; the function says why, naming ResponseURL.
        text = json.dumps(out) if not isinstance(out, str) else out
        if not err:
            return False, f"cfn-handler accepted a request with ResponseURL {url!r}: {text[:400]}"
        if not names_field(text, item["fields"]):
            return False, f"the error does not name {item['fields']}: {text[:400]}"
        return True, text
    if err:
        return False, f"cfn-handler failed ({err}) instead of answering FAILED: {json.dumps(out)[:400]}"
    if not isinstance(out, dict) or out.get("outcome") != "answered":
        return False, f"cfn-handler did not answer directly (outcome {out}); an execution may have started"
    body = cfn_response(stack, key)
    puts = response_puts(stack, key, seq0)
    if puts != 1:
        return False, f"{puts} response PUTs, expected exactly one"
    if not body or body.get("Status") != "FAILED":
        return False, f"response {body}"
    want_id = physical if kind in ("Update", "Delete") else None
    pid = body.get("PhysicalResourceId", "")
    if want_id and pid != want_id:
        return False, f"PhysicalResourceId {pid!r}, expected the current {want_id!r}"
    if not want_id and not pid.startswith("o11y-provisioner:create-failed:"):
        return False, f"PhysicalResourceId {pid!r}, expected the create-failed sentinel"
    reason = body.get("Reason", "")
    if not names_field(reason, item["fields"]):
        return False, f"Reason does not name {item['fields']}: {reason[:400]}"
    return True, reason


def corpus_vending(stack: ChaosStack, item: dict, sink: Sink) -> tuple[bool, str]:
    event = item["raw"].encode() if "raw" in item else fill(item["event"], sink)
    err, out = invoke(stack, "vending-hook", event)
    text = json.dumps(out) if not isinstance(out, str) else out
    if not err:
        if isinstance(out, dict) and out.get("outcome") == "ignored" and item.get("ignored"):
            return True, text
        return False, f"vending-hook did not reject it: {text[:400]}"
    if err != item.get("error", "ValidationError"):
        return False, f"error {err}, expected {item.get('error', 'ValidationError')}: {text[:400]}"
    if not names_field(text, item["fields"]):
        return False, f"the error does not name {item['fields']}: {text[:400]}"
    return True, text


# The writes a bad input may cause, by the router's `purpose` tag: the invoke itself, the Step
# Functions call of an entry point (an execution it starts is a violation of its own, counted from
# list_executions) and the one CloudFormation response.
ALLOWED_ON_BAD_INPUT = ("invoke", "execution", "cfn-response")


def is_allowed_write(e: dict) -> bool:
    """A write of the router's log that bad input may cause (ALLOWED_ON_BAD_INPUT)."""
    return e.get("purpose") in ALLOWED_ON_BAD_INPUT


def phase_corpus(stack: ChaosStack, res: Results, args) -> None:
    items = load_corpus()
    res.figures["corpus_size"] = len(items)
    log(f"corpus: {len(items)} bad inputs ({', '.join(sorted({i['entry'] for i in items}))})")
    execs_before = {e["name"] for e in stack.sfn.list_executions(stateMachineArn=SM_ARN)["executions"]}
    seq0 = stack.mark()
    by_entry: dict = {}

    def one(item):
        sink = Sink()
        sink.start()
        try:
            if item["entry"] == "console":
                ok, text = corpus_console(stack, item, sink)
            elif item["entry"] == "cfn":
                ok, text = corpus_cfn(stack, item, sink, seq0)
            else:
                ok, text = corpus_vending(stack, item, sink)
            if sink.used:
                time.sleep(0.5)
            if sink.connections:
                res.add("foreign_puts", sink.connections)
                res.violation("corpus-ssrf", f"{item['entry']} {item['id']}: {sink.connections} connection(s) to the "
                              "foreign host of a hostile ResponseURL: the response PUT was sent there", text[:500])
            return item, (ok, text)
        except Exception as e:  # noqa: BLE001
            return item, (False, f"harness error: {e!r}")
        finally:
            sink.sock.close()

    with ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(one, items))
    for item, (ok, text) in results:
        b = by_entry.setdefault(item["entry"], [0, 0])
        b[1] += 1
        if ok:
            b[0] += 1
            res.add("corpus_rejected")
        else:
            res.violation("corpus", f"{item['entry']} {item['id']} ({item.get('about', '')})", text)
    res.figures["corpus_by_entry"] = {k: f"{v[0]}/{v[1]}" for k, v in sorted(by_entry.items())}
    # executions started by the entry points (the console ones are the harness's own)
    started = [e["name"] for e in stack.sfn.list_executions(stateMachineArn=SM_ARN)["executions"]
               if e["name"] not in execs_before and not e["name"].startswith("bad-")]
    if started:
        res.violation("corpus-writes", f"{len(started)} executions started by cfn-handler or vending-hook for bad "
                      "input", started)
    time.sleep(1.0)
    entries = stack.requests(seq0)
    writes = [e for e in entries if e.get("write") and not is_allowed_write(e)]
    res.figures["writes_on_bad_input"] = len(writes)
    if writes:
        res.violation("corpus-writes", f"{len(writes)} AWS writes for bad input",
                      [(e.get("service"), e.get("operation"), e.get("path"), e.get("name")) for e in writes][:20])
    res.count_faults(entries)


# ------------------------------------------------------------------------------------------------
# Phase 5: secrets
# ------------------------------------------------------------------------------------------------

def scan(text: str, patterns: dict) -> dict:
    found = {}
    for k, p in patterns.items():
        hits = p.findall(text)
        if hits:
            found[k] = sorted(set(h[:12] + "…" for h in hits))[:5]
    return found


def phase_secrets(stack: ChaosStack, res: Results) -> None:
    log("secrets: logs, execution outputs and histories, SSM values")
    total = 0
    for path in sorted(stack.logs_dir.glob("*.log")):
        # The router's log carries every function's output: no presigned URL either. moto's own
        # access log lists the query strings of the requests it served (its business, not ours).
        patterns = dict(SECRET_PATTERNS, signature=SIGNATURE) if path.name == "router.log" else SECRET_PATTERNS
        found = scan(path.read_text(errors="replace"), patterns)
        if found:
            total += sum(len(v) for v in found.values())
            res.violation("secrets", f"log {path.name}", found)
    execs = []
    token = None
    while True:
        out = stack.sfn.list_executions(stateMachineArn=SM_ARN, maxResults=1000,
                                        **({"nextToken": token} if token else {}))
        execs += out["executions"]
        token = out.get("nextToken")
        if not token:
            break
    with_sig = 0
    for e in execs:
        d = stack.sfn.describe_execution(executionArn=e["executionArn"])
        found = scan(json.dumps(d.get("output") or "") + (d.get("cause") or ""),
                     dict(SECRET_PATTERNS, signature=SIGNATURE))
        if found:
            total += 1
            res.violation("secrets", f"output of {e['name']}", found)
        hist = json.dumps(stack.history(e["executionArn"]), default=str)
        found = scan(hist, SECRET_PATTERNS)
        if found:
            total += 1
            res.violation("secrets", f"history of {e['name']}", found)
        if SIGNATURE.search(hist):
            with_sig += 1
    res.figures["presigned_in_history"] = with_sig
    if with_sig:
        res.note(f"{with_sig} execution histories carry a presigned S3 URL: CloudFormation's ResponseURL, in the "
                 "input cfn-handler gives the execution (by design; it expires with the request)")
    names = []
    for page in stack.ssm.get_paginator("describe_parameters").paginate():
        names += [p["Name"] for p in page["Parameters"]]
    for i in range(0, len(names), 10):
        for p in stack.ssm.get_parameters(Names=names[i:i + 10], WithDecryption=True)["Parameters"]:
            res.add("ssm_values_scanned")
            found = scan(p["Value"], dict(SECRET_PATTERNS, signature=SIGNATURE))
            if found:
                total += 1
                res.violation("secrets", f"SSM parameter {p['Name']}", found)
    res.add("secrets_found", total)
    res.figures["executions_scanned"] = len(execs)


# ------------------------------------------------------------------------------------------------
# Summary
# ------------------------------------------------------------------------------------------------

def lease_in_source() -> bool:
    for p in (REPO / "shared/src").rglob("*.rs"):
        if CONFLICT_MESSAGE in p.read_text(errors="replace"):
            return True
    return False


def summary(res: Results, args, elapsed: float) -> str:
    f = res.figures
    faults = ", ".join(f"{k} {v}" for k, v in sorted(f["faults"].items())) or "none"
    by_check: dict = {}
    for v in res.violations:
        by_check[v["check"]] = by_check.get(v["check"], 0) + 1
    rows = [
        ("cycles (create, then delete)",
         f"{f['cycles_done']}/{f['cycles_planned']} at {args.rate:.0%}, seed {args.seed}"),
        ("faults injected", f"{f['faults_total']} ({faults}; {f['faults_on_invokes']} on Lambda invokes)"),
        ("retries", f"state machine {f['sfn_retries']}, in functions (faulted AWS calls) {f['sdk_retries']}"),
        ("runs converged (apply/delete)", f"{f['runs_converged']}/{f['runs']} "
                                          f"({f['executions']} executions, {f['converged']} succeeded)"),
        ("re-runs", f"{f['reruns']} ({f.get('reruns_faults', 0)} in the fault cycles, the rest after crashes)"),
        ("crashes (killed/recovered)", f"{f['crashes_killed']}/{f['crashes_recovered']} "
                                        f"(planned {f['crashes_planned']}, missed {f['crashes_missed']})"),
        ("concurrency checks passed", f"{f['concurrency_ok']}/{f['concurrency_checks']}"),
        ("duplicates", str(f["duplicates"])),
        ("leaked", str(f["leaked"])),
        ("trust restored", f"{f['trust_restored']}/{f['trust_checked']}"),
        ("rejected inputs (field named)", f"{f['corpus_rejected']}/{f['corpus_size']} "
                                           f"{json.dumps(f['corpus_by_entry'])}"),
        ("writes on bad input", str(f["writes_on_bad_input"])),
        ("Deny shapes failed by verify", f"{f['deny_failed_by_verify']}/{f['deny_cases']}"),
        ("edits: cases (failed)", f"{f.get('edits_cases', 0)} ({f.get('edits_cases_failed', 0)}; "
                                  f"{f.get('edits_runs', 0)} runs, {f.get('edits_failed_runs', 0)} did not converge "
                                  f"or were not refused; {f.get('edits_seconds', 0)} s)"),
        ("edits: orphans / missing", f"{f.get('edits_orphans', 0)} / {f.get('edits_missing', 0)}"),
        ("edits: foreign touched", str(f.get("edits_foreign_touched", 0))),
        ("PUTs to foreign hosts", str(f["foreign_puts"])),
        ("secrets found", f"{f['secrets_found']} (logs, {f.get('executions_scanned', 0)} executions with histories, "
                          f"{f['ssm_values_scanned']} SSM values scanned)"),
        ("violations", f"{len(res.violations)} {json.dumps(by_check) if by_check else ''}".strip()),
        ("elapsed", f"{elapsed:.0f} s"),
    ]
    w = max(len(r[0]) for r in rows)
    wv = max(len(r[1]) for r in rows)
    line = "+" + "-" * (w + 2) + "+" + "-" * (wv + 2) + "+"
    out = ["", "o11y-provisioner chaos summary", line]
    for k, v in rows:
        out.append(f"| {k.ljust(w)} | {v.ljust(wv)} |")
    out.append(line)
    out.append("RESULT: " + ("PASS" if not res.violations else "FAIL"))
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stack", type=Path, help="devstack.json of the running stack (scripts/chaos passes it)")
    ap.add_argument("--quick", action="store_true",
                    help="3 cycles, one crash, concurrency, the corpus (about 5 minutes on 2 cores)")
    ap.add_argument("--cycles", type=int, help="create-then-delete cycles under faults (full: 30, quick: 3)")
    ap.add_argument("--rate", type=float, default=0.2, help="fault rate per AWS call (default 0.2)")
    ap.add_argument("--seed", type=int, default=20241124, help="fault seed; cycle i uses seed+i")
    ap.add_argument("--latency-ms", type=int, default=400, help="added latency of a latency fault (default 400)")
    ap.add_argument("--invoke-faults", choices=("function-error", "http"), default="function-error",
                    help="how a faulted Lambda invoke looks to the state machine: the error AWS Step Functions "
                         "reports (default), or moto's reading of the Invoke API's HTTP error (`Exception`, "
                         "which no Retry written for AWS matches)")
    ap.add_argument("--cfn-every", type=int, default=3,
                    help="every Kth cycle goes through CloudFormation (cfn-handler) instead of the console; 0: never "
                         "(default 3)")
    ap.add_argument("--crash", action="append", default=None, metavar="[delete:]STEP@N",
                    help="kill STEP's process after its Nth write (0: at its first AWS call); repeatable. "
                         "Full: every step at 0, 1 and 2, and the delete steps at 1; quick: amp-workspace@1")
    ap.add_argument("--phases", default="faults,crashes,concurrency,corpus,deny,edits,secrets",
                    help="comma-separated subset of faults,crashes,concurrency,corpus,deny,edits,secrets")
    ap.add_argument("--only", metavar="PHASE", help="run just this phase (e.g. `--only edits`); same as --phases PHASE")
    ap.add_argument("--edits-findings", type=Path, metavar="FILE",
                    help="write every failed case of the edit corpus (its diff) as JSON here")
    ap.add_argument("--parallel", type=int, default=4, help="corpus inputs in flight at once (default 4)")
    ap.add_argument("--report", type=Path, help="write the figures and violations as JSON here")
    ap.add_argument("--keep", action="store_true", help="(scripts/chaos) keep the private directory")
    args = ap.parse_args(argv)
    if args.stack is None:
        ap.error("--stack is required (run it through scripts/chaos)")
    if args.cycles is None:
        args.cycles = 3 if args.quick else 30
    if args.crash is None:
        if args.quick:
            args.crash = ["amp-workspace@1"]
        else:
            apply_steps, delete_steps = asl_steps()
            args.crash = [f"{s}@{n}" for s in apply_steps for n in (0, 1, 2)
                          if not (s in READ_ONLY_STEPS and n > 0)]
            args.crash += [f"delete:{s}@1" for s in delete_steps]
            args.crash += ["cfn:finish@0", "cfn:grafana-workspace@1"]
    if args.only:
        args.phases = args.only
    phases = {p.strip() for p in args.phases.split(",") if p.strip()}

    t0 = time.time()
    res = Results()
    stack = ChaosStack.from_state_file(args.stack, config=CLIENT_CONFIG, invoke_config=INVOKE_CONFIG)
    lease = lease_in_source()
    res.figures["lease_in_source"] = lease
    if not lease:
        res.note("no lease in shared/src (no \"another run holds the deployment\"): the concurrency "
                 "check is expected to fail until it lands")
    stack.deploy(REPO / "statemachine/provision.asl.json")
    seeded = seed(stack)
    log(f"stack {stack.router_url}; state machine deployed; cluster {CLUSTER} and its OIDC provider seeded")
    try:
        if "corpus" in phases:
            phase_corpus(stack, res, args)
        if "faults" in phases:
            phase_faults(stack, res, seeded, args)
        if "crashes" in phases:
            phase_crashes(stack, res, seeded, args.crash)
        if "concurrency" in phases:
            phase_concurrency(stack, res, seeded)
        if "deny" in phases:
            phase_deny(stack, res, seeded, args)
        if "edits" in phases:
            from edits import phase_edits
            phase_edits(stack, res, args)
    except Exception as e:  # noqa: BLE001
        res.violation("harness", f"aborted: {e!r}", traceback.format_exc()[-2000:])
    finally:
        try:
            stack.clear_faults()
        except Exception:  # noqa: BLE001
            pass
    if "secrets" in phases:
        try:
            phase_secrets(stack, res)
        except Exception as e:  # noqa: BLE001
            res.violation("harness", f"secrets scan aborted: {e!r}", traceback.format_exc()[-2000:])
    elapsed = time.time() - t0
    table = summary(res, args, elapsed)
    if res.violations:
        print("\nViolations:")
        for v in res.violations:
            detail = v["detail"] if isinstance(v["detail"], str) else json.dumps(v["detail"], default=str)
            print(f"- [{v['check']}] {v['what']}" + (f"\n    {detail[:1500]}" if v["detail"] is not None else ""))
    if res.notes:
        print("\nNotes:")
        for n in res.notes:
            print(f"- {n}")
    print(table)
    if args.report:
        args.report.write_text(json.dumps({"figures": res.figures, "violations": res.violations,
                                           "notes": res.notes, "elapsed_s": round(elapsed, 1),
                                           "args": {k: str(v) for k, v in vars(args).items()}},
                                          indent=2, default=str))
    return 1 if res.violations else 0


if __name__ == "__main__":
    sys.exit(main())
