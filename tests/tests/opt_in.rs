//! The security boundary on roles, end to end through the state machine: a role is given trust
//! or attachments only when this deployment created it or its owners tagged it
//! `o11y-provisioner:irsa` = `true`. A role without the tag, with the tag set to anything else,
//! an administrator role, a service-linked role (even tagged) and a role named by a hostile
//! organisation-defaults parameter are refused by preflight with `PreconditionError`, naming the
//! tag and the command that adds it, with zero writes. Owners who remove the tag later stop
//! re-applies, and a delete then keeps our statement until the tag is back (nothing is lost).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use aws_sdk_iam::types::Tag;
use o11y_shared::aws::Clients;
use o11y_shared::names::{OPT_IN_TAG, OPT_IN_VALUE};
use o11y_shared::policy;
use o11y_tests::iam::trust_of;
use o11y_tests::seed::{self, Seeded};
use o11y_tests::sfn::Outcome;
use o11y_tests::stack::{start_deployed, FullStack, StackOptions};
use serde_json::{json, Value};

fn input(role: &str) -> Value {
    json!({"deploymentName": "dr-prod", "cluster": {"name": "dr-eks"}, "namespace": "dr-core", "irsaRoleName": role})
}

/// A role of the cluster (eksctl's trust for another service account), with `tags`.
async fn role(clients: &Clients, seeded: &Seeded, name: &str, tags: Vec<Tag>) -> Value {
    let host_path = o11y_shared::names::issuer_host_path(&seeded.oidc_issuer).to_string();
    let trust = seed::eksctl_trust(&seeded.oidc_provider_arn, &host_path, "dr-core", "app");
    clients
        .iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust.to_string())
        .set_tags(Some(tags))
        .send()
        .await
        .unwrap();
    trust
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build().unwrap()
}

async fn attached(clients: &Clients, role: &str) -> Vec<String> {
    let out = clients.iam.list_attached_role_policies().role_name(role).send().await.unwrap();
    out.attached_policies().iter().filter_map(|p| p.policy_name().map(str::to_string)).collect()
}

/// Refused by preflight with a `PreconditionError` whose message has every one of `words`.
fn refused(run: &Outcome, words: &[&str]) {
    assert_eq!(run.status, "FAILED", "{run:?}");
    assert_eq!(run.error.as_deref(), Some("PreconditionError"), "{run:?}");
    let cause = run.cause.clone().unwrap_or_default();
    assert!(cause.contains("preflight"), "refused by preflight: {cause}");
    for w in words {
        assert!(cause.contains(w), "{w:?} not in {cause}");
    }
}

async fn start() -> (FullStack, Clients, Seeded, String) {
    start_deployed(&StackOptions::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_outside_the_boundary_are_refused_with_zero_writes() {
    let (stack, clients, seeded, sm) = start().await;
    let command = format!("aws iam tag-role --role-name {{}} --tags Key={OPT_IN_TAG},Value={OPT_IN_VALUE}");
    // an untagged role, a role tagged "false" or "True", an untagged administrator role
    let admin = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
    let admin_arn = clients
        .iam
        .create_policy()
        .policy_name("admin-all")
        .policy_document(admin.to_string())
        .send()
        .await
        .unwrap()
        .policy()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let cases = [
        ("untagged-irsa", vec![tag("team", "app")]),
        ("false-irsa", vec![tag(OPT_IN_TAG, "false")]),
        ("capital-true-irsa", vec![tag(OPT_IN_TAG, "True")]),
        ("admin", vec![]),
    ];
    for (name, tags) in cases {
        let trust = role(&clients, &seeded, name, tags).await;
        if name == "admin" {
            clients.iam.attach_role_policy().role_name(name).policy_arn(&admin_arn).send().await.unwrap();
        }
        stack.reset_requests();
        let run = stack.execute(&sm, &format!("refused-{name}"), &input(name)).await;
        refused(&run, &["irsaRoleName", name, OPT_IN_TAG, &command.replace("{}", name)]);
        assert_eq!(stack.aws_writes(), Vec::<Value>::new(), "{name}: zero writes");
        assert!(policy::equivalent(&trust_of(&clients, name).await.unwrap(), &trust), "{name}: trust untouched");
        let on = attached(&clients, name).await;
        assert!(on.iter().all(|p| p == "admin-all"), "{name}: nothing attached: {on:?}");
    }

    // a service-linked role, even tagged: never
    let slr = clients
        .iam
        .create_service_linked_role()
        .aws_service_name("elasticbeanstalk.amazonaws.com")
        .send()
        .await
        .unwrap();
    let slr_name = slr.role().unwrap().role_name().to_string();
    clients.iam.tag_role().role_name(&slr_name).tags(seed::opt_in_tag()).send().await.unwrap();
    let before = trust_of(&clients, &slr_name).await.unwrap();
    stack.reset_requests();
    let run = stack.execute(&sm, "refused-service-linked", &input(&slr_name)).await;
    refused(&run, &["irsaRoleName", &slr_name, "service-linked"]);
    assert_eq!(stack.aws_writes(), Vec::<Value>::new());
    assert!(policy::equivalent(&trust_of(&clients, &slr_name).await.unwrap(), &before));

    // a foreign Grafana role named in grafana.roleName, not opted in: refused too
    let grafana_trust = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "grafana.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    clients
        .iam
        .create_role()
        .role_name("team-x-grafana")
        .assume_role_policy_document(grafana_trust.to_string())
        .send()
        .await
        .unwrap();
    let mut named = input(&seeded.irsa_role_name);
    named["grafana"] = json!({"roleName": "team-x-grafana"});
    stack.reset_requests();
    let run = stack.execute(&sm, "refused-grafana-role", &named).await;
    refused(&run, &["grafana.roleName", "team-x-grafana", OPT_IN_TAG]);
    assert_eq!(stack.aws_writes(), Vec::<Value>::new());

    // once its owners add the tag, the same role is accepted
    clients.iam.tag_role().role_name("untagged-irsa").tags(seed::opt_in_tag()).send().await.unwrap();
    let run = stack.execute(&sm, "opted-in", &input("untagged-irsa")).await;
    assert_eq!(run.status, "SUCCEEDED", "{run:?}");
    assert!(attached(&clients, "untagged-irsa").await.iter().any(|p| p.starts_with("dr-prod")), "attached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_removed_later_stops_re_applies_and_a_delete_keeps_our_statement_until_it_is_back() {
    let (stack, clients, seeded, sm) = start().await;
    let role_name = seeded.irsa_role_name.clone();
    let run = stack.execute(&sm, "create", &input(&role_name)).await;
    assert_eq!(run.status, "SUCCEEDED", "{run:?}");
    let converged = trust_of(&clients, &role_name).await.unwrap();

    // WHEN the owners remove the tag THEN a re-apply that would change the trust is refused
    clients.iam.untag_role().role_name(&role_name).tag_keys(OPT_IN_TAG).send().await.unwrap();
    let mut moved = input(&role_name);
    moved["namespace"] = json!("dr-other");
    stack.reset_requests();
    let run = stack.execute(&sm, "moved", &moved).await;
    refused(&run, &["irsaRoleName", OPT_IN_TAG]);
    assert_eq!(stack.aws_writes(), Vec::<Value>::new());
    assert!(policy::equivalent(&trust_of(&clients, &role_name).await.unwrap(), &converged));

    // a delete removes what it may, and stops at the role: our statement stays, named
    let mut delete = input(&role_name);
    delete["action"] = json!("delete");
    delete["retainMetrics"] = json!(false);
    let run = stack.execute(&sm, "delete-untagged", &delete).await;
    assert_eq!(run.status, "FAILED", "{run:?}");
    assert_eq!(run.error.as_deref(), Some("PreconditionError"), "{run:?}");
    assert!(run.cause.as_deref().unwrap_or_default().contains(OPT_IN_TAG), "{run:?}");
    assert!(policy::equivalent(&trust_of(&clients, &role_name).await.unwrap(), &converged), "nothing lost");

    // THEN with the tag back the delete finishes, and the role's own trust is all that is left
    clients.iam.tag_role().role_name(&role_name).tags(seed::opt_in_tag()).send().await.unwrap();
    let run = stack.execute(&sm, "delete-tagged", &delete).await;
    assert_eq!(run.status, "SUCCEEDED", "{run:?}");
    assert!(policy::equivalent(&trust_of(&clients, &role_name).await.unwrap(), &seeded.original_trust));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_vending_defaults_parameter_cannot_reach_an_admin_role_of_a_vended_account() {
    let stack = FullStack::start(&StackOptions::default());
    let hub = stack.clients().await;
    stack.deploy().await;
    // GIVEN organisation defaults rewritten to name the account's administrator role
    let defaults = json!({"cluster": {"name": "{accountName}-eks"}, "namespace": "obs", "irsaRoleName": "admin"});
    seed::vending_defaults(&hub, &defaults).await;
    let account = "345678901234";
    let target = seed::vended_account(&hub, o11y_tests::ACCOUNT_ID, account).await;
    let seeded = seed::seed(&target, "c-eks", "obs-irsa", "obs").await;
    let root = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{account}:root")}, "Action": "sts:AssumeRole"}]});
    target.iam.create_role().role_name("admin").assume_role_policy_document(root.to_string()).send().await.unwrap();

    // WHEN the account is vended THEN the execution is refused, the admin role untouched
    stack.reset_requests();
    let plain = json!({"accountId": account, "region": "us-east-1", "accountName": "c"});
    let out = o11y_tests::cfn::invoke(&stack, "vending-hook", &plain);
    assert_eq!(out["outcome"], "started", "{out}");
    let d = o11y_tests::cfn::wait_execution(&stack, out["executionName"].as_str().unwrap(), 600).await;
    assert_eq!(d.status().as_str(), "FAILED");
    assert_eq!(d.error(), Some("PreconditionError"), "{:?}", d.cause());
    assert!(d.cause().unwrap_or_default().contains(OPT_IN_TAG), "{:?}", d.cause());
    assert!(policy::equivalent(&trust_of(&target, "admin").await.unwrap(), &root), "trust untouched");
    assert!(attached(&target, "admin").await.is_empty());
    // (sts:AssumeRole into the account is no write of a resource)
    let writes: Vec<Value> = stack.aws_writes().into_iter().filter(|w| w["operation"] != "AssumeRole").collect();
    assert_eq!(writes, Vec::<Value>::new(), "zero writes");
    let _ = seeded;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_account_run_whose_target_lacks_the_cluster_or_role_names_the_target_account_before_any_write() {
    let stack = FullStack::start(&StackOptions::default());
    let hub = stack.clients().await;
    let sm = stack.deploy().await;
    // GIVEN a vended account (its vending role exists) where nothing of the cluster is set up,
    // while the hub account has the cluster, its provider and the role
    let account = "456789012345";
    let target = seed::vended_account(&hub, o11y_tests::ACCOUNT_ID, account).await;
    seed::seed(&hub, "c-eks", "obs-irsa", "obs").await;
    let input = json!({"deploymentName": "c", "cluster": {"name": "c-eks"}, "namespace": "obs",
                       "irsaRoleName": "obs-irsa", "target": {"accountId": account}});
    let no_resource_writes = |stack: &FullStack| {
        let writes: Vec<Value> = stack.aws_writes().into_iter().filter(|w| w["operation"] != "AssumeRole").collect();
        assert_eq!(writes, Vec::<Value>::new(), "zero writes");
    };

    // WHEN provisioned there THEN refused in preflight, naming the cluster and the target account
    stack.reset_requests();
    let run = stack.execute(&sm, "no-cluster", &input).await;
    assert_eq!((run.status.as_str(), run.error.as_deref()), ("FAILED", Some("PreconditionError")), "{run:?}");
    let cause = run.cause.clone().unwrap_or_default();
    assert!(cause.contains("cluster.name") && cause.contains(&format!("the target account {account}")), "{cause}");
    no_resource_writes(&stack);

    // GIVEN the cluster and its provider there, but not the IRSA role WHEN provisioned THEN the
    // role is named, in the target account
    let seeded = seed::seed(&target, "c-eks", "obs-irsa", "obs").await;
    target.iam.delete_role().role_name("obs-irsa").send().await.unwrap();
    stack.reset_requests();
    let run = stack.execute(&sm, "no-role", &input).await;
    assert_eq!(run.error.as_deref(), Some("PreconditionError"), "{run:?}");
    let cause = run.cause.clone().unwrap_or_default();
    assert!(cause.contains("irsaRoleName") && cause.contains(&format!("in account {account}")), "{cause}");
    assert!(cause.contains("target account"), "{cause}");
    no_resource_writes(&stack);
    let _ = seeded;
}
