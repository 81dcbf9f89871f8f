//! grafana-workspace: find the Managed Grafana workspace by exact name, or create it
//! (CURRENT_ACCOUNT, the input's authentication providers, CUSTOMER_MANAGED with the Grafana role,
//! a version checked against `ListVersions`) with a deterministic client token. Reports status;
//! waiting for ACTIVE is the caller's job.

use aws_sdk_grafana::types::{AccountAccessType, AuthenticationProviderTypes, PermissionType, WorkspaceStatus};

use crate::error::{from_sdk, Error, Result};
use crate::names;
use crate::state::{require, GrafanaWorkspaceOutput, ProvisionState};
use crate::steps::{grafana_role, Ctx};

/// Statuses from which a workspace never becomes ACTIVE without someone acting.
pub const FAILED_STATUSES: &[&str] = &[
    "FAILED",
    "CREATION_FAILED",
    "DELETION_FAILED",
    "UPDATE_FAILED",
    "UPGRADE_FAILED",
    "LICENSE_REMOVAL_FAILED",
    "VERSION_UPDATE_FAILED",
];

/// The workspace ARN (Grafana's describe output has no ARN field).
pub fn workspace_arn(partition: &str, region: &str, account: &str, id: &str) -> String {
    format!("arn:{partition}:grafana:{region}:{account}:/workspaces/{id}")
}

/// Finds or creates the workspace.
pub async fn run(ctx: &Ctx, state: &ProvisionState) -> Result<GrafanaWorkspaceOutput> {
    let pre = require(&state.preflight, "preflight")?;
    let role = require(&state.grafana_role, "grafana-role")?;
    let d = &ctx.deployment;
    let g = &ctx.clients.grafana;

    let matches = find_by_name(ctx, &d.grafana_workspace_name).await?;
    let (id, created) = match matches.as_slice() {
        [] => {
            check_version(ctx).await?;
            let token = names::client_token("grafana-workspace", &pre.account_id, &d.region, &d.name);
            let mut req = g
                .create_workspace()
                .account_access_type(AccountAccessType::CurrentAccount)
                .set_authentication_providers(Some(
                    d.grafana_authentication_providers
                        .iter()
                        .map(|p| AuthenticationProviderTypes::from(p.as_str()))
                        .collect(),
                ))
                .permission_type(PermissionType::CustomerManaged)
                .workspace_name(&d.grafana_workspace_name)
                .workspace_role_arn(&role.role_arn)
                .grafana_version(&d.grafana_version)
                .client_token(token);
            for (k, v) in ctx.owner_tags() {
                req = req.tags(k, v);
            }
            let out = match req.send().await {
                Ok(out) => out,
                Err(e) => {
                    let err = from_sdk("grafana:CreateWorkspace", e);
                    if role.created
                        && err.aws_code() == Some("ValidationException")
                        && grafana_role::is_propagation_message(&err.to_string())
                    {
                        return Err(grafana_role::propagation_error(&role.role_name, &err.to_string()));
                    }
                    return Err(err);
                }
            };
            let id = out.workspace().map(|w| w.id().to_string()).unwrap_or_default();
            tracing::info!(workspace_id = %id, name = %d.grafana_workspace_name, "Grafana workspace created");
            (id, true)
        }
        [one] => (one.clone(), false),
        many => {
            return Err(Error::Conflict(format!(
                "grafana.workspaceName: {} Grafana workspaces are named {:?} ({}); names are not unique, so give this \
                 deployment a distinct workspace name",
                many.len(),
                d.grafana_workspace_name,
                many.join(", ")
            )))
        }
    };

    let mut out = describe(ctx, &pre.account_id, &id).await?;
    out.created = created;
    if FAILED_STATUSES.contains(&out.status.as_str()) {
        return Err(Error::ResourceFailed(format!(
            "Grafana workspace {id} ({:?}) is {}: fix or delete it in the console, then run again",
            d.grafana_workspace_name, out.status
        )));
    }
    if !created {
        out.updated = converge(ctx, &id, &role.role_arn, &out.status).await?;
    }
    Ok(out)
}

/// Describes the workspace (the wait loop uses this too). `adopted` comes from the tags.
pub async fn describe(ctx: &Ctx, account_id: &str, id: &str) -> Result<GrafanaWorkspaceOutput> {
    let out = ctx
        .clients
        .grafana
        .describe_workspace()
        .workspace_id(id)
        .send()
        .await
        .map_err(|e| from_sdk("grafana:DescribeWorkspace", e))?;
    let ws = out
        .workspace()
        .ok_or_else(|| Error::Internal(format!("grafana:DescribeWorkspace returned nothing for {id}")))?;
    let owned = ctx.owns(ws.tags().into_iter().flatten().map(|(k, v)| (k.as_str(), v.as_str())));
    let endpoint = ws.endpoint().to_string();
    let d = &ctx.deployment;
    Ok(GrafanaWorkspaceOutput {
        workspace_id: ws.id().to_string(),
        arn: workspace_arn(&d.partition, &d.region, account_id, ws.id()),
        name: ws.name().unwrap_or_default().to_string(),
        status: ws.status().as_str().to_string(),
        url: if endpoint.is_empty() { String::new() } else { format!("https://{endpoint}") },
        endpoint,
        grafana_version: ws.grafana_version().to_string(),
        adopted: !owned,
        created: false,
        updated: false,
        poll: None,
    })
}

/// Points an existing workspace at our role with CUSTOMER_MANAGED permissions, when it is
/// ACTIVE and differs. Returns true when it updated.
async fn converge(ctx: &Ctx, id: &str, role_arn: &str, status: &str) -> Result<bool> {
    if status != WorkspaceStatus::Active.as_str() {
        return Ok(false);
    }
    let g = &ctx.clients.grafana;
    let out =
        g.describe_workspace().workspace_id(id).send().await.map_err(|e| from_sdk("grafana:DescribeWorkspace", e))?;
    let Some(ws) = out.workspace() else { return Ok(false) };
    let role_ok = ws.workspace_role_arn() == Some(role_arn);
    let perm_ok = ws.permission_type() == Some(&PermissionType::CustomerManaged);
    if role_ok && perm_ok {
        return Ok(false);
    }
    g.update_workspace()
        .workspace_id(id)
        .permission_type(PermissionType::CustomerManaged)
        .workspace_role_arn(role_arn)
        .send()
        .await
        .map_err(|e| from_sdk("grafana:UpdateWorkspace", e))?;
    tracing::info!(workspace_id = %id, "Grafana workspace role converged");
    Ok(true)
}

/// The requested version must be one `ListVersions` offers.
async fn check_version(ctx: &Ctx) -> Result<()> {
    let want = &ctx.deployment.grafana_version;
    let mut offered = Vec::new();
    let mut pages = ctx.clients.grafana.list_versions().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| from_sdk("grafana:ListVersions", e))?;
        offered.extend(page.grafana_versions().iter().cloned());
    }
    if offered.iter().any(|v| v == want) {
        Ok(())
    } else {
        Err(Error::validation(
            "grafana.version",
            format!(
                "{want:?} is not offered by Managed Grafana in {}; offered: {}",
                ctx.deployment.region,
                offered.join(", ")
            ),
        ))
    }
}

/// Ids of the workspaces named exactly `name` that are not being deleted.
async fn find_by_name(ctx: &Ctx, name: &str) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let mut pages = ctx.clients.grafana.list_workspaces().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| from_sdk("grafana:ListWorkspaces", e))?;
        for ws in page.workspaces() {
            if ws.name() == Some(name) && ws.status() != &WorkspaceStatus::Deleting {
                found.push(ws.id().to_string());
            }
        }
    }
    Ok(found)
}
