#!/usr/bin/env python3
"""Local emulator of the Amazon Managed Grafana control plane (service id ``grafana``).

Routes, request parsing, validation and response shaping are all driven by botocore's own
service model (``botocore/data/grafana/<version>/service-2.json.gz``), so paths, methods,
status codes and field names are the ones every AWS SDK uses.

Usage::

    python emulator.py --port 0 [--host 127.0.0.1] [--active-delay 0] \
        [--region us-east-1] [--account-id 123456789012]

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
import json
import os
import re
import secrets
import signal
import sys
import threading
import time
import traceback
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import botocore

# --------------------------------------------------------------------------------------------
# Static facts
# --------------------------------------------------------------------------------------------

SERVICE_NAME = "grafana"

#: Versions offered by ListVersions (the ones Amazon Managed Grafana offers for new workspaces).
DEFAULT_GRAFANA_VERSIONS = ["8.4", "9.4", "10.4"]

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
    via :meth:`authenticate_token` for the (future) Grafana HTTP API data plane.
    """

    def __init__(self, model: ServiceModel, region: str, account_id: str, config: dict):
        self.model = model
        self.region = region
        self.account_id = account_id
        self.lock = threading.RLock()
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

    def _get_ws(self, ws_id: str) -> dict:
        ws = self._tick(ws_id)
        if ws is None:
            raise not_found(f"Workspace {ws_id} not found.", ws_id, RESOURCE_WORKSPACE)
        return ws

    def _arn(self, ws_id: str) -> str:
        return f"arn:aws:{SERVICE_NAME}:{self.region}:{self.account_id}:/workspaces/{ws_id}"

    def _endpoint(self, ws_id: str) -> str:
        return f"{ws_id}.grafana-workspace.{self.region}.amazonaws.com"

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
        if limit is not None and len(self.workspaces) >= limit:
            raise ApiError(
                "ServiceQuotaExceededException",
                f"You have reached the maximum number of workspaces ({limit}) in this region.",
                resourceId=self.account_id,
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
            "_clientToken": token,
        }
        self._transition(ws, "CREATING", "create", "ACTIVE")
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
        items = sorted(self.workspaces.values(), key=lambda w: (w["created"], w["id"]))
        page, token = Paginator.page(items, p.get("maxResults"), p.get("nextToken"))
        return {"workspaces": [self._summary(w) for w in page], "nextToken": token}

    def op_DeleteWorkspace(self, p: dict) -> dict:
        ws = self._get_ws(p["workspaceId"])
        if ws["status"] == "DELETING":
            raise conflict(
                f"Workspace {ws['id']} is already being deleted.", ws["id"], RESOURCE_WORKSPACE
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
        ws = self._tick(ws_id) if (region == self.region and account == self.account_id) else None
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
                workspaces.append(d)
            return {
                "region": self.region,
                "accountId": self.account_id,
                "config": dict(self.config),
                "grafanaVersions": self.versions(),
                "workspaces": workspaces,
                "requestCount": len(self.request_log),
            }

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
    """Placeholder for the Grafana HTTP API served at the workspace URL.

    Requests reach it when the ``Host`` header is ``<id>.grafana-workspace.<region>.amazonaws.com``
    or the path starts with ``/grafana/<id>/``. Authentication (service-account bearer tokens and
    their expiry) is already enforced; everything past it answers 501 for now.
    """

    PATH_RE = re.compile(r"^/grafana/(g-[0-9a-f]{10})(/.*)?$")

    def __init__(self, service: GrafanaService):
        self.service = service
        self.host_re = re.compile(
            r"^(g-[0-9a-f]{10})\.grafana-workspace\." + re.escape(service.region)
            + r"\.amazonaws\.com$"
        )

    def route(self, host: str, raw_path: str):
        host = (host or "").split(":")[0].lower()
        m = self.host_re.match(host)
        if m:
            return m.group(1), raw_path or "/"
        m = self.PATH_RE.match(raw_path)
        if m:
            return m.group(1), m.group(2) or "/"
        return None

    def handle(self, method: str, ws_id: str, sub_path: str, headers, query, body):
        """Return (status, json_obj)."""
        if sub_path == "/api/health":
            with self.service.lock:
                ws = self.service._tick(ws_id)
            if ws is None:
                return 404, {"message": "Not found"}
            return 200, {"database": "ok", "version": ws["grafanaVersion"]}
        auth = headers.get("Authorization", "")
        if not auth.lower().startswith("bearer "):
            return 401, {"message": "Unauthorized"}
        ok, info = self.service.authenticate_token(ws_id, auth[7:].strip())
        if not ok:
            if info == "workspace-not-found":
                return 404, {"message": "Not found"}
            if info == "expired":
                return 401, {"message": "Expired API key"}
            if info == "workspace-not-active":
                return 503, {"message": "Workspace is not active"}
            return 401, {"message": "Invalid API key"}
        return 501, {
            "message": f"The Grafana HTTP API ({method} {sub_path}) is not emulated yet.",
            "authenticatedAs": info,
        }


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, service: GrafanaService, verbose: bool = False):
        super().__init__(addr, Handler)
        self.service = service
        self.model = service.model
        self.data_plane = DataPlane(service)
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
                status, obj = self.server.data_plane.handle(
                    self.command, dp[0], dp[1], self.headers, query, body
                )
                self.server.service.log_request({
                    "plane": "grafana", "operation": None, "workspaceId": dp[0],
                    "method": self.command, "path": dp[1], "status": status,
                })
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
            for key in ("operation", "plane", "method", "status"):
                if key in query:
                    wanted = set(query[key])
                    items = [e for e in items if str(e.get(key)) in wanted]
            self._send(200, {"requests": items})
        elif path == "/_emulator/requests" and method == "DELETE":
            with service.lock:
                service.request_log.clear()
            self._send(200, {"status": "cleared"})
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


def build_service(region="us-east-1", account_id="123456789012", active_delay=0.0,
                  model_path=None, versions=None, max_workspaces=5) -> GrafanaService:
    path = model_path or find_model_path()
    model = ServiceModel(load_model(path), path)
    config = {
        "activeDelaySeconds": active_delay,
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
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--account-id", default="123456789012")
    ap.add_argument("--max-workspaces", type=int, default=5,
                    help="workspace quota per region (AWS default 5); 0 disables creation")
    ap.add_argument("--versions", default=",".join(DEFAULT_GRAFANA_VERSIONS),
                    help="comma-separated Grafana versions offered by ListVersions")
    ap.add_argument("--model", default=None, help="path of a grafana service-2.json(.gz)")
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
    )
    server = EmulatorServer((args.host, args.port), service, verbose=args.verbose)
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
