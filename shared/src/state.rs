//! The document that flows through the state machine: the raw input plus each step's output.
//! Each Lambda receives the whole state and returns only its own output, which the state machine
//! stores under the step's key (`ResultPath`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::error::{Error, Result};
use crate::domain::input::{Action, VerifyMode};
pub use crate::domain::poll::Poll;

/// The accumulated state of one execution.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionState {
    /// The raw input, re-validated by every step.
    pub input: Value,
    /// The execution's name (`$$.Execution.Name`): the STS session name in a target account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
    /// The in-process runner's run id (there is no execution): what makes its client tokens
    /// differ from another run's. Takes no lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Set when CloudFormation started the run: where and how to answer it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_formation: Option<CfnContext>,
    /// The caught error (`Error`, `Cause`), on the failure path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// The caught error of the rollback of a failed CloudFormation Create (the state machine's
    /// `Rollback*` states), when the rollback itself failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_error: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preflight: Option<PreflightOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irsa_trust: Option<IrsaTrustOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amp_workspace: Option<AmpWorkspaceOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_policy: Option<PolicyOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grafana_role: Option<GrafanaRoleOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grafana_workspace: Option<GrafanaWorkspaceOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datasource: Option<DatasourceOutput>,
    /// verify's result: it runs before publish, which puts it in the output contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerifyOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputContract>,
    /// `action: plan`: the plan report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanReport>,
    /// What `finish` did (lease released, CloudFormation answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish: Option<Value>,
    /// `action: delete`: each step's report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<DeletedState>,
}

/// What apply would change, as reported by `plan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedChange {
    /// The step (kebab-case).
    pub step: String,
    pub action: ChangeKind,
    /// What is changed (a role, a policy, a workspace alias...).
    pub resource: String,
    /// The difference: statements added/removed, settings that differ...
    pub details: Value,
}

/// The kind of a [`PlannedChange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Create,
    Update,
    Delete,
    /// A setting that differs but that apply does not change (reported, not counted).
    None,
}

/// What a step of the plan does as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanAction {
    Create,
    Update,
    None,
}

/// The plan: for every step, what apply would do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanReport {
    pub deployment_name: String,
    /// Number of changes apply would make (0 on a converged deployment).
    pub changes: usize,
    /// The changes counted by kind, in all and by step (steps without changes omitted).
    pub summary: PlanSummary,
    /// The input settings apply would not change (they differ from the live resources), and
    /// why (omitted when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_applied: Vec<NotApplied>,
    pub steps: Vec<StepPlan>,
}

/// The plan at a glance: how many creates, updates and deletes, in all and per step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanSummary {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    /// Step (kebab-case) → kind (`create`, `update`, `delete`) → count.
    pub by_step: std::collections::BTreeMap<String, std::collections::BTreeMap<String, usize>>,
}

impl PlanSummary {
    /// Counts `changes` (reported settings that apply leaves, kind `none`, are not changes).
    pub fn of(changes: &[PlannedChange]) -> Self {
        let mut s = Self::default();
        for c in changes {
            let (kind, n) = match c.action {
                ChangeKind::Create => ("create", &mut s.create),
                ChangeKind::Update => ("update", &mut s.update),
                ChangeKind::Delete => ("delete", &mut s.delete),
                ChangeKind::None => continue,
            };
            *n += 1;
            *s.by_step.entry(c.step.clone()).or_default().entry(kind.to_string()).or_default() += 1;
        }
        s
    }
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepPlan {
    pub step: String,
    pub action: PlanAction,
    pub changes: Vec<PlannedChange>,
}

/// What a delete step did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteOutput {
    /// What was removed (ARNs, ids, names, trust statements by Sid).
    pub deleted: Vec<String>,
    /// What was kept, and why (`<id>: adopted`, `<id>: retainMetrics`).
    pub retained: Vec<String>,
    /// Grafana workspace only: `DELETING` until it is gone, then `DELETED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<Poll>,
}

/// The delete execution's reports, by step (the execution output of a delete).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datasource: Option<DeleteOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grafana_workspace: Option<DeleteOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grafana_role: Option<DeleteOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_policy: Option<DeleteOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amp_workspace: Option<DeleteOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irsa_trust: Option<DeleteOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<DeleteOutput>,
    /// Set instead of the reports when nothing records the deployment: why nothing was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl ProvisionState {
    /// A fresh state for `input`.
    pub fn new(input: Value) -> Self {
        Self { input, ..Self::default() }
    }
}

/// Returns the output of an earlier step, or an `InternalError` naming it.
pub fn require<'a, T>(value: &'a Option<T>, step: &str) -> Result<&'a T> {
    value.as_ref().ok_or_else(|| Error::Internal(format!("the {step} step's output is missing from the state")))
}

/// preflight: who and where we are, and the cluster's identity provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreflightOutput {
    /// The validated `action` (`plan`, `apply`, `delete`): the state machine routes on it.
    pub action: Action,
    pub account_id: String,
    pub region: String,
    pub partition: String,
    pub oidc_issuer: String,
    pub oidc_provider_arn: String,
    pub irsa_role_arn: String,
    /// A failure of this run is rolled back (the state machine runs the delete chain, then
    /// answers FAILED): set only for a CloudFormation Create of a deployment that had no record
    /// when this run began, so that everything recorded since was made by this run.
    #[serde(default)]
    pub rollback_on_failure: bool,
    /// The account's IAM trust-policy length quota (characters) the trust merges check against:
    /// the input's `trustPolicyQuota`, else Service Quotas' applied value, else 2048.
    #[serde(default = "crate::domain::iam::policy::default_trust_policy_quota")]
    pub trust_policy_quota: usize,
    /// A delete that named only the deployment: its input, completed from the registry entry
    /// ([`crate::ctx::recall`]); every later step runs with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// A delete by name of a deployment nothing records: the state machine ends it at once,
    /// successfully, with [`PreflightOutput::note`] (always written: its `Route` reads it).
    #[serde(default)]
    pub nothing_recorded: bool,
    /// Why there is nothing to delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The record keys of the IAM names the input gives that preflight found free (no policy or
    /// role by that name): their steps create them without looking again. A name taken meanwhile
    /// makes the create fail as already existing, and the step then looks as usual.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent: Vec<String>,
}

impl PreflightOutput {
    /// Whether preflight found the IAM name of `record_key` free.
    pub fn found_absent(&self, record_key: &str) -> bool {
        self.absent.iter().any(|k| k == record_key)
    }
}

/// irsa-trust: what the trust policy holds for us.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IrsaTrustOutput {
    pub role_arn: String,
    /// True when this run changed the trust policy.
    pub changed: bool,
    /// The statement we own in the trust policy (ours by its Sid), exactly as added; `None` when
    /// the existing trust already admitted our service accounts and nothing was added.
    pub added_statement: Option<Value>,
    pub warnings: Vec<String>,
}

/// amp-workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AmpWorkspaceOutput {
    pub workspace_id: String,
    pub arn: String,
    pub alias: String,
    pub status: String,
    pub prometheus_endpoint: String,
    pub remote_write_url: String,
    /// Found, not created by us: never deleted by us.
    pub adopted: bool,
    /// Created by this run.
    pub created: bool,
    /// Workspaces of ours the input named before, under another alias now carried by this
    /// workspace (recorded as retired): once the new one is in use, `publish` deletes them
    /// (`retainMetrics: false`) or keeps them with their data, no longer ours (omitted when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_workspaces: Vec<String>,
    /// While not ACTIVE: when to look again (the state machine's Wait reads `poll.waitSeconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<Poll>,
}

/// A managed policy we converge and attach.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyOutput {
    pub policy_arn: String,
    pub policy_name: String,
    pub default_version_id: String,
    pub adopted: bool,
    pub created: bool,
    /// A new default version was created by this run.
    pub version_created: bool,
    /// The version deleted to stay within the 5-version limit, if any.
    pub version_pruned: Option<String>,
    /// Attached by this run.
    pub attached: bool,
}

/// grafana-role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrafanaRoleOutput {
    pub role_arn: String,
    pub role_name: String,
    pub adopted: bool,
    pub created: bool,
    pub trust_updated: bool,
    pub read_policy: PolicyOutput,
    /// Grafana roles the input named before (recorded as retired): removed by the datasource
    /// step once the workspace is ACTIVE with this role (omitted when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_roles: Vec<String>,
}

/// grafana-workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrafanaWorkspaceOutput {
    pub workspace_id: String,
    pub arn: String,
    pub name: String,
    pub status: String,
    pub endpoint: String,
    pub url: String,
    pub grafana_version: String,
    pub adopted: bool,
    pub created: bool,
    pub updated: bool,
    /// Workspaces of ours the input named before (recorded as retired): deleted by the
    /// datasource step once this one is ACTIVE with the data source in place (omitted when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_workspaces: Vec<String>,
    /// Input settings this workspace differs from that apply does not change (omitted when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_applied: Vec<NotApplied>,
    /// While not ACTIVE: when to look again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<Poll>,
}

/// An input setting that differs from the live resource and that apply does not change: listed
/// first in the output contract and in the plan, so that no setting is ignored in silence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotApplied {
    /// The input field (`grafana.version`, `grafana.authenticationProviders`).
    pub setting: String,
    /// The resource it is a setting of.
    pub resource: String,
    pub live: Value,
    pub desired: Value,
    /// Why apply leaves it, and how to change it.
    pub why: String,
}

/// The workflow's output contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputContract {
    /// Input settings that differ from the live resources and that apply did not change, and
    /// why (first, so that nobody misses one; omitted when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_applied: Vec<NotApplied>,
    pub deployment_name: String,
    pub account_id: String,
    pub region: String,
    pub irsa_role_arn: String,
    pub amp_workspace_id: String,
    pub amp_workspace_arn: String,
    pub prometheus_endpoint: String,
    pub remote_write_url: String,
    pub write_policy_arn: String,
    pub grafana_role_arn: String,
    pub read_policy_arn: String,
    pub grafana_workspace_id: String,
    pub grafana_url: String,
    pub helm_values_parameter: String,
    /// Resources found rather than created (`ampWorkspace`, `writePolicy`, `grafanaRole`,
    /// `readPolicy`, `grafanaWorkspace`): a later delete never removes them.
    pub adopted: Vec<String>,
    /// AMP workspaces this deployment created and no longer uses (the alias moved to another
    /// workspace), kept with their metrics (`retainMetrics`) but no longer ours: their ownership
    /// tags are removed and the record forgets them, so a later delete never removes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retained: Vec<String>,
    /// The final step's checks (policies, trust, the remote-write probe); also in SSM
    /// `<ssmPrefix>/verification`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerifyOutput>,
}

/// What the state machine needs to answer CloudFormation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CfnContext {
    pub request_type: RequestType,
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    /// The id answered on success.
    pub physical_resource_id: String,
    /// The id answered on failure: CloudFormation's current id (Update, Delete) or the sentinel.
    pub failure_physical_resource_id: String,
}

/// What the step did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasourceOutput {
    pub workspace_id: String,
    pub uid: String,
    pub name: String,
    /// `prometheus` or `grafana-amazonprometheus-datasource` (see [`datasource_type`]).
    #[serde(rename = "type")]
    pub datasource_type: String,
    pub url: String,
    pub is_default: bool,
    pub action: DatasourceAction,
    /// Owned fields that differed and were corrected (`field: live -> desired`); while planning,
    /// the ones apply would correct.
    pub drift: Vec<String>,
    /// Grafana's health-check message (`None` while planning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// The deployment's service account (name only; its tokens are never kept).
    pub service_account: String,
    /// Created by this run.
    pub service_account_created: bool,
    /// Permissions granted by this run (`SSO_USER:<id>`, `SSO_GROUP:<id>`), all `ADMIN`.
    pub admins_added: Vec<String>,
    /// Permissions this deployment had granted that the input no longer lists, revoked by this
    /// run (omitted when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admins_revoked: Vec<String>,
}

/// One check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyCheck {
    /// `irsa-role-policy`, `grafana-role-policy`, `irsa-trust-collector`,
    /// `irsa-trust-preserved`, `remote-write-probe`.
    pub name: String,
    pub passed: bool,
    /// What was checked, or what is missing.
    pub detail: String,
    /// Failed for a reason that may go away by itself (throttling, 5xx, timeouts).
    #[serde(skip)]
    pub transient: bool,
}

/// What verify found (also the SSM value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyOutput {
    pub status: VerifyStatus,
    pub mode: VerifyMode,
    pub policy_method: PolicyMethod,
    /// Why the simulation was not used, when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_method_note: Option<String>,
    /// Which evaluator decided the policy checks: `iam:SimulatePrincipalPolicy`, or
    /// `local (iam:SimulatePrincipalPolicy unavailable (<reason>))` where the endpoint lacks the API.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub evaluator: String,
    pub checks: Vec<VerifyCheck>,
    /// The failed checks' details, `<check>: <detail>`.
    pub failures: Vec<String>,
    /// The SSM parameter holding this result.
    pub parameter: String,
}

/// CloudFormation's request types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

/// What the datasource step did (`created`, `updated`, `unchanged`) or, while planning, would do
/// (`create`, `update`, `none`, or `unknown`: the workspace is not ACTIVE, so its Grafana cannot
/// be read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasourceAction {
    Created,
    Updated,
    Unchanged,
    Create,
    Update,
    None,
    Unknown,
}

/// The verification's outcome: `passed`, `failed` (returned only with `"verify": "warn"`; with
/// `fail` the step fails) or `skipped` (plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyStatus {
    Passed,
    Failed,
    Skipped,
}

/// How the policies were checked: IAM simulated them, we evaluated the documents, or (skipped)
/// neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyMethod {
    #[serde(rename = "iam:SimulatePrincipalPolicy")]
    Simulate,
    #[serde(rename = "policy-evaluation")]
    Evaluate,
    #[serde(rename = "")]
    None,
}

spelled!(ChangeKind { Create => "create", Update => "update", Delete => "delete", None => "none" });
spelled!(PlanAction { Create => "create", Update => "update", None => "none" });
spelled!(RequestType { Create => "Create", Update => "Update", Delete => "Delete" });
spelled!(DatasourceAction {
    Created => "created",
    Updated => "updated",
    Unchanged => "unchanged",
    Create => "create",
    Update => "update",
    None => "none",
    Unknown => "unknown",
});
spelled!(VerifyStatus { Passed => "passed", Failed => "failed", Skipped => "skipped" });
spelled!(PolicyMethod { Simulate => "iam:SimulatePrincipalPolicy", Evaluate => "policy-evaluation", None => "" });

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_spelling<T: Serialize>(v: T) -> String {
        serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
    }

    #[test]
    fn closed_sets_are_spelled_as_serde_writes_them() {
        macro_rules! check {
            ($($ty:ty),+) => {$(
                for v in <$ty>::ALL {
                    assert_eq!(serde_spelling(*v), v.as_str(), "{}", stringify!($ty));
                    let back: $ty = serde_json::from_value(Value::String(v.as_str().into())).unwrap();
                    assert_eq!(back, *v);
                }
            )+};
        }
        check!(ChangeKind, PlanAction, RequestType, DatasourceAction, VerifyStatus, PolicyMethod, Action, VerifyMode);
    }
}
