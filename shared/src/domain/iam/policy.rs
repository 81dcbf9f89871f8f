//! IAM policy documents of the runbook, and the rules we apply to documents IAM hands back:
//! decoding (URL-encoded in AWS, plain in moto), semantic comparison (so an idempotent step
//! does not rewrite a policy that only differs in formatting), and the size quotas.
//!
//! The three documents follow the runbook's "Resources, policies and attachments" section,
//! with one deliberate deviation in the write policy's CloudWatch Logs resources (see
//! [`write_policy`]).

use std::collections::BTreeSet;

use percent_encoding::percent_decode_str;
use serde_json::{json, Map, Value};

use crate::domain::error::{Error, Result};
use crate::domain::iam::doc::{action_matches, as_list, condition_values, statements_or_empty};

/// Managed policy size quota (characters, whitespace not counted).
pub const MANAGED_POLICY_MAX_CHARS: usize = 6144;
/// Role trust policy size quota (default; characters, whitespace not counted).
pub const TRUST_POLICY_MAX_CHARS: usize = 2048;
/// The documented maximum the trust-policy length quota can be raised to.
pub const TRUST_POLICY_QUOTA_MAX: usize = 4096;

/// The default quota, for outputs written before the quota was read from the account.
pub fn default_trust_policy_quota() -> usize {
    TRUST_POLICY_MAX_CHARS
}

/// The policy language version every document we write uses.
pub const POLICY_VERSION: &str = "2012-10-17";

/// The version IAM assumes when a document has no `Version` element.
const DEFAULT_POLICY_VERSION: &str = "2008-10-17";

/// Sid of the write policy's CloudWatch Logs statement.
pub const SID_CLOUDWATCH_LOGS: &str = "AllowCloudWatchLogs";
/// Sid of the write policy's X-Ray statement.
pub const SID_XRAY: &str = "AllowXRayTracing";
/// Sid of the write policy's Prometheus remote-write statement.
pub const SID_PROMETHEUS_WRITE: &str = "AllowPrometheusRemoteWrite";
/// Sid of the read policy's only statement.
pub const SID_PROMETHEUS_READ: &str = "AllowPrometheusRead";

/// The CloudWatch Logs ARNs the write policy grants: the log group itself (for
/// `CreateLogGroup`, `DescribeLogStreams`) and `<group>:*` (its streams, for
/// `CreateLogStream`, `PutLogEvents`).
pub fn log_group_arns(partition: &str, region: &str, account: &str, log_group: &str) -> [String; 2] {
    let group = format!("arn:{partition}:logs:{region}:{account}:log-group:{log_group}");
    let streams = format!("{group}:*");
    [group, streams]
}

/// The write policy for the IRSA role: CloudWatch Logs, X-Ray and Prometheus remote write,
/// with the runbook's Sids and actions.
///
/// **Deliberate deviation from the runbook.** The runbook grants the logs actions on
/// `arn:aws:logs:<region>:<account>:log-group:*:log-stream:*`. That pattern only matches
/// log-stream ARNs, so `logs:CreateLogGroup` and `logs:DescribeLogStreams` (authorized against
/// the log-group ARN) would be denied, and it spans every log group of the account. We scope
/// the statement to the configured group instead, with both ARN forms:
/// `arn:<partition>:logs:<region>:<account>:log-group:<group>` and
/// `arn:<partition>:logs:<region>:<account>:log-group:<group>:*` (the latter covers the
/// group's streams). The partition is a parameter, where the runbook hard-codes `aws`.
///
/// X-Ray has no resource-level permissions, so its statement keeps `"Resource": "*"`.
pub fn write_policy(partition: &str, region: &str, account: &str, log_group: &str, amp_workspace_arn: &str) -> Value {
    let [group, streams] = log_group_arns(partition, region, account, log_group);
    json!({
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": SID_CLOUDWATCH_LOGS,
                "Effect": "Allow",
                "Action": [
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:DescribeLogStreams"
                ],
                "Resource": [group, streams]
            },
            {
                "Sid": SID_XRAY,
                "Effect": "Allow",
                "Action": [
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords"
                ],
                "Resource": "*"
            },
            {
                "Sid": SID_PROMETHEUS_WRITE,
                "Effect": "Allow",
                "Action": ["aps:RemoteWrite"],
                "Resource": amp_workspace_arn
            }
        ]
    })
}

/// The Grafana role's read policy on the workspace: the runbook's statement (actions and the
/// single workspace resource), with the added Sid [`SID_PROMETHEUS_READ`].
///
/// Note: `aps:ListWorkspaces` is a list action that IAM authorizes against `"*"`, so scoped to
/// the workspace ARN (as in the runbook) it grants nothing; it is kept for fidelity with the
/// runbook and is harmless. The Grafana datasource only needs the query actions.
pub fn read_policy(amp_workspace_arn: &str) -> Value {
    json!({
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": SID_PROMETHEUS_READ,
                "Effect": "Allow",
                "Action": [
                    "aps:ListWorkspaces",
                    "aps:DescribeWorkspace",
                    "aps:QueryMetrics",
                    "aps:GetLabels",
                    "aps:GetSeries",
                    "aps:GetMetricMetadata"
                ],
                "Resource": [amp_workspace_arn]
            }
        ]
    })
}

/// The Grafana role's trust policy (runbook's): `grafana.amazonaws.com` may assume the role,
/// only on behalf of a Grafana workspace of `account` in `region` (confused-deputy guard via
/// `aws:SourceAccount` and `aws:SourceArn`).
pub fn grafana_trust_policy(partition: &str, region: &str, account: &str) -> Value {
    json!({
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Principal": {
                    "Service": "grafana.amazonaws.com"
                },
                "Condition": {
                    "StringEquals": {
                        "aws:SourceAccount": account
                    },
                    "StringLike": {
                        "aws:SourceArn": format!("arn:{partition}:grafana:{region}:{account}:/workspaces/*")
                    }
                }
            }
        ]
    })
}

/// The actions on a role by which a role is given trust or permissions: the security boundary
/// allows them only on roles we created or that their owners opted in.
pub const ROLE_GRANT_ACTIONS: [&str; 3] = ["iam:UpdateAssumeRolePolicy", "iam:AttachRolePolicy", "iam:PutRolePolicy"];

/// The session policy of every `sts:AssumeRole` into a target account (whose role, the vending
/// role, is typically an administrator): everything but [`ROLE_GRANT_ACTIONS`], and those only on
/// roles tagged `o11y-provisioner:irsa` = `true` or created by us (`o11y-provisioner:managed-by`),
/// never on a service-linked role. The effective permissions are the intersection with the
/// role's own, so the admin session cannot be used beyond these limits.
pub fn target_session_policy() -> Value {
    use crate::domain::names::{MANAGED_BY_TAG, MANAGED_BY_VALUE, OPT_IN_TAG, OPT_IN_VALUE, SERVICE_LINKED_PATH};
    let roles = "arn:*:iam::*:role/*";
    json!({
        "Version": POLICY_VERSION,
        "Statement": [
            {"Sid": "AllButRoleGrants", "Effect": "Allow", "NotAction": ROLE_GRANT_ACTIONS, "Resource": "*"},
            {"Sid": "OptedInRoles", "Effect": "Allow", "Action": ROLE_GRANT_ACTIONS, "Resource": roles,
             "Condition": {"StringEquals": {format!("aws:ResourceTag/{OPT_IN_TAG}"): OPT_IN_VALUE}}},
            {"Sid": "OwnRoles", "Effect": "Allow", "Action": ROLE_GRANT_ACTIONS, "Resource": roles,
             "Condition": {"StringEquals": {format!("aws:ResourceTag/{MANAGED_BY_TAG}"): MANAGED_BY_VALUE}}},
            {"Sid": "NoServiceLinkedRoles", "Effect": "Deny", "Action": ROLE_GRANT_ACTIONS,
             "Resource": format!("arn:*:iam::*:role{SERVICE_LINKED_PATH}*")}
        ]
    })
}

/// Parses a policy document as returned by IAM.
///
/// AWS returns `AssumeRolePolicyDocument` (GetRole) and `Document` (GetPolicyVersion)
/// URL-encoded per RFC 3986; moto returns plain JSON. A string that parses as JSON is used as
/// is; otherwise it is percent-decoded and parsed. In RFC 3986 encoding `+` is a literal plus
/// (IAM encodes a plus as `%2B`), so it is decoded as `+`; only if that does not parse and the
/// input contains `+` do we retry reading `+` as a space (form encoding, as some emulators do).
pub fn decode_document(raw: &str) -> Result<Value> {
    let trimmed = raw.trim();
    if let Ok(v) = serde_json::from_str::<Value>(trimmed) {
        return check_object(v);
    }
    let decoded = percent_decode_str(trimmed)
        .decode_utf8()
        .map_err(|e| Error::Internal(format!("policy document is neither JSON nor URL-encoded UTF-8: {e}")))?;
    match serde_json::from_str::<Value>(&decoded) {
        Ok(v) => check_object(v),
        Err(first) => {
            if trimmed.contains('+') {
                let spaced = trimmed.replace('+', " ");
                if let Ok(Ok(v)) = percent_decode_str(&spaced).decode_utf8().map(|d| serde_json::from_str::<Value>(&d))
                {
                    return check_object(v);
                }
            }
            Err(Error::Internal(format!(
                "policy document is not JSON, neither as returned nor after URL-decoding: {first}"
            )))
        }
    }
}

/// A policy document must be a JSON object.
fn check_object(v: Value) -> Result<Value> {
    if v.is_object() {
        Ok(v)
    } else {
        Err(Error::Internal("policy document is JSON but not an object".to_string()))
    }
}

/// Semantic equality of two policy documents, as IAM evaluates them: `true` when their
/// [`normalize`]d forms are equal.
///
/// Insignificant: formatting and key order; a `Statement` object versus a one-element array;
/// statement order; a string versus a one-element array, and the order of values, in
/// `Action`/`NotAction`/`Resource`/`NotResource`, principal values and condition values;
/// duplicated values; the case of action names and of condition key names (IAM treats both
/// case-insensitively); a missing `Version` versus `"2008-10-17"` (IAM's default).
///
/// Significant: `Version`; `Sid` (the engine finds its statements by Sid, so a document whose
/// Sids differ is not "ours" even when it grants the same); `Effect`; resources (ARNs are
/// case-sensitive); principals; condition operators and values.
pub fn equivalent(a: &Value, b: &Value) -> bool {
    normalize(a) == normalize(b)
}

/// The canonical form of a policy document used by [`equivalent`]: `Version` always present,
/// `Statement` always an array of normalized statements, sorted and deduplicated; in each
/// statement, action lists lower-cased, sorted and deduplicated, resource lists sorted and
/// deduplicated, principal and condition values as sorted arrays of strings, condition key
/// names lower-cased. Object keys are sorted. A value that is not an object is returned as is.
pub fn normalize(doc: &Value) -> Value {
    let Some(obj) = doc.as_object() else {
        return doc.clone();
    };
    let mut out = Map::new();
    let mut keys: Vec<&String> = obj.keys().collect();
    keys.sort();
    for key in keys {
        let value = &obj[key.as_str()];
        let normalized = match key.as_str() {
            "Statement" => normalize_statements(value),
            _ => sort_keys(value),
        };
        out.insert(key.clone(), normalized);
    }
    if !out.contains_key("Version") {
        out.insert("Version".to_string(), Value::String(DEFAULT_POLICY_VERSION.to_string()));
    }
    // Re-insert in sorted key order (the map may preserve insertion order).
    Value::Object(sorted_map(out))
}

/// The statements of `after` that `before` lacks (added) and those of `before` that `after`
/// lacks (removed), compared in normalized form; returned as they appear in each document.
pub fn statement_diff(before: &Value, after: &Value) -> (Vec<Value>, Vec<Value>) {
    let list = |doc: &Value| -> Vec<Value> { statements_or_empty(doc).into_iter().cloned().collect() };
    let norm = |s: &Value| normalize(&serde_json::json!({ "Statement": [s] }));
    let (b, a) = (list(before), list(after));
    let (bn, an): (Vec<Value>, Vec<Value>) = (b.iter().map(norm).collect(), a.iter().map(norm).collect());
    let added = a.iter().zip(&an).filter(|(_, n)| !bn.contains(n)).map(|(s, _)| s.clone()).collect();
    let removed = b.iter().zip(&bn).filter(|(_, n)| !an.contains(n)).map(|(s, _)| s.clone()).collect();
    (added, removed)
}

/// The compact (no whitespace between tokens) JSON serialization of a document.
pub fn to_compact(doc: &Value) -> String {
    doc.to_string()
}

/// Characters IAM counts against its size quotas.
///
/// AWS: "IAM doesn't count white space when calculating the size of a policy". We count the
/// characters (Unicode scalar values, not bytes) of the compact serialization, excluding every
/// whitespace character. This also excludes whitespace inside strings, so for a document with
/// spaces in values (rare: ours have none) it may undercount by those spaces; the compact form
/// is what we send, so formatting whitespace never counts.
pub fn document_length(doc: &Value) -> usize {
    to_compact(doc).chars().filter(|c| !c.is_whitespace()).count()
}

/// Fails with [`Error::LimitExceeded`] when managed policy `name`'s document is longer than
/// [`MANAGED_POLICY_MAX_CHARS`].
pub fn check_managed_policy_size(name: &str, doc: &Value) -> Result<()> {
    let len = document_length(doc);
    if len > MANAGED_POLICY_MAX_CHARS {
        return Err(Error::LimitExceeded(format!(
            "managed policy {name} is {len} characters (whitespace not counted), over the IAM quota of 6,144 ({MANAGED_POLICY_MAX_CHARS})"
        )));
    }
    Ok(())
}

/// Fails with [`Error::LimitExceeded`] when role `role`'s trust policy is longer than the
/// account's trust-policy length `quota` ([`TRUST_POLICY_MAX_CHARS`] by default; adjustable
/// through Service Quotas).
pub fn check_trust_policy_size(role: &str, doc: &Value, quota: usize) -> Result<()> {
    let len = document_length(doc);
    if len > quota {
        return Err(Error::LimitExceeded(format!(
            "trust policy of role {role} is {len} characters (whitespace not counted), over the account's trust policy length quota of {quota} (default 2,048, adjustable in Service Quotas; a raised quota the provisioner cannot read goes in trustPolicyQuota)"
        )));
    }
    Ok(())
}

/// Normalizes a `Statement` element (object or array) into a sorted, deduplicated array.
fn normalize_statements(value: &Value) -> Value {
    let statements: Vec<Value> = match value {
        Value::Array(items) => items.iter().map(normalize_statement).collect(),
        other => vec![normalize_statement(other)],
    };
    let mut keyed: Vec<(String, Value)> = statements.into_iter().map(|s| (to_compact(&s), s)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.dedup_by(|a, b| a.0 == b.0);
    Value::Array(keyed.into_iter().map(|(_, s)| s).collect())
}

/// Normalizes one statement.
fn normalize_statement(stmt: &Value) -> Value {
    let Some(obj) = stmt.as_object() else {
        return sort_keys(stmt);
    };
    let mut out = Map::new();
    for (key, value) in obj {
        let normalized = match key.as_str() {
            "Action" | "NotAction" => string_set(value, true),
            "Resource" | "NotResource" => string_set(value, false),
            "Principal" | "NotPrincipal" => normalize_principal(value),
            "Condition" => normalize_condition(value),
            _ => sort_keys(value),
        };
        out.insert(key.clone(), normalized);
    }
    Value::Object(sorted_map(out))
}

/// `"*"` stays `"*"`; `{"AWS": x, "Service": [..]}` gets each value as a sorted string set.
fn normalize_principal(value: &Value) -> Value {
    match value.as_object() {
        Some(obj) => {
            let out = obj.iter().map(|(k, v)| (k.clone(), string_set(v, false))).collect();
            Value::Object(sorted_map(out))
        }
        None => sort_keys(value),
    }
}

/// `{"Operator": {"key": value}}`: key names lower-cased (IAM condition keys are
/// case-insensitive), values as sorted string sets (scalars stringified: IAM compares
/// `true` and `"true"` alike). Operators are kept as written.
fn normalize_condition(value: &Value) -> Value {
    let Some(ops) = value.as_object() else {
        return sort_keys(value);
    };
    let mut out = Map::new();
    for (op, keys) in ops {
        let normalized = match keys.as_object() {
            Some(keys) => {
                let mut inner = Map::new();
                for (k, v) in keys {
                    let key = k.to_lowercase();
                    let merged = match (inner.remove(&key), string_set(v, false)) {
                        (Some(Value::Array(mut prev)), Value::Array(new)) => {
                            prev.extend(new);
                            string_set(&Value::Array(prev), false)
                        }
                        (_, new) => new,
                    };
                    inner.insert(key, merged);
                }
                Value::Object(sorted_map(inner))
            }
            None => sort_keys(keys),
        };
        out.insert(op.clone(), normalized);
    }
    Value::Object(sorted_map(out))
}

/// A string or array of scalars as a sorted, deduplicated array of strings (lower-cased when
/// `fold_case`). Values that are not scalars or arrays of scalars are kept (keys sorted).
fn string_set(value: &Value, fold_case: bool) -> Value {
    let Some(items) = condition_values(value) else {
        return sort_keys(value);
    };
    let set: BTreeSet<String> = items.into_iter().map(|s| if fold_case { s.to_lowercase() } else { s }).collect();
    Value::Array(set.into_iter().map(Value::String).collect())
}

/// A copy of `value` with every object's keys in sorted order.
fn sort_keys(value: &Value) -> Value {
    match value {
        Value::Object(obj) => {
            let out = obj.iter().map(|(k, v)| (k.clone(), sort_keys(v))).collect();
            Value::Object(sorted_map(out))
        }
        Value::Array(items) => Value::Array(items.iter().map(sort_keys).collect()),
        other => other.clone(),
    }
}

/// `map` rebuilt with its keys inserted in sorted order.
fn sorted_map(map: Map<String, Value>) -> Map<String, Value> {
    let mut entries: Vec<(String, Value)> = map.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.into_iter().collect()
}

/// The actions `live` allows that `ours` does not (`Allow` statements' `Action`s, matched
/// case-insensitively against our patterns; a `NotAction` allow counts as `*`): empty when `live`
/// is recognisably a version of ours or the runbook's, which may then be converged. A policy
/// found by name that allows more is someone else's, and its document is never replaced.
pub fn actions_beyond(live: &Value, ours: &Value) -> Vec<String> {
    let our_actions: Vec<String> = statements_or_empty(ours)
        .into_iter()
        .filter(|s| s.get("Effect").and_then(Value::as_str) == Some("Allow"))
        .filter_map(|s| s.get("Action").and_then(as_list))
        .flatten()
        .map(str::to_string)
        .collect();
    let mut beyond = Vec::new();
    for st in statements_or_empty(live) {
        if st.get("Effect").and_then(Value::as_str) != Some("Allow") {
            continue;
        }
        let actions: Vec<String> = match (st.get("Action").and_then(as_list), st.get("NotAction")) {
            (Some(a), None) => a.into_iter().map(str::to_string).collect(),
            _ => vec!["*".to_string()],
        };
        for a in actions {
            if !our_actions.iter().any(|o| action_matches(o, &a)) && !beyond.contains(&a) {
                beyond.push(a);
            }
        }
    }
    beyond
}

#[cfg(test)]
mod statement_diff_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_reports_added_and_removed_statements_ignoring_format() {
        let a = json!({"Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}});
        let b = json!({"Statement": [
            {"Effect": "Allow", "Action": ["s3:getobject"], "Resource": ["*"]},
            {"Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": "*"}
        ]});
        let (added, removed) = statement_diff(&a, &b);
        assert_eq!(added, vec![json!({"Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": "*"})]);
        assert!(removed.is_empty());
        let (added, removed) = statement_diff(&b, &a);
        assert!(added.is_empty());
        assert_eq!(removed.len(), 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_session_policy_fits_sts_and_allows_role_grants_only_with_a_tag() {
        let doc = target_session_policy();
        // sts:AssumeRole takes at most 2,048 characters of packed session policy
        assert!(to_compact(&doc).len() <= 2048, "{}", to_compact(&doc).len());
        let statements = doc["Statement"].as_array().unwrap();
        for s in statements {
            let grants = as_list(&s["Action"]).unwrap_or_default().iter().any(|a| ROLE_GRANT_ACTIONS.contains(a));
            if s["Effect"] == "Allow" && grants {
                let cond = s["Condition"]["StringEquals"].as_object().unwrap();
                assert!(cond.keys().all(|k| k.starts_with("aws:ResourceTag/")), "{s}");
            }
        }
        // everything else stays allowed, the role grants are not in it
        let all_else = statements.iter().find(|s| s.get("NotAction").is_some()).unwrap();
        assert_eq!(as_list(&all_else["NotAction"]).unwrap(), ROLE_GRANT_ACTIONS.to_vec());
        assert!(statements
            .iter()
            .any(|s| s["Effect"] == "Deny" && s["Resource"].as_str().unwrap().contains("/aws-service-role/")));
    }

    const WS: &str = "arn:aws:aps:us-east-1:123456789012:workspace/ws-12345678-abcd-1234-abcd-123456789012";

    fn statement<'a>(doc: &'a Value, sid: &str) -> &'a Value {
        doc["Statement"]
            .as_array()
            .and_then(|s| s.iter().find(|st| st["Sid"] == sid))
            .unwrap_or_else(|| panic!("no statement {sid} in {doc}"))
    }

    #[test]
    fn write_policy_scopes_logs_to_the_group_and_its_streams() {
        let doc = write_policy("aws", "us-east-1", "123456789012", "/dr-prod/observability", WS);
        assert_eq!(doc["Version"], "2012-10-17");
        assert_eq!(doc["Statement"].as_array().map(Vec::len), Some(3));
        let logs = statement(&doc, "AllowCloudWatchLogs");
        assert_eq!(
            logs["Resource"],
            json!([
                "arn:aws:logs:us-east-1:123456789012:log-group:/dr-prod/observability",
                "arn:aws:logs:us-east-1:123456789012:log-group:/dr-prod/observability:*"
            ])
        );
        assert_eq!(statement(&doc, "AllowXRayTracing")["Resource"], "*");
        assert_eq!(statement(&doc, "AllowPrometheusRemoteWrite")["Resource"], WS);
    }

    #[test]
    fn partition_is_used_in_every_arn() {
        let doc = write_policy("aws-cn", "cn-north-1", "123456789012", "g", WS);
        let logs = statement(&doc, "AllowCloudWatchLogs");
        assert_eq!(logs["Resource"][0], "arn:aws-cn:logs:cn-north-1:123456789012:log-group:g");
        let trust = grafana_trust_policy("aws-cn", "cn-north-1", "123456789012");
        assert_eq!(
            trust["Statement"][0]["Condition"]["StringLike"]["aws:SourceArn"],
            "arn:aws-cn:grafana:cn-north-1:123456789012:/workspaces/*"
        );
    }

    #[test]
    fn read_policy_has_sid_and_six_actions() {
        let doc = read_policy(WS);
        let st = statement(&doc, "AllowPrometheusRead");
        assert_eq!(st["Action"].as_array().map(Vec::len), Some(6));
        assert_eq!(st["Resource"], json!([WS]));
    }

    #[test]
    fn decode_plain_and_encoded() {
        let plain = r#"{"Version":"2012-10-17","Statement":[]}"#;
        assert_eq!(decode_document(plain).ok(), Some(json!({"Version":"2012-10-17","Statement":[]})));
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(decode_document(encoded).ok(), decode_document(plain).ok());
    }

    #[test]
    fn decode_keeps_plus_literal_and_tolerates_form_encoding() {
        let literal = "%7B%22Sid%22%3A%22a+b%22%7D";
        assert_eq!(decode_document(literal).ok(), Some(json!({"Sid": "a+b"})));
        let form = "%7B%22Sid%22%3A+%22ab%22%7D";
        assert_eq!(decode_document(form).ok(), Some(json!({"Sid": "ab"})));
    }

    #[test]
    fn decode_rejects_garbage_with_internal_error() {
        for raw in ["not json", "%7B%22a", "%FF%FE", "[1,2]", ""] {
            match decode_document(raw) {
                Err(e) => assert_eq!(e.name(), "InternalError", "{raw}"),
                Ok(v) => panic!("{raw} decoded to {v}"),
            }
        }
    }

    #[test]
    fn normalize_folds_forms() {
        let a =
            json!({"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"S3:GetObject","Resource":"arn:x"}});
        let b = json!({"Statement":[{"Resource":["arn:x"],"Action":["s3:getobject","s3:GetObject"],"Effect":"Allow"}],"Version":"2012-10-17"});
        assert_eq!(normalize(&a), normalize(&b));
        assert!(equivalent(&a, &b));
    }

    #[test]
    fn missing_version_is_2008() {
        let a = json!({"Statement":[]});
        assert!(equivalent(&a, &json!({"Version":"2008-10-17","Statement":[]})));
        assert!(!equivalent(&a, &json!({"Version":"2012-10-17","Statement":[]})));
    }

    #[test]
    fn condition_scalars_and_key_case() {
        let a = json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*",
            "Condition":{"Bool":{"aws:SecureTransport":true}}}]});
        let b = json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*",
            "Condition":{"Bool":{"AWS:SecureTransport":["true"]}}}]});
        assert!(equivalent(&a, &b));
    }

    #[test]
    fn resources_are_case_sensitive_and_sid_significant() {
        let a = json!({"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":"s3:*","Resource":"arn:x"}]});
        let b = json!({"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":"s3:*","Resource":"arn:X"}]});
        let c = json!({"Version":"2012-10-17","Statement":[{"Sid":"B","Effect":"Allow","Action":"s3:*","Resource":"arn:x"}]});
        assert!(!equivalent(&a, &b));
        assert!(!equivalent(&a, &c));
    }

    #[test]
    fn length_ignores_whitespace_and_counts_chars() {
        let doc = json!({"Sid": "é é"});
        // {"Sid":"éé"} = 12 characters (14 bytes).
        assert_eq!(document_length(&doc), 12);
        assert_eq!(to_compact(&doc), r#"{"Sid":"é é"}"#);
    }

    #[test]
    fn size_checks_name_the_policy_and_quota() {
        let big = json!({"Version":"2012-10-17","Statement":[{"Sid":"x".repeat(6200)}]});
        match check_managed_policy_size("p1", &big) {
            Err(Error::LimitExceeded(msg)) => {
                assert!(
                    msg.contains("p1") && msg.contains("6,144") && msg.contains(&document_length(&big).to_string()),
                    "{msg}"
                );
            }
            other => panic!("expected LimitExceeded, got {other:?}"),
        }
        match check_trust_policy_size("r1", &big, TRUST_POLICY_MAX_CHARS) {
            Err(Error::LimitExceeded(msg)) => {
                assert!(msg.contains("r1") && msg.contains("2048") && msg.contains("trustPolicyQuota"), "{msg}")
            }
            other => panic!("expected LimitExceeded, got {other:?}"),
        }
        // A raised quota admits a longer document.
        let long = json!({"Version":"2012-10-17","Statement":[{"Sid":"x".repeat(3000)}]});
        assert!(check_trust_policy_size("r1", &long, TRUST_POLICY_MAX_CHARS).is_err());
        assert!(check_trust_policy_size("r1", &long, TRUST_POLICY_QUOTA_MAX).is_ok());
        assert!(check_managed_policy_size("w", &write_policy("aws", "us-east-1", "123456789012", "g", WS)).is_ok());
        assert!(check_trust_policy_size("g", &grafana_trust_policy("aws", "us-east-1", "123456789012"), 2048).is_ok());
    }

    #[test]
    fn actions_beyond_ours_tell_a_foreign_policy_from_a_version_of_ours() {
        let ours =
            write_policy("aws", "us-east-1", "123456789012", "/g", "arn:aws:aps:us-east-1:123456789012:workspace/ws-1");
        // A version of ours with another resource, or the runbook's, allows nothing more.
        let mut older = ours.clone();
        older["Statement"][0]["Resource"] = json!("*");
        assert!(actions_beyond(&older, &ours).is_empty());
        let lower = json!({"Statement": [{"Effect": "Allow", "Action": ["LOGS:PutLogEvents"], "Resource": "*"}]});
        assert!(actions_beyond(&lower, &ours).is_empty());
        // Someone else's policy allows more: named, and a NotAction allow counts as everything.
        let foreign = json!({"Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "logs:PutLogEvents"], "Resource": "*"},
            {"Effect": "Deny", "Action": "iam:*", "Resource": "*"},
            {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}
        ]});
        assert_eq!(actions_beyond(&foreign, &ours), vec!["s3:GetObject".to_string(), "*".to_string()]);
        let wider = json!({"Statement": {"Effect": "Allow", "Action": "logs:*", "Resource": "*"}});
        assert_eq!(actions_beyond(&wider, &ours), vec!["logs:*".to_string()]);
    }
}
