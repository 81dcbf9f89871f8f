//! One run at a time per deployment: a lease in SSM (`/o11y-provisioner/leases/<deploymentName>`,
//! independent of `ssmPrefix`, so that runs of one deployment exclude each other whatever
//! prefixes their inputs name), taken by `preflight`
//! (after validation, for `apply` and `delete`; a plan takes none: the write gate skips it) and released by `finish` on
//! every path. A run that finds another live run's lease fails with `ConflictError` ("another run
//! holds the deployment"); a lease whose holder died expires after [`LEASE_SECONDS`] (longer than
//! the state machine's own timeout).
//!
//! SSM has no compare-and-swap: taking a free lease is a create that fails when the parameter
//! exists (atomic); taking over an expired one deletes it only if it still holds what was read,
//! then creates, so of two runs racing for an expired lease at most one create succeeds.

use serde::{Deserialize, Serialize};

use crate::aws::sdk::from_sdk;
use crate::aws::ssm;
use crate::ctx::Ctx;
use crate::domain::error::{Error, Result};

/// Lease lifetime: the state machine's timeout (3,000 s) and a margin.
pub const LEASE_SECONDS: u64 = 3600;

/// The lease's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// The execution holding it.
    pub holder: String,
    /// Unix seconds after which it is free.
    pub expires: u64,
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn name(ctx: &Ctx) -> String {
    crate::ctx::registry::lease_parameter(&ctx.deployment.name)
}

async fn read(ctx: &Ctx) -> Result<Option<(Lease, String)>> {
    Ok(ssm::get_parameter(&ctx.clients.ssm, &name(ctx)).await?.map(|raw| {
        let lease = serde_json::from_str(&raw).unwrap_or(Lease { holder: String::new(), expires: 0 });
        (lease, raw)
    }))
}

/// Deletes the lease parameter (through the gate; gone already is fine).
async fn remove(ctx: &Ctx) -> Result<()> {
    ctx.write_unreported(|| async {
        match ctx.clients.ssm.delete_parameter().name(name(ctx)).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_not_found()) => Ok(()),
            Err(e) => Err(from_sdk("ssm:DeleteParameter", e)),
        }
    })
    .await
    .map(|_| ())
}

/// Creates the lease parameter if it does not exist (through the gate): `Some(false)` when it
/// exists, `None` while planning (a plan takes no lease).
async fn create(ctx: &Ctx, lease: &Lease) -> Result<Option<bool>> {
    let value = serde_json::to_string(lease).map_err(|e| Error::Internal(e.to_string()))?;
    let created = ctx
        .write_unreported(|| async {
            let res = ctx
                .clients
                .ssm
                .put_parameter()
                .name(name(ctx))
                .value(value)
                .r#type(aws_sdk_ssm::types::ParameterType::String)
                .description("o11y-provisioner: the run currently changing this deployment")
                .send()
                .await;
            match res {
                Ok(_) => Ok(true),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_already_exists()) => Ok(false),
                Err(e) => Err(from_sdk("ssm:PutParameter", e)),
            }
        })
        .await?;
    Ok(created)
}

/// Takes the lease for `holder`, or fails with `ConflictError` naming the run that holds it.
/// Taking it again by the same holder (a retried step) succeeds.
pub async fn acquire(ctx: &Ctx, holder: &str) -> Result<()> {
    let mine = Lease { holder: holder.to_string(), expires: now() + LEASE_SECONDS };
    for _ in 0..3 {
        match create(ctx, &mine).await? {
            None => return Ok(()),
            Some(true) => {
                tracing::info!(holder = %holder, "lease taken");
                return Ok(());
            }
            Some(false) => {}
        }
        match read(ctx).await? {
            None => continue,
            Some((held, _)) if held.holder == holder => return Ok(()),
            Some((held, raw)) if held.expires <= now() => {
                // Expired: remove it only if it is still the one we read.
                if read(ctx).await?.map(|(_, r)| r) == Some(raw) {
                    remove(ctx).await?;
                }
            }
            Some((held, _)) => {
                return Err(Error::Conflict(format!(
                    "another run holds the deployment {:?}: execution {} (lease until {}); wait for it to finish, \
                     then run again",
                    ctx.deployment.name, held.holder, held.expires
                )))
            }
        }
    }
    Err(Error::Conflict(format!("another run holds the deployment {:?}: the lease kept changing", ctx.deployment.name)))
}

/// Releases the lease if `holder` holds it; `Ok(false)` otherwise.
pub async fn release(ctx: &Ctx, holder: &str) -> Result<bool> {
    match read(ctx).await? {
        Some((held, _)) if held.holder == holder => {
            remove(ctx).await?;
            tracing::info!(holder = %holder, "lease released");
            Ok(true)
        }
        _ => Ok(false),
    }
}
