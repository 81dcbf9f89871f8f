"""IAM policy evaluation shared by the local stack's authorizer (``authz.py``) and the Grafana
emulator's health check: wildcard matching, the request context, condition operators, statements,
documents and role trust. Explicit Deny wins; an Allow must match action, resource and every
condition; an absent key fails positive operators (IfExists and ForAllValues excepted) and passes
negated ones; an operator this evaluator does not know fails. Standard library only.
"""

from __future__ import annotations

import json
import re
from urllib.parse import unquote


def _list(v):
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _glob(pattern: str, value: str, ignore_case: bool = False) -> bool:
    if ignore_case:
        pattern, value = pattern.lower(), value.lower()
    rx = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(rx, value, re.DOTALL) is not None


class Context:
    """The request context: static keys, plus aws:ResourceTag/* looked up on first use."""

    def __init__(self, values: dict, resource_tags=None):
        self.values = {k.lower(): v for k, v in values.items()}
        self._resource_tags = resource_tags
        self._tags = None

    def get(self, key: str):
        k = key.lower()
        if k.startswith("aws:resourcetag/") and self._resource_tags is not None:
            if self._tags is None:
                self._tags = {t.lower(): v for t, v in (self._resource_tags() or {}).items()}
            return self._tags.get(k.split("/", 1)[1])
        return self.values.get(k)

    def substitute(self, text: str):
        """Policy variables (``${aws:PrincipalOrgID}``) replaced; None when one is absent."""
        missing = False

        def one(m):
            nonlocal missing
            v = self.get(m.group(1))
            if v is None or isinstance(v, list):
                missing = True
                return ""
            return str(v)
        out = re.sub(r"\$\{([^}*?$]+)\}", one, text)
        return None if missing else out


_STRING_OPS = {
    "StringEquals": lambda p, v: p == v,
    "StringNotEquals": lambda p, v: p == v,
    "StringEqualsIgnoreCase": lambda p, v: p.lower() == v.lower(),
    "StringNotEqualsIgnoreCase": lambda p, v: p.lower() == v.lower(),
    "StringLike": lambda p, v: _glob(p, v),
    "StringNotLike": lambda p, v: _glob(p, v),
    "ArnEquals": lambda p, v: p == v,
    "ArnNotEquals": lambda p, v: p == v,
    "ArnLike": lambda p, v: _glob(p, v),
    "ArnNotLike": lambda p, v: _glob(p, v),
    "Bool": lambda p, v: p.lower() == v.lower(),
    "NumericEquals": lambda p, v: float(v) == float(p),
    "NumericNotEquals": lambda p, v: float(v) == float(p),
    "NumericLessThan": lambda p, v: float(v) < float(p),
    "NumericLessThanEquals": lambda p, v: float(v) <= float(p),
    "NumericGreaterThan": lambda p, v: float(v) > float(p),
    "NumericGreaterThanEquals": lambda p, v: float(v) >= float(p),
}
_NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike",
            "NumericNotEquals"}


def condition_holds(operator: str, key: str, expected, ctx: Context) -> bool:
    """One key of one operator block (the expected values are ORed)."""
    qualifier = None
    if ":" in operator and operator.split(":", 1)[0] in ("ForAnyValue", "ForAllValues"):
        qualifier, operator = operator.split(":", 1)
    if_exists = operator.endswith("IfExists")
    if if_exists:
        operator = operator[: -len("IfExists")]
    actual = ctx.get(key)
    if operator == "Null":
        want_absent = str(_list(expected)[0]).lower() == "true"
        absent = actual is None or actual == []
        return absent == want_absent
    match = _STRING_OPS.get(operator)
    if match is None:
        return False  # an operator this evaluator does not know cannot be proven to hold
    negated = operator in _NEGATED
    patterns = []
    for e in _list(expected):
        s = ctx.substitute(str(e)) if isinstance(e, str) else str(e).lower() if isinstance(e, bool) else str(e)
        if s is not None:
            patterns.append(s)

    def one(v) -> bool:
        try:
            hit = any(match(p, str(v)) for p in patterns)
        except ValueError:
            hit = False
        return not hit if negated else hit

    if actual is None or actual == []:
        if qualifier == "ForAllValues" or if_exists:
            return True
        if qualifier == "ForAnyValue":
            return False
        return negated
    values = _list(actual)
    if qualifier == "ForAllValues":
        return all(one(v) for v in values)
    if qualifier == "ForAnyValue":
        return any(one(v) for v in values)
    if len(values) != 1:
        return False  # a single-valued operator on a multivalued key
    return one(values[0])


def statement_matches(st: dict, action: str, resource: str, ctx: Context) -> bool:
    if "Action" in st:
        if not any(_glob(a, action, ignore_case=True) for a in _list(st["Action"])):
            return False
    elif "NotAction" in st:
        if any(_glob(a, action, ignore_case=True) for a in _list(st["NotAction"])):
            return False
    else:
        return False

    def resource_hit(patterns) -> bool:
        for p in _list(patterns):
            p = ctx.substitute(p) if "${" in p else p
            if p is not None and _glob(p, resource):
                return True
        return False
    if "Resource" in st:
        if not resource_hit(st["Resource"]):
            return False
    elif "NotResource" in st:
        if resource_hit(st["NotResource"]):
            return False
    for operator, block in (st.get("Condition") or {}).items():
        for key, expected in block.items():
            if not condition_holds(operator, key, expected, ctx):
                return False
    return True


def evaluate(documents: list, action: str, resource: str, ctx: Context) -> str | None:
    """"Deny", "Allow" or None (no statement applies) over policy documents."""
    allowed = False
    for doc in documents:
        for st in _list((doc or {}).get("Statement")):
            if statement_matches(st, action, resource, ctx):
                if st.get("Effect") == "Deny":
                    return "Deny"
                if st.get("Effect") == "Allow":
                    allowed = True
    return "Allow" if allowed else None


def trust_allows(trust: dict, kind: str, principals: set, ctx: Context) -> bool:
    """Whether a role trust policy lets a principal call sts:AssumeRole: an Allow whose
    ``Principal.<kind>`` (``AWS`` or ``Service``) names one of ``principals`` and whose conditions
    hold in ``ctx``, and no Deny that applies."""
    allowed = False
    for st in _list(trust.get("Statement")):
        principal = st.get("Principal")
        named = _list(principal.get(kind)) if isinstance(principal, dict) else _list(principal)
        if not any(p in principals for p in named):
            continue
        st = {k: v for k, v in st.items() if k not in ("Principal", "Resource", "NotResource")}
        if statement_matches(dict(st, Resource="*"), "sts:AssumeRole", "*", ctx):
            if st.get("Effect") == "Deny":
                return False
            allowed = allowed or st.get("Effect") == "Allow"
    return allowed


def document(doc) -> dict:
    """A policy document given as JSON text (URL-encoded, as IAM returns it) or already parsed."""
    if isinstance(doc, dict):
        return doc
    return json.loads(unquote(doc))


def created_less_than(created, seconds: float) -> float | None:
    """The age of a role created at ``created`` (a datetime or IAM's ISO text) when it is younger
    than ``seconds`` (IAM has not propagated it yet), else None."""
    import datetime

    if seconds <= 0 or created is None:
        return None
    if isinstance(created, str):
        try:
            created = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            return None
    age = (datetime.datetime.now(datetime.timezone.utc) - created).total_seconds()
    return age if age < seconds else None


