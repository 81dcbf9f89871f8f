#!/usr/bin/env python3
"""Self-test of router.py: moto server behind the router, fake Runtime-API function "binaries",
fake Grafana / Prometheus backends, and moto's Step Functions interpreter end to end.

    /work/main/.venv/bin/python tests/localstack/router/selftest.py [--moto-server PATH] [-v]

Needs boto3 and moto[server] (the project venv). Prints `N passed, M failed` last; exits non-zero
on failure. Everything it starts is stopped in `finally` (by pid / process group).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
ROUTER = os.path.join(HERE, "router.py")
ACCOUNT = "123456789012"
REGION = "us-east-1"
TIMEOUT_S = 3

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ["AWS_DEFAULT_REGION"] = REGION
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)

import boto3  # noqa: E402
import botocore.exceptions  # noqa: E402
from botocore.config import Config  # noqa: E402

# --------------------------------------------------------------------------------------------
# fake function binaries (Python scripts speaking the Lambda Runtime API)
# --------------------------------------------------------------------------------------------

RUNTIME_TEMPLATE = r'''#!{python}
import json, os, sys, time, urllib.request
KIND = {kind!r}
BASE = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"

def post(path, body, headers=None):
    req = urllib.request.Request(BASE + path, data=json.dumps(body).encode(), method="POST",
                                 headers=headers or {{}})
    return urllib.request.urlopen(req).read()

if KIND == "initfail":
    post("/init/error", {{"errorType": "Runtime.InitFailed", "errorMessage": "no config"}},
         {{"Lambda-Runtime-Function-Error-Type": "Runtime.InitFailed"}})
    sys.exit(1)

ENV_KEYS = ["AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_LOG_GROUP_NAME",
            "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_REGION", "AWS_DEFAULT_REGION",
            "AWS_LAMBDA_RUNTIME_API", "SELFTEST_FOO", "AWS_ENDPOINT_URL"]
while True:
    r = urllib.request.urlopen(BASE + "/invocation/next")
    rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
    meta = {{"request_id": rid,
            "deadline_ms": r.headers.get("Lambda-Runtime-Deadline-Ms"),
            "arn": r.headers.get("Lambda-Runtime-Invoked-Function-Arn"),
            "trace": r.headers.get("Lambda-Runtime-Trace-Id"),
            "pid": os.getpid()}}
    raw = r.read()
    event = json.loads(raw) if raw else None
    print("handling", rid, flush=True)
    if KIND == "echo":
        out = {{"echo": event, "meta": meta,
               "env": {{k: os.environ.get(k) for k in ENV_KEYS}}}}
        post("/invocation/%s/response" % rid, out)
    elif KIND == "fail":
        post("/invocation/%s/error" % rid,
             {{"errorType": "ValidationError", "errorMessage": "bad input: %s" % json.dumps(event)}},
             {{"Lambda-Runtime-Function-Error-Type": "ValidationError"}})
    elif KIND == "crash":
        os._exit(3)
    elif KIND == "slow":
        time.sleep(float((event or {{}}).get("sleep", 1)))
        post("/invocation/%s/response" % rid, {{"slept": (event or {{}}).get("sleep", 1), "meta": meta}})
'''

FUNCTIONS = ["echo", "fail", "crash", "slow", "initfail"]


def write_functions(d: str) -> None:
    python = os.path.realpath(sys.executable)
    for kind in FUNCTIONS:
        p = os.path.join(d, kind)
        with open(p, "w") as f:
            f.write(RUNTIME_TEMPLATE.format(python=python, kind=kind))
        os.chmod(p, 0o755)


# --------------------------------------------------------------------------------------------
# fake backends
# --------------------------------------------------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    name = "backend"

    def log_message(self, *a):
        pass

    def _any(self):
        length = int(self.headers.get("Content-Length") or 0)
        if "chunked" in (self.headers.get("Transfer-Encoding") or ""):
            body = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(length) if length else b""
        self.server.seen.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        )
        if self.path.endswith("/chunked"):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Multi", "a")
            self.send_header("X-Multi", "b")
            self.end_headers()
            for i in range(5):
                part = (f"part{i};" * 1000).encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path.endswith("/close"):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"close-delimited body")
            self.close_connection = True
            return
        if self.server.name == "grafana" and self.path.startswith("/workspaces"):
            out = json.dumps({"workspaces": []}).encode()
        else:
            out = json.dumps({"backend": self.server.name, "path": self.path}).encode()
        self.send_response(201 if self.command == "PUT" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any


def start_backend(name: str) -> ThreadingHTTPServer:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    srv.daemon_threads = True
    srv.name = name
    srv.seen = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


# --------------------------------------------------------------------------------------------
# process helpers
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not up after {timeout}s")


def start_router(args: list[str], log_path: str) -> tuple[subprocess.Popen, int]:
    logf = open(log_path, "ab")
    proc = subprocess.Popen(
        [sys.executable, ROUTER, *args],
        stdout=subprocess.PIPE,
        stderr=logf,
        start_new_session=True,
    )
    logf.close()
    line = proc.stdout.readline().decode()
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(f"router did not start: {line!r}; see {log_path}")
    return proc, int(line.split()[1])


def stop_proc(proc: subprocess.Popen | None, sig=signal.SIGTERM, group=True, timeout=10.0) -> int | None:
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)
    return proc.returncode


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# test runner
# --------------------------------------------------------------------------------------------


class Runner:
    def __init__(self, verbose: bool):
        self.passed = 0
        self.failed = 0
        self.verbose = verbose
        self.notes: list[str] = []

    def check(self, name: str, cond: bool, detail: object = "") -> bool:
        if cond:
            self.passed += 1
            print(f"ok   {name}")
        else:
            self.failed += 1
            print(f"FAIL {name}: {detail}")
        return cond

    def run(self, name: str, fn) -> None:
        t0 = time.time()
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            self.failed += 1
            print(f"FAIL {name}: exception {e!r}")
            traceback.print_exc()
        if self.verbose:
            print(f"     ({name}: {time.time() - t0:.2f}s)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--moto-server", default=shutil.which("moto_server", path=os.path.dirname(sys.executable))
                    or "/work/main/.venv/bin/moto_server")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    opts = ap.parse_args()

    t = Runner(opts.verbose)
    tmp = tempfile.mkdtemp(prefix="router-selftest-")
    fdir = os.path.join(tmp, "functions")
    os.makedirs(fdir)
    write_functions(fdir)
    router_log = os.path.join(tmp, "router.log")
    moto_log = os.path.join(tmp, "moto.log")

    grafana = start_backend("grafana")
    prom = start_backend("prom")
    gport, pport = grafana.server_address[1], prom.server_address[1]
    moto_port = free_port()
    moto_url = f"http://127.0.0.1:{moto_port}"

    router = moto = router2 = None
    function_pids: list[int] = []
    try:
        router, rport = start_router(
            [
                "--port", "0",
                "--default", moto_url,
                "--route", f"grafana=http://127.0.0.1:{gport}",
                "--host-route", f".grafana-workspace.{REGION}.amazonaws.com=http://127.0.0.1:{gport}",
                "--path-route", f"/workspaces/*/api/v1/remote_write=http://127.0.0.1:{pport}/api/v1/write",
                "--path-route", f"/workspaces/*/api/=http://127.0.0.1:{pport}/api/",
                "--path-route", f"/plain/=http://127.0.0.1:{pport}",
                "--functions-dir", fdir,
                "--function-env", "SELFTEST_FOO=bar",
                "--function-timeout", str(TIMEOUT_S),
            ],
            router_log,
        )
        R = f"http://127.0.0.1:{rport}"
        menv = dict(os.environ, MOTO_PORT=str(rport))
        with open(moto_log, "ab") as mlog:
            moto = subprocess.Popen(
                [opts.moto_server, "-H", "127.0.0.1", "-p", str(moto_port)],
                env=menv, stdout=mlog, stderr=subprocess.STDOUT, start_new_session=True,
            )
        wait_http(f"{R}/_router/health")
        wait_http(f"{moto_url}/moto-api/data.json", timeout=60)

        def client(svc, **cfg):
            return boto3.client(svc, endpoint_url=R, region_name=REGION,
                                config=Config(**cfg) if cfg else None)

        lam = client("lambda", read_timeout=120, retries={"total_max_attempts": 1})

        def get_json(path):
            return json.loads(urllib.request.urlopen(R + path, timeout=10).read())

        def post_json(path, obj=None, base=R):
            req = urllib.request.Request(base + path, data=json.dumps(obj or {}).encode(),
                                         method="POST", headers={"Content-Type": "application/json"})
            return json.loads(urllib.request.urlopen(req, timeout=10).read() or b"null")

        def invoke(name, payload, **kw):
            r = lam.invoke(FunctionName=name, Payload=json.dumps(payload).encode(), **kw)
            body = r["Payload"].read()
            return r, (json.loads(body) if body else None)

        def reqlog():
            return get_json("/_router/requests")

        # ---------------------------------------------------------------- Lambda invoke
        def t_invoke_name():
            r, out = invoke("echo", {"hello": "world"})
            t.check("invoke by name: 200", r["StatusCode"] == 200, r)
            t.check("invoke by name: echoed", out and out["echo"] == {"hello": "world"}, out)
            t.check("invoke by name: no FunctionError", "FunctionError" not in r, r)
            t.check("invoke: X-Amz-Executed-Version", r.get("ExecutedVersion") == "$LATEST", r)
            env = out["env"]
            t.check("env: function name/memory/version",
                    (env["AWS_LAMBDA_FUNCTION_NAME"], env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"],
                     env["AWS_LAMBDA_FUNCTION_VERSION"]) == ("echo", "128", "$LATEST"), env)
            t.check("env: region, log group/stream, runtime api",
                    env["AWS_REGION"] == REGION and env["AWS_DEFAULT_REGION"] == REGION
                    and env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/echo"
                    and "[$LATEST]" in (env["AWS_LAMBDA_LOG_STREAM_NAME"] or "")
                    and (env["AWS_LAMBDA_RUNTIME_API"] or "").startswith("127.0.0.1:"), env)
            t.check("env: --function-env passed, AWS_ENDPOINT_URL defaults to router",
                    env["SELFTEST_FOO"] == "bar" and env["AWS_ENDPOINT_URL"] == R, env)
            meta = out["meta"]
            t.check("runtime headers: arn, deadline, trace",
                    meta["arn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:echo"
                    and int(meta["deadline_ms"]) > time.time() * 1000
                    and int(meta["deadline_ms"]) <= time.time() * 1000 + TIMEOUT_S * 1000 + 1000
                    and (meta["trace"] or "").startswith("Root=1-"), meta)
            r2, out2 = invoke("echo", {"n": 2})
            t.check("warm: second invoke reuses the process", out2["meta"]["pid"] == meta["pid"],
                    (meta["pid"], out2["meta"]["pid"]))

        def t_invoke_arn():
            arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:echo"
            r, out = invoke(arn, {"by": "arn"})
            t.check("invoke by full ARN", r["StatusCode"] == 200 and out["echo"] == {"by": "arn"}, out)
            r, out = invoke(arn + ":$LATEST", {"by": "qualified"})
            t.check("invoke by qualified ARN",
                    out["echo"] == {"by": "qualified"} and out["meta"]["arn"] == arn + ":$LATEST", out)
            r, out = invoke(f"{ACCOUNT}:function:echo", {"by": "partial"})
            t.check("invoke by partial ARN", out["echo"] == {"by": "partial"}, out)
            entries = [e for e in reqlog() if e.get("function") == "echo"]
            t.check("request log: invokes as service lambda, read, function name",
                    entries and all(e["service"] == "lambda" and e["write"] is False
                                    and e["operation"] == "Invoke" for e in entries), entries)

        def t_function_error():
            r, out = invoke("fail", {"x": 1})
            t.check("function error: HTTP 200", r["StatusCode"] == 200, r)
            t.check("function error: X-Amz-Function-Error Unhandled", r.get("FunctionError") == "Unhandled", r)
            t.check("function error: errorType in payload",
                    out.get("errorType") == "ValidationError" and "bad input" in out.get("errorMessage", ""), out)

        def t_crash():
            r, out = invoke("crash", {})
            t.check("crash: FunctionError + Runtime.ExitError",
                    r.get("FunctionError") == "Unhandled" and out.get("errorType") == "Runtime.ExitError"
                    and "exit status 3" in out.get("errorMessage", ""), (r, out))
            r, out = invoke("crash", {})
            st = get_json("/_router/functions")["crash"]
            t.check("crash: process replaced on next invoke",
                    out.get("errorType") == "Runtime.ExitError" and st["processes_started"] == 2
                    and st["crashes"] == 2, st)

        def t_init_error():
            r, out = invoke("initfail", {})
            t.check("init error: reported to the invoker",
                    r.get("FunctionError") == "Unhandled" and out.get("errorType") == "Runtime.InitFailed",
                    out)

        def t_timeout():
            t0 = time.time()
            r, out = invoke("slow", {"sleep": 30})
            dt = time.time() - t0
            t.check("timeout: Sandbox.Timedout", r.get("FunctionError") == "Unhandled"
                    and out.get("errorType") == "Sandbox.Timedout", out)
            t.check("timeout: returned after --function-timeout", TIMEOUT_S <= dt < TIMEOUT_S + 3, dt)
            r, out = invoke("slow", {"sleep": 0})
            t.check("timeout: killed process replaced", out.get("slept") == 0, out)
            st = get_json("/_router/functions")["slow"]
            dead = [p for p in st["processes"] if p["state"] == "dead"]
            t.check("timeout: killed process is dead (SIGKILL)",
                    len(dead) == 1 and dead[0]["exit_code"] == -9 and st["timeouts"] == 1, st)
            function_pids.extend(p["pid"] for p in st["processes"])

        def t_concurrency():
            results = {}

            def one(i):
                results[i] = invoke("slow", {"sleep": 1.5})

            before = get_json("/_router/functions")["slow"]["processes_started"]
            t0 = time.time()
            ths = [threading.Thread(target=one, args=(i,)) for i in range(2)]
            for th in ths:
                th.start()
            for th in ths:
                th.join()
            dt = time.time() - t0
            outs = [results[i][1] for i in range(2)]
            t.check("concurrency: both succeed", all(o.get("slept") == 1.5 for o in outs), outs)
            t.check("concurrency: ran in parallel (two processes)",
                    outs[0]["meta"]["pid"] != outs[1]["meta"]["pid"] and dt < 2.9, (outs, dt))
            st = get_json("/_router/functions")["slow"]
            t.check("concurrency: a second process was started", st["processes_started"] >= before + 1,
                    (before, st["processes_started"]))

        def t_stress():
            ssm = client("ssm")
            ssm.put_parameter(Name="/selftest/stress", Value="s", Type="String")
            errors, outs = [], []

            def inv(i):
                try:
                    outs.append(invoke("slow", {"sleep": 0.3})[1]["slept"])
                except Exception as e:  # noqa: BLE001
                    errors.append(repr(e))

            def get(i):
                try:
                    outs.append(ssm.get_parameter(Name="/selftest/stress")["Parameter"]["Value"])
                except Exception as e:  # noqa: BLE001
                    errors.append(repr(e))

            ths = [threading.Thread(target=f, args=(i,)) for i in range(12) for f in (inv, get)]
            for th in ths:
                th.start()
            for th in ths:
                th.join(60)
            t.check("stress: 12 concurrent invokes + 12 concurrent proxied calls",
                    not errors and sorted(map(str, outs)) == sorted(["0.3"] * 12 + ["s"] * 12), (errors, outs))
            st = get_json("/_router/functions")["slow"]
            t.check("stress: pool grew to at most 12 + earlier processes, all warm ones idle",
                    all(p["state"] in ("idle", "dead") for p in st["processes"]) and st["processes_alive"] <= 12,
                    st["processes_alive"])
            function_pids.extend(p["pid"] for p in st["processes"])

        def t_not_found_and_async():
            try:
                lam.invoke(FunctionName="does-not-exist", Payload=b"{}")
                t.check("missing function: ResourceNotFoundException", False, "no error")
            except botocore.exceptions.ClientError as e:
                t.check("missing function: ResourceNotFoundException",
                        e.response["Error"]["Code"] == "ResourceNotFoundException"
                        and e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
                        and "Function not found" in e.response["Error"]["Message"], e.response)
            r = lam.invoke(FunctionName="echo", Payload=b'{"async": true}', InvocationType="Event")
            t.check("InvocationType Event: 202", r["StatusCode"] == 202, r)
            r = lam.invoke(FunctionName="echo", Payload=b"{}", InvocationType="DryRun")
            t.check("InvocationType DryRun: 204", r["StatusCode"] == 204, r)
            r = lam.invoke(FunctionName="echo", Payload=b'{"tail": 1}', LogType="Tail")
            import base64
            tail = base64.b64decode(r.get("LogResult", "")).decode()
            t.check("LogType Tail: function output", "handling" in tail, tail)

        def t_function_stats():
            st = get_json("/_router/functions")
            e = st["echo"]
            t.check("functions: cold start measured",
                    e["processes_started"] >= 1 and e["cold_starts"]
                    and all(c["init_ms"] > 0 for c in e["cold_starts"]) and e["init_ms"]["count"] >= 1, e)
            t.check("functions: peak RSS read", isinstance(e["peak_rss_kb"], int) and e["peak_rss_kb"] > 1000, e)
            t.check("functions: invocation counts", e["invocations"] >= 6 and st["fail"]["errors"] >= 1, st)

        def t_reload():
            _, before = invoke("echo", {"r": 0})
            path = os.path.join(fdir, "echo")
            with open(path) as f:
                src = f.read()
            with open(path + ".new", "w") as f:
                f.write(src + "\n# rebuilt\n")
            os.chmod(path + ".new", 0o755)
            os.replace(path + ".new", path)
            _, after = invoke("echo", {"r": 1})
            st = get_json("/_router/functions")["echo"]
            t.check("rebuilt binary: warm process replaced",
                    after["echo"] == {"r": 1} and after["meta"]["pid"] != before["meta"]["pid"]
                    and st["binary_reloads"] == 1, (before["meta"], after["meta"], st["binary_reloads"]))
            function_pids.append(before["meta"]["pid"])

        # ---------------------------------------------------------------- proxying
        def t_proxy_moto():
            post_json("/_router/reset")
            iam = client("iam")
            trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {
                "Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
            role = iam.create_role(RoleName="router-selftest", AssumeRolePolicyDocument=trust)["Role"]
            t.check("proxy: iam create_role via router", role["Arn"].endswith(":role/router-selftest"), role)
            got = iam.get_role(RoleName="router-selftest")["Role"]
            t.check("proxy: iam get_role", got["RoleName"] == "router-selftest", got)
            ssm = client("ssm")
            ssm.put_parameter(Name="/selftest/p", Value="v1", Type="String")
            v = ssm.get_parameter(Name="/selftest/p")["Parameter"]["Value"]
            t.check("proxy: ssm put/get", v == "v1", v)
            ident = client("sts").get_caller_identity()
            t.check("proxy: sts get_caller_identity", ident["Account"] == ACCOUNT, ident)
            log = reqlog()
            ops = {e["operation"]: e for e in log}
            t.check("log: IAM CreateRole write (query protocol)",
                    ops.get("CreateRole", {}).get("write") is True
                    and ops["CreateRole"]["service"] == "iam" and ops["CreateRole"]["status"] == 200, ops)
            t.check("log: IAM GetRole read", ops.get("GetRole", {}).get("write") is False, ops)
            t.check("log: SSM PutParameter write (json protocol)",
                    ops.get("PutParameter", {}).get("write") is True and ops["PutParameter"]["service"] == "ssm", ops)
            t.check("log: SSM GetParameter read", ops.get("GetParameter", {}).get("write") is False, ops)
            t.check("log: STS GetCallerIdentity read", ops.get("GetCallerIdentity", {}).get("write") is False, ops)
            since = log[-2]["seq"]
            t.check("log: ?since=SEQ", get_json(f"/_router/requests?since={since}") == log[-1:],
                    get_json(f"/_router/requests?since={since}"))
            t.check("log: backend is moto, seq increasing",
                    all(e["backend"] == moto_url for e in log)
                    and [e["seq"] for e in log] == sorted(e["seq"] for e in log), log)
            # REST service through the router to moto (AMP control plane is not path-routed)
            amp = client("amp")
            ws = amp.create_workspace(alias="selftest")
            d = amp.describe_workspace(workspaceId=ws["workspaceId"])["workspace"]
            t.check("proxy: amp control plane (REST) to moto", d["alias"] == "selftest", d)
            log = reqlog()
            rest = [e for e in log if e.get("service") == "aps"]
            t.check("log: REST ops are METHOD path, GET read / POST write",
                    any(e["operation"] == "POST /workspaces" and e["write"] for e in rest)
                    and any(e["operation"].startswith("GET /workspaces/") and not e["write"] for e in rest), rest)

        def t_answered_here():
            # iam:SimulatePrincipalPolicy, which moto lacks: allowed, implicit and explicit deny,
            # and a permissions boundary that does not allow
            iam = client("iam")
            trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {
                "Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
            arn = iam.create_role(RoleName="simulated", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
            allow = {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["ssm:GetParameter", "ssm:PutParameter"], "Resource": "*"},
                {"Effect": "Deny", "Action": "ssm:PutParameter", "Resource": "arn:aws:ssm:*:*:parameter/locked"}]}
            iam.put_role_policy(RoleName="simulated", PolicyName="p", PolicyDocument=json.dumps(allow))

            def decisions(actions, resource):
                out = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=actions, ResourceArns=[resource])
                return {r["EvalActionName"]: r["EvalDecision"] for r in out["EvaluationResults"]}

            got = decisions(["ssm:GetParameter", "ssm:DeleteParameter"], "arn:aws:ssm:us-east-1:1:parameter/x")
            t.check("simulate: allowed and implicit deny",
                    got == {"ssm:GetParameter": "allowed", "ssm:DeleteParameter": "implicitDeny"}, got)
            got = decisions(["ssm:PutParameter"], "arn:aws:ssm:us-east-1:1:parameter/locked")
            t.check("simulate: explicit deny", got == {"ssm:PutParameter": "explicitDeny"}, got)
            boundary = iam.create_policy(PolicyName="only-get", PolicyDocument=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": "*"}]}))["Policy"]["Arn"]
            iam.put_role_permissions_boundary(RoleName="simulated", PermissionsBoundary=boundary)
            got = decisions(["ssm:GetParameter", "ssm:PutParameter"], "arn:aws:ssm:us-east-1:1:parameter/x")
            t.check("simulate: the boundary limits", got == {"ssm:GetParameter": "allowed",
                                                            "ssm:PutParameter": "implicitDeny"}, got)
            try:
                iam.simulate_principal_policy(PolicySourceArn=arn.replace("simulated", "nobody"),
                                              ActionNames=["ssm:GetParameter"])
                t.check("simulate: missing role is NoSuchEntity", False, "no error")
            except botocore.exceptions.ClientError as e:
                t.check("simulate: missing role is NoSuchEntity", e.response["Error"]["Code"] == "NoSuchEntity", e)
            # SSM: an Advanced parameter is never overwritten as Standard (moto would downgrade)
            ssm = client("ssm")
            ssm.put_parameter(Name="/selftest/big", Value="x" * 4097, Type="String", Tier="Advanced")
            try:
                ssm.put_parameter(Name="/selftest/big", Value="small", Type="String", Tier="Standard", Overwrite=True)
                t.check("ssm: downgrade refused", False, "no error")
            except botocore.exceptions.ClientError as e:
                t.check("ssm: downgrade refused", e.response["Error"]["Code"] == "ValidationException"
                        and "downgrade" in e.response["Error"]["Message"], e)
            ssm.put_parameter(Name="/selftest/big", Value="small", Type="String", Tier="Advanced", Overwrite=True)
            meta = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": ["/selftest/big"]}])
            t.check("ssm: Advanced overwrite accepted", meta["Parameters"][0]["Tier"] == "Advanced", meta)

        def t_proxy_s3():
            s3 = client("s3")
            s3.create_bucket(Bucket="router-selftest")
            blob = os.urandom(1_500_000)
            s3.put_object(Bucket="router-selftest", Key="k/blob.bin", Body=blob)
            got = s3.get_object(Bucket="router-selftest", Key="k/blob.bin")["Body"].read()
            t.check("proxy: s3 put/get 1.5 MB (Expect: 100-continue, binary)", got == blob, len(got))
            e = [x for x in reqlog() if x["service"] == "s3"]
            t.check("log: s3 PUT write, GET read",
                    any(x["operation"] == "PUT /router-selftest/k/blob.bin" and x["write"] for x in e)
                    and any(x["operation"] == "GET /router-selftest/k/blob.bin" and not x["write"] for x in e), e)

        def t_route_by_scope():
            before = len(grafana.seen)
            g = client("grafana")
            out = g.list_workspaces()
            t.check("route by credential scope: grafana backend answered", out.get("workspaces") == [], out)
            seen = grafana.seen[before:]
            t.check("route by credential scope: request reached grafana",
                    seen and seen[0]["path"].startswith("/workspaces")
                    and "/grafana/aws4_request" in seen[0]["headers"].get("Authorization", ""), seen)
            e = [x for x in reqlog() if x["service"] == "grafana"][-1]
            t.check("log: grafana entry", e["backend"] == f"http://127.0.0.1:{gport}" and e["write"] is False, e)

        def t_path_route():
            conn = http.client.HTTPConnection("127.0.0.1", rport, timeout=10)
            before = len(prom.seen)
            conn.request("POST", "/workspaces/ws-1/api/v1/remote_write?x=1", body=b"\x00snappy\xff",
                         headers={"Content-Type": "application/x-protobuf"})
            resp = conn.getresponse()
            resp.read()
            s = prom.seen[before:]
            t.check("path-route: glob + rewrite, query and binary body kept",
                    resp.status == 200 and s and s[0]["path"] == "/api/v1/write?x=1"
                    and s[0]["body"] == b"\x00snappy\xff", s)
            conn.request("GET", "/workspaces/ws-1/api/v1/query?query=up")
            resp = conn.getresponse()
            body = json.loads(resp.read())
            t.check("path-route: second rule", body == {"backend": "prom", "path": "/api/v1/query?query=up"}, body)
            conn.request("GET", "/plain/x/y?z=1")
            resp = conn.getresponse()
            body = json.loads(resp.read())
            t.check("path-route: no rewrite when the URL has no path",
                    body == {"backend": "prom", "path": "/plain/x/y?z=1"}, body)
            # chunked response from the backend re-framed to the client; duplicate headers kept
            conn.request("GET", "/plain/chunked")
            resp = conn.getresponse()
            data = resp.read()
            t.check("proxy: chunked response streamed",
                    resp.status == 200 and data == b"".join((f"part{i};" * 1000).encode() for i in range(5))
                    and resp.getheader("Transfer-Encoding") == "chunked", (resp.status, len(data)))
            t.check("proxy: repeated response headers kept", resp.msg.get_all("X-Multi") == ["a", "b"],
                    resp.msg.get_all("X-Multi"))
            # chunked request body
            conn.request("PUT", "/plain/upload", body=iter([b"abc", b"def"]), encode_chunked=True,
                         headers={"Transfer-Encoding": "chunked"})
            resp = conn.getresponse()
            resp.read()
            t.check("proxy: chunked request body forwarded",
                    resp.status == 201 and prom.seen[-1]["body"] == b"abcdef"
                    and prom.seen[-1]["headers"].get("Content-Length") == "6", prom.seen[-1])
            conn.request("HEAD", "/plain/head")
            resp = conn.getresponse()
            resp.read()
            t.check("proxy: HEAD", resp.status == 200 and resp.getheader("Content-Length") is not None, resp.status)
            conn.request("GET", "/plain/close")
            resp = conn.getresponse()
            t.check("proxy: close-delimited response", resp.read() == b"close-delimited body", "")
            conn.request("GET", "/plain/again")  # keep-alive still usable
            resp = conn.getresponse()
            t.check("proxy: keep-alive connection reused", resp.status == 200 and resp.read(), "")
            conn.close()

        def t_host_route():
            conn = http.client.HTTPConnection("127.0.0.1", rport, timeout=10)
            ws_host = f"g-0123456789.grafana-workspace.{REGION}.amazonaws.com"
            before = len(grafana.seen)
            conn.request("POST", "/api/datasources?x=1", body=b'{"name":"amp"}',
                         headers={"Host": ws_host, "Authorization": "Bearer glsa_x",
                                  "Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            s = grafana.seen[before:]
            t.check("host-route: Host suffix -> grafana backend, path, query, Host, bearer and body kept",
                    resp.status == 200 and len(s) == 1 and s[0]["path"] == "/api/datasources?x=1"
                    and s[0]["headers"].get("Host") == ws_host
                    and s[0]["headers"].get("Authorization") == "Bearer glsa_x"
                    and s[0]["body"] == b'{"name":"amp"}', s)
            # Host routes come before path routes, and a port in Host is ignored.
            conn.request("GET", "/workspaces/ws-1/api/v1/query", headers={"Host": ws_host.upper() + ":443"})
            resp = conn.getresponse()
            resp.read()
            t.check("host-route: checked before path routes; case and port ignored",
                    len(grafana.seen) == before + 2 and grafana.seen[-1]["path"] == "/workspaces/ws-1/api/v1/query",
                    grafana.seen[before:])
            before_p = len(prom.seen)
            conn.request("GET", "/workspaces/ws-1/api/v1/query?query=up",
                         headers={"Host": f"aps-workspaces.{REGION}.amazonaws.com"})
            resp = conn.getresponse()
            resp.read()
            t.check("host-route: other hosts unaffected (path route to prom)",
                    len(prom.seen) == before_p + 1 and len(grafana.seen) == before + 2, prom.seen[before_p:])
            e = [x for x in reqlog() if x["path"] == "/api/datasources"][-1]
            t.check("log: host-routed request (no credential scope): METHOD path, write, grafana backend",
                    e["backend"] == f"http://127.0.0.1:{gport}" and e["service"] is None
                    and e["operation"] == "POST /api/datasources" and e["write"] is True
                    and e["status"] == 200, e)
            conn.close()
            bad = subprocess.run([sys.executable, ROUTER, "--port", "0", "--default", moto_url,
                                  "--host-route", "no-url"], capture_output=True, timeout=20)
            t.check("host-route: a malformed --host-route is refused at start",
                    bad.returncode != 0 and b"--host-route" in bad.stderr, bad.stderr[-300:])

        def t_moto_api_default():
            post_json("/_router/reset")
            cfg = post_json("/moto-api/config", {"stepfunctions": {"execute_state_machine": True}})
            e = reqlog()
            t.check("no Authorization: default backend (moto-api/config via router)",
                    e and e[0]["service"] is None and e[0]["backend"] == moto_url and e[0]["status"] in (200, 201),
                    (cfg, e))

        # ---------------------------------------------------------------- purpose
        def t_purpose():
            """Each logged request says what it is for (router.py purpose_of; README "purpose")."""
            post_json("/_router/reset")
            ssm, sts, sfn = client("ssm"), client("sts"), client("stepfunctions")
            ssm.put_parameter(Name="/o11y/dep/lease", Value="run-1", Type="String", Overwrite=True)
            ssm.delete_parameter(Name="/o11y/dep/lease")
            ssm.put_parameter(Name="/o11y-provisioner/leases/dep", Value="run-1", Type="String", Overwrite=True)
            ssm.put_parameter(Name="/o11y/dep/helm-values", Value="v", Type="String", Overwrite=True)
            ssm.get_parameter(Name="/o11y/dep/helm-values")
            sts.get_caller_identity()
            sfn.list_state_machines()
            invoke("echo", {"purpose": True})
            post_json("/moto-api/config", {"stepfunctions": {"execute_state_machine": True}})

            def scoped(method, path, service, body=b"", host=None):
                """A request with `service` in its credential scope (the router reads no signature)."""
                conn = http.client.HTTPConnection("127.0.0.1", rport, timeout=10)
                headers = {"Authorization": f"AWS4-HMAC-SHA256 Credential=testing/20250101/{REGION}/{service}/"
                                            "aws4_request, SignedHeaders=host, Signature=0"}
                if host:
                    headers = {"Host": host, "Authorization": "Bearer glsa_x"}
                conn.request(method, path, body=body, headers=headers)
                conn.getresponse().read()
                conn.close()

            scoped("POST", "/workspaces/g-1/serviceaccounts/2/tokens", "grafana", b"{}")
            scoped("DELETE", "/workspaces/g-1/serviceaccounts/2/tokens/7", "grafana")
            scoped("POST", "/workspaces/g-1/serviceaccounts", "grafana", b"{}")
            scoped("POST", "/workspaces/ws-1/api/v1/remote_write", "aps", b"\x00")
            ws_host = f"g-1.grafana-workspace.{REGION}.amazonaws.com"
            scoped("PUT", "/api/datasources/uid/amp", None, b"{}", host=ws_host)
            scoped("GET", "/api/datasources/uid/amp", None, host=ws_host)
            s3 = client("s3")
            s3.create_bucket(Bucket="selftest-responses")
            s3v4 = client("s3", signature_version="s3v4")
            for presigner, key in ((s3, "v2"), (s3v4, "v4")):
                url = presigner.generate_presigned_url("put_object", Params={"Bucket": "selftest-responses", "Key": key})
                urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="PUT"), timeout=10).read()
            got = [(e["method"], e.get("name") or e["path"], e.get("purpose")) for e in reqlog()]
            want = [
                ("POST", "/o11y/dep/lease", "lease"),
                ("POST", "/o11y/dep/lease", "lease"),
                ("POST", "/o11y-provisioner/leases/dep", "lease"),
                ("POST", "/o11y/dep/helm-values", "resource"),
                ("POST", "/o11y/dep/helm-values", "read"),
                ("POST", "/", "read"),
                ("POST", "/", "execution"),
                ("POST", "/2015-03-31/functions/echo/invocations", "invoke"),
                ("POST", "/moto-api/config", "harness"),
                ("POST", "/workspaces/g-1/serviceaccounts/2/tokens", "grafana-token"),
                ("DELETE", "/workspaces/g-1/serviceaccounts/2/tokens/7", "grafana-token"),
                ("POST", "/workspaces/g-1/serviceaccounts", "resource"),
                ("POST", "/workspaces/ws-1/api/v1/remote_write", "verification-probe"),
                ("PUT", "/api/datasources/uid/amp", "resource"),
                ("GET", "/api/datasources/uid/amp", "read"),
                ("PUT", "/selftest-responses", "resource"),
                ("PUT", "/selftest-responses/v2", "cfn-response"),
                ("PUT", "/selftest-responses/v4", "cfn-response"),
            ]
            t.check("log: purpose of each request (lease, token, probe, response, resource, read, "
                    "invoke, execution, harness)", got == want, got)

        # ---------------------------------------------------------------- faults
        def t_faults():
            nore = {"retries": {"total_max_attempts": 1}}
            ssm, iam = client("ssm", **nore), client("iam", **nore)
            post_json("/_router/faults", {"rate": 1.0, "seed": 1, "kinds": ["throttle"], "services": ["ssm", "iam"]})
            try:
                ssm.get_parameter(Name="/selftest/p")
                t.check("fault throttle (json)", False, "no error")
            except botocore.exceptions.ClientError as e:
                t.check("fault throttle (json): ThrottlingException 400",
                        e.response["Error"]["Code"] == "ThrottlingException"
                        and e.response["ResponseMetadata"]["HTTPStatusCode"] == 400, e.response)
            try:
                iam.get_role(RoleName="router-selftest")
                t.check("fault throttle (query)", False, "no error")
            except botocore.exceptions.ClientError as e:
                t.check("fault throttle (query): Throttling 400",
                        e.response["Error"]["Code"] == "Throttling"
                        and e.response["ResponseMetadata"]["HTTPStatusCode"] == 400, e.response)
            post_json("/_router/faults", {"rate": 1.0, "kinds": ["503"], "services": ["ssm"]})
            try:
                ssm.get_parameter(Name="/selftest/p")
                t.check("fault 503", False, "no error")
            except botocore.exceptions.ClientError as e:
                t.check("fault 503 (json)", e.response["ResponseMetadata"]["HTTPStatusCode"] == 503
                        and e.response["Error"]["Code"] == "ServiceUnavailable", e.response)
            post_json("/_router/faults", {"rate": 1.0, "kinds": ["reset"], "services": ["ssm"]})
            try:
                ssm.get_parameter(Name="/selftest/p")
                t.check("fault reset", False, "no error")
            except (botocore.exceptions.ConnectionClosedError, botocore.exceptions.EndpointConnectionError,
                    botocore.exceptions.ConnectionError) as e:
                t.check("fault reset: connection error", True, e)
            post_json("/_router/faults", {"rate": 1.0, "kinds": ["latency"], "latency_ms": 700, "services": ["ssm"]})
            t0 = time.time()
            v = ssm.get_parameter(Name="/selftest/p")["Parameter"]["Value"]
            t.check("fault latency: delayed then forwarded", v == "v1" and time.time() - t0 >= 0.7, time.time() - t0)
            post_json("/_router/faults", {"rate": 0.5, "seed": 42, "kinds": ["500"], "services": ["sts"]})
            sts = client("sts", **nore)
            outcomes = []
            for _ in range(20):
                try:
                    sts.get_caller_identity()
                    outcomes.append(0)
                except botocore.exceptions.ClientError:
                    outcomes.append(1)
            t.check("fault rate 0.5: some but not all", 0 < sum(outcomes) < 20, outcomes)
            req = urllib.request.Request(R + "/_router/faults", method="DELETE")
            urllib.request.urlopen(req).read()
            v = ssm.get_parameter(Name="/selftest/p")["Parameter"]["Value"]
            t.check("faults cleared", v == "v1", v)
            faults = [e for e in reqlog() if e.get("fault")]
            kinds = {e["fault"] for e in faults}
            t.check("log: faults counted", {"throttle", "503", "reset", "latency", "500"} <= kinds, kinds)
            # Invokes: the Invoke API's own error by default, or (invoke_faults: function-error) the
            # error name AWS Step Functions reports for it; the function does not run either way.
            post_json("/_router/faults", {"rate": 1.0, "kinds": ["throttle"], "services": ["lambda"]})
            lam = client("lambda", **nore)
            try:
                lam.invoke(FunctionName="echo", Payload=b"{}")
                t.check("fault invoke (http): TooManyRequestsException 429", False, "no error")
            except botocore.exceptions.ClientError as e:
                t.check("fault invoke (http): TooManyRequestsException 429",
                        e.response["Error"]["Code"] == "TooManyRequestsException"
                        and e.response["ResponseMetadata"]["HTTPStatusCode"] == 429, e.response)
            shapes = {}
            for kind in ("throttle", "500", "reset"):
                post_json("/_router/faults", {"rate": 1.0, "kinds": [kind], "services": ["lambda"],
                                              "invoke_faults": "function-error"})
                r = lam.invoke(FunctionName="echo", Payload=b"{}")
                shapes[kind] = (r["StatusCode"], r.get("FunctionError"),
                                json.loads(r["Payload"].read()).get("errorType"))
            t.check("fault invoke (function-error): Step Functions' Lambda error names",
                    shapes == {"throttle": (200, "Unhandled", "Lambda.TooManyRequestsException"),
                               "500": (200, "Unhandled", "Lambda.ServiceException"),
                               "reset": (200, "Unhandled", "Lambda.SdkClientException")}, shapes)
            urllib.request.urlopen(urllib.request.Request(R + "/_router/faults", method="DELETE")).read()

        # ---------------------------------------------------------------- Step Functions
        sfn = client("stepfunctions")
        role_arn = f"arn:aws:iam::{ACCOUNT}:role/router-selftest"

        def run_sm(name, definition, inp, timeout=60):
            sm = sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=role_arn)
            ex = sfn.start_execution(stateMachineArn=sm["stateMachineArn"], name=f"{name}-run-1",
                                     input=json.dumps(inp))
            deadline = time.time() + timeout
            while time.time() < deadline:
                d = sfn.describe_execution(executionArn=ex["executionArn"])
                if d["status"] != "RUNNING":
                    return d, ex["executionArn"]
                time.sleep(0.2)
            raise RuntimeError(f"execution {name} still RUNNING after {timeout}s")

        fn_arn = lambda n: f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{n}"  # noqa: E731

        def t_sfn_echo():
            post_json("/_router/reset")
            d, _ = run_sm("echo-sm", {"StartAt": "Echo", "States": {
                "Echo": {"Type": "Task", "Resource": fn_arn("echo"), "End": True}}}, {"hello": "sfn"})
            out = json.loads(d.get("output") or "null")
            t.check("sfn: Task -> echo SUCCEEDED", d["status"] == "SUCCEEDED", d)
            t.check("sfn: output is the echoed payload", out and out["echo"] == {"hello": "sfn"}, out)
            inv = [e for e in reqlog() if e.get("function") == "echo"]
            t.check("sfn: interpreter's invoke went through the router", len(inv) == 1 and inv[0]["status"] == 200, inv)
            ops = [(e["service"], e["operation"]) for e in reqlog()]
            t.check("log: seq is arrival order (StartExecution before Invoke)",
                    ops.index(("states", "StartExecution")) < ops.index(("lambda", "Invoke")), ops)

        def t_sfn_integration():
            d, _ = run_sm("echo-integration-sm", {"StartAt": "Echo", "States": {"Echo": {
                "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "echo", "Payload.$": "$"},
                "ResultSelector": {"p.$": "$.Payload.echo", "code.$": "$.StatusCode"}, "End": True}}}, {"k": 1})
            out = json.loads(d.get("output") or "null")
            t.check("sfn: arn:aws:states:::lambda:invoke integration", d["status"] == "SUCCEEDED"
                    and out == {"p": {"k": 1}, "code": 200}, d)

        def t_sfn_retry_catch():
            post_json("/_router/reset")
            t0 = time.time()
            d, arn = run_sm("fail-sm", {"StartAt": "Fail", "States": {
                "Fail": {"Type": "Task", "Resource": fn_arn("fail"),
                         "Retry": [{"ErrorEquals": ["ValidationError"], "IntervalSeconds": 1, "MaxAttempts": 2,
                                    "BackoffRate": 1.0, "MaxDelaySeconds": 2, "JitterStrategy": "FULL"}],
                         "Catch": [{"ErrorEquals": ["ValidationError"], "ResultPath": "$.error", "Next": "Handled"}],
                         "End": True},
                "Handled": {"Type": "Pass", "End": True}}}, {"in": 1})
            dt = time.time() - t0
            out = json.loads(d.get("output") or "null")
            t.check("sfn: Catch on ValidationError -> SUCCEEDED", d["status"] == "SUCCEEDED", d)
            t.check("sfn: caught Error == ValidationError", out and out["error"]["Error"] == "ValidationError", out)
            cause = json.loads(out["error"]["Cause"]) if out else {}
            t.check("sfn: Cause is the error payload JSON", cause.get("errorType") == "ValidationError"
                    and "bad input" in cause.get("errorMessage", ""), out)
            n = len([e for e in reqlog() if e.get("function") == "fail"])
            t.check("sfn: Retry MaxAttempts 2 => 3 invocations", n == 3, n)
            t.note_retry = f"3 attempts with JitterStrategy FULL took {dt:.2f}s (IntervalSeconds 1, MaxAttempts 2)"
            hist = sfn.get_execution_history(executionArn=arn)["events"]
            failed = [e for e in hist if e["type"] == "LambdaFunctionFailed"]
            t.check("sfn: history has LambdaFunctionFailed with error ValidationError",
                    failed and failed[0]["lambdaFunctionFailedEventDetails"]["error"] == "ValidationError", failed)

        def t_sfn_fail_paths():
            d, _ = run_sm("fail-paths-sm", {"StartAt": "Fail", "States": {
                "Fail": {"Type": "Task", "Resource": fn_arn("fail"),
                         "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Bad"}],
                         "End": True},
                "Bad": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}}}, {"in": 2})
            t.check("sfn: Fail state with ErrorPath/CausePath", d["status"] == "FAILED"
                    and d.get("error") == "ValidationError" and "bad input" in (d.get("cause") or ""), d)

        def t_sfn_crash_timeout():
            d, _ = run_sm("crash-sm", {"StartAt": "C", "States": {
                "C": {"Type": "Task", "Resource": fn_arn("crash"), "End": True}}}, {})
            t.check("sfn: crash -> FAILED with Runtime.ExitError", d["status"] == "FAILED"
                    and d.get("error") == "Runtime.ExitError", d)
            d, _ = run_sm("missing-sm", {"StartAt": "M", "States": {
                "M": {"Type": "Task", "Resource": fn_arn("not-there"), "End": True}}}, {})
            t.note_missing = f"missing function -> status {d['status']} error {d.get('error')!r}"
            t.check("sfn: missing function -> FAILED", d["status"] == "FAILED", d)

        # ---------------------------------------------------------------- shutdown
        def t_shutdown():
            st = get_json("/_router/functions")
            pids = [p["pid"] for f in st.values() for p in f["processes"] if p["state"] != "dead"]
            t.check("shutdown: warm function processes exist", len(pids) >= 3, pids)
            code = stop_proc(router, signal.SIGTERM, group=False, timeout=15)
            t.check("shutdown: SIGTERM -> exit 0", code == 0, code)
            time.sleep(0.3)
            alive = [p for p in pids + function_pids if pid_alive(p)]
            t.check("shutdown: no function process left", not alive, alive)

        def t_sigkill_no_orphans():
            nonlocal router2
            router2, port2 = start_router(["--port", "0", "--default", moto_url, "--functions-dir", fdir],
                                          router_log)
            lam2 = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port2}", region_name=REGION)
            out = json.loads(lam2.invoke(FunctionName="echo", Payload=b"{}")["Payload"].read())
            pid = out["meta"]["pid"]
            t.check("sigkill: function running", pid_alive(pid), pid)
            router2.kill()
            router2.wait()
            deadline = time.time() + 5
            while pid_alive(pid) and time.time() < deadline:
                time.sleep(0.1)
            t.check("sigkill: function killed with the router (PDEATHSIG)", not pid_alive(pid), pid)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)

        t.note_retry = t.note_missing = ""
        for name, fn in [
            ("invoke by name", t_invoke_name),
            ("invoke by arn", t_invoke_arn),
            ("function error", t_function_error),
            ("crash", t_crash),
            ("init error", t_init_error),
            ("timeout", t_timeout),
            ("concurrency", t_concurrency),
            ("stress", t_stress),
            ("not found / async", t_not_found_and_async),
            ("function stats", t_function_stats),
            ("binary reload", t_reload),
            ("proxy to moto", t_proxy_moto),
            ("answered by the router", t_answered_here),
            ("proxy s3", t_proxy_s3),
            ("route by scope", t_route_by_scope),
            ("path route", t_path_route),
            ("host route", t_host_route),
            ("moto-api default", t_moto_api_default),
            ("purpose", t_purpose),
            ("faults", t_faults),
            ("sfn echo", t_sfn_echo),
            ("sfn integration", t_sfn_integration),
            ("sfn retry/catch", t_sfn_retry_catch),
            ("sfn fail paths", t_sfn_fail_paths),
            ("sfn crash/missing", t_sfn_crash_timeout),
            ("shutdown", t_shutdown),
            ("sigkill", t_sigkill_no_orphans),
        ]:
            t.run(name, fn)
        for n in (t.note_retry, t.note_missing):
            if n:
                print(f"note: {n}")
    except Exception as e:  # noqa: BLE001
        t.failed += 1
        print(f"FAIL setup: {e!r}")
        traceback.print_exc()
    finally:
        stop_proc(router2, signal.SIGKILL)
        stop_proc(router, signal.SIGTERM, group=False, timeout=15)
        stop_proc(router, signal.SIGKILL)  # process group, in case SIGTERM failed
        stop_proc(moto, signal.SIGTERM)
        grafana.shutdown()
        prom.shutdown()
        if t.failed or opts.keep:
            print(f"logs kept in {tmp}")
            if t.failed:
                for p in (router_log,):
                    try:
                        with open(p, "rb") as f:
                            tail = f.read()[-3000:].decode("utf-8", "replace")
                        print(f"--- tail of {p}\n{tail}")
                    except OSError:
                        pass
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{t.passed} passed, {t.failed} failed")
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main())
