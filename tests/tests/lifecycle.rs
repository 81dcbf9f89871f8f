//! Lifecycle on the local stack: `plan` (no write counted at the router but the create and delete
//! of the one short-lived Grafana token it reads the data source with; a data source edited by
//! hand is reported, then put back by apply), `apply`
//! with changed input (namespace, log group, alias), and `delete` (after create, twice, never
//! created, after a failed create, with adopted resources), through the real state machine; and
//! a corpus of real-world trust shapes whose meaning must survive apply-then-delete.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use std::collections::BTreeSet;
use std::time::Duration;

use o11y_shared::aws::Clients;
use o11y_shared::engine::{self, WaitPolicy};
use o11y_shared::policy;
use o11y_shared::steps::datasource::{self, DatasourceSpec};
use o11y_shared::trust::{self, AssumeRequest};
use o11y_tests::seed;
use o11y_tests::stack::{token_pairs, FullStack, StackOptions};
use serde_json::{json, Value};

fn minimal() -> Value {
    json!({"deploymentName": "dr-prod", "cluster": {"name": "dr-eks"}, "namespace": "dr-core", "irsaRoleName": "dr-core-irsa"})
}

fn with(mut v: Value, patch: Value) -> Value {
    for (k, x) in patch.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

async fn trust_of(clients: &Clients, role: &str) -> Value {
    let r = clients.iam.get_role().role_name(role).send().await.unwrap();
    policy::decode_document(r.role().unwrap().assume_role_policy_document().unwrap()).unwrap()
}

async fn params(clients: &Clients, prefix: &str) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let mut pages = clients.ssm.get_parameters_by_path().path(prefix).recursive(true).into_paginator().send();
    while let Some(page) = pages.next().await {
        for p in page.unwrap().parameters() {
            v.push((p.name().unwrap().to_string(), p.value().unwrap().to_string()));
        }
    }
    v.sort();
    v
}

async fn role_exists(clients: &Clients, role: &str) -> bool {
    clients.iam.get_role().role_name(role).send().await.is_ok()
}

async fn policy_exists(clients: &Clients, name: &str) -> bool {
    let arn = format!("arn:aws:iam::{}:policy/{name}", o11y_tests::ACCOUNT_ID);
    clients.iam.get_policy().policy_arn(arn).send().await.is_ok()
}

async fn amp_ids(clients: &Clients) -> Vec<String> {
    let out = clients.amp.list_workspaces().send().await.unwrap();
    out.workspaces()
        .iter()
        .filter(|w| w.status().map(|s| s.status_code().as_str() != "DELETING").unwrap_or(true))
        .map(|w| w.workspace_id().to_string())
        .collect()
}

async fn grafana_ids(clients: &Clients) -> Vec<String> {
    let out = clients.grafana.list_workspaces().send().await.unwrap();
    out.workspaces().iter().map(|w| w.id().to_string()).collect()
}

fn step<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no {name} in {plan:#}"))
}

/// Asserts that the plan's summary counts, by kind and by step, exactly its steps' changes, and
/// that `changes` is their total.
fn assert_summary_counts_the_steps(plan: &Value) {
    let mut by_step = serde_json::Map::new();
    let mut totals = std::collections::BTreeMap::<String, u64>::new();
    for s in plan["steps"].as_array().unwrap() {
        let mut kinds = std::collections::BTreeMap::<String, u64>::new();
        for c in s["changes"].as_array().unwrap() {
            let kind = c["action"].as_str().unwrap().to_string();
            if kind != "none" {
                *kinds.entry(kind.clone()).or_default() += 1;
                *totals.entry(kind).or_default() += 1;
            }
        }
        if !kinds.is_empty() {
            by_step.insert(s["step"].as_str().unwrap().to_string(), json!(kinds));
        }
    }
    let summary = &plan["summary"];
    assert_eq!(summary["byStep"], Value::Object(by_step), "{plan:#}");
    for kind in ["create", "update", "delete"] {
        assert_eq!(summary[kind].as_u64(), Some(totals.get(kind).copied().unwrap_or(0)), "{kind}: {summary:#}");
    }
    assert_eq!(plan["changes"].as_u64(), Some(totals.values().sum::<u64>()), "{plan:#}");
}

/// Asserts that the writes since the last reset are what a plan may make and no more: no write
/// to any resource, and nothing but `pairs` create/delete pairs of a Grafana token, none of which
/// is left behind in the workspace `grafana_ws` (not even expired).
fn assert_plan_writes(stack: &FullStack, pairs: usize, grafana_ws: Option<&str>) {
    assert_eq!(stack.resource_writes(), Vec::<Value>::new(), "plan changes no resource");
    let writes = stack.aws_writes();
    assert_eq!(token_pairs(&writes), Ok(pairs), "plan's only writes are its Grafana token's: {writes:#?}");
    if let Some(ws) = grafana_ws {
        assert_eq!(stack.grafana_tokens(ws, true), Vec::<Value>::new(), "plan deletes its token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_writes_only_its_grafana_token_and_reports_none_on_a_converged_deployment() {
    let stack = FullStack::start(&StackOptions::default());
    let clients = stack.clients().await;
    seed::seed(&clients, "dr-eks", "dr-core-irsa", "dr-core").await;
    let sm = stack.deploy().await;

    // GIVEN nothing provisioned WHEN planning THEN every resource is to be created, with zero
    // writes (no Grafana workspace: no token)
    stack.reset_requests();
    let plan = stack.execute(&sm, "plan-empty", &with(minimal(), json!({"action": "plan"}))).await;
    assert_eq!(plan.status, "SUCCEEDED", "{plan:?}");
    let p = plan.output.unwrap();
    assert_eq!(stack.aws_writes(), Vec::<Value>::new(), "plan writes nothing");
    assert_plan_writes(&stack, 0, None);
    assert_eq!(step(&p, "preflight")["action"], "none");
    assert_eq!(step(&p, "irsa-trust")["action"], "update");
    let added = &step(&p, "irsa-trust")["changes"][0]["details"]["statementsAdded"];
    assert_eq!(added.as_array().unwrap().len(), 1);
    assert!(added[0].to_string().contains("system:serviceaccount:dr-core:observability-*"), "{added}");
    for s in ["amp-workspace", "write-policy", "grafana-role", "grafana-workspace", "publish"] {
        assert_eq!(step(&p, s)["action"], "create", "{s}: {p:#}");
    }
    assert_summary_counts_the_steps(&p);
    assert!(p["summary"]["create"].as_u64().unwrap() >= 5, "{:#}", p["summary"]);
    assert!(amp_ids(&clients).await.is_empty() && grafana_ids(&clients).await.is_empty());
    assert!(!role_exists(&clients, "dr-prod-us-east-1-grafana").await);
    assert!(params(&clients, "/o11y/dr-prod").await.is_empty());

    // GIVEN a converged deployment WHEN planning THEN none everywhere, and no write but the one
    // short-lived token the data source was read with, created then deleted
    let applied = stack.execute(&sm, "apply", &minimal()).await;
    assert_eq!(applied.status, "SUCCEEDED", "{applied:?}");
    let ws = applied.output.unwrap()["grafanaWorkspaceId"].as_str().unwrap().to_string();
    stack.reset_requests();
    let plan = stack.execute(&sm, "plan-converged", &with(minimal(), json!({"action": "plan"}))).await;
    let p = plan.output.unwrap();
    assert_eq!(p["changes"], 0, "{p:#}");
    assert_eq!(p["summary"], json!({"create": 0, "update": 0, "delete": 0, "byStep": {}}), "{p:#}");
    assert!(p.get("notApplied").is_none(), "{p:#}");
    for s in p["steps"].as_array().unwrap() {
        assert_eq!(s["action"], "none", "{s:#}");
    }
    assert_plan_writes(&stack, 1, Some(&ws));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_reports_a_data_source_edited_by_hand_and_apply_puts_it_back() {
    // GIVEN a converged deployment
    let stack = FullStack::start(&StackOptions::default());
    let clients = stack.clients().await;
    seed::seed(&clients, "dr-eks", "dr-core-irsa", "dr-core").await;
    let sm = stack.deploy().await;
    let applied = stack.execute(&sm, "apply", &minimal()).await;
    assert_eq!(applied.status, "SUCCEEDED", "{applied:?}");
    let out = applied.output.unwrap();
    let ws = out["grafanaWorkspaceId"].as_str().unwrap().to_string();
    let endpoint = out["grafanaUrl"].as_str().unwrap().trim_start_matches("https://").to_string();
    let uid = datasource::datasource_uid("dr-prod");
    let endpoint_url = out["prometheusEndpoint"].as_str().unwrap().to_string();
    let desired = datasource::desired_datasource(&DatasourceSpec {
        uid: uid.clone(),
        name: datasource::datasource_name("dr-prod"),
        grafana_version: "10.4".into(),
        prometheus_endpoint: endpoint_url.clone(),
        region: o11y_tests::REGION.into(),
        is_default: false,
    });
    let live = |stack: &FullStack| {
        let v = stack.grafana_emulator_control(&format!("/_emulator/datasources?workspaceId={ws}"));
        let all = v["datasources"].as_array().unwrap().clone();
        assert_eq!(all.len(), 1, "{all:#?}");
        all[0].clone()
    };
    let owned = |ds: &Value| {
        json!({"uid": ds["uid"], "name": ds["name"], "type": ds["type"], "access": ds["access"], "url": ds["url"],
               "isDefault": ds["isDefault"], "jsonData": ds["jsonData"]})
    };
    let as_applied = live(&stack);
    assert_eq!(owned(&as_applied), desired);

    // WHEN planning with no hand edit
    stack.reset_requests();
    let plan = stack.execute(&sm, "plan-clean", &with(minimal(), json!({"action": "plan"}))).await;
    assert_eq!(plan.status, "SUCCEEDED", "{plan:?}");
    let p = plan.output.unwrap();

    // THEN the data source has no change, and only the plan's token was written (and deleted)
    assert_eq!(step(&p, "datasource")["action"], "none", "{p:#}");
    assert_eq!(step(&p, "datasource")["changes"], json!([]), "{p:#}");
    assert_plan_writes(&stack, 1, Some(&ws));

    // WHEN someone edits the data source's URL and SigV4 region by hand in Grafana, and plans
    let edited = stack
        .edit_datasource_by_hand(&clients, &ws, &endpoint, &uid, |ds| {
            ds["url"] = json!("https://prometheus.example.com/");
            ds["jsonData"]["sigV4Region"] = json!("eu-west-1");
        })
        .await;
    stack.reset_requests();
    let plan = stack.execute(&sm, "plan-drift", &with(minimal(), json!({"action": "plan"}))).await;
    assert_eq!(plan.status, "SUCCEEDED", "{plan:?}");
    let p = plan.output.unwrap();

    // THEN the plan reports an update of the data source naming both fields, live and desired,
    // and nothing else
    assert_eq!(p["changes"], 1, "{p:#}");
    let ds_step = step(&p, "datasource");
    assert_eq!(ds_step["action"], "update", "{p:#}");
    assert_eq!(ds_step["changes"].as_array().unwrap().len(), 1, "{p:#}");
    let change = &ds_step["changes"][0];
    assert_eq!(change["action"], "update");
    assert_eq!(change["resource"], format!("Grafana data source {uid}"));
    assert_eq!(
        change["details"],
        json!({"drift": {
            "url": {"live": "https://prometheus.example.com/", "desired": endpoint_url},
            "jsonData.sigV4Region": {"live": "eu-west-1", "desired": "us-east-1"}
        }})
    );
    // AND no resource was written, its token was the only write and is gone, no key is in the plan
    assert_plan_writes(&stack, 1, Some(&ws));
    let text = p.to_string();
    assert!(!text.contains("glsa_") && !text.contains("Bearer") && !text.contains("\"key\""), "{text}");
    // AND the data source is still as edited
    assert_eq!(owned(&live(&stack)), owned(&edited));
    assert_eq!(edited["url"], "https://prometheus.example.com/");

    // WHEN apply runs
    let fixed = stack.execute(&sm, "apply-fix", &minimal()).await;
    assert_eq!(fixed.status, "SUCCEEDED", "{fixed:?}");

    // THEN the data source is back to exactly the desired JSON, every other field as before the
    // edit (only Grafana's version counter and update time moved on)
    let now = live(&stack);
    assert_eq!(owned(&now), desired);
    let strip = |ds: &Value| {
        let mut d = ds.clone();
        d.as_object_mut().unwrap().retain(|k, _| k != "version" && k != "updated");
        d
    };
    assert_eq!(strip(&now), strip(&as_applied));
    assert!(now["version"].as_i64() > as_applied["version"].as_i64());

    // AND a plan finds nothing to do again
    let plan = stack.execute(&sm, "plan-after-fix", &with(minimal(), json!({"action": "plan"}))).await;
    let p = plan.output.unwrap();
    assert_eq!(p["changes"], 0, "{p:#}");
    assert_eq!(step(&p, "datasource")["action"], "none", "{p:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_namespace_log_group_and_alias_converge_without_orphans() {
    let stack = FullStack::start(&StackOptions::default());
    let clients = stack.clients().await;
    let seeded = seed::seed(&clients, "dr-eks", "dr-core-irsa", "dr-core").await;
    let sm = stack.deploy().await;
    let first = stack.execute(&sm, "apply-1", &minimal()).await;
    assert_eq!(first.status, "SUCCEEDED", "{first:?}");
    let out1 = first.output.unwrap();
    let changed = with(
        minimal(),
        json!({"namespace": "dr-obs", "logs": {"groupName": "/dr-prod/otel", "streamName": "collector-2"}, "amp": {"alias": "dr-prod-v2"}}),
    );

    // WHEN planning the change THEN the plan names each difference
    let plan =
        stack.execute(&sm, "plan-change", &with(changed.clone(), json!({"action": "plan"}))).await.output.unwrap();
    let trust_change = &step(&plan, "irsa-trust")["changes"][0]["details"];
    assert!(trust_change["statementsAdded"].to_string().contains(":dr-obs:observability-*"), "{trust_change}");
    assert!(trust_change["statementsRemoved"].to_string().contains(":dr-core:observability-*"), "{trust_change}");
    let alias = &step(&plan, "amp-workspace")["changes"][0]["details"]["alias"];
    assert_eq!(alias, &json!({"from": "dr-prod", "to": "dr-prod-v2"}));
    let wp = &step(&plan, "write-policy")["changes"][0]["details"];
    assert!(wp["statementsAdded"].to_string().contains("log-group:/dr-prod/otel"), "{wp}");
    assert_eq!(wp["versions"], 1);
    assert_eq!(step(&plan, "publish")["action"], "update");
    // AND its summary counts the same changes, and the Helm values' changed keys are named
    assert_summary_counts_the_steps(&plan);
    let helm = &step(&plan, "publish")["changes"][0]["details"]["helmValues"];
    let keys: Vec<&str> = helm.as_array().unwrap().iter().map(|k| k["key"].as_str().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "global.observability.exporters.awscloudwatchlogs.log_group_name",
            "global.observability.exporters.awscloudwatchlogs.log_stream_name"
        ],
        "{helm:#}"
    );
    assert_eq!((&helm[0]["old"], &helm[0]["new"]), (&json!("/dr-prod/observability"), &json!("/dr-prod/otel")));
    assert_eq!((&helm[1]["old"], &helm[1]["new"]), (&json!("otel-collector"), &json!("collector-2")));

    // WHEN applying it
    let second = stack.execute(&sm, "apply-2", &changed).await;
    assert_eq!(second.status, "SUCCEEDED", "{second:?}");
    let out2 = second.output.unwrap();

    // THEN the trust policy swapped our statement, keeping the original one
    let trust = trust_of(&clients, "dr-core-irsa").await;
    let text = trust.to_string();
    assert!(text.contains(":dr-obs:observability-*") && !text.contains(":dr-core:observability-*"), "{trust:#}");
    assert_eq!(trust["Statement"][0], seeded.original_trust["Statement"][0]);
    assert_eq!(trust["Statement"].as_array().unwrap().len(), 2);
    // the AMP workspace was renamed in place (same id, data kept), not replaced
    assert_eq!(out2["ampWorkspaceId"], out1["ampWorkspaceId"]);
    assert_eq!(amp_ids(&clients).await.len(), 1);
    let ws =
        clients.amp.describe_workspace().workspace_id(out2["ampWorkspaceId"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(ws.workspace().unwrap().alias(), Some("dr-prod-v2"));
    // the write policy has a new default version for the new log group
    let arn = out2["writePolicyArn"].as_str().unwrap();
    let versions = clients.iam.list_policy_versions().policy_arn(arn).send().await.unwrap();
    assert_eq!(versions.versions().len(), 2);
    // the values were re-rendered and republished
    let helm = params(&clients, "/o11y/dr-prod").await.into_iter().find(|p| p.0.ends_with("/helm-values")).unwrap().1;
    assert!(helm.contains("log_group_name: /dr-prod/otel") && helm.contains("log_stream_name: collector-2"), "{helm}");
    // and a plan now finds nothing to do
    let plan = stack.execute(&sm, "plan-after", &with(changed, json!({"action": "plan"}))).await.output.unwrap();
    assert_eq!(plan["changes"], 0, "{plan:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_what_we_created_twice_and_retains_metrics_by_default() {
    let stack = FullStack::start(&StackOptions { grafana_active_delay: 1.0, ..StackOptions::default() });
    let clients = stack.clients().await;
    let seeded = seed::seed(&clients, "dr-eks", "dr-core-irsa", "dr-core").await;
    let sm = stack.deploy().await;

    // GIVEN a deployment that was never created WHEN deleting THEN success, zero writes
    stack.reset_requests();
    let never = stack.execute(&sm, "delete-never", &with(minimal(), json!({"action": "delete"}))).await;
    assert_eq!(never.status, "SUCCEEDED", "{never:?}");
    assert_eq!(stack.aws_writes(), Vec::<Value>::new());

    // GIVEN a created deployment WHEN deleted
    let created = stack.execute(&sm, "create", &minimal()).await;
    assert_eq!(created.status, "SUCCEEDED", "{created:?}");
    let ws_id = created.output.unwrap()["ampWorkspaceId"].as_str().unwrap().to_string();
    let deleted = stack.execute(&sm, "delete-1", &with(minimal(), json!({"action": "delete"}))).await;
    assert_eq!(deleted.status, "SUCCEEDED", "{deleted:?}");
    let report = deleted.output.unwrap();

    // THEN Grafana, its role, both policies, our trust statement and our parameters are gone,
    // the AMP workspace (the customer's metrics) is retained, and the trust is the original
    assert!(grafana_ids(&clients).await.is_empty());
    assert!(!role_exists(&clients, "dr-prod-us-east-1-grafana").await);
    assert!(!policy_exists(&clients, "dr-prod-us-east-1-observability-write").await);
    assert!(!policy_exists(&clients, "dr-prod-us-east-1-grafana-amp-read").await);
    assert!(policy::equivalent(&trust_of(&clients, "dr-core-irsa").await, &seeded.original_trust));
    assert!(params(&clients, "/o11y/dr-prod").await.is_empty());
    assert_eq!(amp_ids(&clients).await, vec![ws_id.clone()]);
    assert_eq!(report["ampWorkspace"]["retained"], json!([format!("{ws_id}: retainMetrics")]));
    assert!(role_exists(&clients, "dr-core-irsa").await, "the IRSA role is the user's");

    // WHEN deleted again THEN success and nothing to do
    stack.reset_requests();
    let again = stack.execute(&sm, "delete-2", &with(minimal(), json!({"action": "delete"}))).await;
    assert_eq!(again.status, "SUCCEEDED", "{again:?}");
    assert_eq!(stack.aws_writes(), Vec::<Value>::new());

    // WHEN re-created and deleted with retainMetrics false THEN the workspace goes too
    assert_eq!(stack.execute(&sm, "create-2", &minimal()).await.status, "SUCCEEDED");
    assert_eq!(amp_ids(&clients).await, vec![ws_id.clone()], "the retained workspace is reused");
    let purge =
        stack.execute(&sm, "delete-3", &with(minimal(), json!({"action": "delete", "retainMetrics": false}))).await;
    assert_eq!(purge.status, "SUCCEEDED", "{purge:?}");
    assert!(amp_ids(&clients).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_after_a_failed_create_cleans_up_and_adopted_resources_survive() {
    let stack = FullStack::start(&StackOptions::default());
    let clients = stack.clients().await;
    let seeded = seed::seed(&clients, "dr-eks", "dr-core-irsa", "dr-core").await;
    let sm = stack.deploy().await;

    // GIVEN a create that fails at the Grafana workspace (CreateWorkspace denied), after the
    // trust, the AMP workspace, both policies and the Grafana role were made
    let failing = minimal();
    deny_grafana_create(&stack);
    let failed = stack.execute(&sm, "create-fails", &failing).await;
    allow_grafana_create(&stack);
    assert_eq!(failed.status, "FAILED");
    assert_eq!(failed.failed_state.as_deref(), Some("GrafanaWorkspace"));
    assert!(role_exists(&clients, "dr-prod-us-east-1-grafana").await);

    // WHEN deleted (with the same input) THEN everything it created is removed
    let del =
        stack.execute(&sm, "delete-failed", &with(failing, json!({"action": "delete", "retainMetrics": false}))).await;
    assert_eq!(del.status, "SUCCEEDED", "{del:?}");
    assert!(!role_exists(&clients, "dr-prod-us-east-1-grafana").await);
    assert!(!policy_exists(&clients, "dr-prod-us-east-1-observability-write").await);
    assert!(!policy_exists(&clients, "dr-prod-us-east-1-grafana-amp-read").await);
    assert!(amp_ids(&clients).await.is_empty());
    assert!(policy::equivalent(&trust_of(&clients, "dr-core-irsa").await, &seeded.original_trust));

    // GIVEN resources from a manual run (workspace with the alias, the write policy) that apply adopts
    let manual = clients.amp.create_workspace().alias("dr-prod").send().await.unwrap();
    let doc = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": "*"}]});
    clients
        .iam
        .create_policy()
        .policy_name("dr-prod-us-east-1-observability-write")
        .policy_document(doc.to_string())
        .send()
        .await
        .unwrap();
    let applied = stack.execute(&sm, "adopt", &minimal()).await;
    assert_eq!(applied.status, "SUCCEEDED", "{applied:?}");
    assert_eq!(applied.output.unwrap()["adopted"], json!(["ampWorkspace", "writePolicy"]));

    // WHEN deleted, even with retainMetrics false THEN the adopted ones stay (the attachment we made goes)
    let del = stack
        .execute(&sm, "delete-adopted", &with(minimal(), json!({"action": "delete", "retainMetrics": false})))
        .await;
    assert_eq!(del.status, "SUCCEEDED", "{del:?}");
    assert_eq!(amp_ids(&clients).await, vec![manual.workspace_id().to_string()]);
    assert!(policy_exists(&clients, "dr-prod-us-east-1-observability-write").await);
    let attached = clients.iam.list_attached_role_policies().role_name("dr-core-irsa").send().await.unwrap();
    assert!(attached.attached_policies().is_empty(), "the attachment we made is removed");
    assert!(!role_exists(&clients, "dr-prod-us-east-1-grafana").await, "what we created goes");
    let report = del.output.unwrap();
    assert!(report["ampWorkspace"]["retained"][0].as_str().unwrap().ends_with(": adopted"), "{report:#}");
}

/// Every request a trust document could be asked about: each principal it names, plus ours.
fn requests(docs: &[&Value], provider: &str) -> Vec<AssumeRequest> {
    let mut providers = BTreeSet::from([provider.to_string(), format!("{provider}-other")]);
    let mut services = BTreeSet::from(["ec2.amazonaws.com".to_string()]);
    let mut aws = BTreeSet::from(["arn:aws:iam::999999999999:root".to_string()]);
    let mut subs = BTreeSet::new();
    fn walk(v: &Value, key: &str, f: &mut dyn FnMut(&str, &str)) {
        match v {
            Value::Object(m) => m.iter().for_each(|(k, x)| walk(x, k, f)),
            Value::Array(a) => a.iter().for_each(|x| walk(x, key, f)),
            Value::String(s) => f(key, s),
            _ => {}
        }
    }
    for doc in docs {
        walk(doc, "", &mut |k, s| match k {
            "Federated" => {
                providers.insert(s.to_string());
            }
            "Service" => {
                services.insert(s.to_string());
            }
            "AWS" => {
                aws.insert(s.to_string());
            }
            _ if s.starts_with("system:serviceaccount:") => {
                subs.insert(s.replace('*', "x"));
            }
            _ => {}
        });
    }
    for ns in ["dr-core", "dr-obs", "other"] {
        for sa in ["observability-collector", "app", "default", "observability-"] {
            subs.insert(format!("system:serviceaccount:{ns}:{sa}"));
        }
    }
    let mut out = Vec::new();
    for p in &providers {
        for sub in &subs {
            for aud in ["sts.amazonaws.com", "other"] {
                out.push(AssumeRequest::WebIdentity {
                    provider_arn: p.clone(),
                    sub: sub.clone(),
                    aud: aud.to_string(),
                });
            }
        }
    }
    out.extend(services.into_iter().map(AssumeRequest::Service));
    out.extend(aws.into_iter().map(AssumeRequest::Aws));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_delete_every_corpus_trust_policy_means_what_it_meant_before() {
    // GIVEN the corpus of real-world trust shapes (shared/tests/fixtures/trust), each on its own
    // IRSA role trusting the same cluster's provider
    let stack = FullStack::start(&StackOptions::default());
    let clients = stack.clients().await;
    let issuer = "https://oidc.eks.us-east-1.amazonaws.com/id/5C6D7E8F9A0B1C2D3E4F5A6B7C8D9E0F";
    let provider = seed::oidc_provider(&clients, issuer).await;
    let dir = o11y_tests::repo_root().join("shared/tests/fixtures/trust");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let wait = WaitPolicy {
        first_interval: Duration::from_millis(50),
        max_interval: Duration::from_millis(200),
        max_total: Duration::from_secs(10),
    };
    let mut checked = 0;
    for (i, path) in files.iter().enumerate() {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if name == "near-quota" {
            continue; // apply refuses it (quota): covered by the engine tests
        }
        let original: Value = serde_json::from_str(
            &std::fs::read_to_string(path).unwrap().replace("111122223333", o11y_tests::ACCOUNT_ID),
        )
        .unwrap();
        let role = format!("irsa-{i}");
        clients
            .iam
            .create_role()
            .role_name(&role)
            .assume_role_policy_document(original.to_string())
            .tags(o11y_tests::seed::opt_in_tag())
            .send()
            .await
            .unwrap();
        let mut input = json!({
            "deploymentName": "dr-prod",
            "cluster": {"oidcIssuer": issuer},
            "namespace": "dr-core",
            "irsaRoleName": role,
            "ssmPrefix": format!("/corpus/{i}"),
            "amp": {"alias": format!("corpus-{i}")},
            "writePolicyName": format!("w-{i}"),
            "grafana": {"workspaceName": format!("corpus-{i}"), "roleName": format!("g-{i}"), "readPolicyName": format!("r-{i}")},
            // Some shapes (a Deny guard) block our service accounts on purpose: verify reports it.
            "verify": "warn",
        });

        // WHEN applied THEN our service accounts are admitted (unless a Deny in the shape blocks them)
        let state_output =
            engine::run(&clients, input.clone(), &wait).await.unwrap_or_else(|e| panic!("{name}: apply: {e}")).output;
        let applied = trust_of(&clients, &role).await;
        let collector = AssumeRequest::WebIdentity {
            provider_arn: provider.clone(),
            sub: "system:serviceaccount:dr-core:observability-collector".into(),
            aud: "sts.amazonaws.com".into(),
        };
        if !name.starts_with("deny-guard") {
            assert!(trust::admits(&applied, &collector), "{name}: collector not admitted: {applied:#}");
        } else {
            // verify (in warn mode) says it is a Deny, not a missing statement
            let out = state_output.as_ref().and_then(|o| o.verification.clone()).expect("verification");
            let failure = out.failures.join("; ");
            assert!(failure.contains("a Deny statement"), "{name}: {failure}");
        }
        // WHEN deleted THEN every request is decided exactly as by the original policy
        input["action"] = json!("delete");
        input["retainMetrics"] = json!(false);
        engine::run(&clients, input, &wait).await.unwrap_or_else(|e| panic!("{name}: delete: {e}"));
        let after = trust_of(&clients, &role).await;
        for req in requests(&[&original, &applied], &provider) {
            assert_eq!(trust::admits(&after, &req), trust::admits(&original, &req), "{name}: {req:?}\n{after:#}");
        }
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} shapes checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_that_fails_half_way_completes_when_run_again() {
    let stack = FullStack::start(&StackOptions::default());
    let clients = stack.clients().await;
    let seeded = seed::seed(&clients, "dr-eks", "dr-core-irsa", "dr-core").await;
    let sm = stack.deploy().await;
    // The setup create (not what this test is about) failed once under CI load for a reason not
    // yet understood: show it, and retry once (issue note).
    let created = stack.execute(&sm, "create", &minimal()).await;
    if created.status != "SUCCEEDED" {
        eprintln!("setup create failed, retrying once: {created:?}");
        assert_eq!(stack.execute(&sm, "create-again", &minimal()).await.status, "SUCCEEDED");
    }

    // GIVEN someone put our Grafana role in an instance profile: IAM refuses to delete the role
    clients.iam.create_instance_profile().instance_profile_name("in-the-way").send().await.unwrap();
    clients
        .iam
        .add_role_to_instance_profile()
        .instance_profile_name("in-the-way")
        .role_name("dr-prod-us-east-1-grafana")
        .send()
        .await
        .unwrap();
    let delete = with(minimal(), json!({"action": "delete"}));

    // WHEN deleting THEN it fails at the Grafana role, after the Grafana workspace is gone
    let failed = stack.execute(&sm, "delete-1", &delete).await;
    assert_eq!(failed.status, "FAILED", "{failed:?}");
    assert_eq!(failed.failed_state.as_deref(), Some("DeleteGrafanaRole"));
    assert_eq!(failed.error.as_deref(), Some("AwsError"));
    assert!(grafana_ids(&clients).await.is_empty());

    // WHEN the obstacle is removed and the delete is run again THEN it completes
    clients
        .iam
        .remove_role_from_instance_profile()
        .instance_profile_name("in-the-way")
        .role_name("dr-prod-us-east-1-grafana")
        .send()
        .await
        .unwrap();
    let done = stack.execute(&sm, "delete-2", &delete).await;
    assert_eq!(done.status, "SUCCEEDED", "{done:?}");
    assert!(!role_exists(&clients, "dr-prod-us-east-1-grafana").await);
    assert!(!policy_exists(&clients, "dr-prod-us-east-1-observability-write").await);
    assert!(policy::equivalent(&trust_of(&clients, "dr-core-irsa").await, &seeded.original_trust));
    assert!(params(&clients, "/o11y/dr-prod").await.is_empty());
}

/// Everything `dr-prod` (custom names) could have left: workspaces, IAM, parameters, registry.
async fn assert_nothing_left(clients: &Clients, seeded: &seed::Seeded, what: &str) {
    assert!(grafana_ids(clients).await.is_empty(), "{what}: a Grafana workspace is left");
    assert!(amp_ids(clients).await.is_empty(), "{what}: an AMP workspace is left");
    assert!(!role_exists(clients, "dr-prod-us-east-1-grafana").await, "{what}: the Grafana role is left");
    assert!(!policy_exists(clients, "dr-prod-custom-observability-write").await, "{what}: the write policy is left");
    assert!(!policy_exists(clients, "dr-prod-us-east-1-grafana-amp-read").await, "{what}: the read policy is left");
    assert!(policy::equivalent(&trust_of(clients, "dr-core-irsa").await, &seeded.original_trust), "{what}: trust");
    assert!(params(clients, "/o11y").await.is_empty(), "{what}: parameters are left");
    assert!(params(clients, "/o11y-provisioner").await.is_empty(), "{what}: the registry entry or lease is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_that_names_only_the_deployment_works_from_what_it_recorded() {
    let stack = FullStack::start(&StackOptions { grafana_active_delay: 1.0, ..StackOptions::default() });
    let clients = stack.clients().await;
    let seeded = seed::seed(&clients, "dr-eks", "dr-core-irsa", "dr-core").await;
    let sm = stack.deploy().await;
    let by_name = json!({"deploymentName": "dr-prod", "action": "delete", "retainMetrics": false});
    // Names no default would give: a delete by name must find them in the record, not guess.
    let custom = with(
        minimal(),
        json!({"amp": {"alias": "dr-metrics"}, "writePolicyName": "dr-prod-custom-observability-write", "ssmPrefix": "/o11y/teams/dr-prod",
               "grafana": {"workspaceName": "dr-grafana"}}),
    );

    // GIVEN nothing was ever created WHEN deleted by name THEN success, zero writes, and it says so
    stack.reset_requests();
    let never = stack.execute(&sm, "never", &by_name).await;
    assert_eq!(never.status, "SUCCEEDED", "{never:?}");
    let note = never.output.unwrap()["note"].as_str().unwrap_or_default().to_string();
    assert!(note.contains("nothing to delete") && note.contains("\"dr-prod\""), "{note}");
    assert_eq!(stack.aws_writes(), Vec::<Value>::new());

    // GIVEN a converged deployment
    let created = stack.execute(&sm, "create", &custom).await;
    assert_eq!(created.status, "SUCCEEDED", "{created:?}");
    assert_eq!(amp_ids(&clients).await.len(), 1);

    // WHEN deleted by name with a field that differs from the record THEN refused before any
    // write, naming the field
    stack.reset_requests();
    let wrong = stack.execute(&sm, "wrong", &with(by_name.clone(), json!({"namespace": "other"}))).await;
    assert_eq!(wrong.status, "FAILED", "{wrong:?}");
    assert_eq!(wrong.error.as_deref(), Some("ValidationError"));
    let cause = wrong.cause.unwrap_or_default();
    assert!(cause.starts_with("ValidationError: preflight: namespace: differs from what deployment"), "{cause}");
    assert_eq!(stack.aws_writes(), Vec::<Value>::new());

    // WHEN deleted by name (with a field that agrees) THEN everything it made is gone
    let agreeing = with(by_name.clone(), json!({"cluster": {"name": "dr-eks"}}));
    let deleted = stack.execute(&sm, "delete", &agreeing).await;
    assert_eq!(deleted.status, "SUCCEEDED", "{deleted:?}");
    assert_nothing_left(&clients, &seeded, "converged").await;

    // GIVEN a create that failed half-way (the Grafana workspace refused: trust, AMP workspace,
    // policies and the Grafana role made)
    deny_grafana_create(&stack);
    let half = stack.execute(&sm, "half", &custom).await;
    allow_grafana_create(&stack);
    assert_eq!(half.status, "FAILED", "{half:?}");
    assert_eq!(half.failed_state.as_deref(), Some("GrafanaWorkspace"), "{half:?}");
    assert!(role_exists(&clients, "dr-prod-us-east-1-grafana").await);
    assert!(policy_exists(&clients, "dr-prod-custom-observability-write").await);

    // WHEN deleted by name THEN everything it made is gone; and a second delete has nothing to do
    let deleted = stack.execute(&sm, "delete-half", &by_name).await;
    assert_eq!(deleted.status, "SUCCEEDED", "{deleted:?}");
    assert_nothing_left(&clients, &seeded, "half-created").await;
    stack.reset_requests();
    let again = stack.execute(&sm, "again", &by_name).await;
    assert_eq!(again.status, "SUCCEEDED", "{again:?}");
    assert!(again.output.unwrap()["note"].as_str().unwrap_or_default().contains("nothing to delete"));
    assert_eq!(stack.aws_writes(), Vec::<Value>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_settings_are_checked_before_any_write_and_those_apply_leaves_are_said_first() {
    let stack = FullStack::start(&StackOptions { grafana_active_delay: 1.0, ..StackOptions::default() });
    let clients = stack.clients().await;
    seed::seed(&clients, "dr-eks", "dr-core-irsa", "dr-core").await;
    let sm = stack.deploy().await;
    let version = |v: &str| with(minimal(), json!({"grafana": {"version": v}}));
    let refused = |outcome: &o11y_tests::sfn::Outcome, rule: &str| {
        assert_eq!(outcome.status, "FAILED", "{outcome:?}");
        assert_eq!(outcome.failed_state.as_deref(), Some("Preflight"), "{outcome:?}");
        let cause = outcome.cause.clone().unwrap_or_default();
        assert!(cause.starts_with(&format!("ValidationError: preflight: grafana.version: {rule}")), "{cause}");
    };

    // GIVEN a new deployment WHEN its version is not offered THEN refused in preflight, zero writes
    stack.reset_requests();
    refused(&stack.execute(&sm, "new-10-5", &version("10.5")).await, "\"10.5\" is not offered");
    assert_eq!(stack.aws_writes(), Vec::<Value>::new());

    // GIVEN a converged deployment (10.4)
    let created = stack.execute(&sm, "create", &minimal()).await;
    assert_eq!(created.status, "SUCCEEDED", "{created:?}");
    assert!(created.output.unwrap().get("notApplied").is_none(), "nothing differs on a converged deployment");
    let ws = grafana_ids(&clients).await;

    // WHEN a version no workspace has, or a lower one (versions only go up) THEN refused in
    // preflight, zero writes
    stack.reset_requests();
    refused(&stack.execute(&sm, "edit-10-5", &version("10.5")).await, "\"10.5\" cannot be set on Grafana workspace");
    refused(&stack.execute(&sm, "edit-9-4", &version("9.4")).await, "\"9.4\" cannot be set on Grafana workspace");
    assert_eq!(stack.aws_writes(), Vec::<Value>::new());

    // WHEN an upgrade and another sign-in, which apply does not make THEN plan and apply both
    // say so first, with the live and desired values and why, and the workspace is as it was
    let edited = with(minimal(), json!({"grafana": {"version": "12.4", "authenticationProviders": ["SAML"]}}));
    let expect = |report: &Value, what: &str| {
        let listed = report["notApplied"].as_array().unwrap_or_else(|| panic!("{what}: no notApplied: {report:#}"));
        let settings: Vec<&str> = listed.iter().map(|n| n["setting"].as_str().unwrap()).collect();
        assert_eq!(settings, ["grafana.version", "grafana.authenticationProviders"], "{what}");
        assert_eq!((&listed[0]["live"], &listed[0]["desired"]), (&json!("10.4"), &json!("12.4")), "{what}");
        assert_eq!((&listed[1]["live"], &listed[1]["desired"]), (&json!(["AWS_SSO"]), &json!(["SAML"])), "{what}");
        assert!(listed.iter().all(|n| n["why"].as_str().unwrap().contains("apply does not")), "{what}");
    };
    let plan = stack.execute(&sm, "plan", &with(edited.clone(), json!({"action": "plan"}))).await;
    assert_eq!(plan.status, "SUCCEEDED", "{plan:?}");
    let plan = plan.output.unwrap();
    expect(&plan, "plan");
    assert_eq!(plan["changes"], 0, "{plan:#}");
    let applied = stack.execute(&sm, "apply", &edited).await;
    assert_eq!(applied.status, "SUCCEEDED", "{applied:?}");
    expect(&applied.output.unwrap(), "apply");
    let live = clients.grafana.describe_workspace().workspace_id(&ws[0]).send().await.unwrap();
    let live = live.workspace().unwrap();
    assert_eq!(live.grafana_version(), "10.4");
    assert_eq!(live.authentication().unwrap().providers().iter().map(|p| p.as_str()).collect::<Vec<_>>(), ["AWS_SSO"]);
}

/// Denies the Grafana workspace's create at the router until [`allow_grafana_create`].
fn deny_grafana_create(stack: &FullStack) {
    let (status, body) = stack.router_control(
        "POST",
        "/_router/faults",
        &json!({"rate": 1.0, "kinds": ["denied"], "services": ["grafana"], "operations": ["POST /workspaces"]})
            .to_string(),
    );
    assert_eq!(status, 200, "{body}");
}

fn allow_grafana_create(stack: &FullStack) {
    stack.router_control("DELETE", "/_router/faults", "{}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amp_workspace_whose_values_were_never_published_is_not_kept_as_metrics() {
    let stack = FullStack::start(&StackOptions { grafana_active_delay: 1.0, ..StackOptions::default() });
    let clients = stack.clients().await;
    seed::seed(&clients, "dr-eks", "dr-core-irsa", "dr-core").await;
    let sm = stack.deploy().await;
    let delete = with(minimal(), json!({"action": "delete"}));

    // GIVEN a create that failed before publish (the AMP workspace made, its URL never handed out)
    deny_grafana_create(&stack);
    let failed = stack.execute(&sm, "fails-1", &minimal()).await;
    allow_grafana_create(&stack);
    assert_eq!(failed.status, "FAILED", "{failed:?}");
    let ws = amp_ids(&clients).await;
    assert_eq!(ws.len(), 1);
    // WHEN deleted with the default retainMetrics THEN the empty workspace goes too, and says why
    let del = stack.execute(&sm, "delete-1", &delete).await;
    assert_eq!(del.status, "SUCCEEDED", "{del:?}");
    assert!(amp_ids(&clients).await.is_empty(), "an empty workspace is not retained");
    assert_eq!(del.output.unwrap()["ampWorkspace"]["deleted"], json!(ws));

    // GIVEN the same failed create WHEN deleted with "retainMetrics": true (stated) THEN kept, as asked
    deny_grafana_create(&stack);
    assert_eq!(stack.execute(&sm, "fails-2", &minimal()).await.status, "FAILED");
    allow_grafana_create(&stack);
    let kept =
        stack.execute(&sm, "delete-2", &with(minimal(), json!({"action": "delete", "retainMetrics": true}))).await;
    assert_eq!(kept.status, "SUCCEEDED", "{kept:?}");
    let ws = amp_ids(&clients).await;
    assert_eq!(ws.len(), 1, "kept as the input asks");

    // GIVEN a converged deployment (values published) whose later edit failed before publish
    // (a retry after a failure must not make it look unpublished again)
    let created = stack.execute(&sm, "create", &minimal()).await;
    assert_eq!(created.status, "SUCCEEDED", "{created:?}");
    let (status, body) = stack.router_control(
        "POST",
        "/_router/faults",
        &json!({"rate": 1.0, "kinds": ["denied"], "services": ["iam"], "operations": ["CreatePolicyVersion"]})
            .to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let edited = with(minimal(), json!({"logs": {"groupName": "/dr-prod/otel"}}));
    let edit = stack.execute(&sm, "edit-fails", &edited).await;
    stack.router_control("DELETE", "/_router/faults", "{}");
    assert_eq!(edit.status, "FAILED", "{edit:?}");
    assert_eq!(edit.failed_state.as_deref(), Some("WritePolicy"), "after the AMP step ran again: {edit:?}");
    // WHEN deleted with the default THEN the workspace, which may hold metrics, is retained
    let del = stack.execute(&sm, "delete-3", &with(edited, json!({"action": "delete"}))).await;
    assert_eq!(del.status, "SUCCEEDED", "{del:?}");
    assert_eq!(amp_ids(&clients).await, ws, "a published workspace is retained");
    let report = del.output.unwrap();
    assert_eq!(report["ampWorkspace"]["retained"], json!([format!("{}: retainMetrics", ws[0])]), "{report:#}");
}
