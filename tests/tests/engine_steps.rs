//! Each step against the local stack (moto + Grafana emulator): fresh create, a second run that
//! changes nothing, adoption of pre-existing state, and input that fails before any AWS call.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use std::time::Duration;

use o11y_shared::engine::{self, WaitPolicy};
use o11y_shared::state::ProvisionState;
use o11y_shared::{policy, Error};
use o11y_tests::seed::{self, Seeded};
use o11y_tests::stack::{FullStack, StackOptions};
use o11y_tests::ACCOUNT_ID;
use serde_json::{json, Value};

const NS: &str = "dr-core";

fn fast_wait() -> WaitPolicy {
    WaitPolicy {
        first_interval: Duration::from_millis(100),
        max_interval: Duration::from_millis(500),
        max_total: Duration::from_secs(20),
    }
}

fn minimal_input(s: &Seeded) -> Value {
    json!({"deploymentName": "dr-prod", "cluster": {"name": s.cluster_name}, "namespace": NS, "irsaRoleName": s.irsa_role_name})
}

async fn setup(stack: &FullStack) -> (o11y_shared::aws::Clients, Seeded) {
    let clients = stack.clients().await;
    let seeded = seed::seed(&clients, "dr-eks", "dr-core-irsa", NS).await;
    (clients, seeded)
}

async fn trust_of(clients: &o11y_shared::aws::Clients, role: &str) -> Value {
    let r = clients.iam.get_role().role_name(role).send().await.unwrap();
    policy::decode_document(r.role().unwrap().assume_role_policy_document().unwrap()).unwrap()
}

async fn attached(clients: &o11y_shared::aws::Clients, role: &str) -> Vec<String> {
    let out = clients.iam.list_attached_role_policies().role_name(role).send().await.unwrap();
    out.attached_policies().iter().filter_map(|p| p.policy_arn().map(str::to_string)).collect()
}

async fn version_count(clients: &o11y_shared::aws::Clients, arn: &str) -> usize {
    clients.iam.list_policy_versions().policy_arn(arn).send().await.unwrap().versions().len()
}

async fn default_document(clients: &o11y_shared::aws::Clients, arn: &str) -> Value {
    let p = clients.iam.get_policy().policy_arn(arn).send().await.unwrap();
    let v = p.policy().unwrap().default_version_id().unwrap().to_string();
    let doc = clients.iam.get_policy_version().policy_arn(arn).version_id(v).send().await.unwrap();
    policy::decode_document(doc.policy_version().unwrap().document().unwrap()).unwrap()
}

async fn ssm_values(clients: &o11y_shared::aws::Clients, prefix: &str) -> Vec<(String, String, i64)> {
    let mut v = Vec::new();
    let mut pages = clients.ssm.get_parameters_by_path().path(prefix).recursive(true).into_paginator().send();
    while let Some(page) = pages.next().await {
        for p in page.unwrap().parameters() {
            v.push((p.name().unwrap().to_string(), p.value().unwrap().to_string(), p.version()));
        }
    }
    v.sort();
    v
}

async fn amp_count(clients: &o11y_shared::aws::Clients) -> usize {
    clients.amp.list_workspaces().send().await.unwrap().workspaces().len()
}

async fn grafana_count(clients: &o11y_shared::aws::Clients) -> usize {
    clients.grafana.list_workspaces().send().await.unwrap().workspaces().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_create_builds_everything_and_a_second_run_changes_nothing() {
    // GIVEN a cluster with its OIDC provider and an eksctl-style IRSA role, nothing else
    let stack = FullStack::start(&StackOptions::default());
    let (clients, seeded) = setup(&stack).await;

    // WHEN the workflow runs
    let first = engine::provision(&clients, minimal_input(&seeded), &fast_wait()).await.expect("first run");
    let out = first.output.clone().expect("output contract");

    // THEN every resource exists as specified and the output points at it
    assert_eq!(out.account_id, ACCOUNT_ID);
    assert_eq!(out.irsa_role_arn, seeded.irsa_role_arn);
    assert!(out.adopted.is_empty(), "nothing pre-existed: {:?}", out.adopted);

    let ws = clients.amp.describe_workspace().workspace_id(&out.amp_workspace_id).send().await.unwrap();
    let ws = ws.workspace().unwrap();
    assert_eq!(ws.alias(), Some("dr-prod"));
    assert_eq!(ws.arn(), out.amp_workspace_arn);
    assert_eq!(ws.tags().unwrap().get("o11y-provisioner:deployment").map(String::as_str), Some("dr-prod"));
    assert_eq!(
        out.remote_write_url,
        format!("{}/api/v1/remote_write", ws.prometheus_endpoint().unwrap().trim_end_matches('/'))
    );

    // the trust policy keeps the original service account and adds ours
    let trust = trust_of(&clients, &seeded.irsa_role_name).await;
    let statements = trust["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 2);
    assert_eq!(statements[0], seeded.original_trust["Statement"][0]);
    let issuer = seeded.oidc_issuer.trim_start_matches("https://");
    assert_eq!(statements[1]["Principal"]["Federated"], seeded.oidc_provider_arn);
    assert_eq!(
        statements[1]["Condition"]["StringLike"][format!("{issuer}:sub")],
        format!("system:serviceaccount:{NS}:observability-*")
    );
    assert_eq!(statements[1]["Condition"]["StringEquals"][format!("{issuer}:aud")], "sts.amazonaws.com");

    // write policy: runbook statements, scoped to the workspace and the log group, attached once
    let wp = default_document(&clients, &out.write_policy_arn).await;
    let want = policy::write_policy("aws", "us-east-1", ACCOUNT_ID, "/dr-prod/observability", &out.amp_workspace_arn);
    assert!(policy::equivalent(&wp, &want), "{wp}");
    assert_eq!(attached(&clients, &seeded.irsa_role_name).await, vec![out.write_policy_arn.clone()]);

    // Grafana role: trusted by grafana.amazonaws.com with the confused-deputy conditions
    let gtrust = trust_of(&clients, "dr-prod-us-east-1-grafana").await;
    assert!(policy::equivalent(&gtrust, &policy::grafana_trust_policy("aws", "us-east-1", ACCOUNT_ID)), "{gtrust}");
    assert_eq!(attached(&clients, "dr-prod-us-east-1-grafana").await, vec![out.read_policy_arn.clone()]);
    assert!(policy::equivalent(
        &default_document(&clients, &out.read_policy_arn).await,
        &policy::read_policy(&out.amp_workspace_arn)
    ));

    // Grafana workspace: ACTIVE, customer-managed, our role, SSO, version 10.4
    let g = clients.grafana.describe_workspace().workspace_id(&out.grafana_workspace_id).send().await.unwrap();
    let g = g.workspace().unwrap();
    assert_eq!(g.status().as_str(), "ACTIVE");
    assert_eq!(g.workspace_role_arn(), Some(out.grafana_role_arn.as_str()));
    assert_eq!(g.permission_type().map(|p| p.as_str()), Some("CUSTOMER_MANAGED"));
    assert_eq!(g.grafana_version(), "10.4");
    assert_eq!(out.grafana_url, format!("https://{}", g.endpoint()));

    // SSM: every parameter, matching the live resources
    let params = ssm_values(&clients, "/o11y/dr-prod").await;
    let get = |leaf: &str| {
        params.iter().find(|p| p.0 == format!("/o11y/dr-prod/{leaf}")).map(|p| p.1.clone()).unwrap_or_default()
    };
    assert_eq!(params.len(), 13, "11 outputs, the verification and the record: {params:?}");
    let record: Value = serde_json::from_str(&get("provisioner-state")).unwrap();
    assert_eq!(record["trust"]["addedStatement"], statements[1], "the record holds exactly the statement we added");
    assert_eq!(record["trust"]["originalDocument"], seeded.original_trust);
    for key in ["ampWorkspace", "writePolicy", "grafanaRole", "readPolicy", "grafanaWorkspace"] {
        assert_eq!(record["resources"][key]["owned"], true, "{key}");
    }
    assert_eq!(get("amp-workspace-arn"), ws.arn());
    assert_eq!(get("grafana-workspace-id"), g.id());
    assert_eq!(get("remote-write-url"), out.remote_write_url);
    assert_eq!(get("irsa-role-arn"), seeded.irsa_role_arn);
    let helm = get("helm-values");
    assert!(helm.contains(&format!("endpoint: {}", out.remote_write_url)), "{helm}");
    assert!(helm.contains(&format!("roleArn: {}", seeded.irsa_role_arn)), "{helm}");
    assert_eq!(out.helm_values_parameter, "/o11y/dr-prod/helm-values");

    // WHEN it runs again on the converged state
    let second = engine::provision(&clients, minimal_input(&seeded), &fast_wait()).await.expect("second run");

    // THEN the outputs are the same and nothing was created, versioned, attached or rewritten
    assert_eq!(second.output, first.output);
    assert!(!second.irsa_trust.as_ref().unwrap().changed);
    assert!(!second.amp_workspace.as_ref().unwrap().created);
    let wp2 = second.write_policy.as_ref().unwrap();
    assert!(!wp2.created && !wp2.version_created && !wp2.attached);
    let gr2 = second.grafana_role.as_ref().unwrap();
    assert!(!gr2.created && !gr2.trust_updated && !gr2.read_policy.version_created && !gr2.read_policy.attached);
    assert!(!second.grafana_workspace.as_ref().unwrap().created);
    assert_eq!(trust_of(&clients, &seeded.irsa_role_name).await, trust);
    assert_eq!(version_count(&clients, &out.write_policy_arn).await, 1);
    assert_eq!(version_count(&clients, &out.read_policy_arn).await, 1);
    assert_eq!(attached(&clients, &seeded.irsa_role_name).await.len(), 1);
    assert_eq!(amp_count(&clients).await, 1);
    assert_eq!(grafana_count(&clients).await, 1);
    assert_eq!(ssm_values(&clients, "/o11y/dr-prod").await, params, "no parameter rewritten (versions unchanged)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_existing_workspace_and_policy_at_five_versions_are_adopted_and_converged() {
    // GIVEN an earlier manual run: a workspace with our alias, the write policy at 5 versions
    // with an outdated default, already attached to the IRSA role
    let stack = FullStack::start(&StackOptions::default());
    let (clients, seeded) = setup(&stack).await;
    let manual = clients.amp.create_workspace().alias("dr-prod").send().await.unwrap();
    let old = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": "*"}]});
    let p = clients
        .iam
        .create_policy()
        .policy_name("dr-prod-us-east-1-observability-write")
        .policy_document(old.to_string())
        .send()
        .await
        .unwrap();
    let arn = p.policy().unwrap().arn().unwrap().to_string();
    for i in 2..=5 {
        let doc = json!({"Version": "2012-10-17", "Statement": [{"Sid": format!("V{i}"), "Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": "*"}]});
        clients
            .iam
            .create_policy_version()
            .policy_arn(&arn)
            .policy_document(doc.to_string())
            .set_as_default(i == 3)
            .send()
            .await
            .unwrap();
    }
    clients.iam.attach_role_policy().role_name(&seeded.irsa_role_name).policy_arn(&arn).send().await.unwrap();

    // WHEN the workflow runs
    let state = engine::provision(&clients, minimal_input(&seeded), &fast_wait()).await.expect("run");
    let out = state.output.clone().unwrap();

    // THEN the workspace and policy are reused, reported as adopted, and converged
    assert_eq!(out.amp_workspace_id, manual.workspace_id());
    assert_eq!(amp_count(&clients).await, 1);
    assert_eq!(out.write_policy_arn, arn);
    assert_eq!(out.adopted, vec!["ampWorkspace".to_string(), "writePolicy".to_string()]);
    let wp = state.write_policy.as_ref().unwrap();
    assert!(wp.version_created);
    assert_eq!(wp.version_pruned.as_deref(), Some("v1"), "the oldest non-default version goes");
    assert_eq!(version_count(&clients, &arn).await, 5);
    let want = policy::write_policy("aws", "us-east-1", ACCOUNT_ID, "/dr-prod/observability", &out.amp_workspace_arn);
    assert!(policy::equivalent(&default_document(&clients, &arn).await, &want));
    assert!(!wp.attached, "already attached: not attached twice");
    assert_eq!(attached(&clients, &seeded.irsa_role_name).await, vec![arn.clone()]);

    // AND a re-run creates no further version
    let again = engine::provision(&clients, minimal_input(&seeded), &fast_wait()).await.expect("rerun");
    assert!(!again.write_policy.unwrap().version_created);
    assert_eq!(version_count(&clients, &arn).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workspaces_with_the_alias_are_a_conflict_that_names_both() {
    let stack = FullStack::start(&StackOptions::default());
    let (clients, seeded) = setup(&stack).await;
    let a = clients.amp.create_workspace().alias("dr-prod").send().await.unwrap();
    let b = clients.amp.create_workspace().alias("dr-prod").send().await.unwrap();
    let err = engine::provision(&clients, minimal_input(&seeded), &fast_wait()).await.unwrap_err();
    assert_eq!(err.name(), "ConflictError", "{err}");
    let msg = err.to_string();
    assert!(msg.contains(a.workspace_id()) && msg.contains(b.workspace_id()), "{msg}");
    assert_eq!(amp_count(&clients).await, 2, "no third workspace");
}

/// Counts of everything the workflow could create, to prove a run wrote nothing.
async fn inventory(clients: &o11y_shared::aws::Clients) -> (usize, usize, usize, usize, usize, Value) {
    let roles = clients.iam.list_roles().send().await.unwrap().roles().len();
    let policies = clients
        .iam
        .list_policies()
        .scope(aws_sdk_iam::types::PolicyScopeType::Local)
        .send()
        .await
        .unwrap()
        .policies()
        .len();
    let params = clients.ssm.describe_parameters().send().await.unwrap().parameters().len();
    (
        roles,
        policies,
        params,
        amp_count(clients).await,
        grafana_count(clients).await,
        trust_of(clients, "dr-core-irsa").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_fails_before_any_aws_call_and_writes_nothing() {
    let stack = FullStack::start(&StackOptions::default());
    let (clients, seeded) = setup(&stack).await;
    let before = inventory(&clients).await;
    let cases = [
        ("namespace", json!({"namespace": "dr-core:*"})),
        ("namespace", json!({"namespace": "*"})),
        ("amp.alias", json!({"amp": {"alias": ""}})),
        ("grafana.workspaceName", json!({"grafana": {"workspaceName": "has space"}})),
        ("irsaRoleName", json!({"irsaRoleName": "bad/role"})),
        ("region", json!({"region": "mars-north-1"})),
        ("ssmPrefix", json!({"ssmPrefix": "/aws/x"})),
        ("nope", json!({"nope": 1})),
    ];
    let unreachable = o11y_tests::unreachable_clients().await;
    for (field, patch) in cases {
        let mut input = minimal_input(&seeded);
        for (k, v) in patch.as_object().unwrap() {
            input[k] = v.clone();
        }
        // against the real stack: a ValidationError naming the field
        let err = engine::provision(&clients, input.clone(), &fast_wait()).await.unwrap_err();
        assert_eq!(err.name(), "ValidationError", "{field}: {err}");
        assert!(matches!(&err, Error::Validation { field: f, .. } if f == field), "{field}: {err}");
        // against endpoints that do not exist: still a ValidationError, so no call was attempted
        let err = engine::provision(&unreachable, input, &fast_wait()).await.unwrap_err();
        assert_eq!(err.name(), "ValidationError", "{field}: {err}");
    }
    assert_eq!(inventory(&clients).await, before, "zero AWS writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_oidc_provider_or_role_is_a_precondition_error_with_no_writes() {
    let stack = FullStack::start(&StackOptions::default());
    let clients = stack.clients().await;
    // only a role, no OIDC provider
    let issuer = "https://oidc.eks.us-east-1.amazonaws.com/id/ABCDEF0123456789";
    clients
        .iam
        .create_role()
        .role_name("dr-core-irsa")
        .assume_role_policy_document(json!({"Version":"2012-10-17","Statement":[]}).to_string())
        .tags(o11y_tests::seed::opt_in_tag())
        .send()
        .await
        .unwrap();
    let before = inventory(&clients).await;
    let input = json!({"deploymentName": "dr-prod", "cluster": {"oidcIssuer": issuer}, "namespace": NS, "irsaRoleName": "dr-core-irsa"});
    let err = engine::provision(&clients, input.clone(), &fast_wait()).await.unwrap_err();
    assert_eq!(err.name(), "PreconditionError");
    assert!(err.to_string().contains("must be configured first"), "{err}");
    assert_eq!(inventory(&clients).await, before);

    let mut other = input;
    other["irsaRoleName"] = json!("missing-role");
    seed::oidc_provider(&clients, issuer).await;
    let err = engine::provision(&clients, other, &fast_wait()).await.unwrap_err();
    assert_eq!(err.name(), "PreconditionError");
    assert!(err.to_string().contains("missing-role"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_policy_over_quota_is_refused_and_left_unchanged() {
    let stack = FullStack::start(&StackOptions::default());
    let (clients, seeded) = setup(&stack).await;
    // GIVEN a trust policy close to the 2,048-character quota
    let mut trust = seeded.original_trust.clone();
    let subs: Vec<String> = (0..40).map(|i| format!("system:serviceaccount:{NS}:app-{i:02}")).collect();
    let issuer = seeded.oidc_issuer.trim_start_matches("https://");
    trust["Statement"][0]["Condition"]["StringEquals"][format!("{issuer}:sub")] = json!(subs);
    assert!(policy::document_length(&trust) <= policy::TRUST_POLICY_MAX_CHARS, "{}", policy::document_length(&trust));
    clients
        .iam
        .update_assume_role_policy()
        .role_name(&seeded.irsa_role_name)
        .policy_document(trust.to_string())
        .send()
        .await
        .unwrap();

    // WHEN the workflow would add its statement past the quota
    let err = engine::provision(&clients, minimal_input(&seeded), &fast_wait()).await.unwrap_err();

    // THEN it stops with a clear LimitExceededError and the trust policy is untouched
    assert_eq!(err.name(), "LimitExceededError", "{err}");
    assert!(err.to_string().contains("2048") || err.to_string().contains("2,048"), "{err}");
    assert_eq!(trust_of(&clients, &seeded.irsa_role_name).await, trust);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_slow_to_become_active_is_waited_for_within_a_bound() {
    let stack = FullStack::start(&StackOptions { grafana_active_delay: 1.5, ..StackOptions::default() });
    let (clients, seeded) = setup(&stack).await;
    // a bound shorter than the delay fails clearly
    let short = WaitPolicy {
        first_interval: Duration::from_millis(100),
        max_interval: Duration::from_millis(100),
        max_total: Duration::from_millis(300),
    };
    let err = engine::provision(&clients, minimal_input(&seeded), &short).await.unwrap_err();
    assert_eq!(err.name(), "ResourceFailedError");
    assert!(err.to_string().contains("did not become ACTIVE"), "{err}");
    // a longer bound polls until ACTIVE, reusing the workspace created by the first attempt
    let state: ProvisionState = engine::provision(&clients, minimal_input(&seeded), &fast_wait()).await.expect("waits");
    assert_eq!(state.grafana_workspace.unwrap().status, "ACTIVE");
    assert_eq!(grafana_count(&clients).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_version_not_offered_is_a_validation_error_naming_the_field() {
    let stack = FullStack::start(&StackOptions::default());
    let (clients, seeded) = setup(&stack).await;
    let mut input = minimal_input(&seeded);
    input["grafana"] = json!({"version": "7.0"});
    let err = engine::provision(&clients, input, &fast_wait()).await.unwrap_err();
    assert!(matches!(&err, Error::Validation { field, .. } if field == "grafana.version"), "{err}");
    assert_eq!(grafana_count(&clients).await, 0);
}

/// The state of run `run` of `minimal_input` after `steps`, each applied as the state machine does.
async fn state_after(
    clients: &o11y_shared::aws::Clients,
    seeded: &Seeded,
    run: &str,
    steps: &[engine::Step],
) -> ProvisionState {
    let mut state = ProvisionState::new(minimal_input(seeded));
    state.run = Some(run.to_string());
    for &step in steps {
        let out = engine::run_step(step, clients, &state).await.unwrap_or_else(|e| panic!("{step:?}: {e}"));
        engine::apply_output(&mut state, step, out).unwrap();
    }
    state
}

/// Preflight found the write policy's name free, so write-policy creates it without looking again
/// (`preflight.absent`). A same-named policy that appears in between (someone else's, granting
/// more than ours) makes that create fail as already existing: the step then judges the policy
/// as it always does, refuses it, and leaves its document alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_created_after_preflight_found_its_name_free_is_judged_not_overwritten() {
    let stack = FullStack::start(&StackOptions::default());
    let (clients, seeded) = setup(&stack).await;
    let steps = [engine::Step::Preflight, engine::Step::IrsaTrust, engine::Step::AmpWorkspace];
    let state = state_after(&clients, &seeded, "absent-race", &steps).await;
    let pre = state.preflight.clone().unwrap();
    assert!(pre.found_absent("writePolicy"), "{:?}", pre.absent);

    // WHEN someone creates a broader policy by that name before write-policy runs
    let name = o11y_shared::names::default_write_policy_name("dr-prod", "us-east-1");
    let foreign =
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]});
    let created = clients.iam.create_policy().policy_name(&name).policy_document(foreign.to_string()).send().await;
    let arn = created.unwrap().policy().unwrap().arn().unwrap().to_string();
    let err = engine::run_step(engine::Step::WritePolicy, &clients, &state).await.expect_err("refused");

    // THEN the step refuses it by the rules of a policy found by name, and changed nothing of it
    assert_eq!(err.name(), "ConflictError", "{err}");
    let msg = err.to_string();
    assert!(msg.contains("writePolicyName") && msg.contains("was not created by this deployment"), "{msg}");
    assert!(msg.contains("s3:*"), "the policy was read and compared with ours: {msg}");
    assert_eq!(default_document(&clients, &arn).await, foreign);
    assert_eq!(version_count(&clients, &arn).await, 1);
    assert!(!attached(&clients, &seeded.irsa_role_name).await.contains(&arn));
}

/// The same for the Grafana role: one created by someone else after preflight found the name free
/// makes grafana-role's create fail as already existing; the step then judges that role as a role
/// found by name (not ours, not opted in), refuses to give it our trust, and leaves it as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_created_after_preflight_found_its_name_free_is_judged_not_taken_over() {
    let stack = FullStack::start(&StackOptions::default());
    let (clients, seeded) = setup(&stack).await;
    let steps =
        [engine::Step::Preflight, engine::Step::IrsaTrust, engine::Step::AmpWorkspace, engine::Step::WritePolicy];
    let state = state_after(&clients, &seeded, "absent-race-role", &steps).await;
    assert!(state.preflight.as_ref().unwrap().found_absent("grafanaRole"));

    // WHEN someone creates a role by the Grafana role's name before grafana-role runs
    let name = o11y_shared::names::default_grafana_role_name("dr-prod", "us-east-1");
    let foreign = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    let created = clients.iam.create_role().role_name(&name).assume_role_policy_document(foreign.to_string());
    created.send().await.unwrap();
    let err = engine::run_step(engine::Step::GrafanaRole, &clients, &state).await.expect_err("refused");

    // THEN the step looked at it and refused it as not opted in, its trust and attachments unchanged
    assert_eq!(err.name(), "PreconditionError", "{err}");
    assert!(err.to_string().contains("grafana.roleName") && err.to_string().contains("not opted in"), "{err}");
    assert_eq!(trust_of(&clients, &name).await, foreign);
    assert!(attached(&clients, &name).await.is_empty());
}
