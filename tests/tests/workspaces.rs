//! Renamed workspaces and the details of the ownership issue, on the local stack through the real
//! state machine, each read back from the stack: a renamed Grafana workspace of ours is renamed
//! in place (its id, data source and dashboards kept, no second workspace); a Grafana workspace
//! name or an AMP alias that another, existing workspace carries adopts that one and retires ours
//! (the Grafana one deleted once the new one has the data source; the AMP one kept with its
//! metrics but no longer ours, or deleted with `retainMetrics: false`); a trust quota raised in
//! the input is used; an SSM parameter that needed the Advanced tier stays Advanced.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use aws_sdk_grafana::types::{AccountAccessType, AuthenticationProviderTypes, PermissionType};
use o11y_shared::aws::{ssm, Clients};
use o11y_shared::steps::datasource::datasource_uid;
use o11y_tests::iam::{set_trust, trust_of};
use o11y_tests::stack::{start_deployed, start_seeded, FullStack, StackOptions};
use serde_json::{json, Value};

/// A fresh local stack with the sample cluster, its OIDC provider and IRSA role, and the state
/// machine.
async fn start() -> (FullStack, Clients, String) {
    let (stack, clients, _, sm) = start_deployed(&StackOptions::creating_one_second()).await;
    (stack, clients, sm)
}

fn minimal() -> Value {
    json!({"deploymentName": "dr-prod", "cluster": {"name": "dr-eks"}, "namespace": "dr-core", "irsaRoleName": "dr-core-irsa"})
}

async fn apply(stack: &FullStack, sm: &str, name: &str, input: &Value) -> Value {
    let run = stack.execute(sm, name, input).await;
    assert_eq!(run.status, "SUCCEEDED", "{name}: {run:?}");
    run.output.unwrap()
}

/// The Grafana workspaces not being deleted: `(id, name)`.
async fn grafana_workspaces(clients: &Clients) -> Vec<(String, String)> {
    let out = clients.grafana.list_workspaces().send().await.unwrap();
    out.workspaces()
        .iter()
        .filter(|w| w.status().as_str() != "DELETING")
        .map(|w| (w.id().to_string(), w.name().unwrap_or_default().to_string()))
        .collect()
}

fn datasource_uids(stack: &FullStack, ws_id: &str) -> Vec<String> {
    let v = stack.grafana_emulator_control(&format!("/_emulator/datasources?workspaceId={ws_id}"));
    v["datasources"].as_array().unwrap().iter().map(|d| d["uid"].as_str().unwrap_or_default().to_string()).collect()
}

/// The AMP workspace's tags, `None` when it is gone (or being deleted).
async fn amp_tags(clients: &Clients, id: &str) -> Option<Vec<(String, String)>> {
    let out = clients.amp.describe_workspace().workspace_id(id).send().await.ok()?;
    let ws = out.workspace()?;
    if ws.status().is_some_and(|s| s.status_code().as_str() == "DELETING") {
        return None;
    }
    Some(ws.tags().into_iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn ours(tags: &[(String, String)]) -> bool {
    tags.iter().any(|(k, _)| k.starts_with("o11y-provisioner:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_grafana_workspace_is_renamed_in_place_with_its_data_source() {
    let (stack, clients, sm) = start().await;
    let created = apply(&stack, &sm, "create", &minimal()).await;
    let ws_id = created["grafanaWorkspaceId"].as_str().unwrap().to_string();
    assert_eq!(datasource_uids(&stack, &ws_id), vec![datasource_uid("dr-prod")]);

    // WHEN the workspace name changes
    let mut renamed = minimal();
    renamed["grafana"] = json!({"workspaceName": "dr-prod-dashboards"});
    let mut plan = renamed.clone();
    plan["action"] = json!("plan");
    let planned = stack.execute(&sm, "plan-rename", &plan).await;
    let report = planned.output.unwrap().to_string();
    assert!(report.contains("dr-prod-dashboards") && report.contains("workspaceName"), "{report}");
    let out = apply(&stack, &sm, "rename", &renamed).await;

    // THEN it is the same workspace under the new name, with its data source, and no other
    assert_eq!(out["grafanaWorkspaceId"], json!(ws_id), "{out:#}");
    assert_eq!(grafana_workspaces(&clients).await, vec![(ws_id.clone(), "dr-prod-dashboards".to_string())]);
    assert_eq!(datasource_uids(&stack, &ws_id), vec![datasource_uid("dr-prod")]);
    assert!(!out["adopted"].as_array().unwrap().contains(&json!("grafanaWorkspace")), "{out:#}");

    // AND a re-run changes nothing about it, and a delete removes it
    let again = apply(&stack, &sm, "again", &renamed).await;
    assert_eq!(again["grafanaWorkspaceId"], json!(ws_id));
    let mut delete = renamed.clone();
    delete["action"] = json!("delete");
    apply(&stack, &sm, "delete", &delete).await;
    assert!(grafana_workspaces(&clients).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grafana_workspace_name_of_a_foreign_workspace_adopts_it_and_deletes_ours_after() {
    let (stack, clients, sm) = start().await;
    let created = apply(&stack, &sm, "create", &minimal()).await;
    let ours_id = created["grafanaWorkspaceId"].as_str().unwrap().to_string();

    // GIVEN another team's workspace
    let foreign = clients
        .grafana
        .create_workspace()
        .workspace_name("team-x-grafana")
        .account_access_type(AccountAccessType::CurrentAccount)
        .authentication_providers(AuthenticationProviderTypes::AwsSso)
        .permission_type(PermissionType::CustomerManaged)
        .workspace_role_arn("arn:aws:iam::123456789012:role/team-x")
        .grafana_version("10.4")
        .tags("team", "x")
        .send()
        .await
        .unwrap();
    let foreign_id = foreign.workspace().unwrap().id().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;

    // WHEN the input names it
    let mut edited = minimal();
    edited["grafana"] = json!({"workspaceName": "team-x-grafana"});
    let out = apply(&stack, &sm, "adopt", &edited).await;

    // THEN it is used and adopted, has our data source, and ours is being deleted
    assert_eq!(out["grafanaWorkspaceId"], json!(foreign_id), "{out:#}");
    assert!(out["adopted"].as_array().unwrap().contains(&json!("grafanaWorkspace")), "{out:#}");
    assert_eq!(datasource_uids(&stack, &foreign_id), vec![datasource_uid("dr-prod")]);
    let live: Vec<String> = grafana_workspaces(&clients).await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(live, vec![foreign_id.clone()], "ours ({ours_id}) must be deleted");

    // AND a delete keeps the adopted one
    let mut delete = edited.clone();
    delete["action"] = json!("delete");
    apply(&stack, &sm, "delete", &delete).await;
    let live: Vec<String> = grafana_workspaces(&clients).await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(live, vec![foreign_id], "an adopted workspace is never deleted");
}

/// A converged deployment and another team's AMP workspace with the alias `team-x-metrics`:
/// `(stack, clients, state machine, our workspace id, the foreign one's id)`.
async fn amp_alias_setup() -> (FullStack, Clients, String, String, String) {
    let (stack, clients, sm) = start().await;
    let created = apply(&stack, &sm, "create", &minimal()).await;
    let ours_id = created["ampWorkspaceId"].as_str().unwrap().to_string();
    let foreign = clients.amp.create_workspace().alias("team-x-metrics").tags("team", "x").send().await.unwrap();
    (stack, clients, sm, ours_id, foreign.workspace_id().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amp_alias_of_another_workspace_adopts_it_and_retains_ours_as_no_longer_ours() {
    let (stack, clients, sm, ours_id, foreign_id) = amp_alias_setup().await;

    let mut edited = minimal();
    edited["amp"] = json!({"alias": "team-x-metrics"});
    let out = apply(&stack, &sm, "adopt", &edited).await;

    // THEN the foreign one is used and adopted; ours is kept, reported as retained, untagged
    assert_eq!(out["ampWorkspaceId"], json!(foreign_id), "{out:#}");
    assert!(out["adopted"].as_array().unwrap().contains(&json!("ampWorkspace")), "{out:#}");
    assert_eq!(out["retained"], json!([ours_id]), "{out:#}");
    let tags = amp_tags(&clients, &ours_id).await.expect("retained, with its metrics");
    assert!(!ours(&tags), "no longer ours: {tags:?}");
    let helm = clients.ssm.get_parameter().name("/o11y/dr-prod/helm-values").send().await.unwrap();
    assert!(helm.parameter().unwrap().value().unwrap().contains(&foreign_id), "the Helm values use the new one");

    // AND a re-run reports nothing retained any more, and a delete removes neither
    let again = apply(&stack, &sm, "again", &edited).await;
    assert!(again.get("retained").is_none(), "{again:#}");
    let mut delete = edited.clone();
    delete["action"] = json!("delete");
    delete["retainMetrics"] = json!(false);
    apply(&stack, &sm, "delete", &delete).await;
    assert_eq!(amp_tags(&clients, &foreign_id).await, Some(vec![("team".to_string(), "x".to_string())]));
    assert!(amp_tags(&clients, &ours_id).await.is_some(), "retained: not ours, so not deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amp_alias_of_another_workspace_with_retain_metrics_false_deletes_ours() {
    let (stack, clients, sm, ours_id, foreign_id) = amp_alias_setup().await;

    let mut edited = minimal();
    edited["amp"] = json!({"alias": "team-x-metrics"});
    edited["retainMetrics"] = json!(false);
    let out = apply(&stack, &sm, "adopt", &edited).await;

    assert_eq!(out["ampWorkspaceId"], json!(foreign_id), "{out:#}");
    assert!(out.get("retained").is_none(), "{out:#}");
    assert!(amp_tags(&clients, &ours_id).await.is_none(), "ours is deleted");
    assert!(amp_tags(&clients, &foreign_id).await.is_some());
}

/// The tier of an SSM parameter, read back from the stack.
async fn tier_of(clients: &Clients, name: &str) -> String {
    let filter = aws_sdk_ssm::types::ParameterStringFilter::builder().key("Name").option("Equals").values(name).build();
    let out = clients.ssm.describe_parameters().parameter_filters(filter.unwrap()).send().await.unwrap();
    out.parameters()[0].tier().unwrap().as_str().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameter_that_needed_the_advanced_tier_is_never_rewritten_as_standard() {
    let stack = FullStack::start(&StackOptions::default());
    let clients = stack.clients().await;
    let name = "/o11y/dr-prod/helm-values";
    let tags = [("o11y-provisioner:deployment".to_string(), "dr-prod".to_string())];
    let put = |value: String, exists: bool| {
        let (ssm, tags) = (clients.ssm.clone(), tags.clone());
        async move { ssm::put_parameter(&ssm, name, &value, exists, &tags, "test").await.unwrap() }
    };

    // GIVEN a value just over 4 KB: Advanced
    put("x".repeat(4097), false).await;
    assert_eq!(tier_of(&clients, name).await, "Advanced");
    // WHEN a value that fits Standard replaces it THEN it stays Advanced, with the new value
    put("small".to_string(), true).await;
    assert_eq!(tier_of(&clients, name).await, "Advanced");
    let v = clients.ssm.get_parameter().name(name).send().await.unwrap();
    assert_eq!(v.parameter().unwrap().value(), Some("small"));
    // AND the stack holds a client to SSM's rule as AWS does: an Advanced parameter overwritten
    // as Standard is refused (moto alone would downgrade it)
    let downgrade = clients
        .ssm
        .put_parameter()
        .name(name)
        .value("small")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .tier(aws_sdk_ssm::types::ParameterTier::Standard)
        .overwrite(true)
        .send()
        .await;
    let err = downgrade.expect_err("a downgrade to Standard is refused");
    assert!(format!("{err:?}").contains("can't downgrade"), "{err:?}");
    assert_eq!(tier_of(&clients, name).await, "Advanced");
    // AND a parameter that never needed more stays Standard
    let other = "/o11y/dr-prod/grafana-url";
    ssm::put_parameter(&clients.ssm, other, "a", false, &tags, "test").await.unwrap();
    ssm::put_parameter(&clients.ssm, other, "b", true, &tags, "test").await.unwrap();
    assert_eq!(tier_of(&clients, other).await, "Standard");
}

/// The client token the Grafana emulator holds for workspace `id`.
fn grafana_client_token(stack: &FullStack, id: &str) -> String {
    let state = stack.grafana_emulator_control("/_emulator/state");
    let ws = state["workspaces"].as_array().unwrap().iter().find(|w| w["id"] == id).cloned().unwrap();
    ws["clientToken"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_after_a_delete_in_process_uses_a_new_client_token() {
    let (stack, clients, _) = start_seeded(&StackOptions::default()).await;
    let wait = o11y_shared::engine::WaitPolicy {
        first_interval: std::time::Duration::from_millis(100),
        max_interval: std::time::Duration::from_millis(500),
        max_total: std::time::Duration::from_secs(30),
    };
    let run = |input: Value| {
        let clients = clients.clone();
        async move { o11y_shared::engine::run(&clients, input, &wait).await.expect("in-process run") }
    };
    let mut delete = minimal();
    delete["action"] = json!("delete");
    delete["retainMetrics"] = json!(false);

    // GIVEN a deployment created, deleted and created again by the in-process runner (no execution)
    let first = run(minimal()).await.grafana_workspace.unwrap().workspace_id;
    let first_token = grafana_client_token(&stack, &first);
    run(delete.clone()).await;
    let second = run(minimal()).await.grafana_workspace.unwrap().workspace_id;

    // THEN the second create carried a token of its own (same parameters, another generation)
    assert_ne!(first, second);
    assert_ne!(grafana_client_token(&stack, &second), first_token);
}

#[test]
fn the_trust_policy_quota_input_is_validated_against_the_documented_range() {
    let with = |q: Value| {
        let mut i = minimal();
        i["trustPolicyQuota"] = q;
        o11y_shared::input::resolve(&i, Some("us-east-1"))
    };
    assert_eq!(with(json!(4096)).unwrap().trust_policy_quota, Some(4096));
    assert_eq!(with(json!(2048)).unwrap().trust_policy_quota, Some(2048));
    assert_eq!(o11y_shared::input::resolve(&minimal(), Some("us-east-1")).unwrap().trust_policy_quota, None);
    for bad in [json!(4097), json!(1000), json!(0)] {
        let err = with(bad.clone()).unwrap_err();
        assert_eq!(err.name(), "ValidationError", "{bad}");
        assert!(err.to_string().contains("trustPolicyQuota") && err.to_string().contains("4096"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trust_quota_raised_in_the_input_admits_a_trust_policy_over_the_default() {
    // An account whose trust policy quota was raised to 4,096 (the stack enforces the quota as IAM
    // does; moto's Service Quotas still reports no applied value, as AWS may).
    let opts = StackOptions { iam_trust_quota: Some(4096), ..StackOptions::creating_one_second() };
    let (stack, clients, _, sm) = start_deployed(&opts).await;

    // GIVEN an IRSA role whose trust policy is near the default 2,048-character quota
    let mut trust = trust_of(&clients, "dr-core-irsa").await.unwrap();
    let len = o11y_shared::policy::document_length(&trust);
    let mut pad = json!({"Sid": "TeamX", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
        "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": ""}}});
    let pad_len = o11y_shared::policy::document_length(&json!({"Statement": [pad.clone()]}));
    pad["Condition"]["StringEquals"]["sts:ExternalId"] = json!("x".repeat(1950 - len - pad_len));
    trust["Statement"].as_array_mut().unwrap().push(pad);
    let padded = o11y_shared::policy::document_length(&trust);
    assert!((1900..2048).contains(&padded), "{padded}");
    set_trust(&clients, "dr-core-irsa", &trust).await;

    // WHEN applied with the default quota (moto's Service Quotas has no applied IAM value, as
    // AWS when the quota was never raised) THEN our statement does not fit: refused, nothing written
    let refused = stack.execute(&sm, "default-quota", &minimal()).await;
    assert_eq!(refused.status, "FAILED", "{refused:?}");
    assert!(format!("{refused:?}").contains("LimitExceededError"), "{refused:?}");

    // WHEN the input says the account's quota was raised THEN it is added
    let mut raised = minimal();
    raised["trustPolicyQuota"] = json!(4096);
    apply(&stack, &sm, "raised-quota", &raised).await;
    let after = trust_of(&clients, "dr-core-irsa").await.unwrap();
    assert!(o11y_shared::policy::document_length(&after) > 2048);
    let sid = o11y_shared::names::trust_statement_sid("dr-prod", "us-east-1");
    assert!(after["Statement"].as_array().unwrap().iter().any(|s| s["Sid"] == sid.as_str()), "{after:#}");
}
