#!/usr/bin/env python3
"""Local emulator of Amazon Managed Grafana: the control plane (service id ``grafana``) and the
workspaces' Grafana HTTP API (data sources and their health, service-account token auth).

Control-plane routes, request parsing, validation and response shaping are all driven by
botocore's own service model (``botocore/data/grafana/<version>/service-2.json.gz``), so paths,
methods, status codes and field names are the ones every AWS SDK uses. The data plane follows
Grafana's ``pkg/api/datasources.go`` (see ``DataPlane``).

Usage::

    python emulator.py --port 0 [--host 127.0.0.1] [--active-delay 0] \
        [--region us-east-1] [--account-id 123456789012] [--amp-url URL] [--prometheus-url URL]

Prints ``READY <port>`` on stdout once listening; stops cleanly on SIGTERM / SIGINT.
Python 3.11 standard library plus botocore (for the model only).
See README.md next to this file for the control endpoints and the differences from AWS.
"""

from __future__ import annotations

import argparse
import base64
import copy
import glob
import gzip
import hashlib
import html
import json
import os
import re
import secrets
import signal
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import botocore

# The IAM policy evaluator the local stack's authorizer uses (tests/localstack/iam_policy.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "localstack"))
import iam_policy  # noqa: E402

# --------------------------------------------------------------------------------------------
# Static facts
# --------------------------------------------------------------------------------------------

SERVICE_NAME = "grafana"

#: Versions offered by ListVersions (the ones Amazon Managed Grafana offers for new workspaces).
DEFAULT_GRAFANA_VERSIONS = ["8.4", "9.4", "10.4", "12.4"]

# ---- Grafana HTTP API (data plane) ---------------------------------------------------------

#: Grafana's core Prometheus data source type.
CORE_PROMETHEUS_TYPE = "prometheus"
#: The Amazon Managed Service for Prometheus data source plugin.
AMP_PLUGIN_TYPE = "grafana-amazonprometheus-datasource"
#: The emulator's cutoff: workspaces of this Grafana major version and later have the AMP plugin
#: installed and no longer sign core ``prometheus`` requests with SigV4; earlier ones have no
#: plugin and SigV4 on the core type. Real Grafana deprecated core SigV4 during 11.x/12.x and
#: migrates such data sources to the plugin automatically from 13; the emulator is stricter (see
#: README.md).
PLUGIN_SIGV4_MIN_MAJOR = 11
#: ``jsonData.sigV4AuthType`` values grafana-aws-sdk knows; the console's "Workspace IAM Role"
#: is stored as ``ec2_iam_role``.
SIGV4_AUTH_TYPES = ("default", "keys", "credentials", "ec2_iam_role", "grafana_assume_role")
SIGV4_WORKSPACE_ROLE = "ec2_iam_role"
#: An AMP workspace endpoint, with or without the trailing slash.
AMP_URL_RE = re.compile(
    r"^https://aps-workspaces\.([a-z0-9-]+)\.amazonaws\.com/workspaces/(ws-[0-9A-Za-z][-.0-9A-Za-z_]*)/?$"
)
#: Grafana's ``util.IsValidShortUID``.
DATASOURCE_UID_RE = re.compile(r"^[a-zA-Z0-9\-_]{1,40}$")
#: promlib's health-check messages.
PROM_HEALTH_OK = "Successfully queried the Prometheus API."
PROM_HEALTH_ERROR = "There was an error returned querying the Prometheus API."


# Workspace statuses in which a workspace is changing state: DeleteWorkspace is refused
# (ConflictException) until it is stable again.
TRANSITIONAL_STATUSES = frozenset(
    {"CREATING", "UPDATING", "UPGRADING", "VERSION_UPDATING", "LICENSE_REMOVAL"}
)


def amp_plugin_required(grafana_version: str) -> bool:
    """True when a workspace of this version needs the AMP plugin type for SigV4."""
    major = re.match(r"\d+", grafana_version or "")
    return bool(major) and int(major.group(0)) >= PLUGIN_SIGV4_MIN_MAJOR

#: Operations this emulator implements. Every other operation of the model is routed too, but
#: answers 501 ``NotImplementedException``.
IMPLEMENTED_OPERATIONS = (
    "CreateWorkspace",
    "DescribeWorkspace",
    "ListWorkspaces",
    "DeleteWorkspace",
    "UpdateWorkspace",
    "ListVersions",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
    "UpdatePermissions",
    "ListPermissions",
    "CreateWorkspaceServiceAccount",
    "ListWorkspaceServiceAccounts",
    "DeleteWorkspaceServiceAccount",
    "CreateWorkspaceServiceAccountToken",
    "ListWorkspaceServiceAccountTokens",
    "DeleteWorkspaceServiceAccountToken",
)

NOT_IMPLEMENTED_CODE = "NotImplementedException"
NOT_IMPLEMENTED_STATUS = 501

RESOURCE_WORKSPACE = "WORKSPACE"
RESOURCE_SERVICE_ACCOUNT = "SERVICE_ACCOUNT"
RESOURCE_SERVICE_ACCOUNT_TOKEN = "SERVICE_ACCOUNT_TOKEN"

ROLE_ARN_RE = re.compile(r"^arn:aws[a-zA-Z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
WORKSPACE_ARN_RE = re.compile(
    r"^arn:(aws[a-zA-Z-]*):grafana:([a-z0-9-]+):(\d{12}):/workspaces/([^/]+)$"
)
WORKSPACE_ID_RE = re.compile(r"^g-[0-9a-f]{10}$")
#: Identity Store user / group id, as documented for ``User.id``.
SSO_ID_RE = re.compile(
    r"^([0-9a-fA-F]{10}-|)[A-Fa-f0-9]{8}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{12}$"
)


def find_model_path() -> str:
    """Path of botocore's grafana service-2 model (newest API version directory)."""
    base = os.path.join(os.path.dirname(botocore.__file__), "data", SERVICE_NAME)
    candidates = sorted(
        glob.glob(os.path.join(base, "*", "service-2.json*")),
        key=lambda p: os.path.basename(os.path.dirname(p)),
    )
    if not candidates:
        raise SystemExit(f"botocore has no {SERVICE_NAME} model under {base}")
    return candidates[-1]


def load_model(path: str | None = None) -> dict:
    path = path or find_model_path()
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def now() -> float:
    return round(time.time(), 3)


def version_key(v: str):
    parts = []
    for p in re.split(r"[.\-]", v):
        parts.append((0, int(p)) if p.isdigit() else (1, p))
    return tuple(parts)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An AWS-style error. ``status`` defaults to the model's httpStatusCode for ``code``."""

    def __init__(self, code: str, message: str, status: int | None = None, **fields):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.fields = {k: v for k, v in fields.items() if v is not None}


def validation_error(field_errors, reason="FIELD_VALIDATION_FAILED", message=None) -> ApiError:
    """field_errors: list of (field_name, constraint_message, full_sentence)."""
    n = len(field_errors)
    if message is None:
        message = (
            f"{n} validation error{'s' if n != 1 else ''} detected: "
            + "; ".join(sentence for _, _, sentence in field_errors)
        )
    return ApiError(
        "ValidationException",
        message,
        reason=reason,
        fieldList=[{"name": name, "message": msg} for name, msg, _ in field_errors] or None,
    )


def simple_validation(field: str, message: str, reason="FIELD_VALIDATION_FAILED") -> ApiError:
    return validation_error([(field, message, message)], reason=reason, message=message)


def not_found(message: str, resource_id: str, resource_type: str) -> ApiError:
    return ApiError(
        "ResourceNotFoundException", message, resourceId=resource_id, resourceType=resource_type
    )


def conflict(message: str, resource_id: str, resource_type: str) -> ApiError:
    return ApiError("ConflictException", message, resourceId=resource_id, resourceType=resource_type)


# --------------------------------------------------------------------------------------------
# Model-driven routing, parsing, validation and output shaping
# --------------------------------------------------------------------------------------------


def translate_pattern(pattern: str) -> str:
    """Translate a model (Java / ECMA flavoured) regex into an anchored Python regex.

    Model patterns are matched against the whole value (the API reference shows them as
    ``^...$``); botocore's copy often lacks the anchors.
    """
    java_classes = {
        r"\p{Alnum}": "a-zA-Z0-9",
        r"\p{Alpha}": "a-zA-Z",
        r"\p{Digit}": "0-9",
        r"\p{Upper}": "A-Z",
        r"\p{Lower}": "a-z",
        r"\p{Punct}": r"!-/:-@\[-`{-~",
        r"\p{Space}": r" \t\n\x0b\f\r",
        r"\p{XDigit}": "0-9a-fA-F",
        r"\p{ASCII}": r"\x00-\x7f",
        r"\p{Print}": r"\x20-\x7e",
        r"\p{Graph}": r"\x21-\x7e",
    }
    p = pattern
    for k, v in java_classes.items():
        # Inside a character class the expansion is inserted bare, outside it gets brackets.
        p = re.sub(r"(\[[^\]]*?)" + re.escape(k), lambda m, v=v: m.group(1) + v, p)
        p = p.replace(k, "[" + v + "]")
    p = p.replace(r"\z", r"\Z")
    # Java possessive quantifiers (*+, ++, ?+) are atomic in Python 3.11 too, so keep them.
    if not p.startswith("^"):
        p = "^(?:" + p + ")"
    if not p.endswith("$") or p.endswith(r"\$"):
        p = p + "$"
    # Python's "$" also matches before a trailing newline; Java's "$" in matches() does not.
    return p[:-1] + r"\Z"


class Route:
    def __init__(self, name: str, op: dict):
        self.name = name
        self.method = op["http"]["method"].upper()
        self.request_uri = op["http"]["requestUri"]
        self.response_code = op["http"].get("responseCode", 200)
        path_tpl, _, static_qs = self.request_uri.partition("?")
        self.static_query = parse_qs(static_qs, keep_blank_values=True) if static_qs else {}
        regex = "^"
        self.labels: dict[str, str] = {}
        pos = 0
        for i, m in enumerate(re.finditer(r"\{([^}]+)\}", path_tpl)):
            regex += re.escape(path_tpl[pos : m.start()])
            label = m.group(1)
            group = f"l{i}"
            if label.endswith("+"):
                label = label[:-1]
                regex += f"(?P<{group}>.+)"
            else:
                regex += f"(?P<{group}>[^/]+)"
            self.labels[group] = label
            pos = m.end()
        regex += re.escape(path_tpl[pos:]) + "$"
        self.regex = re.compile(regex)
        self.literal_len = len(re.sub(r"\{[^}]+\}", "", path_tpl))

    def match(self, method: str, raw_path: str, query: dict):
        if method != self.method:
            return None
        m = self.regex.match(raw_path)
        if not m:
            return None
        for k, vals in self.static_query.items():
            if k not in query or (vals != [""] and query[k] != vals):
                return None
        return {self.labels[g]: unquote(v) for g, v in m.groupdict().items()}

    def describe(self) -> dict:
        return {
            "operation": self.name,
            "method": self.method,
            "requestUri": self.request_uri,
            "responseCode": self.response_code,
            "implemented": self.name in IMPLEMENTED_OPERATIONS,
        }


class ServiceModel:
    def __init__(self, data: dict, path: str = ""):
        self.data = data
        self.path = path
        self.metadata = data["metadata"]
        self.shapes = data["shapes"]
        self.operations = data["operations"]
        self.routes = [Route(n, op) for n, op in self.operations.items()]
        # Most specific first: more literal characters, then fewer labels.
        self.routes.sort(key=lambda r: (-r.literal_len, len(r.labels)))
        self._patterns: dict[str, re.Pattern | None] = {}

    # ---- routing ---------------------------------------------------------------------------
    def match(self, method: str, raw_path: str, query: dict):
        for r in self.routes:
            labels = r.match(method, raw_path, query)
            if labels is not None:
                return r, labels
        return None, None

    def error_status(self, code: str) -> int:
        shape = self.shapes.get(code)
        if shape and shape.get("exception"):
            return shape.get("error", {}).get("httpStatusCode", 400)
        return 400

    # ---- request parsing -------------------------------------------------------------------
    def _coerce(self, shape_name: str, raw: str, field: str):
        t = self.shapes[shape_name]["type"]
        try:
            if t in ("integer", "long"):
                return int(raw)
            if t in ("float", "double"):
                return float(raw)
            if t == "boolean":
                if raw.lower() in ("true", "false"):
                    return raw.lower() == "true"
                raise ValueError(raw)
        except ValueError:
            raise validation_error(
                [
                    (
                        field,
                        f"Value '{raw}' cannot be converted to {t}",
                        f"Value '{raw}' at '{field}' cannot be converted to {t}",
                    )
                ],
                reason="CANNOT_PARSE",
            )
        return raw

    def parse_request(self, op_name: str, labels: dict, query: dict, headers, body: bytes) -> dict:
        op = self.operations[op_name]
        if "input" not in op:
            return {}
        shape = self.shapes[op["input"]["shape"]]
        members = shape.get("members", {})
        params: dict = {}
        body_members = {}
        for name, m in members.items():
            loc = m.get("location")
            loc_name = m.get("locationName", name)
            target = m["shape"]
            if loc == "uri":
                if loc_name in labels:
                    params[name] = self._coerce(target, labels[loc_name], name)
            elif loc == "querystring":
                tshape = self.shapes[target]
                if tshape["type"] == "map":
                    continue
                if loc_name in query:
                    vals = query[loc_name]
                    if tshape["type"] == "list":
                        params[name] = [
                            self._coerce(tshape["member"]["shape"], v, name) for v in vals
                        ]
                    else:
                        params[name] = self._coerce(target, vals[0], name)
            elif loc == "header":
                v = headers.get(loc_name)
                if v is not None:
                    params[name] = self._coerce(target, v, name)
            elif loc == "headers":
                continue
            else:
                body_members[name] = m
        payload_member = shape.get("payload")
        if body_members and body.strip():
            try:
                doc = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise validation_error(
                    [("body", f"Could not parse request body into json: {exc}",
                      f"Could not parse request body into json: {exc}")],
                    reason="CANNOT_PARSE",
                )
            if payload_member:
                params[payload_member] = doc
            else:
                if not isinstance(doc, dict):
                    raise validation_error(
                        [("body", "Request body must be a JSON object",
                          "Request body must be a JSON object")],
                        reason="CANNOT_PARSE",
                    )
                for name in body_members:
                    key = body_members[name].get("locationName", name)
                    if key in doc and doc[key] is not None:
                        params[name] = doc[key]
        return params

    # ---- validation ------------------------------------------------------------------------
    def _pattern(self, pattern: str):
        if pattern not in self._patterns:
            try:
                self._patterns[pattern] = re.compile(translate_pattern(pattern), re.DOTALL)
            except re.error:
                sys.stderr.write(f"grafana-emulator: cannot translate pattern {pattern!r}\n")
                self._patterns[pattern] = None
        return self._patterns[pattern]

    @staticmethod
    def _shown(value, sensitive: bool) -> str:
        if sensitive:
            return "Value"
        if isinstance(value, str):
            return f"Value '{value}'"
        return f"Value '{json.dumps(value)}'"

    def validate(self, shape_name: str, value, path: str = "", sensitive: bool = False) -> list:
        """Return a list of (field, constraint, sentence) for ``value`` against ``shape_name``."""
        errors: list = []
        self._validate(shape_name, value, path, sensitive, errors)
        return errors

    def _err(self, errors, path, value, sensitive, constraint):
        field = path or "input"
        if value is None:
            sentence = f"Value null at '{field}' failed to satisfy constraint: {constraint}"
        else:
            sentence = (
                f"{self._shown(value, sensitive)} at '{field}' failed to satisfy constraint: "
                f"{constraint}"
            )
        errors.append((field, constraint, sentence))

    def _validate(self, shape_name, value, path, sensitive, errors):
        s = self.shapes[shape_name]
        t = s["type"]
        sens = sensitive or bool(s.get("sensitive"))

        def join(child):
            return f"{path}.{child}" if path else str(child)

        if t == "structure":
            if not isinstance(value, dict):
                self._err(errors, path, value, sens, "Member must be a structure")
                return
            members = s.get("members", {})
            for req in s.get("required", []):
                if value.get(req) is None:
                    self._err(errors, join(req), None, sens, "Member must not be null")
            if s.get("union"):
                present = [k for k in members if value.get(k) is not None]
                if len(present) != 1:
                    self._err(errors, path, value, sens, "Union must have exactly one member set")
            for k, v in value.items():
                if k in members and v is not None:
                    self._validate(
                        members[k]["shape"], v, join(k), sens or bool(members[k].get("sensitive")),
                        errors,
                    )
        elif t == "list":
            if not isinstance(value, list):
                self._err(errors, path, value, sens, "Member must be a list")
                return
            self._check_len(s, len(value), path, value, sens, errors)
            for i, item in enumerate(value):
                if item is None:
                    self._err(errors, f"{join(i + 1)}.member", None, sens, "Member must not be null")
                else:
                    self._validate(s["member"]["shape"], item, f"{join(i + 1)}.member", sens, errors)
        elif t == "map":
            if not isinstance(value, dict):
                self._err(errors, path, value, sens, "Member must be a map")
                return
            self._check_len(s, len(value), path, value, sens, errors)
            for k, v in value.items():
                self._validate(s["key"]["shape"], k, f"{path}.key", sens, errors)
                if v is None:
                    self._err(errors, f"{path}.{k}", None, sens, "Member must not be null")
                else:
                    self._validate(s["value"]["shape"], v, f"{path}.{k}", sens, errors)
        elif t == "string":
            if not isinstance(value, str):
                self._err(errors, path, value, sens, "Member must be a string")
                return
            self._check_len(s, len(value), path, value, sens, errors)
            if "enum" in s and value not in s["enum"]:
                self._err(errors, path, value, sens,
                          f"Member must satisfy enum value set: [{', '.join(s['enum'])}]")
            if "pattern" in s:
                rx = self._pattern(s["pattern"])
                if rx is not None and not rx.match(value):
                    shown = s["pattern"]
                    shown = shown if shown.startswith("^") else "^" + shown
                    shown = shown if shown.endswith("$") else shown + "$"
                    self._err(errors, path, value, sens,
                              f"Member must satisfy regular expression pattern: {shown}")
        elif t in ("integer", "long"):
            if isinstance(value, bool) or not isinstance(value, int):
                self._err(errors, path, value, sens, f"Member must be an {t}")
                return
            if "min" in s and value < s["min"]:
                self._err(errors, path, value, sens,
                          f"Member must have value greater than or equal to {s['min']}")
            if "max" in s and value > s["max"]:
                self._err(errors, path, value, sens,
                          f"Member must have value less than or equal to {s['max']}")
        elif t in ("float", "double"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self._err(errors, path, value, sens, f"Member must be a {t}")
        elif t == "boolean":
            if not isinstance(value, bool):
                self._err(errors, path, value, sens, "Member must be a boolean")
        elif t == "timestamp":
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                self._err(errors, path, value, sens, "Member must be a timestamp")
        elif t == "blob":
            if not isinstance(value, str):
                self._err(errors, path, value, sens, "Member must be a base64 string")

    def _check_len(self, s, n, path, value, sens, errors):
        if "min" in s and n < s["min"]:
            self._err(errors, path, value, sens,
                      f"Member must have length greater than or equal to {s['min']}")
        if "max" in s and n > s["max"]:
            self._err(errors, path, value, sens,
                      f"Member must have length less than or equal to {s['max']}")

    def validate_input(self, op_name: str, params: dict):
        op = self.operations[op_name]
        if "input" not in op:
            return
        shape_name = op["input"]["shape"]
        errors = self.validate(shape_name, params)
        # jsonvalue members must hold a JSON document.
        for name, m in self.shapes[shape_name].get("members", {}).items():
            if m.get("jsonvalue") and isinstance(params.get(name), str):
                try:
                    json.loads(params[name])
                except json.JSONDecodeError:
                    c = "Member must be a valid JSON document"
                    errors.append((name, c, f"Value at '{name}' failed to satisfy constraint: {c}"))
        if errors:
            raise validation_error(errors)

    # ---- output shaping --------------------------------------------------------------------
    def shape_output(self, shape_name: str, value):
        """Keep only modeled members (recursively) and drop ``None``s."""
        s = self.shapes[shape_name]
        t = s["type"]
        if value is None:
            return None
        if t == "structure":
            members = s.get("members", {})
            out = {}
            for k, v in value.items():
                if k in members and v is not None and members[k].get("location") is None:
                    sv = self.shape_output(members[k]["shape"], v)
                    if sv is not None:
                        out[members[k].get("locationName", k)] = sv
            return out
        if t == "list":
            return [self.shape_output(s["member"]["shape"], v) for v in value if v is not None]
        if t == "map":
            return {k: self.shape_output(s["value"]["shape"], v) for k, v in value.items()}
        if t == "timestamp" and isinstance(value, (int, float)):
            return round(float(value), 3)
        return value


# --------------------------------------------------------------------------------------------
# State and operations
# --------------------------------------------------------------------------------------------


class Paginator:
    @staticmethod
    def page(items: list, max_results, next_token, default_max=100):
        start = 0
        if next_token:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(next_token.encode()).decode())
                start = int(decoded["offset"])
                if start < 0:
                    raise ValueError
            except Exception:
                raise simple_validation("nextToken", "The provided nextToken is not valid.")
        size = max_results or default_max
        end = start + size
        token = None
        if end < len(items):
            token = base64.urlsafe_b64encode(
                json.dumps({"offset": end, "nonce": secrets.token_hex(4)}).encode()
            ).decode()
        return items[start:end], token


class GrafanaService:
    """All control-plane state plus the operation handlers (``op_<OperationName>``).

    Every public entry point takes ``self.lock``. The service-account token store is exposed
    via :meth:`authenticate_token` for the Grafana HTTP API data plane (``DataPlane``).
    """

    def __init__(self, model: ServiceModel, region: str, account_id: str, config: dict):
        self.model = model
        self.region = region
        self.account_id = account_id
        self.lock = threading.RLock()
        # The access key id of the control-plane call being served (from its SigV4 scope): a
        # workspace remembers its creator's, so that its account's AMP workspaces are found.
        self.caller = threading.local()
        # The IAM/STS backend (moto) that maps a caller's access key id to its account; None
        # (the emulator alone) puts every caller in ``account_id``.
        self.sts_url: str | None = None
        self._key_accounts: dict[str, str] = {}
        self.initial_config = dict(config)
        self.config = dict(config)
        self._reset_state()

    # ---- state management ------------------------------------------------------------------
    def _reset_state(self):
        self.workspaces: dict[str, dict] = {}
        self.client_tokens: dict[str, tuple[str, str]] = {}
        self.token_index: dict[str, tuple[str, str, str]] = {}  # sha256(key) -> (ws, sa, token)
        self.request_log: list[dict] = []
        self.request_seq = 0

    def reset(self):
        with self.lock:
            self._reset_state()
            self.config = dict(self.initial_config)

    def update_config(self, patch: dict) -> dict:
        with self.lock:
            errors = []
            for key, value in patch.items():
                if key in ("activeDelaySeconds", "deleteDelaySeconds"):
                    if value is None and key == "deleteDelaySeconds":
                        self.config[key] = None
                    elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                        errors.append(f"{key} must be a number >= 0")
                    else:
                        self.config[key] = value
                elif key == "maxWorkspaces":
                    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                        errors.append("maxWorkspaces must be an integer >= 0")
                    else:
                        self.config[key] = value
                elif key == "unknownSsoIdPrefix":
                    if not isinstance(value, str):
                        errors.append("unknownSsoIdPrefix must be a string")
                    else:
                        self.config[key] = value
                elif key == "grafanaVersions":
                    if (not isinstance(value, list) or not value
                            or not all(isinstance(v, str) and v for v in value)):
                        errors.append("grafanaVersions must be a non-empty list of strings")
                    else:
                        self.config[key] = sorted(value, key=version_key)
                elif key == "validateSsoIds":
                    if not isinstance(value, bool):
                        errors.append("validateSsoIds must be a boolean")
                    else:
                        self.config[key] = value
                else:
                    errors.append(f"unknown config key {key!r}")
            if errors:
                raise ValueError("; ".join(errors))
            return dict(self.config)

    def log_request(self, entry: dict):
        with self.lock:
            self.request_seq += 1
            entry = dict(entry, seq=self.request_seq, time=now())
            self.request_log.append(entry)
            if len(self.request_log) > 10000:
                del self.request_log[: len(self.request_log) - 10000]

    def _delay(self, kind: str) -> float:
        if kind == "delete" and self.config.get("deleteDelaySeconds") is not None:
            return float(self.config["deleteDelaySeconds"])
        return float(self.config.get("activeDelaySeconds") or 0)

    def _tick(self, ws_id: str):
        ws = self.workspaces.get(ws_id)
        if ws is None:
            return None
        at = ws.get("_transitionAt")
        if at is not None and time.time() >= at:
            if ws["status"] == "DELETING":
                self._forget_workspace(ws_id)
                return None
            ws["status"] = ws.pop("_nextStatus", "ACTIVE")
            ws["_transitionAt"] = None
        return ws

    def _tick_all(self):
        for ws_id in list(self.workspaces):
            self._tick(ws_id)

    def _forget_workspace(self, ws_id: str):
        self.workspaces.pop(ws_id, None)
        for h, (w, _, _) in list(self.token_index.items()):
            if w == ws_id:
                del self.token_index[h]

    def _transition(self, ws: dict, status: str, kind: str, next_status: str | None):
        ws["status"] = status
        ws["_transitionAt"] = time.time() + self._delay(kind)
        if next_status is not None:
            ws["_nextStatus"] = next_status
        else:
            ws.pop("_nextStatus", None)

    def _caller_region(self) -> str:
        """The region of the control-plane call being served (its SigV4 scope), else ours."""
        return getattr(self.caller, "region", None) or self.region

    def _caller_account(self) -> str:
        """The account of the control-plane call being served: its access key id resolved by
        STS GetCallerIdentity at the backend (moto maps an assumed role's keys to the role's
        account), else ours. Workspaces are per account, as in AWS: another account's are
        neither listed nor found."""
        key = getattr(self.caller, "access_key", None)
        if not key or not self.sts_url:
            return self.account_id
        if key in self._key_accounts:
            return self._key_accounts[key]
        req = urllib.request.Request(
            self.sts_url.rstrip("/") + "/",
            data=urlencode({"Action": "GetCallerIdentity", "Version": "2011-06-15"}).encode(),
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded",
                     "Authorization": backend_authorization(key, self._caller_region(), "sts")})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                text = resp.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return self.account_id
        m = re.search(r"<Account>(\d{12})</Account>", text)
        if not m:
            return self.account_id
        self._key_accounts[key] = m.group(1)
        return m.group(1)

    def _account_of(self, ws_id: str) -> str:
        """A workspace lives in the account of the call that created it."""
        return (self.workspaces.get(ws_id) or {}).get("_account") or self.account_id

    def _region_of(self, ws_id: str) -> str:
        """A workspace lives in the region of the call that created it (as in AWS)."""
        return (self.workspaces.get(ws_id) or {}).get("_region") or self.region

    def _get_ws(self, ws_id: str) -> dict:
        ws = self._tick(ws_id)
        if ws is not None and (self._region_of(ws_id) != self._caller_region()
                               or self._account_of(ws_id) != self._caller_account()):
            ws = None  # another region's (account's) workspace is not found from here
        if ws is None:
            raise not_found(f"Workspace {ws_id} not found.", ws_id, RESOURCE_WORKSPACE)
        return ws

    def _arn(self, ws_id: str) -> str:
        return f"arn:aws:{SERVICE_NAME}:{self._region_of(ws_id)}:{self._account_of(ws_id)}:/workspaces/{ws_id}"

    def _endpoint(self, ws_id: str) -> str:
        return f"{ws_id}.grafana-workspace.{self._region_of(ws_id)}.amazonaws.com"

    def versions(self) -> list[str]:
        return list(self.config.get("grafanaVersions") or DEFAULT_GRAFANA_VERSIONS)

    # ---- renderers -------------------------------------------------------------------------
    @staticmethod
    def _auth_summary(ws: dict) -> dict:
        out = {"providers": list(ws["authenticationProviders"])}
        if "SAML" in ws["authenticationProviders"]:
            out["samlConfigurationStatus"] = "NOT_CONFIGURED"
        return out

    def _describe(self, ws: dict) -> dict:
        return {
            "accountAccessType": ws["accountAccessType"],
            "authentication": self._auth_summary(ws),
            "created": ws["created"],
            "dataSources": list(ws["dataSources"]),
            "description": ws.get("description"),
            "endpoint": self._endpoint(ws["id"]),
            "freeTrialConsumed": False,
            "grafanaVersion": ws["grafanaVersion"],
            "id": ws["id"],
            "ipAddressType": ws.get("ipAddressType"),
            "kmsKeyId": ws.get("kmsKeyId"),
            "modified": ws["modified"],
            "name": ws.get("name"),
            "networkAccessControl": ws.get("networkAccessControl"),
            "notificationDestinations": ws.get("notificationDestinations"),
            "organizationRoleName": ws.get("organizationRoleName"),
            "organizationalUnits": ws.get("organizationalUnits"),
            "permissionType": ws["permissionType"],
            "stackSetName": ws.get("stackSetName"),
            "status": ws["status"],
            "tags": dict(ws["tags"]) if ws["tags"] else None,
            "vpcConfiguration": ws.get("vpcConfiguration"),
            "workspaceRoleArn": ws.get("workspaceRoleArn"),
        }

    def _summary(self, ws: dict) -> dict:
        return {
            "authentication": self._auth_summary(ws),
            "created": ws["created"],
            "description": ws.get("description"),
            "endpoint": self._endpoint(ws["id"]),
            "grafanaVersion": ws["grafanaVersion"],
            "id": ws["id"],
            "modified": ws["modified"],
            "name": ws.get("name"),
            "notificationDestinations": ws.get("notificationDestinations"),
            "status": ws["status"],
            "tags": dict(ws["tags"]) if ws["tags"] else None,
        }

    # ---- shared semantic checks ------------------------------------------------------------
    def _check_role_arn(self, p: dict):
        arn = p.get("workspaceRoleArn")
        if arn is not None and not ROLE_ARN_RE.match(arn):
            raise simple_validation(
                "workspaceRoleArn", "The provided workspaceRoleArn is not a valid IAM role ARN."
            )
        if p.get("permissionType") == "CUSTOMER_MANAGED" and not arn:
            raise simple_validation(
                "workspaceRoleArn",
                "When the permissionType is CUSTOMER_MANAGED a Workspace Role ARN should be provided.",
            )

    def _check_org_access(self, access_type, ous):
        if access_type == "ORGANIZATION" and not ous:
            raise simple_validation(
                "workspaceOrganizationalUnits",
                "When the accountAccessType is ORGANIZATION, workspaceOrganizationalUnits must be "
                "provided.",
            )

    @staticmethod
    def _check_tags(tags: dict):
        for k in tags:
            if k.lower().startswith("aws:"):
                raise simple_validation("tags", f"Tag keys starting with 'aws:' are reserved: {k}")

    # ---- operations: workspaces ------------------------------------------------------------
    def op_CreateWorkspace(self, p: dict) -> dict:
        token = p.get("clientToken")
        fingerprint = json.dumps(
            {k: v for k, v in p.items() if k != "clientToken"}, sort_keys=True
        )
        account, region = self._caller_account(), self._caller_region()
        # Client tokens are per account (another account's same token is another request).
        token = None if token is None else f"{account}:{token}"
        if token is not None and token in self.client_tokens:
            old_fp, old_id = self.client_tokens[token]
            ws = self._tick(old_id)
            if ws is not None:
                if old_fp == fingerprint:
                    return {"workspace": self._describe(ws)}
                raise conflict(
                    "Duplicate request for workspace: the clientToken was already used with "
                    "different parameters.",
                    old_id,
                    RESOURCE_WORKSPACE,
                )
            del self.client_tokens[token]

        version = p.get("grafanaVersion") or self._default_version()
        if version not in self.versions():
            raise simple_validation(
                "grafanaVersion",
                f"Grafana version {version} is not supported. Supported versions: "
                f"{', '.join(self.versions())}.",
            )
        if not p["authenticationProviders"]:
            raise simple_validation(
                "authenticationProviders", "At least one authentication provider is required."
            )
        self._check_role_arn(p)
        self._check_org_access(p["accountAccessType"], p.get("workspaceOrganizationalUnits"))
        self._check_tags(p.get("tags") or {})
        self._tick_all()
        limit = self.config.get("maxWorkspaces")
        mine = [w for w in self.workspaces.values()
                if (w.get("_account") or self.account_id, w.get("_region") or self.region) == (account, region)]
        if limit is not None and len(mine) >= limit:
            raise ApiError(
                "ServiceQuotaExceededException",
                f"You have reached the maximum number of workspaces ({limit}) in this region.",
                resourceId=account,
                resourceType=RESOURCE_WORKSPACE,
                serviceCode="grafana",
                quotaCode="emulated-workspaces-per-region",
            )

        ws_id = "g-" + secrets.token_hex(5)
        while ws_id in self.workspaces:
            ws_id = "g-" + secrets.token_hex(5)
        t = now()
        ws = {
            "id": ws_id,
            "name": p.get("workspaceName"),
            "description": p.get("workspaceDescription"),
            "accountAccessType": p["accountAccessType"],
            "permissionType": p["permissionType"],
            "authenticationProviders": list(dict.fromkeys(p["authenticationProviders"])),
            "workspaceRoleArn": p.get("workspaceRoleArn"),
            "organizationRoleName": p.get("organizationRoleName"),
            "organizationalUnits": p.get("workspaceOrganizationalUnits"),
            "stackSetName": p.get("stackSetName"),
            "dataSources": list(p.get("workspaceDataSources") or []),
            "notificationDestinations": p.get("workspaceNotificationDestinations"),
            "tags": dict(p.get("tags") or {}),
            "vpcConfiguration": p.get("vpcConfiguration"),
            "networkAccessControl": p.get("networkAccessControl"),
            "ipAddressType": p.get("ipAddressType") or "IPv4",
            "kmsKeyId": p.get("kmsKeyId"),
            "configuration": p.get("configuration"),
            "grafanaVersion": version,
            "created": t,
            "modified": t,
            "status": "CREATING",
            "permissions": {},
            "serviceAccounts": {},
            "_nextServiceAccountId": 2,  # id 1 is Grafana's built-in admin user
            "_nextTokenId": 1,
            "datasources": {},  # Grafana HTTP API data sources by uid
            "_nextDatasourceId": 1,
            "_clientToken": token,
        }
        self._transition(ws, "CREATING", "create", "ACTIVE")
        ws["_creatorAccessKey"] = getattr(self.caller, "access_key", None)
        ws["_region"] = region
        ws["_account"] = account
        self.workspaces[ws_id] = ws
        if token is not None:
            self.client_tokens[token] = (fingerprint, ws_id)
        return {"workspace": self._describe(ws)}

    def _default_version(self) -> str:
        return self.versions()[-1]

    def op_DescribeWorkspace(self, p: dict) -> dict:
        return {"workspace": self._describe(self._get_ws(p["workspaceId"]))}

    def op_ListWorkspaces(self, p: dict) -> dict:
        self._tick_all()
        here = (self._caller_account(), self._caller_region())
        items = sorted((w for w in self.workspaces.values()
                        if (w.get("_account") or self.account_id, w.get("_region") or self.region) == here),
                       key=lambda w: (w["created"], w["id"]))
        page, token = Paginator.page(items, p.get("maxResults"), p.get("nextToken"))
        return {"workspaces": [self._summary(w) for w in page], "nextToken": token}

    def op_DeleteWorkspace(self, p: dict) -> dict:
        ws = self._get_ws(p["workspaceId"])
        if ws["status"] == "DELETING":
            raise conflict(
                f"Workspace {ws['id']} is already being deleted.", ws["id"], RESOURCE_WORKSPACE
            )
        if ws["status"] in TRANSITIONAL_STATUSES:
            # Managed Grafana refuses to delete a workspace that is busy changing state.
            raise conflict(
                f"Workspace {ws['id']} is in {ws['status']} state and cannot be deleted now.",
                ws["id"],
                RESOURCE_WORKSPACE,
            )
        self._transition(ws, "DELETING", "delete", None)
        ws["modified"] = now()
        return {"workspace": self._describe(ws)}

    _UPDATE_FIELDS = {
        "accountAccessType": "accountAccessType",
        "organizationRoleName": "organizationRoleName",
        "permissionType": "permissionType",
        "stackSetName": "stackSetName",
        "workspaceDataSources": "dataSources",
        "workspaceDescription": "description",
        "workspaceName": "name",
        "workspaceNotificationDestinations": "notificationDestinations",
        "workspaceOrganizationalUnits": "organizationalUnits",
        "workspaceRoleArn": "workspaceRoleArn",
        "vpcConfiguration": "vpcConfiguration",
        "networkAccessControl": "networkAccessControl",
        "ipAddressType": "ipAddressType",
    }

    def op_UpdateWorkspace(self, p: dict) -> dict:
        ws = self._get_ws(p["workspaceId"])
        if ws["status"] != "ACTIVE":
            raise conflict(
                f"Workspace {ws['id']} is in {ws['status']} status; it can be updated only when "
                "ACTIVE.",
                ws["id"],
                RESOURCE_WORKSPACE,
            )
        self._check_role_arn(p)
        if p.get("permissionType") == "SERVICE_MANAGED" and ws["permissionType"] == "CUSTOMER_MANAGED":
            raise simple_validation(
                "permissionType",
                "A CUSTOMER_MANAGED workspace cannot be converted to SERVICE_MANAGED through the API.",
            )
        if p.get("removeVpcConfiguration") and p.get("vpcConfiguration"):
            raise simple_validation(
                "vpcConfiguration",
                "vpcConfiguration and removeVpcConfiguration cannot be used together.",
            )
        if p.get("removeNetworkAccessConfiguration") and p.get("networkAccessControl"):
            raise simple_validation(
                "networkAccessControl",
                "networkAccessControl and removeNetworkAccessConfiguration cannot be used together.",
            )
        access = p.get("accountAccessType", ws["accountAccessType"])
        ous = p.get("workspaceOrganizationalUnits", ws.get("organizationalUnits"))
        self._check_org_access(access, ous)
        for src, dst in self._UPDATE_FIELDS.items():
            if src in p:
                ws[dst] = copy.deepcopy(p[src])
        if p.get("removeVpcConfiguration"):
            ws["vpcConfiguration"] = None
        if p.get("removeNetworkAccessConfiguration"):
            ws["networkAccessControl"] = None
        ws["modified"] = now()
        self._transition(ws, "UPDATING", "update", "ACTIVE")
        return {"workspace": self._describe(ws)}

    def op_ListVersions(self, p: dict) -> dict:
        versions = self.versions()
        if p.get("workspaceId"):
            ws = self._get_ws(p["workspaceId"])
            current = version_key(ws["grafanaVersion"])
            versions = [v for v in versions if version_key(v) >= current]
        page, token = Paginator.page(versions, p.get("maxResults"), p.get("nextToken"))
        return {"grafanaVersions": page, "nextToken": token}

    # ---- operations: tags ------------------------------------------------------------------
    def _ws_from_arn(self, arn: str) -> dict:
        m = WORKSPACE_ARN_RE.match(arn)
        if not m or not WORKSPACE_ID_RE.match(m.group(4)):
            raise simple_validation("resourceArn", f"Invalid resource ARN: {arn}")
        _, region, account, ws_id = m.groups()
        ws = self._tick(ws_id) if account == self._account_of(ws_id) == self._caller_account() else None
        if ws is not None and (region != self._region_of(ws_id) or region != self._caller_region()):
            ws = None
        if ws is None:
            raise not_found(f"Resource {arn} not found.", arn, RESOURCE_WORKSPACE)
        return ws

    def op_TagResource(self, p: dict) -> dict:
        ws = self._ws_from_arn(p["resourceArn"])
        self._check_tags(p["tags"])
        merged = dict(ws["tags"])
        merged.update(p["tags"])
        if len(merged) > 50:
            raise simple_validation("tags", "A resource can have at most 50 tags.")
        ws["tags"] = merged
        return {}

    def op_UntagResource(self, p: dict) -> dict:
        ws = self._ws_from_arn(p["resourceArn"])
        for k in p["tagKeys"]:
            ws["tags"].pop(k, None)
        return {}

    def op_ListTagsForResource(self, p: dict) -> dict:
        ws = self._ws_from_arn(p["resourceArn"])
        return {"tags": dict(ws["tags"])}

    # ---- operations: permissions -----------------------------------------------------------
    def op_UpdatePermissions(self, p: dict) -> dict:
        ws = self._get_ws(p["workspaceId"])
        prefix = self.config.get("unknownSsoIdPrefix") or ""
        check_format = self.config.get("validateSsoIds", True)
        errors = []
        for instr in p["updateInstructionBatch"]:
            for user in instr["users"]:
                uid, utype = user["id"], user["type"]
                kind = "user" if utype == "SSO_USER" else "group"
                caused_by = {"action": instr["action"], "role": instr["role"],
                             "users": [{"id": uid, "type": utype}]}
                if prefix and uid.startswith(prefix):
                    errors.append({"code": 404, "causedBy": caused_by,
                                   "message": f"The IAM Identity Center {kind} {uid} was not found."})
                    continue
                if check_format and not SSO_ID_RE.match(uid):
                    errors.append({"code": 400, "causedBy": caused_by,
                                   "message": f"The IAM Identity Center {kind} id {uid} is not valid."})
                    continue
                key = (utype, uid)
                if instr["action"] == "ADD":
                    ws["permissions"][key] = instr["role"]
                elif ws["permissions"].get(key) == instr["role"]:
                    del ws["permissions"][key]
        return {"errors": errors}

    def op_ListPermissions(self, p: dict) -> dict:
        ws = self._get_ws(p["workspaceId"])
        if p.get("userId") and p.get("groupId"):
            raise simple_validation("userId", "Specify only one of userId or groupId.")
        entries = []
        for (utype, uid), role in ws["permissions"].items():
            if p.get("userType") and utype != p["userType"]:
                continue
            if p.get("userId") and (utype != "SSO_USER" or uid != p["userId"]):
                continue
            if p.get("groupId") and (utype != "SSO_GROUP" or uid != p["groupId"]):
                continue
            entries.append({"user": {"id": uid, "type": utype}, "role": role})
        page, token = Paginator.page(entries, p.get("maxResults"), p.get("nextToken"))
        return {"permissions": page, "nextToken": token}

    # ---- operations: service accounts and tokens -------------------------------------------
    def _ws_for_service_accounts(self, ws_id: str) -> dict:
        ws = self._get_ws(ws_id)
        if version_key(ws["grafanaVersion"]) < version_key("9"):
            raise simple_validation(
                "workspaceId",
                "Service accounts are only available for workspaces that are compatible with "
                "Grafana version 9 and above.",
                reason="OTHER",
            )
        if ws["status"] in ("CREATING", "DELETING"):
            raise conflict(
                f"Workspace {ws['id']} is in {ws['status']} status.", ws["id"], RESOURCE_WORKSPACE
            )
        return ws

    def _get_sa(self, ws: dict, sa_id: str) -> dict:
        sa = ws["serviceAccounts"].get(sa_id)
        if sa is None:
            raise not_found(
                f"Service account {sa_id} not found in workspace {ws['id']}.",
                sa_id,
                RESOURCE_SERVICE_ACCOUNT,
            )
        return sa

    def op_CreateWorkspaceServiceAccount(self, p: dict) -> dict:
        ws = self._ws_for_service_accounts(p["workspaceId"])
        for sa in ws["serviceAccounts"].values():
            if sa["name"] == p["name"]:
                raise conflict(
                    f"A service account named {p['name']} already exists in workspace {ws['id']}.",
                    sa["id"],
                    RESOURCE_SERVICE_ACCOUNT,
                )
        sa_id = str(ws["_nextServiceAccountId"])
        ws["_nextServiceAccountId"] += 1
        ws["serviceAccounts"][sa_id] = {
            "id": sa_id,
            "name": p["name"],
            "grafanaRole": p["grafanaRole"],
            "isDisabled": "false",
            "createdAt": now(),
            "tokens": {},
        }
        return {"id": sa_id, "name": p["name"], "grafanaRole": p["grafanaRole"],
                "workspaceId": ws["id"]}

    def op_ListWorkspaceServiceAccounts(self, p: dict) -> dict:
        ws = self._ws_for_service_accounts(p["workspaceId"])
        items = [
            {"id": sa["id"], "name": sa["name"], "isDisabled": sa["isDisabled"],
             "grafanaRole": sa["grafanaRole"]}
            for sa in ws["serviceAccounts"].values()
        ]
        page, token = Paginator.page(items, p.get("maxResults"), p.get("nextToken"))
        return {"serviceAccounts": page, "nextToken": token, "workspaceId": ws["id"]}

    def op_DeleteWorkspaceServiceAccount(self, p: dict) -> dict:
        ws = self._ws_for_service_accounts(p["workspaceId"])
        sa = self._get_sa(ws, p["serviceAccountId"])
        for tok in sa["tokens"].values():
            self.token_index.pop(tok["_keyHash"], None)
        del ws["serviceAccounts"][sa["id"]]
        return {"serviceAccountId": sa["id"], "workspaceId": ws["id"]}

    def op_CreateWorkspaceServiceAccountToken(self, p: dict) -> dict:
        ws = self._ws_for_service_accounts(p["workspaceId"])
        sa = self._get_sa(ws, p["serviceAccountId"])
        for tok in sa["tokens"].values():
            if tok["name"] == p["name"]:
                raise conflict(
                    f"A token named {p['name']} already exists for service account {sa['id']}.",
                    tok["id"],
                    RESOURCE_SERVICE_ACCOUNT_TOKEN,
                )
        secret = "".join(
            secrets.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
            for _ in range(32)
        )
        key = f"glsa_{secret}_{zlib.crc32(('glsa_' + secret).encode()) & 0xFFFFFFFF:08x}"
        key_hash = hashlib.sha256(key.encode()).hexdigest()
        tok_id = str(ws["_nextTokenId"])
        ws["_nextTokenId"] += 1
        created = now()
        sa["tokens"][tok_id] = {
            "id": tok_id,
            "name": p["name"],
            "createdAt": created,
            "expiresAt": round(created + p["secondsToLive"], 3),
            "lastUsedAt": None,
            "_keyHash": key_hash,
        }
        self.token_index[key_hash] = (ws["id"], sa["id"], tok_id)
        return {
            "serviceAccountToken": {"id": tok_id, "name": p["name"], "key": key},
            "serviceAccountId": sa["id"],
            "workspaceId": ws["id"],
        }

    def op_ListWorkspaceServiceAccountTokens(self, p: dict) -> dict:
        ws = self._ws_for_service_accounts(p["workspaceId"])
        sa = self._get_sa(ws, p["serviceAccountId"])
        items = [
            {k: v for k, v in tok.items() if not k.startswith("_") and v is not None}
            for tok in sa["tokens"].values()
        ]
        page, token = Paginator.page(items, p.get("maxResults"), p.get("nextToken"))
        return {"serviceAccountTokens": page, "nextToken": token,
                "serviceAccountId": sa["id"], "workspaceId": ws["id"]}

    def op_DeleteWorkspaceServiceAccountToken(self, p: dict) -> dict:
        ws = self._ws_for_service_accounts(p["workspaceId"])
        sa = self._get_sa(ws, p["serviceAccountId"])
        tok = sa["tokens"].get(p["tokenId"])
        if tok is None:
            raise not_found(
                f"Token {p['tokenId']} not found for service account {sa['id']}.",
                p["tokenId"],
                RESOURCE_SERVICE_ACCOUNT_TOKEN,
            )
        self.token_index.pop(tok["_keyHash"], None)
        del sa["tokens"][tok["id"]]
        return {"tokenId": tok["id"], "serviceAccountId": sa["id"], "workspaceId": ws["id"]}

    # ---- data-plane support ----------------------------------------------------------------
    def authenticate_token(self, workspace_id: str, key: str):
        """Check a Grafana HTTP API bearer key.

        Returns ``(True, info)`` with the service account and token (no secret), or
        ``(False, reason)`` where reason is one of ``invalid``, ``expired``,
        ``workspace-not-found``, ``workspace-not-active``.
        """
        with self.lock:
            ws = self._tick(workspace_id)
            if ws is None:
                return False, "workspace-not-found"
            if ws["status"] not in ("ACTIVE", "UPDATING"):
                return False, "workspace-not-active"
            ref = self.token_index.get(hashlib.sha256(key.encode()).hexdigest())
            if ref is None or ref[0] != workspace_id:
                return False, "invalid"
            sa = ws["serviceAccounts"].get(ref[1])
            tok = sa["tokens"].get(ref[2]) if sa else None
            if tok is None:
                return False, "invalid"
            if time.time() >= tok["expiresAt"]:
                return False, "expired"
            if sa["isDisabled"] == "true":
                return False, "invalid"
            tok["lastUsedAt"] = now()
            return True, {
                "workspaceId": workspace_id,
                "serviceAccountId": sa["id"],
                "serviceAccountName": sa["name"],
                "grafanaRole": sa["grafanaRole"],
                "tokenId": tok["id"],
                "tokenName": tok["name"],
                "expiresAt": tok["expiresAt"],
            }

    # ---- control endpoint views ------------------------------------------------------------
    def state_dump(self) -> dict:
        with self.lock:
            self._tick_all()
            workspaces = []
            for ws in self.workspaces.values():
                d = self.model.shape_output("WorkspaceDescription", self._describe(ws))
                d["arn"] = self._arn(ws["id"])
                d["configuration"] = ws.get("configuration")
                d["clientToken"] = ws.get("_clientToken")
                d["statusTransitionAt"] = ws.get("_transitionAt")
                d["permissions"] = [
                    {"user": {"id": uid, "type": utype}, "role": role}
                    for (utype, uid), role in ws["permissions"].items()
                ]
                d["serviceAccounts"] = [
                    {
                        "id": sa["id"],
                        "name": sa["name"],
                        "grafanaRole": sa["grafanaRole"],
                        "isDisabled": sa["isDisabled"],
                        "createdAt": sa["createdAt"],
                        "tokens": [
                            {
                                "id": t["id"],
                                "name": t["name"],
                                "createdAt": t["createdAt"],
                                "expiresAt": t["expiresAt"],
                                "lastUsedAt": t["lastUsedAt"],
                                "expired": time.time() >= t["expiresAt"],
                            }
                            for t in sa["tokens"].values()
                        ],
                    }
                    for sa in ws["serviceAccounts"].values()
                ]
                d["datasources"] = [
                    {"uid": ds["uid"], "id": ds["id"], "name": ds["name"], "type": ds["type"],
                     "url": ds["url"], "version": ds["version"],
                     "secureJsonFields": sorted(k for k, v in ds["_secure"].items() if v)}
                    for ds in ws["datasources"].values()
                ]
                workspaces.append(d)
            return {
                "region": self.region,
                "accountId": self.account_id,
                "config": dict(self.config),
                "grafanaVersions": self.versions(),
                "workspaces": workspaces,
                "requestCount": len(self.request_log),
            }

    def tokens_view(self, include_expired: bool = False, ws_filter: str | None = None) -> list:
        """Service-account tokens (never the key): live ones, or all with ``expired`` set."""
        with self.lock:
            self._tick_all()
            t_now = time.time()
            out = []
            for ws in self.workspaces.values():
                if ws_filter and ws["id"] != ws_filter:
                    continue
                for sa in ws["serviceAccounts"].values():
                    for tok in sa["tokens"].values():
                        expired = t_now >= tok["expiresAt"]
                        if expired and not include_expired:
                            continue
                        out.append({
                            "workspaceId": ws["id"], "serviceAccountId": sa["id"],
                            "serviceAccountName": sa["name"], "grafanaRole": sa["grafanaRole"],
                            "tokenId": tok["id"], "name": tok["name"],
                            "createdAt": tok["createdAt"], "expiresAt": tok["expiresAt"],
                            "lastUsedAt": tok["lastUsedAt"], "expired": expired,
                        })
            return out

    def call(self, op_name: str, params: dict) -> dict:
        handler = getattr(self, f"op_{op_name}", None)
        if handler is None or op_name not in IMPLEMENTED_OPERATIONS:
            raise ApiError(
                NOT_IMPLEMENTED_CODE,
                f"Operation {op_name} is not implemented by the Amazon Managed Grafana emulator. "
                f"Implemented operations: {', '.join(IMPLEMENTED_OPERATIONS)}.",
                status=NOT_IMPLEMENTED_STATUS,
            )
        with self.lock:
            return handler(params)


# --------------------------------------------------------------------------------------------
# HTTP layer
# --------------------------------------------------------------------------------------------


class DataPlane:
    """The Grafana HTTP API served at the workspace URL (the data plane).

    Requests reach it when the ``Host`` header is ``<id>.grafana-workspace.<region>.amazonaws.com``
    or the path starts with ``/grafana/<id>/``. Implemented, after Grafana 10's HTTP API
    (``pkg/api/datasources.go``): ``/api/health`` (no auth) and the data source API
    (list, get/put/delete by uid, get/delete by name, create, health by uid). Authentication is a
    service-account token of this workspace (``Authorization: Bearer glsa_...``); authorization
    follows Grafana's default RBAC grants (see ``ROLE_ACTIONS``).
    """

    PATH_RE = re.compile(r"^/grafana/(g-[0-9a-f]{10})(/.*)?$")

    #: (method, path regex, operation name as in Grafana's swagger, RBAC action needed)
    ROUTES = [
        ("GET", re.compile(r"^/api/datasources/?$"), "getDataSources", "datasources:read"),
        ("POST", re.compile(r"^/api/datasources/?$"), "addDataSource", "datasources:create"),
        ("GET", re.compile(r"^/api/datasources/uid/(?P<uid>[^/]+)/health/?$"),
         "checkDatasourceHealthWithUID", "datasources:query"),
        ("GET", re.compile(r"^/api/datasources/uid/(?P<uid>[^/]+)/?$"), "getDataSourceByUID",
         "datasources:read"),
        ("PUT", re.compile(r"^/api/datasources/uid/(?P<uid>[^/]+)/?$"), "updateDataSourceByUID",
         "datasources:write"),
        ("DELETE", re.compile(r"^/api/datasources/uid/(?P<uid>[^/]+)/?$"), "deleteDataSourceByUID",
         "datasources:delete"),
        ("GET", re.compile(r"^/api/datasources/name/(?P<name>[^/]+)/?$"), "getDataSourceByName",
         "datasources:read"),
        ("DELETE", re.compile(r"^/api/datasources/name/(?P<name>[^/]+)/?$"),
         "deleteDataSourceByName", "datasources:delete"),
    ]

    #: Grafana's default grants to the basic roles a service account can have: the fixed roles
    #: ``fixed:datasources:reader`` (read) and ``fixed:datasources:writer`` (create, write, delete)
    #: are granted to Admin only; querying (which the health check is) is open to every role.
    ROLE_ACTIONS = {
        "ADMIN": {"datasources:read", "datasources:create", "datasources:write",
                  "datasources:delete", "datasources:query"},
        "EDITOR": {"datasources:query"},
        "VIEWER": {"datasources:query"},
    }

    def __init__(self, service: "GrafanaService", amp_url: str | None = None,
                 prometheus_url: str | None = None):
        self.service = service
        self.amp_url = amp_url.rstrip("/") if amp_url else None
        self.prometheus_url = prometheus_url.rstrip("/") if prometheus_url else None
        # Any region's workspace host; a workspace answers only at its own region's host.
        self.host_re = re.compile(r"^(g-[0-9a-f]{10})\.grafana-workspace\.([a-z0-9-]+)\.amazonaws\.com$")

    def route(self, host: str, raw_path: str):
        host = (host or "").split(":")[0].lower()
        m = self.host_re.match(host)
        if m:
            if self.service.workspaces.get(m.group(1)) and self.service._region_of(m.group(1)) != m.group(2):
                return None
            return m.group(1), raw_path or "/"
        m = self.PATH_RE.match(raw_path)
        if m:
            return m.group(1), m.group(2) or "/"
        return None

    # ---- entry point ---------------------------------------------------------------------------
    def handle(self, method: str, ws_id: str, sub_path: str, headers, query, body):
        """Return ``(status, json_obj, log_fields)``; log_fields never hold a secret."""
        log: dict = {"auth": None}
        if sub_path.rstrip("/") == "/api/health" and method in ("GET", "HEAD"):
            log["operation"] = "getHealth"
            with self.service.lock:
                ws = self.service._tick(ws_id)
                version = ws["grafanaVersion"] if ws else None
            if version is None:
                return 404, {"message": "Not found"}, log
            return 200, {"commit": "emulated", "database": "ok", "version": version}, log
        op = None
        params: dict = {}
        for r_method, rx, name, action in self.ROUTES:
            m = rx.match(sub_path)
            if m and r_method == method:
                op = (name, action)
                params = {k: unquote(v) for k, v in m.groupdict().items()}
                break
        if op is None:
            return 404, {"message": "Not found"}, log
        log["operation"] = op[0]
        if "uid" in params:
            log["uid"] = params["uid"]
        auth = headers.get("Authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            log["auth"] = "missing"
            return 401, {"message": "Unauthorized"}, log
        ok, info = self.service.authenticate_token(ws_id, auth[7:].strip())
        if not ok:
            log["auth"] = info
            if info == "workspace-not-found":
                return 404, {"message": "Not found"}, log
            if info == "workspace-not-active":
                return 503, {"message": "Workspace is not active"}, log
            if info == "expired":
                return 401, {"message": "Expired API key", "messageId": "api-key.expired",
                             "statusCode": 401, "traceID": ""}, log
            return 401, {"message": "Invalid API key", "messageId": "api-key.invalid",
                         "statusCode": 401, "traceID": ""}, log
        log.update(auth="ok", grafanaRole=info["grafanaRole"],
                   serviceAccountId=info["serviceAccountId"], tokenId=info["tokenId"])
        if op[1] not in self.ROLE_ACTIONS.get(info["grafanaRole"], set()):
            log["auth"] = "forbidden"
            return 403, {
                "accessErrorId": "ACE" + "".join(secrets.choice("0123456789") for _ in range(10)),
                "message": "You'll need additional permissions to perform this action. "
                           f"Permissions needed: {op[1]}",
                "title": "Access denied",
            }, log
        handler = getattr(self, "op_" + op[0])
        status, obj = handler(ws_id, params, query, body)
        if op[0] == "checkDatasourceHealthWithUID" and isinstance(obj, dict) and "status" in obj:
            log["health"] = obj["status"]
        return status, obj, log

    # ---- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _json_body(body: bytes):
        try:
            doc = json.loads(body.decode("utf-8")) if body.strip() else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
        return doc if isinstance(doc, dict) else None

    @staticmethod
    def _type_info(ds_type: str, version: str) -> tuple[str, str, bool]:
        """(typeName, typeLogoUrl, installed) of a data source type in a workspace version."""
        if ds_type == CORE_PROMETHEUS_TYPE:
            return ("Prometheus", "public/app/plugins/datasource/prometheus/img/prometheus_logo.svg",
                    True)
        if ds_type == AMP_PLUGIN_TYPE and amp_plugin_required(version):
            return ("Amazon Managed Service for Prometheus",
                    f"public/plugins/{AMP_PLUGIN_TYPE}/img/logo.svg", True)
        return ds_type, "public/img/icn-datasource.svg", False

    def _dto(self, ds: dict, version: str) -> dict:
        """Grafana's ``dtos.DataSource`` (GET by uid/name, and inside create/update answers)."""
        _, logo, _ = self._type_info(ds["type"], version)
        return {
            "id": ds["id"], "uid": ds["uid"], "orgId": ds["orgId"], "name": ds["name"],
            "type": ds["type"], "typeLogoUrl": logo, "access": ds["access"], "url": ds["url"],
            "user": ds["user"], "database": ds["database"], "basicAuth": ds["basicAuth"],
            "basicAuthUser": ds["basicAuthUser"], "withCredentials": ds["withCredentials"],
            "isDefault": ds["isDefault"], "jsonData": copy.deepcopy(ds["jsonData"]),
            "secureJsonFields": {k: True for k, v in ds["_secure"].items() if v},
            "version": ds["version"], "readOnly": ds["readOnly"],
        }

    def _list_item(self, ds: dict, version: str) -> dict:
        """Grafana's ``dtos.DataSourceListItemDTO`` (GET /api/datasources)."""
        type_name, logo, _ = self._type_info(ds["type"], version)
        return {
            "id": ds["id"], "uid": ds["uid"], "orgId": ds["orgId"], "name": ds["name"],
            "type": ds["type"], "typeName": type_name, "typeLogoUrl": logo,
            "access": ds["access"], "url": ds["url"], "user": ds["user"],
            "database": ds["database"], "basicAuth": ds["basicAuth"],
            "isDefault": ds["isDefault"], "jsonData": copy.deepcopy(ds["jsonData"]),
            "readOnly": ds["readOnly"],
        }

    @staticmethod
    def _parse_command(doc) -> tuple[dict | None, str | None]:
        """Bind an Add/UpdateDataSourceCommand like Grafana's ``web.Bind``: wrong JSON types or
        a missing required member (name, type, access) give "bad request data"."""
        if doc is None:
            return None, "bad request data"
        strings = ("name", "type", "access", "url", "user", "database", "basicAuthUser", "uid")
        bools = ("basicAuth", "withCredentials", "isDefault")
        cmd: dict = {}
        for k in strings:
            v = doc.get(k)
            if v is not None and not isinstance(v, str):
                return None, "bad request data"
            cmd[k] = v or ""
        for k in bools:
            v = doc.get(k)
            if v is not None and not isinstance(v, bool):
                return None, "bad request data"
            cmd[k] = bool(v)
        jd = doc.get("jsonData")
        if jd is not None and not isinstance(jd, dict):
            return None, "bad request data"
        cmd["jsonData"] = copy.deepcopy(jd) if jd is not None else {}
        sjd = doc.get("secureJsonData")
        if sjd is not None and (not isinstance(sjd, dict)
                                or not all(isinstance(v, str) for v in sjd.values())):
            return None, "bad request data"
        cmd["secureJsonData"] = dict(sjd or {})
        ver = doc.get("version")
        if ver is not None and (isinstance(ver, bool) or not isinstance(ver, int)):
            return None, "bad request data"
        cmd["version"] = ver or 0
        if not cmd["name"] or not cmd["type"] or not cmd["access"]:
            return None, "bad request data"
        return cmd, None

    def _command(self, body) -> tuple[dict | None, tuple[int, dict] | None]:
        """The data source command of a request body, or the error response Grafana gives for it
        (bind errors, then the checks shared by add and update)."""
        cmd, err = self._parse_command(self._json_body(body))
        if err:
            return None, (400, {"message": err})
        return cmd, self._check_command(cmd)

    @staticmethod
    def _check_command(cmd: dict) -> tuple[int, dict] | None:
        if len(cmd["name"]) > 190:
            return 400, {"message": "Failed to add datasource: invalid data source name: max "
                                    "length is 190"}
        if cmd["uid"] and not DATASOURCE_UID_RE.match(cmd["uid"]):
            return 400, {"message": "Invalid UID for data source provided"}
        if cmd["url"] and (any(c.isspace() for c in cmd["url"]) or "://" in cmd["url"]
                           and not urlsplit(cmd["url"]).netloc):
            return 400, {"message": "Validation error, invalid URL"}
        return None

    def _ws(self, ws_id: str) -> dict:
        ws = self.service._tick(ws_id)
        if ws is None:  # authenticate_token saw it a moment ago; deleted since
            raise KeyError(ws_id)
        return ws

    @staticmethod
    def _new_uid(existing) -> str:
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        while True:
            uid = secrets.choice("abcdef") + "".join(secrets.choice(alphabet) for _ in range(13))
            if uid not in existing:
                return uid

    @staticmethod
    def _set_default(ws: dict, ds: dict):
        if ds["isDefault"]:
            for other in ws["datasources"].values():
                if other is not ds:
                    other["isDefault"] = False

    # ---- operations ----------------------------------------------------------------------------
    def op_getDataSources(self, ws_id, params, query, body):
        with self.service.lock:
            ws = self._ws(ws_id)
            items = [self._list_item(ds, ws["grafanaVersion"]) for ds in ws["datasources"].values()]
        items.sort(key=lambda d: d["name"].lower())
        return 200, items

    def _find(self, ws: dict, params: dict):
        if "uid" in params:
            return ws["datasources"].get(params["uid"])
        return next((d for d in ws["datasources"].values() if d["name"] == params["name"]), None)

    def op_getDataSourceByUID(self, ws_id, params, query, body):
        with self.service.lock:
            ws = self._ws(ws_id)
            ds = self._find(ws, params)
            if ds is None:
                return 404, {"message": "Data source not found"}
            return 200, self._dto(ds, ws["grafanaVersion"])

    op_getDataSourceByName = op_getDataSourceByUID

    def op_addDataSource(self, ws_id, params, query, body):
        cmd, bad = self._command(body)
        if bad:
            return bad
        with self.service.lock:
            ws = self._ws(ws_id)
            dss = ws["datasources"]
            if any(d["name"] == cmd["name"] for d in dss.values()):
                return 409, {"message": "data source with the same name already exists"}
            if cmd["uid"] and cmd["uid"] in dss:
                return 409, {"message": "data source with the same uid already exists"}
            ds_id = ws["_nextDatasourceId"]
            ws["_nextDatasourceId"] += 1
            uid = cmd["uid"] or self._new_uid(dss)
            t = now()
            ds = {
                "id": ds_id, "uid": uid, "orgId": 1, "name": cmd["name"], "type": cmd["type"],
                "access": cmd["access"], "url": cmd["url"], "user": cmd["user"],
                "database": cmd["database"], "basicAuth": cmd["basicAuth"],
                "basicAuthUser": cmd["basicAuthUser"], "withCredentials": cmd["withCredentials"],
                "isDefault": cmd["isDefault"], "jsonData": cmd["jsonData"], "version": 1,
                "readOnly": False, "created": t, "updated": t,
                "_secure": dict(cmd["secureJsonData"]),
            }
            dss[uid] = ds
            self._set_default(ws, ds)
            return 200, {"datasource": self._dto(ds, ws["grafanaVersion"]), "id": ds_id,
                         "message": "Datasource added", "name": ds["name"]}

    def op_updateDataSourceByUID(self, ws_id, params, query, body):
        cmd, bad = self._command(body)
        if bad:
            return bad
        with self.service.lock:
            ws = self._ws(ws_id)
            dss = ws["datasources"]
            ds = dss.get(params["uid"])
            if ds is None:
                return 404, {"message": "Data source not found"}
            if ds["readOnly"]:
                return 403, {"message": "Cannot update read-only data source"}
            if any(d["name"] == cmd["name"] and d is not ds for d in dss.values()):
                return 409, {"message": "Failed to update datasource: data source with the same "
                                        "name already exists"}
            if cmd["version"] and cmd["version"] < ds["version"]:
                return 409, {"message": "Datasource has already been updated by someone else. "
                                        "Please reload and try again"}
            new_uid = cmd["uid"] or ds["uid"]
            if new_uid != ds["uid"] and new_uid in dss:
                return 409, {"message": "data source with the same uid already exists"}
            for k in ("name", "type", "access", "url", "user", "database", "basicAuth",
                      "basicAuthUser", "withCredentials", "isDefault", "jsonData"):
                ds[k] = cmd[k]
            # Secrets not named in the update keep their stored value (fillWithSecureJSONData).
            ds["_secure"].update(cmd["secureJsonData"])
            ds["version"] = max(ds["version"], cmd["version"]) + 1
            ds["updated"] = now()
            if new_uid != ds["uid"]:
                del dss[ds["uid"]]
                ds["uid"] = new_uid
                dss[new_uid] = ds
            self._set_default(ws, ds)
            return 200, {"datasource": self._dto(ds, ws["grafanaVersion"]), "id": ds["id"],
                         "message": "Datasource updated", "name": ds["name"]}

    def op_deleteDataSourceByUID(self, ws_id, params, query, body):
        with self.service.lock:
            ws = self._ws(ws_id)
            ds = self._find(ws, params)
            if ds is None:
                return 404, {"message": "Data source not found"}
            if ds["readOnly"]:
                return 403, {"message": "Cannot delete read-only data source"}
            del ws["datasources"][ds["uid"]]
            return 200, {"message": "Data source deleted", "id": ds["id"]}

    op_deleteDataSourceByName = op_deleteDataSourceByUID

    # ---- health ----------------------------------------------------------------------------------
    def op_checkDatasourceHealthWithUID(self, ws_id, params, query, body):
        uid = params["uid"]
        if not DATASOURCE_UID_RE.match(uid):
            return 400, {"message": "UID is invalid"}
        with self.service.lock:
            ws = self._ws(ws_id)
            ds = ws["datasources"].get(uid)
            if ds is None:
                # Grafana loads the data source through its cache and answers a generic 500.
                return 500, {"message": "Unable to load datasource metadata"}
            ds = copy.deepcopy(ds)
            version = ws["grafanaVersion"]
            role_arn = ws.get("workspaceRoleArn")
            creator = ws.get("_creatorAccessKey")
            region = ws.get("_region") or self.service.region
        return self.check_health(ds, version, role_arn, creator, region, ws_id)

    def check_health(self, ds: dict, version: str, role_arn: str | None, creator: str | None = None,
                     region: str | None = None, ws_id: str | None = None):
        """Grafana's health check of a Prometheus data source pointed at AMP.

        Runs outside the service lock (it may call the AMP and Prometheus backends).
        """
        ds_type = ds["type"]
        if ds_type not in (CORE_PROMETHEUS_TYPE, AMP_PLUGIN_TYPE):
            return 501, {"message": f"emulator: health checks are emulated only for the "
                                    f"{CORE_PROMETHEUS_TYPE} and {AMP_PLUGIN_TYPE} types, "
                                    f"not {ds_type!r}"}
        _, _, installed = self._type_info(ds_type, version)
        if not installed:
            # The plugin is not installed: Grafana cannot build a plugin context.
            return 500, {"message": "Unable to get plugin context",
                         "error": f"plugin {ds_type} not found: it is not installed in Grafana "
                                  f"{version} workspaces of this emulator (from Grafana "
                                  f"{PLUGIN_SIGV4_MIN_MAJOR} on; use type {CORE_PROMETHEUS_TYPE} "
                                  f"with jsonData.sigV4Auth before)"}

        def error(reason: str):
            return 400, {"status": "ERROR", "message": f"{reason} - {PROM_HEALTH_ERROR}"}

        jd = ds.get("jsonData") or {}
        url = ds.get("url") or ""
        if ds_type == CORE_PROMETHEUS_TYPE and amp_plugin_required(version) and jd.get("sigV4Auth"):
            return error(f"SigV4 authentication is no longer available on the core Prometheus data "
                         f"source in Grafana {version}: use the {AMP_PLUGIN_TYPE} type")
        if ds.get("access") != "proxy":
            return error(f"access {ds.get('access')!r} is not supported: the Prometheus data source "
                         f"queries from the Grafana server only (access \"proxy\", \"Server\")")
        m = AMP_URL_RE.match(url)
        if not m:
            return error(f"Post \"{url}\": url is not an Amazon Managed Service for Prometheus "
                         f"workspace endpoint (https://aps-workspaces.<region>.amazonaws.com/"
                         f"workspaces/<workspace id>/)")
        url_region, amp_ws_id = m.group(1), m.group(2)
        query_url = url.rstrip("/") + "/api/v1/query"
        region = region or self.service.region
        if url_region != region:
            return error(f"Post \"{query_url}\": dial tcp: lookup: the emulator reaches AMP only in "
                         f"the workspace's region {region}, not {url_region}")
        if jd.get("sigV4Auth") is not True:
            return error(f"Post \"{query_url}\": 403 Forbidden: Missing Authentication Token "
                         f"(jsonData.sigV4Auth is not true, so the request is not signed)")
        auth_type = jd.get("sigV4AuthType")
        if not auth_type:
            return error(f"jsonData.sigV4AuthType is not set: the AWS SDK default credential "
                         f"chain is not allowed in a workspace (the workspace IAM role is "
                         f"\"{SIGV4_WORKSPACE_ROLE}\")")
        if auth_type not in SIGV4_AUTH_TYPES:
            return error(f"invalid sigV4AuthType {auth_type!r}: not one of "
                         f"{', '.join(SIGV4_AUTH_TYPES)} (the workspace IAM role is "
                         f"\"{SIGV4_WORKSPACE_ROLE}\")")
        if auth_type != SIGV4_WORKSPACE_ROLE:
            return error(f"attempting to use an auth type that is not allowed: {auth_type!r} (the "
                         f"emulator models only the workspace IAM role, \"{SIGV4_WORKSPACE_ROLE}\")")
        sig_region = jd.get("sigV4Region")
        if not sig_region:
            return error(f"Post \"{query_url}\": jsonData.sigV4Region is not set: cannot sign the "
                         f"request")
        if sig_region != url_region:
            return error(f"Post \"{query_url}\": 403 Forbidden: Credential should be scoped to a "
                         f"valid region (jsonData.sigV4Region is {sig_region!r}, the workspace is "
                         f"in {url_region!r})")
        if not role_arn:
            return error("failed to retrieve credentials: the Grafana workspace has no IAM role "
                         "(workspaceRoleArn), so ec2_iam_role has no credentials to sign with")
        if self.amp_url:
            if (self.service.config.get("iamPropagationSeconds") or 0) > 0:
                problem = self._role_problem(role_arn, creator, region, ws_id)
                if problem:
                    return error(f"failed to assume the workspace IAM role: {problem}")
            problem = self._amp_workspace_problem(amp_ws_id, creator, region)
            if problem:
                return error(f"Post \"{query_url}\": {problem}")
        if self.prometheus_url:
            problem = self._prometheus_problem((jd.get("httpMethod") or "POST").upper())
            if problem:
                return error(f"Post \"{query_url}\": {problem}")
        return 200, {"status": "OK", "message": PROM_HEALTH_OK}

    def _role_problem(self, role_arn: str, creator: str | None, region: str,
                      ws_id: str | None) -> str | None:
        """None when Grafana may assume the workspace role, else STS's refusal: the role must
        exist (read from moto's IAM as the workspace's creator), be older than IAM's propagation
        delay (``--iam-propagation-seconds``), and trust ``grafana.amazonaws.com`` with
        sts:AssumeRole under conditions that hold for this workspace (aws:SourceAccount,
        aws:SourceArn)."""
        denied = (f"AccessDenied: grafana.amazonaws.com is not authorized to perform: "
                  f"sts:AssumeRole on resource: {role_arn}")
        m = re.fullmatch(r"arn:aws[a-z-]*:iam::(\d{12}):role/(?:.*/)?([^/]+)", role_arn)
        if not m:
            return denied
        account, name = m.group(1), m.group(2)
        req = urllib.request.Request(
            self.amp_url + "/", data=urlencode({"Action": "GetRole", "RoleName": name,
                                                "Version": "2010-05-08"}).encode(), method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded",
                     "Authorization": backend_authorization(creator, region or self.service.region, "iam")})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                text = resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError:
            return denied
        except OSError as exc:
            return f"IAM backend {self.amp_url} unreachable: {exc}"
        created = re.search(r"<CreateDate>([^<]+)</CreateDate>", text)
        doc = re.search(r"<AssumeRolePolicyDocument>([^<]*)</AssumeRolePolicyDocument>", text)
        delay = self.service.config.get("iamPropagationSeconds") or 0
        if iam_policy.created_less_than(created.group(1) if created else None, delay) is not None:
            return denied
        try:
            trust = iam_policy.document(html.unescape(doc.group(1))) if doc else {}
        except ValueError:
            return denied
        ws_arn = f"arn:aws:grafana:{region or self.service.region}:{account}:/workspaces/{ws_id or '*'}"
        if not grafana_may_assume(trust, account, ws_arn):
            return denied
        return None

    def _amp_workspace_problem(self, amp_ws_id: str, creator: str | None = None,
                               region: str | None = None) -> str | None:
        """None when the AMP workspace exists and is usable, else what is wrong. Looked up as the
        Grafana workspace's creator (moto maps an access key id to its account), so a workspace
        made in another account (AssumeRole) sees that account's AMP workspaces, as in AWS."""
        req = urllib.request.Request(
            f"{self.amp_url}/workspaces/{quote(amp_ws_id, safe='')}",
            headers={"Authorization": backend_authorization(creator, region or self.service.region, "aps")},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                doc = json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return (f"404 Not Found: workspace {amp_ws_id} does not exist in Amazon Managed "
                        f"Service for Prometheus")
            return f"{exc.code} {exc.reason}: AMP DescribeWorkspace failed"
        except (OSError, ValueError) as exc:
            return f"AMP backend {self.amp_url} unreachable: {exc}"
        status = ((doc.get("workspace") or {}).get("status") or {}).get("statusCode")
        if status not in ("ACTIVE", "UPDATING"):
            return f"workspace {amp_ws_id} is {status or 'in an unknown status'}, not ACTIVE"
        return None

    def _prometheus_problem(self, http_method: str) -> str | None:
        """Run Grafana's health query (instant ``1+1``) against the Prometheus backend."""
        form = "query=1%2B1&time=4"
        if http_method == "GET":
            req = urllib.request.Request(f"{self.prometheus_url}/api/v1/query?{form}")
        else:
            req = urllib.request.Request(
                f"{self.prometheus_url}/api/v1/query", data=form.encode(), method="POST",
                headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                doc = json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return f"{exc.code} {exc.reason} from the Prometheus API"
        except (OSError, ValueError) as exc:
            return f"Prometheus backend {self.prometheus_url} unreachable: {exc}"
        if doc.get("status") != "success":
            return f"Prometheus API error: {doc.get('error') or doc}"
        return None

    # ---- control-endpoint views ----------------------------------------------------------------
    def dump(self, ws_filter: str | None = None) -> list:
        with self.service.lock:
            self.service._tick_all()
            out = []
            for ws in self.service.workspaces.values():
                if ws_filter and ws["id"] != ws_filter:
                    continue
                for ds in ws["datasources"].values():
                    d = self._dto(ds, ws["grafanaVersion"])
                    d["workspaceId"] = ws["id"]
                    d["created"] = ds["created"]
                    d["updated"] = ds["updated"]
                    out.append(d)
            return out


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, service: GrafanaService, verbose: bool = False,
                 amp_url: str | None = None, prometheus_url: str | None = None):
        super().__init__(addr, Handler)
        self.service = service
        self.model = service.model
        self.data_plane = DataPlane(service, amp_url=amp_url, prometheus_url=prometheus_url)
        self.verbose = verbose


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GrafanaEmulator/1.0"
    server: EmulatorServer

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("grafana-emulator: " + (fmt % args) + "\n")

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def do_PUT(self):
        self._handle()

    def do_DELETE(self):
        self._handle()

    def do_PATCH(self):
        self._handle()

    def do_HEAD(self):
        self._handle()

    # ---- I/O helpers -----------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                line = self.rfile.readline().strip()
                size = int(line.split(b";")[0] or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, status: int, obj, headers: dict | None = None):
        data = b"" if obj is None else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error_response(self, err: ApiError, request_id: str):
        """(status, body, headers) of an AWS rest-json error."""
        status = err.status or self.server.model.error_status(err.code)
        body = {"message": err.message}
        body.update(err.fields)
        return status, body, {"x-amzn-ErrorType": err.code, "x-amzn-RequestId": request_id}

    # ---- dispatch --------------------------------------------------------------------------
    def _handle(self):
        try:
            body = self._read_body()
            split = urlsplit(self.path)
            raw_path = split.path or "/"
            query = parse_qs(split.query, keep_blank_values=True)
            if raw_path == "/_emulator" or raw_path.startswith("/_emulator/"):
                self._control(raw_path, query, body)
                return
            dp = self.server.data_plane.route(self.headers.get("Host", ""), raw_path)
            if dp is not None:
                status, obj, fields = self.server.data_plane.handle(
                    self.command, dp[0], dp[1], self.headers, query, body
                )
                entry = {"plane": "grafana", "operation": None, "workspaceId": dp[0],
                         "method": self.command, "path": dp[1], "query": split.query}
                entry.update(fields)
                entry["status"] = status
                # Log before answering, like the AWS plane. Never the token or a body.
                self.server.service.log_request(entry)
                self._send(status, obj)
                return
            self._aws(raw_path, split.query, query, body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # never crash the server thread
            traceback.print_exc()
            try:
                self._send(500, {"message": f"Internal emulator error: {exc!r}"},
                           {"x-amzn-ErrorType": "InternalServerException"})
            except Exception:
                pass

    def _aws(self, raw_path: str, raw_query: str, query: dict, body: bytes):
        service = self.server.service
        model = self.server.model
        request_id = str(uuid.uuid4())
        route, labels = model.match(self.command, raw_path, query)
        op_name = route.name if route else None
        entry = {"plane": "aws", "operation": op_name, "method": self.command,
                 "path": raw_path, "query": raw_query}
        try:
            if route is None:
                raise ApiError(
                    "UnknownOperationException",
                    f"No Amazon Managed Grafana operation matches {self.command} {raw_path}.",
                    status=404,
                )
            has_auth = bool(self.headers.get("Authorization")) or "X-Amz-Signature" in query
            if not has_auth:
                raise ApiError("AccessDeniedException", "Missing Authentication Token")
            if op_name not in IMPLEMENTED_OPERATIONS:
                service.call(op_name, {})  # raises NotImplementedException
            auth_header = self.headers.get("Authorization") or ""
            key = re.search(r"Credential=([^/,\s]+)/", auth_header) or re.search(
                r"X-Amz-Credential=([^%/&]+)", raw_query or "")
            service.caller.access_key = key.group(1) if key else None
            scope = re.search(r"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/", auth_header) or re.search(
                r"X-Amz-Credential=[^%/&]+(?:/|%2F)\d{8}(?:/|%2F)([a-z0-9-]+)(?:/|%2F)", raw_query or "")
            service.caller.region = scope.group(1) if scope else None
            params = model.parse_request(op_name, labels, query, self.headers, body)
            model.validate_input(op_name, params)
            entry["params"] = params  # this model has no secret inputs
            result = service.call(op_name, params)
            op = model.operations[op_name]
            out = {}
            if "output" in op:
                out_shape = op["output"]["shape"]
                out = model.shape_output(out_shape, result)
                problems = model.validate(out_shape, out)
                if problems:
                    raise ApiError(
                        "InternalServerException",
                        "Emulator produced an invalid response: "
                        + "; ".join(p[2] for p in problems),
                    )
            response = (route.response_code, out, {"x-amzn-RequestId": request_id})
        except ApiError as err:
            response = self._error_response(err, request_id)
            entry["errorCode"] = err.code
        entry["status"] = response[0]
        # Log before answering, so a client that reads the log right after its call sees it.
        service.log_request(entry)
        self._send(*response)

    # ---- control endpoints -----------------------------------------------------------------
    def _control(self, raw_path: str, query: dict, body: bytes):
        service = self.server.service
        path = raw_path.rstrip("/")
        method = self.command
        if path == "/_emulator/health" and method in ("GET", "HEAD"):
            self._send(200, {"status": "ok", "service": SERVICE_NAME,
                             "region": service.region, "accountId": service.account_id})
        elif path == "/_emulator/state" and method == "GET":
            self._send(200, service.state_dump())
        elif path == "/_emulator/config" and method == "GET":
            with service.lock:
                self._send(200, dict(service.config))
        elif path == "/_emulator/config" and method == "POST":
            try:
                patch = json.loads(body or b"{}")
                if not isinstance(patch, dict):
                    raise ValueError("config body must be a JSON object")
                self._send(200, service.update_config(patch))
            except ValueError as exc:
                self._send(400, {"message": str(exc)})
        elif path == "/_emulator/reset" and method == "POST":
            service.reset()
            self._send(200, {"status": "reset"})
        elif path == "/_emulator/requests" and method == "GET":
            with service.lock:
                items = list(service.request_log)
            for key in ("operation", "plane", "method", "status", "workspaceId", "uid", "auth"):
                if key in query:
                    wanted = set(query[key])
                    items = [e for e in items if str(e.get(key)) in wanted]
            self._send(200, {"requests": items})
        elif path == "/_emulator/requests" and method == "DELETE":
            with service.lock:
                service.request_log.clear()
            self._send(200, {"status": "cleared"})
        elif path == "/_emulator/datasources" and method == "GET":
            ws_filter = (query.get("workspaceId") or [None])[0]
            self._send(200, {"datasources": self.server.data_plane.dump(ws_filter)})
        elif path == "/_emulator/tokens" and method == "GET":
            include = (query.get("all") or ["false"])[0].lower() in ("1", "true", "yes")
            ws_filter = (query.get("workspaceId") or [None])[0]
            self._send(200, {"tokens": service.tokens_view(include, ws_filter)})
        elif path == "/_emulator/routes" and method == "GET":
            model = self.server.model
            routes = sorted((r.describe() for r in model.routes), key=lambda r: r["operation"])
            self._send(200, {"modelPath": model.path,
                             "apiVersion": model.metadata.get("apiVersion"),
                             "routes": routes})
        else:
            self._send(404, {"message": f"Unknown emulator control endpoint {method} {raw_path}"})


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def backend_authorization(access_key: str | None, region: str, service: str) -> str:
    """The Authorization header of a call to the backend (moto) as `access_key` (moto reads the
    key id from the SigV4 scope to pick the account; it does not check the signature)."""
    date = time.strftime("%Y%m%d", time.gmtime())
    return (f"AWS4-HMAC-SHA256 Credential={access_key or 'grafana-emulator'}/{date}/{region}/"
            f"{service}/aws4_request, SignedHeaders=host, Signature=0")


def grafana_may_assume(trust: dict, account: str, ws_arn: str) -> bool:
    """Whether a role trust policy lets Managed Grafana assume the role for the workspace
    ``ws_arn``: an Allow of sts:AssumeRole to the service principal ``grafana.amazonaws.com``
    whose conditions hold when Grafana assumes it, with the confused-deputy keys
    ``aws:SourceAccount`` and ``aws:SourceArn`` (a condition on any other key cannot hold), and no
    Deny that applies (``iam_policy.trust_allows``)."""
    ctx = iam_policy.Context({"aws:SourceAccount": account, "aws:SourceArn": ws_arn})
    return iam_policy.trust_allows(trust, "Service", {"grafana.amazonaws.com"}, ctx)


def build_service(region="us-east-1", account_id="123456789012", active_delay=0.0,
                  model_path=None, versions=None, max_workspaces=5,
                  iam_propagation=0.0) -> GrafanaService:
    path = model_path or find_model_path()
    model = ServiceModel(load_model(path), path)
    config = {
        "activeDelaySeconds": active_delay,
        "iamPropagationSeconds": iam_propagation,
        "deleteDelaySeconds": None,
        "maxWorkspaces": max_workspaces,
        "unknownSsoIdPrefix": "unknown-",
        "validateSsoIds": True,
        "grafanaVersions": sorted(versions or DEFAULT_GRAFANA_VERSIONS, key=version_key),
    }
    return GrafanaService(model, region, account_id, config)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Amazon Managed Grafana control-plane emulator")
    ap.add_argument("--port", type=int, required=True, help="port to listen on (0: any free port)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--active-delay", type=float, default=0.0,
                    help="seconds a workspace stays CREATING/UPDATING/DELETING (default 0)")
    ap.add_argument("--iam-propagation-seconds", type=float, default=0.0,
                    help="IAM's eventual consistency: a workspace role younger than this cannot be "
                         "assumed yet (data source health checks fail with AccessDenied)")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--account-id", default="123456789012")
    ap.add_argument("--max-workspaces", type=int, default=5,
                    help="workspace quota per region (AWS default 5); 0 disables creation")
    ap.add_argument("--versions", default=",".join(DEFAULT_GRAFANA_VERSIONS),
                    help="comma-separated Grafana versions offered by ListVersions")
    ap.add_argument("--model", default=None, help="path of a grafana service-2.json(.gz)")
    ap.add_argument("--amp-url", default=None,
                    help="AMP control plane (moto) URL: data source health checks look up the "
                         "AMP workspace there (GET /workspaces/<id>)")
    ap.add_argument("--prometheus-url", default=None,
                    help="Prometheus URL: data source health checks run Grafana's query "
                         "(1+1) against <url>/api/v1/query")
    ap.add_argument("--verbose", action="store_true", help="log each HTTP request to stderr")
    args = ap.parse_args(argv)
    if args.active_delay < 0:
        ap.error("--active-delay must be >= 0")
    if not re.fullmatch(r"\d{12}", args.account_id):
        ap.error("--account-id must be 12 digits")

    service = build_service(
        region=args.region,
        account_id=args.account_id,
        active_delay=args.active_delay,
        model_path=args.model,
        versions=[v.strip() for v in args.versions.split(",") if v.strip()],
        max_workspaces=args.max_workspaces,
        iam_propagation=args.iam_propagation_seconds,
    )
    service.sts_url = args.amp_url
    server = EmulatorServer((args.host, args.port), service, verbose=args.verbose,
                            amp_url=args.amp_url, prometheus_url=args.prometheus_url)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="grafana-emulator", daemon=True)
    thread.start()
    print(f"READY {server.server_address[1]}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
