//! A delete that names only the deployment: `{"deploymentName": "team-b", "action": "delete"}`.
//! Every apply keeps, in the deployment's registry entry ([`crate::ctx::registry::Entry`]), the
//! input it ran with, every default written out ([`Deployment::as_input`]). A delete whose input
//! lacks a field apply requires (`cluster`, `namespace`, `irsaRoleName`) is completed from it:
//! every field the delete leaves out is the recorded one, and every field it gives must resolve
//! to what was recorded, or the run fails with a `ValidationError` naming the fields that differ
//! (a delete is never pointed at other names than the deployment's own). `action`,
//! `retainMetrics` and `verify` are the run's own and always the delete's.
//!
//! Only `preflight` reads the registry: it completes the input, and passes it on to the other
//! steps in its output ([`crate::state::PreflightOutput::input`]). A deployment that has no entry
//! (never applied here, or deleted already) has nothing to delete: the run succeeds and says so.

use serde_json::{Map, Value};

use crate::aws::ssm;
use crate::aws::Clients;
use crate::ctx::registry::{self, Entry};
use crate::domain::error::{Error, Result};
use crate::domain::input::{self, Deployment, TargetInput, DEFAULT_TARGET_ROLE};
use crate::domain::validate;

/// The fields apply requires that a delete may leave out.
pub use crate::domain::input::DELETE_MAY_OMIT as RECALLED_FIELDS;

/// The run's own settings: taken from the delete's input, never compared.
const RUN_SETTINGS: [&str; 3] = ["action", "retainMetrics", "verify"];

/// What a delete's input was completed to.
#[derive(Debug, Clone, PartialEq)]
pub enum Recalled {
    /// The input is complete (or not a delete): used as it is.
    Complete,
    /// The input completed from the registry entry's.
    Input(Value),
    /// No entry holds an input of this deployment (in this account and region): nothing of it
    /// is recorded, so there is nothing to delete. The text says where it looked.
    NothingRecorded(String),
}

/// True when `input` is a delete that leaves out a field apply requires.
pub fn is_partial_delete(input: &Value) -> bool {
    input.get("action").and_then(Value::as_str) == Some("delete")
        && RECALLED_FIELDS.iter().any(|f| input.get(*f).is_none_or(Value::is_null))
}

/// Completes a partial delete's `input` from the deployment's registry entry, read with
/// `clients` (already for the input's region and target account). Anything else: `Complete`.
pub async fn recall(clients: &Clients, input: &Value, region: &str) -> Result<Recalled> {
    if !is_partial_delete(input) {
        return Ok(Recalled::Complete);
    }
    let name = match input.get("deploymentName") {
        Some(Value::String(n)) => n.clone(),
        Some(_) => return Err(Error::validation("deploymentName", "must be a string")),
        None => return Err(Error::validation("deploymentName", "is required")),
    };
    validate::deployment_name("deploymentName", &name)?;
    let parameter = registry::entry_parameter(&name);
    let entry: Option<Entry> = match ssm::get_parameter(&clients.ssm, &parameter).await? {
        None => None,
        Some(text) => Some(serde_json::from_str(&text).map_err(|e| {
            Error::Conflict(format!(
                "the registry entry {parameter} is not one this version understands ({e}): correct or delete it"
            ))
        })?),
    };
    match entry {
        None => Ok(Recalled::NothingRecorded(format!(
            "no deployment {name:?} is recorded in region {region} (no registry entry {parameter}): nothing to delete"
        ))),
        Some(Entry { applied: None, .. }) => {
            let missing =
                RECALLED_FIELDS.iter().find(|f| input.get(**f).is_none_or(Value::is_null)).unwrap_or(&"cluster");
            Err(Error::validation(
                *missing,
                format!(
                    "is required: the registry entry {parameter} was written before entries kept the applied input; \
                     give the input deployment {name:?} was applied with, with \"action\": \"delete\" (or apply it \
                     once, then delete it by name)"
                ),
            ))
        }
        Some(Entry { applied: Some(applied), .. }) => {
            let recorded = serde_json::to_value(&applied).map_err(|e| Error::Internal(e.to_string()))?;
            complete(input, &recorded, Some(region)).map(Recalled::Input)
        }
    }
}

/// Where a partial delete's registry entry is: the input's `region` (else `default_region`) and
/// its `target` (account, role), validated as apply validates them.
pub fn scope_of(input: &Value, default_region: Option<&str>) -> Result<(String, Option<(String, String)>)> {
    let region = match input.get("region") {
        None | Some(Value::Null) => default_region
            .map(str::to_string)
            .ok_or_else(|| Error::validation("region", "required when the function has no default region"))?,
        Some(Value::String(r)) => r.clone(),
        Some(_) => return Err(Error::validation("region", "must be a string")),
    };
    validate::region("region", &region)?;
    let target = match input.get("target") {
        None | Some(Value::Null) => None,
        Some(t) => {
            let t: TargetInput = serde_json::from_value(t.clone())
                .map_err(|e| Error::validation("target", format!("must be {{\"accountId\", \"roleName\"}} ({e})")))?;
            validate::account_id("target.accountId", &t.account_id)?;
            let role = t.role_name.unwrap_or_else(|| DEFAULT_TARGET_ROLE.to_string());
            validate::iam_role_name("target.roleName", &role)?;
            Some((t.account_id, role))
        }
    };
    Ok((region, target))
}

/// `given` completed from `recorded` (an applied input, every default written out): the fields
/// `given` leaves out are `recorded`'s; those it gives must resolve to the same deployment.
pub fn complete(given: &Value, recorded: &Value, default_region: Option<&str>) -> Result<Value> {
    let mut merged = recorded.clone();
    overlay(&mut merged, given);
    let mut run_free = recorded.clone();
    for key in RUN_SETTINGS {
        if let Some(obj) = run_free.as_object_mut() {
            obj.remove(key);
        }
        if let (Some(v), Some(obj)) = (given.get(key), merged.as_object_mut()) {
            obj.insert(key.to_string(), v.clone());
        }
    }
    // The given fields are validated where they stand (a bad value names its own field).
    let theirs = input::resolve(&merged, default_region)?;
    let ours = input::resolve(&run_free, default_region)
        .map_err(|e| Error::Conflict(format!("the recorded input of the deployment no longer resolves ({e})")))?;
    let differ = differences(&ours, &theirs);
    if let Some((first, _, _)) = differ.first() {
        let listed: Vec<String> =
            differ.iter().map(|(field, was, now)| format!("{field} (recorded {was}, given {now})")).collect();
        return Err(Error::validation(
            *first,
            format!(
                "differs from what deployment {:?} was last applied with: {}; a delete removes the deployment as \
                 recorded: leave these fields out (or give the recorded values)",
                ours.name,
                listed.join(", ")
            ),
        ));
    }
    Ok(merged)
}

/// Writes `patch` over `base`, object fields recursively; a `null` in `patch` leaves `base`'s.
fn overlay(base: &mut Value, patch: &Value) {
    let (Some(base), Some(patch)) = (base.as_object_mut(), patch.as_object()) else { return };
    for (k, v) in patch {
        match (base.get_mut(k), v) {
            (_, Value::Null) => {}
            (Some(b @ Value::Object(_)), Value::Object(_)) => overlay(b, v),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The input fields, as the input names them, whose resolved values differ between `a` and `b`
/// (the run's own settings aside): `(field, a's value, b's value)`, shown short.
fn differences(a: &Deployment, b: &Deployment) -> Vec<(&'static str, String, String)> {
    let show = |v: Option<&Value>| validate::shown(&v.map(|v| v.to_string()).unwrap_or_else(|| "(none)".into()));
    let (a, b) = (to_map(a), to_map(b));
    FIELDS
        .iter()
        .filter(|(key, _)| a.get(*key) != b.get(*key))
        .map(|(key, field)| (*field, show(a.get(*key)), show(b.get(*key))))
        .collect()
}

fn to_map(d: &Deployment) -> Map<String, Value> {
    match serde_json::to_value(d) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// [`Deployment`]'s keys (camelCase) and the input field each comes from; the run's own
/// settings are not among them.
const FIELDS: [(&str, &str); 22] = [
    ("name", "deploymentName"),
    ("region", "region"),
    ("expectedAccountId", "accountId"),
    ("clusterName", "cluster.name"),
    ("oidcIssuer", "cluster.oidcIssuer"),
    ("namespace", "namespace"),
    ("irsaRoleName", "irsaRoleName"),
    ("ampAlias", "amp.alias"),
    ("writePolicyName", "writePolicyName"),
    ("grafanaWorkspaceName", "grafana.workspaceName"),
    ("grafanaRoleName", "grafana.roleName"),
    ("grafanaReadPolicyName", "grafana.readPolicyName"),
    ("grafanaVersion", "grafana.version"),
    ("grafanaAuthenticationProviders", "grafana.authenticationProviders"),
    ("grafanaAdminUsers", "grafana.admins.users"),
    ("grafanaAdminGroups", "grafana.admins.groups"),
    ("grafanaDefaultDatasource", "grafana.defaultDatasource"),
    ("logGroupName", "logs.groupName"),
    ("logStreamName", "logs.streamName"),
    ("ssmPrefix", "ssmPrefix"),
    ("target", "target"),
    ("trustPolicyQuota", "trustPolicyQuota"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn applied() -> Value {
        let full = json!({"deploymentName": "team-b", "region": "eu-west-1", "cluster": {"name": "core"},
                          "namespace": "obs", "irsaRoleName": "core-irsa", "amp": {"alias": "team-b-metrics"},
                          "grafana": {"admins": {"users": ["906744f0c8-4a1e2b3c-5d6e-4f70-8a9b-0c1d2e3f4a5b"]}}, "verify": "warn"});
        serde_json::to_value(input::resolve(&full, None).unwrap().as_input()).unwrap()
    }

    #[test]
    fn every_deployment_key_is_named_by_an_input_field() {
        let d = input::resolve(&applied(), None).unwrap();
        let mut keys: Vec<String> = to_map(&d).keys().cloned().collect();
        keys.retain(|k| {
            !["partition", "action", "retainMetrics", "retainMetricsStated", "verify", "recordPrefix"]
                .contains(&k.as_str())
        });
        let mut named: Vec<String> = FIELDS.iter().map(|(k, _)| k.to_string()).collect();
        keys.sort();
        named.sort();
        assert_eq!(keys, named);
    }

    #[test]
    fn an_applied_input_resolves_to_the_deployment_it_was_taken_from() {
        let full = json!({"deploymentName": "team-b", "region": "eu-west-1", "cluster": {"name": "core",
                          "oidcIssuer": "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC"}, "namespace": "obs",
                          "irsaRoleName": "core-irsa", "grafana": {"admins": {"groups": ["4a1e2b3c-5d6e-4f70-8a9b-0c1d2e3f4a5b"]}, "version": "9.4"},
                          "target": {"accountId": "210987654321"}, "trustPolicyQuota": 4096});
        let d = input::resolve(&full, None).unwrap();
        let again = d.as_input().resolve(None).unwrap();
        assert_eq!(differences(&d, &again), vec![]);
        assert_eq!(again, d);
    }

    #[test]
    fn a_delete_by_name_takes_every_field_from_the_record_and_its_run_settings_from_the_input() {
        let given = json!({"deploymentName": "team-b", "action": "delete", "retainMetrics": false});
        assert!(is_partial_delete(&given));
        let merged = complete(&given, &applied(), Some("us-east-1")).unwrap();
        let d = input::resolve(&merged, None).unwrap();
        assert_eq!(
            (d.namespace.as_str(), d.amp_alias.as_str(), d.region.as_str()),
            ("obs", "team-b-metrics", "eu-west-1")
        );
        assert_eq!(d.grafana_admin_users, vec!["906744f0c8-4a1e2b3c-5d6e-4f70-8a9b-0c1d2e3f4a5b".to_string()]);
        assert_eq!((d.action, d.retain_metrics), (input::Action::Delete, false));
        assert_eq!(d.verify, input::VerifyMode::Fail, "the recorded run's verify is not the delete's");
    }

    #[test]
    fn given_fields_that_agree_are_accepted_and_those_that_differ_are_named() {
        let agree = json!({"deploymentName": "team-b", "action": "delete", "namespace": "obs",
                           "amp": {"alias": "team-b-metrics"}, "cluster": {"name": "core"}});
        assert!(complete(&agree, &applied(), None).is_ok());
        let differ = json!({"deploymentName": "team-b", "action": "delete", "namespace": "other",
                            "grafana": {"workspaceName": "x"}});
        let e = complete(&differ, &applied(), None).unwrap_err();
        assert_eq!(e.name(), "ValidationError");
        let text = e.to_string();
        assert!(text.starts_with("namespace: differs from what deployment \"team-b\" was last applied with"), "{text}");
        assert!(text.contains("grafana.workspaceName (recorded"), "{text}");
        // A default that resolves to another name differs too (the alias defaults to the name).
        let e =
            complete(&json!({"deploymentName": "team-b", "action": "delete", "region": "us-east-1"}), &applied(), None)
                .unwrap_err();
        assert!(e.to_string().starts_with("region: differs"), "{e}");
    }

    #[test]
    fn a_bad_given_value_names_its_own_field() {
        let bad = json!({"deploymentName": "team-b", "action": "delete", "namespace": "Not_A_Label"});
        let e = complete(&bad, &applied(), None).unwrap_err();
        assert!(e.to_string().starts_with("namespace: "), "{e}");
    }

    #[test]
    fn only_a_delete_missing_a_required_field_is_partial() {
        assert!(!is_partial_delete(&json!({"deploymentName": "x"})));
        assert!(!is_partial_delete(&json!({"deploymentName": "x", "action": "plan"})));
        assert!(is_partial_delete(&json!({"deploymentName": "x", "action": "delete", "cluster": null,
                                           "namespace": "n", "irsaRoleName": "r"})));
        assert!(!is_partial_delete(&json!({"deploymentName": "x", "action": "delete", "cluster": {"name": "c"},
                                            "namespace": "n", "irsaRoleName": "r"})));
    }
}
