//! irsa-trust: makes the IRSA role trust `system:serviceaccount:<ns>:observability-*` through the
//! cluster's OIDC provider, keeping every principal it trusted before (see [`crate::domain::iam::trust`]).
//!
//! The statement we add, and the trust policy before the first run, are recorded in SSM before
//! the trust policy is written. When the namespace (or cluster) changes, the statement recorded
//! for the old one is removed and the new one added; `delete` removes exactly the recorded
//! statement and nothing else.

use serde_json::{json, Value};

use crate::ctx::record::{self, Record, TrustRecord};
use crate::ctx::Ctx;
use crate::domain::error::Result;
use crate::domain::iam::doc::statement_sid;
use crate::domain::iam::policy;
use crate::domain::iam::trust::{self, IrsaGrant};
use crate::domain::names;
use crate::state::ChangeKind;
use crate::state::{require, DeleteOutput, IrsaTrustOutput, ProvisionState};
use crate::steps::iam_util;

const STEP: &str = "irsa-trust";

async fn write_trust(ctx: &Ctx, role: &str, current: &Value, doc: &Value, kind: ChangeKind) -> Result<()> {
    if iam_util::write_trust(ctx, STEP, kind, role, (current, doc), None).await? {
        let (added, removed) = policy::statement_diff(current, doc);
        tracing::info!(role = %role, added = added.len(), removed = removed.len(), "trust policy updated");
    }
    Ok(())
}

/// Removes the statements of the record's retired roles (roles the input named before), each
/// from its own role, then forgets them. The role the input names now is never touched here.
/// `before` is the record as the caller last wrote it (a plan writes none, yet reports these).
async fn retire(ctx: &Ctx, before: &Record) -> Result<()> {
    if before.retired_trust.is_empty() {
        return Ok(());
    }
    for old in &before.retired_trust {
        let Some(added) = old.added_statement.as_ref() else { continue };
        if old.role_name == ctx.deployment.irsa_role_name {
            continue;
        }
        let Some(current) = iam_util::trust_of(ctx, &old.role_name).await? else { continue };
        let doc = trust::remove(&current, added);
        if !policy::equivalent(&doc, &current) {
            write_trust(ctx, &old.role_name, &current, &doc, ChangeKind::Update).await?;
        }
    }
    let mut after = before.clone();
    after.retired_trust.clear();
    record::save(ctx, before, &after).await
}

/// Merges our statement into the IRSA role's trust policy; writes only when it changes.
pub async fn run(ctx: &Ctx, state: &ProvisionState) -> Result<IrsaTrustOutput> {
    let pre = require(&state.preflight, "preflight")?;
    let d = &ctx.deployment;
    let current = iam_util::trust_of(ctx, &d.irsa_role_name)
        .await?
        .unwrap_or_else(|| json!({"Version": "2012-10-17", "Statement": []}));
    let before = record::load(ctx).await?;
    // The input names another role than the recorded one: that role's statement is retired
    // (removed once this one is in place), and this role's trust before us is its own.
    let moved = before.trust.as_ref().filter(|t| t.role_name != d.irsa_role_name).cloned();

    let grant = IrsaGrant::new(&pre.oidc_provider_arn, names::issuer_host_path(&pre.oidc_issuer), &d.namespace);
    let sid = names::trust_statement_sid(&d.name, &d.region);
    let desired = trust::desired_statement(&grant, &sid);
    // What the record knows of this role: the current entry, or (moving back before a crash let
    // the retirement finish) the retired entry of this very role, whose statement is still ours.
    let same_role = before
        .trust
        .as_ref()
        .filter(|_| moved.is_none())
        .or_else(|| before.retired_trust.iter().find(|t| t.role_name == d.irsa_role_name));
    // A statement recorded for an earlier namespace or cluster goes first.
    let mut base = current.clone();
    if let Some(old) = same_role.and_then(|t| t.added_statement.as_ref()) {
        if !policy::equivalent(&json!({"Statement": [old]}), &json!({"Statement": [&desired]})) {
            base = trust::remove(&base, old);
        }
    }
    let merged = trust::merge_with_quota(&base, &grant, &sid, pre.trust_policy_quota)?;
    // Ours is only what a run of ours provably added: a statement with our Sid that was already
    // there before the first recorded run is someone else's to keep, and delete leaves it.
    let added = merged
        .added_statement
        .clone()
        .or_else(|| same_role.and_then(|t| t.added_statement.clone()).filter(|s| s == &desired));
    let changed = !policy::equivalent(&merged.document, &current);

    // Write-ahead: the record says what we are about to add before the trust policy changes.
    let mut after = before.clone();
    after.trust = Some(TrustRecord {
        role_name: d.irsa_role_name.clone(),
        namespace: d.namespace.clone(),
        added_statement: added.clone(),
        original_document: same_role.map(|t| t.original_document.clone()).unwrap_or_else(|| current.clone()),
    });
    // The role named now is no longer retired: its statement is the current entry's.
    after.retired_trust.retain(|r| r.role_name != d.irsa_role_name);
    if let Some(old) = moved.filter(|t| t.added_statement.is_some()) {
        if !after.retired_trust.iter().any(|r| r.role_name == old.role_name) {
            after.retired_trust.push(old);
        }
    }
    record::save(ctx, &before, &after).await?;
    if changed {
        write_trust(ctx, &d.irsa_role_name, &current, &merged.document, ChangeKind::Update).await?;
    }
    retire(ctx, &after).await?;
    for w in &merged.warnings {
        tracing::warn!(role = %d.irsa_role_name, warning = %w, "trust policy");
    }
    Ok(IrsaTrustOutput {
        role_arn: pre.irsa_role_arn.clone(),
        changed,
        added_statement: added,
        warnings: merged.warnings,
    })
}

/// Removes exactly the statement we added (as recorded), and nothing else. Idempotent.
pub async fn delete(ctx: &Ctx, _state: &ProvisionState) -> Result<DeleteOutput> {
    let d = &ctx.deployment;
    let mut out = DeleteOutput::default();
    let mut before = record::load(ctx).await?;
    retire(ctx, &before).await?;
    // `retire` saved the record without them.
    before.retired_trust.clear();
    let Some(current) = iam_util::trust_of(ctx, &d.irsa_role_name).await? else {
        out.retained.push(format!("role {}: does not exist", d.irsa_role_name));
        return Ok(out);
    };
    let mut doc = current.clone();
    // Only the recorded statement: the record is written before the trust policy changes, so
    // whatever we added is in it.
    if let Some(added) = before.trust.as_ref().and_then(|t| t.added_statement.as_ref()) {
        doc = trust::remove(&doc, added);
    }
    if !policy::equivalent(&doc, &current) {
        write_trust(ctx, &d.irsa_role_name, &current, &doc, ChangeKind::Delete).await?;
        // The recorded statement's own Sid (a deployment not re-applied since regions became part
        // of the Sid still holds the older one).
        let added = before.trust.as_ref().and_then(|t| t.added_statement.as_ref());
        let sid = added.and_then(statement_sid).map(str::to_string);
        let sid = sid.unwrap_or_else(|| names::trust_statement_sid(&d.name, &d.region));
        out.deleted.push(format!("trust statement {sid} of role {}", d.irsa_role_name));
    }
    let mut after = before.clone();
    after.trust = None;
    record::save(ctx, &before, &after).await?;
    Ok(out)
}
