//! amp-workspace: find the Amazon Managed Prometheus workspace by exact alias, or create it with
//! a deterministic client token and ownership tags. Waiting for ACTIVE is the caller's job.

use aws_sdk_amp::types::WorkspaceStatusCode;

use crate::error::{from_sdk, Error, Result};
use crate::names;
use crate::state::{require, AmpWorkspaceOutput, ProvisionState};
use crate::steps::Ctx;

/// Statuses after which a workspace will never become ACTIVE by itself.
pub const FAILED_STATUSES: &[&str] = &["CREATION_FAILED"];

/// The remote-write URL for a `prometheusEndpoint` (which AWS returns with a trailing slash).
pub fn remote_write_url(prometheus_endpoint: &str) -> String {
    format!("{}/api/v1/remote_write", prometheus_endpoint.trim_end_matches('/'))
}

/// Finds or creates the workspace and reports its status.
pub async fn run(ctx: &Ctx, state: &ProvisionState) -> Result<AmpWorkspaceOutput> {
    let pre = require(&state.preflight, "preflight")?;
    let d = &ctx.deployment;
    let amp = &ctx.clients.amp;

    let matches = find_by_alias(ctx, &d.amp_alias).await?;
    let (workspace_id, adopted, created) = match matches.as_slice() {
        [] => {
            let token = names::client_token("amp-workspace", &pre.account_id, &d.region, &d.name);
            let mut req = amp.create_workspace().alias(&d.amp_alias).client_token(token);
            for (k, v) in ctx.owner_tags() {
                req = req.tags(k, v);
            }
            let out = req.send().await.map_err(|e| from_sdk("aps:CreateWorkspace", e))?;
            tracing::info!(workspace_id = %out.workspace_id(), alias = %d.amp_alias, "AMP workspace created");
            (out.workspace_id().to_string(), false, true)
        }
        [(id, owned)] => (id.clone(), !owned, false),
        many => {
            let ids: Vec<&str> = many.iter().map(|(id, _)| id.as_str()).collect();
            return Err(Error::Conflict(format!(
                "amp.alias: {} AMP workspaces have the alias {:?} ({}); aliases are not unique, so choose one by giving \
                 it a distinct alias",
                ids.len(),
                d.amp_alias,
                ids.join(", ")
            )));
        }
    };
    let mut out = describe(ctx, &workspace_id).await?;
    out.adopted = adopted;
    out.created = created;
    if FAILED_STATUSES.contains(&out.status.as_str()) {
        return Err(Error::ResourceFailed(format!(
            "AMP workspace {workspace_id} ({:?}) is {}: delete it, then run again",
            d.amp_alias, out.status
        )));
    }
    Ok(out)
}

/// Describes a workspace (used by the wait loop too); `adopted`/`created` are false.
pub async fn describe(ctx: &Ctx, workspace_id: &str) -> Result<AmpWorkspaceOutput> {
    let out = ctx
        .clients
        .amp
        .describe_workspace()
        .workspace_id(workspace_id)
        .send()
        .await
        .map_err(|e| from_sdk("aps:DescribeWorkspace", e))?;
    let ws = out
        .workspace()
        .ok_or_else(|| Error::Internal(format!("aps:DescribeWorkspace returned no workspace for {workspace_id}")))?;
    let prometheus_endpoint = ws.prometheus_endpoint().unwrap_or_default().to_string();
    let status = ws.status().map(|s| s.status_code().as_str().to_string()).unwrap_or_default();
    Ok(AmpWorkspaceOutput {
        workspace_id: ws.workspace_id().to_string(),
        arn: ws.arn().to_string(),
        alias: ws.alias().unwrap_or_default().to_string(),
        status,
        remote_write_url: if prometheus_endpoint.is_empty() {
            String::new()
        } else {
            remote_write_url(&prometheus_endpoint)
        },
        prometheus_endpoint,
        adopted: false,
        created: false,
        poll: None,
    })
}

/// Workspaces whose alias is exactly `alias` and that are not being deleted, with whether this
/// deployment owns each (by tag). AWS matches `alias` as a prefix, so filter exactly.
async fn find_by_alias(ctx: &Ctx, alias: &str) -> Result<Vec<(String, bool)>> {
    let mut found = Vec::new();
    let mut pages = ctx.clients.amp.list_workspaces().alias(alias).max_results(1000).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| from_sdk("aps:ListWorkspaces", e))?;
        for ws in page.workspaces() {
            let deleting = ws.status().map(|s| s.status_code() == &WorkspaceStatusCode::Deleting).unwrap_or(false);
            if ws.alias() == Some(alias) && !deleting {
                let owned = ctx.owns(ws.tags().into_iter().flatten().map(|(k, v)| (k.as_str(), v.as_str())));
                found.push((ws.workspace_id().to_string(), owned));
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_write_url_handles_trailing_slash() {
        let base = "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1";
        let want = format!("{base}/api/v1/remote_write");
        assert_eq!(remote_write_url(&format!("{base}/")), want);
        assert_eq!(remote_write_url(base), want);
    }
}
