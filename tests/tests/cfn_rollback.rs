//! CloudFormation's failure flows through the real state machine on the local stack, each judged
//! by an inventory of the account read back from it (roles with their trust and policies, local
//! policies with their documents, AMP and Grafana workspaces, SSM parameters):
//! - a Create that fails late (the datasource step, after every resource but the parameters was
//!   made) is rolled back, then answered FAILED: the account is exactly as before it, and the
//!   Delete CloudFormation sends next touches nothing;
//! - a failed Create on a deployment applied from the console before it leaves that deployment
//!   intact;
//! - a rollback that fails too (a fault injected on `iam:DeletePolicy`) answers both causes with
//!   the rollback-incomplete id, keeps the record, and the following Delete finishes the job;
//! - an Update that fails half-way leaves the previous deployment working, and CloudFormation's
//!   rollback Update (old properties) converges back to exactly it;
//! - a replacement (new `deploymentName`): Create new, then Delete old, each touching only its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use o11y_shared::aws::Clients;
use o11y_shared::cfn::{CREATE_FAILED_PREFIX, ROLLBACK_INCOMPLETE_PREFIX};
use o11y_shared::{names, policy};
use o11y_tests::stack::{purpose, start_deployed, FullStack, StackOptions};
use o11y_tests::{cfn, http};
use serde_json::{json, Map, Value};

const ID: &str = "o11y-provisioner:123456789012:us-east-1:dr-prod";
/// Identity Center ids starting with this are "not found" by the emulator: `UpdatePermissions`
/// answers a per-entry error, which fails the datasource step (late in the run, not retried).
const UNKNOWN_PREFIX: &str = "ffffffff";

fn unknown_admin() -> Value {
    json!({"users": [format!("{UNKNOWN_PREFIX}-0000-4000-8000-000000000001")]})
}

/// Waits for the execution `name` to end: its status, and `error: cause`.
async fn wait_execution(stack: &FullStack, name: &str) -> (String, String) {
    let d = cfn::wait_execution(stack, name, 1500).await;
    let error = format!("{}: {}", d.error().unwrap_or_default(), d.cause().unwrap_or_default());
    (d.status().as_str().to_string(), error)
}

/// Sends a request to `cfn-handler`, waits for the execution it starts, and returns the answer.
async fn send(
    stack: &FullStack,
    kind: &str,
    key: &str,
    props: Value,
    physical: Option<&str>,
    old: Option<Value>,
) -> Value {
    let out = cfn::invoke(stack, "cfn-handler", &cfn::request(stack, kind, key, props, physical, old));
    if out["outcome"] == "started" {
        let (status, error) = wait_execution(stack, out["executionName"].as_str().unwrap()).await;
        assert!(["SUCCEEDED", "FAILED"].contains(&status.as_str()), "{status} {error}");
    } else {
        assert_eq!(out["outcome"], "answered", "{out}");
    }
    assert_eq!(cfn::response_puts(stack, key), 1, "exactly one answer to {key}");
    cfn::response_body(stack, key)
}

/// Properties as CloudFormation sends them (scalars as strings, the ServiceToken), without
/// `retainMetrics`: the rollback's own default applies.
fn props(deployment: &str, extra: Value) -> Value {
    cfn::props(deployment, extra)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Everything of the account the workflow could touch, as read back from the stack: roles (trust
/// document, attached and inline policies), local policies (default document), AMP workspaces
/// (alias, status, tags), Grafana workspaces (name, status), SSM parameters (value; the
/// verification's only by name, it carries times).
async fn inventory(c: &Clients) -> Value {
    let mut roles = Map::new();
    for r in c.iam.list_roles().send().await.unwrap().roles() {
        let name = r.role_name();
        let full = c.iam.get_role().role_name(name).send().await.unwrap();
        let trust = policy::decode_document(full.role().unwrap().assume_role_policy_document().unwrap()).unwrap();
        let attached = c.iam.list_attached_role_policies().role_name(name).send().await.unwrap();
        let attached = attached.attached_policies().iter().filter_map(|p| p.policy_name().map(str::to_string));
        let inline = c.iam.list_role_policies().role_name(name).send().await.unwrap().policy_names().to_vec();
        roles.insert(
            name.to_string(),
            json!({"trust": trust, "attached": sorted(attached.collect()), "inline": sorted(inline)}),
        );
    }
    let mut policies = Map::new();
    let local = c.iam.list_policies().scope(aws_sdk_iam::types::PolicyScopeType::Local).send().await.unwrap();
    for p in local.policies() {
        let v = c
            .iam
            .get_policy_version()
            .policy_arn(p.arn().unwrap())
            .version_id(p.default_version_id().unwrap())
            .send()
            .await
            .unwrap();
        let doc = policy::decode_document(v.policy_version().unwrap().document().unwrap()).unwrap();
        policies.insert(p.policy_name().unwrap().to_string(), doc);
    }
    let mut amp = Map::new();
    for w in c.amp.list_workspaces().send().await.unwrap().workspaces() {
        let tags = w.tags().map(|t| json!(t)).unwrap_or(Value::Null);
        amp.insert(
            w.workspace_id().to_string(),
            json!({"alias": w.alias(), "status": w.status().map(|s| s.status_code().as_str()), "tags": tags}),
        );
    }
    let mut grafana = Map::new();
    for w in c.grafana.list_workspaces().send().await.unwrap().workspaces() {
        grafana.insert(w.id().to_string(), json!({"name": w.name(), "status": w.status().as_str()}));
    }
    let mut ssm = Map::new();
    let mut pages = c.ssm.get_parameters_by_path().path("/").recursive(true).into_paginator().send();
    while let Some(page) = pages.next().await {
        for p in page.unwrap().parameters() {
            let name = p.name().unwrap().to_string();
            let value = if name.ends_with("/verification") { json!("(verification)") } else { json!(p.value()) };
            ssm.insert(name, value);
        }
    }
    json!({"roles": roles, "policies": policies, "amp": amp, "grafana": grafana, "ssm": ssm})
}

/// Names in the inventory that belong to a deployment: roles but the IRSA role and the stack's
/// function roles, policies, AMP aliases, Grafana workspace names, SSM parameter names.
fn deployment_names(inv: &Value) -> Vec<String> {
    let keys = |k: &str| inv[k].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    let mut names: Vec<String> = keys("roles")
        .into_iter()
        .filter(|r| r != "dr-core-irsa" && !r.starts_with(o11y_tests::stack::FUNCTION_ROLE_PREFIX))
        .collect();
    names.extend(keys("policies"));
    names.extend(keys("ssm"));
    for k in ["amp", "grafana"] {
        for w in inv[k].as_object().unwrap().values() {
            names
                .push(w.get("alias").or_else(|| w.get("name")).and_then(Value::as_str).unwrap_or_default().to_string());
        }
    }
    names
}

const RECORD: &str = "/o11y/dr-prod/provisioner-state";

/// The deployment's record in an inventory, parsed.
fn record(inv: &Value) -> Value {
    serde_json::from_str(inv["ssm"][RECORD].as_str().expect("a record")).unwrap()
}

const REGISTRY_ENTRY: &str = "/o11y-provisioner/deployments/dr-prod";

/// The inventory with the record's `admins` (the grants it wrote ahead of making them) and the
/// registry entry's applied `grafana.admins` (the input the last run started with, kept so that
/// a delete by name reaches what that run may have made) left out.
fn without_admins(mut inv: Value) -> Value {
    let mut rec = record(&inv);
    rec.as_object_mut().unwrap().remove("admins");
    inv["ssm"][RECORD] = json!(rec.to_string());
    if let Some(text) = inv["ssm"][REGISTRY_ENTRY].as_str() {
        let mut entry: Value = serde_json::from_str(text).unwrap();
        if let Some(g) = entry["applied"]["grafana"].as_object_mut() {
            g.remove("admins");
        }
        inv["ssm"][REGISTRY_ENTRY] = json!(entry.to_string());
    }
    inv
}

async fn setup() -> (FullStack, Clients, String) {
    let (stack, clients, _, sm) = start_deployed(&StackOptions::default()).await;
    cfn::create_bucket(&stack);
    let (status, body) = http(
        "POST",
        stack.grafana.port,
        "/_emulator/config",
        Some(&json!({"unknownSsoIdPrefix": UNKNOWN_PREFIX}).to_string()),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    (stack, clients, sm)
}

/// Successful creates (`POST`, 2xx) the router saw, by service and operation.
fn creates(stack: &FullStack) -> Vec<String> {
    stack
        .requests()
        .iter()
        .filter(|r| purpose(r) == "resource" && r["status"].as_u64().is_some_and(|s| (200..300).contains(&s)))
        .filter_map(|r| {
            let op = r["operation"].as_str().unwrap_or_default();
            (op.starts_with("Create") || op == "UpdateAssumeRolePolicy" || op == "POST /workspaces")
                .then(|| format!("{}:{op}", r["service"].as_str().unwrap_or_default()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_fails_late_is_rolled_back_and_the_following_delete_touches_nothing() {
    let (stack, clients, _) = setup().await;
    let before = inventory(&clients).await;
    stack.reset_requests();

    // WHEN a Create fails at the datasource step (Identity Center does not know the admin)
    let body =
        send(&stack, "Create", "create", props("dr-prod", json!({"grafana": {"admins": unknown_admin()}})), None, None)
            .await;

    // THEN it had made the trust grant, both policies, the Grafana role and both workspaces
    let made = creates(&stack);
    for op in [
        "iam:UpdateAssumeRolePolicy",
        "iam:CreatePolicy",
        "iam:CreateRole",
        "aps:POST /workspaces",
        "grafana:POST /workspaces",
    ] {
        assert!(made.iter().any(|m| m == op), "the failed Create did not reach {op}: {made:?}");
    }
    // AND the answer is FAILED, with the sentinel id, naming the failure and the rollback
    assert_eq!(body["Status"], "FAILED", "{body:#}");
    let id = body["PhysicalResourceId"].as_str().unwrap().to_string();
    assert!(id.starts_with(CREATE_FAILED_PREFIX), "{id}");
    let reason = body["Reason"].as_str().unwrap();
    assert!(reason.contains("datasource") && reason.contains("was not found"), "{reason}");
    assert!(reason.contains("rolled back"), "{reason}");
    // AND the account is exactly as before: trust policy, roles, policies, workspaces, parameters
    let after = inventory(&clients).await;
    assert_eq!(after["roles"]["dr-core-irsa"]["trust"], before["roles"]["dr-core-irsa"]["trust"]);
    assert_eq!(after, before, "the rolled-back Create left something behind");

    // WHEN CloudFormation then deletes the resource with the sentinel id THEN SUCCESS, no write
    stack.reset_requests();
    let body = send(
        &stack,
        "Delete",
        "delete",
        props("dr-prod", json!({"grafana": {"admins": unknown_admin()}})),
        Some(&id),
        None,
    )
    .await;
    assert_eq!((body["Status"].as_str(), body["PhysicalResourceId"].as_str()), (Some("SUCCESS"), Some(id.as_str())));
    let writes: Vec<Value> = stack.aws_writes().into_iter().filter(|r| purpose(r) != "cfn-response").collect();
    assert_eq!(writes, Vec::<Value>::new());
    assert_eq!(inventory(&clients).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_create_on_a_deployment_applied_before_it_leaves_that_deployment_intact() {
    let (stack, clients, sm) = setup().await;
    // GIVEN the deployment applied from the console
    let console = json!({"deploymentName": "dr-prod", "cluster": {"name": "dr-eks"}, "namespace": "dr-core",
        "irsaRoleName": "dr-core-irsa"});
    let out = stack.execute(&sm, "console-apply", &console).await;
    assert_eq!(out.status, "SUCCEEDED", "{out:?}");
    let before = inventory(&clients).await;
    assert!(before["grafana"].as_object().unwrap().len() == 1 && before["amp"].as_object().unwrap().len() == 1);

    // WHEN a CloudFormation Create of it fails late
    let body =
        send(&stack, "Create", "create", props("dr-prod", json!({"grafana": {"admins": unknown_admin()}})), None, None)
            .await;

    // THEN FAILED, the sentinel id, nothing rolled back: the deployment is exactly as it was
    assert_eq!(body["Status"], "FAILED", "{body:#}");
    let id = body["PhysicalResourceId"].as_str().unwrap().to_string();
    assert!(id.starts_with(CREATE_FAILED_PREFIX), "{id}");
    let reason = body["Reason"].as_str().unwrap();
    assert!(reason.contains("was not found") && !reason.contains("rolled back"), "{reason}");
    // (the record differs only by the grant the failed Create wrote ahead of trying it; the next
    // apply without it revokes nothing, it was never granted)
    let after = inventory(&clients).await;
    let admins = record(&after)["admins"].clone();
    assert_eq!(admins, json!([format!("SSO_USER:{}", unknown_admin()["users"][0].as_str().unwrap())]));
    assert_eq!(without_admins(after), without_admins(before.clone()));

    // AND the following Delete with the sentinel id touches nothing of it
    send(&stack, "Delete", "delete", props("dr-prod", json!({})), Some(&id), None).await;
    assert_eq!(without_admins(inventory(&clients).await), without_admins(before));
    // AND the console deployment still applies cleanly (its lease was released)
    assert_eq!(stack.execute(&sm, "console-again", &console).await.status, "SUCCEEDED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_create_that_also_moves_the_ssm_prefix_of_an_existing_deployment_rolls_nothing_back() {
    let (stack, clients, sm) = setup().await;
    // GIVEN the deployment applied from the console under the default prefix
    let console = json!({"deploymentName": "dr-prod", "cluster": {"name": "dr-eks"}, "namespace": "dr-core",
        "irsaRoleName": "dr-core-irsa"});
    assert_eq!(stack.execute(&sm, "console-apply", &console).await.status, "SUCCEEDED");
    let before = inventory(&clients).await;

    // WHEN a CloudFormation Create of it under another ssmPrefix (no record there yet) fails late
    let extra = json!({"ssmPrefix": "/o11y/dr-prod-moved", "grafana": {"admins": unknown_admin()}});
    let body = send(&stack, "Create", "create", props("dr-prod", extra), None, None).await;

    // THEN FAILED and nothing rolled back: the registry knew the deployment, so it is not this
    // Create's to delete
    assert_eq!(body["Status"], "FAILED", "{body:#}");
    let reason = body["Reason"].as_str().unwrap();
    assert!(!reason.contains("rolled back"), "{reason}");
    let after = inventory(&clients).await;
    for k in ["roles", "policies", "amp", "grafana"] {
        assert_eq!(after[k], before[k], "{k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_that_fails_answers_both_causes_and_the_following_delete_finishes_it() {
    let (stack, clients, _) = setup().await;
    let before = inventory(&clients).await;
    // GIVEN iam:DeletePolicy denied (the Create never deletes a policy; its rollback does)
    let (status, body) = stack.router_control(
        "POST",
        "/_router/faults",
        &json!({"rate": 1.0, "kinds": ["denied"], "services": ["iam"], "operations": ["DeletePolicy"]}).to_string(),
    );
    assert_eq!(status, 200, "{body}");

    // WHEN a Create fails late and its rollback fails at the Grafana role's read policy
    let props = props("dr-prod", json!({"grafana": {"admins": unknown_admin()}}));
    let body = send(&stack, "Create", "create", props.clone(), None, None).await;

    // THEN one FAILED answer with both causes, and the id that says the rollback is incomplete
    assert_eq!(body["Status"], "FAILED", "{body:#}");
    let id = body["PhysicalResourceId"].as_str().unwrap().to_string();
    assert!(id.starts_with(ROLLBACK_INCOMPLETE_PREFIX), "{id}");
    let reason = body["Reason"].as_str().unwrap();
    assert!(reason.contains("was not found"), "the original failure: {reason}");
    assert!(reason.contains("rollback failed") && reason.contains("AccessDenied"), "the rollback's: {reason}");
    // AND the record is kept, the lease released
    let left = inventory(&clients).await;
    assert!(left["ssm"].get("/o11y/dr-prod/provisioner-state").is_some(), "{left:#}");
    assert!(left["ssm"].get("/o11y/dr-prod/lease").is_none(), "{left:#}");
    assert_ne!(left, before);

    // WHEN the fault is gone and CloudFormation deletes the resource with that id
    stack.router_control("DELETE", "/_router/faults", "{}");
    let body = send(&stack, "Delete", "delete", props, Some(&id), None).await;

    // THEN the delete runs from the record: SUCCESS, and the account is exactly as before
    assert_eq!((body["Status"].as_str(), body["PhysicalResourceId"].as_str()), (Some("SUCCESS"), Some(id.as_str())));
    assert_eq!(inventory(&clients).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_update_keeps_the_deployment_working_its_rollback_converges_and_a_replacement_touches_only_its_own() {
    let (stack, clients, _) = setup().await;
    let original_trust = inventory(&clients).await["roles"]["dr-core-irsa"]["trust"].clone();
    let a = props("dr-prod", json!({"retainMetrics": "false"}));
    let body = send(&stack, "Create", "create", a.clone(), None, None).await;
    assert_eq!((body["Status"].as_str(), body["PhysicalResourceId"].as_str()), (Some("SUCCESS"), Some(ID)), "{body:#}");
    let converged = inventory(&clients).await;

    // WHEN an Update renames the write policy and the AMP alias, then fails half-way (datasource)
    let b = props(
        "dr-prod",
        json!({"retainMetrics": "false", "writePolicyName": "dr-prod-v2-observability-write", "amp": {"alias": "dr-prod-v2"},
               "grafana": {"admins": unknown_admin()}}),
    );
    stack.reset_requests();
    let body = send(&stack, "Update", "update", b.clone(), Some(ID), Some(a.clone())).await;
    assert_eq!((body["Status"].as_str(), body["PhysicalResourceId"].as_str()), (Some("FAILED"), Some(ID)), "{body:#}");
    assert!(body["Reason"].as_str().unwrap().contains("datasource"), "{body:#}");

    // THEN the new write policy was attached before the old one was detached and deleted
    let ops: Vec<String> = stack
        .requests()
        .iter()
        .filter(|r| r["service"] == "iam" && r["status"].as_u64() == Some(200))
        .map(|r| r["operation"].as_str().unwrap_or_default().to_string())
        .collect();
    let at = |op: &str| ops.iter().position(|o| o == op).unwrap_or_else(|| panic!("no {op}: {ops:?}"));
    assert!(at("CreatePolicy") < at("AttachRolePolicy") && at("AttachRolePolicy") < at("DetachRolePolicy"), "{ops:?}");
    assert!(at("DetachRolePolicy") < at("DeletePolicy"), "{ops:?}");
    // AND the previous deployment keeps working: same workspaces, the published values unchanged,
    // the IRSA role trusted and allowed to remote-write to the published workspace
    let failed = inventory(&clients).await;
    assert_eq!(
        failed["amp"].as_object().unwrap().keys().collect::<Vec<_>>(),
        converged["amp"].as_object().unwrap().keys().collect::<Vec<_>>()
    );
    assert_eq!(failed["grafana"], converged["grafana"]);
    for leaf in ["helm-values", "remote-write-url", "amp-workspace-arn", "irsa-role-arn"] {
        let name = format!("/o11y/dr-prod/{leaf}");
        assert_eq!(failed["ssm"][&name], converged["ssm"][&name], "{name}");
    }
    assert_eq!(failed["roles"]["dr-core-irsa"]["trust"], converged["roles"]["dr-core-irsa"]["trust"]);
    let attached = failed["roles"]["dr-core-irsa"]["attached"].as_array().unwrap().clone();
    assert_eq!(attached, vec![json!("dr-prod-v2-observability-write")], "{failed:#}");
    let ws_arn = converged["ssm"]["/o11y/dr-prod/amp-workspace-arn"].as_str().unwrap();
    let doc = failed["policies"]["dr-prod-v2-observability-write"].to_string();
    assert!(doc.contains("aps:RemoteWrite") && doc.contains(ws_arn), "{doc}");

    // WHEN CloudFormation rolls back with the old properties THEN exactly the old deployment
    let body = send(&stack, "Update", "rollback", a.clone(), Some(ID), Some(b)).await;
    assert_eq!((body["Status"].as_str(), body["PhysicalResourceId"].as_str()), (Some("SUCCESS"), Some(ID)), "{body:#}");
    assert_eq!(inventory(&clients).await, converged);

    // WHEN a new deploymentName replaces the resource: Create new (new id), then Delete old
    let new = props("dr-prod2", json!({"retainMetrics": "false"}));
    let body = send(&stack, "Update", "replace", new, Some(ID), Some(a.clone())).await;
    let new_id = "o11y-provisioner:123456789012:us-east-1:dr-prod2";
    assert_eq!((body["Status"].as_str(), body["PhysicalResourceId"].as_str()), (Some("SUCCESS"), Some(new_id)));
    let both = inventory(&clients).await;
    let body = send(&stack, "Delete", "delete-old", a, Some(ID), None).await;
    assert_eq!((body["Status"].as_str(), body["PhysicalResourceId"].as_str()), (Some("SUCCESS"), Some(ID)));

    // THEN only the new deployment's resources are left, all of them, and the trust holds the
    // original statements plus exactly the new deployment's
    let after = inventory(&clients).await;
    let names = deployment_names(&after);
    assert!(names.iter().all(|n| n.contains("dr-prod2")), "{names:?}");
    for n in deployment_names(&both).into_iter().filter(|n| n.contains("dr-prod2")) {
        assert!(names.contains(&n), "the Delete of the old removed the new {n}");
    }
    for k in ["amp", "grafana"] {
        assert_eq!(after[k].as_object().unwrap().len(), 1, "{k}: {after:#}");
    }
    let mut expected = original_trust["Statement"].as_array().unwrap().clone();
    let trust = after["roles"]["dr-core-irsa"]["trust"]["Statement"].as_array().unwrap().clone();
    let sid = names::trust_statement_sid("dr-prod2", "us-east-1");
    let ours: Vec<&Value> = trust.iter().filter(|s| s["Sid"] == sid.as_str()).collect();
    assert_eq!(ours.len(), 1, "{trust:#?}");
    expected.push(ours[0].clone());
    assert_eq!(trust, expected);
}
