//! The public input contract (camelCase JSON typed into the Step Functions console) and its
//! resolution into a fully defaulted, validated [`Deployment`].
//!
//! Defaults, all derived from `deploymentName` (`<d>`), the IAM names (IAM is global) also from
//! the region (`<r>`): `amp.alias` = `<d>`, `writePolicyName` = `<d>-<r>-observability-write`,
//! `grafana.workspaceName` = `<d>`, `grafana.roleName` = `<d>-<r>-grafana`,
//! `grafana.readPolicyName` = `<d>-<r>-grafana-amp-read`, `grafana.version` = `10.4`,
//! `grafana.authenticationProviders` = `["AWS_SSO"]`, `logs.groupName` = `/<d>/observability`,
//! `logs.streamName` = `otel-collector`, `ssmPrefix` = `/o11y/<d>`; `region` = the function's region.

use serde::{Deserialize, Serialize};

use crate::domain::error::{Error, Result};
use crate::domain::iam::policy::{TRUST_POLICY_MAX_CHARS, TRUST_POLICY_QUOTA_MAX};
use crate::domain::names;
use crate::domain::text::clip;
use crate::domain::validate;

/// Default Grafana version (the runbook's).
pub const DEFAULT_GRAFANA_VERSION: &str = "10.4";
/// Default CloudWatch log stream name.
/// Default role assumed in a target account (Control Tower's).
pub const DEFAULT_TARGET_ROLE: &str = "AWSControlTowerExecution";
/// Default CloudWatch log stream name.
pub const DEFAULT_LOG_STREAM: &str = "otel-collector";
/// The fields apply requires that a delete may leave out: it is then completed from what the
/// deployment's last apply recorded (`crate::ctx::recall`).
pub const DELETE_MAY_OMIT: [&str; 3] = ["cluster", "namespace", "irsaRoleName"];
/// The service-account name pattern the IRSA role is made to trust, inside the namespace.
pub const SERVICE_ACCOUNT_PATTERN: &str = "observability-*";

/// The raw input, exactly as users type it. Unknown fields are rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProvisionInput {
    /// Names this deployment; every default name derives from it.
    pub deployment_name: String,
    /// AWS region; defaults to the function's region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Optional guard: the run fails unless the credentials are in this 12-digit account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The EKS cluster: its name, or its OIDC issuer URL (or both).
    pub cluster: ClusterInput,
    /// Kubernetes namespace whose `observability-*` service accounts get the IRSA role.
    pub namespace: String,
    /// Name of the existing IRSA role.
    pub irsa_role_name: String,
    /// Amazon Managed Prometheus settings.
    #[serde(default, deserialize_with = "null_as_default")]
    pub amp: AmpInput,
    /// Name of the write policy attached to the IRSA role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_policy_name: Option<String>,
    /// Amazon Managed Grafana settings.
    #[serde(default, deserialize_with = "null_as_default")]
    pub grafana: GrafanaInput,
    /// CloudWatch Logs names rendered into the chart values.
    #[serde(default, deserialize_with = "null_as_default")]
    pub logs: LogsInput,
    /// SSM Parameter Store prefix for the published outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssm_prefix: Option<String>,
    /// `plan` (read-only: what apply would change), `apply` (default) or `delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// On delete, keep the AMP workspace and its metrics (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_metrics: Option<bool>,
    /// `fail` (default) or `warn`: what a failed verification does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyMode>,
    /// Another account to provision, through a role assumed there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetInput>,
    /// The account's IAM "Role trust policy length" quota in characters (2048-4096), when it was
    /// raised and Service Quotas cannot tell (the call denied, another account); default: the
    /// account's value from Service Quotas, else 2048.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_policy_quota: Option<u32>,
}

/// What a run does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Read-only: report what `apply` would change, with zero AWS writes.
    Plan,
    /// Create or converge everything (the default).
    #[default]
    Apply,
    /// Remove what this deployment created, in reverse order; adopted resources are kept.
    Delete,
}

spelled!(Action { Plan => "plan", Apply => "apply", Delete => "delete" });

/// `cluster`: at least one of `name` and `oidcIssuer`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterInput {
    /// EKS cluster name (its OIDC issuer is read with `eks:DescribeCluster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// OIDC issuer URL (`https://oidc.eks.<region>.amazonaws.com/id/<ID>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_issuer: Option<String>,
}

/// `amp`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AmpInput {
    /// Workspace alias (1-100 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

/// `grafana`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrafanaInput {
    /// Workspace name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_name: Option<String>,
    /// Role the workspace assumes to read Prometheus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_name: Option<String>,
    /// Read policy attached to that role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_policy_name: Option<String>,
    /// Grafana version, checked against `ListVersions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `AWS_SSO` and/or `SAML`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_providers: Option<Vec<String>>,
    /// Users and groups granted ADMIN on the workspace (`UpdatePermissions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admins: Option<AdminsInput>,
    /// Make the Prometheus datasource the workspace's default (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_datasource: Option<bool>,
}

/// `grafana.admins`: IAM Identity Center user and group ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminsInput {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `verify`: what a failed verification does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// A failed check fails the execution (default).
    #[default]
    Fail,
    /// A failed check is reported in the output and in SSM, and the execution succeeds.
    Warn,
}

spelled!(VerifyMode { Fail => "fail", Warn => "warn" });

/// `target`: provision into another account through a role assumed there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetInput {
    /// The 12-digit account to provision.
    pub account_id: String,
    /// The role assumed in it (default `AWSControlTowerExecution`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_name: Option<String>,
}

/// `logs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogsInput {
    /// CloudWatch log group name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    /// CloudWatch log stream name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_name: Option<String>,
}

/// The validated deployment with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub name: String,
    pub region: String,
    pub partition: String,
    pub expected_account_id: Option<String>,
    pub cluster_name: Option<String>,
    /// Normalised issuer URL (`https://...`, no trailing slash).
    pub oidc_issuer: Option<String>,
    pub namespace: String,
    pub irsa_role_name: String,
    pub amp_alias: String,
    pub write_policy_name: String,
    pub grafana_workspace_name: String,
    pub grafana_role_name: String,
    pub grafana_read_policy_name: String,
    pub grafana_version: String,
    pub grafana_authentication_providers: Vec<String>,
    /// SSO user ids granted ADMIN.
    pub grafana_admin_users: Vec<String>,
    /// SSO group ids granted ADMIN.
    pub grafana_admin_groups: Vec<String>,
    pub grafana_default_datasource: bool,
    pub log_group_name: String,
    pub log_stream_name: String,
    /// No trailing slash.
    pub ssm_prefix: String,
    pub action: Action,
    /// Keep the AMP workspace on delete.
    pub retain_metrics: bool,
    /// `retainMetrics` was given (not defaulted): a workspace that never held the cluster's
    /// metrics is then kept too, as asked.
    #[serde(default)]
    pub retain_metrics_stated: bool,
    pub verify: VerifyMode,
    /// `(account, role name)` to assume; `None`: the function's own account.
    pub target: Option<(String, String)>,
    /// `trustPolicyQuota`, validated (`None`: ask Service Quotas).
    pub trust_policy_quota: Option<usize>,
    /// Not from the input: where the record is read from when it is not under `ssm_prefix` yet
    /// (a plan of an `ssmPrefix` change; apply moves the record first). `None`: `ssm_prefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_prefix: Option<String>,
}

/// Parses raw JSON into [`ProvisionInput`]; a type error, unknown field or missing field becomes
/// a `ValidationError` whose `field` is the JSON path (`grafana.foo`, `cluster.name`,
/// `grafana.authenticationProviders[1]`) and whose rule never echoes a value raw or at length.
/// `null` counts as absent for every optional field and section.
pub fn parse_input(value: &serde_json::Value) -> Result<ProvisionInput> {
    if !value.is_object() {
        return Err(Error::validation("(input)", format!("must be a JSON object (got {})", json_kind(value))));
    }
    // serde would read a struct from a positional array (`"cluster": ["dr-eks"]`): refuse that shape.
    for section in ["cluster", "amp", "grafana", "logs"] {
        if value.get(section).is_some_and(serde_json::Value::is_array) {
            return Err(Error::validation(section, "must be an object (got an array)"));
        }
    }
    serde_path_to_error::deserialize::<_, ProvisionInput>(value).map_err(|e| {
        let (mut field, last_key) = field_path(e.path());
        let inner = e.into_inner().to_string();
        let rule = if let Some(missing) = inner.strip_prefix("missing field `").and_then(|r| r.strip_suffix('`')) {
            // serde says "missing field `x`" at the parent path: name the field itself.
            field = if field.is_empty() { missing.to_string() } else { format!("{field}.{missing}") };
            "is required".to_string()
        } else if let (true, Some(key)) = (inner.starts_with("unknown field `"), &last_key) {
            // The path ends with the unknown key itself; serde lists the accepted ones.
            let expected = inner
                .strip_prefix(&format!("unknown field `{key}`, expected "))
                .map(|x| format!("; expected {x}"))
                .unwrap_or_default();
            format!("is not a known field{expected} (got {})", validate::shown(key))
        } else {
            describe_serde_error(&inner)
        };
        if field.is_empty() {
            field = "(input)".to_string();
        }
        Error::validation(field, rule)
    })
}

/// A map key that can appear in a field path as is.
fn is_plain_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 64 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The JSON path as `a.b[2].c`, and the raw last key. The path stops before the first key that is
/// not a plain name (only an unknown key typed by the user can be one: it could be huge or hold
/// control characters); messages show that key escaped instead.
fn field_path(path: &serde_path_to_error::Path) -> (String, Option<String>) {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    let mut last_key = None;
    let mut cut = false;
    for segment in path.iter() {
        last_key = None;
        if cut {
            continue;
        }
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                last_key = Some(key.clone());
                if !is_plain_key(key) {
                    cut = true;
                    continue;
                }
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    (out, last_key)
}

/// Rewrites serde's `invalid type: <what>, expected <type>` into a rule without Rust type names
/// and with the offending value clipped; any other message is clipped and escaped.
fn describe_serde_error(msg: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            if let Some(i) = rest.rfind(", expected ") {
                let (got, expected) = (&rest[..i], &rest[i + ", expected ".len()..]);
                let expected = match expected {
                    e if e.starts_with("struct ") => "an object",
                    "a sequence" => "an array",
                    e => e,
                };
                let got = match got {
                    "map" => "an object".to_string(),
                    "sequence" => "an array".to_string(),
                    g => clip(g, validate::SHOWN_MAX_CHARS + 16),
                };
                return format!("must be {expected} (got {got})");
            }
        }
    }
    clip(&msg.escape_debug().to_string(), 200)
}

/// "an array", "a string"...: what a JSON value is, for messages.
fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Deserializes an optional section: absent or `null` both give the default.
fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl ProvisionInput {
    /// Validates every field and fills in the defaults. `default_region` is the function's region.
    pub fn resolve(&self, default_region: Option<&str>) -> Result<Deployment> {
        let d = &self.deployment_name;
        validate::deployment_name("deploymentName", d)?;

        let region = match (&self.region, default_region) {
            (Some(r), _) => r.clone(),
            (None, Some(r)) => r.to_string(),
            (None, None) => {
                return Err(Error::validation("region", "required when the function has no default region"))
            }
        };
        validate::region("region", &region)?;
        if let Some(a) = &self.account_id {
            validate::account_id("accountId", a)?;
        }

        if self.cluster.name.is_none() && self.cluster.oidc_issuer.is_none() {
            return Err(Error::validation("cluster", "one of cluster.name or cluster.oidcIssuer is required"));
        }
        if let Some(n) = &self.cluster.name {
            validate::eks_cluster_name("cluster.name", n)?;
        }
        let oidc_issuer = match &self.cluster.oidc_issuer {
            Some(i) => Some(validate::oidc_issuer("cluster.oidcIssuer", i)?),
            None => None,
        };

        validate::k8s_namespace("namespace", &self.namespace)?;
        validate::iam_role_name("irsaRoleName", &self.irsa_role_name)?;

        let amp_alias = self.amp.alias.clone().unwrap_or_else(|| d.clone());
        validate::amp_alias("amp.alias", &amp_alias)?;

        let write_policy_name =
            self.write_policy_name.clone().unwrap_or_else(|| names::default_write_policy_name(d, &region));
        validate::iam_policy_name("writePolicyName", &write_policy_name)?;

        let g = &self.grafana;
        let grafana_workspace_name = g.workspace_name.clone().unwrap_or_else(|| d.clone());
        validate::grafana_workspace_name("grafana.workspaceName", &grafana_workspace_name)?;
        let grafana_role_name = g.role_name.clone().unwrap_or_else(|| names::default_grafana_role_name(d, &region));
        validate::iam_role_name("grafana.roleName", &grafana_role_name)?;
        let grafana_read_policy_name =
            g.read_policy_name.clone().unwrap_or_else(|| names::default_read_policy_name(d, &region));
        validate::iam_policy_name("grafana.readPolicyName", &grafana_read_policy_name)?;
        let grafana_version = g.version.clone().unwrap_or_else(|| DEFAULT_GRAFANA_VERSION.to_string());
        validate::grafana_version("grafana.version", &grafana_version)?;
        let providers = g.authentication_providers.clone().unwrap_or_else(|| vec!["AWS_SSO".to_string()]);
        let grafana_authentication_providers =
            validate::authentication_providers("grafana.authenticationProviders", &providers)?;
        // IAM names are unique case-insensitively: `Foo` and `foo` are the same role.
        if grafana_role_name.eq_ignore_ascii_case(&self.irsa_role_name) {
            return Err(Error::validation(
                "grafana.roleName",
                format!(
                    "must differ from irsaRoleName (IAM role names are case-insensitive) (got {})",
                    validate::shown(&grafana_role_name)
                ),
            ));
        }
        if grafana_read_policy_name.eq_ignore_ascii_case(&write_policy_name) {
            return Err(Error::validation(
                "grafana.readPolicyName",
                format!(
                    "must differ from writePolicyName (IAM policy names are case-insensitive) (got {})",
                    validate::shown(&grafana_read_policy_name)
                ),
            ));
        }

        let log_group_name = self.logs.group_name.clone().unwrap_or_else(|| format!("/{d}/observability"));
        validate::log_group_name("logs.groupName", &log_group_name)?;
        let log_stream_name = self.logs.stream_name.clone().unwrap_or_else(|| DEFAULT_LOG_STREAM.to_string());
        validate::log_stream_name("logs.streamName", &log_stream_name)?;

        let ssm_prefix =
            validate::ssm_prefix("ssmPrefix", self.ssm_prefix.as_deref().unwrap_or(&format!("/o11y/{d}")))?;

        let admins = g.admins.clone().unwrap_or_default();
        for (kind, ids) in [("users", &admins.users), ("groups", &admins.groups)] {
            if ids.len() > 100 {
                return Err(Error::validation(format!("grafana.admins.{kind}"), "at most 100 entries"));
            }
            for (i, id) in ids.iter().enumerate() {
                validate::sso_principal_id(&format!("grafana.admins.{kind}[{i}]"), id)?;
            }
        }
        let target = match &self.target {
            Some(t) => {
                validate::account_id("target.accountId", &t.account_id)?;
                let role = t.role_name.clone().unwrap_or_else(|| DEFAULT_TARGET_ROLE.to_string());
                validate::iam_role_name("target.roleName", &role)?;
                if let Some(a) = &self.account_id {
                    if a != &t.account_id {
                        return Err(Error::validation("accountId", "must equal target.accountId when both are given"));
                    }
                }
                Some((t.account_id.clone(), role))
            }
            None => None,
        };

        let trust_policy_quota = match self.trust_policy_quota {
            Some(q) if !(TRUST_POLICY_MAX_CHARS as u32..=TRUST_POLICY_QUOTA_MAX as u32).contains(&q) => {
                return Err(Error::validation(
                    "trustPolicyQuota",
                    format!(
                        "must be between {TRUST_POLICY_MAX_CHARS} (the default) and {TRUST_POLICY_QUOTA_MAX} (the documented \
                         maximum of IAM's \"Role trust policy length\" quota), got {q}"
                    ),
                ))
            }
            q => q.map(|q| q as usize),
        };

        Ok(Deployment {
            name: d.clone(),
            partition: names::partition(&region).to_string(),
            region,
            expected_account_id: self.account_id.clone(),
            cluster_name: self.cluster.name.clone(),
            oidc_issuer,
            namespace: self.namespace.clone(),
            irsa_role_name: self.irsa_role_name.clone(),
            amp_alias,
            write_policy_name,
            grafana_workspace_name,
            grafana_role_name,
            grafana_read_policy_name,
            grafana_version,
            grafana_authentication_providers,
            grafana_admin_users: admins.users,
            grafana_admin_groups: admins.groups,
            grafana_default_datasource: g.default_datasource.unwrap_or(false),
            log_group_name,
            log_stream_name,
            ssm_prefix,
            action: self.action.unwrap_or_default(),
            retain_metrics: self.retain_metrics.unwrap_or(true),
            retain_metrics_stated: self.retain_metrics.is_some(),
            verify: self.verify.unwrap_or_default(),
            target,
            trust_policy_quota,
            record_prefix: None,
        })
    }
}

impl Deployment {
    /// The input that resolves to this deployment, every default written out (so that a later
    /// version's defaults cannot change what it names), without the run's own settings
    /// (`action`, `retainMetrics`, `verify`): what the registry keeps of the last apply, from
    /// which a delete that names only the deployment is completed ([`crate::ctx::recall`]).
    pub fn as_input(&self) -> ProvisionInput {
        let admins = (!self.grafana_admin_users.is_empty() || !self.grafana_admin_groups.is_empty()).then(|| {
            AdminsInput { users: self.grafana_admin_users.clone(), groups: self.grafana_admin_groups.clone() }
        });
        ProvisionInput {
            deployment_name: self.name.clone(),
            region: Some(self.region.clone()),
            account_id: self.expected_account_id.clone(),
            cluster: ClusterInput { name: self.cluster_name.clone(), oidc_issuer: self.oidc_issuer.clone() },
            namespace: self.namespace.clone(),
            irsa_role_name: self.irsa_role_name.clone(),
            amp: AmpInput { alias: Some(self.amp_alias.clone()) },
            write_policy_name: Some(self.write_policy_name.clone()),
            grafana: GrafanaInput {
                workspace_name: Some(self.grafana_workspace_name.clone()),
                role_name: Some(self.grafana_role_name.clone()),
                read_policy_name: Some(self.grafana_read_policy_name.clone()),
                version: Some(self.grafana_version.clone()),
                authentication_providers: Some(self.grafana_authentication_providers.clone()),
                admins,
                default_datasource: Some(self.grafana_default_datasource),
            },
            logs: LogsInput {
                group_name: Some(self.log_group_name.clone()),
                stream_name: Some(self.log_stream_name.clone()),
            },
            ssm_prefix: Some(self.ssm_prefix.clone()),
            action: None,
            retain_metrics: None,
            verify: None,
            target: self.target.as_ref().map(|(account_id, role)| TargetInput {
                account_id: account_id.clone(),
                role_name: Some(role.clone()),
            }),
            trust_policy_quota: self.trust_policy_quota.map(|q| q as u32),
        }
    }
}

/// Parses and resolves in one go.
pub fn resolve(value: &serde_json::Value, default_region: Option<&str>) -> Result<Deployment> {
    parse_input(value)?.resolve(default_region)
}
