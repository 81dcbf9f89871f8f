"""Model checks for the local stack: a request that AWS would refuse is refused here too.

Each AWS API request the router sees is parsed by its protocol (query: IAM, STS; json: SSM, Step
Functions; rest-json: AMP, EKS) and validated against botocore's own service model (required
members, lengths, patterns, enums, ranges, list and map sizes), plus documented limits the models do
not carry (IAM document sizes and the trust quota, SSM value size per tier). The model files are read
where botocore installs them. Grafana is validated by its emulator (tests/grafana_emulator).

``check(service, headers, method, path, query, body)`` returns None (valid, or not a service we
check) or ``(status, headers, body, message)``: the refusal in the service's protocol and shape.
Standard library plus botocore (for the model files only).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import threading
from urllib.parse import parse_qs, unquote

#: Credential-scope service name -> botocore model directory.
SERVICES = {"iam": "iam", "sts": "sts", "ssm": "ssm", "aps": "amp", "eks": "eks", "states": "stepfunctions"}

#: Patterns Python's ``re`` cannot compile after translation (recorded, skipped).
SKIPPED_PATTERNS: set[str] = set()

_JAVA_CLASSES = {
    r"\p{Alnum}": "a-zA-Z0-9", r"\p{Alpha}": "a-zA-Z", r"\p{Digit}": "0-9", r"\p{Upper}": "A-Z",
    r"\p{Lower}": "a-z", r"\p{Punct}": r"!-/:-@\[-`{-~", r"\p{Space}": r" \t\n\x0b\f\r",
    r"\p{XDigit}": "0-9a-fA-F", r"\p{ASCII}": r"\x00-\x7f", r"\p{Print}": r"\x20-\x7e",
    r"\p{Graph}": r"\x21-\x7e",
    # Unicode categories, approximated on the permissive side (\w is letters, digits and "_"; \s
    # is wider than separators): never refuse what AWS accepts.
    r"\p{L}": r"\w", r"\p{N}": r"\w", r"\p{Z}": r"\s", r"\p{P}": r"\W", r"\p{M}": r"\W",
}


def translate_pattern(pattern: str) -> str:
    """A model (Java-flavoured) regex as an anchored Python regex (whole-value match)."""
    p = pattern
    for k, v in _JAVA_CLASSES.items():
        p = re.sub(r"(\[[^\]]*?)" + re.escape(k), lambda m, v=v: m.group(1) + v, p)
        p = p.replace(k, "[" + v + "]")
    p = p.replace(r"\z", r"\Z")
    flags = ""
    if p.startswith("(?i)"):
        flags, p = "(?i)", p[4:]
    return flags + r"(?:" + p + r")\Z"


class Model:
    """One botocore service model: shapes, operations and (rest-json) routes."""

    def __init__(self, directory: str):
        import botocore  # the model files only

        base = os.path.join(os.path.dirname(botocore.__file__), "data", directory)
        version = sorted(os.listdir(base))[-1]
        path = os.path.join(base, version, "service-2.json")
        if os.path.exists(path + ".gz"):
            with gzip.open(path + ".gz", "rt", encoding="utf-8") as f:
                doc = json.load(f)
        else:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        self.meta = doc["metadata"]
        self.protocol = self.meta.get("protocol")
        self.shapes = doc["shapes"]
        self.ops = doc["operations"]
        self.patterns: dict[str, re.Pattern | None] = {}
        self.routes = []
        for name, op in self.ops.items():
            http = op.get("http", {})
            tpl = http.get("requestUri", "/").partition("?")[0]
            rx, labels, pos = "^", [], 0
            for m in re.finditer(r"\{([^}]+)\}", tpl):
                rx += re.escape(tpl[pos:m.start()])
                label = m.group(1)
                rx += "(.+)" if label.endswith("+") else "([^/]+)"
                labels.append(label.rstrip("+"))
                pos = m.end()
            rx += re.escape(tpl[pos:]) + "/?$"
            self.routes.append((http.get("method", "POST").upper(), re.compile(rx), labels, name,
                                tpl.count("{")))
        # Most specific first: more literal characters, fewer labels.
        self.routes.sort(key=lambda r: (-len(r[1].pattern) + 10 * r[4]))

    def pattern(self, p: str):
        if p not in self.patterns:
            try:
                self.patterns[p] = re.compile(translate_pattern(p), re.DOTALL)
            except re.error:
                SKIPPED_PATTERNS.add(p)
                self.patterns[p] = None
        return self.patterns[p]

    # --- validation ----------------------------------------------------------------------
    def validate(self, shape_name: str, value, path: str, errors: list) -> None:
        s = self.shapes[shape_name]
        t = s["type"]
        if t == "structure":
            if not isinstance(value, dict):
                errors.append(f"{path or 'input'}: expected a structure")
                return
            for req in s.get("required", []):
                if value.get(req) is None:
                    errors.append(f"{_join(path, req)}: Member must not be null")
            for k, v in value.items():
                m = s.get("members", {}).get(k)
                if m is not None and v is not None:
                    self.validate(m["shape"], v, _join(path, k), errors)
            return
        if t == "list":
            if not isinstance(value, list):
                value = [value]
            self._size(s, len(value), path, errors)
            for i, v in enumerate(value):
                self.validate(s["member"]["shape"], v, f"{path}.{i + 1}", errors)
            return
        if t == "map":
            if not isinstance(value, dict):
                errors.append(f"{path}: expected a map")
                return
            self._size(s, len(value), path, errors)
            for k, v in value.items():
                self.validate(s["key"]["shape"], k, f"{path}.key", errors)
                self.validate(s["value"]["shape"], v, f"{path}.{k}", errors)
            return
        if t == "string":
            value = str(value)
            self._size(s, len(value), path, errors)
            if "enum" in s and value not in s["enum"]:
                errors.append(f"{path}: Member must satisfy enum value set: [{', '.join(s['enum'])}]")
            if "pattern" in s:
                rx = self.pattern(s["pattern"])
                if rx is not None and not rx.match(value):
                    errors.append(f"{path}: Member must satisfy regular expression pattern: {s['pattern']}")
            return
        if t in ("integer", "long", "float", "double"):
            try:
                n = float(value)
            except (TypeError, ValueError):
                errors.append(f"{path}: expected a number")
                return
            if "min" in s and n < s["min"]:
                errors.append(f"{path}: Member must have value greater than or equal to {s['min']}")
            if "max" in s and n > s["max"]:
                errors.append(f"{path}: Member must have value less than or equal to {s['max']}")
            return
        if t == "blob":
            self._size(s, len(value) if isinstance(value, (str, bytes)) else 0, path, errors)

    @staticmethod
    def _size(s, n, path, errors):
        if "min" in s and n < s["min"]:
            errors.append(f"{path}: Member must have length greater than or equal to {s['min']}")
        if "max" in s and n > s["max"]:
            errors.append(f"{path}: Member must have length less than or equal to {s['max']}")

    # --- parsing -------------------------------------------------------------------------
    def parse_query(self, form: dict) -> tuple[str | None, dict]:
        """Action and input of a query-protocol request (flattened ``a.member.N.b`` keys)."""
        action = (form.get("Action") or [None])[0]
        op = self.ops.get(action or "")
        if op is None or "input" not in op:
            return action, {}
        flat = {k: v[0] for k, v in form.items() if k not in ("Action", "Version")}
        return action, self._unflatten(op["input"]["shape"], flat, "")

    def _unflatten(self, shape_name, flat, prefix):
        s = self.shapes[shape_name]
        t = s["type"]
        if t == "structure":
            out = {}
            for name, m in s.get("members", {}).items():
                key = m.get("locationName", name)
                p = f"{prefix}.{key}" if prefix else key
                if p in flat or any(k.startswith(p + ".") for k in flat):
                    out[name] = self._unflatten(m["shape"], flat, p)
            return out
        if t == "list":
            items, i = [], 1
            base = prefix if s.get("flattened") else prefix + ".member"
            while f"{base}.{i}" in flat or any(k.startswith(f"{base}.{i}.") for k in flat):
                items.append(self._unflatten(s["member"]["shape"], flat, f"{base}.{i}"))
                i += 1
            return items
        if t == "map":
            out, i = {}, 1
            while f"{prefix}.entry.{i}.key" in flat:
                out[flat[f"{prefix}.entry.{i}.key"]] = flat.get(f"{prefix}.entry.{i}.value", "")
                i += 1
            return out
        return flat.get(prefix, "")

    def parse_rest(self, method: str, path: str, query: dict, body: bytes):
        """Operation and input of a rest-json request (URI labels, query string, JSON body)."""
        for m_method, rx, labels, name, _ in self.routes:
            if m_method != method:
                continue
            m = rx.match(path)
            if not m:
                continue
            op = self.ops[name]
            params: dict = {}
            if body[:1] == b"{":
                try:
                    params = json.loads(body)
                except ValueError:
                    params = {}
            if "input" in op:
                members = self.shapes[op["input"]["shape"]].get("members", {})
                for mname, mem in members.items():
                    loc = mem.get("location")
                    loc_name = mem.get("locationName", mname)
                    if loc == "uri" and loc_name in labels:
                        params[mname] = unquote(m.group(labels.index(loc_name) + 1))
                    elif loc == "querystring" and loc_name in query:
                        vals = query[loc_name]
                        tshape = self.shapes[mem["shape"]]["type"]
                        params[mname] = vals if tshape == "list" else vals[0]
                    elif loc == "header":
                        params.pop(mname, None)
            return name, params
        return None, {}


_MODELS: dict[str, Model] = {}
_LOCK = threading.Lock()




def _join(path, name):
    return f"{path}.{name}" if path else name


def _nows(doc: str) -> int:
    return len(re.sub(r"\s", "", unquote(doc)))


#: The account's IAM quota for trust policy size (ACLSizePerRole: 2,048 by default, adjustable to
#: 4,096); the router's ``--iam-trust-quota`` sets it for an account whose quota was raised.
TRUST_QUOTA = int(os.environ.get("O11Y_IAM_TRUST_QUOTA", "2048"))

VALIDATION = "validation"


def extra_limits(service: str, op: str, params: dict) -> list:
    """Documented limits the models do not carry: ``[(code, status, message)]``, with
    ``VALIDATION`` for the service's validation error."""
    errors = []
    if service == "iam":
        if op in ("CreatePolicy", "CreatePolicyVersion") and _nows(params.get("PolicyDocument", "")) > 6144:
            errors.append(("LimitExceeded", 409, "Cannot exceed quota for PolicySize: 6144"))
        if op in ("PutRolePolicy", "PutUserPolicy", "PutGroupPolicy") and \
                _nows(params.get("PolicyDocument", "")) > 10240:
            errors.append(("LimitExceeded", 409, "Maximum policy size of 10240 bytes exceeded for role "
                           f"{params.get('RoleName', '')}"))
        if op in ("CreateRole", "UpdateAssumeRolePolicy"):
            doc = params.get("AssumeRolePolicyDocument") or params.get("PolicyDocument") or ""
            if _nows(doc) > TRUST_QUOTA:
                errors.append(("LimitExceeded", 409, f"Cannot exceed quota for ACLSizePerRole: {TRUST_QUOTA}"))
        if len(params.get("Tags") or []) > 50:
            errors.append((VALIDATION, 400, "tags: Member must have length less than or equal to 50"))
    if service == "ssm" and op in ("PutParameter", "GetParameter", "DeleteParameter", "GetParameterHistory",
                                   "LabelParameterVersion"):
        name = params.get("Name")
        if isinstance(name, str) and not name.startswith("arn:"):
            if len(name) > 1011:
                errors.append((VALIDATION, 400, "name: Member must have length less than or equal to 1011"))
            if name.startswith("/") and name.count("/") > 15:
                errors.append(("HierarchyLevelLimitExceededException", 400,
                               "A hierarchy can have a maximum of 15 levels."))
    if service == "ssm" and op == "PutParameter":
        value = params.get("Value")
        if isinstance(value, str):
            advanced = params.get("Tier") in ("Advanced", "Intelligent-Tiering")
            limit = 8192 if advanced else 4096
            if len(value.encode("utf-8")) > limit:
                errors.append((VALIDATION, 400, "Standard tier parameters support a maximum parameter value of "
                               "4096 characters. To create a larger parameter value, upgrade the parameter to "
                               "use the advanced-parameter tier." if not advanced else
                               f"Parameter value exceeds the maximum of {limit} bytes for the Advanced tier."))
    return errors


def refusal(protocol: str, service: str, errors: list, code: str = VALIDATION, status: int = 400):
    """The service's error response: ``(status, headers, body, message)``."""
    if code == VALIDATION:
        n = len(errors)
        message = f"{n} validation error{'s' if n > 1 else ''} detected: " + "; ".join(errors)
        code = "ValidationError" if protocol == "query" else "ValidationException"
    else:
        message = "; ".join(errors)
    if protocol == "query":
        from xml.sax.saxutils import escape

        ns = "https://iam.amazonaws.com/doc/2010-05-08/" if service == "iam" else \
            "https://sts.amazonaws.com/doc/2011-06-15/"
        body = (f'<ErrorResponse xmlns="{ns}"><Error><Type>Sender</Type><Code>{code}</Code>'
                f"<Message>{escape(message)}</Message></Error>"
                "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>").encode()
        return status, {"Content-Type": "text/xml"}, body, message
    headers = {"Content-Type": "application/x-amz-json-1.1" if protocol == "json" else "application/json",
               "x-amzn-ErrorType": code}
    return status, headers, json.dumps({"__type": code, "message": message}).encode(), message


#: Services whose requests can be parsed (model_check validates only SERVICES; authz parses these too).
PARSEABLE = dict(SERVICES, grafana="grafana", servicequotas="service-quotas")


def parse(service: str | None, headers, method: str, path: str, query: dict, body: bytes):
    """``(model, operation, params)`` of a request by its protocol; ``(None, None, {})`` when the
    service has no model here or the operation is not recognised."""
    directory = PARSEABLE.get(service or "")
    if directory is None:
        return None, None, {}
    with _LOCK:
        if service not in _MODELS:
            _MODELS[service] = Model(directory)
        m = _MODELS[service]
    if m.protocol == "query":
        form = dict(query)
        if body:
            form.update(parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True))
        op, params = m.parse_query(form)
    elif m.protocol == "json":
        target = headers.get("X-Amz-Target") or ""
        op = target.rsplit(".", 1)[-1]
        try:
            params = json.loads(body) if body else {}
        except ValueError:
            return m, None, {}
    else:
        op, params = m.parse_rest(method, path, query, body)
    if not op or op not in m.ops:
        return m, None, {}
    return m, op, params


def check(service: str | None, headers, method: str, path: str, query: dict, body: bytes):
    """None when the request is valid (or not checked); else (status, headers, body, message)."""
    if service not in SERVICES:
        return None
    m, op, params = parse(service, headers, method, path, query, body)
    if m is None or op is None:
        return None
    errors: list = []
    if "input" in m.ops[op]:
        m.validate(m.ops[op]["input"]["shape"], params, "", errors)
    if errors:
        return refusal(m.protocol, service, errors)
    limits = extra_limits(service, op, params)
    if not limits:
        return None
    code, status, _ = limits[0]
    return refusal(m.protocol, service, [msg for c, _, msg in limits if c == code], code, status)
