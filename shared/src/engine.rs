//! Step dispatch (one entry per Lambda) and the in-process runner that chains the steps the way
//! the state machine does. A step does what the input's `action` asks: `apply` converges its
//! resource, `delete` removes what this deployment created, and `plan` (one step that runs every
//! other step without writing) reports what apply would change.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;

use crate::aws::Clients;
use crate::ctx::Preflighted;
use crate::domain::error::{Error, Result};
use crate::domain::input::Action;
use crate::domain::poll::{PollPolicy, Resource};
use crate::state::{
    require, ChangeKind, DeleteOutput, DeletedState, PlanAction, PlanReport, Poll, ProvisionState, StepPlan,
};
use crate::steps::{self, Ctx};

/// Declares [`Step`] and, in [`lambdas`], one type per step of the same name (a step's binary
/// serves its type: `lambda::serve::<lambdas::Preflight>()`), from one list.
macro_rules! steps {
    ($($name:ident),+ $(,)?) => {
        /// Every step (one Lambda each), plus the two status checks of the wait loops.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Step {
            $($name),+
        }

        /// The step types, re-exported by [`lambdas`] beside their `StepLambda` impls.
        mod step_types {
            $(
                #[doc = concat!("The `", stringify!($name), "` step's Lambda.")]
                #[derive(Debug, Clone, Copy)]
                pub struct $name;
            )+
        }
    };
}

steps!(
    Preflight,
    IrsaTrust,
    AmpWorkspace,
    AmpStatus,
    WritePolicy,
    GrafanaRole,
    GrafanaWorkspace,
    GrafanaStatus,
    Datasource,
    Publish,
    Verify,
    Plan,
    Finish,
);

/// The step table, in the state machine's order: each step's kebab-case name (its function's
/// package and binary), where its output goes on `apply` and `plan` (the ASL `ResultPath`
/// without `$.`), and where on `delete` (`None`: the same place).
const TABLE: [(Step, &str, &str, Option<&str>); 13] = [
    (Step::Preflight, "preflight", "preflight", None),
    (Step::IrsaTrust, "irsa-trust", "irsaTrust", Some("deleted.irsaTrust")),
    (Step::AmpWorkspace, "amp-workspace", "ampWorkspace", Some("deleted.ampWorkspace")),
    (Step::AmpStatus, "amp-status", "ampWorkspace", Some("deleted.ampWorkspace")),
    (Step::WritePolicy, "write-policy", "writePolicy", Some("deleted.writePolicy")),
    (Step::GrafanaRole, "grafana-role", "grafanaRole", Some("deleted.grafanaRole")),
    (Step::GrafanaWorkspace, "grafana-workspace", "grafanaWorkspace", Some("deleted.grafanaWorkspace")),
    (Step::GrafanaStatus, "grafana-status", "grafanaWorkspace", Some("deleted.grafanaWorkspace")),
    (Step::Datasource, "datasource", "datasource", Some("deleted.datasource")),
    // Verify runs first; publish puts its result in the output contract (`verification`).
    (Step::Publish, "publish", "output", Some("deleted.outputs")),
    (Step::Verify, "verify", "verification", None),
    (Step::Plan, "plan", "plan", None),
    (Step::Finish, "finish", "finish", None),
];

/// The apply steps in order, without the wait loops' status checks: what `plan` runs.
pub const APPLY_ORDER: [Step; 9] = [
    Step::Preflight,
    Step::IrsaTrust,
    Step::AmpWorkspace,
    Step::WritePolicy,
    Step::GrafanaRole,
    Step::GrafanaWorkspace,
    Step::Verify,
    Step::Publish,
    Step::Datasource,
];

impl Step {
    /// All steps, in the table's order.
    pub const ALL: [Step; 13] = {
        let mut all = [Step::Preflight; 13];
        let mut i = 0;
        while i < TABLE.len() {
            all[i] = TABLE[i].0;
            i += 1;
        }
        all
    };

    fn row(self) -> &'static (Step, &'static str, &'static str, Option<&'static str>) {
        // Every variant has its row (tested); the first row stands in for none.
        TABLE.iter().find(|r| r.0 == self).unwrap_or(&TABLE[0])
    }

    /// kebab-case name: the function's package and binary name.
    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// Where the state machine stores the step's output for `action` (the ASL `ResultPath`
    /// without `$.`): `apply` outputs at the top level, `delete` reports under `deleted`.
    pub fn result_key(self, action: Action) -> &'static str {
        let (_, _, apply, delete) = self.row();
        match (action, delete) {
            (Action::Delete, Some(key)) => key,
            _ => apply,
        }
    }

    /// Looks a step up by its kebab-case name.
    pub fn from_name(name: &str) -> Option<Step> {
        TABLE.iter().find(|r| r.1 == name).map(|r| r.0)
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::Internal(format!("serialising a step output: {e}")))
}

/// The last step of every path: releases the lease this execution holds, then answers
/// CloudFormation when it started the run. CloudFormation is answered even when the release
/// fails (a missing answer would hang the stack for an hour); the release error is then
/// returned after the answer (the lease expires after [`crate::ctx::lease::LEASE_SECONDS`]).
/// On the failure path its output's `cause` is [`crate::cfn::failure_text`], the execution's
/// `Cause`.
pub async fn finish(clients: &Clients, state: &ProvisionState) -> Result<Value> {
    let mut released = Ok(false);
    if let (Some(execution), Ok(ctx)) = (&state.execution, Ctx::new(clients, state).await) {
        if ctx.deployment.action != Action::Plan {
            released = crate::ctx::lease::release(&ctx, execution).await;
        }
    }
    let cfn = crate::cfn::respond_from_state(clients, state).await;
    let released = match released {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "the lease's release failed (CloudFormation answered regardless)");
            return Err(e);
        }
    };
    let mut out = serde_json::json!({ "leaseReleased": released, "cloudFormation": cfn? });
    // A Lambda error reaches the state as `Cause` = the error body's JSON, in a string: the
    // `Failed` state ends the execution with this plain text instead (`$.finish.cause`).
    if let Some(error) = &state.error {
        out["cause"] = Value::String(crate::cfn::failure_text(state, error));
    }
    Ok(out)
}

/// `None` once ACTIVE; otherwise when to look again.
fn next_poll(resource: Resource, prev: Option<Poll>, id: &str, status: &str) -> Result<Option<Poll>> {
    if status == "ACTIVE" {
        return Ok(None);
    }
    PollPolicy::from_env(resource).next_at(prev, crate::ctx::unix_seconds(), id, status).map(Some)
}

/// Runs one step over `state` and returns its output as JSON (what the Lambda returns): the
/// run-time dispatch to the step's [`StepLambda`] (the in-process runner); a step's own binary
/// serves its type directly.
pub async fn run_step(step: Step, clients: &Clients, state: &ProvisionState) -> Result<Value> {
    // Each step's future boxed: one match over them all would be as large as the largest, on
    // the caller's stack.
    match step {
        Step::Preflight => Box::pin(lambdas::Preflight::run(clients, state)).await,
        Step::IrsaTrust => Box::pin(lambdas::IrsaTrust::run(clients, state)).await,
        Step::AmpWorkspace => Box::pin(lambdas::AmpWorkspace::run(clients, state)).await,
        Step::AmpStatus => Box::pin(lambdas::AmpStatus::run(clients, state)).await,
        Step::WritePolicy => Box::pin(lambdas::WritePolicy::run(clients, state)).await,
        Step::GrafanaRole => Box::pin(lambdas::GrafanaRole::run(clients, state)).await,
        Step::GrafanaWorkspace => Box::pin(lambdas::GrafanaWorkspace::run(clients, state)).await,
        Step::GrafanaStatus => Box::pin(lambdas::GrafanaStatus::run(clients, state)).await,
        Step::Datasource => Box::pin(lambdas::Datasource::run(clients, state)).await,
        Step::Publish => Box::pin(lambdas::Publish::run(clients, state)).await,
        Step::Verify => Box::pin(lambdas::Verify::run(clients, state)).await,
        Step::Plan => Box::pin(lambdas::Plan::run(clients, state)).await,
        Step::Finish => Box::pin(lambdas::Finish::run(clients, state)).await,
    }
}

/// An apply step of [`plan`], over the plan-mode context.
async fn run_apply_step(step: Step, ctx: &Ctx, state: &ProvisionState) -> Result<Value> {
    match step {
        Step::Preflight => Box::pin(lambdas::Preflight::apply(ctx, state)).await,
        Step::IrsaTrust => Box::pin(lambdas::IrsaTrust::apply(ctx, state)).await,
        Step::AmpWorkspace => Box::pin(lambdas::AmpWorkspace::apply(ctx, state)).await,
        Step::WritePolicy => Box::pin(lambdas::WritePolicy::apply(ctx, state)).await,
        Step::GrafanaRole => Box::pin(lambdas::GrafanaRole::apply(ctx, state)).await,
        Step::GrafanaWorkspace => Box::pin(lambdas::GrafanaWorkspace::apply(ctx, state)).await,
        Step::Datasource => Box::pin(lambdas::Datasource::apply(ctx, state)).await,
        Step::Publish => Box::pin(lambdas::Publish::apply(ctx, state)).await,
        Step::Verify => Box::pin(lambdas::Verify::apply(ctx, state)).await,
        Step::AmpStatus | Step::GrafanaStatus | Step::Plan | Step::Finish => {
            Err(Error::Internal(format!("{} is not a step of plan", step.name())))
        }
    }
}

/// What one step's Lambda runs, as a type. A step's binary serves exactly its own type
/// (`lambda::serve::<lambdas::Preflight>()`), so that it links that step's code and AWS calls and
/// no other step's; [`run_step`] dispatches to the same types at run time.
pub trait StepLambda {
    /// The step.
    const STEP: Step;

    /// The whole invocation: the context for the input (validation, region, target account),
    /// then [`StepLambda::apply`] or, when the input's `action` is `delete`,
    /// [`StepLambda::delete`].
    fn run<'a>(clients: &'a Clients, state: &'a ProvisionState) -> impl Future<Output = Result<Value>> + Send + 'a {
        async move {
            let ctx = Ctx::new(clients, state).await?;
            match ctx.deployment.action {
                Action::Delete => Self::delete(&ctx, state).await,
                Action::Plan | Action::Apply => Self::apply(&ctx, state).await,
            }
        }
    }

    /// `apply` (and, over a plan-mode context, `plan`).
    fn apply<'a>(ctx: &'a Ctx, state: &'a ProvisionState) -> impl Future<Output = Result<Value>> + Send + 'a;

    /// `delete`: by default, nothing to do.
    fn delete<'a>(_ctx: &'a Ctx, _state: &'a ProvisionState) -> impl Future<Output = Result<Value>> + Send + 'a {
        async { Err(Error::Internal(format!("the {} step has nothing to do on delete", Self::STEP.name()))) }
    }
}

/// One type per step (see [`StepLambda`]); the name is the [`Step`]'s.
pub mod lambdas {
    use super::*;

    pub use super::step_types::*;

    /// Steps whose apply is `steps::<module>::run` and whose delete is `steps::<module>::delete`,
    /// outputs as they are (`tests/lint/test_template.py` reads this list too).
    macro_rules! run_and_delete {
        ($($name:ident => $module:ident),+ $(,)?) => {$(
            impl StepLambda for $name {
                const STEP: Step = Step::$name;
                async fn apply(ctx: &Ctx, state: &ProvisionState) -> Result<Value> {
                    to_json(&steps::$module::run(ctx, state).await?)
                }
                async fn delete(ctx: &Ctx, state: &ProvisionState) -> Result<Value> {
                    to_json(&steps::$module::delete(ctx, state).await?)
                }
            }
        )+};
    }
    run_and_delete!(
        IrsaTrust => irsa_trust,
        WritePolicy => write_policy,
        GrafanaRole => grafana_role,
        Datasource => datasource,
    );

    impl StepLambda for Preflight {
        const STEP: Step = Step::Preflight;
        /// Validation, then (before any other AWS call of the run) the proof that a
        /// `cloudFormation` block in the state is the request `cfn-handler` started this
        /// execution for ([`crate::cfn::check_provenance`], in this function's own account).
        fn run<'a>(clients: &'a Clients, state: &'a ProvisionState) -> impl Future<Output = Result<Value>> + Send + 'a {
            preflight_entry(clients, state)
        }
        async fn apply(ctx: &Ctx, state: &ProvisionState) -> Result<Value> {
            to_json(&steps::preflight::run(ctx, state).await?)
        }
        async fn delete(ctx: &Ctx, state: &ProvisionState) -> Result<Value> {
            to_json(&steps::preflight::run(ctx, state).await?)
        }
    }

    impl StepLambda for AmpWorkspace {
        const STEP: Step = Step::AmpWorkspace;
        async fn apply(ctx: &Ctx, state: &ProvisionState) -> Result<Value> {
            let mut out = steps::amp_workspace::run(ctx, state).await?;
            out.poll = next_poll(Resource::Amp, None, &out.workspace_id, &out.status)?;
            to_json(&out)
        }
        async fn delete(ctx: &Ctx, state: &ProvisionState) -> Result<Value> {
            to_json(&steps::amp_workspace::delete(ctx, state).await?)
        }
    }

    impl StepLambda for AmpStatus {
        const STEP: Step = Step::AmpStatus;
        async fn apply(ctx: &Ctx, state: &ProvisionState) -> Result<Value> {
            let prev = require(&state.amp_workspace, "amp-workspace")?;
            let mut now = steps::amp_workspace::describe(ctx, &prev.workspace_id).await?;
            now.adopted = prev.adopted;
            now.created = prev.created;
            now.retired_workspaces = prev.retired_workspaces.clone();
            if steps::amp_workspace::FAILED_STATUSES.contains(&now.status.as_str()) {
                return Err(Error::ResourceFailed(format!("AMP workspace {} is {}", now.workspace_id, now.status)));
            }
            now.poll = next_poll(Resource::Amp, prev.poll, &now.workspace_id, &now.status)?;
            to_json(&now)
        }
    }

    impl StepLambda for GrafanaWorkspace {
        const STEP: Step = Step::GrafanaWorkspace;
        async fn apply(ctx: &Ctx, state: &ProvisionState) -> Result<Value> {
            let mut out = steps::grafana_workspace::run(ctx, state).await?;
            out.poll = next_poll(Resource::Grafana, None, &out.workspace_id, &out.status)?;
            to_json(&out)
        }
        async fn delete(ctx: &Ctx, state: &ProvisionState) -> Result<Value> {
            let mut out = steps::grafana_workspace::delete(ctx, state).await?;
            out.poll = deletion_poll(&out, None)?;
            to_json(&out)
        }
    }

    impl StepLambda for GrafanaStatus {
        const STEP: Step = Step::GrafanaStatus;
        async fn apply(ctx: &Ctx, state: &ProvisionState) -> Result<Value> {
            let pre = require(&state.preflight, "preflight")?;
            let prev = require(&state.grafana_workspace, "grafana-workspace")?;
            let mut now = steps::grafana_workspace::describe(ctx, &pre.account_id, &prev.workspace_id).await?;
            now.created = prev.created;
            now.updated = prev.updated;
            now.adopted = prev.adopted;
            now.retired_workspaces = prev.retired_workspaces.clone();
            now.not_applied = prev.not_applied.clone();
            if steps::grafana_workspace::FAILED_STATUSES.contains(&now.status.as_str()) {
                return Err(Error::ResourceFailed(format!("Grafana workspace {} is {}", now.workspace_id, now.status)));
            }
            now.poll = next_poll(Resource::Grafana, prev.poll, &now.workspace_id, &now.status)?;
            to_json(&now)
        }
        async fn delete(ctx: &Ctx, state: &ProvisionState) -> Result<Value> {
            let prev = state.deleted.as_ref().and_then(|d| d.grafana_workspace.clone()).unwrap_or_default();
            let Some(id) = prev.id.clone() else { return to_json(&prev) };
            let poll = prev.poll;
            let mut out = steps::grafana_workspace::delete_status(ctx, &id, prev).await?;
            out.poll = deletion_poll(&out, poll)?;
            to_json(&out)
        }
    }

    impl StepLambda for Publish {
        const STEP: Step = Step::Publish;
        async fn apply(ctx: &Ctx, state: &ProvisionState) -> Result<Value> {
            to_json(&steps::publish::run(ctx, state).await?)
        }
        async fn delete(ctx: &Ctx, _state: &ProvisionState) -> Result<Value> {
            to_json(&steps::publish::delete(ctx).await?)
        }
    }

    impl StepLambda for Verify {
        const STEP: Step = Step::Verify;
        async fn apply(ctx: &Ctx, state: &ProvisionState) -> Result<Value> {
            to_json(&steps::verify::run(ctx, state).await?)
        }
    }

    /// Every apply step without writing: runs only with `"action": "plan"`.
    impl StepLambda for Plan {
        const STEP: Step = Step::Plan;
        async fn apply(ctx: &Ctx, state: &ProvisionState) -> Result<Value> {
            to_json(&plan(ctx, state).await?)
        }
    }

    /// Finishing must work whatever went wrong, invalid input included: no context first.
    impl StepLambda for Finish {
        const STEP: Step = Step::Finish;
        fn run<'a>(clients: &'a Clients, state: &'a ProvisionState) -> impl Future<Output = Result<Value>> + Send + 'a {
            finish(clients, state)
        }
        async fn apply(_ctx: &Ctx, _state: &ProvisionState) -> Result<Value> {
            Err(Error::Internal("finish runs without a context".into()))
        }
    }
}

/// `preflight`'s whole invocation (see [`lambdas::Preflight`]'s `run`).
async fn preflight_entry(clients: &Clients, state: &ProvisionState) -> Result<Value> {
    let prepared = Ctx::for_preflight(clients, state).await?;
    if let Some(cfn) = &state.cloud_formation {
        crate::cfn::check_provenance(clients, state.execution.as_deref(), cfn).await?;
    }
    match prepared {
        Preflighted::Ready(ctx, completed) => {
            let mut out = steps::preflight::run(&ctx, state).await?;
            out.input = completed;
            to_json(&out)
        }
        Preflighted::NothingRecorded { clients, region, note } => {
            to_json(&steps::preflight::nothing_recorded(&clients, &state.input, &region, note).await?)
        }
    }
}

fn deletion_poll(out: &DeleteOutput, prev: Option<Poll>) -> Result<Option<Poll>> {
    match (out.status.as_deref(), out.id.as_deref()) {
        (Some("DELETING"), Some(id)) => PollPolicy::from_env(Resource::Grafana).next(prev, id, "DELETING").map(Some),
        _ => Ok(None),
    }
}

/// Runs every apply step without writing (the context is in plan mode) and reports, per step,
/// what apply would do.
pub async fn plan(ctx: &Ctx, state: &ProvisionState) -> Result<PlanReport> {
    if !ctx.is_plan() {
        return Err(Error::validation("action", "the plan step runs only with \"action\": \"plan\""));
    }
    // The record where it is now (an `ssmPrefix` change not applied yet keeps it under the old).
    let planning = crate::ctx::registry::for_plan(ctx).await?;
    let ctx = &planning;
    let mut st = state.clone();
    let order = APPLY_ORDER;
    for step in order {
        if step == Step::Preflight && st.preflight.is_some() {
            continue;
        }
        let out = run_apply_step(step, ctx, &st).await?;
        apply_output(&mut st, step, out)?;
    }
    let changes = ctx.plan.as_ref().map(|p| p.changes()).unwrap_or_default();
    let steps: Vec<StepPlan> = order
        .iter()
        .map(|s| {
            let mine: Vec<_> = changes.iter().filter(|c| c.step == s.name()).cloned().collect();
            let action = if mine.iter().any(|c| c.action == ChangeKind::Create) {
                PlanAction::Create
            } else if mine.iter().any(|c| c.action != ChangeKind::None) {
                PlanAction::Update
            } else {
                PlanAction::None
            };
            StepPlan { step: s.name().to_string(), action, changes: mine }
        })
        .collect();
    Ok(PlanReport {
        deployment_name: ctx.deployment.name.clone(),
        changes: changes.iter().filter(|c| c.action != ChangeKind::None).count(),
        summary: crate::state::PlanSummary::of(&changes),
        not_applied: st.grafana_workspace.as_ref().map(|w| w.not_applied.clone()).unwrap_or_default(),
        steps,
    })
}

/// Stores a step's output in the state, as the state machine's `ResultPath` does.
pub fn apply_output(state: &mut ProvisionState, step: Step, output: Value) -> Result<()> {
    let action: Action =
        state.input.get("action").and_then(|a| serde_json::from_value(a.clone()).ok()).unwrap_or_default();
    let mut doc = to_json(state)?;
    let mut target = &mut doc;
    let key = step.result_key(action);
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        let Some(obj) = target.as_object_mut() else {
            return Err(Error::Internal(format!("state is not an object at {key}")));
        };
        if parts.peek().is_none() {
            obj.insert(part.to_string(), output);
            break;
        }
        target = obj.entry(part.to_string()).or_insert_with(|| Value::Object(Default::default()));
    }
    *state = serde_json::from_value(doc).map_err(|e| Error::Internal(format!("step {} output: {e}", step.name())))?;
    Ok(())
}

/// How long the in-process runner waits for workspaces (the state machine uses
/// [`PollPolicy`] instead).
#[derive(Debug, Clone, Copy)]
pub struct WaitPolicy {
    pub first_interval: Duration,
    pub max_interval: Duration,
    pub max_total: Duration,
}

impl Default for WaitPolicy {
    fn default() -> Self {
        Self {
            first_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(60),
            max_total: Duration::from_secs(40 * 60),
        }
    }
}

async fn wait_until(
    step: Step,
    clients: &Clients,
    state: &mut ProvisionState,
    wait: &WaitPolicy,
    done: impl Fn(&ProvisionState) -> Option<String>,
    target: &str,
) -> Result<()> {
    let mut interval = wait.first_interval;
    let mut waited = Duration::ZERO;
    while done(state).as_deref() != Some(target) {
        if waited >= wait.max_total {
            return Err(Error::ResourceFailed(format!(
                "{} did not become {target} within {}s (status {:?})",
                step.name(),
                wait.max_total.as_secs(),
                done(state)
            )));
        }
        tokio::time::sleep(interval).await;
        waited += interval;
        interval = (interval * 2).min(wait.max_interval);
        let out = run_step(step, clients, state).await?;
        apply_output(state, step, out)?;
    }
    Ok(())
}

async fn run_chain(clients: &Clients, state: &mut ProvisionState, chain: &[Step]) -> Result<()> {
    for &step in chain {
        let out = run_step(step, clients, state).await?;
        apply_output(state, step, out)?;
    }
    Ok(())
}

/// Runs the whole workflow in-process (same steps, same order as the state machine), for the
/// input's action.
pub async fn run(clients: &Clients, input: Value, wait: &WaitPolicy) -> Result<ProvisionState> {
    let mut state = ProvisionState::new(input);
    state.run = Some(local_run_id());
    run_chain(clients, &mut state, &[Step::Preflight]).await?;
    let pre = require(&state.preflight, "preflight")?;
    if pre.nothing_recorded {
        state.deleted = Some(DeletedState { note: pre.note.clone(), ..DeletedState::default() });
        return Ok(state);
    }
    match pre.action {
        Action::Plan => run_chain(clients, &mut state, &[Step::Plan]).await?,
        Action::Delete => {
            state.deleted = Some(DeletedState::default());
            run_chain(clients, &mut state, &[Step::Datasource, Step::GrafanaWorkspace]).await?;
            let gone = |s: &ProvisionState| {
                s.deleted.as_ref().and_then(|d| d.grafana_workspace.as_ref()).and_then(|g| g.status.clone())
            };
            wait_until(Step::GrafanaStatus, clients, &mut state, wait, gone, steps::grafana_workspace::DELETED).await?;
            run_chain(
                clients,
                &mut state,
                &[Step::GrafanaRole, Step::WritePolicy, Step::AmpWorkspace, Step::IrsaTrust, Step::Publish],
            )
            .await?;
        }
        Action::Apply => {
            // The critical path (as the state machine): both workspaces are started before
            // either is waited for; the values are published once the data path is ready.
            let started =
                [Step::IrsaTrust, Step::AmpWorkspace, Step::WritePolicy, Step::GrafanaRole, Step::GrafanaWorkspace];
            run_chain(clients, &mut state, &started).await?;
            let amp = |s: &ProvisionState| s.amp_workspace.as_ref().map(|w| w.status.clone());
            wait_until(Step::AmpStatus, clients, &mut state, wait, amp, "ACTIVE").await?;
            run_chain(clients, &mut state, &[Step::Verify, Step::Publish]).await?;
            let grafana = |s: &ProvisionState| s.grafana_workspace.as_ref().map(|w| w.status.clone());
            wait_until(Step::GrafanaStatus, clients, &mut state, wait, grafana, "ACTIVE").await?;
            run_chain(clients, &mut state, &[Step::Datasource]).await?;
        }
    }
    Ok(state)
}

/// A run id unique to this in-process run (the process and the time, to the nanosecond, and a
/// counter).
fn local_run_id() -> String {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("local-{:x}-{nanos:x}-{n}", std::process::id())
}

/// Same as [`run`]: kept as the name callers use when they provision.
pub async fn provision(clients: &Clients, input: Value, wait: &WaitPolicy) -> Result<ProvisionState> {
    run(clients, input, wait).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_has_its_own_row() {
        for s in Step::ALL {
            assert_eq!(s.row().0, s, "{s:?}");
        }
        let mut names: Vec<_> = Step::ALL.iter().map(|s| s.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLE.len());
    }

    #[test]
    fn step_names_round_trip() {
        for s in Step::ALL {
            assert_eq!(Step::from_name(s.name()), Some(s));
        }
        assert_eq!(Step::from_name("nope"), None);
    }

    #[test]
    fn outputs_land_where_the_state_machine_puts_them() {
        let mut st = ProvisionState::new(serde_json::json!({"deploymentName": "d", "action": "delete"}));
        apply_output(&mut st, Step::IrsaTrust, serde_json::json!({"deleted": ["x"], "retained": []})).unwrap();
        assert_eq!(st.deleted.unwrap().irsa_trust.unwrap().deleted, vec!["x".to_string()]);
    }
}
