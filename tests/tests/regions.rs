//! Regions are part of a deployment's identity, on the local stack through the real state machine
//! (read back from IAM): the same `deploymentName` in two regions of one account owns distinct IAM
//! resources (the default names carry the region) and holds its own trust statement (the `Sid`
//! derives from the name and the region), so the two work side by side and deleting one leaves the
//! other intact and verified. Explicit names that make two regions (or two deployments) claim one
//! IAM resource are refused by preflight, before any write, naming the owner. A deployment made
//! before regions were part of its identity (the old `Sid`, the old default names) converges on
//! re-apply, with no orphan. A CloudFormation replacement that moves the deployment to another
//! region, or to another account (`target.accountId`), creates it there, then deletes only the old
//! region's (account's) resources.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use aws_sdk_iam::types::Tag;
use o11y_shared::aws::Clients;
use o11y_shared::{names, policy};
use o11y_tests::iam::{statements, trust_of};
use o11y_tests::stack::{start_seeded, FullStack, StackOptions};
use o11y_tests::{cfn, seed, ACCOUNT_ID, OTHER_REGION, REGION};
use serde_json::{json, Value};

const WEST: &str = OTHER_REGION;

/// A fresh local stack with the cluster `dr-eks` in both regions (each with its OIDC provider),
/// the one IRSA role `dr-core-irsa` (trusting the first region's cluster), and the state machine.
async fn start() -> (FullStack, Clients, seed::Seeded, String) {
    let (stack, clients, seeded) = start_seeded(&StackOptions::creating_one_second()).await;
    let west = clients.for_region(WEST);
    let cluster = west
        .eks
        .create_cluster()
        .name("dr-eks")
        .role_arn(format!("arn:aws:iam::{ACCOUNT_ID}:role/eks-cluster"))
        .resources_vpc_config(aws_sdk_eks::types::VpcConfigRequest::builder().subnet_ids("subnet-1").build())
        .send()
        .await
        .unwrap();
    let issuer = cluster.cluster().unwrap().identity().unwrap().oidc().unwrap().issuer().unwrap().to_string();
    assert!(issuer.contains(WEST), "{issuer}");
    seed::oidc_provider(&clients, &issuer).await;
    let sm = stack.deploy().await;
    (stack, clients, seeded, sm)
}

fn minimal() -> Value {
    json!({"deploymentName": "dr-prod", "cluster": {"name": "dr-eks"}, "namespace": "dr-core", "irsaRoleName": "dr-core-irsa"})
}

fn in_west(mut input: Value) -> Value {
    input["region"] = json!(WEST);
    input
}

fn with(mut input: Value, key: &str, value: Value) -> Value {
    input[key] = value;
    input
}

fn sids(doc: &Value) -> Vec<String> {
    statements(doc).iter().filter_map(|s| s["Sid"].as_str().map(str::to_string)).collect()
}

/// The statements of any deployment of ours (`Sid` `O11yProvisionerIrsa…`).
fn our_sids(doc: &Value) -> Vec<String> {
    sids(doc).into_iter().filter(|s| s.starts_with(names::TRUST_SID_PREFIX)).collect()
}

fn policy_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT_ID}:policy/{name}")
}

/// The default version's document of a policy, or `None` when it does not exist.
async fn policy_doc(clients: &Clients, name: &str) -> Option<Value> {
    let p = clients.iam.get_policy().policy_arn(policy_arn(name)).send().await.ok()?;
    let v = p.policy()?.default_version_id()?.to_string();
    let out = clients.iam.get_policy_version().policy_arn(policy_arn(name)).version_id(v).send().await.unwrap();
    Some(policy::decode_document(out.policy_version()?.document()?).unwrap())
}

async fn attached(clients: &Clients, role: &str) -> Vec<String> {
    let out = clients.iam.list_attached_role_policies().role_name(role).send().await.unwrap();
    let mut names: Vec<String> =
        out.attached_policies().iter().filter_map(|p| p.policy_name().map(str::to_string)).collect();
    names.sort();
    names
}

/// Every role and customer managed policy whose name starts with `prefix`.
async fn iam_names(clients: &Clients, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let roles = clients.iam.list_roles().send().await.unwrap();
    out.extend(roles.roles().iter().map(|r| r.role_name().to_string()).filter(|n| n.starts_with(prefix)));
    let policies = clients.iam.list_policies().scope(aws_sdk_iam::types::PolicyScopeType::Local).send().await.unwrap();
    out.extend(
        policies
            .policies()
            .iter()
            .filter_map(|p| p.policy_name())
            .map(str::to_string)
            .filter(|n| n.starts_with(prefix)),
    );
    out.sort();
    out
}

/// The IAM resources a deployment `d` in `region` owns under the default names.
fn defaults(d: &str, region: &str) -> (String, String, String) {
    (
        names::default_write_policy_name(d, region),
        names::default_grafana_role_name(d, region),
        names::default_read_policy_name(d, region),
    )
}

/// Checks that `d`'s resources in `region` exist, are attached where they belong, and that their
/// documents name `region` only (never `other`).
async fn assert_region_owns(clients: &Clients, region: &str, other: &str) {
    let (write, role, read) = defaults("dr-prod", region);
    for name in [&write, &read] {
        let doc = policy_doc(clients, name).await.unwrap_or_else(|| panic!("{name} exists"));
        let text = doc.to_string();
        assert!(text.contains(&format!(":{region}:")) && !text.contains(other), "{name}: {doc:#}");
    }
    let trust = trust_of(clients, &role).await.unwrap_or_else(|| panic!("{role} exists"));
    let text = trust.to_string();
    assert!(text.contains(&format!("grafana:{region}:")) && !text.contains(other), "{role}: {trust:#}");
    assert_eq!(attached(clients, &role).await, vec![read.clone()]);
    assert!(attached(clients, "dr-core-irsa").await.contains(&write), "{write} attached to the IRSA role");
    let tags = clients.iam.list_role_tags().role_name(&role).send().await.unwrap();
    let owner = names::TaggedOwner::from_tags(tags.tags().iter().map(|t| (t.key(), t.value()))).unwrap();
    assert_eq!(owner.region.as_deref(), Some(region), "{role}: {tags:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_deployment_name_in_two_regions_works_side_by_side_and_deleting_one_keeps_the_other() {
    let (stack, clients, seeded, sm) = start().await;

    // GIVEN dr-prod applied in us-east-1 and in us-west-2, on the one IRSA role
    let east = stack.execute(&sm, "east", &minimal()).await;
    assert_eq!(east.status, "SUCCEEDED", "{east:?}");
    let west = stack.execute(&sm, "west", &in_west(minimal())).await;
    assert_eq!(west.status, "SUCCEEDED", "{west:?}");
    let west_out = west.output.unwrap();
    assert_eq!(west_out["verification"]["status"], "passed", "{west_out:#}");
    assert!(west_out["grafanaUrl"].as_str().unwrap().contains(WEST), "{west_out:#}");
    assert_eq!(west_out["adopted"], json!([]), "nothing of the first region is taken over: {west_out:#}");

    // THEN each region has its own policies and Grafana role, naming its own region only
    assert_region_owns(&clients, REGION, WEST).await;
    assert_region_owns(&clients, WEST, REGION).await;
    // AND the IRSA role holds two statements of ours, one per region, besides its own
    let trust = trust_of(&clients, "dr-core-irsa").await.unwrap();
    let mut expected = vec![names::trust_statement_sid("dr-prod", REGION), names::trust_statement_sid("dr-prod", WEST)];
    expected.sort();
    let mut ours = our_sids(&trust);
    ours.sort();
    assert_eq!(ours, expected, "{trust:#}");
    for before in statements(&seeded.original_trust) {
        assert!(statements(&trust).contains(&before), "lost {before}: {trust:#}");
    }

    // WHEN the us-east-1 deployment is deleted
    let delete = stack.execute(&sm, "delete-east", &with(minimal(), "action", json!("delete"))).await;
    assert_eq!(delete.status, "SUCCEEDED", "{delete:?}");

    // THEN only its resources and its statement are gone
    let (write, role, read) = defaults("dr-prod", REGION);
    assert_eq!(iam_names(&clients, "dr-prod-us-east-1-").await, Vec::<String>::new());
    assert!(policy_doc(&clients, &write).await.is_none() && policy_doc(&clients, &read).await.is_none());
    assert!(trust_of(&clients, &role).await.is_none());
    let trust = trust_of(&clients, "dr-core-irsa").await.unwrap();
    assert_eq!(our_sids(&trust), vec![names::trust_statement_sid("dr-prod", WEST)], "{trust:#}");
    assert_region_owns(&clients, WEST, "us-east-1:").await;
    // AND us-west-2 still verifies, with nothing to change
    let plan = stack.execute(&sm, "plan-west", &with(in_west(minimal()), "action", json!("plan"))).await;
    assert_eq!(plan.status, "SUCCEEDED", "{plan:?}");
    assert_eq!(plan.output.unwrap()["changes"], 0);
    let again = stack.execute(&sm, "west-again", &in_west(minimal())).await;
    assert_eq!(again.status, "SUCCEEDED", "{again:?}");
    assert_eq!(again.output.unwrap()["verification"]["status"], "passed");

    // WHEN us-west-2 is deleted too THEN the IRSA role trusts exactly what it trusted before us
    let delete = stack.execute(&sm, "delete-west", &with(in_west(minimal()), "action", json!("delete"))).await;
    assert_eq!(delete.status, "SUCCEEDED", "{delete:?}");
    assert!(policy::equivalent(&trust_of(&clients, "dr-core-irsa").await.unwrap(), &seeded.original_trust));
    assert_eq!(iam_names(&clients, "dr-prod-").await, Vec::<String>::new());
}

/// The run failed with `ConflictError` and its message names every one of `words`.
fn refused(run: &o11y_tests::sfn::Outcome, words: &[&str]) {
    assert_eq!(run.status, "FAILED", "{run:?}");
    assert_eq!(run.error.as_deref(), Some("ConflictError"), "{run:?}");
    let cause = run.cause.clone().unwrap_or_default();
    assert!(cause.contains("preflight"), "refused by preflight: {cause}");
    for w in words {
        assert!(cause.contains(w), "{w:?} not in {cause}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_names_claimed_by_another_region_or_deployment_are_refused_before_any_write() {
    let (stack, clients, _, sm) = start().await;

    // GIVEN dr-prod in us-east-1 with explicit IAM names
    let shared = json!({"roleName": "dr-prod-shared-grafana", "readPolicyName": "dr-prod-shared-grafana-amp-read"});
    let east = with(with(minimal(), "writePolicyName", json!("dr-prod-shared-observability-write")), "grafana", shared);
    let applied = stack.execute(&sm, "east", &east).await;
    assert_eq!(applied.status, "SUCCEEDED", "{applied:?}");
    let write_before = policy_doc(&clients, "dr-prod-shared-observability-write").await.unwrap();
    let trust_before = trust_of(&clients, "dr-prod-shared-grafana").await.unwrap();
    let irsa_before = trust_of(&clients, "dr-core-irsa").await.unwrap();

    // WHEN the same input is applied (or planned) in us-west-2
    // THEN it is refused by preflight, naming the field, the owner and its region, with zero writes
    for (name, input) in [
        ("west", in_west(east.clone())),
        ("west-plan", with(in_west(east.clone()), "action", json!("plan"))),
        ("west-role-only", with(in_west(minimal()), "grafana", json!({"roleName": "dr-prod-shared-grafana"}))),
    ] {
        stack.reset_requests();
        let run = stack.execute(&sm, name, &input).await;
        let field = if name == "west-role-only" { "grafana.roleName" } else { "writePolicyName" };
        refused(&run, &[field, "dr-prod", "us-east-1", "another name"]);
        assert_eq!(stack.aws_writes(), Vec::<Value>::new(), "{name}: zero writes");
        assert_eq!(stack.lease_writes(), Vec::<Value>::new(), "{name}: not even the lease");
    }

    // WHEN another deployment in us-east-1 names the same write policy THEN refused (by the registry), naming dr-prod
    stack.reset_requests();
    let other = with(
        with(minimal(), "deploymentName", json!("dr-other")),
        "writePolicyName",
        json!("dr-prod-shared-observability-write"),
    );
    let run = stack.execute(&sm, "other", &other).await;
    refused(&run, &["writePolicyName", "claimed by deployment", "dr-prod"]);
    assert_eq!(stack.aws_writes(), Vec::<Value>::new());

    // AND the first deployment's resources are exactly as they were
    assert_eq!(policy_doc(&clients, "dr-prod-shared-observability-write").await.unwrap(), write_before);
    assert_eq!(trust_of(&clients, "dr-prod-shared-grafana").await.unwrap(), trust_before);
    assert_eq!(trust_of(&clients, "dr-core-irsa").await.unwrap(), irsa_before);
    let versions = clients
        .iam
        .list_policy_versions()
        .policy_arn(policy_arn("dr-prod-shared-observability-write"))
        .send()
        .await
        .unwrap();
    assert_eq!(versions.versions().len(), 1);

    // AND with the region's default names the second region works
    let west = stack.execute(&sm, "west-defaults", &in_west(minimal())).await;
    assert_eq!(west.status, "SUCCEEDED", "{west:?}");
    assert_eq!(policy_doc(&clients, "dr-prod-shared-observability-write").await.unwrap(), write_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrelated_role_at_the_default_grafana_role_name_is_refused_before_any_write() {
    let (stack, clients, _, sm) = start().await;
    // GIVEN a role of someone else's that merely has our default name and trusts EC2
    let (_, role, _) = defaults("dr-prod", REGION);
    let foreign = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    clients
        .iam
        .create_role()
        .role_name(&role)
        .assume_role_policy_document(foreign.to_string())
        .tags(Tag::builder().key("team").value("x").build().unwrap())
        .send()
        .await
        .unwrap();
    // WHEN applied with the default names THEN refused, nothing written, the role untouched
    stack.reset_requests();
    let run = stack.execute(&sm, "create", &minimal()).await;
    refused(&run, &["grafana.roleName", &role, "grafana.amazonaws.com"]);
    assert_eq!(stack.aws_writes(), Vec::<Value>::new());
    assert!(policy::equivalent(&trust_of(&clients, &role).await.unwrap(), &foreign));
}

/// The record of `dr-prod` in us-east-1.
const RECORD: &str = "/o11y/dr-prod/provisioner-state";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_from_before_regions_were_part_of_its_identity_converges_without_orphans() {
    let (stack, clients, seeded, sm) = start().await;

    // GIVEN a deployment as earlier versions left it: the old default names (no region), no region
    // tag, and its trust statement under the old Sid (name only), in the role and in the record.
    // Made by applying with those names, then rewriting what differs.
    let old = json!({"roleName": "dr-prod-grafana", "readPolicyName": "dr-prod-grafana-amp-read"});
    let legacy = with(with(minimal(), "writePolicyName", json!("dr-prod-observability-write")), "grafana", old);
    let applied = stack.execute(&sm, "legacy", &legacy).await;
    assert_eq!(applied.status, "SUCCEEDED", "{applied:?}");
    let iam = &clients.iam;
    iam.untag_role().role_name("dr-prod-grafana").tag_keys(names::REGION_TAG).send().await.unwrap();
    for p in ["dr-prod-observability-write", "dr-prod-grafana-amp-read"] {
        iam.untag_policy().policy_arn(policy_arn(p)).tag_keys(names::REGION_TAG).send().await.unwrap();
    }
    let (new_sid, old_sid) =
        (names::trust_statement_sid("dr-prod", REGION), names::legacy_trust_statement_sid("dr-prod"));
    let trust = trust_of(&clients, "dr-core-irsa").await.unwrap();
    let rewritten = trust.to_string().replace(&new_sid, &old_sid);
    iam.update_assume_role_policy().role_name("dr-core-irsa").policy_document(&rewritten).send().await.unwrap();
    let rec = clients.ssm.get_parameter().name(RECORD).send().await.unwrap();
    let rec = rec.parameter().unwrap().value().unwrap().replace(&new_sid, &old_sid);
    clients
        .ssm
        .put_parameter()
        .name(RECORD)
        .value(&rec)
        .overwrite(true)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
    assert_eq!(our_sids(&trust_of(&clients, "dr-core-irsa").await.unwrap()), vec![old_sid.clone()]);
    let ws = applied.output.unwrap()["grafanaWorkspaceId"].as_str().unwrap().to_string();

    // WHEN applied with this version's defaults (the input leaves the names out)
    let plan = stack.execute(&sm, "plan", &with(minimal(), "action", json!("plan"))).await;
    assert_eq!(plan.status, "SUCCEEDED", "{plan:?}");
    let report = plan.output.unwrap().to_string();
    assert!(report.contains("policy dr-prod-observability-write") && report.contains(&old_sid), "{report}");
    let upgraded = stack.execute(&sm, "upgrade", &minimal()).await;
    assert_eq!(upgraded.status, "SUCCEEDED", "{upgraded:?}");
    let out = upgraded.output.unwrap();
    assert_eq!(out["verification"]["status"], "passed", "{out:#}");
    assert_eq!(out["grafanaWorkspaceId"], json!(ws), "the same workspace");

    // THEN the region's names replace the old ones, which are gone (ours: nothing orphaned)
    let (write, role, read) = defaults("dr-prod", REGION);
    let mut expected = vec![write.clone(), role.clone(), read.clone()];
    expected.sort();
    assert_eq!(iam_names(&clients, "dr-prod-").await, expected);
    assert_region_owns(&clients, REGION, WEST).await;
    assert_eq!(attached(&clients, "dr-core-irsa").await, vec![write.clone()]);
    let workspace = clients.grafana.describe_workspace().workspace_id(&ws).send().await.unwrap();
    assert!(workspace.workspace().unwrap().workspace_role_arn().unwrap().ends_with(&format!(":role/{role}")));
    // AND the old statement is replaced by the new one, every other statement as it was
    let trust = trust_of(&clients, "dr-core-irsa").await.unwrap();
    assert_eq!(our_sids(&trust), vec![new_sid.clone()], "{trust:#}");
    let theirs: Vec<Value> = statements(&trust).into_iter().filter(|s| s["Sid"] != json!(new_sid)).collect();
    let original = json!({"Statement": statements(&seeded.original_trust)});
    assert!(policy::equivalent(&json!({"Statement": theirs}), &original), "{trust:#}");
    // AND a re-run has nothing left to do
    let again = stack.execute(&sm, "plan-again", &with(minimal(), "action", json!("plan"))).await;
    assert_eq!(again.output.unwrap()["changes"], 0);

    // WHEN deleted THEN nothing of ours is left and the trust is the original
    let delete = stack.execute(&sm, "delete", &with(minimal(), "action", json!("delete"))).await;
    assert_eq!(delete.status, "SUCCEEDED", "{delete:?}");
    assert_eq!(iam_names(&clients, "dr-prod-").await, Vec::<String>::new());
    assert!(policy::equivalent(&trust_of(&clients, "dr-core-irsa").await.unwrap(), &seeded.original_trust));
}

// ---- CloudFormation ------------------------------------------------------------------------------

/// Sends a custom resource request to cfn-handler, waits for its execution, returns the answer.
async fn cfn(
    stack: &FullStack,
    kind: &str,
    key: &str,
    props: Value,
    physical: Option<&str>,
    old: Option<Value>,
) -> Value {
    let out = cfn::invoke(stack, "cfn-handler", &cfn::request(stack, kind, key, props, physical, old));
    assert_eq!(out["outcome"], "started", "{out}");
    cfn::wait_execution(stack, out["executionName"].as_str().unwrap(), 1200).await;
    cfn::response_body(stack, key)
}

/// Properties as CloudFormation sends them (scalars as strings).
fn props(region: &str) -> Value {
    cfn::props("dr-prod", json!({"region": region, "retainMetrics": "false"}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloudformation_replacement_to_another_region_creates_there_then_deletes_only_the_old_region() {
    let (stack, clients, seeded, _) = start().await;
    cfn::create_bucket(&stack);
    let east_id = format!("o11y-provisioner:{ACCOUNT_ID}:{REGION}:dr-prod");
    let west_id = format!("o11y-provisioner:{ACCOUNT_ID}:{WEST}:dr-prod");

    // GIVEN the custom resource created in us-east-1
    let created = cfn(&stack, "Create", "create", props(REGION), None, None).await;
    assert_eq!(
        (created["Status"].as_str(), created["PhysicalResourceId"].as_str()),
        (Some("SUCCESS"), Some(east_id.as_str())),
        "{created:#}"
    );

    // WHEN its region property changes: CloudFormation's Update gets a new id (a replacement)
    let updated = cfn(&stack, "Update", "update", props(WEST), Some(&east_id), Some(props(REGION))).await;
    assert_eq!(
        (updated["Status"].as_str(), updated["PhysicalResourceId"].as_str()),
        (Some("SUCCESS"), Some(west_id.as_str())),
        "{updated:#}"
    );
    assert!(updated["Data"]["GrafanaUrl"].as_str().unwrap().contains(WEST), "{updated:#}");
    // THEN both regions exist side by side until CloudFormation deletes the old one
    assert_region_owns(&clients, REGION, WEST).await;
    assert_region_owns(&clients, WEST, REGION).await;

    // WHEN CloudFormation deletes the old one, with its old properties
    let deleted = cfn(&stack, "Delete", "delete-old", props(REGION), Some(&east_id), None).await;
    assert_eq!(
        (deleted["Status"].as_str(), deleted["PhysicalResourceId"].as_str()),
        (Some("SUCCESS"), Some(east_id.as_str())),
        "{deleted:#}"
    );

    // THEN only the old region's resources and trust statement are gone
    assert_eq!(iam_names(&clients, "dr-prod-us-east-1-").await, Vec::<String>::new());
    let trust = trust_of(&clients, "dr-core-irsa").await.unwrap();
    assert_eq!(our_sids(&trust), vec![names::trust_statement_sid("dr-prod", WEST)], "{trust:#}");
    assert_region_owns(&clients, WEST, "us-east-1:").await;
    let west_params = clients.for_region(WEST).ssm.get_parameter().name("/o11y/dr-prod/helm-values").send().await;
    assert!(west_params.is_ok(), "the new region's outputs stay");
    assert!(clients.ssm.get_parameter().name("/o11y/dr-prod/helm-values").send().await.is_err(), "the old ones go");

    // AND the stack's own delete of the new one leaves the role as it was before us
    let deleted = cfn(&stack, "Delete", "delete-new", props(WEST), Some(&west_id), None).await;
    assert_eq!(deleted["Status"], "SUCCESS", "{deleted:#}");
    assert!(policy::equivalent(&trust_of(&clients, "dr-core-irsa").await.unwrap(), &seeded.original_trust));
    assert_eq!(iam_names(&clients, "dr-prod-").await, Vec::<String>::new());
}

/// What of deployment `dr-prod` is in an account: its IAM roles and policies, the policies
/// attached to the IRSA role, our trust statements on it, and whether its Helm values exist.
async fn account_holds(clients: &Clients) -> (Vec<String>, Vec<String>, Vec<String>, bool) {
    let trust = trust_of(clients, "dr-core-irsa").await.unwrap();
    let values = clients.ssm.get_parameter().name("/o11y/dr-prod/helm-values").send().await.is_ok();
    (iam_names(clients, "dr-prod-").await, attached(clients, "dr-core-irsa").await, our_sids(&trust), values)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloudformation_replacement_to_another_account_creates_there_then_deletes_only_the_old_account() {
    let (stack, hub, seeded) = start_seeded(&StackOptions::creating_one_second()).await;
    stack.deploy().await;
    cfn::create_bucket(&stack);
    // GIVEN a vended account with the same cluster name, provider and opted-in IRSA role
    let account = "456789012345";
    let target = seed::vended_account(&hub, ACCOUNT_ID, account).await;
    let target_seeded = seed::seed(&target, "dr-eks", "dr-core-irsa", "dr-core").await;
    let hub_id = format!("o11y-provisioner:{ACCOUNT_ID}:{REGION}:dr-prod");
    let target_id = format!("o11y-provisioner:{account}:{REGION}:dr-prod");
    let in_hub = cfn::props("dr-prod", json!({"retainMetrics": "false"}));
    let in_target = cfn::props("dr-prod", json!({"retainMetrics": "false", "target": {"accountId": account}}));

    // GIVEN the custom resource created in the stack's own account
    let created = cfn(&stack, "Create", "create", in_hub.clone(), None, None).await;
    assert_eq!(
        (created["Status"].as_str(), created["PhysicalResourceId"].as_str()),
        (Some("SUCCESS"), Some(hub_id.as_str())),
        "{created:#}"
    );
    let hub_holds = account_holds(&hub).await;
    assert!(hub_holds.3 && hub_holds.2.len() == 1 && !hub_holds.0.is_empty(), "{hub_holds:?}");
    assert!(!account_holds(&target).await.3, "nothing in the target yet");

    // WHEN its target account changes: a new id (a replacement), made in the target account
    let updated = cfn(&stack, "Update", "update", in_target.clone(), Some(&hub_id), Some(in_hub.clone())).await;
    assert_eq!(
        (updated["Status"].as_str(), updated["PhysicalResourceId"].as_str()),
        (Some("SUCCESS"), Some(target_id.as_str())),
        "{updated:#}"
    );
    let target_holds = account_holds(&target).await;
    assert_eq!(target_holds.0.len(), hub_holds.0.len(), "the same resources there: {target_holds:?}");
    assert!(target_holds.3 && target_holds.2.len() == 1, "{target_holds:?}");
    assert!(updated["Data"]["IrsaRoleArn"].as_str().unwrap_or_default().contains(account), "{updated:#}");
    // THEN the old account's deployment is untouched until CloudFormation deletes it
    assert_eq!(account_holds(&hub).await, hub_holds);

    // WHEN CloudFormation deletes the old id with its old properties
    let deleted = cfn(&stack, "Delete", "delete-old", in_hub, Some(&hub_id), None).await;
    assert_eq!(
        (deleted["Status"].as_str(), deleted["PhysicalResourceId"].as_str()),
        (Some("SUCCESS"), Some(hub_id.as_str())),
        "{deleted:#}"
    );
    // THEN the stack's account is as before us, and the target account keeps the deployment
    assert!(policy::equivalent(&trust_of(&hub, "dr-core-irsa").await.unwrap(), &seeded.original_trust));
    assert_eq!(account_holds(&hub).await, (vec![], vec![], vec![], false));
    assert_eq!(account_holds(&target).await, target_holds);

    // AND the delete of the new id leaves the target account as it was before us
    let deleted = cfn(&stack, "Delete", "delete-new", in_target, Some(&target_id), None).await;
    assert_eq!(deleted["Status"], "SUCCESS", "{deleted:#}");
    assert!(policy::equivalent(&trust_of(&target, "dr-core-irsa").await.unwrap(), &target_seeded.original_trust));
    assert_eq!(account_holds(&target).await, (vec![], vec![], vec![], false));
}
