//! The deployment's record in SSM (`<ssmPrefix>/provisioner-state`): what earlier runs added to
//! the IRSA trust policy (and the trust policy before the first run), and which resources they
//! created or adopted. Each step writes it *before* its own change, so that a delete, even after
//! a failed or interrupted create, knows exactly what is ours. Ownership tags say the same for
//! the resources that carry tags; the record is the source of truth for the trust statement.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aws::ssm;
use crate::ctx::Ctx;
use crate::domain::error::{Error, Result};
use crate::domain::names::iam_name;

/// Leaf name of the record under the SSM prefix.
pub const RECORD_LEAF: &str = "provisioner-state";

/// Keys of [`Record::resources`].
pub mod keys {
    pub const AMP_WORKSPACE: &str = "ampWorkspace";
    pub const WRITE_POLICY: &str = "writePolicy";
    pub const GRAFANA_ROLE: &str = "grafanaRole";
    pub const READ_POLICY: &str = "readPolicy";
    pub const GRAFANA_WORKSPACE: &str = "grafanaWorkspace";
}

/// What we added to the IRSA role's trust policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustRecord {
    pub role_name: String,
    pub namespace: String,
    /// The statement we added, exactly; `None` when existing trust already admitted ours.
    pub added_statement: Option<Value>,
    /// The trust policy before the first apply: every principal it admitted stays admitted.
    pub original_document: Value,
}

/// One resource: its id (ARN, workspace id or name) and whether we created it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRecord {
    pub id: String,
    /// Created by this deployment (deleted by `delete`); false: adopted, never deleted.
    pub owned: bool,
    /// For policies: attached to their role by us (detached by `delete`).
    #[serde(default)]
    pub attached_by_us: bool,
    /// For policies we attached: the role we attached it to (records before this field: unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_to: Option<String>,
    /// For an adopted Grafana role: the trust statements we added to it, exactly (written before
    /// the trust policy changes); removed again, when still as we wrote them, once we leave it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added_trust: Vec<Value>,
    /// For an AMP workspace we created: its remote-write URL was never published (no apply got
    /// to `publish` since), so it holds none of the cluster's metrics. A delete without an
    /// explicit `retainMetrics` deletes it rather than keeping an empty workspace.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unpublished: bool,
}

/// A resource taken out of [`Record::resources`] because the input now names another one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetiredResource {
    /// The key it was recorded under ([`keys`]).
    pub key: String,
    #[serde(flatten)]
    pub resource: ResourceRecord,
}

/// The record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    #[serde(default)]
    pub trust: Option<TrustRecord>,
    #[serde(default)]
    pub resources: BTreeMap<String, ResourceRecord>,
    /// Trust statements we added to roles the input no longer names (`irsaRoleName` changed),
    /// still to be removed: written before the move, so that a crash half-way still cleans up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_trust: Vec<TrustRecord>,
    /// Resources recorded under a key whose input now names another one (a renamed policy or
    /// Grafana role), still to be removed once the new one is in place: moved here when the new
    /// one is accepted and recorded in its place ([`accept`]), never before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<RetiredResource>,
    /// The Grafana `ADMIN` permissions this deployment granted (`SSO_USER:<id>`,
    /// `SSO_GROUP:<id>`): the only ones it ever revokes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admins: Vec<String>,
}

impl Record {
    /// The resource recorded under `key`.
    pub fn resource(&self, key: &str) -> Option<&ResourceRecord> {
        self.resources.get(key)
    }

    /// The retired resources of `key`.
    pub fn retired_of(&self, key: &str) -> Vec<ResourceRecord> {
        self.retired.iter().filter(|x| x.key == key).map(|x| x.resource.clone()).collect()
    }
}

/// The resources of `key` to remove because the input now names `name`: those retired before,
/// and the recorded one when its name (the last part of its id) differs; never one named `name`
/// (the input names it again: it is current, not retired). Read-only: returned rather than read
/// back later, so that a plan, which writes no record, reports them.
pub fn renamed(rec: &Record, key: &str, name: &str) -> Vec<ResourceRecord> {
    let mut out = retired_except(rec, key, name);
    if let Some(prev) = rec.resource(key).filter(|e| iam_name(&e.id) != name) {
        if !out.iter().any(|x| x.id == prev.id) {
            out.push(prev.clone());
        }
    }
    out
}

/// The retired resources of `key` but those named `name` (the input names them again).
pub fn retired_except(rec: &Record, key: &str, name: &str) -> Vec<ResourceRecord> {
    rec.retired_of(key).into_iter().filter(|x| iam_name(&x.id) != name).collect()
}

/// What the record knows of the resource `id` under `key`: its entry, or a retired entry of it
/// (a name the input names again).
pub fn known(rec: &Record, key: &str, id: &str) -> Option<ResourceRecord> {
    rec.resource(key)
        .filter(|e| e.id == id)
        .cloned()
        .or_else(|| rec.retired.iter().find(|x| x.key == key && x.resource.id == id).map(|x| x.resource.clone()))
}

/// Records `entry` under `key` once the step has accepted it (its ownership checked): the entry
/// it replaces, when it names another resource, is moved to [`Record::retired`] in the same
/// write (so that a crash before its removal still finds it), and a retired entry of the
/// accepted resource (same id, or same name) is dropped: it is current again, never removed.
pub fn accept(rec: &mut Record, key: &str, entry: ResourceRecord) {
    let name = iam_name(&entry.id).to_string();
    if let Some(prev) = rec.resources.remove(key) {
        if iam_name(&prev.id) != name && !rec.retired.iter().any(|x| x.key == key && x.resource.id == prev.id) {
            rec.retired.push(RetiredResource { key: key.to_string(), resource: prev });
        }
    }
    rec.retired.retain(|x| !(x.key == key && (x.resource.id == entry.id || iam_name(&x.resource.id) == name)));
    rec.resources.insert(key.to_string(), entry);
}

/// The record's parameter name (under `ssmPrefix`; while a plan previews an `ssmPrefix` change,
/// where the record still is: [`crate::ctx::registry`]).
pub fn parameter(ctx: &Ctx) -> String {
    let d = &ctx.deployment;
    ssm::parameter_name(d.record_prefix.as_deref().unwrap_or(&d.ssm_prefix), RECORD_LEAF)
}

/// The record as this invocation last read or wrote it, so that a step reads it from SSM once:
/// the deployment's lease makes this run its only writer, and each invocation starts empty (a
/// retried or later step reads it again). Keyed by the parameter's name; a clone of the
/// context starts empty too.
#[derive(Debug, Default)]
pub struct RecordCache(Mutex<Option<(String, Record)>>);

impl Clone for RecordCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl RecordCache {
    fn get(&self, name: &str) -> Option<Record> {
        let slot = self.0.lock().ok()?;
        slot.as_ref().filter(|(n, _)| n == name).map(|(_, r)| r.clone())
    }

    fn set(&self, entry: Option<(String, Record)>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = entry;
        }
    }

    /// Forgets the record: after a write to it that did not go through [`save`], or one
    /// whose outcome is unknown.
    pub fn forget(&self) {
        self.set(None);
    }
}

/// Reads the record (empty when there is none yet), from SSM the first time in an invocation.
pub async fn load(ctx: &Ctx) -> Result<Record> {
    let name = parameter(ctx);
    if let Some(rec) = ctx.record_cache.get(&name) {
        return Ok(rec);
    }
    let rec = match ssm::get_parameter(&ctx.clients.ssm, &name).await? {
        Some(text) => serde_json::from_str(if text.is_empty() { "{}" } else { &text })
            .map_err(|e| Error::Conflict(format!("{name} is not a record this version understands: {e}")))?,
        None => Record::default(),
    };
    ctx.record_cache.set(Some((name, rec.clone())));
    Ok(rec)
}

/// Writes `after` when it differs from `before` (through the gate: never while planning, when
/// the cache keeps what SSM holds).
pub async fn save(ctx: &Ctx, before: &Record, after: &Record) -> Result<()> {
    if before == after {
        return Ok(());
    }
    let value = serde_json::to_string(after).map_err(|e| Error::Internal(e.to_string()))?;
    let exists = before != &Record::default();
    let name = parameter(ctx);
    let description = description(ctx);
    let tags = ctx.owner_tags();
    // A failed put may still have been applied: the next load reads SSM.
    ctx.record_cache.forget();
    let written = ctx
        .write_unreported(|| ssm::put_parameter(&ctx.clients.ssm, &name, &value, exists, &tags, &description))
        .await?;
    if written.is_some() {
        ctx.record_cache.set(Some((name, after.clone())));
    }
    Ok(())
}

/// The description of the parameters a deployment writes.
pub fn description(ctx: &Ctx) -> String {
    format!("o11y-provisioner output for deployment {}", ctx.deployment.name)
}

/// Loads, lets `f` change, and saves when changed.
pub async fn update(ctx: &Ctx, f: impl FnOnce(&mut Record)) -> Result<Record> {
    let before = load(ctx).await?;
    let mut after = before.clone();
    f(&mut after);
    save(ctx, &before, &after).await?;
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, owned: bool) -> ResourceRecord {
        ResourceRecord { id: id.to_string(), owned, ..ResourceRecord::default() }
    }

    const OURS: &str = "arn:aws:iam::123456789012:policy/ours";
    const OTHER: &str = "arn:aws:iam::123456789012:policy/other";

    #[test]
    fn the_cache_answers_only_for_its_parameter_and_a_clone_starts_empty() {
        let cache = RecordCache::default();
        let mut rec = Record::default();
        rec.resources.insert(keys::WRITE_POLICY.into(), entry(OURS, true));
        cache.set(Some(("/o11y/a/provisioner-state".into(), rec.clone())));
        assert_eq!(cache.get("/o11y/a/provisioner-state"), Some(rec));
        assert_eq!(cache.get("/o11y/b/provisioner-state"), None, "another prefix is read from SSM");
        assert_eq!(cache.clone().get("/o11y/a/provisioner-state"), None);
        cache.forget();
        assert_eq!(cache.get("/o11y/a/provisioner-state"), None);
    }

    #[test]
    fn a_renamed_entry_is_retired_only_when_the_new_one_is_accepted() {
        let mut rec = Record::default();
        rec.resources.insert(keys::WRITE_POLICY.into(), entry(OURS, true));
        // Reading what a rename retires writes nothing.
        assert_eq!(renamed(&rec, keys::WRITE_POLICY, "other"), vec![entry(OURS, true)]);
        assert!(rec.retired.is_empty());
        accept(&mut rec, keys::WRITE_POLICY, entry(OTHER, false));
        assert_eq!(rec.resource(keys::WRITE_POLICY), Some(&entry(OTHER, false)));
        assert_eq!(rec.retired_of(keys::WRITE_POLICY), vec![entry(OURS, true)]);
    }

    #[test]
    fn a_retired_entry_the_input_names_again_is_current_never_retired() {
        let mut rec = Record::default();
        rec.retired.push(RetiredResource { key: keys::WRITE_POLICY.into(), resource: entry(OURS, true) });
        assert!(renamed(&rec, keys::WRITE_POLICY, "ours").is_empty());
        assert!(retired_except(&rec, keys::WRITE_POLICY, "ours").is_empty());
        assert_eq!(known(&rec, keys::WRITE_POLICY, OURS), Some(entry(OURS, true)));
        accept(&mut rec, keys::WRITE_POLICY, entry(OURS, true));
        assert!(rec.retired.is_empty(), "{rec:?}");
        assert_eq!(rec.resource(keys::WRITE_POLICY), Some(&entry(OURS, true)));
    }

    #[test]
    fn accepting_the_recorded_resource_again_retires_nothing() {
        let mut rec = Record::default();
        rec.resources.insert(keys::WRITE_POLICY.into(), entry(OURS, true));
        accept(&mut rec, keys::WRITE_POLICY, entry(OURS, true));
        assert!(rec.retired.is_empty());
        assert!(renamed(&rec, keys::WRITE_POLICY, "ours").is_empty());
    }
}
