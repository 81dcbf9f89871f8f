//! The deployment's access to its Grafana workspace's HTTP API: its service account (found by
//! name, or created with role `ADMIN`), and one short-lived token per run that [`with_token`]
//! deletes after the work, whatever its result. Every write passes the context's gate; the
//! token is the one write a plan makes too ([`crate::ctx::Ctx::write_in_plan_too`]).

use std::future::Future;
use std::time::Duration;

use aws_sdk_grafana::types::Role;

use crate::aws::grafana_http::{
    check_service_account, service_account_name, token_name, ApiKey, GrafanaApi, ServiceAccount,
    PLAN_TOKEN_SECONDS_TO_LIVE, TOKEN_SECONDS_TO_LIVE,
};
use crate::aws::sdk::from_sdk;
use crate::ctx::Ctx;
use crate::domain::error::{Error, Result};

/// The service account named `name` in the workspace, if any.
pub async fn find_service_account(ctx: &Ctx, workspace_id: &str, name: &str) -> Result<Option<ServiceAccount>> {
    let mut pages =
        ctx.clients.grafana.list_workspace_service_accounts().workspace_id(workspace_id).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| from_sdk("grafana:ListWorkspaceServiceAccounts", e))?;
        if let Some(sa) = page.service_accounts().iter().find(|sa| sa.name() == name) {
            return Ok(Some(ServiceAccount {
                id: sa.id().to_string(),
                name: sa.name().to_string(),
                role: sa.grafana_role().as_str().to_string(),
                disabled: sa.is_disabled() == "true",
            }));
        }
    }
    Ok(None)
}

/// Finds the deployment's service account by name, or creates it with role `ADMIN` (never while
/// planning: `None` then). Returns it and whether it was created.
pub async fn ensure_service_account(ctx: &Ctx, workspace_id: &str) -> Result<(Option<ServiceAccount>, bool)> {
    let name = service_account_name(&ctx.deployment.name);
    if let Some(sa) = find_service_account(ctx, workspace_id, &name).await? {
        check_service_account(workspace_id, &sa)?;
        return Ok((Some(sa), false));
    }
    let created = ctx
        .write_unreported(|| async {
            Ok(ctx
                .clients
                .grafana
                .create_workspace_service_account()
                .workspace_id(workspace_id)
                .name(&name)
                .grafana_role(Role::Admin)
                .send()
                .await)
        })
        .await?;
    let Some(out) = created else { return Ok((None, true)) };
    match out {
        Ok(o) => {
            tracing::info!(workspace_id, service_account_id = o.id(), name = %name, "Grafana service account created");
            Ok((
                Some(ServiceAccount {
                    id: o.id().to_string(),
                    name,
                    role: Role::Admin.as_str().to_string(),
                    disabled: false,
                }),
                true,
            ))
        }
        // Created meanwhile (a concurrent run): use it.
        Err(e) if e.as_service_error().is_some_and(|s| s.is_conflict_exception()) => {
            let sa = find_service_account(ctx, workspace_id, &name).await?.ok_or_else(|| {
                Error::Conflict(format!(
                    "Grafana workspace {workspace_id}: service account {name:?} conflicts but cannot be found"
                ))
            })?;
            check_service_account(workspace_id, &sa)?;
            Ok((Some(sa), false))
        }
        Err(e) => Err(from_sdk("grafana:CreateWorkspaceServiceAccount", e)),
    }
}

/// Deletes the service account (idempotent).
pub async fn delete_service_account(ctx: &Ctx, workspace_id: &str, sa_id: &str) -> Result<()> {
    ctx.write_unreported(|| async {
        match ctx
            .clients
            .grafana
            .delete_workspace_service_account()
            .workspace_id(workspace_id)
            .service_account_id(sa_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(()),
            Err(e) => Err(from_sdk("grafana:DeleteWorkspaceServiceAccount", e)),
        }
    })
    .await
    .map(|_| ())
}

/// Deletes a token, retrying transient failures a few times; a token already gone is fine.
async fn delete_token(ctx: &Ctx, workspace_id: &str, sa_id: &str, token_id: &str) -> Result<()> {
    let mut last = None;
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
        let out = ctx
            .write_in_plan_too(|| async {
                Ok(ctx
                    .clients
                    .grafana
                    .delete_workspace_service_account_token()
                    .workspace_id(workspace_id)
                    .service_account_id(sa_id)
                    .token_id(token_id)
                    .send()
                    .await)
            })
            .await?;
        match out {
            Ok(_) => {
                tracing::info!(workspace_id, token_id, "Grafana service-account token deleted");
                return Ok(());
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => return Ok(()),
            Err(e) => {
                let err = from_sdk("grafana:DeleteWorkspaceServiceAccountToken", e);
                if !err.is_retryable() {
                    return Err(err);
                }
                last = Some(err);
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::Internal("token deletion: no attempt made".into())))
}

/// Creates a token of the service account `sa_id` (lifetime [`TOKEN_SECONDS_TO_LIVE`], or
/// [`PLAN_TOKEN_SECONDS_TO_LIVE`] while planning, where this token is the only write), runs
/// `work` with the workspace's API, then deletes the token, whether `work` succeeded or not.
///
/// The result is `work`'s error when it failed (a failed deletion is then logged: the token
/// expires by itself within its lifetime); else the deletion's error, if any; else `work`'s value.
pub async fn with_token<T, F, Fut>(ctx: &Ctx, workspace_id: &str, endpoint: &str, sa_id: &str, work: F) -> Result<T>
where
    F: FnOnce(GrafanaApi) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let seconds_to_live = ctx.per_mode(TOKEN_SECONDS_TO_LIVE, PLAN_TOKEN_SECONDS_TO_LIVE);
    let name = token_name();
    let out = ctx
        .write_in_plan_too(|| async {
            ctx.clients
                .grafana
                .create_workspace_service_account_token()
                .workspace_id(workspace_id)
                .service_account_id(sa_id)
                .name(&name)
                .seconds_to_live(seconds_to_live)
                .send()
                .await
                .map_err(|e| from_sdk("grafana:CreateWorkspaceServiceAccountToken", e))
        })
        .await?;
    let Some(token) = out.service_account_token() else {
        return Err(Error::Internal("grafana:CreateWorkspaceServiceAccountToken returned no token".into()));
    };
    let token_id = token.id().to_string();
    tracing::info!(workspace_id, service_account_id = sa_id, token_id = %token_id, token_name = %name,
        seconds_to_live, "Grafana service-account token created");
    let api = GrafanaApi::new(&ctx.clients, endpoint, ApiKey::new(token.key().to_string()));
    drop(out);
    // The work runs to completion (or error) before the token is deleted, in every case.
    let result = work(api).await;
    let deleted = delete_token(ctx, workspace_id, sa_id, &token_id).await;
    match (result, deleted) {
        (Ok(v), Ok(())) => Ok(v),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(d)) => {
            tracing::warn!(workspace_id, token_id = %token_id, error = %d,
                "could not delete the Grafana token after a failure; it expires by itself");
            Err(e)
        }
    }
}
