//! Ownership under edits, on the local stack through the real state machine (the first tests of
//! the ownership issue): a resource is ours only when the record names that very resource (ids
//! compared) or its tags say so. Renaming `grafana.roleName` onto someone else's role adopts it:
//! its trust keeps every statement it had, and a later delete leaves it in place. Two deployments
//! on one IRSA role and namespace each hold their own trust statement: deleting one never takes
//! away what the other relies on. A policy named by the input that is someone else's (it allows
//! more than ours) is refused, its document untouched. A changed `irsaRoleName` moves our grant and
//! the write policy to the new role, and the old role is left as it was before us. Renamed policies
//! replace ours, and the old ones are deleted; so is a renamed Grafana role of ours, once the
//! workspace uses the new one. A move to another IRSA role that crashed half-way and was then
//! moved back still knows the first role's statement as ours.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use aws_sdk_iam::types::Tag;
use o11y_shared::aws::Clients;
use o11y_shared::policy;
use o11y_tests::iam::{statements, trust_of};
use o11y_tests::seed;
use o11y_tests::stack::{start_deployed, FullStack, StackOptions};
use serde_json::{json, Value};

/// A fresh local stack with the sample cluster, its OIDC provider and IRSA role, and the state
/// machine.
async fn start() -> (FullStack, Clients, seed::Seeded, String) {
    start_deployed(&StackOptions::creating_one_second()).await
}

fn minimal() -> Value {
    json!({"deploymentName": "dr-prod", "cluster": {"name": "dr-eks"}, "namespace": "dr-core", "irsaRoleName": "dr-core-irsa"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_grafana_role_onto_a_foreign_role_adopts_it_and_delete_keeps_it() {
    let (stack, clients, _, sm) = start().await;

    // GIVEN a converged deployment, and a role of another team that Grafana may assume and that
    // also trusts that team's account
    let created = stack.execute(&sm, "create", &minimal()).await;
    assert_eq!(created.status, "SUCCEEDED", "{created:?}");
    let foreign_trust = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "TeamX", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
         "Action": "sts:AssumeRole"},
        {"Effect": "Allow", "Principal": {"Service": "grafana.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]});
    clients
        .iam
        .create_role()
        .role_name("team-x-grafana")
        .assume_role_policy_document(foreign_trust.to_string())
        .tags(Tag::builder().key("team").value("x").build().unwrap())
        .tags(o11y_tests::seed::opt_in_tag())
        .send()
        .await
        .unwrap();

    // WHEN the input names that role
    let mut edited = minimal();
    edited["grafana"] = json!({"roleName": "team-x-grafana"});
    let applied = stack.execute(&sm, "rename-role", &edited).await;
    assert_eq!(applied.status, "SUCCEEDED", "{applied:?}");

    // THEN it is reported as adopted and its trust keeps every statement it had
    let out = applied.output.unwrap();
    assert!(out["adopted"].as_array().unwrap().contains(&json!("grafanaRole")), "{out:#}");
    let trust = trust_of(&clients, "team-x-grafana").await.expect("the role exists");
    for before in statements(&foreign_trust) {
        assert!(
            statements(&trust)
                .iter()
                .any(|s| policy::equivalent(&json!({"Statement": [s]}), &json!({"Statement": [before.clone()]}))),
            "lost {before} from {trust:#}"
        );
    }

    // WHEN the deployment is deleted THEN the foreign role is still there, with its own trust
    let mut delete = edited.clone();
    delete["action"] = json!("delete");
    let deleted = stack.execute(&sm, "delete", &delete).await;
    assert_eq!(deleted.status, "SUCCEEDED", "{deleted:?}");
    let after = trust_of(&clients, "team-x-grafana").await.expect("a foreign role is never deleted");
    assert!(statements(&after).iter().any(|s| s["Sid"] == "TeamX"), "{after:#}");
    let report = deleted.output.unwrap();
    let retained = report["grafanaRole"]["retained"].as_array().cloned().unwrap_or_default();
    assert!(retained.iter().any(|r| r.as_str().unwrap_or_default().contains("team-x-grafana")), "{report:#}");
}

fn collector_admitted(trust: &Value, provider_arn: &str) -> bool {
    o11y_shared::trust::admits(trust, &o11y_shared::steps::verify::collector_request(provider_arn, "dr-core"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deployments_on_one_role_and_namespace_each_hold_their_own_grant() {
    let (stack, clients, seeded, sm) = start().await;
    let first = minimal();
    let mut second = minimal();
    second["deploymentName"] = json!("dr-prod-2");

    // GIVEN two deployments on the same IRSA role and namespace
    let a = stack.execute(&sm, "first", &first).await;
    assert_eq!(a.status, "SUCCEEDED", "{a:?}");
    let b = stack.execute(&sm, "second", &second).await;
    assert_eq!(b.status, "SUCCEEDED", "{b:?}");
    // THEN each added a statement of its own
    let trust = trust_of(&clients, "dr-core-irsa").await.unwrap();
    let sids: Vec<String> = statements(&trust).iter().filter_map(|s| s["Sid"].as_str().map(str::to_string)).collect();
    for name in ["dr-prod", "dr-prod-2"] {
        assert!(sids.contains(&o11y_shared::names::trust_statement_sid(name, o11y_tests::REGION)), "{name}: {trust:#}");
    }

    // WHEN the first is deleted THEN the second's service accounts are still trusted, and its
    // re-run has nothing to change in the trust policy
    let mut delete = first.clone();
    delete["action"] = json!("delete");
    let deleted = stack.execute(&sm, "delete-first", &delete).await;
    assert_eq!(deleted.status, "SUCCEEDED", "{deleted:?}");
    let trust = trust_of(&clients, "dr-core-irsa").await.unwrap();
    assert!(collector_admitted(&trust, &seeded.oidc_provider_arn), "{trust:#}");
    let mut plan = second.clone();
    plan["action"] = json!("plan");
    let planned = stack.execute(&sm, "plan-second", &plan).await;
    assert_eq!(planned.status, "SUCCEEDED", "{planned:?}");
    let report = planned.output.unwrap();
    let irsa = report["steps"].as_array().unwrap().iter().find(|s| s["step"] == "irsa-trust").cloned().unwrap();
    assert_eq!(irsa["action"], "none", "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_policy_name_that_is_someone_elses_policy_is_refused_and_left_as_it_was() {
    let (stack, clients, _, sm) = start().await;

    // GIVEN a policy of another team, named like ours, that has nothing to do with observability
    let foreign = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::team-x-data/*"}
    ]});
    let created = clients
        .iam
        .create_policy()
        .policy_name("team-x-observability-write")
        .policy_document(foreign.to_string())
        .send()
        .await
        .unwrap();
    let arn = created.policy().unwrap().arn().unwrap().to_string();

    // WHEN the input names it as the write policy
    let mut input = minimal();
    input["writePolicyName"] = json!("team-x-observability-write");
    let run = stack.execute(&sm, "foreign-policy", &input).await;

    // THEN the run fails with a ConflictError naming the field and the policy
    assert_eq!(run.status, "FAILED", "{run:?}");
    let text = format!("{:?} {:?}", run.error, run.cause);
    assert!(text.contains("ConflictError"), "{text}");
    assert!(text.contains("writePolicyName") && text.contains("team-x-observability-write"), "{text}");
    // AND the policy keeps its one version, its document and its attachments
    let versions = clients.iam.list_policy_versions().policy_arn(&arn).send().await.unwrap();
    assert_eq!(versions.versions().len(), 1, "{versions:?}");
    let v = clients.iam.get_policy_version().policy_arn(&arn).version_id("v1").send().await.unwrap();
    let doc = policy::decode_document(v.policy_version().unwrap().document().unwrap()).unwrap();
    assert!(policy::equivalent(&doc, &foreign), "{doc:#}");
    let attached = clients.iam.list_entities_for_policy().policy_arn(&arn).send().await.unwrap();
    assert!(attached.policy_roles().is_empty(), "{attached:?}");
}

async fn attached(clients: &Clients, role: &str) -> Vec<String> {
    let out = clients.iam.list_attached_role_policies().role_name(role).send().await.unwrap();
    out.attached_policies().iter().filter_map(|p| p.policy_name().map(str::to_string)).collect()
}

/// Creates `dr-core-irsa-2`, a second opted-in IRSA role of the sample cluster (eksctl's trust for
/// another service account), and returns its trust policy.
async fn second_irsa_role(clients: &Clients, seeded: &seed::Seeded) -> Value {
    let host_path = o11y_shared::names::issuer_host_path(&seeded.oidc_issuer).to_string();
    let trust = seed::eksctl_trust(&seeded.oidc_provider_arn, &host_path, "dr-core", "app");
    clients
        .iam
        .create_role()
        .role_name("dr-core-irsa-2")
        .assume_role_policy_document(trust.to_string())
        .tags(o11y_tests::seed::opt_in_tag())
        .send()
        .await
        .unwrap();
    trust
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_irsa_role_moves_the_grant_and_the_policy_and_the_old_role_is_as_it_was() {
    let (stack, clients, seeded, sm) = start().await;
    // GIVEN a converged deployment, and a second IRSA role of the same cluster
    let created = stack.execute(&sm, "create", &minimal()).await;
    assert_eq!(created.status, "SUCCEEDED", "{created:?}");
    let second_trust = second_irsa_role(&clients, &seeded).await;

    // WHEN the input names the second role
    let mut moved = minimal();
    moved["irsaRoleName"] = json!("dr-core-irsa-2");
    let applied = stack.execute(&sm, "move", &moved).await;
    assert_eq!(applied.status, "SUCCEEDED", "{applied:?}");

    // THEN the new role trusts the collector and has the write policy; the old role's trust is
    // its original and the write policy is no longer attached to it
    let new_trust = trust_of(&clients, "dr-core-irsa-2").await.unwrap();
    assert!(collector_admitted(&new_trust, &seeded.oidc_provider_arn), "{new_trust:#}");
    assert_eq!(attached(&clients, "dr-core-irsa-2").await, vec!["dr-prod-us-east-1-observability-write".to_string()]);
    let old_trust = trust_of(&clients, "dr-core-irsa").await.unwrap();
    assert!(policy::equivalent(&old_trust, &seeded.original_trust), "{old_trust:#}");
    assert!(attached(&clients, "dr-core-irsa").await.is_empty());
    // AND the verification compares the new role with its own trust before us
    let out = applied.output.unwrap();
    assert_eq!(out["verification"]["status"], "passed", "{out:#}");

    // WHEN deleted THEN both roles are as they were
    moved["action"] = json!("delete");
    let deleted = stack.execute(&sm, "delete", &moved).await;
    assert_eq!(deleted.status, "SUCCEEDED", "{deleted:?}");
    assert!(policy::equivalent(&trust_of(&clients, "dr-core-irsa-2").await.unwrap(), &second_trust));
    assert!(policy::equivalent(&trust_of(&clients, "dr-core-irsa").await.unwrap(), &seeded.original_trust));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_to_another_irsa_role_that_crashed_half_way_then_moved_back_leaves_both_roles_as_they_were() {
    let (stack, clients, seeded, sm) = start().await;
    // GIVEN a converged deployment, and a second IRSA role of the same cluster
    let created = stack.execute(&sm, "create", &minimal()).await;
    assert_eq!(created.status, "SUCCEEDED", "{created:?}");
    let second_trust = second_irsa_role(&clients, &seeded).await;

    // WHEN a move to the second role crashes right after its trust is written (the old role's
    // statement not yet removed)
    let (status, body) = stack.router_control(
        "POST",
        "/_router/faults",
        &json!({"rate": 1.0, "kinds": ["denied"], "services": ["iam"],
                "operations": ["UpdateAssumeRolePolicy"], "skip": 1, "max": 1})
        .to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let mut moved = minimal();
    moved["irsaRoleName"] = json!("dr-core-irsa-2");
    let crashed = stack.execute(&sm, "move", &moved).await;
    stack.router_control("DELETE", "/_router/faults", "{}");
    assert_eq!(crashed.status, "FAILED", "{crashed:?}");
    let half = trust_of(&clients, "dr-core-irsa-2").await.unwrap();
    assert!(collector_admitted(&half, &seeded.oidc_provider_arn), "the crash came after the new trust: {half:#}");
    let old = trust_of(&clients, "dr-core-irsa").await.unwrap();
    assert!(collector_admitted(&old, &seeded.oidc_provider_arn), "and before the old one was retired: {old:#}");

    // AND the input goes back to the first role
    let back = stack.execute(&sm, "back", &minimal()).await;
    assert_eq!(back.status, "SUCCEEDED", "{back:?}");

    // THEN the first role trusts the collector and has the write policy; the second is as it was
    let first = trust_of(&clients, "dr-core-irsa").await.unwrap();
    assert!(collector_admitted(&first, &seeded.oidc_provider_arn), "{first:#}");
    assert_eq!(attached(&clients, "dr-core-irsa").await, vec!["dr-prod-us-east-1-observability-write".to_string()]);
    assert!(policy::equivalent(&trust_of(&clients, "dr-core-irsa-2").await.unwrap(), &second_trust));
    assert!(attached(&clients, "dr-core-irsa-2").await.is_empty());

    // WHEN deleted THEN both roles are exactly as before us: the first role's statement was
    // still known as ours
    let mut delete = minimal();
    delete["action"] = json!("delete");
    let deleted = stack.execute(&sm, "delete", &delete).await;
    assert_eq!(deleted.status, "SUCCEEDED", "{deleted:?}");
    let first = trust_of(&clients, "dr-core-irsa").await.unwrap();
    assert!(policy::equivalent(&first, &seeded.original_trust), "{first:#}");
    assert!(policy::equivalent(&trust_of(&clients, "dr-core-irsa-2").await.unwrap(), &second_trust));
    assert!(attached(&clients, "dr-core-irsa").await.is_empty());
    assert!(attached(&clients, "dr-core-irsa-2").await.is_empty());
}

async fn policy_exists(clients: &Clients, name: &str) -> bool {
    let arn = format!("arn:aws:iam::{}:policy/{name}", o11y_tests::ACCOUNT_ID);
    clients.iam.get_policy().policy_arn(arn).send().await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renamed_policies_replace_ours_and_the_old_ones_are_deleted() {
    let (stack, clients, _, sm) = start().await;
    // GIVEN a converged deployment with the default policy names
    let created = stack.execute(&sm, "create", &minimal()).await;
    assert_eq!(created.status, "SUCCEEDED", "{created:?}");
    assert!(policy_exists(&clients, "dr-prod-us-east-1-observability-write").await);
    assert!(policy_exists(&clients, "dr-prod-us-east-1-grafana-amp-read").await);

    // WHEN both policies are renamed
    let mut renamed = minimal();
    renamed["writePolicyName"] = json!("dr-prod-2-observability-write");
    renamed["grafana"] = json!({"readPolicyName": "dr-prod-2-grafana-amp-read"});
    let mut plan = renamed.clone();
    plan["action"] = json!("plan");
    let planned = stack.execute(&sm, "plan-rename", &plan).await;
    assert_eq!(planned.status, "SUCCEEDED", "{planned:?}");
    let report = planned.output.unwrap().to_string();
    assert!(
        report.contains("policy dr-prod-us-east-1-observability-write"),
        "the plan names the old policy's removal: {report}"
    );
    let applied = stack.execute(&sm, "rename", &renamed).await;
    assert_eq!(applied.status, "SUCCEEDED", "{applied:?}");

    // THEN the new ones are attached and the old ones, ours, are gone
    assert_eq!(attached(&clients, "dr-core-irsa").await, vec!["dr-prod-2-observability-write".to_string()]);
    assert_eq!(attached(&clients, "dr-prod-us-east-1-grafana").await, vec!["dr-prod-2-grafana-amp-read".to_string()]);
    assert!(!policy_exists(&clients, "dr-prod-us-east-1-observability-write").await);
    assert!(!policy_exists(&clients, "dr-prod-us-east-1-grafana-amp-read").await);

    // WHEN deleted THEN the renamed ones go too
    renamed["action"] = json!("delete");
    let deleted = stack.execute(&sm, "delete", &renamed).await;
    assert_eq!(deleted.status, "SUCCEEDED", "{deleted:?}");
    assert!(!policy_exists(&clients, "dr-prod-2-observability-write").await);
    assert!(!policy_exists(&clients, "dr-prod-2-grafana-amp-read").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_grafana_role_of_ours_is_deleted_once_the_workspace_uses_the_new_one() {
    let (stack, clients, _, sm) = start().await;
    // GIVEN a converged deployment with the default Grafana role
    let created = stack.execute(&sm, "create", &minimal()).await;
    assert_eq!(created.status, "SUCCEEDED", "{created:?}");
    let ws_id = created.output.unwrap()["grafanaWorkspaceId"].as_str().unwrap().to_string();

    // WHEN the role is renamed: the plan names the old role's removal, then apply
    let mut renamed = minimal();
    renamed["grafana"] = json!({"roleName": "dr-prod-2-grafana"});
    let mut plan = renamed.clone();
    plan["action"] = json!("plan");
    let planned = stack.execute(&sm, "plan-rename", &plan).await;
    assert_eq!(planned.status, "SUCCEEDED", "{planned:?}");
    let report = planned.output.unwrap().to_string();
    assert!(report.contains("\"role dr-prod-us-east-1-grafana\""), "{report}");
    let applied = stack.execute(&sm, "rename", &renamed).await;
    assert_eq!(applied.status, "SUCCEEDED", "{applied:?}");

    // THEN the workspace uses the new role, which has the read policy, and the old one is gone
    let ws = clients.grafana.describe_workspace().workspace_id(&ws_id).send().await.unwrap();
    let role_arn = ws.workspace().unwrap().workspace_role_arn().unwrap().to_string();
    assert!(role_arn.ends_with(":role/dr-prod-2-grafana"), "{role_arn}");
    assert_eq!(attached(&clients, "dr-prod-2-grafana").await, vec!["dr-prod-us-east-1-grafana-amp-read".to_string()]);
    assert!(trust_of(&clients, "dr-prod-us-east-1-grafana").await.is_none(), "the old role, ours, is deleted");

    // WHEN run again THEN nothing is left to retire: the plan reports no change
    let again = stack.execute(&sm, "plan-again", &plan).await;
    assert_eq!(again.status, "SUCCEEDED", "{again:?}");
    assert_eq!(again.output.unwrap()["changes"], 0);
}
