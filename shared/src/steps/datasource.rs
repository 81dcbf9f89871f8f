//! datasource: the workspace's Prometheus data source for the AMP workspace, and the Grafana
//! admins of the input. Runs once the Grafana workspace is ACTIVE.
//!
//! - Credentials: the deployment's `ADMIN` service account (found by name, created once) and a
//!   token per run that lives [`grafana_http::TOKEN_SECONDS_TO_LIVE`] seconds and is deleted at the
//!   end of the step, also when it fails ([`grafana_access::with_token`]). No Grafana credential is
//!   stored, logged or returned.
//! - The data source has a fixed uid ([`datasource_uid`]) and exactly the fields of
//!   [`desired_datasource`]; a live data source that differs in a field we own ([`drift`]) is
//!   replaced by uid (`PUT`), keeping what we do not own. Its health check must then pass, or the
//!   step fails with Grafana's message (`ResourceFailedError`).
//! - `grafana.admins` users and groups get `ADMIN` through `UpdatePermissions`; only what
//!   `ListPermissions` does not already show is added, and a per-entry error inside the HTTP 200
//!   fails the step.
//!
//! **Plan.** Reading the data source needs a token, and creating a token is a write. `plan`
//! reads it anyway, because a hand edit in Grafana (drift) is otherwise invisible to it: its
//! **only writes** are one short-lived service-account token's create and delete, made through
//! the same [`grafana_access::with_token`] as apply (lifetime [`grafana_http::PLAN_TOKEN_SECONDS_TO_LIVE`],
//! deleted right after the read, also when the read fails; the key is never stored, logged or
//! returned), and only where apply would find everything it needs to make one: the Grafana
//! workspace exists and is ACTIVE, and our service account exists in it (plan never creates a
//! service account). With the token, one `GET` of the data source by uid, then:
//! - `create` when the Grafana workspace does not exist yet, our service account does not exist
//!   in it (the step never completed there: nothing of ours can be there), or the data source is
//!   missing;
//! - `update` with every owned field that differs ([`drift_fields`]): the field, its live and its
//!   desired value (settings, never secrets: `secureJsonData` is neither read nor reported, and
//!   user information in a live `url` is masked, [`masked`]);
//! - nothing when the live data source matches.
//!
//! The workspace's admin permissions are read with `ListPermissions` (no token) and the missing
//! grants reported. Only when the workspace exists but is not ACTIVE (its Grafana cannot be read)
//! does plan fall back to the fingerprint of the settings the last successful apply recorded in
//! the SSM record (key [`RECORD_SETTINGS_KEY`]; written by apply only when it changes): `update`
//! "unknown until apply" when they differ or none were recorded, `unknown` when they are the same.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use aws_sdk_grafana::types::{Role, UpdateAction, UpdateInstruction, User, UserType};

use crate::aws::grafana_http::{self, GrafanaApi, ServiceAccount};
use crate::aws::sdk::from_sdk;
use crate::ctx::record::{self, keys, ResourceRecord};
use crate::ctx::{Change, Ctx, KNOWN_AFTER_APPLY};
use crate::domain::error::{Error, Result};
use crate::state::ChangeKind;
use crate::state::{require, DeleteOutput, GrafanaWorkspaceOutput, ProvisionState};
pub use crate::state::{DatasourceAction, DatasourceOutput};
use crate::steps::{grafana_access, grafana_role, grafana_workspace};

const STEP: &str = "datasource";

/// Record key of the data source (`id` = its uid).
pub const RECORD_KEY: &str = "grafanaDatasource";
/// Record key of the fingerprint of the data source settings last applied (`id` = the hex digest).
pub const RECORD_SETTINGS_KEY: &str = "grafanaDatasourceSettings";

/// Grafana's core Prometheus data source type.
pub const CORE_PROMETHEUS_TYPE: &str = "prometheus";
/// The Amazon Managed Service for Prometheus data source plugin.
pub const AMP_PLUGIN_TYPE: &str = "grafana-amazonprometheus-datasource";
/// The first Grafana major version whose AMP data sources use [`AMP_PLUGIN_TYPE`].
pub const PLUGIN_MIN_MAJOR: u32 = 11;
/// `jsonData.sigV4AuthType` of the console's "Workspace IAM Role".
pub const SIGV4_WORKSPACE_ROLE: &str = "ec2_iam_role";
/// `UpdatePermissions` takes at most this many instructions per call.
const PERMISSION_BATCH: usize = 20;

/// The data source type for AMP with SigV4 in a workspace of `grafana_version`.
///
/// SigV4 authentication on Grafana's core `prometheus` data source was deprecated in favour of
/// the Amazon Managed Service for Prometheus plugin (`grafana-amazonprometheus-datasource`)
/// during Grafana 11.x/12.x, and later removed: from 13 on Grafana migrates such data sources to
/// the plugin at startup (see the Grafana 11 "Prometheus SigV4 deprecation" notes and
/// `/work/shared/notes/aws-facts.md`). Managed Grafana installs the plugin in 11+ workspaces, so:
/// versions before [`PLUGIN_MIN_MAJOR`] (8.4, 9.4, 10.4) get the core type with
/// `jsonData.sigV4Auth`, and 11 and later (12.4) the plugin type. A version whose major cannot be
/// read (not a Managed Grafana version) gets the plugin, the type of every current version.
pub fn datasource_type(grafana_version: &str) -> &'static str {
    match grafana_major(grafana_version) {
        Some(m) if m < PLUGIN_MIN_MAJOR => CORE_PROMETHEUS_TYPE,
        _ => AMP_PLUGIN_TYPE,
    }
}

/// The major version of a Grafana version string (`10.4` → 10).
pub fn grafana_major(grafana_version: &str) -> Option<u32> {
    grafana_version.split('.').next().filter(|m| !m.is_empty()).and_then(|m| m.parse().ok())
}

/// The first Grafana major version with service accounts (which the step authenticates with).
pub const SERVICE_ACCOUNT_MIN_MAJOR: u32 = 9;

/// The data source uid of a deployment: `o11y-` and 12 hex digits of the SHA-256 of its name
/// (Grafana: at most 40 of `[a-zA-Z0-9-_]`).
pub fn datasource_uid(deployment: &str) -> String {
    let digest = Sha256::digest(deployment.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("o11y-{hex}")
}

/// The data source name of a deployment (unique per Grafana organisation).
pub fn datasource_name(deployment: &str) -> String {
    format!("Amazon Managed Prometheus ({deployment})")
}

/// Everything the data source depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasourceSpec {
    pub uid: String,
    pub name: String,
    pub grafana_version: String,
    /// `prometheusEndpoint` of the AMP workspace (with its trailing `/`).
    pub prometheus_endpoint: String,
    pub region: String,
    pub is_default: bool,
}

/// The data source exactly as we create it: `access: proxy`, the AMP workspace's Prometheus
/// endpoint, SigV4 with the workspace IAM role in the workspace's region, `POST` queries.
pub fn desired_datasource(spec: &DatasourceSpec) -> Value {
    json!({
        "uid": spec.uid,
        "name": spec.name,
        "type": datasource_type(&spec.grafana_version),
        "access": "proxy",
        "url": spec.prometheus_endpoint,
        "isDefault": spec.is_default,
        "jsonData": {
            "httpMethod": "POST",
            "sigV4Auth": true,
            "sigV4AuthType": SIGV4_WORKSPACE_ROLE,
            "sigV4Region": spec.region,
        }
    })
}

/// The `jsonData` members we own.
const OWNED_JSON_DATA: &[&str] = &["httpMethod", "sigV4Auth", "sigV4AuthType", "sigV4Region"];

/// The top-level members we own. `isDefault` is owned only when the input asks for the default
/// flag: with `defaultDatasource: false` (the default) whoever made it the default keeps it so.
fn owned_fields(desired: &Value) -> Vec<&'static str> {
    let mut f = vec!["name", "type", "access", "url"];
    if desired.get("isDefault") == Some(&Value::Bool(true)) {
        f.push("isDefault");
    }
    f
}

/// The owned fields where `live` differs from `desired`: `(field, live value, desired value)`,
/// `jsonData` members as `jsonData.<member>`; a missing member is `null`.
pub fn drift_fields(live: &Value, desired: &Value) -> Vec<(String, Value, Value)> {
    let mut out = Vec::new();
    for f in owned_fields(desired) {
        let (l, d) = (live.get(f).unwrap_or(&Value::Null), desired.get(f).unwrap_or(&Value::Null));
        if l != d {
            out.push((f.to_string(), l.clone(), d.clone()));
        }
    }
    for k in OWNED_JSON_DATA {
        let l = live.get("jsonData").and_then(|j| j.get(*k)).unwrap_or(&Value::Null);
        let d = desired.get("jsonData").and_then(|j| j.get(*k)).unwrap_or(&Value::Null);
        if l != d {
            out.push((format!("jsonData.{k}"), l.clone(), d.clone()));
        }
    }
    out
}

/// The owned fields where `live` differs from `desired`, as `field: live -> desired` (values are
/// settings, never secrets: `secureJsonData` is neither read nor written).
pub fn drift(live: &Value, desired: &Value) -> Vec<String> {
    drift_fields(live, desired).into_iter().map(|(f, l, d)| format!("{f}: {l} -> {d}")).collect()
}

/// `value` with the user information of a URL masked (`https://***@host/`), for reporting a live
/// `url` that someone may have edited to carry credentials. Other values as they are.
pub fn masked(value: &Value) -> Value {
    let Some(s) = value.as_str() else { return value.clone() };
    let Some((scheme, rest)) = s.split_once("://") else { return value.clone() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((_userinfo, host)) = authority.rsplit_once('@') else { return value.clone() };
    Value::String(format!("{scheme}://***@{host}{tail}"))
}

/// The `PUT` body that corrects `live`: our fields from `desired`, everything else (other
/// `jsonData` members, `basicAuth`, `user`...) from `live`, and `live`'s `version` so that a
/// concurrent edit is refused rather than overwritten. Secrets are not named, so Grafana keeps them.
pub fn corrected(live: &Value, desired: &Value) -> Value {
    let mut body = Map::new();
    for k in ["user", "database", "basicAuth", "basicAuthUser", "withCredentials", "isDefault", "version"] {
        if let Some(v) = live.get(k) {
            body.insert(k.to_string(), v.clone());
        }
    }
    for f in ["uid", "name", "type", "access", "url"].into_iter().chain(owned_fields(desired)) {
        if let Some(v) = desired.get(f) {
            body.insert(f.to_string(), v.clone());
        }
    }
    let mut json_data = live.get("jsonData").and_then(Value::as_object).cloned().unwrap_or_default();
    if let Some(ours) = desired.get("jsonData").and_then(Value::as_object) {
        for (k, v) in ours {
            json_data.insert(k.clone(), v.clone());
        }
    }
    body.insert("jsonData".to_string(), Value::Object(json_data));
    Value::Object(body)
}

/// Fingerprint of the settings we apply (see the module documentation on plan).
pub fn fingerprint(desired: &Value) -> String {
    let digest = Sha256::digest(desired.to_string().as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn spec_of(ctx: &Ctx, state: &ProvisionState) -> Result<DatasourceSpec> {
    let amp = require(&state.amp_workspace, "amp-workspace")?;
    let ws = require(&state.grafana_workspace, "grafana-workspace")?;
    let d = &ctx.deployment;
    Ok(DatasourceSpec {
        uid: datasource_uid(&d.name),
        name: datasource_name(&d.name),
        grafana_version: if ws.grafana_version.is_empty() {
            d.grafana_version.clone()
        } else {
            ws.grafana_version.clone()
        },
        prometheus_endpoint: amp.prometheus_endpoint.clone(),
        region: d.region.clone(),
        is_default: d.grafana_default_datasource,
    })
}

fn output(ws_id: &str, spec: &DatasourceSpec, action: DatasourceAction) -> DatasourceOutput {
    DatasourceOutput {
        workspace_id: ws_id.to_string(),
        uid: spec.uid.clone(),
        name: spec.name.clone(),
        datasource_type: datasource_type(&spec.grafana_version).to_string(),
        url: spec.prometheus_endpoint.clone(),
        is_default: spec.is_default,
        action,
        drift: Vec::new(),
        health: None,
        service_account: String::new(),
        service_account_created: false,
        admins_added: Vec::new(),
        admins_revoked: Vec::new(),
    }
}

/// Upserts the data source, checks its health and grants the admins.
pub async fn run(ctx: &Ctx, state: &ProvisionState) -> Result<DatasourceOutput> {
    let ws = require(&state.grafana_workspace, "grafana-workspace")?;
    let spec = spec_of(ctx, state)?;
    let desired = desired_datasource(&spec);
    let sa_name = grafana_http::service_account_name(&ctx.deployment.name);

    if grafana_major(&spec.grafana_version).is_some_and(|m| m < SERVICE_ACCOUNT_MIN_MAJOR) {
        return Err(Error::Precondition(format!(
            "Grafana workspace {} runs Grafana {}: configuring its data source needs a service account, which Managed \
             Grafana offers from Grafana {SERVICE_ACCOUNT_MIN_MAJOR}; upgrade the workspace (grafana.version, e.g. 10.4)",
            ws.workspace_id, spec.grafana_version
        )));
    }
    if ws.workspace_id == KNOWN_AFTER_APPLY || spec.prometheus_endpoint == KNOWN_AFTER_APPLY {
        // Plan on a deployment whose workspaces do not exist yet.
        let mut out = output(&ws.workspace_id, &spec, DatasourceAction::Create);
        out.service_account = sa_name.clone();
        out.service_account_created = true;
        ctx.report(Change::new(
            STEP,
            ChangeKind::Create,
            format!("Grafana service account {sa_name}"),
            json!({"grafanaRole": "ADMIN"}),
        ));
        ctx.report(Change::new(STEP, ChangeKind::Create, format!("Grafana data source {}", spec.uid), desired.clone()));
        out.admins_added = missing_admins(ctx, &[]);
        if !out.admins_added.is_empty() {
            ctx.report(Change::new(
                STEP,
                ChangeKind::Update,
                "Grafana workspace permissions",
                json!({"add": out.admins_added, "role": "ADMIN"}),
            ));
        }
        return Ok(out);
    }
    let base = |sa_created: bool| {
        let mut out = output(&ws.workspace_id, &spec, DatasourceAction::Unchanged);
        out.service_account = sa_name.clone();
        out.service_account_created = sa_created;
        out
    };
    let apply = || async {
        if ws.status != "ACTIVE" {
            return Err(Error::ResourceFailed(format!(
                "Grafana workspace {} is {}, not ACTIVE: the data source can only be configured in an ACTIVE workspace",
                ws.workspace_id, ws.status
            )));
        }
        let (sa, sa_created) = grafana_access::ensure_service_account(ctx, &ws.workspace_id).await?;
        let mut out = base(sa_created);
        let Some(sa) = sa else {
            return Err(Error::Internal(format!("service account {sa_name} neither found nor created")));
        };
        let endpoint = ws.endpoint.clone();
        let (action, drifted, health) =
            grafana_access::with_token(ctx, &ws.workspace_id, &endpoint, &sa.id, |api| upsert(api, &spec, &desired))
                .await?;
        out.action = action;
        out.drift = drifted;
        out.health = Some(health);
        let settings = ResourceRecord { id: fingerprint(&desired), owned: true, ..ResourceRecord::default() };
        let ds = ResourceRecord { id: spec.uid.clone(), owned: true, ..ResourceRecord::default() };
        record::update(ctx, |r| {
            r.resources.insert(RECORD_KEY.to_string(), ds);
            r.resources.insert(RECORD_SETTINGS_KEY.to_string(), settings);
        })
        .await?;
        Ok(out)
    };
    let preview = || async {
        let (sa, sa_created) = grafana_access::ensure_service_account(ctx, &ws.workspace_id).await?;
        let mut out = base(sa_created);
        plan_datasource(ctx, ws, &spec, &desired, sa.as_ref(), &mut out).await?;
        Ok(out)
    };
    let mut out = ctx.write_or_preview(apply, preview).await?;
    (out.admins_added, out.admins_revoked) = converge_admins(ctx, &ws.workspace_id).await?;
    retire_grafana_roles(ctx, state, ws).await?;
    // The workspaces the input named before go once this one is ACTIVE with the data source.
    grafana_workspace::retire_workspaces(ctx, STEP, &ws.retired_workspaces, &mut DeleteOutput::default()).await?;
    Ok(out)
}

/// The Grafana roles the input named before go once the workspace is ACTIVE with the new one:
/// updated to it by this run (then waited for), or found using it.
async fn retire_grafana_roles(ctx: &Ctx, state: &ProvisionState, ws: &GrafanaWorkspaceOutput) -> Result<()> {
    let Some(role) = state.grafana_role.as_ref().filter(|r| !r.retired_roles.is_empty()) else { return Ok(()) };
    if ws.status != "ACTIVE" {
        return Ok(());
    }
    if !ws.updated {
        let live = match ctx.clients.grafana.describe_workspace().workspace_id(&ws.workspace_id).send().await {
            Ok(out) => out.workspace().and_then(|w| w.workspace_role_arn().map(str::to_string)),
            Err(e) => return Err(from_sdk("grafana:DescribeWorkspace", e)),
        };
        if live.as_deref() != Some(role.role_arn.as_str()) {
            return Ok(());
        }
    }
    grafana_role::retire_roles(ctx, STEP, &role.retired_roles, &mut DeleteOutput::default()).await
}

/// The plan for the data source: read with a short-lived token where our service account exists
/// in an ACTIVE workspace (see the module documentation).
async fn plan_datasource(
    ctx: &Ctx,
    ws: &GrafanaWorkspaceOutput,
    spec: &DatasourceSpec,
    desired: &Value,
    sa: Option<&ServiceAccount>,
    out: &mut DatasourceOutput,
) -> Result<()> {
    let resource = format!("Grafana data source {}", spec.uid);
    let Some(sa) = sa else {
        ctx.report(Change::new(
            STEP,
            ChangeKind::Create,
            format!("Grafana service account {}", out.service_account),
            json!({"grafanaRole": "ADMIN"}),
        ));
        ctx.report(Change::new(STEP, ChangeKind::Create, resource, desired.clone()));
        out.action = DatasourceAction::Create;
        return Ok(());
    };
    if ws.status != "ACTIVE" {
        return plan_from_record(ctx, &ws.status, &resource, desired, out).await;
    }
    let uid = spec.uid.clone();
    let live = grafana_access::with_token(ctx, &ws.workspace_id, &ws.endpoint, &sa.id, |api| async move {
        api.get_datasource(&uid).await
    })
    .await?;
    let Some(live) = live else {
        ctx.report(Change::new(STEP, ChangeKind::Create, resource, desired.clone()));
        out.action = DatasourceAction::Create;
        return Ok(());
    };
    let drifted: Vec<(String, Value, Value)> =
        drift_fields(&live, desired).into_iter().map(|(f, l, d)| (f, masked(&l), masked(&d))).collect();
    if drifted.is_empty() {
        out.action = DatasourceAction::None;
        return Ok(());
    }
    out.drift = drifted.iter().map(|(f, l, d)| format!("{f}: {l} -> {d}")).collect();
    let fields: Map<String, Value> =
        drifted.into_iter().map(|(f, l, d)| (f, json!({"live": l, "desired": d}))).collect();
    ctx.report(Change::new(STEP, ChangeKind::Update, resource, json!({ "drift": fields })));
    out.action = DatasourceAction::Update;
    Ok(())
}

/// The plan when the workspace exists but is not ACTIVE (its Grafana cannot be read): the settings
/// apply would write against the fingerprint the last successful apply recorded.
async fn plan_from_record(
    ctx: &Ctx,
    status: &str,
    resource: &str,
    desired: &Value,
    out: &mut DatasourceOutput,
) -> Result<()> {
    let rec = record::load(ctx).await?;
    let recorded = rec.resource(RECORD_SETTINGS_KEY).map(|r| r.id.clone());
    if recorded.as_deref() == Some(fingerprint(desired).as_str()) {
        out.action = DatasourceAction::Unknown;
        return Ok(());
    }
    ctx.report(Change::new(
        STEP,
        ChangeKind::Update,
        resource,
        json!({
            "datasource": format!("unknown until apply (the Grafana workspace is {status}, so it cannot be read)"),
            "reason": if recorded.is_some() {
                "the settings differ from those of the last apply"
            } else {
                "no apply of this step was recorded"
            },
            "desired": desired,
        }),
    ));
    out.action = DatasourceAction::Update;
    Ok(())
}

/// Creates or corrects the data source, then checks its health. Returns the action, the
/// corrected fields and Grafana's health message.
async fn upsert(
    api: GrafanaApi,
    spec: &DatasourceSpec,
    desired: &Value,
) -> Result<(DatasourceAction, Vec<String>, String)> {
    let (action, drifted) = match api.get_datasource(&spec.uid).await? {
        None => {
            api.create_datasource(desired).await?;
            tracing::info!(uid = %spec.uid, r#type = %datasource_type(&spec.grafana_version), "Grafana data source created");
            (DatasourceAction::Created, Vec::new())
        }
        Some(live) => {
            let drifted = drift(&live, desired);
            if drifted.is_empty() {
                (DatasourceAction::Unchanged, drifted)
            } else {
                api.update_datasource(&spec.uid, &corrected(&live, desired)).await?;
                tracing::info!(uid = %spec.uid, drift = ?drifted, "Grafana data source corrected");
                (DatasourceAction::Updated, drifted)
            }
        }
    };
    let health = api.datasource_health(&spec.uid).await?;
    if !health.ok && health.message.contains("sts:AssumeRole") {
        // Grafana cannot assume a workspace role IAM has not propagated yet (created seconds
        // ago): the ASL retries IamPropagationError; a trust that stays wrong still fails.
        return Err(Error::IamPropagation(format!(
            "Grafana data source {} failed its health check: Grafana cannot assume the workspace role: {}",
            spec.uid, health.message
        )));
    }
    if !health.ok {
        return Err(Error::ResourceFailed(format!(
            "Grafana data source {} ({}) failed its health check (HTTP {}): {}",
            spec.uid,
            datasource_type(&spec.grafana_version),
            health.status,
            health.message
        )));
    }
    Ok((action, drifted, health.message))
}

/// `SSO_USER:<id>` / `SSO_GROUP:<id>` of the input's admins that `have` does not list as ADMIN.
fn missing_admins(ctx: &Ctx, have: &[String]) -> Vec<String> {
    let d = &ctx.deployment;
    let wanted = d
        .grafana_admin_users
        .iter()
        .map(|u| format!("{}:{u}", UserType::SsoUser.as_str()))
        .chain(d.grafana_admin_groups.iter().map(|g| format!("{}:{g}", UserType::SsoGroup.as_str())));
    let mut out: Vec<String> = Vec::new();
    for w in wanted {
        if !have.contains(&w) && !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// The workspace's `ADMIN` permissions, as `SSO_USER:<id>` / `SSO_GROUP:<id>`.
async fn current_admins(ctx: &Ctx, workspace_id: &str) -> Result<Vec<String>> {
    let mut have = Vec::new();
    let mut pages = ctx.clients.grafana.list_permissions().workspace_id(workspace_id).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| from_sdk("grafana:ListPermissions", e))?;
        for p in page.permissions() {
            if p.role() == &Role::Admin {
                if let Some(u) = p.user() {
                    have.push(format!("{}:{}", u.r#type().as_str(), u.id()));
                }
            }
        }
    }
    Ok(have)
}

/// Converges the workspace's `ADMIN` permissions with `grafana.admins`: grants the users and
/// groups that lack it, and revokes those this deployment granted earlier (the record's
/// `admins`) that the input no longer lists. Permissions we did not grant are never revoked.
/// Returns `(added, revoked)`.
async fn converge_admins(ctx: &Ctx, workspace_id: &str) -> Result<(Vec<String>, Vec<String>)> {
    let granted_before = record::load(ctx).await?.admins;
    if ctx.deployment.grafana_admin_users.is_empty()
        && ctx.deployment.grafana_admin_groups.is_empty()
        && granted_before.is_empty()
    {
        return Ok((Vec::new(), Vec::new()));
    }
    let have = current_admins(ctx, workspace_id).await?;
    let wanted = missing_admins(ctx, &[]);
    let missing = missing_admins(ctx, &have);
    let revoke: Vec<String> =
        granted_before.iter().filter(|g| !wanted.contains(g) && have.contains(g)).cloned().collect();
    if !missing.is_empty() {
        let change = Change::new(
            STEP,
            ChangeKind::Update,
            "Grafana workspace permissions",
            json!({"add": missing, "role": "ADMIN"}),
        );
        ctx.write(change, || async {
            // Recorded first: a crash after the grant still lets a later run revoke it.
            record::update(ctx, |r| {
                for m in &missing {
                    if !r.admins.contains(m) {
                        r.admins.push(m.clone());
                    }
                }
            })
            .await?;
            update_permissions(ctx, workspace_id, &missing, UpdateAction::Add).await?;
            tracing::info!(workspace_id, added = ?missing, "Grafana ADMIN permissions granted");
            Ok(())
        })
        .await?;
    }
    if !revoke.is_empty() {
        let change = Change::new(
            STEP,
            ChangeKind::Update,
            "Grafana workspace permissions",
            json!({"revoke": revoke, "role": "ADMIN"}),
        );
        ctx.write(change, || async {
            update_permissions(ctx, workspace_id, &revoke, UpdateAction::Revoke).await?;
            tracing::info!(workspace_id, revoked = ?revoke, "Grafana ADMIN permissions revoked");
            Ok(())
        })
        .await?;
    }
    // Forget what the input no longer lists (revoked now, or removed by hand meanwhile).
    if granted_before.iter().any(|g| !wanted.contains(g)) {
        record::update(ctx, |r| r.admins.retain(|g| wanted.contains(g))).await?;
    }
    Ok((missing, revoke))
}

/// Adds or revokes `ADMIN` for `entries` (`SSO_USER:<id>` / `SSO_GROUP:<id>`), in batches; the
/// per-entry errors `UpdatePermissions` answers inside its 200 are failures.
async fn update_permissions(ctx: &Ctx, workspace_id: &str, entries: &[String], action: UpdateAction) -> Result<()> {
    let mut failures = Vec::new();
    for batch in entries.chunks(PERMISSION_BATCH) {
        let mut instructions = Vec::new();
        for entry in batch {
            let (kind, id) = entry.split_once(':').unwrap_or(("", entry));
            let user = User::builder()
                .id(id)
                .r#type(UserType::from(kind))
                .build()
                .map_err(|e| Error::Internal(format!("UpdatePermissions user: {e}")))?;
            instructions.push(
                UpdateInstruction::builder()
                    .action(action.clone())
                    .role(Role::Admin)
                    .users(user)
                    .build()
                    .map_err(|e| Error::Internal(format!("UpdatePermissions instruction: {e}")))?,
            );
        }
        let resp = ctx
            .clients
            .grafana
            .update_permissions()
            .workspace_id(workspace_id)
            .set_update_instruction_batch(Some(instructions))
            .send()
            .await
            .map_err(|e| from_sdk("grafana:UpdatePermissions", e))?;
        for e in resp.errors() {
            let who = e
                .caused_by()
                .map(|c| {
                    c.users()
                        .iter()
                        .map(|u| format!("{} {}", u.r#type().as_str(), u.id()))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            failures.push(format!("{who}: {} (code {})", e.message(), e.code()));
        }
    }
    if !failures.is_empty() {
        let verb = if action == UpdateAction::Revoke { "revocations" } else { "grants" };
        return Err(Error::Aws {
            operation: "grafana:UpdatePermissions".to_string(),
            code: "UpdateError".to_string(),
            message: format!(
                "grafana.admins: {} of {} {verb} failed: {}",
                failures.len(),
                entries.len(),
                failures.join("; ")
            ),
        });
    }
    Ok(())
}

/// On delete: a workspace this deployment created takes the data source and the service account
/// with it (the grafana-workspace delete step runs after this one), so nothing is done. In an
/// adopted workspace, which is kept, our data source and our service account are removed (a
/// token is created for that and deleted again). Granted admin permissions are kept on delete
/// (apply revokes the ones the record lists when the input drops them). Idempotent.
pub async fn delete(ctx: &Ctx, _state: &ProvisionState) -> Result<DeleteOutput> {
    let mut out = DeleteOutput::default();
    let rec = record::load(ctx).await?;
    let Some(ws_rec) = rec.resource(keys::GRAFANA_WORKSPACE).cloned() else { return Ok(out) };
    let uid = datasource_uid(&ctx.deployment.name);
    if ws_rec.owned {
        return Ok(out);
    }
    let ws_id = ws_rec.id;
    let described = match ctx.clients.grafana.describe_workspace().workspace_id(&ws_id).send().await {
        Ok(d) => d,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => return Ok(out),
        Err(e) => return Err(from_sdk("grafana:DescribeWorkspace", e)),
    };
    let Some(ws) = described.workspace() else { return Ok(out) };
    if ws.status().as_str() != "ACTIVE" {
        return Err(Error::ResourceFailed(format!(
            "adopted Grafana workspace {ws_id} is {}: our data source {uid} and service account can only be removed \
             while it is ACTIVE; run the delete again then",
            ws.status().as_str()
        )));
    }
    let endpoint = ws.endpoint().to_string();
    let name = grafana_http::service_account_name(&ctx.deployment.name);
    let existing = grafana_access::find_service_account(ctx, &ws_id, &name).await?;
    if existing.is_none() && rec.resource(RECORD_KEY).is_none() {
        // Neither our service account nor a data source of ours: nothing to remove.
        return Ok(out);
    }
    ctx.report(Change::new(
        STEP,
        ChangeKind::Delete,
        format!("Grafana data source {uid}"),
        json!({"workspaceId": ws_id, "note": "if present (reading it needs a token)"}),
    ));
    ctx.report(Change::new(
        STEP,
        ChangeKind::Delete,
        format!("Grafana service account {name}"),
        json!({"workspaceId": ws_id}),
    ));
    let removed = ctx
        .write_unreported(|| async {
            // A service account is needed for a token; one removed by hand is recreated just for this.
            let sa = match existing {
                Some(sa) if grafana_http::check_service_account(&ws_id, &sa).is_ok() => sa,
                Some(sa) => {
                    grafana_access::delete_service_account(ctx, &ws_id, &sa.id).await?;
                    grafana_access::ensure_service_account(ctx, &ws_id)
                        .await?
                        .0
                        .ok_or_else(|| Error::Internal(format!("service account {name} neither found nor created")))?
                }
                None => grafana_access::ensure_service_account(ctx, &ws_id)
                    .await?
                    .0
                    .ok_or_else(|| Error::Internal(format!("service account {name} neither found nor created")))?,
            };
            let target = uid.clone();
            let removed = grafana_access::with_token(ctx, &ws_id, &endpoint, &sa.id, |api| async move {
                api.delete_datasource(&target).await
            })
            .await?;
            if removed {
                out.deleted.push(format!("{ws_id}: data source {uid}"));
            }
            grafana_access::delete_service_account(ctx, &ws_id, &sa.id).await?;
            out.deleted.push(format!("{ws_id}: service account {name}"));
            record::update(ctx, |r| {
                r.resources.remove(RECORD_KEY);
                r.resources.remove(RECORD_SETTINGS_KEY);
            })
            .await?;
            Ok(())
        })
        .await?;
    if removed.is_none() {
        out.deleted.push(format!("{ws_id}: data source {uid}"));
        out.deleted.push(format!("{ws_id}: service account {name}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(version: &str) -> DatasourceSpec {
        DatasourceSpec {
            uid: datasource_uid("dr-prod"),
            name: datasource_name("dr-prod"),
            grafana_version: version.to_string(),
            prometheus_endpoint: "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1/".to_string(),
            region: "us-east-1".to_string(),
            is_default: false,
        }
    }

    #[test]
    fn the_type_follows_the_grafana_version() {
        for (v, t) in [
            ("8.4", CORE_PROMETHEUS_TYPE),
            ("9.4", CORE_PROMETHEUS_TYPE),
            ("10.4", CORE_PROMETHEUS_TYPE),
            ("11.0", AMP_PLUGIN_TYPE),
            ("12.4", AMP_PLUGIN_TYPE),
            ("13", AMP_PLUGIN_TYPE),
            ("", AMP_PLUGIN_TYPE),
        ] {
            assert_eq!(datasource_type(v), t, "{v}");
        }
    }

    #[test]
    fn the_uid_is_short_stable_and_valid() {
        let uid = datasource_uid("dr-prod");
        assert_eq!(uid, datasource_uid("dr-prod"));
        assert_ne!(uid, datasource_uid("dr-prod2"));
        assert_eq!(uid.len(), 17);
        assert!(uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn the_desired_data_source_is_exactly_the_documented_one() {
        assert_eq!(
            desired_datasource(&spec("10.4")),
            json!({
                "uid": datasource_uid("dr-prod"), "name": "Amazon Managed Prometheus (dr-prod)", "type": "prometheus",
                "access": "proxy", "url": "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1/",
                "isDefault": false,
                "jsonData": {"httpMethod": "POST", "sigV4Auth": true, "sigV4AuthType": "ec2_iam_role", "sigV4Region": "us-east-1"}
            })
        );
        assert_eq!(desired_datasource(&spec("12.4"))["type"], AMP_PLUGIN_TYPE);
    }

    #[test]
    fn drift_names_owned_fields_only() {
        let desired = desired_datasource(&spec("10.4"));
        let mut live = desired.clone();
        live["id"] = json!(3);
        live["version"] = json!(4);
        live["isDefault"] = json!(true);
        live["jsonData"]["timeInterval"] = json!("30s");
        assert!(drift(&live, &desired).is_empty(), "isDefault is not ours when the input does not ask for it");
        live["jsonData"]["sigV4AuthType"] = json!("workspace-iam-role");
        live["type"] = json!(AMP_PLUGIN_TYPE);
        assert_eq!(
            drift(&live, &desired),
            vec![
                format!("type: \"{AMP_PLUGIN_TYPE}\" -> \"prometheus\""),
                "jsonData.sigV4AuthType: \"workspace-iam-role\" -> \"ec2_iam_role\"".to_string()
            ]
        );
        let mut wants_default = spec("10.4");
        wants_default.is_default = true;
        let d2 = desired_datasource(&wants_default);
        let mut live2 = d2.clone();
        live2["isDefault"] = json!(false);
        assert_eq!(drift(&live2, &d2), vec!["isDefault: false -> true".to_string()]);
    }

    #[test]
    fn drift_fields_give_each_field_with_its_live_and_desired_value() {
        // GIVEN a live data source whose url and region were edited by hand, and a member removed
        let desired = desired_datasource(&spec("10.4"));
        let mut live = desired.clone();
        live["url"] = json!("https://example.com/prometheus/");
        live["jsonData"]["sigV4Region"] = json!("eu-west-1");
        live["jsonData"].as_object_mut().unwrap().remove("httpMethod");
        // WHEN comparing THEN each owned field that differs is named, with both values, in order
        assert_eq!(
            drift_fields(&live, &desired),
            vec![
                ("url".to_string(), json!("https://example.com/prometheus/"), desired["url"].clone()),
                ("jsonData.httpMethod".to_string(), Value::Null, json!("POST")),
                ("jsonData.sigV4Region".to_string(), json!("eu-west-1"), json!("us-east-1")),
            ]
        );
        // AND the string form apply reports is built from the same fields
        assert_eq!(drift(&live, &desired)[2], "jsonData.sigV4Region: \"eu-west-1\" -> \"us-east-1\"");
        assert!(drift_fields(&desired, &desired).is_empty());
    }

    #[test]
    fn credentials_in_a_reported_url_are_masked() {
        assert_eq!(
            masked(&json!("https://user:s3cret@prom.example.com/x?y#z")),
            json!("https://***@prom.example.com/x?y#z")
        );
        assert_eq!(masked(&json!("https://glsa_abc@prom.example.com")), json!("https://***@prom.example.com"));
        let plain = json!("https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1/");
        assert_eq!(masked(&plain), plain);
        assert_eq!(
            masked(&json!("https://h/path@x")),
            json!("https://h/path@x"),
            "an @ after the host is not userinfo"
        );
        assert_eq!(masked(&json!(true)), json!(true));
        assert_eq!(masked(&json!("eu-west-1")), json!("eu-west-1"));
    }

    #[test]
    fn the_correction_keeps_what_is_not_ours() {
        let desired = desired_datasource(&spec("10.4"));
        let live = json!({
            "id": 3, "uid": desired["uid"], "name": "renamed", "type": "prometheus", "access": "proxy",
            "url": desired["url"], "isDefault": true, "version": 7, "basicAuth": false,
            "jsonData": {"httpMethod": "GET", "sigV4Auth": true, "sigV4AuthType": "keys", "sigV4Region": "us-east-1", "timeInterval": "30s"},
            "secureJsonFields": {"x": true}
        });
        let body = corrected(&live, &desired);
        assert_eq!(body["name"], desired["name"]);
        assert_eq!(body["isDefault"], true);
        assert_eq!(body["version"], 7);
        assert_eq!(body["jsonData"]["timeInterval"], "30s");
        assert_eq!(body["jsonData"]["httpMethod"], "POST");
        assert_eq!(body["jsonData"]["sigV4AuthType"], "ec2_iam_role");
        assert!(body.get("secureJsonFields").is_none() && body.get("secureJsonData").is_none());
        assert!(drift(&body, &desired).is_empty());
    }

    #[test]
    fn fingerprints_change_with_the_settings() {
        let a = fingerprint(&desired_datasource(&spec("10.4")));
        assert_eq!(a, fingerprint(&desired_datasource(&spec("10.4"))));
        assert_ne!(a, fingerprint(&desired_datasource(&spec("12.4"))));
        assert_eq!(a.len(), 32);
    }
}
