#!/usr/bin/env python3
"""Conformance checks for the Amazon Managed Grafana emulator (emulator.py next to this file).

Starts the emulator on a free port, drives it with a real boto3 ``grafana`` client and with raw
HTTP, checks every JSON response against botocore's model independently of the emulator's own
code, prints one line per check and finally ``N passed, M failed``. Exit code 1 on any failure.

    /work/main/.venv/bin/python tests/grafana_emulator/conformance.py [--verbose]
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "emulator.py")
REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/grafana-workspace-role"
GROUP_ID = "90677c1a4e-11111111-2222-3333-4444-555555555555"
USER_ID = "90677c1a4e-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
EXPECTED_IMPLEMENTED = [
    "CreateWorkspace", "DescribeWorkspace", "ListWorkspaces", "DeleteWorkspace",
    "UpdateWorkspace", "ListVersions", "TagResource", "UntagResource", "ListTagsForResource",
    "UpdatePermissions", "ListPermissions", "CreateWorkspaceServiceAccount",
    "ListWorkspaceServiceAccounts", "DeleteWorkspaceServiceAccount",
    "CreateWorkspaceServiceAccountToken", "ListWorkspaceServiceAccountTokens",
    "DeleteWorkspaceServiceAccountToken",
]


# --------------------------------------------------------------------------------------------
# Model, independent of the emulator
# --------------------------------------------------------------------------------------------


def load_model():
    base = os.path.join(os.path.dirname(botocore.__file__), "data", "grafana")
    version = sorted(os.listdir(base))[-1]
    path = os.path.join(base, version, "service-2.json.gz")
    with gzip.open(path, "rt") as fh:
        return json.load(fh), path


MODEL, MODEL_PATH = load_model()
SHAPES = MODEL["shapes"]
OPS = MODEL["operations"]


def shape_problems(shape_name, value, path="$"):
    """Strict check of a response JSON value against a model shape. Returns a list of strings."""
    out = []
    s = SHAPES[shape_name]
    t = s["type"]
    if t == "structure":
        if not isinstance(value, dict):
            return [f"{path}: expected object, got {type(value).__name__}"]
        members = s.get("members", {})
        wire = {m.get("locationName", k): (k, m) for k, m in members.items()
                if m.get("location") is None}
        for req in s.get("required", []):
            m = members[req]
            if m.get("location") is None and value.get(m.get("locationName", req)) is None:
                out.append(f"{path}.{req}: required member missing")
        for k, v in value.items():
            if k not in wire:
                out.append(f"{path}.{k}: not a member of {shape_name}")
            elif v is not None:
                out += shape_problems(wire[k][1]["shape"], v, f"{path}.{k}")
    elif t == "list":
        if not isinstance(value, list):
            return [f"{path}: expected list"]
        if "min" in s and len(value) < s["min"]:
            out.append(f"{path}: fewer than {s['min']} items")
        if "max" in s and len(value) > s["max"]:
            out.append(f"{path}: more than {s['max']} items")
        for i, item in enumerate(value):
            out += shape_problems(s["member"]["shape"], item, f"{path}[{i}]")
    elif t == "map":
        if not isinstance(value, dict):
            return [f"{path}: expected map"]
        for k, v in value.items():
            out += shape_problems(s["key"]["shape"], k, f"{path}<key>")
            out += shape_problems(s["value"]["shape"], v, f"{path}[{k!r}]")
    elif t == "string":
        if not isinstance(value, str):
            return [f"{path}: expected string, got {type(value).__name__}"]
        if "enum" in s and value not in s["enum"]:
            out.append(f"{path}: {value!r} not in enum {s['enum']}")
        if "min" in s and len(value) < s["min"]:
            out.append(f"{path}: shorter than {s['min']}")
        if "max" in s and len(value) > s["max"]:
            out.append(f"{path}: longer than {s['max']}")
        if "pattern" in s:
            pat = s["pattern"].lstrip("^").rstrip("$")
            if not re.fullmatch(pat, value):
                out.append(f"{path}: {value!r} does not match {s['pattern']}")
    elif t in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{path}: expected integer"]
        if "min" in s and value < s["min"]:
            out.append(f"{path}: below {s['min']}")
        if "max" in s and value > s["max"]:
            out.append(f"{path}: above {s['max']}")
    elif t == "boolean":
        if not isinstance(value, bool):
            out.append(f"{path}: expected boolean")
    elif t == "timestamp":
        # rest-json default timestamp format is epoch seconds (a JSON number).
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            out.append(f"{path}: expected epoch-seconds number, got {value!r}")
    return out


# --------------------------------------------------------------------------------------------
# Harness
# --------------------------------------------------------------------------------------------


class Results:
    def __init__(self, verbose=False):
        self.passed = 0
        self.failed = 0
        self.verbose = verbose

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"PASS {name}" + (f" -- {detail}" if detail and self.verbose else ""))
        else:
            self.failed += 1
            print(f"FAIL {name}" + (f" -- {detail}" if detail else ""))
        sys.stdout.flush()
        return bool(ok)

    def run(self, name, fn):
        """Run fn(); it returns (ok, detail) or raises -> FAIL."""
        try:
            res = fn()
            if isinstance(res, tuple):
                return self.check(name, res[0], res[1] if len(res) > 1 else "")
            return self.check(name, bool(res))
        except Exception as exc:  # noqa: BLE001 - a check that raises is a failed check
            detail = f"{type(exc).__name__}: {exc}"
            if self.verbose:
                detail += "\n" + traceback.format_exc()
            return self.check(name, False, detail)


class Emulator:
    def __init__(self, *extra):
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, EMULATOR, "--port", "0", "--region", REGION,
             "--account-id", ACCOUNT, *extra],
            stdout=subprocess.PIPE, stderr=self.log, text=True,
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], 15)
        line = self.proc.stdout.readline() if ready else ""
        m = re.fullmatch(r"READY (\d+)\n", line)
        if not m:
            self.stop()
            raise RuntimeError(f"emulator did not print READY <port> (got {line!r})")
        self.port = int(m.group(1))
        self.ready_line = line

    def stop(self, sig=signal.SIGTERM, timeout=5):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def stderr(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


class Raw:
    """Raw HTTP against the emulator."""

    def __init__(self, port):
        self.port = port

    def request(self, method, path, body=None, headers=None, auth=True):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        hdrs = {"Content-Type": "application/json"}
        if auth:
            hdrs["Authorization"] = ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/"
                                     "grafana/aws4_request, SignedHeaders=host, Signature=00")
        hdrs.update(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            if isinstance(data, str):
                data = data.encode()
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        try:
            doc = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            doc = raw
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, doc

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)


class ResponseAudit:
    """Captures every raw response the boto3 client parses and checks it against the model."""

    def __init__(self):
        self.per_op = {}  # op -> {"ok": n, "errors": n, "problems": [...]}

    def hook(self, operation_model, response_dict, **kwargs):
        op = operation_model.name
        rec = self.per_op.setdefault(op, {"success": 0, "error": 0, "problems": []})
        status = response_dict["status_code"]
        headers = {k.lower(): v for k, v in response_dict["headers"].items()}
        try:
            body = json.loads(response_dict["body"] or b"{}")
        except json.JSONDecodeError as exc:
            rec["problems"].append(f"{status}: body is not JSON ({exc})")
            return
        if 200 <= status < 300:
            rec["success"] += 1
            expected = OPS[op]["http"].get("responseCode", 200)
            if status != expected:
                rec["problems"].append(f"status {status} != model responseCode {expected}")
            if "output" in OPS[op]:
                rec["problems"] += shape_problems(OPS[op]["output"]["shape"], body)
        else:
            rec["error"] += 1
            code = headers.get("x-amzn-errortype", "").split(":")[0]
            if not code:
                rec["problems"].append(f"{status}: no x-amzn-ErrorType header")
                return
            if code == "NotImplementedException":
                return
            shape = SHAPES.get(code)
            if not shape or not shape.get("exception"):
                rec["problems"].append(f"{status}: {code} is not a modeled exception")
                return
            if shape["error"]["httpStatusCode"] != status:
                rec["problems"].append(f"{code}: status {status} != {shape['error']['httpStatusCode']}")
            if code not in [e["shape"] for e in OPS[op].get("errors", [])] and code not in (
                    "ValidationException", "AccessDeniedException"):
                rec["problems"].append(f"{code} is not listed in {op}'s errors")
            rec["problems"] += shape_problems(code, body)


def error_of(fn):
    """Run a boto3 call expected to fail; return the ClientError (or None if it succeeded)."""
    try:
        fn()
    except ClientError as e:
        return e
    return None


# --------------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------------


def sample_label(shape_name):
    s = SHAPES[shape_name]
    if "enum" in s:
        return s["enum"][0]
    if shape_name == "WorkspaceId":
        return "g-0123456789"
    return "sample"


# --------------------------------------------------------------------------------------------
# Grafana HTTP API (data plane): token auth, data source CRUD, health
# --------------------------------------------------------------------------------------------

AMP_PLUGIN = "grafana-amazonprometheus-datasource"
HEALTH_OK = "Successfully queried the Prometheus API."


class FakeBackends:
    """One loopback HTTP server playing AMP's control plane (GET /workspaces/<id>, like moto)
    and Prometheus (POST/GET /api/v1/query), so health checks can be driven both ways."""

    def __init__(self):
        self.amp_workspaces = {}  # id -> statusCode
        self.key_accounts = {}  # access key id -> account (STS GetCallerIdentity, like moto)
        self.prometheus_ok = True
        self.seen = []
        backends = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _reply(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                backends.seen.append({"method": self.command, "path": self.path,
                                      "authorization": self.headers.get("Authorization", ""),
                                      "body": body})
                path = self.path.split("?")[0]
                if path == "/" and b"Action=GetCallerIdentity" in body:
                    key = re.search(r"Credential=([^/]+)/", self.headers.get("Authorization", ""))
                    account = backends.key_accounts.get(key.group(1) if key else "", ACCOUNT)
                    data = (f"<GetCallerIdentityResponse><GetCallerIdentityResult><Account>{account}"
                            "</Account></GetCallerIdentityResult></GetCallerIdentityResponse>").encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/xml")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    return self.wfile.write(data)
                m = re.fullmatch(r"/workspaces/([^/]+)", path)
                if m and self.command == "GET":
                    st = backends.amp_workspaces.get(m.group(1))
                    if st is None:
                        return self._reply(404, {"message": f"Workspace {m.group(1)} not found"})
                    return self._reply(200, {"workspace": {"workspaceId": m.group(1),
                                                           "status": {"statusCode": st}}})
                if path == "/api/v1/query":
                    if not backends.prometheus_ok:
                        return self._reply(503, {"status": "error", "error": "unavailable"})
                    return self._reply(200, {"status": "success", "data": {
                        "resultType": "scalar", "result": [4, "2"]}})
                return self._reply(404, {"message": "no route"})

            do_GET = do_POST = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def run_dataplane(r: Results, emu: Emulator, backends: FakeBackends, plain: Emulator):
    raw = Raw(emu.port)
    gf = boto3.client("grafana", endpoint_url=f"http://127.0.0.1:{emu.port}", region_name=REGION,
                      aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret",
                      config=Config(retries={"max_attempts": 1}))

    def workspace(version, **kw):
        params = dict(accountAccessType="CURRENT_ACCOUNT", permissionType="CUSTOMER_MANAGED",
                      authenticationProviders=["AWS_SSO"], workspaceRoleArn=ROLE_ARN,
                      grafanaVersion=version)
        params.update(kw)
        ws = gf.create_workspace(**params)["workspace"]
        gf.describe_workspace(workspaceId=ws["id"])  # delay 0: ACTIVE now
        return ws

    def token(ws, role, name, ttl=3600):
        sa = gf.create_workspace_service_account(workspaceId=ws["id"], name=name, grafanaRole=role)
        t = gf.create_workspace_service_account_token(workspaceId=ws["id"], serviceAccountId=sa["id"],
                                                      name=f"{name}-tok", secondsToLive=ttl)
        return sa["id"], t["serviceAccountToken"]["id"], t["serviceAccountToken"]["key"]

    def api(ws, method, path, key=None, body=None, headers=None, prefix=False, port=None):
        hdrs = {} if prefix else {"Host": ws["endpoint"]}
        if key is not None:
            hdrs["Authorization"] = f"Bearer {key}"
        hdrs.update(headers or {})
        full = f"/grafana/{ws['id']}{path}" if prefix else path
        if port is not None:
            return Raw(port).request(method, full, body=body, headers=hdrs, auth=False)[::2]
        st, _, doc = raw.request(method, full, body=body, headers=hdrs, auth=False)
        return st, doc

    amp_id = "ws-11111111-2222-3333-4444-555555555555"
    backends.amp_workspaces[amp_id] = "ACTIVE"
    backends.amp_workspaces["ws-creating"] = "CREATING"
    amp_url = f"https://aps-workspaces.{REGION}.amazonaws.com/workspaces/{amp_id}/"
    secret = "s3cr3t-value-never-echoed"

    def amp_ds(name="amp", **over):
        d = {"name": name, "type": "prometheus", "access": "proxy", "url": amp_url,
             "jsonData": {"httpMethod": "POST", "sigV4Auth": True, "sigV4AuthType": "ec2_iam_role",
                          "sigV4Region": REGION},
             "secureJsonData": {"httpHeaderValue1": secret}}
        jd = over.pop("jsonData", None)
        if jd is not None:
            d["jsonData"] = dict(d["jsonData"], **jd)
            d["jsonData"] = {k: v for k, v in d["jsonData"].items() if v is not None}
        d.update(over)
        return d

    ws10 = workspace("10.4", workspaceName="dp10")
    ws12 = workspace("12.4", workspaceName="dp12")
    admin_sa, admin_tok, admin = token(ws10, "ADMIN", "admin")
    _, _, editor = token(ws10, "EDITOR", "editor")
    _, _, viewer = token(ws10, "VIEWER", "viewer")
    _, _, admin12 = token(ws12, "ADMIN", "admin12")

    # ---- authentication ----------------------------------------------------------------------
    st, doc = api(ws10, "GET", "/api/health")
    r.check("grafana api: GET /api/health needs no token and reports the workspace version",
            st == 200 and doc.get("database") == "ok" and doc.get("version") == "10.4", f"{st} {doc}")
    st, doc = api(ws10, "GET", "/api/datasources")
    r.check("grafana api: no Authorization -> 401 {message: Unauthorized}",
            st == 401 and doc == {"message": "Unauthorized"}, f"{st} {doc}")
    st, doc = api(ws10, "GET", "/api/datasources", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    r.check("grafana api: basic auth (no Grafana users in AMG) -> 401", st == 401, f"{st} {doc}")
    st, doc = api(ws10, "GET", "/api/datasources", key="glsa_notAKey_00000000")
    r.check("grafana api: unknown token -> 401 Invalid API key (Grafana's api-key.invalid)",
            st == 401 and doc.get("message") == "Invalid API key"
            and doc.get("messageId") == "api-key.invalid", f"{st} {doc}")
    st, doc = api(ws10, "GET", "/api/datasources", key=admin12)
    r.check("grafana api: token of another workspace -> 401", st == 401, f"{st} {doc}")
    _, _, short = token(ws10, "ADMIN", "short", ttl=1)
    st0, _ = api(ws10, "GET", "/api/datasources", key=short)
    time.sleep(1.2)
    st, doc = api(ws10, "GET", "/api/datasources", key=short)
    r.check("grafana api: token works, then after secondsToLive -> 401 Expired API key",
            st0 == 200 and st == 401 and doc.get("message") == "Expired API key"
            and doc.get("messageId") == "api-key.expired", f"{st0} -> {st} {doc}")
    gone_sa, gone_tok, gone = token(ws10, "ADMIN", "gone")
    st0, _ = api(ws10, "GET", "/api/datasources", key=gone)
    gf.delete_workspace_service_account_token(workspaceId=ws10["id"], serviceAccountId=gone_sa,
                                              tokenId=gone_tok)
    st, doc = api(ws10, "GET", "/api/datasources", key=gone)
    r.check("grafana api: deleted token -> 401", st0 == 200 and st == 401, f"{st0} -> {st} {doc}")
    sa_gone, _, sa_gone_key = token(ws10, "ADMIN", "sa-gone")
    gf.delete_workspace_service_account(workspaceId=ws10["id"], serviceAccountId=sa_gone)
    st, doc = api(ws10, "GET", "/api/datasources", key=sa_gone_key)
    r.check("grafana api: token of a deleted service account -> 401", st == 401, f"{st} {doc}")
    st, doc = raw.request("GET", "/api/datasources", auth=False, headers={
        "Host": f"g-0000000000.grafana-workspace.{REGION}.amazonaws.com",
        "Authorization": f"Bearer {admin}"})[::2]
    r.check("grafana api: unknown workspace host -> 404", st == 404, f"{st} {doc}")
    st, doc = api(ws10, "GET", "/api/no-such-api", key=admin)
    r.check("grafana api: unknown API path -> 404 {message: Not found}",
            st == 404 and doc == {"message": "Not found"}, f"{st} {doc}")

    # ---- authorization (Grafana's default grants) ----------------------------------------------
    st, doc = api(ws10, "GET", "/api/datasources", key=viewer)
    r.check("grafana api: VIEWER listing data sources -> 403 (datasources:read is Admin-only)",
            st == 403 and doc.get("title") == "Access denied"
            and "datasources:read" in doc.get("message", "") and doc.get("accessErrorId"), f"{st} {doc}")
    st, doc = api(ws10, "POST", "/api/datasources", key=editor, body=amp_ds("by-editor"))
    r.check("grafana api: EDITOR creating a data source -> 403 datasources:create",
            st == 403 and "datasources:create" in doc.get("message", ""), f"{st} {doc}")

    # ---- create ------------------------------------------------------------------------------
    st, doc = api(ws10, "POST", "/api/datasources", key=admin, body=amp_ds())
    ds = (doc or {}).get("datasource", {}) if isinstance(doc, dict) else {}
    uid = ds.get("uid", "")
    r.check("grafana api: POST /api/datasources -> 200 {datasource, id, message: Datasource added, name}",
            st == 200 and doc.get("message") == "Datasource added" and doc.get("name") == "amp"
            and isinstance(doc.get("id"), int) and doc["id"] == ds.get("id"), f"{st} {doc}")
    want_keys = {"id", "uid", "orgId", "name", "type", "typeLogoUrl", "access", "url", "user",
                 "database", "basicAuth", "basicAuthUser", "withCredentials", "isDefault",
                 "jsonData", "secureJsonFields", "version", "readOnly"}
    r.check("grafana api: created data source has Grafana's DTO fields, version 1, orgId 1, generated uid",
            want_keys <= set(ds) and ds["version"] == 1 and ds["orgId"] == 1 and ds["readOnly"] is False
            and re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", uid or "") and ds["jsonData"]["sigV4AuthType"] == "ec2_iam_role",
            str(ds))
    r.check("grafana api: secureJsonData never echoed, only secureJsonFields {key: true}",
            ds.get("secureJsonFields") == {"httpHeaderValue1": True} and "secureJsonData" not in ds
            and secret not in json.dumps(doc), str(ds.get("secureJsonFields")))
    st, doc = api(ws10, "POST", "/api/datasources", key=admin, body=amp_ds())
    r.check("grafana api: duplicate name -> 409 {message: data source with the same name already exists}",
            st == 409 and doc == {"message": "data source with the same name already exists"}, f"{st} {doc}")
    st, doc = api(ws10, "POST", "/api/datasources", key=admin, body=amp_ds("fixed-uid", uid="amp-fixed"))
    st2, doc2 = api(ws10, "POST", "/api/datasources", key=admin, body=amp_ds("other", uid="amp-fixed"))
    r.check("grafana api: a given uid is kept; the same uid again -> 409 (same uid already exists)",
            st == 200 and doc["datasource"]["uid"] == "amp-fixed" and st2 == 409
            and doc2 == {"message": "data source with the same uid already exists"}, f"{st} {st2} {doc2}")
    for label, body in [("without type", {"name": "x", "access": "proxy"}),
                        ("without name", {"type": "prometheus", "access": "proxy"}),
                        ("without access", {"name": "x", "type": "prometheus"}),
                        ("jsonData not an object", {"name": "x", "type": "prometheus", "access": "proxy",
                                                    "jsonData": "sigV4Auth=true"}),
                        ("not JSON", b"{nope")]:
        st, doc = api(ws10, "POST", "/api/datasources", key=admin, body=body)
        r.check(f"grafana api: create {label} -> 400 bad request data",
                st == 400 and doc == {"message": "bad request data"}, f"{st} {doc}")
    st, doc = api(ws10, "POST", "/api/datasources", key=admin, body=amp_ds("bad-uid", uid="no/slash"))
    r.check("grafana api: create with an invalid uid -> 400", st == 400, f"{st} {doc}")

    # ---- read ----------------------------------------------------------------------------------
    st, lst = api(ws10, "GET", "/api/datasources", key=admin)
    names = [d.get("name") for d in lst] if isinstance(lst, list) else []
    r.check("grafana api: GET /api/datasources -> array sorted by name, typeName, no secrets",
            st == 200 and names == ["amp", "fixed-uid"] and lst[0].get("typeName") == "Prometheus"
            and "secureJsonFields" not in lst[0] and secret not in json.dumps(lst), f"{st} {lst}")
    st, doc = api(ws10, "GET", f"/api/datasources/uid/{uid}", key=admin)
    r.check("grafana api: GET /api/datasources/uid/{uid} -> the data source",
            st == 200 and doc.get("uid") == uid and doc.get("url") == amp_url
            and doc.get("secureJsonFields") == {"httpHeaderValue1": True}, f"{st} {doc}")
    st, doc = api(ws10, "GET", "/api/datasources/name/amp", key=admin)
    r.check("grafana api: GET /api/datasources/name/{name}", st == 200 and doc.get("uid") == uid, f"{st} {doc}")
    st, doc = api(ws10, "GET", "/api/datasources/uid/nope", key=admin)
    r.check("grafana api: unknown uid -> 404 {message: Data source not found}",
            st == 404 and doc == {"message": "Data source not found"}, f"{st} {doc}")
    st, doc = api(ws10, "GET", "/api/datasources", key=admin, prefix=True)
    r.check("grafana api: path prefix /grafana/<id>/api/... reaches the same API",
            st == 200 and [d["name"] for d in doc] == ["amp", "fixed-uid"], f"{st} {doc}")

    # ---- health --------------------------------------------------------------------------------
    def health(ws, key, the_uid):
        return api(ws, "GET", f"/api/datasources/uid/{the_uid}/health", key=key)

    def put(ws, key, the_uid, body):
        return api(ws, "PUT", f"/api/datasources/uid/{the_uid}", key=key, body=body)

    before = len(backends.seen)
    st, doc = health(ws10, admin, uid)
    seen = backends.seen[before:]
    r.check("health: correct SigV4 datasource (10.4, core prometheus) -> 200 {status: OK, message}",
            st == 200 and doc == {"status": "OK", "message": HEALTH_OK}, f"{st} {doc}")
    r.check("health: AMP workspace looked up at --amp-url with an aps-scoped Authorization, "
            "then Grafana's query 1+1 sent to --prometheus-url",
            any(x["path"] == f"/workspaces/{amp_id}" and "/aps/aws4_request" in x["authorization"]
                for x in seen)
            and any(x["path"] == "/api/v1/query" and x["method"] == "POST" and b"query=1%2B1" in x["body"]
                    for x in seen), str(seen))
    st, doc = health(ws10, viewer, uid)
    r.check("health: VIEWER may run it (datasources:query)", st == 200 and doc.get("status") == "OK",
            f"{st} {doc}")

    def expect_error(label, body, needle, ws=ws10, key=admin, the_uid=None):
        the_uid = the_uid or uid
        st_put, doc_put = put(ws, key, the_uid, body)
        st, doc = health(ws, key, the_uid)
        msg = doc.get("message", "") if isinstance(doc, dict) else ""
        r.check(f"health: {label} -> saved (200), health 400 ERROR naming the problem",
                st_put == 200 and st == 400 and doc.get("status") == "ERROR" and needle in msg
                and msg.endswith("There was an error returned querying the Prometheus API."),
                f"put {st_put} {doc_put if st_put != 200 else ''}; health {st} {doc}")

    expect_error("sigV4AuthType 'workspace-iam-role'", amp_ds(jsonData={"sigV4AuthType": "workspace-iam-role"}),
                 "workspace-iam-role")
    expect_error("sigV4AuthType missing", amp_ds(jsonData={"sigV4AuthType": None}), "sigV4AuthType")
    expect_error("sigV4AuthType 'keys' (not the workspace role)", amp_ds(jsonData={"sigV4AuthType": "keys"}),
                 "not allowed")
    expect_error("sigV4Auth false", amp_ds(jsonData={"sigV4Auth": False}), "sigV4Auth")
    expect_error("sigV4Auth missing", amp_ds(jsonData={"sigV4Auth": None}), "sigV4Auth")
    expect_error("sigV4Region of another region", amp_ds(jsonData={"sigV4Region": "eu-west-1"}), "region")
    expect_error("sigV4Region missing", amp_ds(jsonData={"sigV4Region": None}), "sigV4Region")
    expect_error("access 'direct'", amp_ds(access="direct"), "access")
    expect_error("url not an AMP endpoint", amp_ds(url="http://prometheus:9090/"), "not an Amazon Managed")
    expect_error("url of another region",
                 amp_ds(url=f"https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/{amp_id}/",
                        jsonData={"sigV4Region": "eu-west-1"}), "eu-west-1")
    expect_error("AMP workspace that does not exist",
                 amp_ds(url=f"https://aps-workspaces.{REGION}.amazonaws.com/workspaces/ws-missing/"),
                 "does not exist")
    expect_error("AMP workspace not ACTIVE",
                 amp_ds(url=f"https://aps-workspaces.{REGION}.amazonaws.com/workspaces/ws-creating/"),
                 "CREATING")
    backends.prometheus_ok = False
    expect_error("Prometheus backend failing", amp_ds(), "503")
    backends.prometheus_ok = True
    st_put, _ = put(ws10, admin, uid, amp_ds(url=amp_url.rstrip("/")))
    st, doc = health(ws10, admin, uid)
    r.check("health: url without the trailing slash -> OK", st_put == 200 and st == 200
            and doc.get("status") == "OK", f"{st} {doc}")
    st, doc = api(ws10, "POST", "/api/datasources", key=admin,
                  body=amp_ds("plugin-on-10", type=AMP_PLUGIN))
    plugin_uid = doc["datasource"]["uid"] if st == 200 else "x"
    st, doc = health(ws10, admin, plugin_uid)
    r.check(f"health: {AMP_PLUGIN} on a 10.4 workspace (plugin not installed) -> 500 Unable to get plugin context",
            st == 500 and doc.get("message") == "Unable to get plugin context", f"{st} {doc}")
    st, doc = api(ws10, "POST", "/api/datasources", key=admin,
                  body={"name": "logs", "type": "loki", "access": "proxy", "url": "http://loki:3100"})
    st, doc = health(ws10, admin, doc["datasource"]["uid"] if st == 200 else "x")
    r.check("health: a type the emulator does not model (loki) -> 501", st == 501, f"{st} {doc}")
    st, doc = health(ws10, admin, "doesnotexist")
    r.check("health: unknown uid -> 500 Unable to load datasource metadata (as Grafana)",
            st == 500 and doc.get("message") == "Unable to load datasource metadata", f"{st} {doc}")
    st, doc = health(ws10, admin, "bad.uid")
    r.check("health: invalid uid -> 400 UID is invalid", st == 400 and doc.get("message") == "UID is invalid",
            f"{st} {doc}")

    # Grafana 12.4: the core type no longer signs; the plugin does.
    st, doc = api(ws12, "POST", "/api/datasources", key=admin12, body=amp_ds("core-on-12"))
    core12 = doc["datasource"]["uid"] if st == 200 else "x"
    st, doc = health(ws12, admin12, core12)
    r.check("health: core prometheus + sigV4Auth on 12.4 -> ERROR naming the plugin type",
            st == 400 and doc.get("status") == "ERROR" and AMP_PLUGIN in doc.get("message", ""), f"{st} {doc}")
    st, doc = api(ws12, "POST", "/api/datasources", key=admin12, body=amp_ds("plugin-on-12", type=AMP_PLUGIN))
    plug12 = doc["datasource"]["uid"] if st == 200 else "x"
    st, doc = health(ws12, admin12, plug12)
    r.check(f"health: {AMP_PLUGIN} with the workspace role on 12.4 -> OK",
            st == 200 and doc == {"status": "OK", "message": HEALTH_OK}, f"{st} {doc}")
    st, lst = api(ws12, "GET", "/api/datasources", key=admin12)
    types = {d["name"]: d.get("typeName") for d in lst} if st == 200 else {}
    r.check("grafana api: the plugin's typeName on 12.4", types.get("plugin-on-12")
            == "Amazon Managed Service for Prometheus", str(types))
    expect_error("plugin type with sigV4AuthType 'workspace-iam-role' on 12.4",
                 amp_ds("plugin-on-12", type=AMP_PLUGIN, jsonData={"sigV4AuthType": "workspace-iam-role"}),
                 "workspace-iam-role", ws=ws12, key=admin12, the_uid=plug12)

    # A workspace without a role: nothing for ec2_iam_role to sign with.
    sm = gf.create_workspace(accountAccessType="CURRENT_ACCOUNT", permissionType="SERVICE_MANAGED",
                             authenticationProviders=["AWS_SSO"], grafanaVersion="10.4",
                             workspaceName="no-role")["workspace"]
    gf.describe_workspace(workspaceId=sm["id"])
    _, _, sm_admin = token(sm, "ADMIN", "admin")
    st, doc = api(sm, "POST", "/api/datasources", key=sm_admin, body=amp_ds())
    st, doc = health(sm, sm_admin, doc["datasource"]["uid"] if st == 200 else "x")
    r.check("health: workspace without workspaceRoleArn -> ERROR naming the workspace role",
            st == 400 and doc.get("status") == "ERROR" and "workspaceRoleArn" in doc.get("message", ""),
            f"{st} {doc}")

    # ---- update --------------------------------------------------------------------------------
    st, cur = api(ws10, "GET", f"/api/datasources/uid/{uid}", key=admin)
    v0 = cur.get("version", 0)
    body = amp_ds(jsonData={"timeInterval": "30s"})
    body.pop("secureJsonData")
    body["version"] = v0
    st, doc = put(ws10, admin, uid, body)
    upd = doc.get("datasource", {}) if isinstance(doc, dict) else {}
    r.check("grafana api: PUT /api/datasources/uid/{uid} -> 200 {datasource, id, message: Datasource updated, name}",
            st == 200 and doc.get("message") == "Datasource updated" and doc.get("id") == upd.get("id")
            and doc.get("name") == "amp" and upd.get("version") == v0 + 1
            and upd.get("jsonData", {}).get("timeInterval") == "30s", f"{st} {doc}")
    r.check("grafana api: update without secureJsonData keeps the stored secrets",
            upd.get("secureJsonFields") == {"httpHeaderValue1": True}, str(upd.get("secureJsonFields")))
    body["version"] = v0
    st, doc = put(ws10, admin, uid, body)
    r.check("grafana api: PUT with a stale version -> 409 (updated by someone else)",
            st == 409 and "already been updated" in doc.get("message", ""), f"{st} {doc}")
    st, doc = put(ws10, admin, uid, amp_ds("fixed-uid"))
    r.check("grafana api: PUT renaming onto another data source's name -> 409",
            st == 409 and "same name already exists" in doc.get("message", ""), f"{st} {doc}")
    st, doc = put(ws10, admin, "nope", amp_ds("x"))
    r.check("grafana api: PUT unknown uid -> 404", st == 404, f"{st} {doc}")
    st, doc = put(ws10, editor, uid, amp_ds())
    r.check("grafana api: EDITOR updating -> 403 datasources:write",
            st == 403 and "datasources:write" in doc.get("message", ""), f"{st} {doc}")

    # ---- control endpoints ---------------------------------------------------------------------
    st, _, dump = raw.get(f"/_emulator/datasources?workspaceId={ws10['id']}", auth=False)
    dumped = {d["uid"]: d for d in dump.get("datasources", [])} if st == 200 else {}
    r.check("control: GET /_emulator/datasources?workspaceId= dumps the workspace's data sources, no secrets",
            st == 200 and uid in dumped and dumped[uid]["workspaceId"] == ws10["id"]
            and all(d["workspaceId"] == ws10["id"] for d in dumped.values())
            and secret not in json.dumps(dump), str(list(dumped)))
    st, _, state = raw.get("/_emulator/state", auth=False)
    r.check("control: /_emulator/state lists data sources without secret values",
            st == 200 and secret not in json.dumps(state)
            and any(d["uid"] == uid for w in state["workspaces"] for d in w.get("datasources", [])))
    st, _, log = raw.get(f"/_emulator/requests?plane=grafana&workspaceId={ws10['id']}", auth=False)
    entries = log.get("requests", []) if st == 200 else []
    log_text = json.dumps(entries)
    r.check("control: data-plane requests logged with operation, uid, auth result and role",
            any(e.get("operation") == "checkDatasourceHealthWithUID" and e.get("uid") == uid
                and e.get("auth") == "ok" and e.get("grafanaRole") == "ADMIN" and e.get("health") == "OK"
                for e in entries)
            and any(e.get("auth") == "expired" and e.get("status") == 401 for e in entries)
            and any(e.get("auth") == "invalid" for e in entries)
            and any(e.get("auth") == "missing" for e in entries)
            and any(e.get("auth") == "forbidden" and e.get("status") == 403 for e in entries),
            log_text[:800])
    r.check("control: the request log holds no token and no secret",
            "glsa_" not in log_text and secret not in log_text and admin not in log_text)
    st, _, toks = raw.get(f"/_emulator/tokens?workspaceId={ws10['id']}", auth=False)
    live = toks.get("tokens", []) if st == 200 else []
    st2, _, all_toks = raw.get(f"/_emulator/tokens?workspaceId={ws10['id']}&all=true", auth=False)
    names = sorted(t["name"] for t in live)
    r.check("control: GET /_emulator/tokens lists live tokens (ids, expiry), never keys; "
            "expired only with all=true; deleted never",
            names == ["admin-tok", "editor-tok", "viewer-tok"] and all("key" not in t for t in live)
            and "glsa_" not in json.dumps(toks)
            and any(t["name"] == "short-tok" and t["expired"] for t in all_toks.get("tokens", []))
            and not any(t["name"] == "gone-tok" for t in all_toks.get("tokens", []))
            and all({"tokenId", "serviceAccountId", "expiresAt", "workspaceId"} <= set(t) for t in live),
            f"{names} / {[t['name'] for t in all_toks.get('tokens', [])]}")

    # ---- delete --------------------------------------------------------------------------------
    st, doc = api(ws10, "DELETE", f"/api/datasources/uid/{uid}", key=viewer)
    r.check("grafana api: VIEWER deleting -> 403 datasources:delete", st == 403, f"{st} {doc}")
    st, doc = api(ws10, "DELETE", f"/api/datasources/uid/{uid}", key=admin)
    st2, _ = api(ws10, "GET", f"/api/datasources/uid/{uid}", key=admin)
    st3, doc3 = api(ws10, "DELETE", f"/api/datasources/uid/{uid}", key=admin)
    r.check("grafana api: DELETE /api/datasources/uid/{uid} -> 200 {message: Data source deleted, id}; "
            "then GET and DELETE 404",
            st == 200 and doc.get("message") == "Data source deleted" and isinstance(doc.get("id"), int)
            and st2 == 404 and st3 == 404 and doc3 == {"message": "Data source not found"},
            f"{st} {doc} / {st2} / {st3} {doc3}")
    st, doc = api(ws10, "DELETE", "/api/datasources/name/fixed-uid", key=admin)
    st2, _ = api(ws10, "GET", "/api/datasources/uid/amp-fixed", key=admin)
    r.check("grafana api: DELETE /api/datasources/name/{name}", st == 200 and st2 == 404, f"{st} {doc}")
    gf.delete_workspace(workspaceId=ws12["id"])
    st, _, dump = raw.get(f"/_emulator/datasources?workspaceId={ws12['id']}", auth=False)
    st2, _, toks = raw.get(f"/_emulator/tokens?workspaceId={ws12['id']}", auth=False)
    st3, doc3 = api(ws12, "GET", "/api/datasources", key=admin12)
    r.check("deleted workspace: its data sources and tokens are gone, its API answers 404",
            dump.get("datasources") == [] and toks.get("tokens") == [] and st3 == 404, f"{dump} {toks} {st3}")

    # ---- accounts: a workspace is its creator's account's (the key resolved by STS) ----------
    other_account = "222233334444"
    backends.key_accounts["AKIDOTHERACCOUNT"] = other_account
    other = boto3.client("grafana", endpoint_url=f"http://127.0.0.1:{emu.port}", region_name=REGION,
                         aws_access_key_id="AKIDOTHERACCOUNT", aws_secret_access_key="secret",
                         config=Config(retries={"max_attempts": 1}))
    ows = other.create_workspace(accountAccessType="CURRENT_ACCOUNT", permissionType="CUSTOMER_MANAGED",
                                 authenticationProviders=["AWS_SSO"], workspaceRoleArn=ROLE_ARN,
                                 grafanaVersion="10.4", workspaceName="dp10")["workspace"]
    mine = {w["id"] for w in gf.list_workspaces()["workspaces"]}
    theirs = {w["id"] for w in other.list_workspaces()["workspaces"]}
    hidden = error_of(lambda: gf.describe_workspace(workspaceId=ows["id"]))
    hidden2 = error_of(lambda: other.describe_workspace(workspaceId=ws10["id"]))
    arn = f"arn:aws:grafana:{REGION}:{other_account}:/workspaces/{ows['id']}"
    tagged = other.list_tags_for_resource(resourceArn=arn)
    by_arn = error_of(lambda: gf.list_tags_for_resource(resourceArn=arn))
    r.check("accounts: another account's workspace (same name) is neither listed nor found, its ARN "
            "names its account",
            ows["id"] in theirs and ows["id"] not in mine and ws10["id"] in mine and ws10["id"] not in theirs
            and hidden is not None and hidden.response["Error"]["Code"] == "ResourceNotFoundException"
            and hidden2 is not None and hidden2.response["Error"]["Code"] == "ResourceNotFoundException"
            and "tags" in tagged and by_arn is not None,
            f"{mine} {theirs} {hidden} {hidden2} {by_arn}")
    other.delete_workspace(workspaceId=ows["id"])

    # ---- without --amp-url / --prometheus-url: no backend lookups -----------------------------
    gp = boto3.client("grafana", endpoint_url=f"http://127.0.0.1:{plain.port}", region_name=REGION,
                      aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")
    pws = gp.create_workspace(accountAccessType="CURRENT_ACCOUNT", permissionType="CUSTOMER_MANAGED",
                              authenticationProviders=["AWS_SSO"], workspaceRoleArn=ROLE_ARN,
                              grafanaVersion="10.4")["workspace"]
    gp.describe_workspace(workspaceId=pws["id"])
    psa = gp.create_workspace_service_account(workspaceId=pws["id"], name="a", grafanaRole="ADMIN")
    pkey = gp.create_workspace_service_account_token(workspaceId=pws["id"], serviceAccountId=psa["id"],
                                                     name="t", secondsToLive=60)["serviceAccountToken"]["key"]
    body = amp_ds(url=f"https://aps-workspaces.{REGION}.amazonaws.com/workspaces/ws-unknown-anywhere/")
    st, doc = api(pws, "POST", "/api/datasources", key=pkey, body=body, port=plain.port)
    before = len(backends.seen)
    st, doc = api(pws, "GET", f"/api/datasources/uid/{doc['datasource']['uid']}/health", key=pkey,
                  port=plain.port)
    r.check("health without --amp-url: configuration checks only (any AMP workspace id passes)",
            st == 200 and doc.get("status") == "OK" and len(backends.seen) == before, f"{st} {doc}")


def main(argv):
    verbose = "--verbose" in argv or "-v" in argv
    r = Results(verbose)
    emu = None
    try:
        emu = Emulator()
        r.check("emulator prints 'READY <port>' for --port 0", emu.port > 0, emu.ready_line.strip())
        run_all(r, emu)
        backends = FakeBackends()
        try:
            dp = Emulator("--amp-url", f"http://127.0.0.1:{backends.port}",
                          "--prometheus-url", f"http://127.0.0.1:{backends.port}")
            try:
                run_dataplane(r, dp, backends, emu)
            finally:
                dp.stop()
                dp_err = dp.stderr()
                r.check("data-plane emulator stderr has no tracebacks", "Traceback" not in dp_err,
                        dp_err[-2000:])
        finally:
            backends.stop()
        code = emu.stop()
        r.check("emulator exits cleanly on SIGTERM (exit code 0)", code == 0, f"exit code {code}")
        emu2 = Emulator("--active-delay", "0")
        code2 = emu2.stop(signal.SIGINT)
        r.check("emulator exits cleanly on SIGINT (exit code 0)", code2 == 0, f"exit code {code2}")
        err_text = emu.stderr()
        r.check("emulator stderr has no tracebacks", "Traceback" not in err_text, err_text[-2000:])
    except Exception as exc:  # noqa: BLE001
        r.check("conformance harness ran to completion", False,
                f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    finally:
        if emu is not None and emu.proc.poll() is None:
            emu.proc.kill()
            emu.proc.wait(5)
    print(f"{r.passed} passed, {r.failed} failed")
    return 0 if r.failed == 0 else 1


def run_all(r: Results, emu: Emulator):
    raw = Raw(emu.port)
    url = f"http://127.0.0.1:{emu.port}"
    audit = ResponseAudit()

    def make_client(**cfg):
        c = boto3.client(
            "grafana", endpoint_url=url, region_name=REGION, aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key="secret", config=Config(retries={"max_attempts": 1}, **cfg),
        )
        c.meta.events.register("before-parse.grafana.*", audit.hook)
        return c

    gf = make_client()
    gf_nv = make_client(parameter_validation=False)  # to reach server-side validation

    def config(**kw):
        st, _, doc = raw.post("/_emulator/config", kw, auth=False)
        assert st == 200, (st, doc)
        return doc

    def reset():
        st, _, _ = raw.post("/_emulator/reset", auth=False)
        assert st == 200

    def create(**kw):
        params = dict(accountAccessType="CURRENT_ACCOUNT", permissionType="CUSTOMER_MANAGED",
                      authenticationProviders=["AWS_SSO"], workspaceRoleArn=ROLE_ARN)
        params.update(kw)
        return gf.create_workspace(**params)

    def requests_log(**filters):
        q = "&".join(f"{k}={quote(str(v))}" for k, v in filters.items())
        st, _, doc = raw.get("/_emulator/requests" + (f"?{q}" if q else ""), auth=False)
        assert st == 200
        return doc["requests"]

    # ---- control endpoints -----------------------------------------------------------------
    st, _, doc = raw.get("/_emulator/health", auth=False)
    r.check("control: GET /_emulator/health -> 200", st == 200 and doc.get("status") == "ok", str(doc))
    st, _, doc = raw.post("/_emulator/config", {"activeDelaySeconds": -1}, auth=False)
    r.check("control: invalid config value -> 400", st == 400, str(doc))
    st, _, doc = raw.post("/_emulator/config", {"noSuchKey": 1}, auth=False)
    r.check("control: unknown config key -> 400", st == 400, str(doc))

    # ---- routing ---------------------------------------------------------------------------
    st, _, routes_doc = raw.get("/_emulator/routes", auth=False)
    routes = {x["operation"]: x for x in routes_doc["routes"]} if st == 200 else {}
    implemented = sorted(op for op, x in routes.items() if x["implemented"])
    print(f"INFO model {MODEL_PATH}: {len(OPS)} operations; routed and implemented "
          f"({len(implemented)}): {', '.join(implemented)}")
    print(f"INFO not implemented (501): {', '.join(sorted(set(OPS) - set(implemented)))}")
    r.check("routes: emulator implements exactly the required operations",
            sorted(EXPECTED_IMPLEMENTED) == implemented,
            f"missing {sorted(set(EXPECTED_IMPLEMENTED) - set(implemented))}, "
            f"extra {sorted(set(implemented) - set(EXPECTED_IMPLEMENTED))}")
    r.check("routes: every model operation has a route", set(routes) == set(OPS),
            f"unrouted {sorted(set(OPS) - set(routes))}")
    for op in sorted(implemented):
        op_http = OPS[op]["http"]
        x = routes.get(op, {})
        r.check(f"route {op}: {op_http['method']} {op_http['requestUri']} -> {op_http.get('responseCode', 200)}",
                x.get("method") == op_http["method"] and x.get("requestUri") == op_http["requestUri"]
                and x.get("responseCode") == op_http.get("responseCode", 200), str(x))

    # Each model operation, requested by the model's own method + URI, reaches that operation.
    reset()
    for op in sorted(OPS):
        op_http = OPS[op]["http"]
        in_shape = SHAPES[OPS[op]["input"]["shape"]] if "input" in OPS[op] else {"members": {}}
        path = op_http["requestUri"]
        for name, m in in_shape.get("members", {}).items():
            if m.get("location") == "uri":
                path = path.replace("{" + m.get("locationName", name) + "}",
                                    quote(sample_label(m["shape"]), safe=""))
        st, hdrs, doc = raw.request(op_http["method"], path, body={} if op_http["method"] != "GET" else None)
        last = requests_log()[-1]
        etype = hdrs.get("x-amzn-errortype", "")
        if op in EXPECTED_IMPLEMENTED:
            ok = last.get("operation") == op and st != 501 and st < 500 and etype != "NotImplementedException"
        else:
            ok = (last.get("operation") == op and st == 501 and etype == "NotImplementedException"
                  and op in (doc or {}).get("message", ""))
        r.check(f"dispatch {op} ({'implemented' if op in EXPECTED_IMPLEMENTED else '501'})", ok,
                f"{op_http['method']} {path} -> {st} {etype} {doc}; logged {last.get('operation')}")
    err = error_of(lambda: gf.associate_license(workspaceId="g-0123456789", licenseType="ENTERPRISE"))
    r.check("boto3: not-implemented op raises ClientError NotImplementedException (no retries)",
            err is not None and err.response["Error"]["Code"] == "NotImplementedException"
            and err.response["ResponseMetadata"]["HTTPStatusCode"] == 501
            and err.response["ResponseMetadata"].get("RetryAttempts", 0) == 0, str(err))

    st, hdrs, doc = raw.get("/no/such/path")
    r.check("unknown path -> 404 UnknownOperationException", st == 404
            and hdrs.get("x-amzn-errortype") == "UnknownOperationException", f"{st} {doc}")

    # ---- auth --------------------------------------------------------------------------------
    st, hdrs, doc = raw.get("/workspaces", auth=False)
    r.check("auth: request without Authorization -> 403 AccessDeniedException", st == 403
            and hdrs.get("x-amzn-errortype") == "AccessDeniedException"
            and isinstance(doc, dict) and doc.get("message"), f"{st} {hdrs} {doc}")
    st, _, doc = raw.get("/workspaces", headers={"Authorization": "garbage"})
    r.check("auth: any Authorization header accepted (SigV4 not verified)", st == 200, f"{st} {doc}")

    # ---- request validation (raw HTTP, bypassing botocore's client-side validation) -----------
    base_body = {"accountAccessType": "CURRENT_ACCOUNT", "permissionType": "CUSTOMER_MANAGED",
                 "authenticationProviders": ["AWS_SSO"], "workspaceRoleArn": ROLE_ARN}

    def expect_validation(name, method, path, body, fields, reason="FIELD_VALIDATION_FAILED"):
        st, hdrs, doc = raw.request(method, path, body=body)
        names = [f.get("name") for f in (doc or {}).get("fieldList", [])] if isinstance(doc, dict) else []
        ok = (st == 400 and hdrs.get("x-amzn-errortype") == "ValidationException"
              and isinstance(doc, dict) and doc.get("message") and doc.get("reason") == reason
              and all(f in names for f in fields) and not shape_problems("ValidationException", doc))
        r.check(f"validation: {name}", ok, f"{st} {hdrs.get('x-amzn-errortype')} {doc}")

    for field in ("accountAccessType", "permissionType", "authenticationProviders"):
        body = {k: v for k, v in base_body.items() if k != field}
        expect_validation(f"CreateWorkspace without required {field} -> names {field}",
                          "POST", "/workspaces", body, [field])
    expect_validation("CreateWorkspace with empty body -> names all 3 required fields",
                      "POST", "/workspaces", {},
                      ["accountAccessType", "permissionType", "authenticationProviders"])
    expect_validation("workspaceName with a space rejected", "POST", "/workspaces",
                      dict(base_body, workspaceName="my workspace"), ["workspaceName"])
    expect_validation("workspaceName of 256 chars rejected", "POST", "/workspaces",
                      dict(base_body, workspaceName="a" * 256), ["workspaceName"])
    expect_validation("workspaceName with '/' rejected", "POST", "/workspaces",
                      dict(base_body, workspaceName="a/b"), ["workspaceName"])
    expect_validation("workspaceName with a trailing newline rejected", "POST", "/workspaces",
                      dict(base_body, workspaceName="abc\n"), ["workspaceName"])
    expect_validation("accountAccessType outside enum rejected", "POST", "/workspaces",
                      dict(base_body, accountAccessType="EVERYONE"), ["accountAccessType"])
    expect_validation("authenticationProviders item outside enum rejected", "POST", "/workspaces",
                      dict(base_body, authenticationProviders=["OIDC"]),
                      ["authenticationProviders.1.member"])
    expect_validation("clientToken with a space rejected", "POST", "/workspaces",
                      dict(base_body, clientToken="a b"), ["clientToken"])
    expect_validation("clientToken of 65 chars rejected", "POST", "/workspaces",
                      dict(base_body, clientToken="x" * 65), ["clientToken"])
    expect_validation("description of 2049 chars rejected", "POST", "/workspaces",
                      dict(base_body, workspaceDescription="d" * 2049), ["workspaceDescription"])
    expect_validation("wrong JSON type (tags as string) rejected", "POST", "/workspaces",
                      dict(base_body, tags="k=v"), ["tags"])
    expect_validation("more than 50 tags rejected", "POST", "/workspaces",
                      dict(base_body, tags={f"k{i}": "v" for i in range(51)}), ["tags"])
    expect_validation("invalid JSON body -> CANNOT_PARSE", "POST", "/workspaces", b"{not json",
                      [], reason="CANNOT_PARSE")
    expect_validation("bad workspace id (uppercase) rejected", "GET", "/workspaces/g-ABCDEF0123",
                      None, ["workspaceId"])
    expect_validation("bad workspace id (9 hex digits) rejected", "GET", "/workspaces/g-012345678",
                      None, ["workspaceId"])
    expect_validation("bad workspace id (no g- prefix) rejected", "DELETE", "/workspaces/0123456789ab",
                      None, ["workspaceId"])
    expect_validation("ListWorkspaces maxResults=0 rejected", "GET", "/workspaces?maxResults=0",
                      None, ["maxResults"])
    expect_validation("ListWorkspaces maxResults=101 rejected", "GET", "/workspaces?maxResults=101",
                      None, ["maxResults"])
    expect_validation("ListWorkspaces maxResults=abc -> CANNOT_PARSE", "GET",
                      "/workspaces?maxResults=abc", None, ["maxResults"], reason="CANNOT_PARSE")
    expect_validation("UpdatePermissions with 21 instructions rejected", "PATCH",
                      "/workspaces/g-0123456789/permissions",
                      {"updateInstructionBatch": [{"action": "ADD", "role": "ADMIN", "users": []}] * 21},
                      ["updateInstructionBatch"])
    expect_validation("UpdatePermissions bad action/user type rejected", "PATCH",
                      "/workspaces/g-0123456789/permissions",
                      {"updateInstructionBatch": [{"action": "GRANT", "role": "ADMIN",
                                                   "users": [{"id": USER_ID, "type": "IAM_USER"}]}]},
                      ["updateInstructionBatch.1.member.action",
                       "updateInstructionBatch.1.member.users.1.member.type"])
    expect_validation("UpdatePermissions without updateInstructionBatch rejected", "PATCH",
                      "/workspaces/g-0123456789/permissions", {}, ["updateInstructionBatch"])
    expect_validation("service account with grafanaRole OWNER rejected", "POST",
                      "/workspaces/g-0123456789/serviceaccounts", {"name": "x", "grafanaRole": "OWNER"},
                      ["grafanaRole"])
    expect_validation("service account name of 129 chars rejected", "POST",
                      "/workspaces/g-0123456789/serviceaccounts",
                      {"name": "n" * 129, "grafanaRole": "ADMIN"}, ["name"])
    for ttl in (0, 2592001, -5):
        expect_validation(f"token secondsToLive={ttl} rejected", "POST",
                          "/workspaces/g-0123456789/serviceaccounts/2/tokens",
                          {"name": "t", "secondsToLive": ttl}, ["secondsToLive"])
    expect_validation("token secondsToLive as string rejected", "POST",
                      "/workspaces/g-0123456789/serviceaccounts/2/tokens",
                      {"name": "t", "secondsToLive": "60"}, ["secondsToLive"])
    expect_validation("UntagResource without tagKeys rejected", "DELETE",
                      "/tags/" + quote(f"arn:aws:grafana:{REGION}:{ACCOUNT}:/workspaces/g-0123456789", safe=""),
                      None, ["tagKeys"])
    st, _, doc = raw.get("/workspaces")
    r.check("validation: rejected requests created nothing", st == 200 and doc["workspaces"] == [],
            str(doc))

    e = error_of(lambda: gf_nv.create_workspace(accountAccessType="CURRENT_ACCOUNT",
                                                permissionType="CUSTOMER_MANAGED",
                                                authenticationProviders=["AWS_SSO"],
                                                workspaceRoleArn=ROLE_ARN, workspaceName="bad name"))
    r.check("boto3: server-side validation raises client.exceptions.ValidationException",
            isinstance(e, gf.exceptions.ValidationException)
            and e.response.get("reason") == "FIELD_VALIDATION_FAILED"
            and e.response.get("fieldList", [{}])[0].get("name") == "workspaceName", str(e))
    e = error_of(lambda: create(grafanaVersion="7.5"))
    r.check("CreateWorkspace with grafanaVersion not in ListVersions -> ValidationException",
            isinstance(e, gf.exceptions.ValidationException), str(e))
    e = error_of(lambda: gf.create_workspace(accountAccessType="CURRENT_ACCOUNT",
                                             permissionType="CUSTOMER_MANAGED",
                                             authenticationProviders=["AWS_SSO"]))
    r.check("CUSTOMER_MANAGED without workspaceRoleArn -> ValidationException",
            isinstance(e, gf.exceptions.ValidationException), str(e))
    e = error_of(lambda: create(workspaceRoleArn="not-an-arn"))
    r.check("malformed workspaceRoleArn -> ValidationException",
            isinstance(e, gf.exceptions.ValidationException), str(e))

    # ---- ListVersions ----------------------------------------------------------------------
    versions = gf.list_versions()["grafanaVersions"]
    r.check("ListVersions returns realistic versions (8.4, 9.4, 10.4 and 12.4, which needs the AMP plugin)",
            versions == ["8.4", "9.4", "10.4", "12.4"], str(versions))
    pages = [p["grafanaVersions"] for p in
             gf.get_paginator("list_versions").paginate(PaginationConfig={"PageSize": 3})]
    r.check("ListVersions paginates (maxResults=3)", pages == [["8.4", "9.4", "10.4"], ["12.4"]], str(pages))

    # ---- create / describe with delays -----------------------------------------------------
    reset()
    config(activeDelaySeconds=1)
    resp = create(workspaceName="delayed", workspaceDescription="d1", tags={"team": "o11y"})
    ws1 = resp["workspace"]
    ws1_id = ws1["id"]
    r.check("CreateWorkspace -> HTTP 202", resp["ResponseMetadata"]["HTTPStatusCode"] == 202)
    r.check("CreateWorkspace: id matches ^g-[0-9a-f]{10}$", bool(re.fullmatch(r"g-[0-9a-f]{10}", ws1_id)), ws1_id)
    r.check("CreateWorkspace: status CREATING", ws1["status"] == "CREATING", ws1["status"])
    r.check("CreateWorkspace: endpoint <id>.grafana-workspace.<region>.amazonaws.com",
            ws1["endpoint"] == f"{ws1_id}.grafana-workspace.{REGION}.amazonaws.com", ws1["endpoint"])
    r.check("CreateWorkspace: grafanaVersion defaults to the latest listed version",
            ws1["grafanaVersion"] == versions[-1], ws1["grafanaVersion"])
    r.check("CreateWorkspace: role ARN, permissionType, accountAccessType, providers echoed",
            ws1.get("workspaceRoleArn") == ROLE_ARN and ws1.get("permissionType") == "CUSTOMER_MANAGED"
            and ws1.get("accountAccessType") == "CURRENT_ACCOUNT"
            and ws1["authentication"]["providers"] == ["AWS_SSO"], str(ws1))
    r.check("CreateWorkspace: created/modified parsed as datetimes (epoch seconds on the wire)",
            hasattr(ws1["created"], "year") and hasattr(ws1["modified"], "year"))
    d = gf.describe_workspace(workspaceId=ws1_id)["workspace"]
    r.check("DescribeWorkspace right after create (delay 1s): CREATING", d["status"] == "CREATING", d["status"])
    e = error_of(lambda: gf.update_workspace(workspaceId=ws1_id, workspaceDescription="x"))
    r.check("UpdateWorkspace while CREATING -> ConflictException",
            isinstance(e, gf.exceptions.ConflictException) and e.response.get("resourceId") == ws1_id, str(e))
    time.sleep(1.2)
    d = gf.describe_workspace(workspaceId=ws1_id)["workspace"]
    r.check("DescribeWorkspace after the delay: ACTIVE", d["status"] == "ACTIVE", d["status"])
    r.check("DescribeWorkspace: tags given at create are returned", d.get("tags") == {"team": "o11y"},
            str(d.get("tags")))
    config(activeDelaySeconds=0)
    resp = create(workspaceName="instant", grafanaVersion="9.4")
    ws2_id = resp["workspace"]["id"]
    d = gf.describe_workspace(workspaceId=ws2_id)["workspace"]
    r.check("delay 0: CreateWorkspace answers CREATING, first Describe ACTIVE",
            resp["workspace"]["status"] == "CREATING" and d["status"] == "ACTIVE",
            f"{resp['workspace']['status']} -> {d['status']}")
    r.check("CreateWorkspace with grafanaVersion 9.4 keeps it", d["grafanaVersion"] == "9.4")
    vs = gf.list_versions(workspaceId=ws2_id)["grafanaVersions"]
    r.check("ListVersions workspace-id filter: versions >= the workspace's", vs == ["9.4", "10.4", "12.4"],
            str(vs))
    e = error_of(lambda: gf.list_versions(workspaceId="g-ffffffffff"))
    r.check("ListVersions for an unknown workspace -> ResourceNotFoundException",
            isinstance(e, gf.exceptions.ResourceNotFoundException), str(e))
    ws3_id = create(workspaceName="third", authenticationProviders=["SAML", "AWS_SSO"])["workspace"]["id"]
    d3 = gf.describe_workspace(workspaceId=ws3_id)["workspace"]
    r.check("SAML provider: authentication.samlConfigurationStatus NOT_CONFIGURED",
            d3["authentication"].get("samlConfigurationStatus") == "NOT_CONFIGURED", str(d3["authentication"]))

    # ---- list + pagination -------------------------------------------------------------------
    pages = []
    token = None
    while True:
        kw = {"maxResults": 1}
        if token:
            kw["nextToken"] = token
        page = gf.list_workspaces(**kw)
        pages.append([w["id"] for w in page["workspaces"]])
        token = page.get("nextToken")
        if not token or len(pages) > 10:
            break
    r.check("ListWorkspaces maxResults=1 across 3 workspaces: 3 pages of 1, last without nextToken",
            pages == [[ws1_id], [ws2_id], [ws3_id]], str(pages))
    allw = [w for p in gf.get_paginator("list_workspaces").paginate(PaginationConfig={"PageSize": 2})
            for w in p["workspaces"]]
    r.check("ListWorkspaces paginator (PageSize=2) yields all 3", len(allw) == 3, str(len(allw)))
    summ = allw[0]
    r.check("ListWorkspaces summaries carry id/endpoint/status/grafanaVersion/authentication",
            all(k in summ for k in ("id", "endpoint", "status", "grafanaVersion", "authentication",
                                    "created", "modified")), str(summ))
    expect_validation("ListWorkspaces with a forged nextToken rejected", "GET",
                      "/workspaces?nextToken=bm90LWEtdG9rZW4", None, ["nextToken"])

    # ---- UpdateWorkspace ------------------------------------------------------------------
    new_role = f"arn:aws:iam::{ACCOUNT}:role/other-role"
    u = gf.update_workspace(workspaceId=ws2_id, workspaceName="renamed", workspaceDescription="new",
                            workspaceRoleArn=new_role, permissionType="CUSTOMER_MANAGED")
    r.check("UpdateWorkspace -> HTTP 202, UPDATING",
            u["ResponseMetadata"]["HTTPStatusCode"] == 202 and u["workspace"]["status"] == "UPDATING",
            u["workspace"]["status"])
    d = gf.describe_workspace(workspaceId=ws2_id)["workspace"]
    r.check("UpdateWorkspace applied (name, description, role) and back to ACTIVE",
            d["name"] == "renamed" and d.get("description") == "new"
            and d["workspaceRoleArn"] == new_role and d["status"] == "ACTIVE", str(d))
    e = error_of(lambda: gf.update_workspace(workspaceId=ws2_id, permissionType="CUSTOMER_MANAGED"))
    r.check("UpdateWorkspace CUSTOMER_MANAGED without role ARN -> ValidationException",
            isinstance(e, gf.exceptions.ValidationException), str(e))
    e = error_of(lambda: gf.update_workspace(workspaceId="g-aaaaaaaaaa", workspaceName="x"))
    r.check("UpdateWorkspace unknown workspace -> ResourceNotFoundException",
            isinstance(e, gf.exceptions.ResourceNotFoundException), str(e))

    # ---- tags ------------------------------------------------------------------------------
    arn1 = f"arn:aws:grafana:{REGION}:{ACCOUNT}:/workspaces/{ws1_id}"
    r.check("ListTagsForResource returns the create-time tags",
            gf.list_tags_for_resource(resourceArn=arn1)["tags"] == {"team": "o11y"})
    gf.tag_resource(resourceArn=arn1, tags={"env": "test", "team": "platform"})
    tags = gf.list_tags_for_resource(resourceArn=arn1)["tags"]
    r.check("TagResource adds and overwrites tags", tags == {"team": "platform", "env": "test"}, str(tags))
    gf.untag_resource(resourceArn=arn1, tagKeys=["env", "absent"])
    tags = gf.list_tags_for_resource(resourceArn=arn1)["tags"]
    r.check("UntagResource removes tags (missing keys ignored)", tags == {"team": "platform"}, str(tags))
    log = requests_log(operation="TagResource")
    r.check("TagResource: ARN travels url-encoded in the path",
            bool(log) and quote(arn1, safe="") in log[-1]["path"], log[-1]["path"] if log else "")
    st, _, doc = raw.get("/tags/" + quote(arn1, safe=""))
    r.check("raw GET /tags/<url-encoded ARN> -> 200", st == 200 and doc == {"tags": {"team": "platform"}}, str(doc))
    e = error_of(lambda: gf.list_tags_for_resource(
        resourceArn=f"arn:aws:grafana:{REGION}:{ACCOUNT}:/workspaces/g-bbbbbbbbbb"))
    r.check("tags of an unknown workspace ARN -> ResourceNotFoundException",
            isinstance(e, gf.exceptions.ResourceNotFoundException), str(e))
    e = error_of(lambda: gf.tag_resource(resourceArn="arn:aws:s3:::bucket", tags={"a": "b"}))
    r.check("tags on a non-Grafana ARN -> ValidationException",
            isinstance(e, gf.exceptions.ValidationException), str(e))

    # ---- permissions ---------------------------------------------------------------------------
    up = gf.update_permissions(workspaceId=ws1_id, updateInstructionBatch=[
        {"action": "ADD", "role": "ADMIN", "users": [{"id": GROUP_ID, "type": "SSO_GROUP"}]},
        {"action": "ADD", "role": "EDITOR", "users": [{"id": USER_ID, "type": "SSO_USER"}]},
    ])
    r.check("UpdatePermissions success -> 200 with errors == []",
            up["ResponseMetadata"]["HTTPStatusCode"] == 200 and up["errors"] == [], str(up["errors"]))
    perms = gf.list_permissions(workspaceId=ws1_id)["permissions"]
    r.check("ListPermissions shows both entries",
            sorted((p["user"]["id"], p["user"]["type"], p["role"]) for p in perms)
            == sorted([(GROUP_ID, "SSO_GROUP", "ADMIN"), (USER_ID, "SSO_USER", "EDITOR")]), str(perms))
    perms = gf.list_permissions(workspaceId=ws1_id, userType="SSO_GROUP")["permissions"]
    r.check("ListPermissions userType filter", [p["user"]["id"] for p in perms] == [GROUP_ID], str(perms))
    perms = gf.list_permissions(workspaceId=ws1_id, groupId=GROUP_ID)["permissions"]
    r.check("ListPermissions groupId filter", [p["user"]["id"] for p in perms] == [GROUP_ID], str(perms))
    pg = gf.list_permissions(workspaceId=ws1_id, maxResults=1)
    r.check("ListPermissions maxResults=1 gives nextToken", len(pg["permissions"]) == 1 and pg.get("nextToken"))
    up = gf.update_permissions(workspaceId=ws1_id, updateInstructionBatch=[
        {"action": "ADD", "role": "ADMIN", "users": [{"id": "unknown-user-1", "type": "SSO_USER"},
                                                      {"id": USER_ID, "type": "SSO_USER"}]},
    ])
    errs = up["errors"]
    r.check("UpdatePermissions per-entry failure comes back in errors inside HTTP 200",
            up["ResponseMetadata"]["HTTPStatusCode"] == 200 and len(errs) == 1
            and errs[0]["causedBy"]["users"] == [{"id": "unknown-user-1", "type": "SSO_USER"}]
            and 100 <= errs[0]["code"] <= 999 and errs[0]["message"], str(errs))
    perms = {p["user"]["id"]: p["role"] for p in gf.list_permissions(workspaceId=ws1_id)["permissions"]}
    r.check("UpdatePermissions: the valid entry of a partly failing batch is applied",
            perms.get(USER_ID) == "ADMIN" and "unknown-user-1" not in perms, str(perms))
    gf.update_permissions(workspaceId=ws1_id, updateInstructionBatch=[
        {"action": "REVOKE", "role": "ADMIN", "users": [{"id": USER_ID, "type": "SSO_USER"}]}])
    perms = {p["user"]["id"] for p in gf.list_permissions(workspaceId=ws1_id)["permissions"]}
    r.check("UpdatePermissions REVOKE removes the role", perms == {GROUP_ID}, str(perms))
    up = gf.update_permissions(workspaceId=ws1_id, updateInstructionBatch=[])
    r.check("UpdatePermissions with 0 instructions -> 200", up["errors"] == [])
    e = error_of(lambda: gf.update_permissions(workspaceId="g-cccccccccc", updateInstructionBatch=[]))
    r.check("UpdatePermissions unknown workspace -> ResourceNotFoundException",
            isinstance(e, gf.exceptions.ResourceNotFoundException), str(e))

    # ---- service accounts and tokens -------------------------------------------------------
    sa = gf.create_workspace_service_account(workspaceId=ws1_id, name="provisioner", grafanaRole="ADMIN")
    sa_id = sa["id"]
    r.check("CreateWorkspaceServiceAccount -> 200 with id/name/grafanaRole/workspaceId",
            sa["ResponseMetadata"]["HTTPStatusCode"] == 200 and sa["name"] == "provisioner"
            and sa["grafanaRole"] == "ADMIN" and sa["workspaceId"] == ws1_id and sa_id, str(sa))
    e = error_of(lambda: gf.create_workspace_service_account(workspaceId=ws1_id, name="provisioner",
                                                             grafanaRole="VIEWER"))
    r.check("duplicate service account name -> ConflictException with resourceId/resourceType",
            isinstance(e, gf.exceptions.ConflictException) and e.response.get("resourceId") == sa_id
            and e.response.get("resourceType"), str(e))
    sa2 = gf.create_workspace_service_account(workspaceId=ws1_id, name="viewer", grafanaRole="VIEWER")
    lst = gf.list_workspace_service_accounts(workspaceId=ws1_id)
    r.check("ListWorkspaceServiceAccounts lists both (isDisabled 'false')",
            sorted(s["name"] for s in lst["serviceAccounts"]) == ["provisioner", "viewer"]
            and all(s["isDisabled"] == "false" for s in lst["serviceAccounts"])
            and lst["workspaceId"] == ws1_id, str(lst["serviceAccounts"]))
    ws84 = create(workspaceName="old", grafanaVersion="8.4")["workspace"]["id"]
    gf.describe_workspace(workspaceId=ws84)
    e = error_of(lambda: gf.create_workspace_service_account(workspaceId=ws84, name="x", grafanaRole="ADMIN"))
    r.check("service account on a Grafana 8.4 workspace -> ValidationException",
            isinstance(e, gf.exceptions.ValidationException), str(e))
    e = error_of(lambda: gf.create_workspace_service_account(workspaceId="g-dddddddddd", name="x",
                                                             grafanaRole="ADMIN"))
    r.check("service account on an unknown workspace -> ResourceNotFoundException",
            isinstance(e, gf.exceptions.ResourceNotFoundException), str(e))

    before = time.time()
    tok = gf.create_workspace_service_account_token(workspaceId=ws1_id, serviceAccountId=sa_id,
                                                    name="ci", secondsToLive=3600)
    key = tok["serviceAccountToken"]["key"]
    tok_id = tok["serviceAccountToken"]["id"]
    r.check("CreateWorkspaceServiceAccountToken returns id/name/key once",
            tok["serviceAccountId"] == sa_id and tok["workspaceId"] == ws1_id and key.startswith("glsa_")
            and tok["serviceAccountToken"]["name"] == "ci", str({k: v for k, v in tok.items() if k != "serviceAccountToken"}))
    toks = gf.list_workspace_service_account_tokens(workspaceId=ws1_id, serviceAccountId=sa_id)
    t0 = toks["serviceAccountTokens"][0] if toks["serviceAccountTokens"] else {}
    ttl = (t0["expiresAt"] - t0["createdAt"]).total_seconds() if t0 else -1
    r.check("ListWorkspaceServiceAccountTokens: no key, expiresAt = createdAt + secondsToLive",
            len(toks["serviceAccountTokens"]) == 1 and "key" not in t0 and abs(ttl - 3600) < 0.01
            and t0["createdAt"].timestamp() >= before - 1, f"{t0} ttl={ttl}")
    e = error_of(lambda: gf.create_workspace_service_account_token(
        workspaceId=ws1_id, serviceAccountId=sa_id, name="ci", secondsToLive=60))
    r.check("duplicate token name for a service account -> ConflictException",
            isinstance(e, gf.exceptions.ConflictException) and e.response.get("resourceType"), str(e))
    for bad in (0, 2592001):
        e = error_of(lambda: gf_nv.create_workspace_service_account_token(
            workspaceId=ws1_id, serviceAccountId=sa_id, name=f"ttl{bad}", secondsToLive=bad))
        r.check(f"boto3: secondsToLive={bad} -> ValidationException naming secondsToLive",
                isinstance(e, gf.exceptions.ValidationException)
                and any(f["name"] == "secondsToLive" for f in e.response.get("fieldList", [])), str(e))
    for good in (1, 2592000):
        t = gf.create_workspace_service_account_token(workspaceId=ws1_id, serviceAccountId=sa_id,
                                                      name=f"ttl{good}", secondsToLive=good)
        r.check(f"secondsToLive={good} accepted", bool(t["serviceAccountToken"]["key"]))
    e = error_of(lambda: gf.create_workspace_service_account_token(
        workspaceId=ws1_id, serviceAccountId="999", name="x", secondsToLive=60))
    r.check("token for an unknown service account -> ResourceNotFoundException",
            isinstance(e, gf.exceptions.ResourceNotFoundException) and e.response.get("resourceId") == "999",
            str(e))
    st, _, state = raw.get("/_emulator/state", auth=False)
    state_text = json.dumps(state)
    ws_state = next((w for w in state.get("workspaces", []) if w["id"] == ws1_id), {})
    r.check("GET /_emulator/state: workspaces with service accounts and tokens, no secret keys",
            st == 200 and key not in state_text and "glsa_" not in state_text
            and any(len(s["tokens"]) == 3 for s in ws_state.get("serviceAccounts", [])), state_text[:500])

    # data-plane hook: token store is usable for bearer auth at the workspace URL
    st, _, doc = raw.get(f"/grafana/{ws1_id}/api/datasources", auth=False,
                         headers={"Authorization": f"Bearer {key}"})
    r.check("data-plane hook (/grafana/<id>/...): valid ADMIN token lists data sources",
            st == 200 and doc == [], f"{st} {doc}")
    st, _, doc = raw.get("/api/datasources", auth=False, headers={
        "Authorization": f"Bearer {key}", "Host": f"{ws1_id}.grafana-workspace.{REGION}.amazonaws.com"})
    r.check("data-plane hook (Host header): valid token authenticates", st == 200 and doc == [], f"{st} {doc}")
    st, _, doc = raw.get(f"/grafana/{ws1_id}/api/datasources", auth=False,
                         headers={"Authorization": "Bearer glsa_wrong_00000000"})
    r.check("data-plane hook: wrong token -> 401", st == 401, f"{st} {doc}")
    short = gf.create_workspace_service_account_token(workspaceId=ws1_id, serviceAccountId=sa2["id"],
                                                      name="short", secondsToLive=1)
    time.sleep(1.1)
    st, _, doc = raw.get(f"/grafana/{ws1_id}/api/datasources", auth=False,
                         headers={"Authorization": f"Bearer {short['serviceAccountToken']['key']}"})
    r.check("data-plane hook: expired token -> 401", st == 401 and "xpired" in doc.get("message", ""),
            f"{st} {doc}")

    dt = gf.delete_workspace_service_account_token(workspaceId=ws1_id, serviceAccountId=sa_id, tokenId=tok_id)
    toks = gf.list_workspace_service_account_tokens(workspaceId=ws1_id, serviceAccountId=sa_id)
    r.check("DeleteWorkspaceServiceAccountToken -> echoes ids, token gone",
            dt["tokenId"] == tok_id and dt["serviceAccountId"] == sa_id and dt["workspaceId"] == ws1_id
            and tok_id not in [t["id"] for t in toks["serviceAccountTokens"]], str(dt))
    st, _, doc = raw.get(f"/grafana/{ws1_id}/api/datasources", auth=False,
                         headers={"Authorization": f"Bearer {key}"})
    r.check("data-plane hook: deleted token -> 401", st == 401, f"{st} {doc}")
    e = error_of(lambda: gf.delete_workspace_service_account_token(workspaceId=ws1_id,
                                                                   serviceAccountId=sa_id, tokenId=tok_id))
    r.check("deleting it again -> ResourceNotFoundException with resourceId/resourceType",
            isinstance(e, gf.exceptions.ResourceNotFoundException) and e.response.get("resourceId") == tok_id
            and e.response.get("resourceType"), str(e))
    ds = gf.delete_workspace_service_account(workspaceId=ws1_id, serviceAccountId=sa_id)
    names = [s["name"] for s in gf.list_workspace_service_accounts(workspaceId=ws1_id)["serviceAccounts"]]
    r.check("DeleteWorkspaceServiceAccount -> echoes ids, account gone",
            ds["serviceAccountId"] == sa_id and ds["workspaceId"] == ws1_id and names == ["viewer"], str(names))
    e = error_of(lambda: gf.delete_workspace_service_account(workspaceId=ws1_id, serviceAccountId=sa_id))
    r.check("deleting the service account again -> ResourceNotFoundException",
            isinstance(e, gf.exceptions.ResourceNotFoundException) and e.response.get("resourceId") == sa_id
            and e.response.get("resourceType"), str(e))
    e = error_of(lambda: gf.list_workspace_service_account_tokens(workspaceId=ws1_id, serviceAccountId=sa_id))
    r.check("tokens of a deleted service account -> ResourceNotFoundException",
            isinstance(e, gf.exceptions.ResourceNotFoundException), str(e))

    # ---- delete workspace --------------------------------------------------------------------
    config(activeDelaySeconds=1)
    dw = gf.delete_workspace(workspaceId=ws1_id)
    r.check("DeleteWorkspace -> HTTP 202, DELETING",
            dw["ResponseMetadata"]["HTTPStatusCode"] == 202 and dw["workspace"]["status"] == "DELETING",
            dw["workspace"]["status"])
    d = gf.describe_workspace(workspaceId=ws1_id)["workspace"]
    r.check("DescribeWorkspace during the delete delay: DELETING", d["status"] == "DELETING", d["status"])
    e = error_of(lambda: gf.delete_workspace(workspaceId=ws1_id))
    r.check("DeleteWorkspace while DELETING -> ConflictException",
            isinstance(e, gf.exceptions.ConflictException), str(e))
    time.sleep(1.2)
    e = error_of(lambda: gf.describe_workspace(workspaceId=ws1_id))
    r.check("DescribeWorkspace after delete -> 404 ResourceNotFoundException with resourceId/resourceType",
            isinstance(e, gf.exceptions.ResourceNotFoundException)
            and e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
            and e.response.get("resourceId") == ws1_id and e.response.get("resourceType")
            and e.response["Error"].get("Message"), str(e and e.response))
    config(activeDelaySeconds=0)
    dw = gf.delete_workspace(workspaceId=ws2_id)
    e = error_of(lambda: gf.describe_workspace(workspaceId=ws2_id))
    r.check("delay 0: DeleteWorkspace answers DELETING, next Describe 404",
            dw["workspace"]["status"] == "DELETING" and isinstance(e, gf.exceptions.ResourceNotFoundException))
    ids = [w["id"] for w in gf.list_workspaces()["workspaces"]]
    r.check("deleted workspaces disappear from ListWorkspaces", ws1_id not in ids and ws2_id not in ids, str(ids))
    e = error_of(lambda: gf.delete_workspace(workspaceId="g-eeeeeeeeee"))
    r.check("DeleteWorkspace unknown id -> ResourceNotFoundException",
            isinstance(e, gf.exceptions.ResourceNotFoundException), str(e))

    # ---- clientToken idempotency ------------------------------------------------------------
    reset()
    a = create(workspaceName="idem", clientToken="tok-123")
    b = create(workspaceName="idem", clientToken="tok-123")
    count = len(gf.list_workspaces()["workspaces"])
    r.check("same clientToken + same params -> same workspace, 202, nothing new created",
            a["workspace"]["id"] == b["workspace"]["id"] and b["ResponseMetadata"]["HTTPStatusCode"] == 202
            and count == 1, f"{a['workspace']['id']} {b['workspace']['id']} count={count}")
    e = error_of(lambda: create(workspaceName="idem-other", clientToken="tok-123"))
    r.check("same clientToken + different params -> ConflictException with resourceId/resourceType",
            isinstance(e, gf.exceptions.ConflictException)
            and e.response["ResponseMetadata"]["HTTPStatusCode"] == 409
            and e.response.get("resourceId") == a["workspace"]["id"] and e.response.get("resourceType"), str(e))
    c1 = create(workspaceName="idem")
    c2 = create(workspaceName="idem")
    r.check("no clientToken given: botocore auto-fills a fresh one -> two workspaces",
            c1["workspace"]["id"] != c2["workspace"]["id"])
    log = requests_log(operation="CreateWorkspace")
    r.check("GET /_emulator/requests logs operations (name, method, path, status)",
            len(log) == 5 and all(x["method"] == "POST" and x["path"] == "/workspaces" for x in log)
            and [x["status"] for x in log] == [202, 202, 409, 202, 202], str([(x["status"]) for x in log]))

    # ---- concurrency (state is behind one lock) ----------------------------------------------
    reset()
    config(maxWorkspaces=50)
    outcomes = []

    def racer(i):
        try:
            outcomes.append(create(workspaceName="race", clientToken="race-token")["workspace"]["id"])
        except Exception as exc:  # noqa: BLE001
            outcomes.append(f"error {exc}")

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    count = len(gf.list_workspaces()["workspaces"])
    r.check("12 concurrent CreateWorkspace with one clientToken -> one workspace, same id for all",
            count == 1 and len(set(outcomes)) == 1 and outcomes[0].startswith("g-"),
            f"count={count} outcomes={set(outcomes)}")
    race_ws = outcomes[0]
    gf.describe_workspace(workspaceId=race_ws)
    sa_outcomes = []

    def sa_racer(i):
        try:
            gf.create_workspace_service_account(workspaceId=race_ws, name="same", grafanaRole="EDITOR")
            sa_outcomes.append("ok")
        except ClientError as exc:
            sa_outcomes.append(exc.response["Error"]["Code"])

    threads = [threading.Thread(target=sa_racer, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    r.check("10 concurrent service accounts with one name -> 1 created, 9 ConflictException",
            sorted(sa_outcomes) == ["ConflictException"] * 9 + ["ok"], str(sa_outcomes))
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    conn.request("POST", "/workspaces", body=iter([json.dumps(base_body).encode()]),
                 headers={"Authorization": "x", "Content-Type": "application/json"},
                 encode_chunked=True)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    r.check("raw HTTP: chunked request body accepted", resp.status == 202, str(resp.status))
    config(maxWorkspaces=5)

    # ---- quota -------------------------------------------------------------------------------
    reset()
    for i in range(5):
        create(workspaceName=f"quota-{i}")
    e = error_of(lambda: create(workspaceName="six"))
    r.check("6th workspace -> 402 ServiceQuotaExceededException (AWS default quota 5)",
            e is not None and e.response["Error"]["Code"] == "ServiceQuotaExceededException"
            and e.response["ResponseMetadata"]["HTTPStatusCode"] == 402, str(e))

    # ---- reset -------------------------------------------------------------------------------
    reset()
    r.check("POST /_emulator/reset empties state and the request log",
            gf.list_workspaces()["workspaces"] == [] and len(requests_log()) == 1)

    # ---- response audit (every boto3 response validated against the model) -------------------
    for op in sorted(EXPECTED_IMPLEMENTED):
        rec = audit.per_op.get(op)
        ok = rec is not None and rec["success"] > 0 and not rec["problems"]
        detail = "never called successfully" if rec is None or not rec["success"] else "; ".join(rec["problems"][:5])
        r.check(f"responses of {op} match the model output/error shapes "
                f"({rec['success'] if rec else 0} ok, {rec['error'] if rec else 0} errors)", ok, detail)
    other = {op: rec for op, rec in audit.per_op.items() if op not in EXPECTED_IMPLEMENTED}
    r.check("error responses of non-implemented operations are well-formed",
            all(not rec["problems"] for rec in other.values()), str(other))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
