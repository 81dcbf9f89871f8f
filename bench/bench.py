#!/usr/bin/env python3
"""Benchmarks of o11y-provisioner on the local stack: how fast and how cheap, against the runbook
done by hand. Run by scripts/bench (which starts and stops the devstack); writes bench/report.md
and bench/report.json.

Needs the devstack's environment (AWS_ENDPOINT_URL = the router, O11Y_MOTO_URL,
O11Y_GRAFANA_EMULATOR_URL, credentials, region) and boto3 (the project's .venv).

What one iteration does (N iterations, the order of the two sides alternating):
  runbook side   reset moto and the Grafana emulator, seed the cluster / OIDC provider / IRSA role,
                 run bench/runbook.sh (the runbook's `aws` CLI commands) and time it.
  workflow side  reset, seed, create the state machine from the real ASL, stop every warm
                 function process (cold starts), start an execution and poll DescribeExecution
                 until it ends: the create. Then invoke the status functions the local stack never
                 reaches (cold), then a re-run on the converged state with cold functions, and one
                 with warm functions. API calls are read from the router's request log.

Only the Python 3 standard library and boto3/botocore are used, and the local stack's client
(tests/localstack/stack.py). What each logged request is for (a resource write, the lease, the
Grafana token, the probe...) is the router's `purpose` tag (tests/localstack/router/README.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import botocore.session
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests/localstack"))
from stack import Stack, env_urls  # noqa: E402

# The functions in the state machine's order (the status functions only in wait loops); the report
# orders them as the create invoked them, and lists any function not named here after these.
FUNCTIONS = [
    "preflight",
    "irsa-trust",
    "amp-workspace",
    "amp-status",
    "write-policy",
    "grafana-role",
    "grafana-workspace",
    "grafana-status",
    "datasource",
    "publish",
    "verify",
    "finish",
    "plan",
]
# Functions that a create does not run (only reported in section 4 and the cost table).
NOT_IN_CREATE = {"plan"}

# The least each step must call, taken from the runbook's own commands (bench/runbook.sh makes
# exactly these calls, 29 in all). Status functions: one Describe per poll, none when the create
# returns ACTIVE.
MINIMUM = {
    "preflight": {
        "reads": 2, "writes": 0,
        "calls": "sts get-caller-identity (AWS_ACCOUNT_ID), eks describe-cluster (OIDC issuer)",
    },
    "irsa-trust": {
        "reads": 1, "writes": 1,
        "calls": "iam get-role, iam update-assume-role-policy",
    },
    "amp-workspace": {
        "reads": 2, "writes": 1,
        "calls": "amp create-workspace, amp list-workspaces, amp describe-workspace",
    },
    "amp-status": {"reads": 0, "writes": 0, "calls": "none (1 describe-workspace per poll when CREATING)"},
    "write-policy": {
        "reads": 1, "writes": 2,
        "calls": "iam create-policy, iam list-policies, iam attach-role-policy",
    },
    "grafana-role": {
        "reads": 2, "writes": 3,
        "calls": "iam create-role, iam get-role, iam create-policy, iam list-policies, iam attach-role-policy",
    },
    "grafana-workspace": {
        "reads": 2, "writes": 1,
        "calls": "grafana create-workspace, grafana list-workspaces, grafana describe-workspace",
    },
    "grafana-status": {"reads": 0, "writes": 0, "calls": "none (1 describe-workspace per poll when CREATING)"},
    "publish": {"reads": 0, "writes": 11, "calls": "11 x ssm put-parameter"},
    # What the runbook leaves to the console or does not do at all: no command to compare with.
    "datasource": {"reads": None, "writes": None,
                   "calls": "none: the runbook's datasource is console clicks (Connectors, SigV4, Save & Test)"},
    "verify": {"reads": None, "writes": None, "calls": "none: the runbook checks nothing"},
    "finish": {"reads": None, "writes": None, "calls": "none: the runbook takes no lease"},
}
NO_MINIMUM = {"reads": None, "writes": None, "calls": "none: not a runbook step"}

TARGETS = {
    "speedup": 5.0,  # workflow at least 5x faster than the runbook script, end to end
    "rerun_seconds": 1.5,  # re-run under 1.5 s ...
    "rerun_writes": 0,  # ... with 0 writes
    "cold_start_ms": 30.0,  # every function's cold start under 30 ms
    "peak_rss_mb": 32.0,  # and peak RSS under 32 MB
    "create_transitions": 60,  # create under 60 state transitions when no wait loop is needed
}

# A call that reaches the router this long after the previous answer, inside one invocation, was
# held back by the router's kept-alive connection delay (about 40 ms; a function's own work between
# two calls takes a few ms).
STALL_MS = 30.0

# us-east-1 list prices (Standard workflows; Lambda x86 requests and duration), for the estimate.
PRICE_PER_TRANSITION = 0.025 / 1000
PRICE_PER_LAMBDA_REQUEST = 0.20 / 1_000_000
PRICE_PER_GB_SECOND = 0.0000166667
LAMBDA_MEMORY_GB = 128 / 1024


STACK: "BenchStack | None" = None  # the stack under test, for the failure diagnosis in main()


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The stack under test (tests/localstack/stack.py) and the runbook
# --------------------------------------------------------------------------------------------


class BenchStack(Stack):
    """The devstack of scripts/bench (from its environment), with what a benchmark run adds: the
    request log past the last mark with the Grafana HTTP API named, a world reset that also seeds
    the user's prerequisites, executions timed, and the runbook."""

    def __init__(self, repo: Path, poll_interval: float, asl: Path):
        cfg = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=10, read_timeout=300)
        # The devstack's state file is shared by every session of this checkout: another session's
        # `devstack up` stops our stack. Remember ours to tell that apart from a real failure.
        super().__init__(*env_urls(), config=cfg, state_file=repo / ".local/devstack.json")
        self.repo = repo
        self.poll_interval = poll_interval
        self.asl = asl
        self.o11y_local = str(repo / "target/debug/o11y-local")

    def requests_since(self, seq: int) -> list[dict]:
        """The request log after `seq`, the Grafana HTTP API's requests named (normalise)."""
        return [normalise(e) for e in self.requests(seq)]

    def reset_world(self) -> None:
        """Clean state: moto and the emulator reset, the user's prerequisites seeded."""
        self.reset()
        out = subprocess.run([self.o11y_local, "seed-demo"], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"seed-demo failed: {out.stderr.strip()}")

    def execute(self, sm_arn: str, name: str, payload: dict, timeout: float = 600.0) -> dict:
        """One execution to its end: wall and engine time, polls, output, history."""
        t0 = time.perf_counter()
        arn = self.start_execution(name, payload, sm_arn)
        ex = self.wait_execution(arn, timeout, self.poll_interval)
        if ex.status == "STILL_RUNNING":
            raise RuntimeError(f"execution {arn} still RUNNING after {timeout} s")
        wall = time.perf_counter() - t0
        return {
            "arn": arn,
            "status": ex.status,
            "wall_s": wall,
            "engine_s": ex.engine_s,
            "polls": ex.polls,
            "output": ex.output,
            "error": ex.error,
            "cause": ex.cause,
            "events": self.history(arn),
        }

    def run_runbook(self, script: Path) -> dict:
        """Runs the runbook script (its `aws` CLI commands) and times it, and each command."""
        with tempfile.NamedTemporaryFile("r", suffix=".timings", delete=False) as tf:
            timings_path = tf.name
        env = dict(os.environ, BENCH_TIMINGS=timings_path, AWS=str(self.repo / ".venv/bin/aws"))
        t0 = time.perf_counter()
        out = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        calls = []
        try:
            for line in Path(timings_path).read_text().splitlines():
                secs, service, op = line.split(" ", 2)
                calls.append({"seconds": float(secs), "command": f"{service} {op}"})
        finally:
            os.unlink(timings_path)
        if out.returncode != 0:
            raise RuntimeError(f"bench/runbook.sh failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
        return {"wall_s": wall, "cli_calls": calls}


# --------------------------------------------------------------------------------------------
# Request log analysis
# --------------------------------------------------------------------------------------------


class OpNamer:
    """Names REST requests (`GET /workspaces/ws-1`) by the botocore service models
    (`DescribeWorkspace`); the router already names the JSON and query protocols."""

    SERVICES = ("amp", "grafana", "eks", "lambda")

    def __init__(self) -> None:
        session = botocore.session.get_session()
        self.routes: dict[str, list[tuple[int, str, re.Pattern, str]]] = {}
        for svc in self.SERVICES:
            model = session.get_service_model(svc)
            key = model.metadata.get("signingName") or model.metadata.get("endpointPrefix") or svc
            table = []
            for op in model.operation_names:
                h = model.operation_model(op).http
                uri = h["requestUri"].split("?", 1)[0]
                literal = len(re.sub(r"\{[^}]*\}", "", uri))
                pattern = re.sub(r"\\\{[^}]*\\\+\\\}", ".+", re.escape(uri))
                pattern = re.sub(r"\\\{[^}]*\\\}", "[^/]+", pattern)
                table.append((literal, h["method"], re.compile(f"^{pattern}/?$"), op))
            table.sort(key=lambda t: -t[0])
            self.routes[key] = table

    def name(self, entry: dict) -> str:
        op = entry.get("operation") or "?"
        path = (entry.get("path") or "").split("?", 1)[0]
        if entry.get("service") == "aps" and path.endswith("/api/v1/remote_write"):
            return "RemoteWrite"
        if entry.get("service") == "aps" and path.endswith("/api/v1/query"):
            return "QueryMetrics"
        if entry.get("service") == "ssm" and entry.get("name"):
            return f"{op}[{str(entry['name']).rsplit('/', 1)[-1]}]"
        table = self.routes.get(entry.get("service") or "")
        if table and " " in op:
            method, _, path = op.partition(" ")
            path = path.split("?", 1)[0]
            for _, m, rx, name in table:
                if m == method and rx.match(path):
                    return name
        return op


def is_aws_call(e: dict) -> bool:
    """A call of the product to AWS, or to a workspace's Grafana HTTP API (not a Lambda invoke, not
    Step Functions, not the harness's own control requests): by the router's `purpose` tag (none
    yet on a request still in flight, logged when it arrived)."""
    return e.get("purpose") not in ("invoke", "execution", "harness", None)


def normalise(e: dict) -> dict:
    """The router names a request by its SigV4 scope; the Grafana HTTP API (a bearer token, no
    SigV4) has none: call it `grafana-http` (the unsigned requests the router reads as the product's,
    not the harness's: those a --host-route sends to the emulator)."""
    if not e.get("service") and e.get("purpose") in ("read", "resource"):
        e["service"] = "grafana-http"
    return e


def write_kind(e: dict) -> str:
    """What a write is, as the router tags it (`purpose`, tests/localstack/router/README.md):
    `resource` (changes something provisioned), or one of the writes every apply makes on purpose
    (README "Every change is idempotent"): `lease` (the deployment lease's put and delete),
    `grafana-token` (the per-run Grafana service-account token, created, then deleted),
    `verification-probe` (the probe's one remote-written sample)."""
    return e.get("purpose") or "resource"


PLAN_TOKEN_WRITES = ["grafana:CreateWorkspaceServiceAccountToken", "grafana:DeleteWorkspaceServiceAccountToken"]


def plan_write_problem(m: dict) -> str:
    """What is wrong with a plan's writes (`measure`'s `writes`), or "": a plan may write nothing but
    one Grafana token's create and then its delete (none where there is no workspace or service
    account yet to make one with)."""
    other = [w for w, k in zip(m["writes"], m["write_kinds"]) if k != "grafana-token"]
    tokens = [w for w, k in zip(m["writes"], m["write_kinds"]) if k == "grafana-token"]
    if other:
        return f"{len(other)} write(s) besides its Grafana token's"
    if tokens not in ([], PLAN_TOKEN_WRITES):
        return "its Grafana token writes are not one create followed by its delete"
    return ""


def aws_calls(entries: list[dict]) -> list[dict]:
    return [e for e in entries if is_aws_call(e)]


def count_rw(calls: list[dict]) -> dict:
    writes = [c for c in calls if c.get("write")]
    return {"reads": len(calls) - len(writes), "writes": len(writes), "total": len(calls)}


def attribute(entries: list[dict], namer: OpNamer) -> dict:
    """Attributes each AWS call to the function invocation it happened in.

    The router logs an entry when a request arrives (`seq` = arrival order) and invocations carry
    `function`; the state machine runs one task at a time, so a call belongs to the last invoke
    before it. Each call is also checked against the invoke's time window [arrival, arrival +
    duration]; a call outside every window is reported as unattributed."""
    per: dict[str, dict] = {}
    unattributed = []
    current = None
    invocations = []
    for e in entries:
        if e.get("service") == "lambda":
            start = e["time"]
            end = start + (e.get("duration_ms") or 0) / 1000.0
            current = {"function": e.get("function"), "start": start, "end": end, "entry": e}
            invocations.append(current)
            f = per.setdefault(e.get("function"), {"invocations": 0, "calls": []})
            f["invocations"] += 1
            continue
        if not is_aws_call(e):
            continue
        if current and current["start"] - 0.005 <= e["time"] <= current["end"] + 0.005:
            per[current["function"]]["calls"].append(e)
        else:
            unattributed.append(e)
    steps = {}
    for fn, d in per.items():
        rw = count_rw(d["calls"])
        ops = []
        for c in d["calls"]:
            n = f"{c['service']}:{namer.name(c)}"
            if c.get("status") and c["status"] >= 400:
                n += f" ({c['status']})"
            ops.append(n)
        writes = [f"{c['service']}:{namer.name(c)}" for c in d["calls"] if c.get("write")]
        steps[fn] = {**rw, "invocations": d["invocations"], "operations": ops, "write_operations": writes}
    return {
        "steps": steps,
        "unattributed": [f"{c['service']}:{namer.name(c)}" for c in unattributed],
        "invocations": invocations,
    }


def client_gaps(entries: list[dict]) -> list[float]:
    """Milliseconds between the router's answer to one AWS call and the next call's arrival,
    inside one invocation (client-side time between two calls)."""
    gaps = []
    prev = None
    for e in entries:
        if e.get("service") == "lambda":
            prev = None
            continue
        if not is_aws_call(e):
            continue
        if prev is not None:
            gaps.append((e["time"] - (prev["time"] + (prev.get("duration_ms") or 0) / 1000.0)) * 1000.0)
        prev = e
    return gaps


def transitions(events: list[dict]) -> int:
    return sum(1 for ev in events if ev["type"].endswith("StateEntered"))


def exited_state(events: list[dict], state: str) -> dict | None:
    """The full state JSON a task state produced (its TaskStateExited output)."""
    for ev in events:
        d = ev.get("stateExitedEventDetails")
        if d and d.get("name") == state and d.get("output"):
            return json.loads(d["output"])
    return None


def function_samples(stats: dict) -> dict:
    """Per function: cold starts (init_ms) and peak RSS (kB) of the processes since the reset."""
    out = {}
    for name, s in stats.items():
        procs = [p for p in s.get("processes", []) if p.get("invocations")]
        out[name] = {
            "init_ms": [c["init_ms"] for c in s.get("cold_starts", []) if c.get("init_ms") is not None],
            "peak_rss_kb": [p["peak_rss_kb"] for p in procs if p.get("peak_rss_kb")],
            "invocations": s.get("invocations", 0),
            "errors": s.get("errors", 0),
            "crashes": s.get("crashes", 0),
            "timeouts": s.get("timeouts", 0),
            "binary_reloads": s.get("binary_reloads", 0),
        }
    return out


# --------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------


def keepalive_calibration(stack: BenchStack, n: int = 12) -> dict:
    """Median latency of one tiny STS call on a kept-alive connection, through the router and
    straight to moto, and on a fresh connection through the router."""
    import http.client
    from urllib.parse import urlsplit

    body = "Action=GetCallerIdentity&Version=2011-06-15"
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/sts/aws4_request, "
                         "SignedHeaders=host, Signature=0",
    }

    def run(url: str, keep: bool) -> float:
        u = urlsplit(url)
        times = []
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        for _ in range(n):
            if not keep:
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            t0 = time.perf_counter()
            conn.request("POST", "/", body, headers)
            conn.getresponse().read()
            times.append((time.perf_counter() - t0) * 1000.0)
            if not keep:
                conn.close()
        conn.close()
        return round(statistics.median(times[1:]), 1)

    stack.mark()
    res = {
        "router_keepalive_ms": run(stack.router_url, True),
        "router_fresh_connection_ms": run(stack.router_url, False),
        "moto_keepalive_ms": run(stack.moto_url, True),
    }
    stack.mark()  # past the calibration's entries
    return res


def git(repo: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def environment(repo: Path, functions_dir: Path, profile: str) -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for mod in ("moto", "boto3", "botocore"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod)
        except Exception:
            pass
    aws_v = subprocess.run([str(repo / ".venv/bin/aws"), "--version"], capture_output=True, text=True)
    dirty = git(repo, "status", "--porcelain")
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": git(repo, "rev-parse", "--short", "HEAD"),
        "worktree_dirty": bool(dirty),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aws_cli": (aws_v.stdout or aws_v.stderr).strip(),
        "packages": versions,
        "functions_dir": str(functions_dir),
        "profile": profile,
        "loadavg_start": os.getloadavg(),
        "hostname": socket.gethostname(),
    }


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summary(xs: list[float]) -> dict | None:
    if not xs:
        return None
    return {"n": len(xs), "median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def bench(args: argparse.Namespace) -> dict:
    repo = Path(args.repo).resolve()
    asl_path = Path(args.asl).resolve() if args.asl else repo / "statemachine/provision.asl.json"
    global STACK
    stack = STACK = BenchStack(repo, args.poll_interval, asl_path)
    asl = json.loads(asl_path.read_text())
    # plan and delete: run when the state machine routes on the input's action.
    actions = '"$.preflight.action"' in json.dumps(asl) or "$.preflight.action" in json.dumps(asl)
    namer = OpNamer()
    runbook = repo / "bench/runbook.sh"
    payload = json.loads((repo / args.input).read_text())
    functions_dir = Path(args.functions_dir).resolve()
    env = environment(repo, functions_dir, args.profile)
    env["asl"] = str(asl_path)
    env["repo"] = str(repo)
    env["actions"] = actions
    log(f"{args.runs} run(s) each; functions from {functions_dir}")
    env["keepalive_calibration"] = keepalive_calibration(stack)
    env["poll_interval_s"] = args.poll_interval

    t_start = time.monotonic()
    runs = []
    problems: list[str] = []
    fn_samples: dict[str, dict[str, list]] = {f: {"init_ms": [], "peak_rss_kb": [], "sources": []} for f in FUNCTIONS}
    fn_health = {"errors": 0, "crashes": 0, "timeouts": 0, "binary_reloads": 0}

    def collect(source: str) -> float:
        """Adds the function processes' samples since the last reset; returns their cold starts' sum (ms)."""
        total = 0.0
        for name, s in function_samples(stack.functions()).items():
            total += sum(s["init_ms"])
            slot = fn_samples.setdefault(name, {"init_ms": [], "peak_rss_kb": [], "sources": []})
            slot["init_ms"].extend(s["init_ms"])
            slot["peak_rss_kb"].extend(s["peak_rss_kb"])
            if s["init_ms"]:
                slot["sources"].append(source)
            for k in fn_health:
                fn_health[k] += s[k]
        return total

    def runbook_side(i: int) -> dict:
        stack.reset_world()
        seq = stack.mark()
        rb = stack.run_runbook(runbook)
        calls = aws_calls(stack.requests_since(seq))
        pages = stack.ssm.get_paginator("get_parameters_by_path").paginate(Path="/o11y/dr-prod", Recursive=True)
        params = [x for page in pages for x in page["Parameters"]]
        if len(params) != 11:
            raise RuntimeError(f"runbook run {i}: {len(params)} SSM parameters under /o11y/dr-prod, expected 11")
        rb["api"] = count_rw(calls)
        rb["api_operations"] = [f"{c['service']}:{namer.name(c)}" for c in calls]
        log(f"run {i}: runbook.sh {rb['wall_s']:.2f} s ({len(rb['cli_calls'])} aws CLI calls, "
            f"{rb['api']['total']} API calls)")
        return rb

    def measure(sm: str, kind: str, i: int, body: dict) -> dict:
        """One execution: wall time, transitions, invocations, API calls attributed per step."""
        seq = stack.mark()
        ex = stack.execute(sm, f"bench-{kind}-{i}-{time.time_ns()}", body)
        entries = stack.requests_since(seq)
        att = attribute(entries, namer)
        lam = [e for e in entries if e.get("service") == "lambda"]
        calls = aws_calls(entries)
        return {
            "status": ex["status"],
            "error": ex["error"],
            "cause": ex["cause"],
            "wall_s": ex["wall_s"],
            "engine_s": ex["engine_s"],
            "polls": ex["polls"],
            "transitions": transitions(ex["events"]),
            "lambda_invocations": len(lam),
            "lambda_scheduled_events": sum(1 for ev in ex["events"] if ev["type"] == "LambdaFunctionScheduled"),
            "lambda_duration_ms": sum(e.get("duration_ms") or 0 for e in lam),
            "invoke_ms": {e["function"]: e.get("duration_ms") for e in lam},
            "api": count_rw(calls),
            "writes": [f"{c['service']}:{namer.name(c)}" for c in calls if c.get("write")],
            "write_kinds": [write_kind(c) for c in calls if c.get("write")],
            "resource_writes": [f"{c['service']}:{namer.name(c)}" for c in calls
                                if c.get("write") and write_kind(c) == "resource"],
            "per_step": att["steps"],
            "unattributed": att["unattributed"],
            "client_gaps_ms": client_gaps(entries),
            "wait_loops": sorted({ev["stateEnteredEventDetails"]["name"] for ev in ex["events"]
                                  if ev["type"] == "WaitStateEntered"}),
            "adopted": (ex["output"] or {}).get("adopted") if isinstance(ex["output"], dict) else None,
            "_events": ex["events"],
        }

    def must_succeed(m: dict, what: str, i: int) -> None:
        if m["status"] != "SUCCEEDED":
            raise RuntimeError(f"{what} run {i}: {m['status']} {m['error']}: {(m['cause'] or '')[:1500]}")

    def optional(m: dict, what: str, i: int, max_writes: int | None) -> None:
        """plan and delete: reported, not fatal (they may still be in development)."""
        if m["status"] != "SUCCEEDED":
            problems.append(f"{what} run {i}: {m['status']} {m['error']}: {(m['cause'] or '')[:300]}")
        elif max_writes is not None and m["api"]["writes"] > max_writes:
            problems.append(f"{what} run {i}: {m['api']['writes']} AWS write(s), must be {max_writes}: "
                            f"{', '.join(m['writes'])}")

    def optional_plan(m: dict, what: str, i: int) -> None:
        """plan: reported, not fatal; its only writes may be the create, then the delete, of the one
        short-lived Grafana token it reads the data source with (README "Plan, apply, delete")."""
        optional(m, what, i, None)
        if m["status"] == "SUCCEEDED" and plan_write_problem(m):
            problems.append(f"{what} run {i}: {plan_write_problem(m)}: {', '.join(m['writes'])}")

    def workflow_side(i: int) -> dict:
        w: dict = {}
        stack.reset_world()
        sm = stack.deploy(stack.asl)  # moto's reset removed the previous one
        if actions:
            # plan on the fresh state first (cold): it must write nothing, so the create below
            # still starts from the clean state (checked).
            stack.reset_functions()
            w["plan_fresh"] = measure(sm, "plan-fresh", i, {**payload, "action": "plan"})
            optional_plan(w["plan_fresh"], "plan (fresh)", i)
            collect("plan")
        stack.reset_functions()
        w["create"] = measure(sm, "create", i, payload)
        must_succeed(w["create"], "create", i)
        w["create"]["cold_start_ms_total"] = collect("create")

        # The status functions: the local stack never reaches them (AMP on moto and the Grafana
        # emulator with delay 0 answer ACTIVE at once): one real cold invocation each, with the
        # state the state machine would pass them.
        stack.reset_functions()
        direct = {}
        for fn, after in (("amp-status", "AmpWorkspace"), ("grafana-status", "GrafanaWorkspace")):
            if fn in w["create"]["per_step"]:
                continue
            state = exited_state(w["create"]["_events"], after)
            if state is None:
                problems.append(f"no {after} output in the history: {fn} not measured")
                continue
            s0 = stack.mark()
            r = stack.lam.invoke(FunctionName=fn, Payload=json.dumps(state).encode())
            body = r["Payload"].read()
            if r.get("FunctionError"):
                problems.append(f"direct invoke of {fn} failed: {body[:300]!r}")
            direct[fn] = {"api": count_rw(aws_calls(stack.requests_since(s0))), "function_error": r.get("FunctionError")}
        collect("direct invoke")
        w["direct_invokes"] = direct

        stack.reset_functions()
        w["rerun_cold"] = measure(sm, "rerun-cold", i, payload)
        must_succeed(w["rerun_cold"], "re-run (cold)", i)
        w["rerun_cold"]["cold_start_ms_total"] = collect("re-run")
        w["rerun_warm"] = measure(sm, "rerun-warm", i, payload)
        must_succeed(w["rerun_warm"], "re-run (warm)", i)
        for kind in ("rerun_cold", "rerun_warm"):
            # Every write misses the 0-writes target (reported there); a write that changes a
            # provisioned resource on converged state is a bug as well.
            if w[kind]["resource_writes"]:
                problems.append(f"{kind.replace('_', ' ')} run {i}: {len(w[kind]['resource_writes'])} write(s) "
                                f"changing a resource on converged state: {', '.join(w[kind]['resource_writes'])}")
        if actions:
            w["plan_converged"] = measure(sm, "plan-converged", i, {**payload, "action": "plan"})
            optional_plan(w["plan_converged"], "plan (converged)", i)
            w["delete"] = measure(sm, "delete", i, {**payload, "action": "delete"})
            optional(w["delete"], "delete", i, None)
        for m in w.values():
            if isinstance(m, dict):
                m.pop("_events", None)
        log(f"run {i}: workflow create {w['create']['wall_s']:.2f} s, re-run {w['rerun_cold']['wall_s']:.2f} s cold / "
            f"{w['rerun_warm']['wall_s']:.2f} s warm, re-run writes {w['rerun_cold']['api']['writes']}"
            f"+{w['rerun_warm']['api']['writes']}"
            + (f", plan {w['plan_converged']['wall_s']:.2f} s, delete {w['delete']['wall_s']:.2f} s" if actions else ""))
        return w

    for i in range(1, args.runs + 1):
        run = {"run": i, "loadavg": os.getloadavg()}
        # Alternate which side goes first, so that drifting machine load hits both alike.
        order = ("runbook", "workflow") if i % 2 else ("workflow", "runbook")
        run["order"] = list(order)
        for side in order:
            run[side] = runbook_side(i) if side == "runbook" else workflow_side(i)
        runs.append(run)
    # One create with a Grafana wait loop, to measure what each poll costs: the emulator keeps the
    # workspace CREATING for a while (the devstack's functions wait O11Y_WAIT_FIRST_SECONDS=1,
    # doubling to 2 s), then the emulator's command-line config is restored by its reset.
    loop = None
    if args.wait_loop_delay > 0:
        stack.reset_world()
        sm = stack.deploy(stack.asl)  # moto's reset removed the previous one
        stack.emulator("POST", "/_emulator/config", {"activeDelaySeconds": args.wait_loop_delay})
        stack.reset_functions()
        seq = stack.mark()
        ex = stack.execute(sm, f"bench-create-wait-{time.time_ns()}", payload)
        entries = stack.requests_since(seq)
        stack.emulator("POST", "/_emulator/reset", {})
        if ex["status"] != "SUCCEEDED":
            problems.append(f"create with a Grafana wait loop: {ex['status']} {ex['error']}: {(ex['cause'] or '')[:300]}")
        else:
            waits = [ev for ev in ex["events"] if ev["type"] == "WaitStateEntered"]
            loop = {
                "grafana_active_delay_s": args.wait_loop_delay,
                "wall_s": ex["wall_s"],
                "transitions": transitions(ex["events"]),
                "lambda_invocations": sum(1 for e in entries if e.get("service") == "lambda"),
                "polls": len(waits),
                "wait_states": sorted({ev["stateEnteredEventDetails"]["name"] for ev in waits}),
                "api": count_rw(aws_calls(entries)),
            }
            log(f"create with a Grafana wait loop: {loop['polls']} poll(s), {loop['transitions']} transitions")
    stack.reset_functions()
    env["loadavg_end"] = os.getloadavg()
    env["wait_loop"] = loop
    env["duration_s"] = time.monotonic() - t_start
    env["state_machines_after_reset"] = stack.machines_found
    return analyse(args, env, runs, fn_samples, fn_health, problems, functions_dir, actions)


# --------------------------------------------------------------------------------------------
# Analysis and report
# --------------------------------------------------------------------------------------------


def analyse(args, env, runs, fn_samples, fn_health, problems, functions_dir: Path, actions: bool) -> dict:
    rb = [r["runbook"]["wall_s"] for r in runs]
    cr = [r["workflow"]["create"]["wall_s"] for r in runs]
    rc = [r["workflow"]["rerun_cold"]["wall_s"] for r in runs]
    rw = [r["workflow"]["rerun_warm"]["wall_s"] for r in runs]
    cli = [c["seconds"] for r in runs for c in r["runbook"]["cli_calls"]]
    first = runs[0]
    create0 = first["workflow"]["create"]
    speedup = med(rb) / med(cr) if med(cr) else None

    # The create's functions in the order it invoked them, the status functions after the step they
    # poll for, then the rest.
    order = list(create0["invoke_ms"])
    for status, after in (("amp-status", "amp-workspace"), ("grafana-status", "grafana-workspace")):
        if status not in order:
            order.insert(order.index(after) + 1 if after in order else len(order), status)
    create_fns = list(order)
    order += [f for f in FUNCTIONS if f not in order]
    order += sorted(f for f in fn_samples if f not in order)

    per_step = []
    total = {"reads": 0, "writes": 0, "min_reads": 0, "min_writes": 0, "matched_reads": 0, "matched_writes": 0}
    for fn in create_fns:
        # The counts are deterministic per run; take run 1's, and flag any run that differs.
        s = create0["per_step"].get(fn)
        variants = {json.dumps(r["workflow"]["create"]["per_step"].get(fn), sort_keys=True) for r in runs}
        m = MINIMUM.get(fn, NO_MINIMUM)
        row = {
            "function": fn,
            "invoked": bool(s),
            "reads": s["reads"] if s else 0,
            "writes": s["writes"] if s else 0,
            "operations": s["operations"] if s else [],
            "write_operations": s["write_operations"] if s else [],
            "min_reads": m["reads"],
            "min_writes": m["writes"],
            "min_calls": m["calls"],
            "same_in_every_run": len(variants) == 1,
        }
        per_step.append(row)
        total["reads"] += row["reads"]
        total["writes"] += row["writes"]
        if m["reads"] is not None:
            # The steps that have a runbook counterpart, against it.
            total["min_reads"] += m["reads"]
            total["min_writes"] += m["writes"]
            total["matched_reads"] += row["reads"]
            total["matched_writes"] += row["writes"]

    functions = []
    names = [f for f in order if f in create_fns or fn_samples.get(f, {}).get("init_ms")]
    for fn in names:
        s = fn_samples.get(fn, {"init_ms": [], "peak_rss_kb": [], "sources": []})
        binary = functions_dir / fn
        if not binary.exists():
            binary = functions_dir / fn / "bootstrap"
        zip_path = Path(args.repo).resolve() / "target/lambda" / fn / "bootstrap.zip"
        functions.append({
            "function": fn,
            "cold_start_ms": summary(s["init_ms"]),
            "peak_rss_mb": summary([k / 1024 for k in s["peak_rss_kb"]]),
            "measured_in": sorted(set(s["sources"])),
            "binary_bytes": binary.stat().st_size if binary.exists() else None,
            "zip_bytes": zip_path.stat().st_size if zip_path.exists() else None,
            "zip_built": (dt.datetime.fromtimestamp(zip_path.stat().st_mtime, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
                          if zip_path.exists() else None),
            "zip_older_than_binary": (zip_path.stat().st_mtime < binary.stat().st_mtime
                                      if zip_path.exists() and binary.exists() else None),
        })

    gaps = [g for r in runs for g in r["workflow"]["create"]["client_gaps_ms"]]
    # One row per kind of execution; a kind the state machine does not have yet is a
    # "not yet implemented" row (add it to EXECUTIONS in workflow_side and here).
    cost = []
    for kind, label in (("create", "create (fresh)"), ("rerun_cold", "re-run (converged)"),
                        ("plan_fresh", "plan (fresh)"), ("plan_converged", "plan (converged)"),
                        ("delete", "delete (after the create)")):
        ms = [r["workflow"][kind] for r in runs if kind in r["workflow"]]
        if not ms:
            cost.append({"execution": label, "kind": kind, "implemented": False})
            continue
        ok = [m for m in ms if m["status"] == "SUCCEEDED"]
        if not ok:
            cost.append({"execution": label, "kind": kind, "implemented": True, "succeeded": False,
                         "error": f"{ms[0]['status']} {ms[0]['error']}"})
            continue
        t = med([m["transitions"] for m in ok])
        n = med([m["lambda_invocations"] for m in ok])
        d = med([m["lambda_duration_ms"] for m in ok])
        cost.append({
            "execution": label,
            "kind": kind,
            "implemented": True,
            "succeeded": len(ok) == len(ms),
            "runs": len(ms),
            "wall_s": summary([m["wall_s"] for m in ok]),
            "state_transitions": t,
            "lambda_invocations": n,
            "lambda_duration_ms_median": d,
            "api": ok[0]["api"],
            "wait_loops": sorted({x for m in ok for x in m["wait_loops"]}),
            "est_usd": t * PRICE_PER_TRANSITION + n * PRICE_PER_LAMBDA_REQUEST
            + (d / 1000.0) * LAMBDA_MEMORY_GB * PRICE_PER_GB_SECOND,
        })

    def breakdown(kind: str) -> dict:
        """Where an execution's wall time goes (medians over the runs)."""
        ms = [r["workflow"][kind] for r in runs]
        stalls = [[g for g in m["client_gaps_ms"] if g > STALL_MS] for m in ms]
        return {
            "wall_s": med([m["wall_s"] for m in ms]),
            "lambda_s": med([m["lambda_duration_ms"] / 1000.0 for m in ms]),
            "cold_starts_s": med([m.get("cold_start_ms_total", 0.0) / 1000.0 for m in ms]),
            "stalled_calls": med([len(x) for x in stalls]),
            "stall_s": med([sum(x) / 1000.0 for x in stalls]),
            "outside_lambda_s": med([m["wall_s"] - m["lambda_duration_ms"] / 1000.0 for m in ms]),
            "aws_calls": med([m["api"]["total"] for m in ms]),
            # Invocations of the steps the runbook has no command for (datasource, verify, finish).
            "beyond_runbook_s": med([sum((d or 0) for fn, d in m["invoke_ms"].items()
                                         if fn in MINIMUM and MINIMUM[fn]["reads"] is None) / 1000.0 for m in ms]),
        }

    bd = {k: breakdown(k) for k in ("create", "rerun_cold", "rerun_warm")}

    def why(kind: str) -> str:
        b = bd[kind]
        return (f"{b['wall_s']:.2f} s = {b['lambda_s']:.2f} s inside the Lambda invocations (cold starts "
                f"{b['cold_starts_s']:.2f} s; steps the runbook has no command for {b['beyond_runbook_s']:.2f} s; "
                f"{b['stalled_calls']:.0f} of {b['aws_calls']:.0f} calls answered over {STALL_MS:.0f} ms late by "
                f"the router on kept-alive connections, {b['stall_s']:.2f} s) + "
                f"{b['outside_lambda_s']:.2f} s outside them (moto's interpreter between states, polling); "
                f"less the router's stalls, about {b['wall_s'] - b['stall_s']:.2f} s")

    reruns = [r["workflow"][k] for r in runs for k in ("rerun_cold", "rerun_warm")]
    rerun_writes = sum(m["api"]["writes"] for m in reruns)
    rerun_resource_writes = sum(len(m["resource_writes"]) for m in reruns)
    per_rerun = sorted({m["api"]["writes"] for m in reruns})
    # The writes of one re-run, by kind, with the step that made each.
    rr0 = first["workflow"]["rerun_cold"]
    kinds = rr0.get("write_kinds", [])
    ops = rr0.get("writes", [])
    steps_of: dict[str, list[str]] = {}
    for fn, st in rr0["per_step"].items():
        for op in st.get("write_operations", []):
            steps_of.setdefault(op, []).append(fn)
    by_kind: dict[str, list[str]] = {}
    for op, kind in zip(ops, kinds):
        fn = steps_of.get(op, ["?"]).pop(0) if steps_of.get(op) else "?"
        by_kind.setdefault(kind, []).append(f"{op} ({fn})")
    rerun_write_note = "; ".join(f"{k}: {', '.join(v)}" for k, v in by_kind.items())
    create_wait_loops = sorted({w for r in runs for w in r["workflow"]["create"]["wait_loops"]})
    targets = []

    def target(name, goal, measured, ok, why=""):
        targets.append({"target": name, "goal": goal, "measured": measured, "met": ok, "why": "" if ok else why})

    target("workflow vs runbook, end to end", f">= {TARGETS['speedup']:.0f}x faster",
           f"{speedup:.1f}x ({med(rb):.2f} s vs {med(cr):.2f} s)" if speedup else "n/a",
           bool(speedup and speedup >= TARGETS["speedup"]),
           "create " + why("create")
           + (f" ({med(rb) / (bd['create']['wall_s'] - bd['create']['stall_s']):.1f}x the runbook)"
              if bd["create"]["wall_s"] > bd["create"]["stall_s"] else ""))
    worst_rerun = max(med(rc) or 0, med(rw) or 0)
    target("re-run on converged state", f"< {TARGETS['rerun_seconds']} s",
           f"{med(rc):.2f} s cold, {med(rw):.2f} s warm", worst_rerun < TARGETS["rerun_seconds"],
           "cold re-run " + why("rerun_cold") + "; warm re-run " + why("rerun_warm"))
    target("re-run writes", "0",
           f"{'/'.join(map(str, per_rerun))} per re-run, {rerun_resource_writes} changing a resource",
           rerun_writes == 0,
           ("by design: 0 writes change a resource (a failure otherwise, see Problems); the writes "
            "the later issues require of every apply remain (lease, per-run Grafana token, probe: see section 2), "
            f"per re-run: {rerun_write_note}"
            + (f". AND {rerun_resource_writes} resource write(s): see Problems" if rerun_resource_writes else "")))
    loads = [r["loadavg"][0] for r in runs]
    load_note = (f"load average {min(loads):.1f}-{max(loads):.1f} on {env['cpus']} CPUs during the runs: "
                 "the process start competes for the CPUs with whatever else runs")
    measured_fns = [f for f in functions if f["cold_start_ms"]]
    if measured_fns:
        worst = max(measured_fns, key=lambda f: f["cold_start_ms"]["median"])
        slow = [f for f in measured_fns if f["cold_start_ms"]["median"] >= TARGETS["cold_start_ms"]]
        if env["profile"] == "debug":
            why_cs = "debug binaries (unoptimised, 50+ MB): scripts/bench without --debug measures release"
        else:
            why_cs = ("; ".join(f"{f['function']} median {f['cold_start_ms']['median']:.1f} ms of "
                                f"{f['cold_start_ms']['n']} (min {f['cold_start_ms']['min']:.1f})" for f in slow)
                      + "; " + load_note)
        target("cold start, every function (median)", f"< {TARGETS['cold_start_ms']:.0f} ms",
               f"worst {worst['function']} {worst['cold_start_ms']['median']:.1f} ms; "
               f"{len(measured_fns) - len(slow)} of {len(measured_fns)} under", not slow, why_cs)
    rss_fns = [f for f in functions if f["peak_rss_mb"]]
    if rss_fns:
        worst = max(rss_fns, key=lambda f: f["peak_rss_mb"]["max"])
        big = [f for f in rss_fns if f["peak_rss_mb"]["max"] >= TARGETS["peak_rss_mb"]]
        target("peak RSS, every function (max)", f"< {TARGETS['peak_rss_mb']:.0f} MB",
               f"worst {worst['function']} {worst['peak_rss_mb']['max']:.1f} MB; "
               f"{len(rss_fns) - len(big)} of {len(rss_fns)} under", not big,
               ("debug binaries: scripts/bench without --debug measures release" if env["profile"] == "debug"
                else "; ".join(f"{f['function']} {f['peak_rss_mb']['max']:.1f} MB" for f in big)))
    plans = [r["workflow"][k] for r in runs for k in ("plan_fresh", "plan_converged") if k in r["workflow"]]
    if plans:
        pw = sum(1 for m in plans for k in m["write_kinds"] if k != "grafana-token")
        tw = sum(1 for m in plans for k in m["write_kinds"] if k == "grafana-token")
        bad = sum(1 for m in plans if m["status"] == "SUCCEEDED" and plan_write_problem(m))
        failed = sum(1 for m in plans if m["status"] != "SUCCEEDED")
        target("plan writes besides its Grafana token's create + delete (fresh and converged)", "0",
               f"{pw} (and {tw} token writes)" + (f" ({failed} plan(s) failed)" if failed else ""),
               pw == 0 and not bad and not failed, "see Problems")
    tmax = max(r["workflow"]["create"]["transitions"] for r in runs)
    target("create state transitions (no wait loop)", f"< {TARGETS['create_transitions']}",
           f"{tmax}" + (f" (wait loops: {', '.join(create_wait_loops)})" if create_wait_loops else " (no wait loop)"),
           tmax < TARGETS["create_transitions"], "wait loop ran" if create_wait_loops else "")

    wl = env.get("wait_loop")
    if wl and wl["polls"]:
        base_t = med([r["workflow"]["create"]["transitions"] for r in runs])
        base_i = med([r["workflow"]["create"]["lambda_invocations"] for r in runs])
        wl["per_poll_transitions"] = round((wl["transitions"] - base_t) / wl["polls"], 2)
        wl["per_poll_invocations"] = round((wl["lambda_invocations"] - base_i) / wl["polls"], 2)
        wl["aws_projection"] = [
            {"minutes": m, "polls": polls_for(m * 60),
             "transitions": base_t + wl["per_poll_transitions"] * polls_for(m * 60)}
            for m in (2, 5, 10, 20)
        ]

    return {
        "generated_by": os.environ.get("BENCH_CMDLINE") or ("bench/bench.py" + (" --quick" if args.quick else "")),
        "wait_loop": wl,
        "time_breakdown": bd,
        "runs": len(runs),
        "environment": env,
        "targets": targets,
        "problems": problems,
        "create": {
            "runbook_s": summary(rb),
            "workflow_s": summary(cr),
            "speedup": speedup,
            "runbook_cli_calls_per_run": len(first["runbook"]["cli_calls"]),
            "runbook_cli_call_s": summary(cli),
            "runbook_api": first["runbook"]["api"],
            "workflow_api": create0["api"],
            "workflow_engine_s": summary([r["workflow"]["create"]["engine_s"] for r in runs if r["workflow"]["create"]["engine_s"]]),
            "workflow_lambda_duration_ms": summary([r["workflow"]["create"]["lambda_duration_ms"] for r in runs]),
            "invoke_ms": {fn: summary([r["workflow"]["create"]["invoke_ms"][fn] for r in runs
                                       if fn in r["workflow"]["create"]["invoke_ms"]])
                          for fn in create_fns if fn in create0["invoke_ms"]},
            "client_gaps_ms": summary(gaps),
            "client_gap_ms_total_per_create": (sum(gaps) / len(runs)) if runs else None,
            "wait_loops": create_wait_loops,
            "unattributed_calls": sorted({c for r in runs for c in r["workflow"]["create"]["unattributed"]}),
        },
        "rerun": {
            "cold_s": summary(rc),
            "warm_s": summary(rw),
            "api_cold": first["workflow"]["rerun_cold"]["api"],
            "api_warm": first["workflow"]["rerun_warm"]["api"],
            "writes_total": rerun_writes,
            "resource_writes_total": rerun_resource_writes,
            "writes_per_rerun": per_rerun,
            "writes_by_kind": by_kind,
            "per_step": first["workflow"]["rerun_cold"]["per_step"],
            "lambda_duration_ms_cold": summary([r["workflow"]["rerun_cold"]["lambda_duration_ms"] for r in runs]),
            "lambda_duration_ms_warm": summary([r["workflow"]["rerun_warm"]["lambda_duration_ms"] for r in runs]),
        },
        "per_step": per_step,
        "per_step_total": total,
        "functions": functions,
        "function_health": fn_health,
        "step_functions_cost": cost,
        "raw_runs": [
            {
                "run": r["run"],
                "order": r["order"],
                "loadavg": r["loadavg"],
                "runbook_s": r["runbook"]["wall_s"],
                "create_s": r["workflow"]["create"]["wall_s"],
                "rerun_cold_s": r["workflow"]["rerun_cold"]["wall_s"],
                "rerun_warm_s": r["workflow"]["rerun_warm"]["wall_s"],
                "create_transitions": r["workflow"]["create"]["transitions"],
                "create_api": r["workflow"]["create"]["api"],
                "rerun_api": r["workflow"]["rerun_cold"]["api"],
                "invoke_ms": r["workflow"]["create"]["invoke_ms"],
            }
            for r in runs
        ],
    }


def polls_for(seconds: float, first: int = 5, cap: int = 60) -> int:
    """Polls until `seconds` have been waited, with the status functions' default schedule."""
    waited, k = 0, 0
    while waited < seconds:
        waited += min(first * (2 ** k), cap)
        k += 1
    return k


def sm_reset_note(found: list[int]) -> str:
    if found and not any(found):
        return (f"moto's reset removes the state machine: `ListStateMachines` was empty after each of the "
                f"{len(found)} resets; the Step Functions execution switch survives it, and the harness sets "
                "it again anyway")
    return (f"`ListStateMachines` still listed state machines after {sum(1 for n in found if n)} of "
            f"{len(found)} resets: the harness updated the existing one")


def fmt_s(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f} s"


def fmt_sum(s: dict | None, unit: str, digits: int = 2) -> str:
    if not s:
        return "n/a"
    if s["n"] == 1:
        return f"{s['median']:.{digits}f} {unit}"
    return f"{s['median']:.{digits}f} {unit} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def render(report: dict) -> str:
    env = report["environment"]
    c, r = report["create"], report["rerun"]
    cal = env.get("keepalive_calibration", {})
    L: list[str] = []
    a = L.append
    a("# Benchmarks: how fast and how cheap, against the runbook done by hand")
    a("")
    a(f"Generated by `{report['generated_by']}` on {env['date']} (commit {env['commit']}"
      f"{' + uncommitted changes' if env['worktree_dirty'] else ''}), on the local stack (moto "
      f"{env['packages'].get('moto', '?')}, the Grafana emulator with ACTIVE delay 0, the router), "
      f"**{report['runs']} run(s) of each**, medians with (min-max). Function binaries: "
      f"**{env['profile']}** (`{os.path.relpath(env['functions_dir'], Path(__file__).resolve().parent.parent)}`). "
      f"Machine: {env['cpus']} CPUs ({env['cpu']}), load average {env['loadavg_start'][0]:.2f} at the start, "
      f"{env['loadavg_end'][0]:.2f} at the end. {env['aws_cli']}.")
    a("")
    a(f"Re-run with `scripts/bench` (the measurements took {env.get('duration_s', 0) / 60:.1f} min, plus the "
      "release build of the functions, about 20 min on 2 cores when `shared/` changed; `--quick` = 1 run "
      "each, `--no-build` = the binaries as they are). It starts its own devstack, writes this file and "
      "`bench/report.json`, and stops the devstack.")
    a("")
    if report["problems"]:
        a("## Problems")
        a("")
        for p in report["problems"]:
            a(f"- **{p}**")
        a("")
    a("## Targets")
    a("")
    a("| target | goal | measured | met |")
    a("|---|---|---|---|")
    for t in report["targets"]:
        met = "yes" if t["met"] else f"**no**: {t['why']}"
        a(f"| {t['target']} | {t['goal']} | {t['measured']} | {met} |")
    a("")

    a("## 1. Create from a clean state: the runbook script against the workflow")
    a("")
    a("Each run starts from the same clean state: `POST /moto-api/reset`, `POST /_emulator/reset`, "
      "`o11y-local seed-demo` (cluster `dr-eks`, its OIDC provider, IRSA role `dr-core-irsa`); "
      "for the workflow also the state machine created again from `statemachine/provision.asl.json` "
      "and every function process stopped (`POST /_router/functions/reset`), so each create pays "
      "every cold start (" + sm_reset_note(env.get("state_machines_after_reset", [])) + "). "
      "Both sides create the same resources with the same names "
      "(`statemachine/examples/minimal.json`). The two sides run in one benchmark, one after the "
      "other, the order alternating per run.")
    a("")
    a("| | wall time | AWS API calls (reads + writes) |")
    a("|---|---|---|")
    a(f"| `bench/runbook.sh`: {c['runbook_cli_calls_per_run']} `aws` CLI processes | "
      f"{fmt_sum(c['runbook_s'], 's')} | {c['runbook_api']['total']} ({c['runbook_api']['reads']} + {c['runbook_api']['writes']}) |")
    a(f"| workflow: StartExecution until DescribeExecution says SUCCEEDED | {fmt_sum(c['workflow_s'], 's')} | "
      f"{c['workflow_api']['total']} ({c['workflow_api']['reads']} + {c['workflow_api']['writes']}) |")
    a(f"| **ratio** | **{c['speedup']:.1f}x** | |" if c["speedup"] else "| ratio | n/a | |")
    a("")
    a("`bench/runbook.sh` is the runbook's `aws` commands in its order, plus what the runbook leaves to the "
      "operator (`sts get-caller-identity` for the account, `eks describe-cluster` and `iam get-role` / "
      "`update-assume-role-policy` for the IRSA trust patch) and one `ssm put-parameter` per value the "
      "workflow publishes, so that both end with the same resources; its header lists the two fixes the "
      "runbook's text needs to run at all.")
    a("")
    a(f"One `aws` CLI call costs {fmt_sum(c['runbook_cli_call_s'], 's', 3)} here (a Python process "
      "start, botocore loading its service model, one HTTP request): the runbook's wall time is "
      "almost entirely process starts, and it grows with every command, not with the work done.")
    a("")
    a("### Where the workflow's time goes")
    a("")
    a("Medians over the runs. Inside the invocations = the router's Invoke durations (process start, "
      "the function's AWS calls, its own work); outside = the rest of the wall time (moto's interpreter "
      "between states, history bookkeeping, DescribeExecution polling every "
      f"{int(env.get('poll_interval_s', 0.02) * 1000)} ms). The three 'of which' columns overlap (a cold "
      "start of `datasource` is in both the first two).")
    a("")
    a("| execution | wall | inside the invocations | of which cold starts | of which steps the runbook has no command for | of which router stalls | outside |")
    a("|---|---|---|---|---|---|---|")
    for kind, label in (("create", "create"), ("rerun_cold", "re-run, cold"), ("rerun_warm", "re-run, warm")):
        b = report["time_breakdown"][kind]
        a(f"| {label} | {b['wall_s']:.2f} s | {b['lambda_s']:.2f} s | {b['cold_starts_s']:.2f} s | "
          f"{b['beyond_runbook_s']:.2f} s | {b['stall_s']:.2f} s ({b['stalled_calls']:.0f} of {b['aws_calls']:.0f} calls) | "
          f"{b['outside_lambda_s']:.2f} s |")
    a("")
    a("- Per invocation in the create (cold): " + ", ".join(
        f"{fn} {s['median']:.0f} ms" for fn, s in c["invoke_ms"].items() if s) + ".")
    stalls_fixed = (cal.get("router_keepalive_ms") or 999) < 10
    a(f"- **Router stalls** (a local-stack artefact, not the product): a call that reaches the router more "
      f"than {STALL_MS:.0f} ms after its answer to the previous call of the same invocation. Calibration with "
      f"one tiny STS call: {cal.get('router_keepalive_ms')} ms through the router on a kept-alive connection, "
      f"{cal.get('router_fresh_connection_ms')} ms on a fresh connection, {cal.get('moto_keepalive_ms')} ms "
      "straight to moto on a kept-alive connection. "
      + ("The router sets TCP_NODELAY on its handlers (`disable_nagle_algorithm`), so a kept-alive "
         "response is not held back; before that, Nagle's algorithm held every kept-alive response body "
         "about 40 ms (until the client's delayed ACK), which cost a create about 2 s here."
         if stalls_fixed else
         "The router's handlers write the response headers and the body in two `send`s without "
         "`TCP_NODELAY`, so Nagle's algorithm holds the body until the client's delayed ACK (about 40 ms). "
         "The Rust SDK reuses connections and pays it on most calls; each `aws` CLI process opens a fresh "
         "connection and does not. `disable_nagle_algorithm = True` on the router's two handler classes "
         "fixes it (2.3 ms for the same call in a separate check)."))
    a("")

    a("## 2. Re-run on converged state")
    a("")
    a("A second execution right after the create, with the same input: once with every function "
      "process stopped first (cold, as a re-run days later would be), once with warm processes.")
    a("")
    a("| re-run | wall time | AWS API calls | reads | writes |")
    a("|---|---|---|---|---|")
    a(f"| cold functions | {fmt_sum(r['cold_s'], 's')} | {r['api_cold']['total']} | {r['api_cold']['reads']} | {r['api_cold']['writes']} |")
    a(f"| warm functions | {fmt_sum(r['warm_s'], 's')} | {r['api_warm']['total']} | {r['api_warm']['reads']} | {r['api_warm']['writes']} |")
    a("")
    if r["writes_total"]:
        a(f"**The 0-writes target is missed by design: {'/'.join(map(str, r['writes_per_rerun']))} write(s) in "
          f"every re-run** ({r['writes_total']} across the {2 * report['runs']} re-runs), counted at the router (every "
          "request except Lambda invokes and Step Functions). None of them changes a provisioned resource; a write "
          "that does is a failure of the benchmark (Problems)."
          if not r["resource_writes_total"] else
          f"**VIOLATION: {r['resource_writes_total']} write(s) changing a resource on converged state** (see Problems), "
          f"{r['writes_total']} writes in all")
        a("")
        a("| kind | writes in one re-run (step) |")
        a("|---|---|")
        for k, v in r["writes_by_kind"].items():
            a(f"| {k} | {', '.join(v)} |")
        a("")
        a("Why they stay (decided, README \"What a run does\"): each one is required by a later issue and "
          "none can be skipped safely on a re-run. **Lease** (reliability issue): two runs of one deployment must "
          "not act at once; a run cannot know it has nothing to change without reading, and a read taken without "
          "the lease races with the other run's writes. **Grafana token** (datasource issue): a per-run, "
          "short-lived token is the only credential allowed (nothing stored), and without it the datasource cannot "
          "be read, so a hand-edited datasource would go uncorrected. **Probe** (datasource issue): verify proves "
          "on every run that the collector's identity can still write, which a policy detached out of band breaks "
          "without any resource of ours changing. A `plan` reads the same state and makes only the token's two "
          "writes.")
    else:
        a(f"Writes on converged state, every re-run of every run: **{r['writes_total']}** (counted at the router: "
          "every request except Lambda invokes and Step Functions).")
    a("")
    a("Reads per step on the re-run: " + ", ".join(
        f"{fn} {s['reads']}" for fn, s in r["per_step"].items()) + ".")
    a("")

    a("## 3. AWS API calls of a fresh create, per step")
    a("")
    a("Counted at the router (`/_router/requests`). The router logs each request when it arrives, in "
      "`seq` order, and each Lambda invoke with its `function`; the state machine runs one task at a "
      "time, so a call belongs to the invoke before it, and is checked to fall inside that invoke's "
      "time window (it logs no user agent or caller). Calls = AWS API calls, plus the datasource step's "
      "calls to the workspace's Grafana HTTP API (`grafana-http`). The minimum is what the runbook itself "
      "calls for that step (`bench/runbook.sh` makes exactly these calls).")
    a("")
    a("| step | reads | writes | calls | minimum (runbook) | min reads | min writes |")
    a("|---|---|---|---|---|---|---|")
    na = lambda v: "-" if v is None else v  # noqa: E731
    for s in report["per_step"]:
        ops = ", ".join(compress(s["operations"])) if s["invoked"] else "not invoked (no wait loop)"
        a(f"| {s['function']} | {s['reads']} | {s['writes']} | {ops} | {s['min_calls']} | {na(s['min_reads'])} | {na(s['min_writes'])} |")
    t = report["per_step_total"]
    a(f"| **total** | **{t['reads']}** | **{t['writes']}** | {t['reads'] + t['writes']} calls | "
      f"{t['min_reads'] + t['min_writes']} calls | **{t['min_reads']}** | **{t['min_writes']}** |")
    a("")
    a(f"The steps that have a runbook counterpart make {t['matched_reads']} reads against the runbook's "
      f"{t['min_reads']} ({t['matched_reads'] - t['min_reads']:+d}) and {t['matched_writes']} writes against its "
      f"{t['min_writes']} ({t['matched_writes'] - t['min_writes']:+d}); the steps it has no command for "
      f"(its datasource is console clicks; it verifies nothing and takes no lease) add "
      f"{t['reads'] - t['matched_reads']} reads and {t['writes'] - t['matched_writes']} writes. The extra reads "
      "are each step looking before it writes (exact-name lookups, `ListAttachedRolePolicies` before "
      "attaching, `ListVersions` before creating Grafana, `GetParameters` so that publish writes only what "
      "changed): what makes a re-run change nothing.")
    extra = [s for s in report["per_step"] if s["min_writes"] is not None and s["writes"] > s["min_writes"]]
    if extra:
        a("")
        a("Steps that write more than the runbook does for them: " + "; ".join(
            f"{s['function']} {s['writes']} vs {s['min_writes']} ({', '.join(compress(s['write_operations']))})"
            for s in extra) + ".")
    leaves: dict[str, list[int]] = {}
    for s in report["per_step"]:
        if s["function"] == "publish":
            continue
        for o in s["operations"]:
            m = re.match(r"ssm:(\w+)\[([^\]]+)\]", o)
            if m:
                rw = leaves.setdefault(m.group(2), [0, 0])
                rw[0 if m.group(1).startswith("Get") else 1] += 1
    if leaves:
        a("")
        a("SSM parameters used outside publish, reads + writes: " + ", ".join(
            f"`{k}` {v[0]} + {v[1]}" for k, v in leaves.items())
          + " (`provisioner-state`: the deployment record, rewritten before each change so that a delete "
          "knows what is ours; `lease`: one run at a time; `verification`: verify's result).")
    a("")
    if c["unattributed_calls"]:
        a(f"Calls outside every invoke window (not attributed): {', '.join(c['unattributed_calls'])}.")
    a("")

    a("## 4. Per function: cold start, peak RSS, size")
    a("")
    a("Cold start = process start to the first poll of the Lambda Runtime API `/next` (the router's "
      "`init_ms`); peak RSS = the process's VmHWM after it served a real invocation against the local "
      "stack. Every create and every cold re-run started from `POST /_router/functions/reset`, so each "
      "gives one cold start per function it invokes (so does each plan on the fresh state, for `preflight`, `plan` and `finish`). `amp-status` and `grafana-status` are not on the local "
      "stack's path (AMP on moto and the emulator with delay 0 are ACTIVE at once): each was invoked "
      "once per run through the Lambda Invoke API with the state the state machine would pass it.")
    a("")
    a("Binary = the file the router ran (x86_64, this profile); release zip = `scripts/package`'s "
      "arm64 `target/lambda/<name>/bootstrap.zip`, when built.")
    a("")
    a("| function | cold start | peak RSS | binary | release zip | measured in |")
    a("|---|---|---|---|---|---|")
    for f in report["functions"]:
        size = f"{f['binary_bytes'] / 1e6:.1f} MB" if f["binary_bytes"] else "missing"
        z = (f"{f['zip_bytes'] / 1e6:.2f} MB (built {f['zip_built']} UTC{', before this binary' if f['zip_older_than_binary'] else ''})"
             if f["zip_bytes"] else "not built")
        a(f"| {f['function']} | {fmt_sum(f['cold_start_ms'], 'ms', 1)} | {fmt_sum(f['peak_rss_mb'], 'MB', 1)} | {size} | {z} | "
          f"{', '.join(f['measured_in']) or '-'} |")
    a("")
    if not all(f["zip_bytes"] for f in report["functions"]):
        if (Path(env["repo"]) / "scripts/package").exists():
            missing = [f["function"] for f in report["functions"] if not f["zip_bytes"]]
            a(f"Release zips not built for {', '.join(missing)}: `target/lambda/<name>/bootstrap.zip` comes from "
              "`scripts/package` (nice'd; slow on 2 cores); run it, then `scripts/bench`.")
        else:
            a("Release zips not built: `target/lambda/<name>/bootstrap.zip` will come from `scripts/package` "
              "(not in the tree yet); by hand: `cargo lambda build --release --output-format zip` "
              "(cargo-lambda and ziglang from PyPI, see `/work/shared/notes/aws-facts.md`), then `scripts/bench`.")
        a("")
    h = report["function_health"]
    a(f"Function processes over the whole benchmark: {h['errors']} errors, {h['crashes']} crashes, "
      f"{h['timeouts']} timeouts, {h['binary_reloads']} binary reloads.")
    a("")

    a("## 5. Step Functions cost per execution")
    a("")
    a("State transitions = `*StateEntered` events of `GetExecutionHistory`; Lambda invocations counted "
      "at the router. Estimate at us-east-1 list prices: $0.025 per 1,000 transitions (Standard), "
      "$0.20 per million Lambda requests, 128 MB x the invocations' local durations at "
      "$0.0000166667 per GB-s (before the free tier).")
    a("")
    a("| execution | wall time | state transitions | Lambda invocations | AWS calls (reads + writes) | Lambda time (local) | estimate per execution |")
    a("|---|---|---|---|---|---|---|")
    for row in report["step_functions_cost"]:
        if not row["implemented"]:
            a(f"| {row['execution']} | not yet implemented | | | | | |")
            continue
        if not row.get("wall_s"):
            a(f"| {row['execution']} | failed: {row.get('error')} | | | | | |")
            continue
        loops = f" (wait loops: {', '.join(row['wait_loops'])})" if row["wait_loops"] else ""
        a(f"| {row['execution']} | {fmt_sum(row['wall_s'], 's')} | {row['state_transitions']:.0f}{loops} | "
          f"{row['lambda_invocations']:.0f} | {row['api']['total']} ({row['api']['reads']} + {row['api']['writes']}) | "
          f"{row['lambda_duration_ms_median']:.0f} ms | ${row['est_usd']:.6f} |")
    a("")
    if c["wait_loops"]:
        a(f"Wait loops ran in the creates: {', '.join(c['wait_loops'])}.")
    else:
        a("No wait loop ran in the creates above: AMP on moto is ACTIVE at once and the Grafana emulator's "
          "ACTIVE delay is 0.")
    wl = report.get("wait_loop")
    if wl:
        a("")
        a(f"**Wait loop, measured:** one more create with the emulator keeping the Grafana workspace CREATING "
          f"for {wl['grafana_active_delay_s']:g} s: {wl['polls']} poll(s), {wl['transitions']} transitions, "
          f"{wl['lambda_invocations']} Lambda invocations, {wl['wall_s']:.2f} s. Each poll costs "
          f"**{wl['per_poll_transitions']:g} transitions** (Wait, status Task, Choice) and "
          f"**{wl['per_poll_invocations']:g} invocation**. In AWS the status functions wait 5 s doubling to 60 s "
          "(`shared/src/poll.rs` defaults), so a Grafana creation taking")
        a("")
        a("| Grafana CREATING for | polls | create transitions | under 60? |")
        a("|---|---|---|---|")
        for row in wl["aws_projection"]:
            a(f"| {row['minutes']:g} min | {row['polls']} | {row['transitions']:.0f} | {'yes' if row['transitions'] < 60 else 'no'} |")
        a("")
        a("(the same arithmetic adds AMP's polls when AMP is not ACTIVE at once; moto cannot show that).")
    a("")

    a("## Raw runs")
    a("")
    a("| run | order | load | runbook | create | re-run cold | re-run warm | transitions | create calls (r+w) |")
    a("|---|---|---|---|---|---|---|---|---|")
    for x in report["raw_runs"]:
        a(f"| {x['run']} | {' then '.join(x['order'])} | {x['loadavg'][0]:.2f} | {x['runbook_s']:.2f} s | {x['create_s']:.2f} s | "
          f"{x['rerun_cold_s']:.2f} s | {x['rerun_warm_s']:.2f} s | {x['create_transitions']} | "
          f"{x['create_api']['reads']}+{x['create_api']['writes']} |")
    a("")
    return "\n".join(L)


def compress(ops: list[str]) -> list[str]:
    """Runs of one operation become one entry: ["iam:GetRole", "iam:GetRole"] -> ["iam:GetRole x2"];
    SSM calls on different parameters ("ssm:PutParameter[a]", "ssm:PutParameter[b]") ->
    ["ssm:PutParameter x2"]."""
    out: list[list] = []
    for op in ops:
        base = op.split("[", 1)[0]
        if out and out[-1][0].split("[", 1)[0] == base:
            if out[-1][0] != op:
                out[-1][0] = base
            out[-1][1] += 1
        else:
            out.append([op, 1])
    return [f"{op} x{n}" if n > 1 else op for op, n in out]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", default=str(Path(__file__).resolve().parent.parent))
    p.add_argument("--runs", type=int, default=7, help="runs of each side (median); default 7")
    p.add_argument("--quick", action="store_true", help="1 run of each (smoke test of the harness)")
    p.add_argument("--input", default="statemachine/examples/minimal.json")
    p.add_argument("--asl", default=None, help="the state machine definition (default: statemachine/provision.asl.json)")
    p.add_argument("--functions-dir", default=None, help="the router's functions dir (for sizes and the report)")
    p.add_argument("--profile", default="release", help="label of the binaries' build profile")
    p.add_argument("--poll-interval", type=float, default=0.02, help="DescribeExecution polling interval, s")
    p.add_argument("--wait-loop-delay", type=float, default=2.5,
                   help="Grafana ACTIVE delay (s) of the one extra create that measures the wait loop; 0 = skip")
    p.add_argument("--out-dir", default=None, help="where report.md and report.json go (default: bench/)")
    p.add_argument("--render-only", action="store_true",
                   help="rewrite report.md from the report.json in --out-dir (no stack needed)")
    args = p.parse_args()
    if args.quick:
        args.runs = 1
    if args.runs < 1:
        p.error("--runs must be at least 1")
    out_dir = Path(args.out_dir or Path(args.repo) / "bench")
    if args.render_only:
        (out_dir / "report.md").write_text(render(json.loads((out_dir / "report.json").read_text())))
        log(f"wrote {out_dir / 'report.md'} from {out_dir / 'report.json'}")
        return 0
    if not args.functions_dir:
        p.error("--functions-dir is required (the router's functions directory)")
    try:
        report = bench(args)
    except Exception as e:  # noqa: BLE001 - report why, and whether the stack was taken away
        stack_gone = None
        try:
            if STACK is not None:
                STACK.check()
        except RuntimeError as gone:
            stack_gone = str(gone)
        log(f"FAILED: {e}")
        if stack_gone:
            log(f"(probably because {stack_gone})")
        return 1
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out_dir / "report.md").write_text(render(report))
    log(f"wrote {out_dir / 'report.md'} and {out_dir / 'report.json'}")
    for t in report["targets"]:
        log(f"{'ok  ' if t['met'] else 'MISS'} {t['target']}: {t['measured']} (goal {t['goal']})")
    for prob in report["problems"]:
        log(f"PROBLEM: {prob}")
    # Correctness problems (writes on a re-run, failed invocations) fail the benchmark;
    # missed performance targets are reported, not enforced.
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
