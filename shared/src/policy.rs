//! IAM policy documents of the runbook, and document comparison, decoding and size rules.
//! (Stub: being written.)

use serde_json::{json, Value};

use crate::error::{Error, Result};

/// Managed policy size quota (characters, whitespace not counted).
pub const MANAGED_POLICY_MAX_CHARS: usize = 6144;
/// Role trust policy size quota (default; characters, whitespace not counted).
pub const TRUST_POLICY_MAX_CHARS: usize = 2048;

/// The write policy for the IRSA role.
pub fn write_policy(_partition: &str, _region: &str, _account: &str, _log_group: &str, amp_workspace_arn: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["aps:RemoteWrite"], "Resource": amp_workspace_arn}]})
}

/// The Grafana role's read policy on the workspace.
pub fn read_policy(amp_workspace_arn: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["aps:QueryMetrics"], "Resource": [amp_workspace_arn]}]})
}

/// The Grafana role's trust policy.
pub fn grafana_trust_policy(_partition: &str, _region: &str, _account: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "grafana.amazonaws.com"}}]})
}

/// Parses a policy document as returned by IAM (URL-encoded in AWS, plain JSON in moto).
pub fn decode_document(raw: &str) -> Result<Value> {
    serde_json::from_str(raw).map_err(|e| Error::Internal(format!("policy document is not JSON: {e}")))
}

/// Semantic equality of two policy documents.
pub fn equivalent(a: &Value, b: &Value) -> bool {
    a == b
}

/// Characters IAM counts against its quotas (whitespace outside strings not counted).
pub fn document_length(doc: &Value) -> usize {
    doc.to_string().len()
}
