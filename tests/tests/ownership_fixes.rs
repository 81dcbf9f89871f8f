//! Two ownership bugs the edit corpus found (`chaos/edits.py`), on the local stack through the
//! real state machine:
//! - a refused run (a policy name that is someone else's policy) never retires our live policies,
//!   and a retired entry that names the policy the input names again is current, never deleted;
//! - an adopted foreign Grafana role is left exactly as it was once the input moves off it or the
//!   deployment is deleted: the trust statement we added is removed (only while still as we wrote
//!   it; changed since, it is left and reported), our read policy is detached, the role is kept.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use aws_sdk_iam::types::Tag;
use o11y_shared::aws::Clients;
use o11y_shared::policy;
use o11y_tests::seed;
use o11y_tests::stack::{FullStack, StackOptions};
use serde_json::{json, Value};

const RECORD: &str = "/o11y/dr-prod/provisioner-state";
const WRITE: &str = "dr-prod-us-east-1-observability-write";
const READ: &str = "dr-prod-us-east-1-grafana-amp-read";
const OUR_ROLE: &str = "dr-prod-us-east-1-grafana";

async fn start() -> (FullStack, Clients, String) {
    let stack = FullStack::start(&StackOptions { grafana_active_delay: 1.0, ..StackOptions::default() });
    let clients = stack.clients().await;
    seed::seed(&clients, "dr-eks", "dr-core-irsa", "dr-core").await;
    let sm = stack.deploy().await;
    (stack, clients, sm)
}

fn minimal() -> Value {
    json!({"deploymentName": "dr-prod", "cluster": {"name": "dr-eks"}, "namespace": "dr-core", "irsaRoleName": "dr-core-irsa"})
}

fn with_action(input: &Value, action: &str) -> Value {
    let mut out = input.clone();
    out["action"] = json!(action);
    out
}

async fn attached(clients: &Clients, role: &str) -> Vec<String> {
    let out = clients.iam.list_attached_role_policies().role_name(role).send().await.unwrap();
    out.attached_policies().iter().filter_map(|p| p.policy_name().map(str::to_string)).collect()
}

async fn policy_exists(clients: &Clients, name: &str) -> bool {
    let arn = format!("arn:aws:iam::{}:policy/{name}", o11y_tests::ACCOUNT_ID);
    clients.iam.get_policy().policy_arn(arn).send().await.is_ok()
}

async fn trust_of(clients: &Clients, role: &str) -> Option<Value> {
    let r = clients.iam.get_role().role_name(role).send().await.ok()?;
    Some(policy::decode_document(r.role()?.assume_role_policy_document()?).unwrap())
}

fn statements(doc: &Value) -> Vec<Value> {
    match &doc["Statement"] {
        Value::Array(a) => a.clone(),
        s @ Value::Object(_) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Whether `a` and `b` hold the same statements, in the same order (each compared normalised).
fn same_statements(a: &[Value], b: &[Value]) -> bool {
    let single = |s: &Value| json!({"Version": "2012-10-17", "Statement": [s]});
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| policy::equivalent(&single(x), &single(y)))
}

async fn record(clients: &Clients) -> Value {
    let p = clients.ssm.get_parameter().name(RECORD).send().await.unwrap();
    serde_json::from_str(p.parameter().unwrap().value().unwrap()).unwrap()
}

async fn put_record(clients: &Clients, rec: &Value) {
    clients.ssm.put_parameter().name(RECORD).value(rec.to_string()).overwrite(true).send().await.unwrap();
}

async fn foreign_policy(clients: &Clients, name: &str) -> (String, Value) {
    let doc = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::team-x-data/*"}
    ]});
    let created = clients.iam.create_policy().policy_name(name).policy_document(doc.to_string()).send().await.unwrap();
    (created.policy().unwrap().arn().unwrap().to_string(), doc)
}

async fn assert_foreign_policy_untouched(clients: &Clients, arn: &str, doc: &Value) {
    let versions = clients.iam.list_policy_versions().policy_arn(arn).send().await.unwrap();
    assert_eq!(versions.versions().len(), 1, "{versions:?}");
    let v = clients.iam.get_policy_version().policy_arn(arn).version_id("v1").send().await.unwrap();
    let live = policy::decode_document(v.policy_version().unwrap().document().unwrap()).unwrap();
    assert!(policy::equivalent(&live, doc), "{live:#}");
    let entities = clients.iam.list_entities_for_policy().policy_arn(arn).send().await.unwrap();
    assert!(entities.policy_roles().is_empty(), "{entities:?}");
}

/// Our two policies exist and are attached where the base input puts them.
async fn assert_our_policies_in_place(clients: &Clients) {
    assert!(policy_exists(clients, WRITE).await, "our write policy exists");
    assert!(policy_exists(clients, READ).await, "our read policy exists");
    assert_eq!(attached(clients, "dr-core-irsa").await, vec![WRITE.to_string()]);
    assert_eq!(attached(clients, OUR_ROLE).await, vec![READ.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_runs_naming_foreign_policies_never_delete_ours() {
    let (stack, clients, sm) = start().await;
    // GIVEN a converged deployment, and two policies of another team
    let created = stack.execute(&sm, "create", &minimal()).await;
    assert_eq!(created.status, "SUCCEEDED", "{created:?}");
    let (write_arn, write_doc) = foreign_policy(&clients, "team-x-observability-write").await;
    let (read_arn, read_doc) = foreign_policy(&clients, "team-x-grafana-amp-read").await;

    // WHEN writePolicyName names one: refused
    let mut first = minimal();
    first["writePolicyName"] = json!("team-x-observability-write");
    let run = stack.execute(&sm, "foreign-write", &first).await;
    assert_eq!(run.status, "FAILED", "{run:?}");
    assert!(format!("{:?}", run.error).contains("ConflictError"), "{run:?}");
    // AND THEN grafana.readPolicyName names the other, writePolicyName back to ours: refused
    let mut second = minimal();
    second["grafana"] = json!({"readPolicyName": "team-x-grafana-amp-read"});
    let run = stack.execute(&sm, "foreign-read", &second).await;
    assert_eq!(run.status, "FAILED", "{run:?}");
    assert!(format!("{:?}", run.error).contains("ConflictError"), "{run:?}");

    // THEN nothing of ours was removed, nothing of theirs touched, and the record retires nothing
    assert_our_policies_in_place(&clients).await;
    assert_foreign_policy_untouched(&clients, &write_arn, &write_doc).await;
    assert_foreign_policy_untouched(&clients, &read_arn, &read_doc).await;
    assert!(record(&clients).await.get("retired").is_none(), "{:#}", record(&clients).await);

    // WHEN the base input runs again THEN it converges and verifies, with our policies in place
    let base = stack.execute(&sm, "base", &minimal()).await;
    assert_eq!(base.status, "SUCCEEDED", "{base:?}");
    assert_eq!(base.output.unwrap()["verification"]["status"], "passed");
    assert_our_policies_in_place(&clients).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_entry_naming_the_current_policy_is_dropped_never_deleted() {
    let (stack, clients, sm) = start().await;
    // GIVEN a converged deployment whose record (as a refused run of an earlier version left it)
    // lists both live policies as retired, and records neither as current
    let created = stack.execute(&sm, "create", &minimal()).await;
    assert_eq!(created.status, "SUCCEEDED", "{created:?}");
    let mut rec = record(&clients).await;
    let mut retired = Vec::new();
    for key in ["writePolicy", "readPolicy"] {
        let mut entry = rec["resources"].as_object_mut().unwrap().remove(key).expect(key);
        entry["key"] = json!(key);
        retired.push(entry);
    }
    rec["retired"] = Value::Array(retired);
    put_record(&clients, &rec).await;

    // WHEN planned THEN the plan deletes nothing
    let planned = stack.execute(&sm, "plan", &with_action(&minimal(), "plan")).await;
    assert_eq!(planned.status, "SUCCEEDED", "{planned:?}");
    let report = planned.output.unwrap();
    let deletes: Vec<Value> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["changes"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["action"] == "delete")
        .collect();
    assert!(deletes.is_empty(), "{report:#}");

    // WHEN the base input is applied THEN both policies stay, attached, and verification passes
    let applied = stack.execute(&sm, "apply", &minimal()).await;
    assert_eq!(applied.status, "SUCCEEDED", "{applied:?}");
    assert_eq!(applied.output.unwrap()["verification"]["status"], "passed");
    assert_our_policies_in_place(&clients).await;
    // AND the record holds them as current again, owned, and retires nothing
    let rec = record(&clients).await;
    assert!(rec.get("retired").is_none(), "{rec:#}");
    for key in ["writePolicy", "readPolicy"] {
        assert_eq!(rec["resources"][key]["owned"], true, "{rec:#}");
    }

    // WHEN deleted THEN they go (ours), as usual
    let deleted = stack.execute(&sm, "delete", &with_action(&minimal(), "delete")).await;
    assert_eq!(deleted.status, "SUCCEEDED", "{deleted:?}");
    assert!(!policy_exists(&clients, WRITE).await && !policy_exists(&clients, READ).await);
}

fn team_trust() -> Value {
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "TeamX", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
         "Action": "sts:AssumeRole"},
        {"Effect": "Allow", "Principal": {"Service": "grafana.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]})
}

async fn team_role(clients: &Clients, name: &str) {
    clients
        .iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(team_trust().to_string())
        .tags(Tag::builder().key("team").value("x").build().unwrap())
        .tags(o11y_tests::seed::opt_in_tag())
        .send()
        .await
        .unwrap();
}

fn on_role(role: &str) -> Value {
    let mut input = minimal();
    input["grafana"] = json!({"roleName": role});
    input
}

/// The role exists, its trust holds exactly the team's statements, and nothing is attached.
async fn assert_as_before_us(clients: &Clients, role: &str) {
    let trust = trust_of(clients, role).await.expect("an adopted role is never deleted");
    assert!(same_statements(&statements(&trust), &statements(&team_trust())), "{trust:#}");
    assert!(attached(clients, role).await.is_empty(), "{:?}", attached(clients, role).await);
}

/// The role is adopted: its trust holds the team's statements and ours, our read policy attached.
async fn assert_adopted(clients: &Clients, role: &str) {
    let trust = trust_of(clients, role).await.unwrap();
    let ours = policy::grafana_trust_policy("aws", o11y_tests::REGION, o11y_tests::ACCOUNT_ID);
    let mut expected = statements(&team_trust());
    expected.extend(statements(&ours));
    assert!(same_statements(&statements(&trust), &expected), "{trust:#}");
    assert_eq!(attached(clients, role).await, vec![READ.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_grafana_role_is_left_as_it_was_when_the_input_moves_off_it_and_on_delete() {
    let (stack, clients, sm) = start().await;
    // GIVEN a converged deployment and another team's Grafana role
    let created = stack.execute(&sm, "create", &minimal()).await;
    assert_eq!(created.status, "SUCCEEDED", "{created:?}");
    team_role(&clients, "team-x-grafana").await;

    // WHEN the input names that role THEN it is adopted: ours added, theirs kept
    let adopted = stack.execute(&sm, "adopt", &on_role("team-x-grafana")).await;
    assert_eq!(adopted.status, "SUCCEEDED", "{adopted:?}");
    assert_adopted(&clients, "team-x-grafana").await;
    // AND a re-run changes nothing
    let again = stack.execute(&sm, "plan-again", &with_action(&on_role("team-x-grafana"), "plan")).await;
    assert_eq!(again.status, "SUCCEEDED", "{again:?}");
    assert_eq!(again.output.unwrap()["changes"], 0);

    // WHEN the input moves back to our own role THEN the team's role is exactly as before us
    let back = stack.execute(&sm, "back", &minimal()).await;
    assert_eq!(back.status, "SUCCEEDED", "{back:?}");
    assert_eq!(back.output.unwrap()["verification"]["status"], "passed");
    assert_as_before_us(&clients, "team-x-grafana").await;
    assert_eq!(attached(&clients, OUR_ROLE).await, vec![READ.to_string()]);

    // WHEN it is adopted again and the deployment deleted THEN it is exactly as before us, kept
    let adopted = stack.execute(&sm, "adopt-again", &on_role("team-x-grafana")).await;
    assert_eq!(adopted.status, "SUCCEEDED", "{adopted:?}");
    assert_adopted(&clients, "team-x-grafana").await;
    let deleted = stack.execute(&sm, "delete", &with_action(&on_role("team-x-grafana"), "delete")).await;
    assert_eq!(deleted.status, "SUCCEEDED", "{deleted:?}");
    assert_as_before_us(&clients, "team-x-grafana").await;
    let report = deleted.output.unwrap();
    let gone = report["grafanaRole"]["deleted"].to_string();
    assert!(gone.contains("trust statement we added to role team-x-grafana"), "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_someone_changed_on_an_adopted_role_is_left_and_reported() {
    let (stack, clients, sm) = start().await;
    // GIVEN a deployment that adopted another team's Grafana role
    team_role(&clients, "team-y-grafana").await;
    let adopted = stack.execute(&sm, "adopt", &on_role("team-y-grafana")).await;
    assert_eq!(adopted.status, "SUCCEEDED", "{adopted:?}");
    assert_adopted(&clients, "team-y-grafana").await;
    // AND someone then narrowed the statement we added
    let mut trust = trust_of(&clients, "team-y-grafana").await.unwrap();
    let narrowed = format!("arn:aws:grafana:{}:{}:/workspaces/g-only", o11y_tests::REGION, o11y_tests::ACCOUNT_ID);
    trust["Statement"][2]["Condition"]["StringLike"]["aws:SourceArn"] = json!(narrowed);
    clients
        .iam
        .update_assume_role_policy()
        .role_name("team-y-grafana")
        .policy_document(trust.to_string())
        .send()
        .await
        .unwrap();

    // WHEN the deployment is deleted
    let deleted = stack.execute(&sm, "delete", &with_action(&on_role("team-y-grafana"), "delete")).await;
    assert_eq!(deleted.status, "SUCCEEDED", "{deleted:?}");

    // THEN the changed statement is left as it is, and reported; the role is kept, detached
    let after = trust_of(&clients, "team-y-grafana").await.expect("kept");
    assert!(same_statements(&statements(&after), &statements(&trust)), "{after:#}");
    assert!(attached(&clients, "team-y-grafana").await.is_empty());
    let report = deleted.output.unwrap();
    let retained = report["grafanaRole"]["retained"].to_string();
    assert!(retained.contains("team-y-grafana") && retained.contains("no longer there as we wrote it"), "{report:#}");
}
