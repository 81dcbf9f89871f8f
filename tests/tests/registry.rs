//! The registry of deployments, on the local stack through the real state machine: an
//! `ssmPrefix` change moves the record and the parameters (plan reports the move and writes
//! nothing; a parameter of someone else under the old prefix stays; the trust statement stays
//! ours, so a later delete removes it), also when re-run after a crash half-way through the move;
//! a second deployment on the same or a nested prefix, or claiming a write policy name another
//! deployment claims, is refused before any write, naming the first; a delete removes the
//! deployment's registry entry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use std::collections::BTreeMap;

use o11y_shared::aws::Clients;
use o11y_shared::policy;
use o11y_tests::seed;
use o11y_tests::stack::{start_deployed, token_pairs, FullStack, StackOptions};
use serde_json::{json, Value};

const REGISTRY: &str = "/o11y-provisioner/deployments";

/// A fresh local stack with the sample cluster, its OIDC provider and IRSA role, and the state
/// machine.
async fn start() -> (FullStack, Clients, seed::Seeded, String) {
    start_deployed(&StackOptions::creating_one_second()).await
}

fn minimal() -> Value {
    json!({"deploymentName": "dr-prod", "cluster": {"name": "dr-eks"}, "namespace": "dr-core", "irsaRoleName": "dr-core-irsa"})
}

fn with(mut v: Value, patch: Value) -> Value {
    for (k, x) in patch.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

/// Every parameter under `prefix` (recursively), by name.
async fn params(clients: &Clients, prefix: &str) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    let mut pages = clients.ssm.get_parameters_by_path().path(prefix).recursive(true).into_paginator().send();
    while let Some(page) = pages.next().await {
        for p in page.unwrap().parameters() {
            v.insert(p.name().unwrap().to_string(), p.value().unwrap().to_string());
        }
    }
    v
}

async fn entry(clients: &Clients, name: &str) -> Option<Value> {
    let out = clients.ssm.get_parameter().name(format!("{REGISTRY}/{name}")).send().await.ok()?;
    Some(serde_json::from_str(out.parameter()?.value()?).unwrap())
}

async fn trust_of(clients: &Clients, role: &str) -> Value {
    let r = clients.iam.get_role().role_name(role).send().await.unwrap();
    policy::decode_document(r.role().unwrap().assume_role_policy_document().unwrap()).unwrap()
}

fn has_our_statement(trust: &Value) -> bool {
    trust.to_string().contains(&o11y_shared::names::trust_statement_sid("dr-prod", "us-east-1"))
}

/// The leaf names under `prefix`, without `verification` (it holds the time of its check).
fn leaves(all: &BTreeMap<String, String>, prefix: &str) -> BTreeMap<String, String> {
    all.iter()
        .filter_map(|(k, v)| k.strip_prefix(&format!("{prefix}/")).map(|leaf| (leaf.to_string(), v.clone())))
        .filter(|(leaf, _)| leaf != "verification")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssm_prefix_change_moves_the_record_and_the_parameters_and_touches_nothing_foreign() {
    let (stack, clients, seeded, sm) = start().await;

    // GIVEN a converged deployment under /o11y/dr-prod, registered, and a parameter of someone
    // else's under the same prefix
    let created = stack.execute(&sm, "create", &minimal()).await;
    assert_eq!(created.status, "SUCCEEDED", "{created:?}");
    let registered = entry(&clients, "dr-prod").await.expect("the deployment is registered");
    assert_eq!(registered["ssmPrefix"], "/o11y/dr-prod", "{registered:#}");
    assert_eq!(registered["claims"]["writePolicyName"], "dr-prod-us-east-1-observability-write", "{registered:#}");
    let before = leaves(&params(&clients, "/o11y/dr-prod").await, "/o11y/dr-prod");
    assert!(before.contains_key("helm-values") && before.contains_key("provisioner-state"), "{before:?}");
    clients
        .ssm
        .put_parameter()
        .name("/o11y/dr-prod/team-notes")
        .value("not the provisioner's")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();

    // WHEN the prefix change is planned THEN the plan reports the move and the old parameters'
    // removal, sees the trust statement as ours (nothing to change there), and writes nothing
    let moved = with(minimal(), json!({"ssmPrefix": "/o11y/teams/dr-prod"}));
    stack.reset_requests();
    let planned = stack.execute(&sm, "plan-move", &with(moved.clone(), json!({"action": "plan"}))).await;
    assert_eq!(planned.status, "SUCCEEDED", "{planned:?}");
    token_pairs(&stack.aws_writes()).expect("a plan writes nothing but its Grafana token");
    assert!(stack.lease_writes().is_empty(), "a plan takes no lease");
    let report = planned.output.unwrap();
    let text = report.to_string();
    assert!(text.contains("ssmPrefix /o11y/dr-prod -> /o11y/teams/dr-prod"), "{report:#}");
    assert!(
        text.contains("/o11y/dr-prod/helm-values") && text.contains("/o11y/dr-prod/provisioner-state"),
        "{report:#}"
    );
    let step = |name: &str| report["steps"].as_array().unwrap().iter().find(|s| s["step"] == name).cloned().unwrap();
    assert_eq!(step("irsa-trust")["action"], "none", "the record is read where it is: {report:#}");
    assert!(params(&clients, "/o11y/teams").await.is_empty());

    // WHEN applied
    let applied = stack.execute(&sm, "move", &moved).await;
    assert_eq!(applied.status, "SUCCEEDED", "{applied:?}");

    // THEN the parameters and the record are under the new prefix with the same values, ours
    // under the old prefix are gone, and the foreign one is untouched
    let after = leaves(&params(&clients, "/o11y/teams/dr-prod").await, "/o11y/teams/dr-prod");
    assert_eq!(after, before, "the same parameters with the same values");
    let old = params(&clients, "/o11y/dr-prod").await;
    assert_eq!(
        old.into_iter().collect::<Vec<_>>(),
        vec![("/o11y/dr-prod/team-notes".to_string(), "not the provisioner's".to_string())]
    );
    let registered = entry(&clients, "dr-prod").await.unwrap();
    assert_eq!(registered["ssmPrefix"], "/o11y/teams/dr-prod", "{registered:#}");
    assert!(registered.get("retiredPrefixes").is_none() && registered.get("recordAt").is_none(), "{registered:#}");
    assert_eq!(applied.output.unwrap()["helmValuesParameter"], "/o11y/teams/dr-prod/helm-values");

    // AND a re-run changes nothing
    stack.reset_requests();
    let again = stack.execute(&sm, "again", &moved).await;
    assert_eq!(again.status, "SUCCEEDED", "{again:?}");
    let writes: Vec<_> = stack.resource_writes();
    assert!(writes.is_empty(), "{writes:#?}");

    // WHEN deleted THEN the trust statement, still known as ours, is removed, and so are the
    // parameters, the record and the registry entry; the foreign parameter stays
    assert!(has_our_statement(&trust_of(&clients, "dr-core-irsa").await));
    let deleted = stack.execute(&sm, "delete", &with(moved, json!({"action": "delete"}))).await;
    assert_eq!(deleted.status, "SUCCEEDED", "{deleted:?}");
    let trust = trust_of(&clients, "dr-core-irsa").await;
    assert!(policy::equivalent(&trust, &seeded.original_trust), "{trust:#}");
    assert!(params(&clients, "/o11y/teams").await.is_empty());
    assert_eq!(params(&clients, "/o11y/dr-prod").await.len(), 1, "the foreign parameter stays");
    assert!(entry(&clients, "dr-prod").await.is_none(), "delete removes the registry entry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_interrupted_after_its_first_write_converges_on_the_next_run() {
    let (stack, clients, seeded, sm) = start().await;
    // GIVEN a converged deployment, and the registry as a crash left it right after the move's
    // first write (the entry names the new prefix, the record is still under the old one)
    let created = stack.execute(&sm, "create", &minimal()).await;
    assert_eq!(created.status, "SUCCEEDED", "{created:?}");
    let before = leaves(&params(&clients, "/o11y/dr-prod").await, "/o11y/dr-prod");
    let mut crashed = entry(&clients, "dr-prod").await.unwrap();
    crashed["ssmPrefix"] = json!("/o11y/moved");
    crashed["recordAt"] = json!("/o11y/dr-prod");
    crashed["retiredPrefixes"] = json!(["/o11y/dr-prod"]);
    clients
        .ssm
        .put_parameter()
        .name(format!("{REGISTRY}/dr-prod"))
        .value(crashed.to_string())
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .unwrap();

    // WHEN the run is repeated
    let moved = with(minimal(), json!({"ssmPrefix": "/o11y/moved"}));
    let applied = stack.execute(&sm, "move-again", &moved).await;
    assert_eq!(applied.status, "SUCCEEDED", "{applied:?}");

    // THEN it converges: everything under the new prefix, nothing of ours under the old one,
    // the trust statement still ours (delete removes it)
    assert_eq!(leaves(&params(&clients, "/o11y/moved").await, "/o11y/moved"), before);
    assert!(params(&clients, "/o11y/dr-prod").await.is_empty());
    let registered = entry(&clients, "dr-prod").await.unwrap();
    assert_eq!(registered["ssmPrefix"], "/o11y/moved", "{registered:#}");
    assert!(registered.get("retiredPrefixes").is_none() && registered.get("recordAt").is_none(), "{registered:#}");
    let deleted = stack.execute(&sm, "delete", &with(moved, json!({"action": "delete"}))).await;
    assert_eq!(deleted.status, "SUCCEEDED", "{deleted:?}");
    assert!(policy::equivalent(&trust_of(&clients, "dr-core-irsa").await, &seeded.original_trust));
    assert!(entry(&clients, "dr-prod").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_deployment_sharing_a_prefix_or_a_claimed_name_is_refused_before_any_write() {
    let (stack, clients, _, sm) = start().await;
    // GIVEN a converged deployment "dr-prod" under /o11y/dr-prod
    let first = stack.execute(&sm, "first", &minimal()).await;
    assert_eq!(first.status, "SUCCEEDED", "{first:?}");
    let other = with(minimal(), json!({"deploymentName": "dr-other"}));

    // WHEN another deployment names the same prefix, one inside it, one containing it, or the
    // first one's write policy (in other letter case)
    let cases = [
        ("same-prefix", json!({"ssmPrefix": "/o11y/dr-prod"}), "ssmPrefix"),
        ("nested-prefix", json!({"ssmPrefix": "/o11y/dr-prod/other"}), "ssmPrefix"),
        ("parent-prefix", json!({"ssmPrefix": "/o11y"}), "ssmPrefix"),
        ("same-policy", json!({"writePolicyName": "DR-PROD-US-EAST-1-observability-write"}), "writePolicyName"),
    ];
    for (name, patch, field) in cases {
        stack.reset_requests();
        let run = stack.execute(&sm, name, &with(other.clone(), patch)).await;

        // THEN it is refused with a ConflictError naming the field and the first deployment,
        // and nothing was written (no lease either)
        assert_eq!(run.status, "FAILED", "{name}: {run:?}");
        let text = format!("{} {}", run.error.clone().unwrap_or_default(), run.cause.clone().unwrap_or_default())
            .replace('\\', "");
        assert!(text.contains("ConflictError"), "{name}: {text}");
        assert!(text.contains(field) && text.contains("deployment \"dr-prod\""), "{name}: {text}");
        assert!(stack.aws_writes().is_empty(), "{name}: {:#?}", stack.aws_writes());
        assert!(stack.lease_writes().is_empty(), "{name}: {:#?}", stack.lease_writes());
        assert!(entry(&clients, "dr-other").await.is_none(), "{name}: the refused deployment is not registered");
    }

    // AND a plan of it is refused the same way
    let plan = with(other.clone(), json!({"ssmPrefix": "/o11y/dr-prod", "action": "plan"}));
    let planned = stack.execute(&sm, "plan-same-prefix", &plan).await;
    assert_eq!(planned.status, "FAILED", "{planned:?}");
    assert!(format!("{:?}", planned.error).contains("ConflictError"), "{planned:?}");

    // WHEN it names a prefix and names of its own THEN it runs beside the first, and sharing the
    // IRSA role and namespace is fine
    let second = stack.execute(&sm, "second", &other).await;
    assert_eq!(second.status, "SUCCEEDED", "{second:?}");
    assert_eq!(entry(&clients, "dr-other").await.unwrap()["ssmPrefix"], "/o11y/dr-other");
    assert_eq!(entry(&clients, "dr-prod").await.unwrap()["ssmPrefix"], "/o11y/dr-prod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_onto_a_prefix_that_holds_another_record_is_refused_and_the_old_prefix_still_works() {
    let (stack, clients, _, sm) = start().await;
    assert_eq!(stack.execute(&sm, "create", &minimal()).await.status, "SUCCEEDED");
    // GIVEN a record of a deployment made before the registry (it has no entry) under /o11y/legacy
    let foreign = r#"{"resources":{"ampWorkspace":{"id":"ws-legacy","owned":true}}}"#;
    clients
        .ssm
        .put_parameter()
        .name("/o11y/legacy/provisioner-state")
        .value(foreign)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();

    // WHEN dr-prod moves its ssmPrefix there THEN refused, that record untouched
    let run = stack.execute(&sm, "move", &with(minimal(), json!({"ssmPrefix": "/o11y/legacy"}))).await;
    assert_eq!(run.status, "FAILED", "{run:?}");
    assert_eq!(run.error.as_deref(), Some("ConflictError"), "{run:?}");
    assert_eq!(
        params(&clients, "/o11y/legacy").await.get("/o11y/legacy/provisioner-state").map(String::as_str),
        Some(foreign)
    );

    // AND the deployment still applies under its own prefix, and deletes cleanly
    assert_eq!(stack.execute(&sm, "again", &minimal()).await.status, "SUCCEEDED");
    let delete = stack.execute(&sm, "delete", &with(minimal(), json!({"action": "delete"}))).await;
    assert_eq!(delete.status, "SUCCEEDED", "{delete:?}");
    assert!(!has_our_statement(&trust_of(&clients, "dr-core-irsa").await));
    assert_eq!(
        params(&clients, "/o11y/legacy").await.get("/o11y/legacy/provisioner-state").map(String::as_str),
        Some(foreign)
    );
}
