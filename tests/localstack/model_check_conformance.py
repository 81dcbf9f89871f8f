"""The local stack refuses what AWS refuses (tests/localstack/model_check.py, run by the router).

Starts moto, the Grafana emulator and two routers in front of them (model checks on, and off with
``--no-model-check``), then sends malformed requests with boto3 (client-side validation off) across
IAM, STS, SSM, AMP, EKS, Step Functions and Grafana through the checking router: each must come back
400 with the service's validation code, and the router's request log must record the refusal. A
handful of valid requests must still be accepted, and the switched-off router must let the model
breaches that moto accepts through (the comparison). Prints ``N passed, M failed``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/r"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(url: str, procs) -> None:
    for _ in range(300):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"not ready: {url}")


def start(procs, argv, health, env=None):
    procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env=dict(os.environ, **(env or {}))))
    wait(health, procs)


def clients(port: int) -> dict:
    cfg = Config(parameter_validation=False, retries={"max_attempts": 1})
    kw = dict(endpoint_url=f"http://127.0.0.1:{port}", region_name=REGION, config=cfg,
              aws_access_key_id="testing", aws_secret_access_key="testing")
    return {s: boto3.client(s, **kw) for s in ("iam", "sts", "ssm", "amp", "eks", "stepfunctions", "grafana")}


def malformed(c) -> list:
    """(label, expected code, call) for requests AWS refuses."""
    iam, sts, ssm, amp, eks, sfn, gr = (c[k] for k in ("iam", "sts", "ssm", "amp", "eks", "stepfunctions", "grafana"))
    big_policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": f"s3:Get{i:05d}", "Resource": "*"} for i in range(200)]})
    big_trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": f"s{i:04d}.amazonaws.com"}, "Action": "sts:AssumeRole"}
        for i in range(40)]})
    V, VE, L = "ValidationError", "ValidationException", "LimitExceeded"
    return [
        ("iam role name 65", V, lambda: iam.create_role(RoleName="r" * 65, AssumeRolePolicyDocument=TRUST)),
        ("iam role name pattern", V, lambda: iam.create_role(RoleName="bad name", AssumeRolePolicyDocument=TRUST)),
        ("iam role description 1001", V, lambda: iam.create_role(RoleName="r1", AssumeRolePolicyDocument=TRUST,
                                                               Description="d" * 1001)),
        ("iam role missing trust", V, lambda: iam.create_role(RoleName="r2")),
        ("iam role 51 tags", V, lambda: iam.create_role(RoleName="r3", AssumeRolePolicyDocument=TRUST,
                                                      Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(51)])),
        ("iam tag key 129", V, lambda: iam.tag_role(RoleName="r", Tags=[{"Key": "k" * 129, "Value": "v"}])),
        ("iam trust over 2048", L, lambda: iam.create_role(RoleName="r4", AssumeRolePolicyDocument=big_trust)),
        ("iam managed policy over 6144", L, lambda: iam.create_policy(PolicyName="p", PolicyDocument=big_policy)),
        ("iam policy name pattern", V, lambda: iam.create_policy(PolicyName="p p", PolicyDocument=POLICY)),
        ("iam max session 100", V, lambda: iam.create_role(RoleName="r5", AssumeRolePolicyDocument=TRUST,
                                                          MaxSessionDuration=100)),
        ("iam policy arn short", V, lambda: iam.attach_role_policy(RoleName="r", PolicyArn="arn")),
        ("iam inline policy over 10240", L, lambda: iam.put_role_policy(
            RoleName="r", PolicyName="p", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": f"s3:Get{i:05d}", "Resource": "*"} for i in range(300)]}))),
        ("sts session name space", V, lambda: sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="a b")),
        ("sts session name 1", V, lambda: sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="a")),
        ("sts duration 10", V, lambda: sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="ab", DurationSeconds=10)),
        ("sts role arn short", V, lambda: sts.assume_role(RoleArn="arn", RoleSessionName="ab")),
        ("ssm name 1100", VE, lambda: ssm.put_parameter(Name="/" + "a" * 1100, Value="v", Type="String")),
        ("ssm standard value 5000", VE, lambda: ssm.put_parameter(Name="/x", Value="v" * 5000, Type="String")),
        ("ssm advanced value 9000", VE, lambda: ssm.put_parameter(Name="/x", Value="v" * 9000, Type="String",
                                                                 Tier="Advanced")),
        ("ssm type enum", VE, lambda: ssm.put_parameter(Name="/x", Value="v", Type="Text")),
        ("ssm missing value", VE, lambda: ssm.put_parameter(Name="/x", Type="String")),
        ("ssm get names 11", VE, lambda: ssm.get_parameters(Names=[f"/n{i}" for i in range(11)])),
        ("ssm max results 51", VE, lambda: ssm.get_parameters_by_path(Path="/", MaxResults=51)),
        ("amp alias 150", VE, lambda: amp.create_workspace(alias="a" * 150, clientToken="t")),
        ("amp client token 100", VE, lambda: amp.create_workspace(alias="a", clientToken="t" * 100)),
        ("amp client token space", VE, lambda: amp.create_workspace(alias="a", clientToken="a b")),
        ("amp list max 1001", VE, lambda: amp.list_workspaces(maxResults=1001)),
        ("amp alias update 101", VE, lambda: amp.update_workspace_alias(workspaceId="ws-1", alias="a" * 101)),
        ("eks cluster name pattern", VE, lambda: eks.create_cluster(
            name="-bad name", roleArn=ROLE_ARN, resourcesVpcConfig={"subnetIds": ["s"]})),
        ("eks cluster name 101", VE, lambda: eks.create_cluster(
            name="c" * 101, roleArn=ROLE_ARN, resourcesVpcConfig={"subnetIds": ["s"]})),
        ("ssm name 16 levels", "HierarchyLevelLimitExceededException", lambda: ssm.put_parameter(Name="/a" * 16, Value="v", Type="String")),
        ("eks list max 101", VE, lambda: eks.list_clusters(maxResults=101)),
        ("eks pod identity missing role", VE, lambda: eks.create_pod_identity_association(
            clusterName="c", namespace="n", serviceAccount="s")),
        ("sfn name 81", VE, lambda: sfn.start_execution(
            stateMachineArn=f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:sm", name="n" * 81)),
        ("sfn missing arn", VE, lambda: sfn.start_execution(name="n")),
        ("sfn list max 1001", VE, lambda: sfn.list_executions(
            stateMachineArn=f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:sm", maxResults=1001)),
        ("grafana name pattern", VE, lambda: gr.create_workspace(
            accountAccessType="CURRENT_ACCOUNT", authenticationProviders=["AWS_SSO"],
            permissionType="CUSTOMER_MANAGED", workspaceName="bad name")),
        ("grafana client token 100", VE, lambda: gr.create_workspace(
            accountAccessType="CURRENT_ACCOUNT", authenticationProviders=["AWS_SSO"],
            permissionType="CUSTOMER_MANAGED", clientToken="t" * 100)),
    ]


def valid(c) -> list:
    """(label, call) for requests AWS accepts."""
    return [
        ("iam create role", lambda: c["iam"].create_role(RoleName="ok-role", AssumeRolePolicyDocument=TRUST,
                                                         Tags=[{"Key": "k", "Value": "v"}])),
        ("iam create policy", lambda: c["iam"].create_policy(PolicyName="ok-policy", PolicyDocument=POLICY)),
        ("sts caller identity", lambda: c["sts"].get_caller_identity()),
        ("ssm put 4000", lambda: c["ssm"].put_parameter(Name="/ok/v", Value="v" * 4000, Type="String")),
        ("ssm get", lambda: c["ssm"].get_parameter(Name="/ok/v")),
        ("amp create", lambda: c["amp"].create_workspace(alias="ok", clientToken="tok-1")),
        ("amp list", lambda: c["amp"].list_workspaces(alias="ok", maxResults=100)),
        ("sfn list", lambda: c["stepfunctions"].list_state_machines()),
    ]


def code_of(call):
    try:
        call()
        return None, 200
    except ClientError as e:
        return e.response["Error"].get("Code"), e.response["ResponseMetadata"].get("HTTPStatusCode")


def requests_log(port: int) -> list:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_router/requests", timeout=5) as r:
        data = json.load(r)
    return data.get("requests", data) if isinstance(data, dict) else data


def main() -> int:
    py = sys.executable
    venv_bin = os.path.dirname(py)
    procs: list = []
    passed = failed = 0

    def ok(cond, label, detail=""):
        nonlocal passed, failed
        if cond:
            passed += 1
        else:
            failed += 1
            print(f"FAIL {label} {detail}")

    try:
        moto, grafana, on, off = (free_port() for _ in range(4))
        start(procs, [os.path.join(venv_bin, "moto_server"), "-H", "127.0.0.1", "-p", str(moto)],
              f"http://127.0.0.1:{moto}/moto-api/")
        start(procs, [py, os.path.join(REPO, "tests/grafana_emulator/emulator.py"), "--port", str(grafana),
                      "--region", REGION, "--account-id", ACCOUNT, "--amp-url", f"http://127.0.0.1:{moto}"],
              f"http://127.0.0.1:{grafana}/")
        router = os.path.join(HERE, "router/router.py")
        for port, extra in ((on, []), (off, ["--no-model-check"])):
            start(procs, [py, router, "--port", str(port), "--default", f"http://127.0.0.1:{moto}",
                          "--route", f"grafana=http://127.0.0.1:{grafana}", *extra],
                  f"http://127.0.0.1:{port}/_router/health")
        c_on, c_off = clients(on), clients(off)
        cases = malformed(c_on)
        for label, want, call in cases:
            code, status = code_of(call)
            want_status = 409 if want == "LimitExceeded" else 400
            ok(code == want and status == want_status, label, f"got {code} {status}, want {want} {want_status}")
        refused = [e for e in requests_log(on) if e.get("refused")]
        # Grafana is refused by its emulator, not by the router.
        ok(len(refused) == len(cases) - 2, "refusals logged", f"{len(refused)} of {len(cases) - 2}")
        for label, call in valid(c_on):
            code, status = code_of(call)
            ok(status == 200, f"valid: {label}", f"got {code} {status}")
        # The comparison: with checks off, moto lets these through.
        for label, want, call in malformed(c_off):
            if label in ("iam role name 65", "iam role description 1001", "ssm standard value 5000",
                         "amp alias 150", "amp client token 100"):
                code, status = code_of(call)
                ok(status == 200, f"switched off: {label}", f"got {code} {status}")
        print(f"{passed} passed, {failed} failed")
        return 0 if failed == 0 else 1
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
