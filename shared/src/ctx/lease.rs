//! One run at a time per deployment: a lease in SSM, independent of `ssmPrefix` (so that runs of
//! one deployment exclude each other whatever prefixes their inputs name), taken by `preflight`
//! (after validation, for `apply` and `delete`; a plan takes none: the write gate skips it) and
//! released by `finish` on every path, and by `cfn-handler` when an execution ends `TIMED_OUT` or
//! `ABORTED`. A run that finds another live run's lease fails with `ConflictError` ("another run
//! holds the deployment"); a lease whose holder died expires after [`LEASE_SECONDS`] (longer than
//! the state machine's own timeout).
//!
//! Layout: one String parameter per *generation*, `/o11y-provisioner/leases/<name>/<N>` holding
//! `{"holder", "expires"}` (the old single parameter `/o11y-provisioner/leases/<name>` of earlier
//! versions counts as generation 0). SSM has no compare-and-swap, but `PutParameter` without
//! `Overwrite` is an atomic create, so every acquisition is exactly one create:
//! - free (no generation) → create generation 1; an expired top generation `N` → create `N + 1`.
//!   Of the runs racing for the same `N + 1` exactly one create succeeds; the others re-read and
//!   find the winner's live generation (`ConflictError`).
//! - after its create the winner re-lists: it holds the lease only if no *other* live generation
//!   exists (else it deletes its own and refuses). Of two creates, the later one's check sees the
//!   earlier one, so two runs never both hold, even when released numbers are reused.
//! - release deletes the holder's own generations and the expired ones of others.

use aws_sdk_ssm::types::ParameterType;
use serde::{Deserialize, Serialize};

use crate::aws::sdk::from_sdk;
use crate::aws::ssm;
use crate::ctx::{unix_seconds as now, Ctx};
use crate::domain::error::{Error, Result};

/// Lease lifetime: the state machine's timeout (3,000 s) and a margin.
pub const LEASE_SECONDS: u64 = 3600;

/// The lease's value (one generation's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// The execution holding it.
    pub holder: String,
    /// Unix seconds after which it is free.
    pub expires: u64,
}

/// One generation as read: its parameter name, number and value.
#[derive(Debug, Clone)]
struct Generation {
    name: String,
    number: u64,
    lease: Lease,
}

impl Generation {
    fn live(&self, now: u64) -> bool {
        self.lease.expires > now
    }
}

/// The old layout's parameter (generation 0), and the path below which the generations live.
fn base(ctx: &Ctx) -> String {
    crate::ctx::registry::lease_parameter(&ctx.deployment.name)
}

fn parse(raw: &str) -> Lease {
    // Unreadable: treat as expired (it can then be taken over and cleaned).
    serde_json::from_str(raw).unwrap_or(Lease { holder: String::new(), expires: 0 })
}

/// Every generation that exists, lowest number first.
async fn generations(ctx: &Ctx) -> Result<Vec<Generation>> {
    let base = base(ctx);
    let mut out = Vec::new();
    if let Some(raw) = ssm::get_parameter(&ctx.clients.ssm, &base).await? {
        out.push(Generation { name: base.clone(), number: 0, lease: parse(&raw) });
    }
    let mut pages = ctx.clients.ssm.get_parameters_by_path().path(&base).recursive(false).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| from_sdk("ssm:GetParametersByPath", e))?;
        for p in page.parameters() {
            let Some(name) = p.name() else { continue };
            let Some(number) = name.rsplit('/').next().and_then(|n| n.parse::<u64>().ok()) else { continue };
            out.push(Generation { name: name.to_string(), number, lease: parse(p.value().unwrap_or_default()) });
        }
    }
    out.sort_by_key(|g| g.number);
    Ok(out)
}

/// Deletes one generation (through the gate; gone already is fine).
async fn remove(ctx: &Ctx, name: &str) -> Result<()> {
    ctx.write_unreported(|| async {
        match ctx.clients.ssm.delete_parameter().name(name).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_not_found()) => Ok(()),
            Err(e) => Err(from_sdk("ssm:DeleteParameter", e)),
        }
    })
    .await
    .map(|_| ())
}

/// Creates generation `number` if it does not exist (through the gate; atomic): `Some(false)`
/// when it exists, `None` while planning (a plan takes no lease).
async fn create(ctx: &Ctx, number: u64, lease: &Lease) -> Result<Option<bool>> {
    let value = serde_json::to_string(lease).map_err(|e| Error::Internal(e.to_string()))?;
    let name = ssm::parameter_name(&base(ctx), &number.to_string());
    ctx.write_unreported(|| async {
        let res = ctx
            .clients
            .ssm
            .put_parameter()
            .name(&name)
            .value(value)
            .r#type(ParameterType::String)
            .description("o11y-provisioner: the run currently changing this deployment")
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_already_exists()) => Ok(false),
            Err(e) => Err(from_sdk("ssm:PutParameter", e)),
        }
    })
    .await
}

fn held_by_other(ctx: &Ctx, held: &Lease) -> Error {
    Error::Conflict(format!(
        "another run holds the deployment {:?}: execution {} (lease until {}); wait for it to finish, then run again",
        ctx.deployment.name, held.holder, held.expires
    ))
}

/// Takes the lease for `holder`, or fails with `ConflictError` naming the run that holds it.
/// Taking it again by the same holder (a retried step) succeeds.
pub async fn acquire(ctx: &Ctx, holder: &str) -> Result<()> {
    if ctx.plan.is_some() {
        return Ok(());
    }
    let mine = Lease { holder: holder.to_string(), expires: now() + LEASE_SECONDS };
    for _ in 0..3 {
        let t = now();
        let gens = generations(ctx).await?;
        if gens.iter().any(|g| g.lease.holder == holder && g.live(t)) {
            return Ok(());
        }
        let top = gens.last();
        if let Some(held) = top.filter(|g| g.live(t)) {
            return Err(held_by_other(ctx, &held.lease));
        }
        let number = top.map_or(1, |g| g.number + 1);
        match create(ctx, number, &mine).await? {
            None => return Ok(()),
            Some(false) => continue, // another run took it first: re-read
            Some(true) => {}
        }
        // Created: hold it only if no other live generation exists (a run that created earlier).
        let t = now();
        let after = generations(ctx).await?;
        if let Some(other) = after.iter().find(|g| g.number != number && g.lease.holder != holder && g.live(t)) {
            let err = held_by_other(ctx, &other.lease);
            remove(ctx, &ssm::parameter_name(&base(ctx), &number.to_string())).await?;
            return Err(err);
        }
        for old in after.iter().filter(|g| g.number < number && !g.live(t)) {
            remove(ctx, &old.name).await?;
        }
        tracing::info!(holder = %holder, generation = number, "lease taken");
        return Ok(());
    }
    Err(Error::Conflict(format!("another run holds the deployment {:?}: the lease kept changing", ctx.deployment.name)))
}

/// Releases the lease if `holder` holds it (every generation of its own) and removes expired
/// generations of others; `Ok(false)` when `holder` held none.
pub async fn release(ctx: &Ctx, holder: &str) -> Result<bool> {
    let t = now();
    let mut released = false;
    for g in generations(ctx).await? {
        if g.lease.holder == holder {
            remove(ctx, &g.name).await?;
            released = true;
        } else if !g.live(t) {
            remove(ctx, &g.name).await?;
        }
    }
    if released {
        tracing::info!(holder = %holder, "lease released");
    }
    Ok(released)
}
