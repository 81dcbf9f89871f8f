//! grafana-workspace: find the Managed Grafana workspace by exact name, or create it
//! (CURRENT_ACCOUNT, the input's authentication providers, CUSTOMER_MANAGED with the Grafana role,
//! a version checked against `ListVersions`) with a deterministic client token. Reports status;
//! waiting for ACTIVE is the caller's job.

use aws_sdk_grafana::types::{AccountAccessType, AuthenticationProviderTypes, PermissionType, WorkspaceStatus};

use serde_json::json;

use crate::aws::sdk::from_sdk;
use crate::ctx::record::{self, keys, ResourceRecord, RetiredResource};
use crate::ctx::{Change, Ctx, KNOWN_AFTER_APPLY};
use crate::domain::error::{Error, Result};
use crate::state::ChangeKind;
use crate::state::{require, DeleteOutput, GrafanaWorkspaceOutput, NotApplied, ProvisionState};
use crate::steps::grafana_role;

const STEP: &str = "grafana-workspace";

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
    // Our recorded workspace, when the input no longer names it: renamed in place when no
    // workspace carries the new name, retired when another one does.
    let rec = record::load(ctx).await?;
    let ours = match rec.resource(keys::GRAFANA_WORKSPACE) {
        Some(r) if r.owned && !matches.contains(&r.id) => live_ours(ctx, &r.id).await?,
        _ => None,
    };
    let mut retired: Vec<String> = rec.retired_of(keys::GRAFANA_WORKSPACE).into_iter().map(|r| r.id).collect();
    let (id, created) = match (matches.as_slice(), ours) {
        ([], Some(id)) => (id, false),
        ([], None) => {
            check_version(ctx, None).await?;
            let change = Change::new(
                STEP,
                ChangeKind::Create,
                "Grafana workspace",
                json!({
                    "workspaceName": d.grafana_workspace_name,
                    "grafanaVersion": d.grafana_version,
                    "authenticationProviders": d.grafana_authentication_providers,
                    "permissionType": "CUSTOMER_MANAGED",
                    "workspaceRoleArn": role.role_arn,
                }),
            );
            let token = ctx.client_token("grafana-workspace", &pre.account_id, &change.details);
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
            let created = ctx
                .write(change, || async {
                    req.send().await.map_err(|e| {
                        let validation = e.as_service_error().is_some_and(|s| s.is_validation_exception());
                        let err = from_sdk("grafana:CreateWorkspace", e);
                        // A ValidationException that from_sdk left an AWS error (not transient).
                        if role.created
                            && validation
                            && err.aws_code().is_some()
                            && grafana_role::is_propagation_message(&err.to_string())
                        {
                            grafana_role::propagation_error(&role.role_name, &err.to_string())
                        } else {
                            err
                        }
                    })
                })
                .await?;
            let Some(out) = created else { return Ok(planned_workspace(ctx, &pre.account_id)) };
            let id = out.workspace().map(|w| w.id().to_string()).unwrap_or_default();
            tracing::info!(workspace_id = %id, name = %d.grafana_workspace_name, "Grafana workspace created");
            record_workspace(ctx, &id, true).await?;
            (id, true)
        }
        ([one], ours) => {
            if let Some(prev) = ours {
                // The input names an existing workspace in place of ours: it is adopted only
                // when the input names it explicitly, and ours is retired (written ahead).
                let named = state.input.pointer("/grafana/workspaceName").is_some_and(|v| v.is_string());
                if !named && describe(ctx, &pre.account_id, one).await?.adopted {
                    return Err(Error::Conflict(format!(
                        "grafana.workspaceName: workspace {one} named {:?} is not this deployment's; name it in \
                         grafana.workspaceName to adopt it in place of {prev}, or choose a name no workspace has",
                        d.grafana_workspace_name
                    )));
                }
                retire(ctx, &prev).await?;
                if !retired.contains(&prev) {
                    retired.push(prev);
                }
            }
            (one.clone(), false)
        }
        (many, _) => {
            return Err(Error::Conflict(format!(
                "grafana.workspaceName: {} Grafana workspaces are named {:?} ({}); names are not unique, so give this \
                 deployment a distinct workspace name",
                many.len(),
                d.grafana_workspace_name,
                many.join(", ")
            )))
        }
    };

    let (mut out, live) = describe_live(ctx, &pre.account_id, &id).await?;
    out.created = created;
    if !created {
        let recorded =
            record::load(ctx).await?.resource(keys::GRAFANA_WORKSPACE).is_some_and(|r| r.id == id && r.owned);
        out.adopted = out.adopted && !recorded;
        record_workspace(ctx, &id, !out.adopted).await?;
    }
    if FAILED_STATUSES.contains(&out.status.as_str()) {
        return Err(Error::ResourceFailed(format!(
            "Grafana workspace {id} ({:?}) is {}: fix or delete it in the console, then run again",
            d.grafana_workspace_name, out.status
        )));
    }
    if !created {
        let rename = (!out.adopted).then_some(d.grafana_workspace_name.as_str());
        if let Some(status) =
            converge(ctx, (&id, &live), &role.role_arn, &out.status, rename, &mut out.not_applied).await?
        {
            out.updated = true;
            // Updated (UPDATING): the state machine waits for ACTIVE again, so that the steps
            // after it, and a delete right after the run, find the workspace stable.
            out.status = status;
            if rename.is_some_and(|n| n != out.name) {
                out.name = d.grafana_workspace_name.clone();
            }
        }
    }
    out.retired_workspaces = retired.into_iter().filter(|r| r != &id).collect();
    Ok(out)
}

/// The recorded workspace `id` when it still exists, is not being deleted and its tags say it
/// is ours (the record and the tags agree).
async fn live_ours(ctx: &Ctx, id: &str) -> Result<Option<String>> {
    match ctx.clients.grafana.describe_workspace().workspace_id(id).send().await {
        Ok(out) => Ok(out.workspace().and_then(|ws| {
            let owned = ctx.owns(ws.tags().into_iter().flatten().map(|(k, v)| (k.as_str(), v.as_str())));
            (owned && ws.status() != &WorkspaceStatus::Deleting).then(|| id.to_string())
        })),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(None),
        Err(e) => Err(from_sdk("grafana:DescribeWorkspace", e)),
    }
}

/// Moves the recorded workspace `id` to the record's retired resources (before anything else
/// changes, so that a crash still finds it).
async fn retire(ctx: &Ctx, id: &str) -> Result<()> {
    record::update(ctx, |r| {
        if let Some(prev) = r.resources.get(keys::GRAFANA_WORKSPACE).filter(|e| e.id == id).cloned() {
            if !r.retired.iter().any(|x| x.resource.id == id) {
                r.retired.push(RetiredResource { key: keys::GRAFANA_WORKSPACE.to_string(), resource: prev });
            }
            r.resources.remove(keys::GRAFANA_WORKSPACE);
        }
    })
    .await
    .map(|_| ())
}

/// Deletes the retired workspaces `ids` that are ours (their tags say so; a workspace we did
/// not create is never deleted), then forgets them in the record. Deletion is started, not
/// waited for. What it deleted goes to `out.deleted`; a workspace that refuses the delete while
/// it is busy (`CREATING`, `UPDATING`...) stays retired in the record, named in `out.retained`,
/// and the next run deletes it.
pub async fn retire_workspaces(ctx: &Ctx, step: &'static str, ids: &[String], out: &mut DeleteOutput) -> Result<()> {
    let mut forget = Vec::new();
    for id in ids {
        if live_ours(ctx, id).await?.is_none() {
            forget.push(id.clone());
            continue;
        }
        let change = Change::new(step, ChangeKind::Delete, format!("Grafana workspace {id}"), json!({"retired": true}));
        match ctx.write(change, || send_delete(ctx, id)).await? {
            Some(DeleteSent::Refused) => {
                out.retained.push(format!("{id}: busy (not stable yet); the next run deletes it"));
                continue;
            }
            Some(DeleteSent::Accepted) | None => {}
        }
        out.deleted.push(id.clone());
        forget.push(id.clone());
    }
    if !forget.is_empty() {
        record::update(ctx, |r| {
            r.retired.retain(|x| !(x.key == keys::GRAFANA_WORKSPACE && forget.contains(&x.resource.id)))
        })
        .await?;
    }
    Ok(())
}

async fn record_workspace(ctx: &Ctx, id: &str, owned: bool) -> Result<()> {
    let entry = ResourceRecord { id: id.to_string(), owned, ..ResourceRecord::default() };
    record::update(ctx, |r| {
        r.resources.insert(keys::GRAFANA_WORKSPACE.to_string(), entry);
    })
    .await
    .map(|_| ())
}

/// What a workspace that apply would create looks like in a plan.
fn planned_workspace(ctx: &Ctx, account_id: &str) -> GrafanaWorkspaceOutput {
    let d = &ctx.deployment;
    GrafanaWorkspaceOutput {
        workspace_id: KNOWN_AFTER_APPLY.to_string(),
        arn: workspace_arn(&d.partition, &d.region, account_id, KNOWN_AFTER_APPLY),
        name: d.grafana_workspace_name.clone(),
        status: "CREATING".to_string(),
        endpoint: KNOWN_AFTER_APPLY.to_string(),
        url: KNOWN_AFTER_APPLY.to_string(),
        grafana_version: d.grafana_version.clone(),
        adopted: false,
        created: true,
        updated: false,
        retired_workspaces: Vec::new(),
        not_applied: Vec::new(),
        poll: None,
    }
}

/// Starts deleting the workspace when this deployment created it (an adopted one is kept).
/// The state machine then polls [`delete_status`] until it is gone.
pub async fn delete(ctx: &Ctx, state: &ProvisionState) -> Result<DeleteOutput> {
    let pre = require(&state.preflight, "preflight")?;
    let d = &ctx.deployment;
    let rec = record::load(ctx).await?;
    let target = match rec.resource(keys::GRAFANA_WORKSPACE) {
        Some(r) => Some((r.id.clone(), r.owned)),
        None => {
            let mut owned = Vec::new();
            for id in find_by_name(ctx, &d.grafana_workspace_name).await? {
                if !describe(ctx, &pre.account_id, &id).await?.adopted {
                    owned.push(id);
                }
            }
            owned.pop().map(|id| (id, true))
        }
    };
    let mut out = DeleteOutput { status: Some(DELETED.to_string()), ..DeleteOutput::default() };
    let retired: Vec<String> = rec.retired_of(keys::GRAFANA_WORKSPACE).into_iter().map(|r| r.id).collect();
    retire_workspaces(ctx, STEP, &retired, &mut out).await?;
    let Some((id, owned)) = target else { return Ok(out) };
    if !owned {
        out.retained.push(format!("{id}: adopted"));
        return Ok(out);
    }
    let change = Change::new(
        STEP,
        ChangeKind::Delete,
        format!("Grafana workspace {id}"),
        json!({"workspaceName": d.grafana_workspace_name}),
    );
    // Refused (already deleting, or busy CREATING/UPDATING): `delete_status` waits, and sends the
    // delete again once the workspace is stable.
    let started = ctx.write(change, || send_delete(ctx, &id)).await?;
    if started.is_none() {
        out.deleted.push(id);
        return Ok(out);
    }
    out.deleted.push(id.clone());
    out.id = Some(id.clone());
    delete_status(ctx, &id, out).await
}

/// `DELETED` once the workspace is gone (and forgotten by the record), `DELETING` until then.
/// A workspace that is not `DELETING` yet refused the delete while it was in a transitional
/// state (`CREATING`, `UPDATING`, `UPGRADING`, `VERSION_UPDATING`...): the delete is sent again
/// on each poll until the workspace is stable and takes it.
pub async fn delete_status(ctx: &Ctx, id: &str, mut out: DeleteOutput) -> Result<DeleteOutput> {
    match ctx.clients.grafana.describe_workspace().workspace_id(id).send().await {
        Ok(d) => {
            let status = d.workspace().map(|w| w.status().clone()).unwrap_or(WorkspaceStatus::Deleting);
            if status == WorkspaceStatus::DeletionFailed {
                return Err(Error::ResourceFailed(format!(
                    "Grafana workspace {id} is DELETION_FAILED: see the console"
                )));
            }
            if status != WorkspaceStatus::Deleting && send_delete(ctx, id).await? == DeleteSent::Refused {
                tracing::info!(workspace_id = %id, status = %status.as_str(), "Grafana workspace busy: delete waits");
            }
            out.status = Some("DELETING".to_string());
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {
            out.status = Some(DELETED.to_string());
            record::update(ctx, |r| {
                r.resources.remove(keys::GRAFANA_WORKSPACE);
            })
            .await?;
        }
        Err(e) => return Err(from_sdk("grafana:DescribeWorkspace", e)),
    }
    Ok(out)
}

/// What a `grafana:DeleteWorkspace` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeleteSent {
    /// The deletion started, or the workspace is gone already.
    Accepted,
    /// `ConflictException`: the workspace is being deleted already, or is in a transitional state
    /// (`CREATING`, `UPDATING`, ...) in which Managed Grafana refuses a delete.
    Refused,
}

/// Sends `grafana:DeleteWorkspace` for `id` (not through the write gate: callers are).
async fn send_delete(ctx: &Ctx, id: &str) -> Result<DeleteSent> {
    match ctx.clients.grafana.delete_workspace().workspace_id(id).send().await {
        Ok(_) => {
            tracing::info!(workspace_id = %id, "Grafana workspace deletion started");
            Ok(DeleteSent::Accepted)
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(DeleteSent::Accepted),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_conflict_exception()) => Ok(DeleteSent::Refused),
        Err(e) => Err(from_sdk("grafana:DeleteWorkspace", e)),
    }
}

/// The status a deleted workspace reports in the delete loop.
pub const DELETED: &str = "DELETED";

/// Describes the workspace (the wait loop uses this too). `adopted` comes from the tags.
pub async fn describe(ctx: &Ctx, account_id: &str, id: &str) -> Result<GrafanaWorkspaceOutput> {
    Ok(describe_live(ctx, account_id, id).await?.0)
}

/// [`describe`], and the description as Grafana answered it.
async fn describe_live(
    ctx: &Ctx,
    account_id: &str,
    id: &str,
) -> Result<(GrafanaWorkspaceOutput, aws_sdk_grafana::types::WorkspaceDescription)> {
    let out = ctx
        .clients
        .grafana
        .describe_workspace()
        .workspace_id(id)
        .send()
        .await
        .map_err(|e| from_sdk("grafana:DescribeWorkspace", e))?;
    let ws =
        out.workspace.ok_or_else(|| Error::Internal(format!("grafana:DescribeWorkspace returned nothing for {id}")))?;
    let owned = ctx.owns(ws.tags().into_iter().flatten().map(|(k, v)| (k.as_str(), v.as_str())));
    let endpoint = ws.endpoint().to_string();
    let d = &ctx.deployment;
    let out = GrafanaWorkspaceOutput {
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
        retired_workspaces: Vec::new(),
        not_applied: Vec::new(),
        poll: None,
    };
    Ok((out, ws))
}

/// Points an existing workspace at our role with CUSTOMER_MANAGED permissions, and renames it to
/// `rename` (ours only), when it is ACTIVE and differs. Returns the status after the update
/// when it updated (planning: the live one).
async fn converge(
    ctx: &Ctx,
    (id, ws): (&str, &aws_sdk_grafana::types::WorkspaceDescription),
    role_arn: &str,
    status: &str,
    rename: Option<&str>,
    not_applied: &mut Vec<NotApplied>,
) -> Result<Option<String>> {
    if status != WorkspaceStatus::Active.as_str() {
        return Ok(None);
    }
    let g = &ctx.clients.grafana;
    let new_name = rename.filter(|n| ws.name() != Some(*n));
    let role_ok = ws.workspace_role_arn() == Some(role_arn);
    let perm_ok = ws.permission_type() == Some(&PermissionType::CustomerManaged);
    let d = &ctx.deployment;
    let mut live_providers: Vec<String> =
        ws.authentication().map(|a| a.providers().iter().map(|p| p.as_str().to_string()).collect()).unwrap_or_default();
    live_providers.sort();
    let mut want_providers = d.grafana_authentication_providers.clone();
    want_providers.sort();
    // Not changed by apply (versions only go up, and authentication is the console's job), but
    // reported so that a plan shows every setting that differs.
    let mut untouched = Vec::new();
    if ws.grafana_version() != d.grafana_version {
        untouched.push(json!({"field": "grafanaVersion", "live": ws.grafana_version(), "desired": d.grafana_version}));
    }
    if live_providers != want_providers {
        untouched.push(json!({"field": "authenticationProviders", "live": live_providers, "desired": want_providers}));
    }
    let resource = format!("Grafana workspace {id}");
    if ws.grafana_version() != d.grafana_version {
        not_applied.push(NotApplied {
            setting: "grafana.version".into(),
            resource: resource.clone(),
            live: json!(ws.grafana_version()),
            desired: json!(d.grafana_version),
            why: format!(
                "apply does not upgrade a workspace's Grafana version (plugins and dashboards may need review first): \
                 upgrade it in the console or with `aws grafana update-workspace-configuration --workspace-id {id} \
                 --grafana-version {} --configuration <its current configuration>`, or give {:?}",
                d.grafana_version,
                ws.grafana_version()
            ),
        });
    }
    if live_providers != want_providers {
        not_applied.push(NotApplied {
            setting: "grafana.authenticationProviders".into(),
            resource: resource.clone(),
            live: json!(live_providers),
            desired: json!(want_providers),
            why: format!(
                "apply does not change how users sign in to an existing workspace (SAML needs its identity provider \
                 configured first, and a removed provider locks its users out): change it in the console or with \
                 `aws grafana update-workspace-authentication --workspace-id {id}`, or give {live_providers:?}"
            ),
        });
    }
    if !untouched.is_empty() {
        ctx.report(Change::new(
            STEP,
            ChangeKind::None,
            format!("Grafana workspace {id}"),
            json!({ "differsButNotChanged": untouched }),
        ));
    }
    if role_ok && perm_ok && new_name.is_none() {
        return Ok(None);
    }
    let mut details = json!({
        "workspaceRoleArn": {"live": ws.workspace_role_arn(), "desired": role_arn},
        "permissionType": {"live": ws.permission_type().map(|p| p.as_str()), "desired": "CUSTOMER_MANAGED"},
    });
    if let Some(n) = new_name {
        details["workspaceName"] = json!({"live": ws.name(), "desired": n});
    }
    let change = Change::new(STEP, ChangeKind::Update, format!("Grafana workspace {id}"), details);
    let written = ctx
        .write(change, || async {
            g.update_workspace()
                .workspace_id(id)
                .permission_type(PermissionType::CustomerManaged)
                .workspace_role_arn(role_arn)
                .set_workspace_name(new_name.map(str::to_string))
                .send()
                .await
                .map_err(|e| from_sdk("grafana:UpdateWorkspace", e))
        })
        .await?;
    let status = match written {
        Some(out) => {
            tracing::info!(workspace_id = %id, renamed = new_name.is_some(), "Grafana workspace converged");
            out.workspace().map(|w| w.status().as_str().to_string()).unwrap_or_else(|| status.to_string())
        }
        None => status.to_string(),
    };
    Ok(Some(status))
}

/// For `preflight` (apply and plan), before any write: `grafana.version` is one Managed Grafana
/// can give the workspace this run will use. A new workspace: a version `ListVersions` offers. An
/// existing one (named so, or recorded as ours): the version it runs, or one `ListVersions`
/// offers it (`workspaceId`: the versions it can be upgraded to; versions never go down). An
/// upgrade is not made by apply: the step reports it as not applied ([`NotApplied`]).
pub async fn preflight_version(ctx: &Ctx) -> Result<()> {
    let d = &ctx.deployment;
    let existing = match find_by_name(ctx, &d.grafana_workspace_name).await?.as_slice() {
        [one] => Some(one.clone()),
        [] => match record::load(ctx).await?.resource(keys::GRAFANA_WORKSPACE) {
            Some(r) if r.owned => live_ours(ctx, &r.id).await?,
            _ => None,
        },
        // Several of that name: the step refuses the ambiguity itself.
        _ => return Ok(()),
    };
    let Some(id) = existing else { return check_version(ctx, None).await };
    let out = ctx
        .clients
        .grafana
        .describe_workspace()
        .workspace_id(&id)
        .send()
        .await
        .map_err(|e| from_sdk("grafana:DescribeWorkspace", e))?;
    let live = out.workspace().map(|w| w.grafana_version().to_string()).unwrap_or_default();
    if live == d.grafana_version {
        return Ok(());
    }
    check_version(ctx, Some((&id, &live))).await
}

/// The requested version must be one `ListVersions` offers (for `workspace`, `(id, version it
/// runs)`, when it exists).
async fn check_version(ctx: &Ctx, workspace: Option<(&str, &str)>) -> Result<()> {
    let want = &ctx.deployment.grafana_version;
    let mut offered = Vec::new();
    let mut pages = ctx
        .clients
        .grafana
        .list_versions()
        .set_workspace_id(workspace.map(|(id, _)| id.to_string()))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| from_sdk("grafana:ListVersions", e))?;
        offered.extend(page.grafana_versions().iter().cloned());
    }
    if offered.iter().any(|v| v == want) {
        return Ok(());
    }
    let offered = if offered.is_empty() { "none".to_string() } else { offered.join(", ") };
    Err(Error::validation(
        "grafana.version",
        match workspace {
            None => {
                format!("{want:?} is not offered by Managed Grafana in {}; offered: {offered}", ctx.deployment.region)
            }
            Some((id, live)) => format!(
                "{want:?} cannot be set on Grafana workspace {id}, which runs {live:?}: versions only go up, and \
                 Managed Grafana offers it {offered}; give {live:?} (or one of those)"
            ),
        },
    ))
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
