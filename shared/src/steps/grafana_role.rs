//! grafana-role: the role Managed Grafana assumes (trusted by `grafana.amazonaws.com` with the
//! `aws:SourceAccount` / `aws:SourceArn` confused-deputy conditions) and its read policy on the
//! workspace, attached.

use serde_json::{json, Value};

use crate::aws::sdk::from_sdk;
use crate::ctx::record::{self, keys, ResourceRecord};
use crate::ctx::{Change, Ctx};
use crate::domain::error::{Error, Result};
use crate::domain::iam::doc::statements_or_empty;
use crate::domain::iam::policy;
use crate::domain::iam::trust;
use crate::domain::names;
use crate::state::ChangeKind;
use crate::state::{require, DeleteOutput, GrafanaRoleOutput, ProvisionState};
use crate::steps::claims;
use crate::steps::iam_util::{self, PolicyRef};

const STEP: &str = "grafana-role";

/// Description of the role (the runbook's).
pub const ROLE_DESCRIPTION: &str =
    "IAM role for Amazon Managed Grafana to read metrics from Amazon Managed Prometheus.";
/// Description of the read policy (the runbook's).
pub const READ_POLICY_DESCRIPTION: &str = "IAM policy for reading Prometheus workspace";

/// Converges the Grafana role, its trust policy and its read policy.
pub async fn run(ctx: &Ctx, state: &ProvisionState) -> Result<GrafanaRoleOutput> {
    let absent = require(&state.preflight, "preflight")?.found_absent(keys::GRAFANA_ROLE);
    converge_role(ctx, state, absent).await
}

/// [`run`]; `absent`: preflight found no role by this name, so it is created without looking
/// again.
async fn converge_role(ctx: &Ctx, state: &ProvisionState, absent: bool) -> Result<GrafanaRoleOutput> {
    let pre = require(&state.preflight, "preflight")?;
    let amp = require(&state.amp_workspace, "amp-workspace")?;
    let d = &ctx.deployment;
    let iam = &ctx.clients.iam;
    let desired = policy::grafana_trust_policy(&d.partition, &d.region, &pre.account_id);
    policy::check_trust_policy_size(&d.grafana_role_name, &desired, pre.trust_policy_quota)?;

    // The input names another role than the recorded one: the recorded one is retired once this
    // one is accepted (recorded in its place), and removed once the workspace uses this one.
    let retired = record::renamed(&record::load(ctx).await?, keys::GRAFANA_ROLE, &d.grafana_role_name);
    let retired_roles = role_names(&retired, &d.grafana_role_name);

    let live = if absent { None } else { crate::ctx::iam_reads::role(ctx, &d.grafana_role_name).await? };
    let (role_arn, adopted, created, trust_updated) = match live {
        None => {
            let change = Change::new(
                STEP,
                ChangeKind::Create,
                format!("role {}", d.grafana_role_name),
                json!({ "trustPolicy": desired }),
            );
            let tags = iam_util::iam_tags(ctx)?;
            let created = ctx
                .write(change, || async {
                    Ok(iam
                        .create_role()
                        .role_name(&d.grafana_role_name)
                        .assume_role_policy_document(policy::to_compact(&desired))
                        .description(ROLE_DESCRIPTION)
                        .set_tags(Some(tags))
                        .send()
                        .await)
                })
                .await?;
            let created = match created {
                Some(Err(e))
                    if absent && e.as_service_error().is_some_and(|s| s.is_entity_already_exists_exception()) =>
                {
                    // Taken since preflight looked (or by this step's own earlier attempt): look as usual.
                    return Box::pin(converge_role(ctx, state, false)).await;
                }
                Some(Err(e)) => return Err(from_sdk("iam:CreateRole", e)),
                Some(Ok(out)) => Some(out),
                None => None,
            };
            match created {
                None => (names::role_arn(&d.partition, &pre.account_id, &d.grafana_role_name), false, true, false),
                Some(out) => {
                    let arn = out.role().map(|r| r.arn().to_string()).unwrap_or_default();
                    tracing::info!(role = %d.grafana_role_name, "Grafana role created");
                    record_role(ctx, &arn, true, Vec::new()).await?;
                    (arn, false, true, false)
                }
            }
        }
        Some(role) => {
            // Ours only when the record names this very role (a renamed `grafana.roleName` may
            // point at someone else's role) or its tags say so.
            let known = record::known(&record::load(ctx).await?, keys::GRAFANA_ROLE, role.arn());
            // Preflight refused another deployment's (or region's) role already; checked again here.
            let owner = claims::role_owner(ctx, &d.grafana_role_name).await?;
            claims::refuse_other_owner(ctx, keys::GRAFANA_ROLE, "role", &d.grafana_role_name, owner.as_ref())?;
            let owned = known.as_ref().is_some_and(|r| r.owned) || owner.is_some_and(|o| o.is(&d.name, &d.region));
            let current = policy::decode_document(role.assume_role_policy_document().unwrap_or_default())?;
            let (target, added) = if owned {
                (converge_trust(&current, &desired, true), Vec::new())
            } else {
                let before = known.map(|k| k.added_trust).unwrap_or_default();
                adopted_trust(&current, &desired, &before)
            };
            // Write-ahead: what we add to an adopted role's trust is recorded before it is there.
            record_role(ctx, role.arn(), owned, added).await?;
            let updated = match target {
                Some(doc) => {
                    let quota = Some(pre.trust_policy_quota);
                    let role_name = &d.grafana_role_name;
                    if iam_util::write_trust(ctx, STEP, ChangeKind::Update, role_name, (&current, &doc), quota).await? {
                        tracing::info!(role = %d.grafana_role_name, owned, "Grafana role trust converged");
                    }
                    true
                }
                None => false,
            };
            (role.arn().to_string(), !owned, false, updated)
        }
    };

    let doc = policy::read_policy(&amp.arn);
    let read_policy = iam_util::converge_attached(
        ctx,
        &pre.account_id,
        &read_policy(ctx),
        (READ_POLICY_DESCRIPTION, &doc),
        pre.found_absent(keys::READ_POLICY),
    )
    .await?;
    Ok(GrafanaRoleOutput {
        role_arn,
        role_name: d.grafana_role_name.clone(),
        adopted,
        created,
        trust_updated,
        read_policy,
        retired_roles,
    })
}

async fn record_role(ctx: &Ctx, arn: &str, owned: bool, added_trust: Vec<Value>) -> Result<()> {
    let entry = ResourceRecord { id: arn.to_string(), owned, added_trust, ..ResourceRecord::default() };
    record::update(ctx, |r| record::accept(r, keys::GRAFANA_ROLE, entry)).await.map(|_| ())
}

/// The names of the `retired` roles, but `current`'s.
fn role_names(retired: &[ResourceRecord], current: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in retired.iter().map(|r| names::iam_name(&r.id)).filter(|n| *n != current) {
        if !out.iter().any(|x| x == name) {
            out.push(name.to_string());
        }
    }
    out
}

/// Removes the retired Grafana roles (`names`): each only when ours (its tags say so), its
/// policies detached first; an adopted one is kept, without the trust statements we added to it
/// ([`release_trust`]). Then forgets them in the record.
pub async fn retire_roles(ctx: &Ctx, step: &'static str, names: &[String], out: &mut DeleteOutput) -> Result<()> {
    for name in names.iter().filter(|n| *n != &ctx.deployment.grafana_role_name) {
        // Retired, or (in a plan, which writes no record) still the recorded one.
        let rec = record::load(ctx).await?;
        let entry = rec
            .retired_of(keys::GRAFANA_ROLE)
            .into_iter()
            .chain(rec.resource(keys::GRAFANA_ROLE).cloned())
            .find(|e| names::iam_name(&e.id) == name.as_str());
        if let Some(entry) = entry.filter(|e| !e.owned) {
            release_trust(ctx, step, name, &entry.added_trust, out).await?;
        }
        iam_util::delete_role(ctx, step, RETIRED_KEY, name, out).await?;
    }
    if !names.is_empty() {
        record::update(ctx, |r| {
            r.retired.retain(|x| {
                !(x.key == keys::GRAFANA_ROLE && names.iter().any(|n| n == names::iam_name(&x.resource.id)))
            })
        })
        .await?;
    }
    Ok(())
}

/// Removes from the trust of the adopted role `role_name` exactly the statements we added
/// (`added`, as recorded), each only while it is still there as we wrote it (compared after
/// normalisation); one changed or removed since is left as it is, and reported in `retained`.
/// Every other statement stays: the trust is left as it was before us.
pub async fn release_trust(
    ctx: &Ctx,
    step: &'static str,
    role_name: &str,
    added: &[Value],
    out: &mut DeleteOutput,
) -> Result<()> {
    if added.is_empty() {
        return Ok(());
    }
    let Some(current) = iam_util::trust_of(ctx, role_name).await? else { return Ok(()) };
    let mut doc = current.clone();
    for statement in added {
        let next = trust::remove(&doc, statement);
        if next == doc {
            tracing::warn!(role = %role_name, "a trust statement we added is no longer as we wrote it; left in place");
            out.retained.push(format!(
                "trust of role {role_name}: the statement we added is no longer there as we wrote it (changed or removed \
                 since); left as it is: {statement}"
            ));
        } else {
            doc = next;
        }
    }
    if doc != current {
        if iam_util::write_trust(ctx, step, ChangeKind::Update, role_name, (&current, &doc), None).await? {
            tracing::info!(role = %role_name, "our statements removed from an adopted role's trust");
        }
        out.deleted.push(format!("the trust statement we added to role {role_name}"));
    }
    // Forgotten either way: what is left is no longer ours to remove.
    record::update(ctx, |r| {
        let entries = r.resources.get_mut(keys::GRAFANA_ROLE).into_iter();
        let retired = r.retired.iter_mut().filter(|x| x.key == keys::GRAFANA_ROLE).map(|x| &mut x.resource);
        for e in entries.chain(retired).filter(|e| names::iam_name(&e.id) == role_name) {
            e.added_trust.clear();
        }
    })
    .await
    .map(|_| ())
}

/// A record key no resource uses: `delete_role` judges a retired role by its tags alone.
const RETIRED_KEY: &str = "retiredGrafanaRole";

/// Removes the read policy (when ours) and the role (when ours), in that order.
pub async fn delete(ctx: &Ctx, state: &ProvisionState) -> Result<DeleteOutput> {
    let pre = require(&state.preflight, "preflight")?;
    let d = &ctx.deployment;
    let mut out = iam_util::delete_attached(ctx, &pre.account_id, &read_policy(ctx)).await?;
    let retired = role_names(&record::load(ctx).await?.retired_of(keys::GRAFANA_ROLE), &d.grafana_role_name);
    retire_roles(ctx, STEP, &retired, &mut out).await?;
    // An adopted role stays, without what we added to its trust.
    let rec = record::load(ctx).await?;
    let adopted =
        rec.resource(keys::GRAFANA_ROLE).filter(|e| !e.owned && names::iam_name(&e.id) == d.grafana_role_name);
    if let Some(entry) = adopted.cloned() {
        release_trust(ctx, STEP, &d.grafana_role_name, &entry.added_trust, &mut out).await?;
    }
    iam_util::delete_role(ctx, STEP, keys::GRAFANA_ROLE, &d.grafana_role_name, &mut out).await?;
    Ok(out)
}

/// The read policy and the Grafana role it is attached to.
fn read_policy(ctx: &Ctx) -> PolicyRef<'_> {
    let d = &ctx.deployment;
    PolicyRef {
        step: STEP,
        record_key: keys::READ_POLICY,
        name: &d.grafana_read_policy_name,
        role_name: &d.grafana_role_name,
    }
}

/// The trust document to write, or `None` when the live one is fine. A role we own is set to the
/// desired document; an adopted role keeps its statements and gains ours only when missing.
pub fn converge_trust(current: &Value, desired: &Value, owned: bool) -> Option<Value> {
    if policy::equivalent(current, desired) {
        return None;
    }
    if owned {
        return Some(desired.clone());
    }
    adopted_trust(current, desired, &[]).0
}

/// For an adopted role: the trust document to write (`None` when the live one is fine), and the
/// statements of ours it then holds, to record. `ours_before` are the statements an earlier run
/// added (recorded): one no longer desired is removed (when still as we wrote it), one still
/// desired stays ours; a desired statement missing is added, and becomes ours. Every other
/// statement is kept: a statement equivalent to ours that was there before us is theirs.
pub fn adopted_trust(current: &Value, desired: &Value, ours_before: &[Value]) -> (Option<Value>, Vec<Value>) {
    let ours: Vec<Value> = statements_or_empty(desired).into_iter().cloned().collect();
    let same = |a: &Value, b: &Value| policy::equivalent(&single(a), &single(b));
    let mut base = current.clone();
    let mut recorded = Vec::new();
    for old in ours_before {
        if ours.iter().any(|s| same(s, old)) {
            if statements_or_empty(&base).into_iter().any(|t| same(t, old)) {
                recorded.push(old.clone());
            }
        } else {
            base = trust::remove(&base, old);
        }
    }
    let mut theirs: Vec<Value> = statements_or_empty(&base).into_iter().cloned().collect();
    let missing: Vec<Value> = ours.into_iter().filter(|s| !theirs.iter().any(|t| same(t, s))).collect();
    recorded.extend(missing.iter().cloned());
    if missing.is_empty() && base == *current {
        return (None, recorded);
    }
    theirs.extend(missing);
    let mut doc = base;
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("Statement".into(), Value::Array(theirs));
        obj.entry("Version").or_insert_with(|| Value::String("2012-10-17".into()));
    }
    (Some(doc), recorded)
}

fn single(statement: &Value) -> Value {
    serde_json::json!({"Version": "2012-10-17", "Statement": [statement]})
}

/// Maps a Grafana error caused by a role IAM has not propagated yet.
pub fn is_propagation_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("role") && (m.contains("assume") || m.contains("not authorized") || m.contains("invalid"))
}

/// `Error::IamPropagation` for a role created moments ago.
pub fn propagation_error(role: &str, message: &str) -> Error {
    Error::IamPropagation(format!("the Grafana role {role} is not usable yet (IAM propagation): {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn desired() -> Value {
        policy::grafana_trust_policy("aws", "us-east-1", "123456789012")
    }

    #[test]
    fn owned_role_is_reset_to_desired() {
        let drifted = json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]});
        assert_eq!(converge_trust(&drifted, &desired(), true), Some(desired()));
    }

    #[test]
    fn adopted_role_keeps_its_statements_and_gains_ours() {
        let theirs = json!({"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}});
        let out = converge_trust(&theirs, &desired(), false).expect("must change");
        let st = out["Statement"].as_array().expect("array");
        assert_eq!(st.len(), 2);
        assert_eq!(st[0]["Principal"]["Service"], "ec2.amazonaws.com");
        assert!(converge_trust(&out, &desired(), false).is_none(), "second run changes nothing");
    }

    #[test]
    fn adopted_role_records_what_we_added_and_keeps_it_once() {
        let theirs = json!({"Version":"2012-10-17","Statement":[{"Sid":"TeamX","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"sts:AssumeRole"}]});
        let (doc, added) = adopted_trust(&theirs, &desired(), &[]);
        let doc = doc.expect("ours is added");
        assert_eq!(added, statements_or_empty(&desired()).into_iter().cloned().collect::<Vec<_>>());
        let (again, still) = adopted_trust(&doc, &desired(), &added);
        assert!(again.is_none(), "a second run changes nothing");
        assert_eq!(still, added, "and still knows what is ours");
        // Removing what we recorded leaves their trust as it was.
        let mut left = doc.clone();
        for s in &added {
            left = trust::remove(&left, s);
        }
        assert!(policy::equivalent(&left, &theirs), "{left:#}");
    }

    #[test]
    fn an_equivalent_statement_that_was_there_before_us_is_not_ours() {
        let (doc, added) = adopted_trust(&desired(), &desired(), &[]);
        assert!(doc.is_none());
        assert!(added.is_empty(), "theirs, never removed: {added:?}");
    }

    #[test]
    fn a_statement_of_ours_no_longer_desired_is_replaced() {
        let theirs = json!({"Version":"2012-10-17","Statement":[]});
        let old_desired = policy::grafana_trust_policy("aws", "eu-west-1", "123456789012");
        let (doc, old) = adopted_trust(&theirs, &old_desired, &[]);
        let (doc, now) = adopted_trust(&doc.expect("added"), &desired(), &old);
        let doc = doc.expect("replaced");
        assert!(policy::equivalent(&doc, &desired()), "{doc:#}");
        assert_eq!(now.len(), 1);
    }

    #[test]
    fn equal_document_is_left_alone() {
        assert!(converge_trust(&desired(), &desired(), true).is_none());
        assert!(converge_trust(&desired(), &desired(), false).is_none());
    }
}
