//! Field validators: the real AWS / Kubernetes rules. Each returns a `ValidationError` naming
//! `field` and the rule. (Stub: being written.)

use crate::error::Result;

pub fn deployment_name(_field: &str, _v: &str) -> Result<()> { Ok(()) }
pub fn region(_field: &str, _v: &str) -> Result<()> { Ok(()) }
pub fn account_id(_field: &str, _v: &str) -> Result<()> { Ok(()) }
pub fn eks_cluster_name(_field: &str, _v: &str) -> Result<()> { Ok(()) }
/// Returns the normalised issuer (`https://host/path`, no trailing slash).
pub fn oidc_issuer(_field: &str, v: &str) -> Result<String> { Ok(v.trim_end_matches('/').to_string()) }
pub fn k8s_namespace(_field: &str, _v: &str) -> Result<()> { Ok(()) }
pub fn iam_role_name(_field: &str, _v: &str) -> Result<()> { Ok(()) }
pub fn iam_policy_name(_field: &str, _v: &str) -> Result<()> { Ok(()) }
pub fn amp_alias(_field: &str, _v: &str) -> Result<()> { Ok(()) }
pub fn grafana_workspace_name(_field: &str, _v: &str) -> Result<()> { Ok(()) }
pub fn grafana_version(_field: &str, _v: &str) -> Result<()> { Ok(()) }
/// Returns the providers, deduplicated, in input order.
pub fn authentication_providers(_field: &str, v: &[String]) -> Result<Vec<String>> { Ok(v.to_vec()) }
pub fn log_group_name(_field: &str, _v: &str) -> Result<()> { Ok(()) }
pub fn log_stream_name(_field: &str, _v: &str) -> Result<()> { Ok(()) }
/// Returns the normalised prefix (leading `/`, no trailing `/`).
pub fn ssm_prefix(_field: &str, v: &str) -> Result<String> { Ok(v.trim_end_matches('/').to_string()) }
