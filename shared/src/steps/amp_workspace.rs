//! amp-workspace: find the Amazon Managed Prometheus workspace by exact alias, or create it with
//! a deterministic client token and ownership tags. Waiting for ACTIVE is the caller's job.

use aws_sdk_amp::types::WorkspaceStatusCode;

use serde_json::json;

use crate::aws::sdk::from_sdk;
use crate::ctx::record::{self, keys, ResourceRecord, RetiredResource};
use crate::ctx::{Change, Ctx, KNOWN_AFTER_APPLY};
use crate::domain::error::{Error, Result};
use crate::state::ChangeKind;
use crate::state::{require, AmpWorkspaceOutput, DeleteOutput, ProvisionState};

const STEP: &str = "amp-workspace";

/// Statuses after which a workspace will never become ACTIVE by itself.
pub const FAILED_STATUSES: &[&str] = &["CREATION_FAILED"];

/// The remote-write URL for a `prometheusEndpoint` (which AWS returns with a trailing slash).
pub fn remote_write_url(prometheus_endpoint: &str) -> String {
    format!("{}/api/v1/remote_write", prometheus_endpoint.trim_end_matches('/'))
}

/// Finds or creates the workspace and reports its status. When the alias changed, the workspace
/// recorded for this deployment is renamed in place (`UpdateWorkspaceAlias`), keeping its data.
pub async fn run(ctx: &Ctx, state: &ProvisionState) -> Result<AmpWorkspaceOutput> {
    let pre = require(&state.preflight, "preflight")?;
    let d = &ctx.deployment;
    let amp = &ctx.clients.amp;
    let before = record::load(ctx).await?;
    let recorded = before.resource(keys::AMP_WORKSPACE).cloned();
    let mut retired: Vec<String> = before.retired_of(keys::AMP_WORKSPACE).into_iter().map(|r| r.id).collect();

    let matches = find_by_alias(ctx, &d.amp_alias).await?;
    let (workspace_id, owned, created) = match matches.as_slice() {
        [] => match renamable(ctx, recorded.as_ref()).await? {
            Some((id, old_alias, owned)) => {
                let change = Change::new(
                    STEP,
                    ChangeKind::Update,
                    format!("AMP workspace {id}"),
                    json!({"alias": {"from": old_alias, "to": d.amp_alias}}),
                );
                let token = ctx.client_token(
                    "amp-alias",
                    &pre.account_id,
                    &json!({"workspaceId": id, "from": old_alias, "alias": d.amp_alias}),
                );
                let renamed = ctx
                    .write(change, || async {
                        amp.update_workspace_alias()
                            .workspace_id(&id)
                            .alias(&d.amp_alias)
                            .client_token(token)
                            .send()
                            .await
                            .map_err(|e| from_sdk("aps:UpdateWorkspaceAlias", e))
                    })
                    .await?;
                if renamed.is_some() {
                    tracing::info!(workspace_id = %id, from = %old_alias, to = %d.amp_alias, "AMP workspace renamed");
                }
                (id, owned, false)
            }
            None => {
                let change = Change::new(STEP, ChangeKind::Create, "AMP workspace", json!({"alias": d.amp_alias}));
                let token = ctx.client_token("amp-workspace", &pre.account_id, &json!({"alias": d.amp_alias}));
                let mut req = amp.create_workspace().alias(&d.amp_alias).client_token(token);
                for (k, v) in ctx.owner_tags() {
                    req = req.tags(k, v);
                }
                let Some(out) = ctx
                    .write(change, || async { req.send().await.map_err(|e| from_sdk("aps:CreateWorkspace", e)) })
                    .await?
                else {
                    return Ok(planned_workspace(ctx, &pre.account_id));
                };
                tracing::info!(workspace_id = %out.workspace_id(), alias = %d.amp_alias, "AMP workspace created");
                (out.workspace_id().to_string(), true, true)
            }
        },
        [(id, owned)] => {
            let recorded_ours = recorded.as_ref().is_some_and(|r| &r.id == id && r.owned);
            // The alias is now another workspace's, while ours still exists under its old one:
            // that workspace is adopted only when the input names it explicitly, and ours is
            // retired (written ahead).
            if let Some((prev, _, true)) = renamable(ctx, recorded.as_ref().filter(|r| &r.id != id)).await? {
                let named = state.input.pointer("/amp/alias").is_some_and(|v| v.is_string());
                if !owned && !named {
                    return Err(Error::Conflict(format!(
                        "amp.alias: workspace {id} with the alias {:?} is not this deployment's; name it in amp.alias to \
                         adopt it in place of {prev}, or choose an alias no workspace has",
                        d.amp_alias
                    )));
                }
                record::update(ctx, |r| {
                    if let Some(old) = r.resources.remove(keys::AMP_WORKSPACE) {
                        if !r.retired.iter().any(|x| x.resource.id == old.id) {
                            r.retired.push(RetiredResource { key: keys::AMP_WORKSPACE.to_string(), resource: old });
                        }
                    }
                })
                .await?;
                if !retired.contains(&prev) {
                    retired.push(prev);
                }
            }
            (id.clone(), *owned || recorded_ours, false)
        }
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
    // Unpublished until publish has handed out its remote-write URL (kept across re-runs).
    let unpublished = created || recorded.as_ref().is_some_and(|r| r.id == workspace_id && r.unpublished);
    let entry = ResourceRecord { id: workspace_id.clone(), owned, unpublished, ..ResourceRecord::default() };
    record::update(ctx, |r| {
        r.resources.insert(keys::AMP_WORKSPACE.to_string(), entry);
    })
    .await?;
    // Only a plan can hold the placeholder.
    if workspace_id == KNOWN_AFTER_APPLY {
        return Ok(planned_workspace(ctx, &pre.account_id));
    }
    let mut out = describe(ctx, &workspace_id).await?;
    out.adopted = !owned;
    out.created = created;
    out.retired_workspaces = retired.into_iter().filter(|r| r != &workspace_id).collect();
    if FAILED_STATUSES.contains(&out.status.as_str()) {
        return Err(Error::ResourceFailed(format!(
            "AMP workspace {workspace_id} ({:?}) is {}: delete it, then run again",
            d.amp_alias, out.status
        )));
    }
    Ok(out)
}

/// The recorded workspace, when it still exists under another alias: `(id, alias, owned)`.
async fn renamable(ctx: &Ctx, recorded: Option<&ResourceRecord>) -> Result<Option<(String, String, bool)>> {
    let Some(r) = recorded else { return Ok(None) };
    match ctx.clients.amp.describe_workspace().workspace_id(&r.id).send().await {
        Ok(out) => Ok(out.workspace().and_then(|ws| {
            let deleting = ws.status().map(|s| s.status_code() == &WorkspaceStatusCode::Deleting).unwrap_or(true);
            (!deleting).then(|| (r.id.clone(), ws.alias().unwrap_or_default().to_string(), r.owned))
        })),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(None),
        Err(e) => Err(from_sdk("aps:DescribeWorkspace", e)),
    }
}

/// What a workspace that apply would create looks like in a plan.
fn planned_workspace(ctx: &Ctx, account_id: &str) -> AmpWorkspaceOutput {
    let d = &ctx.deployment;
    AmpWorkspaceOutput {
        workspace_id: KNOWN_AFTER_APPLY.to_string(),
        arn: format!("arn:{}:aps:{}:{account_id}:workspace/{KNOWN_AFTER_APPLY}", d.partition, d.region),
        alias: d.amp_alias.clone(),
        status: "CREATING".to_string(),
        prometheus_endpoint: KNOWN_AFTER_APPLY.to_string(),
        remote_write_url: KNOWN_AFTER_APPLY.to_string(),
        adopted: false,
        created: true,
        retired_workspaces: Vec::new(),
        poll: None,
    }
}

/// Deletes the workspace only when this deployment created it and `retainMetrics` is false; an
/// adopted workspace, or one holding metrics to retain, is kept.
pub async fn delete(ctx: &Ctx, state: &ProvisionState) -> Result<DeleteOutput> {
    let pre = require(&state.preflight, "preflight")?;
    let d = &ctx.deployment;
    let before = record::load(ctx).await?;
    let mut out = DeleteOutput::default();
    let retired: Vec<String> = before.retired_of(keys::AMP_WORKSPACE).into_iter().map(|r| r.id).collect();
    for id in retire_workspaces(ctx, STEP, &pre.account_id, &retired, &mut out.deleted).await? {
        out.retained.push(format!("{id}: retainMetrics, no longer ours"));
    }
    let target = match before.resource(keys::AMP_WORKSPACE) {
        Some(r) => Some((r.id.clone(), r.owned, r.unpublished)),
        None => {
            find_by_alias(ctx, &d.amp_alias).await?.into_iter().find(|(_, owned)| *owned).map(|(id, o)| (id, o, false))
        }
    };
    let Some((id, owned, unpublished)) = target else { return Ok(out) };
    // A workspace whose remote-write URL was never published holds no metrics to retain.
    let empty = owned && unpublished && !d.retain_metrics_stated;
    if !owned {
        out.retained.push(format!("{id}: adopted"));
    } else if d.retain_metrics && !empty {
        out.retained.push(format!("{id}: retainMetrics"));
    } else {
        let why = if d.retain_metrics {
            "never published: it holds no metrics of the cluster"
        } else {
            "retainMetrics false"
        };
        let change = Change::new(
            STEP,
            ChangeKind::Delete,
            format!("AMP workspace {id}"),
            json!({"alias": d.amp_alias, "why": why}),
        );
        let token = ctx.client_token("amp-delete", &pre.account_id, &json!({"workspaceId": id}));
        ctx.write(change, || async {
            match ctx.clients.amp.delete_workspace().workspace_id(&id).client_token(token).send().await {
                Ok(_) => {
                    tracing::info!(workspace_id = %id, "AMP workspace deleted");
                    Ok(())
                }
                Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(()),
                Err(e) => Err(from_sdk("aps:DeleteWorkspace", e)),
            }
        })
        .await?;
        out.deleted.push(id);
        record::update(ctx, |r| {
            r.resources.remove(keys::AMP_WORKSPACE);
        })
        .await?;
    }
    Ok(out)
}

/// Retires the workspaces `ids` (ours, no longer named by the input), once the new one is in
/// use: with `retainMetrics` each is kept with its data but is no longer ours (its ownership
/// tags are removed, so neither an inventory nor a delete counts it) and returned; without, it
/// is deleted. A workspace whose tags do not say it is ours is left as it is. Then the record
/// forgets them. Deleted ones go to `deleted`.
pub async fn retire_workspaces(
    ctx: &Ctx,
    step: &'static str,
    account_id: &str,
    ids: &[String],
    deleted: &mut Vec<String>,
) -> Result<Vec<String>> {
    let amp = &ctx.clients.amp;
    let mut retained = Vec::new();
    for id in ids {
        let ws = match amp.describe_workspace().workspace_id(id).send().await {
            Ok(out) => out.workspace().cloned(),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => None,
            Err(e) => return Err(from_sdk("aps:DescribeWorkspace", e)),
        };
        let Some(ws) = ws else { continue };
        let deleting = ws.status().is_some_and(|s| s.status_code() == &WorkspaceStatusCode::Deleting);
        let ours = ctx.owns(ws.tags().into_iter().flatten().map(|(k, v)| (k.as_str(), v.as_str())));
        if deleting || !ours {
            continue;
        }
        if ctx.deployment.retain_metrics {
            let keys: Vec<String> = ctx.owner_tags().into_iter().map(|(k, _)| k).collect();
            let change = Change::new(
                step,
                ChangeKind::Update,
                format!("AMP workspace {id}"),
                json!({"retained": "retainMetrics", "tagsRemoved": keys}),
            );
            ctx.write(change, || async {
                amp.untag_resource()
                    .resource_arn(ws.arn())
                    .set_tag_keys(Some(keys.clone()))
                    .send()
                    .await
                    .map_err(|e| from_sdk("aps:UntagResource", e))
            })
            .await?;
            tracing::info!(workspace_id = %id, "retired AMP workspace retained, no longer ours");
            retained.push(id.clone());
        } else {
            let change = Change::new(step, ChangeKind::Delete, format!("AMP workspace {id}"), json!({"retired": true}));
            let token = ctx.client_token("amp-delete", account_id, &json!({"workspaceId": id}));
            ctx.write(change, || async {
                match amp.delete_workspace().workspace_id(id).client_token(token).send().await {
                    Ok(_) => Ok(()),
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(()),
                    Err(e) => Err(from_sdk("aps:DeleteWorkspace", e)),
                }
            })
            .await?;
            tracing::info!(workspace_id = %id, "retired AMP workspace deleted");
            deleted.push(id.clone());
        }
    }
    if !ids.is_empty() {
        record::update(ctx, |r| r.retired.retain(|x| !(x.key == keys::AMP_WORKSPACE && ids.contains(&x.resource.id))))
            .await?;
    }
    Ok(retained)
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
        retired_workspaces: Vec::new(),
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
