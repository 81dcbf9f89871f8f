#!/usr/bin/env python3
"""Front door of the local AWS stack: Lambda Invoke -> real function binaries, everything else
proxied to moto / the Grafana emulator / Prometheus by Host suffix, SigV4 credential scope or path prefix.

Standard library only (Python 3.11). See README.md beside this file for the CLI and endpoints.

Layout of this file:
  * HTTP helpers (body reading, chunked framing)
  * Request classification (service, operation, read/write, purpose) and fault shapes
  * Lambda: Invocation, Sandbox (one function process + its own Runtime API server), FunctionPool
  * Router front-door handler (invoke, /_router/*, proxy)
  * main(): CLI, READY line, signal handling, process spawning (on the main thread, see Spawner)
"""
from __future__ import annotations

import argparse
import base64
import ctypes
import datetime as _dt
import http.client
import json
import os
import queue
import random
import re
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import authz  # noqa: E402  (tests/localstack/authz.py)
import model_check  # noqa: E402  (tests/localstack/model_check.py)

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
}

READ_PREFIXES = (
    "Get",
    "List",
    "Describe",
    "Simulate",
    "Query",
    "Search",
    "Lookup",
    "BatchGet",
)

INVOKE_RE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations/?$")
FUNCTION_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,140}$")
CRED_RE = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request")


def log(msg: str) -> None:
    sys.stderr.write(f"[router {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------------------------
# HTTP helpers
# --------------------------------------------------------------------------------------------


def read_request_body(handler: BaseHTTPRequestHandler) -> bytes:
    """Reads a request body framed by Content-Length or chunked transfer encoding."""
    te = (handler.headers.get("Transfer-Encoding") or "").lower()
    if "chunked" in te:
        parts = []
        rfile = handler.rfile
        while True:
            line = rfile.readline(65537)
            if not line:
                raise ConnectionError("EOF in chunked body")
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # trailers until the empty line
                while True:
                    t = rfile.readline(65537)
                    if t in (b"\r\n", b"\n", b""):
                        break
                break
            parts.append(rfile.read(size))
            rfile.readline(3)  # CRLF after the chunk
        return b"".join(parts)
    length = handler.headers.get("Content-Length")
    if length:
        n = int(length)
        return handler.rfile.read(n) if n > 0 else b""
    return b""


def write_simple(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes | str | dict | list | None,
    headers: dict | None = None,
    content_type: str = "application/json",
) -> None:
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    elif body is None:
        body = b""
    handler.send_response(status)
    hdrs = {"Content-Type": content_type}
    hdrs.update(headers or {})
    for k, v in hdrs.items():
        handler.send_header(k, v)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD" and body:
        handler.wfile.write(body)
    handler.wfile.flush()


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------


class QuietServer(ThreadingHTTPServer):
    """Daemon handler threads; connection errors from clients that went away are not logged."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, socket.timeout, BrokenPipeError)):
            return
        log(f"unhandled error serving {client_address}: {traceback.format_exc()}")


class Classified:
    __slots__ = ("service", "region", "operation", "protocol", "write")

    def __init__(self, service, region, operation, protocol, write):
        self.service = service
        self.region = region
        self.operation = operation
        self.protocol = protocol  # "json" | "query" | "rest" | "none"
        self.write = write


def credential_scope(headers, query: dict) -> tuple[str | None, str | None]:
    auth = headers.get("Authorization") or ""
    m = CRED_RE.search(auth)
    if m:
        return m.group(4), m.group(3)
    cred = (query.get("X-Amz-Credential") or [None])[0]
    if cred:
        parts = cred.split("/")
        if len(parts) >= 5:
            return parts[3], parts[2]
    return None, None


def is_read_operation(op: str) -> bool:
    return op == "GetCallerIdentity" or op.startswith(READ_PREFIXES)


def classify(method: str, path: str, query: dict, headers, body: bytes) -> Classified:
    service, region = credential_scope(headers, query)
    target = headers.get("X-Amz-Target")
    if target:
        op = target.rsplit(".", 1)[-1]
        return Classified(service, region, op, "json", not is_read_operation(op))
    action = (query.get("Action") or [None])[0]
    if not action:
        ctype = (headers.get("Content-Type") or "").lower()
        if "application/x-www-form-urlencoded" in ctype and body:
            try:
                form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
                action = (form.get("Action") or [None])[0]
            except Exception:
                action = None
    if action:
        return Classified(service, region, action, "query", not is_read_operation(action))
    if service is None:
        return Classified(None, region, f"{method} {path}", "none", method not in ("GET", "HEAD"))
    return Classified(service, region, f"{method} {path}", "rest", method not in ("GET", "HEAD"))


# What a logged request is for (its `purpose`; README.md "The request log"): the one place that
# tells the writes every apply makes on purpose from those that change a provisioned resource, for
# the harnesses (bench, chaos) and the Rust tests alike.
PURPOSE_INVOKE = "invoke"  # a Lambda API call: the router's invokes of the function binaries
PURPOSE_EXECUTION = "execution"  # a Step Functions API call (StartExecution, DescribeExecution...)
PURPOSE_HARNESS = "harness"  # unsigned and not the Grafana HTTP API: a control request (/moto-api/...)
PURPOSE_READ = "read"  # any other request that reads
PURPOSE_LEASE = "lease"  # a write of the deployment's lease (SSM /o11y-provisioner/leases/<name>, or .../lease)
PURPOSE_CFN_REQUEST = "cfn-request"  # cfn-handler's proof of a request it started (SSM /o11y-provisioner/cfn-requests/...)
PURPOSE_GRAFANA_TOKEN = "grafana-token"  # the per-run Grafana service-account token's create or delete
PURPOSE_PROBE = "verification-probe"  # verify's one remote-written sample (.../api/v1/remote_write)
PURPOSE_CFN_RESPONSE = "cfn-response"  # a PUT to a presigned S3 URL: a CloudFormation response
PURPOSE_RESOURCE = "resource"  # any other write: it changes something provisioned
PURPOSES = (PURPOSE_INVOKE, PURPOSE_EXECUTION, PURPOSE_HARNESS, PURPOSE_READ, PURPOSE_LEASE, PURPOSE_CFN_REQUEST,
            PURPOSE_GRAFANA_TOKEN, PURPOSE_PROBE, PURPOSE_CFN_RESPONSE, PURPOSE_RESOURCE)


def is_presigned_s3(c: Classified, query: dict) -> bool:
    """A presigned S3 URL: SigV4 (`X-Amz-Signature`, scope `s3`) or SigV2 (`AWSAccessKeyId` and
    `Signature`, no scope), as CloudFormation's ResponseURL and boto3's presigned URLs are."""
    return (c.service == "s3" and "X-Amz-Signature" in query) or ("AWSAccessKeyId" in query and "Signature" in query)


def purpose_of(c: Classified, method: str, path: str, query: dict, name: str | None, host_routed: bool) -> str:
    """What a proxied request is for (one of PURPOSES): `c` is its classification, `path` without
    the query, `name` the resource a JSON-protocol call names, `host_routed` whether a
    --host-route matched (the workspaces' Grafana HTTP API, which has no credential scope)."""
    if c.service == "lambda":
        return PURPOSE_INVOKE
    if c.service == "states":
        return PURPOSE_EXECUTION
    if method == "PUT" and is_presigned_s3(c, query):
        return PURPOSE_CFN_RESPONSE
    if c.service is None and not host_routed:
        return PURPOSE_HARNESS
    if not c.write:
        return PURPOSE_READ
    if c.service == "ssm" and ((name or "").endswith("/lease") or (name or "").startswith("/o11y-provisioner/leases/")):
        return PURPOSE_LEASE
    if c.service == "ssm" and (name or "").startswith("/o11y-provisioner/cfn-requests/"):
        return PURPOSE_CFN_REQUEST
    if c.service == "grafana" and "/serviceaccounts/" in path and "/tokens" in path:
        return PURPOSE_GRAFANA_TOKEN
    if path.endswith("/api/v1/remote_write"):
        return PURPOSE_PROBE
    return PURPOSE_RESOURCE


# --------------------------------------------------------------------------------------------
# Fault injection
# --------------------------------------------------------------------------------------------

FAULT_KINDS = ("throttle", "500", "503", "reset", "latency", "denied", "absent")

# How a faulted Lambda Invoke is answered. "http": the Invoke API's own error (429, 500, 503, or a
# reset connection). "function-error": what AWS Step Functions reports for that Lambda service
# failure (a 200 with X-Amz-Function-Error and errorType Lambda.TooManyRequestsException,
# Lambda.ServiceException or Lambda.SdkClientException), since moto's interpreter names every
# Invoke client error `Exception` and a dropped connection `States.TaskFailed`, which no
# ASL Retry written for AWS matches. The function is not run in either mode.
INVOKE_FAULT_MODES = ("http", "function-error")
INVOKE_FAULT_ERROR_TYPES = {
    "throttle": ("Lambda.TooManyRequestsException", "Rate Exceeded."),
    "500": ("Lambda.ServiceException", "Lambda encountered an internal error (HTTP 500)."),
    "503": ("Lambda.ServiceException", "Lambda is unavailable (HTTP 503)."),
    "reset": ("Lambda.SdkClientException", "Unable to execute HTTP request: Connection reset"),
    "denied": ("Lambda.AccessDeniedException", "The role of the state machine may not invoke the function."),
}


class AmpCreating:
    """AWS's time for an AMP workspace to become ACTIVE, which moto skips: for ``seconds`` after a
    CreateWorkspace the workspace is answered ``CREATING`` by CreateWorkspace, DescribeWorkspace
    and ListWorkspaces (the responses are rewritten; moto's own state is ACTIVE at once)."""

    _ONE = re.compile(r"^/workspaces/([^/]+)$")

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.created: dict[str, float] = {}
        self.lock = threading.Lock()

    def applies(self, service: str | None, method: str, path: str) -> bool:
        if self.seconds <= 0 or service != "aps":
            return False
        return (method == "POST" and path == "/workspaces") or (
            method == "GET" and (path == "/workspaces" or self._ONE.match(path) is not None))

    def _creating(self, ws: dict, now: float) -> None:
        started = self.created.get(ws.get("workspaceId") or "")
        status = ws.get("status")
        if started is not None and now - started < self.seconds and isinstance(status, dict) \
                and status.get("statusCode") == "ACTIVE":
            status["statusCode"] = "CREATING"

    def rewrite(self, method: str, path: str, status: int, data: bytes) -> bytes:
        """The response moto gave, with the workspaces still creating answered CREATING."""
        if not 200 <= status < 300:
            return data
        try:
            doc = json.loads(data or b"{}")
        except ValueError:
            return data
        now = time.monotonic()
        with self.lock:
            if method == "POST" and doc.get("workspaceId"):
                self.created[doc["workspaceId"]] = now
                self._creating(doc, now)
            for ws in [doc.get("workspace")] + list(doc.get("workspaces") or []):
                if isinstance(ws, dict):
                    self._creating(ws, now)
        return json.dumps(doc).encode()


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.config: dict = {"rate": 0.0}
        self.rng = random.Random(0)
        self.injected = 0
        self.skipped = 0

    def set(self, cfg: dict) -> dict:
        rate = float(cfg.get("rate", 0.0))
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        kinds = list(cfg.get("kinds") or ["throttle"])
        for k in kinds:
            if k not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {k!r}; known: {', '.join(FAULT_KINDS)}")
        invoke_faults = cfg.get("invoke_faults") or "http"
        if invoke_faults not in INVOKE_FAULT_MODES:
            raise ValueError(f"invoke_faults must be one of {', '.join(INVOKE_FAULT_MODES)}")
        with self.lock:
            self.config = {
                "rate": rate,
                "seed": cfg.get("seed"),
                "kinds": kinds,
                "services": cfg.get("services"),
                "operations": cfg.get("operations"),
                "latency_ms": int(cfg.get("latency_ms", 1000)),
                "max": cfg.get("max"),
                "skip": int(cfg.get("skip", 0)),
                "invoke_faults": invoke_faults,
            }
            self.rng = random.Random(cfg.get("seed"))
            self.injected = 0
            self.skipped = 0
            return dict(self.config)

    def get(self) -> dict:
        with self.lock:
            return dict(self.config, injected=self.injected)

    def pick(self, c: Classified) -> str | None:
        """Returns a fault kind for this request, or None. Requests without a service are never
        faulted (moto-api, router endpoints)."""
        with self.lock:
            cfg = self.config
            if not cfg.get("rate") or c.service is None:
                return None
            if cfg.get("services") and c.service not in cfg["services"]:
                return None
            if cfg.get("operations") and c.operation not in cfg["operations"]:
                return None
            if cfg.get("max") is not None and self.injected >= int(cfg["max"]):
                return None
            # the first `skip` matching requests pass: a crash after them, at an exact call
            if self.skipped < cfg.get("skip", 0):
                self.skipped += 1
                return None
            if self.rng.random() >= cfg["rate"]:
                return None
            self.injected += 1
            return self.rng.choice(cfg["kinds"])

    def latency_s(self) -> float:
        with self.lock:
            return self.config.get("latency_ms", 1000) / 1000.0

    def invoke_mode(self) -> str:
        with self.lock:
            return self.config.get("invoke_faults") or "http"


def fault_response(kind: str, c: Classified) -> tuple[int, dict, bytes]:
    rid = str(uuid.uuid4())
    if kind == "absent":
        # What an endpoint that lacks the API answers (moto: a bare HTTP 500, no AWS error code).
        return 500, {"Content-Type": "text/html; charset=utf-8"}, b"<!doctype html><title>500 Internal Server Error</title>"
    if kind == "throttle":
        code_json, code_query, msg = "ThrottlingException", "Throttling", "Rate exceeded"
        status, qtype = (400, "Sender")
        if c.protocol == "rest":
            status = 429
            if c.service == "lambda":
                code_json = "TooManyRequestsException"
    elif kind == "denied":
        # not retryable: a failure the state machine does not retry (a step fails for good)
        code_json, code_query, msg = "AccessDeniedException", "AccessDenied", "User is not authorized (injected)"
        status, qtype = (403 if c.protocol != "json" else 400, "Sender")
    elif kind == "500":
        code_json = code_query = "InternalFailure"
        msg, status, qtype = "We encountered an internal error. Please try again.", 500, "Receiver"
        if c.protocol == "rest":
            code_json = "InternalServerException"
    else:  # 503
        code_json = code_query = "ServiceUnavailable"
        msg, status, qtype = "Service is unavailable. Please try again.", 503, "Receiver"
        if c.protocol == "rest":
            code_json = "ServiceUnavailableException"
    if c.protocol == "query":
        xml = (
            "<ErrorResponse><Error><Type>{t}</Type><Code>{c}</Code><Message>{m}</Message></Error>"
            "<RequestId>{r}</RequestId></ErrorResponse>"
        ).format(t=qtype, c=code_query, m=msg, r=rid)
        return status, {"Content-Type": "text/xml", "x-amzn-RequestId": rid}, xml.encode()
    if c.protocol == "json":
        body = {"__type": code_json, "message": msg}
        ctype = "application/x-amz-json-1.1"
    else:
        body = {"message": msg}
        ctype = "application/json"
    headers = {"Content-Type": ctype, "x-amzn-ErrorType": code_json, "x-amzn-RequestId": rid}
    return status, headers, json.dumps(body).encode()


# --------------------------------------------------------------------------------------------
# Process spawning. Function processes are forked from the main thread only: PR_SET_PDEATHSIG
# fires when the *thread* that forked the child exits, so forking from short-lived handler
# threads would kill warm functions. With it, a SIGKILLed router still leaves no orphans.
# --------------------------------------------------------------------------------------------

try:
    _LIBC = ctypes.CDLL(None, use_errno=True)
    _PRCTL = _LIBC.prctl
except Exception:  # pragma: no cover - non-Linux
    _PRCTL = None

PR_SET_PDEATHSIG = 1


def _preexec_pdeathsig() -> None:  # runs in the child between fork and exec
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Spawner:
    def __init__(self):
        self.q: queue.Queue = queue.Queue()
        self.main_ident = threading.main_thread().ident

    def spawn(self, argv, env, cwd) -> subprocess.Popen:
        kwargs = dict(
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
        if threading.get_ident() == self.main_ident:
            return subprocess.Popen(argv, preexec_fn=_preexec_pdeathsig, **kwargs)
        done = threading.Event()
        box: dict = {}
        self.q.put((argv, kwargs, done, box))
        done.wait()
        if "error" in box:
            raise box["error"]
        return box["proc"]

    def serve_once(self, timeout: float) -> None:
        """Called in a loop by the main thread."""
        try:
            argv, kwargs, done, box = self.q.get(timeout=timeout)
        except queue.Empty:
            return
        try:
            box["proc"] = subprocess.Popen(argv, preexec_fn=_preexec_pdeathsig, **kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            box["error"] = e
        finally:
            done.set()


# --------------------------------------------------------------------------------------------
# Lambda runtime emulation
# --------------------------------------------------------------------------------------------


class Invocation:
    def __init__(self, function: str, arn: str, payload: bytes, client_context: str | None):
        self.id = str(uuid.uuid4())
        self.function = function
        self.arn = arn
        self.payload = payload
        self.client_context = client_context
        self.trace_id = "Root=1-{:08x}-{};Parent={};Sampled=0".format(
            int(time.time()), secrets.token_hex(12), secrets.token_hex(8)
        )
        self.deadline_ms = 0
        self.delivered = threading.Event()
        self.done = threading.Event()
        self.progress = threading.Event()  # set on delivery or resolution
        self.sandbox: "Sandbox | None" = None
        self.lock = threading.Lock()
        # result: (is_error, body bytes)
        self.result: tuple[bool, bytes] | None = None
        self.logs: list[bytes] = []

    def resolve(self, is_error: bool, body: bytes) -> bool:
        with self.lock:
            if self.result is not None:
                return False
            self.result = (is_error, body)
        self.done.set()
        self.progress.set()
        return True


def error_body(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


class Sandbox:
    """One function process with its own Runtime API server (as in AWS, where each execution
    environment has its own Runtime API): the invocation a process holds is always known, so a
    crash fails exactly that invocation and concurrent executions never mix."""

    def __init__(self, pool: "FunctionPool"):
        self.pool = pool
        self.cond = threading.Condition()
        self.current: Invocation | None = None
        self.dead = False
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None
        self.spawned_at = 0.0
        self.first_poll_at: float | None = None
        self.init_ms: float | None = None
        self.invocations = 0
        self.peak_rss_kb: int | None = None
        self.exit_code: int | None = None
        self.init_error: bytes | None = None
        self.stale = False  # binary replaced: stop after the current invocation
        self.server = QuietServer(("127.0.0.1", 0), RuntimeApiHandler)
        self.server.sandbox = self  # type: ignore[attr-defined]
        self.port = self.server.server_address[1]
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        ).start()

    # --- lifecycle -----------------------------------------------------------------------
    def start(self, binary: str, env: dict) -> None:
        env = dict(env)
        env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{self.port}"
        self.spawned_at = time.monotonic()
        self.proc = self.pool.router.spawner.spawn([binary], env, os.path.dirname(binary))
        self.pid = self.proc.pid
        threading.Thread(target=self._pump_output, daemon=True).start()
        threading.Thread(target=self._monitor, daemon=True).start()

    def _pump_output(self) -> None:
        prefix = f"[{self.pool.name} {self.pid}] ".encode()
        out = sys.stderr.buffer
        assert self.proc and self.proc.stdout
        for line in iter(self.proc.stdout.readline, b""):
            # A line read just after the response was posted still belongs to that invocation.
            inv = self.current or getattr(self, "last", None)
            if inv is not None:
                inv.logs.append(line)
            if not self.pool.router.quiet_functions:
                try:
                    out.write(prefix + line if line.endswith(b"\n") else prefix + line + b"\n")
                    out.flush()
                except Exception:
                    pass

    def _monitor(self) -> None:
        assert self.proc
        code = self.proc.wait()
        with self.cond:
            self.exit_code = code
            self.dead = True
            inv = self.current
            self.cond.notify_all()
        self.pool.on_sandbox_exit(self, inv, code)
        try:
            self.server.shutdown()
            self.server.server_close()
        except Exception:
            pass

    def kill(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                self.proc.kill()
            except Exception:
                pass

    def terminate(self, grace: float = 2.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def exit_reason(self, code: int | None) -> str:
        if code is None:
            return "Runtime exited without providing a reason"
        if code < 0:
            try:
                name = signal.Signals(-code).name[3:].lower()
            except ValueError:
                name = str(-code)
            return f"Runtime exited with error: signal: {name}"
        return f"Runtime exited with error: exit status {code}"

    def sample_rss(self) -> None:
        if self.pid is None:
            return
        try:
            with open(f"/proc/{self.pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmHWM:"):
                        kb = int(line.split()[1])
                        if self.peak_rss_kb is None or kb > self.peak_rss_kb:
                            self.peak_rss_kb = kb
                        break
        except (OSError, ValueError):
            pass

    # --- invocation handoff --------------------------------------------------------------
    def assign(self, inv: Invocation) -> None:
        with self.cond:
            self.current = inv
            inv.sandbox = self
            self.cond.notify_all()

    def next_invocation(self) -> Invocation | None:
        """Blocks until an invocation is assigned and not yet delivered; None when dead."""
        with self.cond:
            if self.first_poll_at is None:
                self.first_poll_at = time.monotonic()
                self.init_ms = round((self.first_poll_at - self.spawned_at) * 1000.0, 2)
            while True:
                if self.dead or self.pool.router.stopping:
                    return None
                inv = self.current
                if inv is not None and not inv.delivered.is_set() and inv.result is None:
                    inv.deadline_ms = now_ms() + int(self.pool.router.function_timeout * 1000)
                    inv.delivered.set()
                    inv.progress.set()
                    return inv
                self.cond.wait(0.5)

    def complete(self, request_id: str, is_error: bool, body: bytes) -> bool:
        with self.cond:
            inv = self.current
            if inv is None or inv.id != request_id:
                return False
            self.sample_rss()
            self.invocations += 1
            self.last = self.current
            self.current = None
        inv.resolve(is_error, body)
        self.pool.release(self)
        return True

    def describe(self) -> dict:
        return {
            "pid": self.pid,
            "runtime_api_port": self.port,
            "state": "dead" if self.dead else ("busy" if self.current else "idle"),
            "init_ms": self.init_ms,
            "invocations": self.invocations,
            "peak_rss_kb": self.peak_rss_kb,
            "exit_code": self.exit_code,
        }


class RuntimeApiHandler(BaseHTTPRequestHandler):
    # Headers and body go out in two sends: without TCP_NODELAY, Nagle holds the body until the
    # client's delayed ACK (about 40 ms per call on a kept-alive connection).
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    server_version = "LambdaRuntimeEmulator/1.0"

    def log_message(self, fmt, *args):  # quiet
        pass

    @property
    def sandbox(self) -> Sandbox:
        return self.server.sandbox  # type: ignore[attr-defined]

    def do_GET(self):
        read_request_body(self)
        if self.path.split("?")[0] != "/2018-06-01/runtime/invocation/next":
            return write_simple(self, 404, {"errorType": "NotFound", "errorMessage": self.path})
        sb = self.sandbox
        inv = sb.next_invocation()
        if inv is None:
            self.close_connection = True
            try:
                write_simple(
                    self, 500, {"errorType": "Runtime.Shutdown", "errorMessage": "shutting down"}
                )
            except OSError:
                pass
            return
        headers = {
            "Lambda-Runtime-Aws-Request-Id": inv.id,
            "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": inv.arn,
            "Lambda-Runtime-Trace-Id": inv.trace_id,
        }
        if inv.client_context:
            headers["Lambda-Runtime-Client-Context"] = inv.client_context
        try:
            write_simple(self, 200, inv.payload, headers)
        except OSError:
            # The runtime went away while we answered: the monitor thread fails the invocation.
            pass

    def do_POST(self):
        body = read_request_body(self)
        path = self.path.split("?")[0]
        sb = self.sandbox
        m = re.match(r"^/2018-06-01/runtime/invocation/([^/]+)/(response|error)$", path)
        if m:
            rid, kind = m.group(1), m.group(2)
            if kind == "error":
                body = normalize_error_body(body, self.headers)
            if not sb.complete(rid, kind == "error", body):
                return write_simple(
                    self,
                    400,
                    {"errorType": "InvalidRequestID", "errorMessage": f"Invalid request ID: {rid}"},
                )
            return write_simple(self, 202, {"status": "OK"})
        if path == "/2018-06-01/runtime/init/error":
            sb.init_error = normalize_error_body(body, self.headers)
            write_simple(self, 202, {"status": "OK"})
            # AWS stops the environment after an init error.
            threading.Thread(target=sb.kill, daemon=True).start()
            return
        return write_simple(self, 404, {"errorType": "NotFound", "errorMessage": self.path})


def normalize_error_body(body: bytes, headers) -> bytes:
    """Ensures the error payload is JSON with errorType/errorMessage (as Lambda returns it)."""
    header_type = headers.get("Lambda-Runtime-Function-Error-Type")
    try:
        obj = json.loads(body.decode("utf-8")) if body else {}
    except (UnicodeDecodeError, ValueError):
        obj = None
    if isinstance(obj, dict):
        if "errorType" not in obj:
            obj["errorType"] = header_type or "Unhandled"
        obj.setdefault("errorMessage", "")
        return json.dumps(obj).encode()
    return error_body(header_type or "Unhandled", body.decode("utf-8", "replace"))


class FunctionPool:
    def __init__(self, router: "Router", name: str, binary: str):
        self.router = router
        self.name = name
        self.binary = binary
        self.lock = threading.Lock()
        self.idle: list[Sandbox] = []
        self.all: list[Sandbox] = []  # every sandbox ever started (for stats)
        self.binary_id = self._binary_id()
        self.reloads = 0
        self.invocations = 0
        self.errors = 0
        self.timeouts = 0
        self.crashes = 0

    def _binary_id(self):
        try:
            st = os.stat(self.binary)
            return (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            return None

    def _check_reload(self) -> None:
        """A rebuilt binary (cargo build while the stack runs) replaces the warm processes.
        Called with self.lock held."""
        bid = self._binary_id()
        if bid == self.binary_id:
            return
        self.binary_id = bid
        self.reloads += 1
        stale, self.idle = self.idle, []
        for sb in self.all:
            sb.stale = True
        for sb in stale:
            threading.Thread(target=sb.terminate, daemon=True).start()

    def arn(self, region: str, account: str, qualifier: str | None) -> str:
        arn = f"arn:aws:lambda:{region}:{account}:function:{self.name}"
        return f"{arn}:{qualifier}" if qualifier else arn

    def env(self, region: str) -> dict:
        r = self.router
        env = {}
        for k in ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "LD_LIBRARY_PATH", "RUST_LOG",
                  "RUST_BACKTRACE", "RUST_LIB_BACKTRACE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
            if k in os.environ:
                env[k] = os.environ[k]
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        day = _dt.datetime.utcnow().strftime("%Y/%m/%d")
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": self.name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": f"{day}/[$LATEST]{secrets.token_hex(16)}",
                "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
                "AWS_EXECUTION_ENV": "AWS_Lambda_provided.al2023",
                "AWS_REGION": region,
                "AWS_DEFAULT_REGION": region,
                "LAMBDA_TASK_ROOT": os.path.dirname(self.binary),
                "LAMBDA_RUNTIME_DIR": os.path.dirname(self.binary),
                "_HANDLER": "bootstrap",
                # Defaults so SDKs never probe instance metadata; override with --function-env.
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{r.port}",
            }
        )
        if r.authz is not None:
            # The template's variables (Globals merged); the stack's --function-env overrides them.
            env.update(r.authz.environment(self.name))
        env.update(r.function_env)
        if r.authz is not None:
            # The function's template role (authz.py): its credentials, not the harness's.
            creds = r.authz.credentials(self.name)
            if creds is not None:
                env.update(creds)
        return env

    def acquire(self, inv: Invocation, region: str) -> Sandbox:
        """An idle warm sandbox, or a new one when all are busy. The invocation is assigned."""
        with self.lock:
            self.invocations += 1
            self._check_reload()
            while self.idle:
                sb = self.idle.pop()
                if not sb.dead:
                    sb.assign(inv)
                    return sb
        sb = Sandbox(self)
        with self.lock:
            self.all.append(sb)
        sb.assign(inv)
        try:
            sb.start(self.binary, self.env(region))
        except Exception as e:
            with sb.cond:
                sb.dead = True
                sb.current = None
                sb.cond.notify_all()
            sb.server.shutdown()
            sb.server.server_close()
            inv.resolve(True, error_body("Runtime.InvalidEntrypoint", f"cannot start {self.binary}: {e}"))
        return sb

    def release(self, sb: Sandbox) -> None:
        with self.lock:
            if sb.stale:
                threading.Thread(target=sb.terminate, daemon=True).start()
                return
            if not sb.dead and sb not in self.idle:
                self.idle.append(sb)

    def on_sandbox_exit(self, sb: Sandbox, inv: Invocation | None, code: int | None) -> None:
        with self.lock:
            if sb in self.idle:
                self.idle.remove(sb)
        if inv is None or inv.result is not None:
            return
        if sb.init_error is not None:
            inv.resolve(True, sb.init_error)
            return
        if not inv.delivered.is_set() and sb.invocations > 0 and not self.router.stopping:
            # A warm process died between invocations, before taking this one: run it on a
            # fresh process instead of failing it (AWS would re-init the environment).
            threading.Thread(target=self._redispatch, args=(inv,), daemon=True).start()
            return
        with self.lock:
            self.crashes += 1
        inv.resolve(True, error_body("Runtime.ExitError", f"RequestId: {inv.id} Error: {sb.exit_reason(code)}"))

    def _redispatch(self, inv: Invocation) -> None:
        with self.lock:
            self.invocations -= 1  # acquire counts it again
        self.acquire(inv, self.router.region)

    def stats(self) -> dict:
        with self.lock:
            sbs = list(self.all)
            d = {
                "binary": self.binary,
                "processes_started": len(sbs),
                "processes_alive": sum(1 for s in sbs if not s.dead),
                "invocations": self.invocations,
                "errors": self.errors,
                "timeouts": self.timeouts,
                "crashes": self.crashes,
                "binary_reloads": self.reloads,
            }
        inits = [s.init_ms for s in sbs if s.init_ms is not None]
        d["cold_starts"] = [{"pid": s.pid, "init_ms": s.init_ms} for s in sbs if s.init_ms is not None]
        d["init_ms"] = (
            {"count": len(inits), "min": min(inits), "avg": round(sum(inits) / len(inits), 2),
             "max": max(inits)}
            if inits
            else None
        )
        rss = [s.peak_rss_kb for s in sbs if s.peak_rss_kb is not None]
        d["peak_rss_kb"] = max(rss) if rss else None
        d["processes"] = [s.describe() for s in sbs]
        return d

    def shutdown(self) -> None:
        with self.lock:
            sbs = list(self.all)
        for sb in sbs:
            sb.terminate(grace=1.0)


# --------------------------------------------------------------------------------------------
# Router
# --------------------------------------------------------------------------------------------


class PathRoute:
    """PREFIX=URL. PREFIX may contain '*' (one path segment). If URL has a path, the matched
    prefix is replaced by it; otherwise the request path is forwarded unchanged."""

    def __init__(self, spec: str):
        prefix, sep, url = spec.partition("=")
        if not sep or not prefix.startswith("/") or not url:
            raise ValueError(f"--path-route expects /PREFIX=URL, got {spec!r}")
        self.prefix = prefix
        parts = [re.escape(p) for p in prefix.split("*")]
        self.regex = re.compile("^" + "[^/]+".join(parts))
        u = urlsplit(url)
        self.backend = f"{u.scheme}://{u.netloc}"
        self.rewrite = u.path if u.path else None

    def match(self, path: str) -> str | None:
        """Returns the path to forward (with the query string), or None."""
        p, qmark, q = path.partition("?")
        m = self.regex.match(p)
        if not m:
            return None
        if self.rewrite is None:
            return path
        new = self.rewrite + p[m.end():]
        if not new.startswith("/"):
            new = "/" + new
        return new + (qmark + q if qmark else "")


class HostRoute:
    """SUFFIX=URL: requests whose Host (port stripped, case-insensitive) ends with SUFFIX go to
    URL, path and Host header unchanged (the backend needs the Host to tell workspaces apart)."""

    def __init__(self, spec: str):
        suffix, sep, url = spec.partition("=")
        if not sep or not suffix or not url:
            raise ValueError(f"--host-route expects SUFFIX=URL, got {spec!r}")
        self.suffix = suffix.lower()
        u = urlsplit(url)
        if not u.scheme or not u.netloc:
            raise ValueError(f"--host-route URL must be scheme://host:port, got {url!r}")
        self.backend = f"{u.scheme}://{u.netloc}"

    def match(self, host: str | None) -> bool:
        h = (host or "").strip().lower()
        if h.startswith("["):  # [v6]:port
            h = h.split("]")[0] + "]"
        else:
            h = h.rsplit(":", 1)[0] if h.count(":") == 1 else h
        return h.endswith(self.suffix)


class Router:
    def __init__(self, args):
        self.port = args.port
        self.default = args.default.rstrip("/")
        self.routes = {}
        for spec in args.route:
            svc, sep, url = spec.partition("=")
            if not sep:
                raise SystemExit(f"--route expects SERVICE=URL, got {spec!r}")
            self.routes[svc] = url.rstrip("/")
        self.path_routes = [PathRoute(s) for s in args.path_route]
        try:
            self.host_routes = [HostRoute(s) for s in args.host_route]
        except ValueError as e:
            raise SystemExit(str(e))
        self.functions_dir = os.path.abspath(args.functions_dir) if args.functions_dir else None
        self.function_env = {}
        for spec in args.function_env:
            k, sep, v = spec.partition("=")
            if not sep:
                raise SystemExit(f"--function-env expects KEY=VALUE, got {spec!r}")
            self.function_env[k] = v
        self.function_timeout = float(args.function_timeout)
        self.init_timeout = max(10.0, self.function_timeout)
        self.region = args.region
        self.account_id = args.account_id
        self.proxy_timeout = float(args.proxy_timeout)
        self.quiet_functions = args.quiet_functions
        self.pools: dict[str, FunctionPool] = {}
        self.pools_lock = threading.Lock()
        self.log_lock = threading.Lock()
        self.requests: list[dict] = []
        self.seq = 0
        self.faults = Faults()
        self.amp_creating = AmpCreating(args.amp_creating_seconds)
        self.spawner = Spawner()
        self.stopping = False
        self.model_check = not args.no_model_check and os.environ.get("O11Y_MODEL_CHECK", "1") != "0"
        self.authz = None
        if args.template and os.environ.get("O11Y_AUTHZ", "1") != "0":
            params = dict(spec.partition("=")[::2] for spec in args.template_param)
            self.authz = authz.Authorizer(args.template, self.default, self.routes.get("grafana"), self.region,
                                          self.account_id, parameters=params,
                                          state_machine_name=args.state_machine_name,
                                          iam_propagation_s=args.iam_propagation_seconds)
            self.authz.ensure_roles(wait_s=60)

    # --- request log ---------------------------------------------------------------------
    def record_start(self, entry: dict) -> dict:
        """Appends an entry when the request arrives (seq = arrival order; status null while in
        flight); returns the logged dict, to be completed with record_end."""
        with self.log_lock:
            self.seq += 1
            entry["seq"] = self.seq
            logged = dict(entry, status=None)
            self.requests.append(logged)
            return logged

    def record_end(self, logged: dict, entry: dict) -> None:
        with self.log_lock:
            logged.update(entry)

    # --- functions -----------------------------------------------------------------------
    def find_binary(self, name: str) -> str | None:
        if not self.functions_dir or not FUNCTION_NAME_RE.match(name):
            return None
        cand = os.path.join(self.functions_dir, name)
        if os.path.isdir(cand):  # cargo-lambda layout: <dir>/<name>/bootstrap
            cand = os.path.join(cand, "bootstrap")
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
        return None

    def pool(self, name: str) -> FunctionPool | None:
        binary = self.find_binary(name)
        if binary is None:
            return None
        with self.pools_lock:
            p = self.pools.get(name)
            if p is None or p.binary != binary:
                p = self.pools[name] = FunctionPool(self, name, binary)
            return p

    def invoke(self, pool: FunctionPool, inv: Invocation, region: str) -> tuple[bool, bytes]:
        pool.acquire(inv, region)
        inv.progress.wait(self.init_timeout)
        if not inv.delivered.is_set() and inv.result is None:
            # Never reached /next (hung init or a process that does not speak the Runtime API).
            with pool.lock:
                pool.timeouts += 1
            inv.resolve(True, error_body(
                "Sandbox.Timedout",
                f"RequestId: {inv.id} Error: Init did not complete within {self.init_timeout:.2f} seconds"))
            if inv.sandbox is not None:
                inv.sandbox.kill()
        elif not inv.done.wait(self.function_timeout + 0.05):
            if inv.resolve(True, error_body(
                    "Sandbox.Timedout",
                    f"RequestId: {inv.id} Error: Task timed out after {self.function_timeout:.2f} seconds")):
                with pool.lock:
                    pool.timeouts += 1
                if inv.sandbox is not None:
                    inv.sandbox.sample_rss()
                    inv.sandbox.kill()
        inv.done.wait()
        assert inv.result is not None
        if inv.result[0]:
            with pool.lock:
                pool.errors += 1
        return inv.result

    def functions_stats(self) -> dict:
        with self.pools_lock:
            pools = dict(self.pools)
        return {name: p.stats() for name, p in sorted(pools.items())}

    def reset_functions(self) -> None:
        with self.pools_lock:
            pools = list(self.pools.values())
            self.pools = {}
        for p in pools:
            p.shutdown()

    def shutdown_functions(self) -> None:
        with self.pools_lock:
            pools = list(self.pools.values())
        threads = [threading.Thread(target=p.shutdown, daemon=True) for p in pools]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)

    # --- proxy backend choice ------------------------------------------------------------
    def backend_for(self, path: str, service: str | None, host: str | None = None) -> tuple[str, str]:
        for hr in self.host_routes:
            if hr.match(host):
                return hr.backend, path
        for pr in self.path_routes:
            new_path = pr.match(path)
            if new_path is not None:
                return pr.backend, new_path
        if service and service in self.routes:
            return self.routes[service], path
        return self.default, path


def parse_function_name(raw: str) -> tuple[str, str | None, str | None, str | None]:
    """name | name:qualifier | ACCOUNT:function:name[:q] | arn:aws:lambda:REGION:ACCOUNT:function:name[:q]
    -> (name, qualifier, region, account)"""
    parts = raw.split(":")
    if parts[0] == "arn" and len(parts) >= 7 and parts[5] == "function":
        return parts[6], (parts[7] if len(parts) > 7 else None), parts[3] or None, parts[4] or None
    if len(parts) >= 3 and parts[1] == "function":
        return parts[2], (parts[3] if len(parts) > 3 else None), None, parts[0] or None
    if len(parts) == 2:
        return parts[0], parts[1], None, None
    return raw, None, None, None


class RouterHandler(BaseHTTPRequestHandler):
    # Headers and body go out in two sends: without TCP_NODELAY, Nagle holds the body until the
    # client's delayed ACK (about 40 ms per call on a kept-alive connection).
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    server_version = "o11y-local-router/1.0"
    timeout = 600  # idle keep-alive connections

    def log_message(self, fmt, *args):
        pass

    @property
    def router(self) -> Router:
        return self.server.router  # type: ignore[attr-defined]

    def send_response(self, code, message=None):
        self._status = code
        super().send_response(code, message)

    def send_response_only(self, code, message=None):
        self._status = code
        super().send_response_only(code, message)

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (ConnectionError, socket.timeout, BrokenPipeError):
            self.close_connection = True

    def _dispatch(self):
        self._status = None
        t0 = time.monotonic()
        try:
            body = read_request_body(self)
        except Exception as e:  # noqa: BLE001
            self.close_connection = True
            return write_simple(self, 400, {"message": f"router: bad request body: {e}"})
        path_only = self.path.split("?", 1)[0]
        if path_only.startswith("/_router/"):
            return self.handle_router_api(path_only, body)
        r = self.router
        entry = {"time": round(time.time(), 3), "method": self.command, "path": path_only}
        # The resource a JSON-protocol call names (SSM parameter names, ...): purpose_of tells the
        # deployment's lease from resource writes by it.
        if body[:1] == b"{" and self.headers.get("X-Amz-Target"):
            try:
                named = json.loads(body).get("Name")
                if isinstance(named, str):
                    entry["name"] = named
            except (ValueError, AttributeError):
                pass
        logged = r.record_start(entry)
        m = INVOKE_RE.match(path_only)
        try:
            if m and self.command == "POST":
                self.handle_invoke(unquote(m.group(1)), body, entry)
            else:
                self.handle_proxy(body, entry)
        except Exception as e:  # noqa: BLE001
            log(f"error handling {self.command} {self.path}: {e}\n{traceback.format_exc()}")
            entry.setdefault("error", str(e))
            self.close_connection = True
            if self._status is None:
                try:
                    write_simple(self, 502, {"message": f"router: {e}"})
                except OSError:
                    pass
        finally:
            entry["status"] = self._status
            entry["duration_ms"] = round((time.monotonic() - t0) * 1000.0, 2)
            r.record_end(logged, entry)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

    # --- /_router/* ----------------------------------------------------------------------
    def handle_router_api(self, path: str, body: bytes):
        r = self.router
        if path == "/_router/health":
            return write_simple(self, 200, {"status": "ok"})
        if path == "/_router/requests" and self.command == "GET":
            q = parse_qs(urlsplit(self.path).query)
            try:
                since = int((q.get("since") or ["0"])[0])
            except ValueError:
                return write_simple(self, 400, {"message": "since must be an integer"})
            with r.log_lock:
                data = [dict(e) for e in r.requests if e["seq"] > since]
            return write_simple(self, 200, data)
        if path == "/_router/reset" and self.command == "POST":
            with r.log_lock:
                r.requests.clear()
            return write_simple(self, 200, {"status": "ok"})
        if path == "/_router/authz/roles" and self.command == "POST":
            # After a moto reset: the template roles again, as a deployed stack has them.
            if r.authz is not None:
                r.authz.ensure_roles()
            return write_simple(self, 200, {"status": "ok", "authz": r.authz is not None})
        if path == "/_router/functions" and self.command == "GET":
            return write_simple(self, 200, r.functions_stats())
        if path == "/_router/functions/reset" and self.command == "POST":
            r.reset_functions()
            return write_simple(self, 200, {"status": "ok"})
        if path == "/_router/faults":
            if self.command == "GET":
                return write_simple(self, 200, r.faults.get())
            if self.command == "DELETE":
                return write_simple(self, 200, r.faults.set({"rate": 0}))
            if self.command == "POST":
                try:
                    cfg = json.loads(body or b"{}")
                    return write_simple(self, 200, r.faults.set(cfg))
                except (ValueError, TypeError) as e:
                    return write_simple(self, 400, {"message": str(e)})
        return write_simple(self, 404, {"message": f"unknown router endpoint {self.command} {path}"})

    # --- Lambda Invoke -------------------------------------------------------------------
    def handle_invoke(self, raw_name: str, body: bytes, entry: dict):
        r = self.router
        name, qualifier, arn_region, account = parse_function_name(raw_name)
        query = parse_qs(urlsplit(self.path).query)
        qualifier = (query.get("Qualifier") or [qualifier])[0]
        _, scope_region = credential_scope(self.headers, query)
        region = arn_region or scope_region or r.region
        account = account or r.account_id
        entry.update(service="lambda", operation="Invoke", write=False, purpose=PURPOSE_INVOKE,
                     function=name, backend="function", fault=None)
        c = Classified("lambda", region, "Invoke", "rest", False)
        fault = r.faults.pick(c)
        if fault and fault != "latency" and r.faults.invoke_mode() == "function-error":
            entry["fault"] = fault
            etype, msg = INVOKE_FAULT_ERROR_TYPES[fault]
            entry["function_error"] = etype
            rid = str(uuid.uuid4())
            return write_simple(self, 200, error_body(etype, msg),
                                {"X-Amz-Function-Error": "Unhandled", "x-amzn-RequestId": rid,
                                 "X-Amz-Executed-Version": "$LATEST"})
        if fault and self.apply_fault(fault, c, entry):
            return
        pool = r.pool(name)
        rid = str(uuid.uuid4())
        arn = f"arn:aws:lambda:{region}:{account}:function:{name}"
        if pool is None:
            return write_simple(
                self,
                404,
                {"Type": "User", "message": f"Function not found: {arn}"},
                {"x-amzn-ErrorType": "ResourceNotFoundException", "x-amzn-RequestId": rid},
            )
        itype = (self.headers.get("X-Amz-Invocation-Type")
                 or self.headers.get("InvocationType") or "RequestResponse")
        if itype == "DryRun":
            return write_simple(self, 204, None, {"x-amzn-RequestId": rid})
        cc = self.headers.get("X-Amz-Client-Context")
        if cc:
            try:
                cc = base64.b64decode(cc).decode("utf-8")
            except Exception:
                pass
        inv = Invocation(name, pool.arn(region, account, qualifier), body, cc)
        entry["request_id"] = inv.id
        if itype == "Event":
            def run():
                is_err, out = r.invoke(pool, inv, region)
                if is_err:
                    log(f"async invoke of {name} failed: {out[:500]!r}")
            threading.Thread(target=run, daemon=True).start()
            return write_simple(self, 202, None, {"x-amzn-RequestId": inv.id})
        is_error, out = r.invoke(pool, inv, region)
        headers = {"X-Amz-Executed-Version": "$LATEST", "x-amzn-RequestId": inv.id}
        if is_error:
            headers["X-Amz-Function-Error"] = "Unhandled"
            try:
                entry["function_error"] = json.loads(out).get("errorType")
            except Exception:
                entry["function_error"] = "Unhandled"
        if (self.headers.get("X-Amz-Log-Type") or "").lower() == "tail":
            # The function prints before it responds, but its output pipe is read by another
            # thread: give that thread a moment to catch up.
            deadline = time.monotonic() + 0.5
            while not inv.logs and time.monotonic() < deadline:
                time.sleep(0.01)
            tail = b"".join(inv.logs)[-4096:]
            headers["X-Amz-Log-Result"] = base64.b64encode(tail).decode()
        write_simple(self, 200, out, headers)

    # --- faults --------------------------------------------------------------------------
    def apply_fault(self, kind: str, c: Classified, entry: dict) -> bool:
        """Applies a fault; True when the request was answered (or dropped) here."""
        entry["fault"] = kind
        if kind == "latency":
            time.sleep(self.router.faults.latency_s())
            return False
        if kind == "reset":
            self._status = 0
            self.close_connection = True
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return True
        status, headers, body = fault_response(kind, c)
        ctype = headers.pop("Content-Type")
        write_simple(self, status, body, headers, content_type=ctype)
        return True

    # --- proxy ---------------------------------------------------------------------------
    def handle_proxy(self, body: bytes, entry: dict):
        r = self.router
        split = urlsplit(self.path)
        query = parse_qs(split.query, keep_blank_values=True)
        c = classify(self.command, split.path, query, self.headers, body)
        host = self.headers.get("Host")
        backend, fwd_path = r.backend_for(self.path, c.service, host)
        host_routed = any(hr.match(host) for hr in r.host_routes)
        entry.update(service=c.service, operation=c.operation, write=c.write, backend=backend,
                     purpose=purpose_of(c, self.command, entry["path"], query, entry.get("name"), host_routed),
                     fault=None)
        if r.model_check and c.service in model_check.SERVICES:
            try:
                refused = model_check.check(c.service, self.headers, self.command, split.path, query, body)
            except Exception as e:  # noqa: BLE001 - a checker bug must not hide the backend's answer
                log(f"model check failed for {c.operation}: {e}")
                refused = None
            if refused is not None:
                status, headers, rbody, message = refused
                entry["refused"] = message
                ctype = headers.pop("Content-Type")
                return write_simple(self, status, rbody, headers, content_type=ctype)
        if r.model_check and c.service == "ssm" and c.operation == "PutParameter":
            refused = self.ssm_tier_downgrade(backend, body)
            if refused is not None:
                entry["refused"] = refused
                return write_simple(self, 400, {"__type": "ValidationException", "message": refused},
                                    content_type="application/x-amz-json-1.1")
        capture = False
        if r.authz is not None:
            ident = r.authz.identity(self.headers)
            if ident is not None:
                entry["principal"] = ident.arn
            try:
                denied = r.authz.authorize(c.service, self.command, split.path, query, self.headers, body)
            except Exception as e:  # noqa: BLE001 - an evaluator bug is a refusal, never a silent allow
                log(f"authorization failed for {c.operation}: {e!r}")
                denied = (*authz.denial(c.protocol if c.protocol != "rest" else "rest-json", c.service or "",
                                        f"router: authorization error: {e}"), f"authorization error: {e}")
            if denied is not None:
                status, headers, rbody, message = denied
                entry["denied"] = message
                log(f"AccessDenied: {message}")
                ctype = headers.pop("Content-Type")
                return write_simple(self, status, rbody, headers, content_type=ctype)
            capture = r.authz.wants_response(c.service, self.headers, query, body)
        fault = r.faults.pick(c)
        if fault and self.apply_fault(fault, c, entry):
            return
        if c.service == "iam" and c.operation == "SimulatePrincipalPolicy" and backend == r.default:
            return self.simulate_principal_policy(body, entry)
        u = urlsplit(backend)
        conn_cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        conn = conn_cls(u.hostname, u.port, timeout=r.proxy_timeout)
        try:
            conn.putrequest(self.command, fwd_path, skip_host=True, skip_accept_encoding=True)
            has_host = False
            for k, v in self.headers.items():
                lk = k.lower()
                if lk in HOP_BY_HOP or lk == "content-length" or lk == "expect":
                    continue
                if lk == "host":
                    has_host = True
                conn.putheader(k, v)
            if not has_host:
                conn.putheader("Host", u.netloc)
            if body or self.command in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body if body else None)
            resp = conn.getresponse()
        except OSError as e:
            conn.close()
            entry["error"] = f"backend {backend}: {e}"
            return write_simple(self, 502, {"message": f"router: backend {backend} unreachable: {e}"})
        try:
            if capture:
                # An AssumeRole by a function: the credentials it returns are checked in turn.
                data = resp.read()
                r.authz.observe_assume_role(self.headers, query, body, resp.status, data)
                return self.relay_read(resp, data, "text/xml")
            if r.amp_creating.applies(c.service, self.command, split.path):
                data = r.amp_creating.rewrite(self.command, split.path, resp.status, resp.read())
                return self.relay_read(resp, data, "application/json")
            self.relay_response(resp)
        finally:
            conn.close()

    def simulate_principal_policy(self, body: bytes, entry: dict):
        """iam:SimulatePrincipalPolicy, which moto lacks, answered from moto's IAM state
        (tests/localstack/iam_simulate.py), in the source role's account."""
        import iam_simulate  # noqa: PLC0415  (boto3 is loaded only when a simulation is asked)

        r = self.router
        form = iam_simulate.form_of(body)
        source = iam_simulate.source_of(form)
        account = source.split(":")[4] if source.count(":") >= 5 else r.account_id
        try:
            if r.authz is not None:
                iam = r.authz._account_client("iam", account)
            else:
                import boto3  # noqa: PLC0415

                iam = boto3.client("iam", endpoint_url=r.default, region_name=r.region,
                                   aws_access_key_id="testing", aws_secret_access_key="testing")
            status, out = iam_simulate.simulate(iam, form)
        except Exception as e:  # noqa: BLE001 - a simulator failure is the service's failure
            entry["error"] = f"simulate: {e!r}"
            status, out = iam_simulate.error(500, "ServiceFailure", f"router: simulation failed: {e}")
        return write_simple(self, status, out, content_type="text/xml")

    def ssm_tier_downgrade(self, backend: str, body: bytes) -> str | None:
        """SSM's tier rule that moto does not keep: an Advanced parameter is never overwritten as a
        Standard one (PutParameter with Overwrite and Tier Standard is refused; moto would silently
        downgrade it). The live tier is read from moto with the request's own credential scope."""
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            return None
        if not params.get("Overwrite") or params.get("Tier", "Standard") != "Standard" or not params.get("Name"):
            return None
        name = params["Name"]
        query = {"ParameterFilters": [{"Key": "Name", "Option": "Equals", "Values": [name]}]}
        u = urlsplit(backend)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        try:
            headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "AmazonSSM.DescribeParameters",
                       "Authorization": self.headers.get("Authorization") or ""}
            conn.request("POST", "/", json.dumps(query).encode(), headers)
            resp = conn.getresponse()
            live = json.loads(resp.read() or b"{}") if resp.status == 200 else {}
        except (OSError, ValueError):
            return None
        finally:
            conn.close()
        if any(p.get("Name") == name and p.get("Tier") == "Advanced" for p in live.get("Parameters", [])):
            return ("This parameter uses the advanced-parameter tier. You can't downgrade a parameter from the "
                    "advanced-parameter tier to the standard-parameter tier. If necessary, you can delete the "
                    "advanced parameter and recreate it as a standard parameter.")
        return None

    def relay_read(self, resp: http.client.HTTPResponse, data: bytes, default_type: str):
        """Relays a response whose body was read (and possibly rewritten) here."""
        headers = {k: v for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP
                   and k.lower() not in ("content-length", "content-type", "date", "server")}
        return write_simple(self, resp.status, data, headers,
                            content_type=resp.getheader("Content-Type") or default_type)

    def relay_response(self, resp: http.client.HTTPResponse):
        self.send_response_only(resp.status, resp.reason)
        length = None
        for k, v in resp.getheaders():
            lk = k.lower()
            if lk in HOP_BY_HOP:
                continue
            if lk == "content-length":
                length = v
            self.send_header(k, v)
        no_body = self.command == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
        if no_body:
            self.end_headers()
            self.wfile.flush()
            return
        if length is not None:
            self.end_headers()
            while True:
                chunk = resp.read(65536)
                if not chunk:
                    break
                self.wfile.write(chunk)
            self.wfile.flush()
            return
        # No Content-Length (chunked or close-delimited upstream): re-frame for our client.
        if self.request_version == "HTTP/1.1":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while True:
                chunk = resp.read1(65536)
                if not chunk:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
            self.end_headers()
            while True:
                chunk = resp.read1(65536)
                if not chunk:
                    break
                self.wfile.write(chunk)
            self.wfile.flush()


class RouterServer(QuietServer):
    pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True, help="listen port (0 = any free port)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--default", required=True, help="default backend URL (moto)")
    ap.add_argument("--route", action="append", default=[], metavar="SERVICE=URL",
                    help="backend for a SigV4 credential-scope service, e.g. grafana=http://127.0.0.1:3001")
    ap.add_argument("--path-route", action="append", default=[], metavar="PREFIX=URL",
                    help="backend for a path prefix ('*' = one segment); checked before --route, "
                         "first match wins; a path in URL replaces the matched prefix")
    ap.add_argument("--host-route", action="append", default=[], metavar="SUFFIX=URL",
                    help="backend for requests whose Host ends with SUFFIX, e.g. "
                         ".grafana-workspace.us-east-1.amazonaws.com=http://127.0.0.1:3001; "
                         "checked first; path and Host are forwarded unchanged")
    ap.add_argument("--functions-dir", help="directory holding function binaries <dir>/<name> "
                                            "(or <dir>/<name>/bootstrap)")
    ap.add_argument("--function-env", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--function-timeout", type=float, default=60.0, help="seconds (default 60)")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--account-id", default="123456789012")
    ap.add_argument("--proxy-timeout", type=float, default=300.0, help="backend socket timeout, s")
    ap.add_argument("--quiet-functions", action="store_true",
                    help="do not copy function output to stderr")
    ap.add_argument("--no-model-check", action="store_true",
                    help="do not refuse requests that break botocore's service model or AWS's documented "
                         "limits (also O11Y_MODEL_CHECK=0)")
    ap.add_argument("--template", help="infra/template.yaml: run each function under its template role and "
                                       "authorize its requests (authz.py; off with O11Y_AUTHZ=0)")
    ap.add_argument("--template-param", action="append", default=[], metavar="NAME=VALUE",
                    help="a template parameter other than its default")
    ap.add_argument("--state-machine-name", default="o11y-provisioner",
                    help="local name of the template's state machine (its Ref)")
    ap.add_argument("--amp-creating-seconds", type=float, default=0.0,
                    help="an AMP workspace is answered CREATING for this long after its CreateWorkspace "
                         "(moto makes it ACTIVE at once)")
    ap.add_argument("--iam-propagation-seconds", type=float, default=0.0,
                    help="IAM's eventual consistency: a role younger than this cannot be assumed by a "
                         "function yet (sts:AssumeRole answers AccessDenied; needs --template)")
    ap.add_argument("--iam-trust-quota", type=int, default=None,
                    help="the account's trust policy size quota (default 2048; AWS allows raising it to 4096)")
    args = ap.parse_args(argv)
    if args.iam_trust_quota is not None:
        model_check.TRUST_QUOTA = args.iam_trust_quota

    router = Router(args)
    server = RouterServer((args.host, args.port), RouterHandler)
    server.router = router  # type: ignore[attr-defined]
    router.port = server.server_address[1]

    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    print(f"READY {router.port}", flush=True)
    log(f"listening on {args.host}:{router.port}; default backend {router.default}")

    while not stop.is_set():
        router.spawner.serve_once(0.2)

    router.stopping = True
    # Refuse spawns still queued, then stop every function process group.
    while True:
        try:
            _argv, _kw, done, box = router.spawner.q.get_nowait()
        except queue.Empty:
            break
        box["error"] = RuntimeError("router is shutting down")
        done.set()
    router.shutdown_functions()
    server.shutdown()
    server.server_close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
