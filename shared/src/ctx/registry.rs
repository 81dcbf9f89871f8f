//! The registry of the account's deployments (per account and region, in SSM, at a path no
//! `ssmPrefix` can reach): one parameter per deployment, `/o11y-provisioner/deployments/<name>`,
//! holding its [`Entry`]: the SSM prefix it publishes under, the prefixes it still has to clean
//! up, and the exclusive names it claims. `preflight` reads every entry ([`check`], read-only, so
//! `plan` refuses too) and refuses with `ConflictError`, before any write, a deployment whose
//! prefix equals, contains or lies inside another's, or that claims a name another claims; it
//! then writes this deployment's entry ([`register`], through the gate) before the first resource
//! write. Sharing the IRSA role, the namespace or the cluster stays allowed: each deployment holds
//! its own trust statement.
//!
//! An `ssmPrefix` change is a move the registry remembers, in three crash-safe writes: the entry
//! names the new prefix and where the record still is (`recordAt`) and adds the old prefix to
//! `retiredPrefixes`; the record is copied to the new prefix; `recordAt` is dropped. The steps then
//! work under the new prefix, `publish` writes the parameters there, and only then deletes, under
//! each retired prefix, the parameters we publish (known leaf names, never anything else) and the
//! old record ([`retire_prefixes`]). A re-run after a crash at any point redoes what is missing.
//! A deployment from before the registry has no entry: it gets one on its next apply.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::aws::sdk::from_sdk;
use crate::aws::ssm;
use crate::ctx::record::RECORD_LEAF;
use crate::ctx::{Change, Ctx};
use crate::domain::error::{Error, Result};
use crate::domain::input::{Action, Deployment, ProvisionInput};
use crate::domain::names::ssm_path_overlap as overlap;
use crate::state::ChangeKind;

/// The root of everything the provisioner keeps outside the deployments' prefixes.
pub const ROOT: &str = "/o11y-provisioner";
/// The registry's path: one parameter per deployment below it.
pub const DEPLOYMENTS_PATH: &str = "/o11y-provisioner/deployments";
/// The leases' path: one parameter per deployment below it, while a run holds it.
pub const LEASES_PATH: &str = "/o11y-provisioner/leases";

const STEP: &str = "preflight";

/// One deployment's registry entry (the parameter's JSON value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub deployment_name: String,
    /// The prefix its parameters and record are published under.
    pub ssm_prefix: String,
    /// While a move to `ssm_prefix` has not copied the record yet: where the record is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_at: Option<String>,
    /// Earlier prefixes whose published parameters and record are still to be deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_prefixes: Vec<String>,
    /// The names no other deployment may claim.
    pub claims: Claims,
    /// The execution in which the deployment was born (no entry and no record before it): a
    /// CloudFormation Create that ends `TIMED_OUT` or `ABORTED` in that execution made
    /// everything there is, so its rollback may delete it all (`cfn::handle_status_change`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub born_in: Option<String>,
    /// The input of the last apply, every default written out: what a delete that names only
    /// the deployment is completed from ([`crate::ctx::recall`]). `None`: an entry from before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<ProvisionInput>,
}

/// The exclusive names a deployment claims: resources it creates and deletes as its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    pub write_policy_name: String,
    pub grafana_read_policy_name: String,
    pub grafana_role_name: String,
    pub grafana_workspace_name: String,
    pub amp_alias: String,
}

impl Claims {
    /// The claims of a deployment's input.
    pub fn of(d: &Deployment) -> Self {
        Self {
            write_policy_name: d.write_policy_name.clone(),
            grafana_read_policy_name: d.grafana_read_policy_name.clone(),
            grafana_role_name: d.grafana_role_name.clone(),
            grafana_workspace_name: d.grafana_workspace_name.clone(),
            amp_alias: d.amp_alias.clone(),
        }
    }

    /// `(namespace, input field, name as compared, name)`: names in one namespace must differ
    /// (IAM names case-insensitively, as IAM compares them).
    fn names(&self) -> [(&'static str, &'static str, String, &str); 5] {
        [
            ("IAM policy", "writePolicyName", self.write_policy_name.to_lowercase(), &self.write_policy_name),
            (
                "IAM policy",
                "grafana.readPolicyName",
                self.grafana_read_policy_name.to_lowercase(),
                &self.grafana_read_policy_name,
            ),
            ("IAM role", "grafana.roleName", self.grafana_role_name.to_lowercase(), &self.grafana_role_name),
            (
                "Grafana workspace",
                "grafana.workspaceName",
                self.grafana_workspace_name.clone(),
                &self.grafana_workspace_name,
            ),
            ("AMP workspace alias", "amp.alias", self.amp_alias.clone(), &self.amp_alias),
        ]
    }
}

impl Entry {
    /// Every prefix the deployment still holds: its own, where its record is, and the retired
    /// ones not cleaned up yet.
    pub fn held_prefixes(&self) -> Vec<String> {
        let mut held = vec![self.ssm_prefix.clone()];
        for p in self.record_at.iter().chain(&self.retired_prefixes) {
            if !held.contains(p) {
                held.push(p.clone());
            }
        }
        held
    }
}

/// The entry's parameter name of deployment `name`.
pub fn entry_parameter(name: &str) -> String {
    ssm::parameter_name(DEPLOYMENTS_PATH, name)
}

/// The lease's parameter name of deployment `name`: independent of its `ssmPrefix`, so that runs
/// of one deployment exclude each other whatever prefixes their inputs name.
pub fn lease_parameter(name: &str) -> String {
    ssm::parameter_name(LEASES_PATH, name)
}

/// Why `me` may not run `action` beside `others` (the other deployments' entries), or `None`.
/// Applying, its prefix must be disjoint from every prefix another holds and its claims from
/// theirs; deleting, only an equal prefix is refused (the delete would remove the other's
/// parameters and read its record).
pub fn conflict(me: &Entry, action: Action, others: &[Entry]) -> Option<String> {
    for other in others.iter().filter(|o| o.deployment_name != me.deployment_name) {
        let theirs = format!(
            "deployment {:?} (registry entry {})",
            other.deployment_name,
            entry_parameter(&other.deployment_name)
        );
        for held in other.held_prefixes() {
            match overlap(&me.ssm_prefix, &held) {
                Some(how) if action != Action::Delete || how == "equals" => {
                    return Some(format!(
                        "ssmPrefix: {:?} {how} {held:?}, an SSM prefix of {theirs}: deployments must not share or nest \
                         SSM prefixes (their records, leases and parameters would overwrite each other); choose another \
                         ssmPrefix, or delete deployment {:?} first",
                        me.ssm_prefix, other.deployment_name
                    ))
                }
                _ => {}
            }
        }
        if action == Action::Delete {
            continue;
        }
        for (kind, field, key, name) in me.claims.names() {
            if let Some((_, their_field, _, _)) =
                other.claims.names().into_iter().find(|(k, _, their_key, _)| *k == kind && *their_key == key)
            {
                return Some(format!(
                    "{field}: {kind} {name:?} is claimed by {theirs} as its {their_field}: two deployments must not \
                     claim one resource (each would change and delete it as its own); choose another {field}, or \
                     delete deployment {:?} first",
                    other.deployment_name
                ));
            }
        }
    }
    None
}

/// Every entry of the registry (`GetParametersByPath`, every page).
pub async fn list(ctx: &Ctx) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut pages =
        ctx.clients.ssm.get_parameters_by_path().path(DEPLOYMENTS_PATH).recursive(false).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| from_sdk("ssm:GetParametersByPath", e))?;
        for p in page.parameters() {
            let name = p.name().unwrap_or_default();
            let entry: Entry = serde_json::from_str(p.value().unwrap_or_default()).map_err(|e| {
                Error::Conflict(format!(
                    "the registry entry {name} is not one this version understands ({e}): correct or delete it"
                ))
            })?;
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// This deployment's entry, `None` before its first apply with the registry.
pub async fn own(ctx: &Ctx) -> Result<Option<Entry>> {
    let name = entry_parameter(&ctx.deployment.name);
    match ssm::get_parameter(&ctx.clients.ssm, &name).await? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::Conflict(format!(
                "the registry entry {name} is not one this version understands ({e}): correct or delete it"
            ))
        }),
    }
}

/// What [`check`] found: this deployment's entry as it was.
#[derive(Debug, Clone)]
pub struct Checked {
    own: Option<Entry>,
}

impl Checked {
    /// The registry already had this deployment's own entry (it existed before this run, whatever
    /// its `ssmPrefix` was then).
    pub fn existed(&self) -> bool {
        self.own.is_some()
    }
}

fn desired(d: &Deployment, own: Option<&Entry>) -> Entry {
    Entry {
        deployment_name: d.name.clone(),
        ssm_prefix: d.ssm_prefix.clone(),
        record_at: None,
        retired_prefixes: Vec::new(),
        claims: own.filter(|_| d.action == Action::Delete).map(|e| e.claims.clone()).unwrap_or_else(|| Claims::of(d)),
        born_in: own.and_then(|e| e.born_in.clone()),
        applied: match d.action {
            Action::Apply => Some(d.as_input()),
            Action::Plan | Action::Delete => own.and_then(|e| e.applied.clone()),
        },
    }
}

/// The read-only half, before the lease: refuses a `ssmPrefix` under the registry's root, and a
/// deployment that conflicts with another one's entry ([`conflict`]), with `ConflictError`.
pub async fn check(ctx: &Ctx) -> Result<Checked> {
    let d = &ctx.deployment;
    if overlap(ROOT, &d.ssm_prefix).is_some() {
        return Err(Error::validation(
            "ssmPrefix",
            format!("must not be {ROOT} or below it (the deployments' registry and leases live there)"),
        ));
    }
    let entries = list(ctx).await?;
    let own = entries.iter().find(|e| e.deployment_name == d.name).cloned();
    if let Some(why) = conflict(&desired(d, own.as_ref()), d.action, &entries) {
        return Err(Error::Conflict(why));
    }
    Ok(Checked { own })
}

async fn put(ctx: &Ctx, entry: &Entry, exists: bool) -> Result<()> {
    let value = serde_json::to_string(entry).map_err(|e| Error::Internal(e.to_string()))?;
    let name = entry_parameter(&entry.deployment_name);
    let description = format!("o11y-provisioner registry entry of deployment {}", entry.deployment_name);
    let tags = ctx.owner_tags();
    ctx.write_unreported(|| ssm::put_parameter(&ctx.clients.ssm, &name, &value, exists, &tags, &description)).await?;
    Ok(())
}

async fn remove(ctx: &Ctx, name: &str) -> Result<()> {
    ctx.write_unreported(|| ssm::delete_parameters(&ctx.clients.ssm, vec![name.to_string()])).await?;
    Ok(())
}

/// The writing half, under the lease and before the first resource write: creates or updates
/// this deployment's entry (a `delete` only updates an existing one), and moves the record when
/// `ssmPrefix` changed: the entry first (the new prefix, where the record still is, the old
/// prefix retired), then the record, then the entry without `recordAt`. A new or changed claim
/// is checked again after its write; when another deployment claimed the same meanwhile, the
/// entry is put back and the run refused.
///
/// `born_in`: the execution, when the deployment is born in it (a new entry only).
pub async fn register(ctx: &Ctx, checked: Checked, born_in: Option<&str>) -> Result<()> {
    let d = &ctx.deployment;
    let prev = checked.own;
    if d.action == Action::Delete && prev.is_none() {
        return Ok(());
    }
    let mut next = desired(d, prev.as_ref());
    if prev.is_none() {
        next.born_in = born_in.map(str::to_string);
    }
    // Moving back to a prefix we left and have not cleaned yet: its stale record is ours.
    let back_to_ours = prev.as_ref().is_some_and(|p| p.retired_prefixes.contains(&d.ssm_prefix));
    if let Some(prev) = &prev {
        next.retired_prefixes = prev.retired_prefixes.clone();
        next.record_at = prev.record_at.clone();
        if prev.ssm_prefix != d.ssm_prefix {
            if !next.retired_prefixes.contains(&prev.ssm_prefix) {
                next.retired_prefixes.push(prev.ssm_prefix.clone());
            }
            next.record_at.get_or_insert_with(|| prev.ssm_prefix.clone());
        }
        next.retired_prefixes.retain(|p| p != &d.ssm_prefix);
    }
    if prev.as_ref() != Some(&next) {
        put(ctx, &next, prev.is_some()).await?;
        if prev.as_ref().map(|p| &p.claims) != Some(&next.claims)
            || prev.as_ref().map(|p| &p.ssm_prefix) != Some(&next.ssm_prefix)
        {
            recheck(ctx, &next, prev.as_ref()).await?;
        }
    }
    if let Some(from) = next.record_at.take() {
        if from != d.ssm_prefix {
            if let Err(e) = move_record(ctx, &from, back_to_ours).await {
                // Refused (or failed): the entry goes back to what it was, so that no later run
                // takes the refused prefix for one of ours to clean up.
                if let Some(prev) = &prev {
                    put(ctx, prev, true).await?;
                }
                return Err(e);
            }
        }
        put(ctx, &next, true).await?;
    }
    Ok(())
}

/// After writing `next`: refuses (and puts `prev` back) when another entry now conflicts.
async fn recheck(ctx: &Ctx, next: &Entry, prev: Option<&Entry>) -> Result<()> {
    let entries = list(ctx).await?;
    let Some(why) = conflict(next, ctx.deployment.action, &entries) else { return Ok(()) };
    match prev {
        Some(prev) => put(ctx, prev, true).await?,
        None => remove(ctx, &entry_parameter(&next.deployment_name)).await?,
    }
    Err(Error::Conflict(why))
}

/// Copies the record from `<from>/provisioner-state` to the input's prefix (overwriting: the
/// one at `from` is the current one until the entry says otherwise). A record already there is
/// overwritten only when it is ours (`back_to_ours`: a prefix this deployment left) or is the
/// same copy; anyone else's is refused.
async fn move_record(ctx: &Ctx, from: &str, back_to_ours: bool) -> Result<()> {
    let source = ssm::parameter_name(from, RECORD_LEAF);
    let Some(value) = ssm::get_parameter(&ctx.clients.ssm, &source).await? else { return Ok(()) };
    let target = ssm::parameter_name(&ctx.deployment.ssm_prefix, RECORD_LEAF);
    // The same value: an earlier run copied it and stopped before the entry said so.
    match ssm::get_parameter(&ctx.clients.ssm, &target).await? {
        Some(there) if there == value => return Ok(()),
        Some(_) if back_to_ours => {}
        Some(_) => {
            return Err(Error::Conflict(format!(
                "ssmPrefix: {target} already holds another record (a deployment made before the registry, or \
                 by hand); moving this deployment there would overwrite it: choose another ssmPrefix, or delete \
                 what owns {target} first"
            )))
        }
        None => {}
    }
    let (tags, description) = (ctx.owner_tags(), crate::ctx::record::description(ctx));
    ctx.record_cache.forget();
    ctx.write_unreported(|| ssm::put_parameter(&ctx.clients.ssm, &target, &value, false, &tags, &description)).await?;
    tracing::info!(from = %source, to = %target, "record moved");
    Ok(())
}

/// For `plan`, which runs the apply steps without preflight's writes: the context that reads
/// the record where it is now (under the old prefix while an `ssmPrefix` change is not applied),
/// with the move reported.
pub async fn for_plan(ctx: &Ctx) -> Result<Ctx> {
    let mut planning = ctx.clone();
    let Some(own) = own(ctx).await? else { return Ok(planning) };
    let at = own.record_at.clone().unwrap_or_else(|| own.ssm_prefix.clone());
    if at != ctx.deployment.ssm_prefix {
        ctx.report(Change::new(
            STEP,
            ChangeKind::Update,
            format!("ssmPrefix {} -> {}", own.ssm_prefix, ctx.deployment.ssm_prefix),
            json!({
                "registryEntry": entry_parameter(&own.deployment_name),
                "record": {"from": ssm::parameter_name(&at, RECORD_LEAF),
                           "to": ssm::parameter_name(&ctx.deployment.ssm_prefix, RECORD_LEAF)},
                "then": "publish writes the parameters under the new prefix, then deletes ours under the old one",
            }),
        ));
        planning.deployment.record_prefix = Some(at);
    }
    Ok(planning)
}

/// Deletes, under `prefix`, the parameters of `leaves` and the record, those that exist
/// (through the gate, reported as `step`'s). Returns their names.
async fn delete_leaves(ctx: &Ctx, step: &'static str, prefix: &str, leaves: &[&str]) -> Result<Vec<String>> {
    let names: Vec<String> =
        leaves.iter().chain([&RECORD_LEAF]).map(|leaf| ssm::parameter_name(prefix, leaf)).collect();
    let live = ssm::current_values(&ctx.clients.ssm, &names).await?;
    let existing: Vec<String> = names.into_iter().filter(|n| live.contains_key(n)).collect();
    ctx.record_cache.forget();
    for batch in existing.chunks(ssm::GET_BATCH) {
        let batch = batch.to_vec();
        let change = Change::new(step, ChangeKind::Delete, "SSM parameters", json!({ "parameters": batch }));
        ctx.write(change, || ssm::delete_parameters(&ctx.clients.ssm, batch.clone())).await?;
    }
    Ok(existing)
}

/// The prefixes other than the input's that the entry still holds.
fn other_prefixes(own: &Entry, d: &Deployment) -> Vec<String> {
    own.held_prefixes().into_iter().filter(|p| p != &d.ssm_prefix).collect::<BTreeSet<_>>().into_iter().collect()
}

/// After `publish` wrote the parameters under the new prefix: deletes, under every prefix this
/// deployment held before, the parameters it publishes (`leaves`) and its old record, then
/// forgets those prefixes. Returns what was (or, planning, would be) deleted.
pub async fn retire_prefixes(ctx: &Ctx, step: &'static str, leaves: &[&str]) -> Result<Vec<String>> {
    let Some(own) = own(ctx).await? else { return Ok(Vec::new()) };
    let mut deleted = Vec::new();
    for prefix in other_prefixes(&own, &ctx.deployment) {
        deleted.extend(delete_leaves(ctx, step, &prefix, leaves).await?);
    }
    if !own.retired_prefixes.is_empty() && own.record_at.is_none() && own.ssm_prefix == ctx.deployment.ssm_prefix {
        put(ctx, &Entry { retired_prefixes: Vec::new(), ..own }, true).await?;
    }
    Ok(deleted)
}

/// At the end of a delete: deletes the parameters (`leaves`) and records under every other
/// prefix the entry holds, then the entry itself. Returns what was deleted.
pub async fn unregister(ctx: &Ctx, step: &'static str, leaves: &[&str]) -> Result<Vec<String>> {
    let Some(own) = own(ctx).await? else { return Ok(Vec::new()) };
    let mut deleted = Vec::new();
    for prefix in other_prefixes(&own, &ctx.deployment) {
        deleted.extend(delete_leaves(ctx, step, &prefix, leaves).await?);
    }
    let name = entry_parameter(&own.deployment_name);
    let change = Change::new(step, ChangeKind::Delete, "registry entry", json!({ "parameter": name }));
    ctx.write(change, || ssm::delete_parameters(&ctx.clients.ssm, vec![name.clone()])).await?;
    deleted.push(name);
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, prefix: &str) -> Entry {
        Entry {
            deployment_name: name.into(),
            ssm_prefix: prefix.into(),
            record_at: None,
            retired_prefixes: Vec::new(),
            claims: Claims {
                write_policy_name: format!("{name}-observability-write"),
                grafana_read_policy_name: format!("{name}-grafana-amp-read"),
                grafana_role_name: format!("{name}-grafana"),
                grafana_workspace_name: name.into(),
                amp_alias: name.into(),
            },
            born_in: None,
            applied: None,
        }
    }

    #[test]
    fn prefixes_overlap_by_whole_segments() {
        assert_eq!(overlap("/o11y/a", "/o11y/a"), Some("equals"));
        assert_eq!(overlap("/o11y", "/o11y/a"), Some("contains"));
        assert_eq!(overlap("/o11y/a/b", "/o11y/a"), Some("is inside"));
        assert_eq!(overlap("/o11y/a", "/o11y/ab"), None);
        assert_eq!(overlap("/o11y/ab", "/o11y/a"), None);
    }

    #[test]
    fn shared_or_nested_prefixes_are_refused_naming_the_other_deployment() {
        let a = entry("a", "/o11y/a");
        for prefix in ["/o11y/a", "/o11y", "/o11y/a/b"] {
            let why = conflict(&entry("b", prefix), Action::Apply, std::slice::from_ref(&a)).expect(prefix);
            assert!(why.starts_with("ssmPrefix:") && why.contains("deployment \"a\""), "{why}");
        }
        assert_eq!(conflict(&entry("b", "/o11y/b"), Action::Apply, std::slice::from_ref(&a)), None);
        // Its own entry never conflicts; a retired prefix of another is still held.
        assert_eq!(conflict(&entry("a", "/o11y/a"), Action::Apply, std::slice::from_ref(&a)), None);
        let moving = Entry { retired_prefixes: vec!["/o11y/old".into()], ..entry("a", "/o11y/a") };
        assert!(conflict(&entry("b", "/o11y/old"), Action::Apply, &[moving]).is_some());
        // Deleting, only an equal prefix is refused.
        assert!(conflict(&entry("b", "/o11y/a/b"), Action::Delete, std::slice::from_ref(&a)).is_none());
        assert!(conflict(&entry("b", "/o11y/a"), Action::Delete, &[a]).is_some());
    }

    #[test]
    fn claimed_names_are_refused_iam_names_case_insensitively() {
        let a = entry("a", "/o11y/a");
        let mut b = entry("b", "/o11y/b");
        assert_eq!(conflict(&b, Action::Apply, std::slice::from_ref(&a)), None);
        b.claims.write_policy_name = "A-Observability-Write".into();
        let why = conflict(&b, Action::Apply, std::slice::from_ref(&a)).unwrap();
        assert!(why.starts_with("writePolicyName:") && why.contains("deployment \"a\""), "{why}");
        // Policies share one namespace: a write policy named like another's read policy.
        b.claims.write_policy_name = "a-grafana-amp-read".into();
        assert!(conflict(&b, Action::Apply, std::slice::from_ref(&a))
            .unwrap()
            .contains("as its grafana.readPolicyName"));
        let mut c = entry("c", "/o11y/c");
        c.claims.amp_alias = "A".into();
        assert_eq!(conflict(&c, Action::Apply, std::slice::from_ref(&a)), None, "aliases compare exactly");
        c.claims.amp_alias = "a".into();
        assert!(conflict(&c, Action::Apply, std::slice::from_ref(&a)).unwrap().starts_with("amp.alias:"));
        assert_eq!(conflict(&c, Action::Delete, &[a]), None, "a delete claims nothing");
    }

    #[test]
    fn entries_read_back_as_written() {
        let e = Entry {
            record_at: Some("/o11y/x".into()),
            retired_prefixes: vec!["/o11y/x".into()],
            ..entry("a", "/o11y/a")
        };
        let text = serde_json::to_string(&e).unwrap();
        assert!(text.contains("\"ssmPrefix\":\"/o11y/a\"") && text.contains("\"writePolicyName\""), "{text}");
        assert_eq!(serde_json::from_str::<Entry>(&text).unwrap(), e);
        assert_eq!(e.held_prefixes(), vec!["/o11y/a".to_string(), "/o11y/x".to_string()]);
    }
}
