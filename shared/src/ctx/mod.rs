//! The step context: the clients for the deployment's region (and target account), the
//! validated deployment, and the one write gate every AWS write of a step passes through
//! ([`Ctx::write`]). Applying, the gate performs the write; planning, it records the
//! [`PlannedChange`] instead, so `plan` is exactly `apply` without its writes and no step decides
//! that for itself. The deployment's own bookkeeping in SSM lives beside it: the record
//! ([`record`]), the lease ([`lease`]) and the account's registry of deployments ([`registry`]).

use std::future::Future;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::aws::Clients;
use crate::domain::error::Result;
use crate::domain::input::{Action, Deployment};
use crate::domain::names;
use crate::domain::scope;
use crate::state::{ChangeKind, PlannedChange, ProvisionState};

pub mod iam_reads;
pub mod lease;
pub mod recall;
pub mod record;
pub mod registry;

/// A placeholder for a value that exists only after apply (plan on a fresh deployment).
pub const KNOWN_AFTER_APPLY: &str = "(known after apply)";

/// What `preflight` runs with ([`Ctx::for_preflight`]).
#[derive(Debug)]
pub enum Preflighted {
    /// The context, and the input completed from the registry when the delete named only the
    /// deployment.
    Ready(Box<Ctx>, Option<Value>),
    /// A delete by name of a deployment nothing records: the clients where it looked (the
    /// region, the target account), the region, and what it found.
    NothingRecorded { clients: Box<Clients>, region: String, note: String },
}

/// Changes collected while planning.
#[derive(Debug, Clone, Default)]
pub struct PlanLog(Arc<Mutex<Vec<PlannedChange>>>);

impl PlanLog {
    /// Everything recorded so far.
    pub fn changes(&self) -> Vec<PlannedChange> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn push(&self, change: PlannedChange) {
        if let Ok(mut v) = self.0.lock() {
            v.push(change);
        }
    }
}

/// A change apply makes, as plan reports it in its place.
#[derive(Debug, Clone)]
pub struct Change {
    /// The step (kebab-case).
    pub step: &'static str,
    pub kind: ChangeKind,
    /// What is changed (a role, a policy, a workspace alias...).
    pub resource: String,
    /// The difference: statements added/removed, settings that differ...
    pub details: Value,
}

impl Change {
    /// A change of `resource` by `step`.
    pub fn new(step: &'static str, kind: ChangeKind, resource: impl Into<String>, details: Value) -> Self {
        Self { step, kind, resource: resource.into(), details }
    }
}

/// What a step runs with: clients for the deployment's region and the validated deployment.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub clients: Clients,
    pub deployment: Deployment,
    /// Set when planning: writes are recorded here instead of made.
    pub plan: Option<PlanLog>,
    /// The execution's name (the in-process runner: its run id, [`ProvisionState::run`]): part
    /// of every client token, so that a Lambda retried within one run repeats its request while
    /// every later run (a create after a delete, a rename back) makes a new one.
    pub execution: Option<String>,
    /// The deployment's record as this invocation last read or wrote it ([`record::load`]).
    pub record_cache: record::RecordCache,
    /// The IAM roles and policies this invocation has read since its last write ([`iam_reads`]).
    pub iam_reads: iam_reads::IamReads,
}

impl Ctx {
    /// Validates the state's input and that the stack's roles may act on its names ([`scope::Scope`]) (a
    /// `ValidationError` before any AWS call), and selects the clients for its region.
    /// With a `target`, every client acts in the target account through `sts:AssumeRole` (the
    /// session named after the execution), built for this invocation only.
    ///
    /// The input is the state's, or, after a delete that named only the deployment, the one
    /// `preflight` completed from the registry ([`recall`]).
    pub async fn new(clients: &Clients, state: &ProvisionState) -> Result<Self> {
        let completed = state.preflight.as_ref().and_then(|p| p.input.as_ref());
        Self::for_input(clients, state, completed.unwrap_or(&state.input)).await
    }

    /// `preflight`'s context: a delete that names only the deployment is completed from its
    /// registry entry first ([`recall::recall`], read in the input's region and target account).
    pub async fn for_preflight(clients: &Clients, state: &ProvisionState) -> Result<Preflighted> {
        if !recall::is_partial_delete(&state.input) {
            return Ok(Preflighted::Ready(Box::new(Self::new(clients, state).await?), None));
        }
        let (region, target) = recall::scope_of(&state.input, clients.region())?;
        let mut scoped = clients.for_region(&region);
        if let Some((account, role)) = &target {
            let role_arn = names::role_arn(names::partition(&region), account, role);
            let name = state.input.get("deploymentName").and_then(Value::as_str).unwrap_or_default();
            scoped = scoped.assume(&role_arn, &session_name(state.execution.as_deref(), name)).await?;
        }
        match recall::recall(&scoped, &state.input, &region).await? {
            recall::Recalled::Complete => Ok(Preflighted::Ready(Box::new(Self::new(clients, state).await?), None)),
            recall::Recalled::Input(input) => {
                Ok(Preflighted::Ready(Box::new(Self::for_input(clients, state, &input).await?), Some(input)))
            }
            recall::Recalled::NothingRecorded(note) => {
                Ok(Preflighted::NothingRecorded { clients: Box::new(scoped), region, note })
            }
        }
    }

    async fn for_input(clients: &Clients, state: &ProvisionState, input: &Value) -> Result<Self> {
        let deployment = scope::resolve(input, clients.region())?;
        let mut clients = clients.for_region(&deployment.region);
        if let Some((account, role)) = &deployment.target {
            let role_arn = names::role_arn(&deployment.partition, account, role);
            clients = clients.assume(&role_arn, &session_name(state.execution.as_deref(), &deployment.name)).await?;
        }
        let plan = (deployment.action == Action::Plan).then(PlanLog::default);
        let execution = state.execution.clone().or_else(|| state.run.clone());
        Ok(Self {
            clients,
            deployment,
            plan,
            execution,
            record_cache: record::RecordCache::default(),
            iam_reads: Default::default(),
        })
    }

    /// The write gate. Applying: performs `write` and returns its result. Planning: records
    /// `change` and returns `None` without calling `write`.
    pub async fn write<T, F, Fut>(&self, change: Change, write: F) -> Result<Option<T>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.report(change);
        let out = self.write_unreported(write).await;
        // Whatever it wrote (a trust policy, a new policy version, a role), IAM is read again.
        if self.plan.is_none() {
            self.iam_reads.forget();
        }
        out
    }

    /// A write that plan neither makes nor reports (the record, the lease): applying, performs
    /// `write`; planning, returns `None`.
    pub async fn write_unreported<T, F, Fut>(&self, write: F) -> Result<Option<T>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        match &self.plan {
            Some(_) => Ok(None),
            None => write().await.map(Some),
        }
    }

    /// A group of writes whose plan needs reads of its own (the data source: plan reads the
    /// live one to report its drift). Applying: runs `write`. Planning: runs `preview`, which
    /// only reads and reports through [`Ctx::report`].
    pub async fn write_or_preview<T, W, WF, P, PF>(&self, write: W, preview: P) -> Result<T>
    where
        W: FnOnce() -> WF,
        WF: Future<Output = Result<T>>,
        P: FnOnce() -> PF,
        PF: Future<Output = Result<T>>,
    {
        match &self.plan {
            Some(_) => preview().await,
            None => write().await,
        }
    }

    /// A write that plan makes too: the one short-lived Grafana token plan reads the live data
    /// source with (created, then deleted). Performed in both modes.
    pub async fn write_in_plan_too<T, F, Fut>(&self, write: F) -> Result<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        write().await
    }

    /// Reports a change that involves no write of its own (a setting that differs but that
    /// apply does not change; an attachment a later gated write makes): recorded when planning.
    pub fn report(&self, change: Change) {
        if let Some(log) = &self.plan {
            log.push(PlannedChange {
                step: change.step.to_string(),
                action: change.kind,
                resource: change.resource,
                details: change.details,
            });
        }
    }

    /// A value that differs between apply and plan (a token's lifetime: plan's only write
    /// lives shorter): `apply` when applying, `plan` when planning.
    pub fn per_mode<T>(&self, apply: T, plan: T) -> T {
        if self.plan.is_some() {
            plan
        } else {
            apply
        }
    }

    /// True when this context only plans: for the plan step itself, which refuses to run in an
    /// apply context.
    pub fn is_plan(&self) -> bool {
        self.plan.is_some()
    }

    /// The idempotency token of a create, update or delete of `kind` (`amp-workspace`,
    /// `grafana-workspace`, ...) with the parameters `request` (the names, ids and settings the
    /// call sends) in `account`: the same for every retry within this run, new for every run and
    /// for every other request. So one token never carries two sets of parameters: a create
    /// after a delete, a rename back (A→B→A) or a second delete of another resource each get
    /// their own.
    pub fn client_token(&self, kind: &str, account: &str, request: &Value) -> String {
        names::client_token(
            &request_kind(kind, request),
            account,
            &self.deployment.region,
            &token_scope(&self.deployment.name, self.execution.as_deref()),
        )
    }

    /// The ownership tags we put on what we create.
    pub fn owner_tags(&self) -> Vec<(String, String)> {
        vec![
            (names::OWNER_TAG.to_string(), self.deployment.name.clone()),
            (names::MANAGED_BY_TAG.to_string(), names::MANAGED_BY_VALUE.to_string()),
        ]
    }

    /// The ownership tags of the IAM resources we create: [`Ctx::owner_tags`] and the region
    /// ([`names::REGION_TAG`]), since IAM is global and the same deployment name may run in
    /// several regions.
    pub fn iam_owner_tags(&self) -> Vec<(String, String)> {
        let mut tags = self.owner_tags();
        tags.push((names::REGION_TAG.to_string(), self.deployment.region.clone()));
        tags
    }

    /// True when `tags` say this deployment, in this region, created the resource (a resource
    /// without the region tag counts as this region's).
    pub fn owns<'a>(&self, tags: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
        names::TaggedOwner::from_tags(tags).is_some_and(|o| o.is(&self.deployment.name, &self.deployment.region))
    }
}

/// `kind` and the request's parameters, canonical (serde_json sorts object keys): what a client
/// token covers besides its scope.
pub fn request_kind(kind: &str, request: &Value) -> String {
    format!("{kind}/{request}")
}

/// Seconds since the epoch (0 on a clock before it): the lease's expiry, the wait loops' start.
pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// What a client token is unique to: the deployment, and the run when there is one.
pub fn token_scope(deployment: &str, execution: Option<&str>) -> String {
    match execution {
        Some(e) => format!("{deployment}/{e}"),
        None => deployment.to_string(),
    }
}

/// The STS session name: `o11y-` and the execution name (or the deployment), cut to the
/// 64 characters of `[\w+=,.@-]` STS allows.
pub fn session_name(execution: Option<&str>, deployment: &str) -> String {
    let raw = format!("o11y-{}", execution.unwrap_or(deployment));
    raw.chars().filter(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(*c)).take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_repeat_within_a_run_and_differ_between_runs() {
        let t =
            |e: Option<&str>| names::client_token("amp-workspace/a", "123456789012", "us-east-1", &token_scope("d", e));
        assert_eq!(t(Some("run-1")), t(Some("run-1")));
        assert_ne!(t(Some("run-1")), t(Some("run-2")));
        assert_ne!(t(Some("run-1")), t(None));
        assert!(t(Some(&"x".repeat(80))).len() <= 64, "AMP and Grafana take at most 64 characters");
    }

    /// The token of `kind` with `request` in run `e`.
    fn token(kind: &str, request: &Value, e: &str) -> String {
        names::client_token(&request_kind(kind, request), "123456789012", "us-east-1", &token_scope("d", Some(e)))
    }

    #[test]
    fn one_client_token_never_carries_two_sets_of_parameters() {
        use serde_json::json;
        // A rename back and forth (A→B→A), within one run and across runs: every request its own.
        let ab = json!({"workspaceId": "ws-1", "alias": "b"});
        let ba = json!({"workspaceId": "ws-1", "alias": "a"});
        let mut seen = std::collections::BTreeSet::new();
        for (req, run) in [(&ab, "r1"), (&ba, "r1"), (&ab, "r2"), (&ba, "r3"), (&ab, "r4")] {
            assert!(seen.insert(token("amp-alias", req, run)), "{req} in {run} reuses a token");
        }
        // A retry of the same request in the same run repeats it (that is the point).
        assert_eq!(token("amp-alias", &ab, "r1"), token("amp-alias", &ab, "r1"));
        // Delete then create again: each create its own token, so does each delete of another workspace.
        let create = json!({"alias": "a"});
        assert_ne!(token("amp-workspace", &create, "r1"), token("amp-workspace", &create, "r2"));
        assert_ne!(
            token("amp-delete", &json!({"workspaceId": "ws-1"}), "r1"),
            token("amp-delete", &json!({"workspaceId": "ws-2"}), "r1")
        );
        // Other settings in the same run (a Grafana create with another role): another token.
        let g1 = json!({"workspaceName": "g", "workspaceRoleArn": "arn:aws:iam::1:role/a"});
        let g2 = json!({"workspaceName": "g", "workspaceRoleArn": "arn:aws:iam::1:role/b"});
        assert_ne!(token("grafana-workspace", &g1, "r1"), token("grafana-workspace", &g2, "r1"));
    }
}
