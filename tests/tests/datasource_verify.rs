//! The `datasource` and `verify` steps on the full local stack (moto, the Grafana emulator with
//! its HTTP API, Prometheus as AMP's data plane, all through the router): the deployment is
//! provisioned in-process with `engine::run`, then the steps run on the resulting state.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use std::time::Duration;

use o11y_shared::aws::Clients;
use o11y_shared::engine::{self, WaitPolicy};
use o11y_shared::grafana_api;
use o11y_shared::state::ProvisionState;
use o11y_shared::steps::datasource::{self, DatasourceOutput, AMP_PLUGIN_TYPE, CORE_PROMETHEUS_TYPE};
use o11y_shared::steps::verify::{self, VerifyOutput};
use o11y_shared::steps::{Ctx, KNOWN_AFTER_APPLY};
use o11y_shared::{policy, trust, Error};
use o11y_tests::seed;
use o11y_tests::stack::{FullStack, StackOptions};
use o11y_tests::{http, sdk_config_for};
use serde_json::{json, Value};

const NS: &str = "dr-core";
const DEPLOYMENT: &str = "dr-prod";
const PREFIX: &str = "/o11y/dr-prod";
/// A well-formed Identity Store user id that the emulator knows.
const ADMIN_USER: &str = "906757b8-a0b1-40e5-b2a3-7f6c2d1e0a9b";
const ADMIN_GROUP: &str = "1234567890-4a5b6c7d-1111-4222-8333-944445555666";
/// Ids starting with this are "not found" in the emulator (`unknownSsoIdPrefix`).
const UNKNOWN_PREFIX: &str = "ffffffff";
/// Set in the environment of the child process that runs the steps with the functions' logging.
const CHILD_ENV: &str = "O11Y_DATASOURCE_VERIFY_CHILD";

fn fast_wait() -> WaitPolicy {
    WaitPolicy {
        first_interval: Duration::from_millis(100),
        max_interval: Duration::from_millis(500),
        max_total: Duration::from_secs(30),
    }
}

fn input(grafana: Value) -> Value {
    json!({
        "deploymentName": DEPLOYMENT, "cluster": {"name": "dr-eks"}, "namespace": NS, "irsaRoleName": "dr-core-irsa",
        "grafana": grafana
    })
}

struct Env {
    stack: FullStack,
    clients: Clients,
    state: ProvisionState,
}

impl Env {
    fn ws_id(&self) -> String {
        self.state.grafana_workspace.as_ref().unwrap().workspace_id.clone()
    }

    fn ws_endpoint(&self) -> String {
        self.state.grafana_workspace.as_ref().unwrap().endpoint.clone()
    }

    /// The state with `patch` merged into its input.
    fn with_input(&self, patch: Value) -> ProvisionState {
        let mut st = self.state.clone();
        for (k, v) in patch.as_object().unwrap() {
            st.input[k] = v.clone();
        }
        st
    }

    async fn datasource(&self, st: &ProvisionState) -> Result<(DatasourceOutput, Ctx), Error> {
        let ctx = Ctx::new(&self.clients, st).await.unwrap();
        datasource::run(&ctx, st).await.map(|o| (o, ctx))
    }

    async fn verify(&self, st: &ProvisionState) -> Result<VerifyOutput, Error> {
        let ctx = Ctx::new(&self.clients, st).await.unwrap();
        verify::run(&ctx, st).await
    }

    /// The live (unexpired, undeleted) service-account tokens of the workspace.
    fn live_tokens(&self) -> Vec<Value> {
        let v = self.stack.grafana_emulator_control(&format!("/_emulator/tokens?workspaceId={}", self.ws_id()));
        v["tokens"].as_array().unwrap().clone()
    }

    fn datasources(&self) -> Vec<Value> {
        let v = self.stack.grafana_emulator_control(&format!("/_emulator/datasources?workspaceId={}", self.ws_id()));
        v["datasources"].as_array().unwrap().clone()
    }

    /// Requests the emulator received for `operation` (AWS or Grafana plane).
    fn emulator_calls(&self, operation: &str) -> usize {
        let v = self.stack.grafana_emulator_control(&format!("/_emulator/requests?operation={operation}"));
        v["requests"].as_array().unwrap().len()
    }

    async fn ssm(&self, leaf: &str) -> Option<(String, i64)> {
        let name = format!("{PREFIX}/{leaf}");
        let p = self.clients.ssm.get_parameter().name(name).send().await.ok()?;
        let p = p.parameter()?;
        Some((p.value()?.to_string(), p.version()))
    }

    async fn all_ssm_values(&self) -> String {
        let mut out = String::new();
        let mut pages = self.clients.ssm.get_parameters_by_path().path(PREFIX).recursive(true).into_paginator().send();
        while let Some(page) = pages.next().await {
            for p in page.unwrap().parameters() {
                out.push_str(p.value().unwrap_or_default());
                out.push('\n');
            }
        }
        out
    }

    async fn irsa_trust(&self) -> Value {
        let r = self.clients.iam.get_role().role_name("dr-core-irsa").send().await.unwrap();
        policy::decode_document(r.role().unwrap().assume_role_policy_document().unwrap()).unwrap()
    }

    async fn set_irsa_trust(&self, doc: &Value) {
        self.clients
            .iam
            .update_assume_role_policy()
            .role_name("dr-core-irsa")
            .policy_document(doc.to_string())
            .send()
            .await
            .unwrap();
    }

    /// A token of our service account for the test itself (deleted by `revoke`).
    async fn own_token(&self) -> (String, String, String) {
        let g = &self.clients.grafana;
        let sas = g.list_workspace_service_accounts().workspace_id(self.ws_id()).send().await.unwrap();
        let name = grafana_api::service_account_name(DEPLOYMENT);
        let sa =
            sas.service_accounts().iter().find(|s| s.name() == name).expect("our service account").id().to_string();
        let t = g
            .create_workspace_service_account_token()
            .workspace_id(self.ws_id())
            .service_account_id(&sa)
            .name("test-token")
            .seconds_to_live(60)
            .send()
            .await
            .unwrap();
        let t = t.service_account_token().unwrap();
        (sa, t.id().to_string(), t.key().to_string())
    }

    async fn revoke(&self, sa: &str, token_id: &str) {
        self.clients
            .grafana
            .delete_workspace_service_account_token()
            .workspace_id(self.ws_id())
            .service_account_id(sa)
            .token_id(token_id)
            .send()
            .await
            .unwrap();
    }
}

/// The stack, the seeded cluster and IRSA role, and an applied deployment.
async fn provision(grafana: Value) -> Env {
    let stack = FullStack::start(&StackOptions::default());
    let clients = stack.clients().await.with_grafana_api_url(stack.endpoint());
    seed::seed(&clients, "dr-eks", "dr-core-irsa", NS).await;
    let state = engine::run(&clients, input(grafana), &fast_wait()).await.expect("apply");
    assert_eq!(state.grafana_workspace.as_ref().unwrap().status, "ACTIVE");
    Env { stack, clients, state }
}

/// The data source as Grafana stores it, reduced to the fields the product sets.
fn as_created(ds: &Value) -> Value {
    json!({
        "uid": ds["uid"], "name": ds["name"], "type": ds["type"], "access": ds["access"], "url": ds["url"],
        "isDefault": ds["isDefault"], "jsonData": ds["jsonData"]
    })
}

fn required(env: &Env, ds_type: &str, is_default: bool) -> Value {
    let amp = env.state.amp_workspace.as_ref().unwrap();
    json!({
        "uid": datasource::datasource_uid(DEPLOYMENT),
        "name": format!("Amazon Managed Prometheus ({DEPLOYMENT})"),
        "type": ds_type, "access": "proxy", "url": amp.prometheus_endpoint, "isDefault": is_default,
        "jsonData": {"httpMethod": "POST", "sigV4Auth": true, "sigV4AuthType": "ec2_iam_role", "sigV4Region": "us-east-1"}
    })
}

fn assert_no_secret(what: &str, text: &str) {
    for needle in ["glsa_", "Bearer ", "Signature=", "secretAccessKey", "\"key\""] {
        assert!(!text.contains(needle), "{what} contains {needle:?}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_4_workspace_gets_the_core_type_and_a_second_run_changes_nothing() {
    // GIVEN an applied deployment with a Grafana 10.4 workspace
    let env = provision(json!({"version": "10.4"})).await;

    // WHEN the datasource step runs
    let created_before = env.emulator_calls("CreateWorkspaceServiceAccountToken");
    let (out, _) = env.datasource(&env.state).await.expect("datasource");

    // THEN the data source exists with exactly the required JSON (core type), and is healthy
    // (`created` unless the engine's own apply already ran this step)
    assert!(["created", "unchanged"].contains(&out.action.as_str()), "{out:#?}");
    assert_eq!(out.datasource_type, CORE_PROMETHEUS_TYPE);
    assert_eq!(out.health.as_deref(), Some("Successfully queried the Prometheus API."));
    let dss = env.datasources();
    assert_eq!(dss.len(), 1, "{dss:#?}");
    assert_eq!(as_created(&dss[0]), required(&env, CORE_PROMETHEUS_TYPE, false));
    assert_eq!(dss[0]["secureJsonFields"], json!({}));
    // AND the run used one token, which it deleted
    assert_eq!(env.live_tokens(), Vec::<Value>::new());
    assert_eq!(env.emulator_calls("CreateWorkspaceServiceAccountToken"), created_before + 1);
    assert_eq!(
        env.emulator_calls("DeleteWorkspaceServiceAccountToken"),
        env.emulator_calls("CreateWorkspaceServiceAccountToken")
    );

    // WHEN it runs again
    let (again, _) = env.datasource(&env.state).await.expect("second run");

    // THEN nothing is written to the data source, the service account is reused, no token lives
    assert_eq!(again.action, "unchanged");
    assert!(again.drift.is_empty());
    assert!(!again.service_account_created);
    assert_eq!(env.emulator_calls("updateDataSourceByUID"), 0);
    assert_eq!(env.emulator_calls("addDataSource"), 1);
    assert_eq!(env.emulator_calls("CreateWorkspaceServiceAccount"), 1);
    assert_eq!(env.live_tokens(), Vec::<Value>::new());
    // AND no key appears in the outputs or the SSM parameters
    assert_no_secret("outputs", &serde_json::to_string(&json!([out, again])).unwrap());
    assert_no_secret("SSM", &env.all_ssm_values().await);

    // WHEN the deployment is deleted (the workspace is ours)
    let del_state = env.with_input(json!({"action": "delete"}));
    let ctx = Ctx::new(&env.clients, &del_state).await.unwrap();
    let deleted = datasource::delete(&ctx, &del_state).await.expect("delete");

    // THEN nothing is done here: the workspace's own deletion takes both with it
    assert_eq!(deleted.deleted, Vec::<String>::new());
    assert_eq!(env.datasources().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_12_4_workspace_gets_the_plugin_type_and_the_default_flag() {
    // GIVEN an applied deployment with a Grafana 12.4 workspace that wants the default data source
    let env = provision(json!({"version": "12.4", "defaultDatasource": true})).await;

    // WHEN the datasource step runs
    let (out, _) = env.datasource(&env.state).await.expect("datasource");

    // THEN the data source has the plugin type and is the default, healthy; no token is left
    assert_eq!(out.datasource_type, AMP_PLUGIN_TYPE);
    let dss = env.datasources();
    assert_eq!(dss.len(), 1);
    assert_eq!(as_created(&dss[0]), required(&env, AMP_PLUGIN_TYPE, true));
    assert_eq!(out.health.as_deref(), Some("Successfully queried the Prometheus API."));
    assert_eq!(env.live_tokens(), Vec::<Value>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_reads_drift_with_one_short_lived_token_and_apply_corrects_it() {
    // GIVEN a configured data source that someone broke by hand (the value people guess) and
    // gave an extra setting of their own
    let env = provision(json!({"version": "10.4"})).await;
    env.datasource(&env.state).await.expect("datasource");
    let uid = datasource::datasource_uid(DEPLOYMENT);
    let broken = env
        .stack
        .edit_datasource_by_hand(&env.clients, &env.ws_id(), &env.ws_endpoint(), &uid, |ds| {
            ds["jsonData"]["sigV4AuthType"] = json!("workspace-iam-role");
            ds["jsonData"]["timeInterval"] = json!("30s");
        })
        .await;
    let puts_before = env.emulator_calls("updateDataSourceByUID");

    // WHEN a plan runs with the same settings
    let tokens_before = env.emulator_calls("CreateWorkspaceServiceAccountToken");
    let deletes_before = env.emulator_calls("DeleteWorkspaceServiceAccountToken");
    let plan_state = env.with_input(json!({"action": "plan"}));
    let (planned, ctx) = env.datasource(&plan_state).await.expect("plan");

    // THEN it reports an update naming the drifted field with its live and desired values
    assert_eq!(planned.action, "update");
    assert_eq!(planned.drift, vec!["jsonData.sigV4AuthType: \"workspace-iam-role\" -> \"ec2_iam_role\"".to_string()]);
    let changes = ctx.plan.as_ref().unwrap().changes();
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(changes[0].action, "update");
    assert_eq!(changes[0].resource, format!("Grafana data source {uid}"));
    assert_eq!(
        changes[0].details,
        json!({"drift": {"jsonData.sigV4AuthType": {"live": "workspace-iam-role", "desired": "ec2_iam_role"}}})
    );
    // AND it read it with exactly one token of our service account, deleted again (not left to
    // expire), and changed nothing: no service account, no data source write
    assert_eq!(env.emulator_calls("CreateWorkspaceServiceAccountToken"), tokens_before + 1);
    assert_eq!(env.emulator_calls("DeleteWorkspaceServiceAccountToken"), deletes_before + 1);
    assert_eq!(env.stack.grafana_tokens(&env.ws_id(), true), Vec::<Value>::new());
    assert_eq!(env.emulator_calls("CreateWorkspaceServiceAccount"), 2, "ours (apply) and the hand editor's");
    assert_eq!(env.emulator_calls("updateDataSourceByUID"), puts_before);
    assert_eq!(env.datasources()[0]["jsonData"], broken["jsonData"]);
    assert_no_secret("plan", &serde_json::to_string(&json!([planned, changes])).unwrap());

    // WHEN a plan runs with different settings (the default flag)
    let plan_state =
        env.with_input(json!({"action": "plan", "grafana": {"version": "10.4", "defaultDatasource": true}}));
    let (planned, ctx) = env.datasource(&plan_state).await.expect("plan");

    // THEN it reports both the setting change and the hand-made drift, field by field
    let changes = ctx.plan.as_ref().unwrap().changes();
    assert_eq!(planned.action, "update");
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(
        changes[0].details,
        json!({"drift": {
            "isDefault": {"live": false, "desired": true},
            "jsonData.sigV4AuthType": {"live": "workspace-iam-role", "desired": "ec2_iam_role"}
        }})
    );
    assert_eq!(env.stack.grafana_tokens(&env.ws_id(), true), Vec::<Value>::new());

    // WHEN a plan runs where the Grafana workspace does not exist yet
    let tokens_before = env.emulator_calls("CreateWorkspaceServiceAccountToken");
    let mut fresh = env.with_input(json!({"action": "plan"}));
    fresh.grafana_workspace.as_mut().unwrap().workspace_id = KNOWN_AFTER_APPLY.to_string();
    let (planned, ctx) = env.datasource(&fresh).await.expect("plan");

    // THEN it plans the service account and the data source, with the data source's exact JSON,
    // and makes no token
    let changes = ctx.plan.as_ref().unwrap().changes();
    assert_eq!(planned.action, "create");
    assert_eq!(changes.iter().map(|c| c.action.as_str()).collect::<Vec<_>>(), ["create", "create"]);
    assert_eq!(changes[1].details, required(&env, CORE_PROMETHEUS_TYPE, false));
    assert_eq!(env.emulator_calls("CreateWorkspaceServiceAccountToken"), tokens_before);

    // WHEN a plan runs while the workspace is not ACTIVE (its Grafana cannot be read)
    let mut updating = env.with_input(json!({"action": "plan"}));
    updating.grafana_workspace.as_mut().unwrap().status = "UPDATING".to_string();
    let (planned, ctx) = env.datasource(&updating).await.expect("plan");

    // THEN it compares the settings with those apply recorded (the same: nothing known to
    // change), without a token
    assert_eq!(planned.action, "unknown");
    assert_eq!(ctx.plan.as_ref().unwrap().changes(), vec![]);
    assert_eq!(env.emulator_calls("CreateWorkspaceServiceAccountToken"), tokens_before);

    // WHEN apply runs again
    let (out, _) = env.datasource(&env.state).await.expect("datasource");

    // THEN the owned field is put back, the foreign setting kept, and the data source is healthy
    assert_eq!(out.action, "updated");
    assert_eq!(out.drift, vec!["jsonData.sigV4AuthType: \"workspace-iam-role\" -> \"ec2_iam_role\"".to_string()]);
    let ds = &env.datasources()[0];
    assert_eq!(ds["jsonData"]["sigV4AuthType"], "ec2_iam_role");
    assert_eq!(ds["jsonData"]["timeInterval"], "30s");
    assert_eq!(out.health.as_deref(), Some("Successfully queried the Prometheus API."));
    assert_eq!(env.live_tokens(), Vec::<Value>::new());

    // WHEN the data source is deleted by hand and a plan runs
    let (sa, tok, key) = env.own_token().await;
    let (status, body) =
        env.stack.grafana_api("DELETE", &env.ws_endpoint(), &format!("/api/datasources/uid/{uid}"), Some(&key), None);
    assert_eq!(status, 200, "{body}");
    env.revoke(&sa, &tok).await;
    let (planned, ctx) = env.datasource(&env.with_input(json!({"action": "plan"}))).await.expect("plan");

    // THEN it plans to create it again, with its exact JSON (the service account exists)
    let changes = ctx.plan.as_ref().unwrap().changes();
    assert_eq!(planned.action, "create");
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(changes[0].details, required(&env, CORE_PROMETHEUS_TYPE, false));
    assert_eq!(env.datasources(), Vec::<Value>::new());
    assert_eq!(env.stack.grafana_tokens(&env.ws_id(), true), Vec::<Value>::new());

    // WHEN our service account is deleted by hand and a plan runs
    let tokens_before = env.emulator_calls("CreateWorkspaceServiceAccountToken");
    env.clients
        .grafana
        .delete_workspace_service_account()
        .workspace_id(env.ws_id())
        .service_account_id(&sa)
        .send()
        .await
        .unwrap();
    let (planned, ctx) = env.datasource(&env.with_input(json!({"action": "plan"}))).await.expect("plan");

    // THEN it plans the service account and the data source, and neither creates the service
    // account nor makes a token (it has none to make one with)
    let changes = ctx.plan.as_ref().unwrap().changes();
    assert_eq!(planned.action, "create");
    assert!(planned.service_account_created);
    assert_eq!(changes.iter().map(|c| c.action.as_str()).collect::<Vec<_>>(), ["create", "create"]);
    assert_eq!(env.emulator_calls("CreateWorkspaceServiceAccountToken"), tokens_before);
    assert_eq!(env.emulator_calls("CreateWorkspaceServiceAccount"), 2);

    // WHEN apply runs
    let (out, _) = env.datasource(&env.state).await.expect("datasource");

    // THEN the service account and the data source are back, exactly as required
    assert_eq!(out.action, "created");
    assert!(out.service_account_created);
    assert_eq!(as_created(&env.datasources()[0]), required(&env, CORE_PROMETHEUS_TYPE, false));
    assert_eq!(env.live_tokens(), Vec::<Value>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_health_check_fails_the_step_with_grafanas_message_and_leaves_no_token() {
    // GIVEN an applied deployment whose AMP workspace was deleted behind our back
    let env = provision(json!({"version": "10.4"})).await;
    let amp_id = env.state.amp_workspace.as_ref().unwrap().workspace_id.clone();
    env.clients.amp.delete_workspace().workspace_id(&amp_id).send().await.unwrap();
    let deleted_before = env.emulator_calls("DeleteWorkspaceServiceAccountToken");

    // WHEN the datasource step runs
    let err = env.datasource(&env.state).await.expect_err("health must fail");

    // THEN it fails with Grafana's health message, and the run's token was deleted anyway
    assert_eq!(err.name(), "ResourceFailedError", "{err}");
    let msg = err.to_string();
    assert!(msg.contains("failed its health check"), "{msg}");
    assert!(msg.contains(&format!("workspace {amp_id} does not exist")), "{msg}");
    assert!(msg.contains("There was an error returned querying the Prometheus API."), "{msg}");
    assert_eq!(env.live_tokens(), Vec::<Value>::new());
    assert_eq!(env.emulator_calls("DeleteWorkspaceServiceAccountToken"), deleted_before + 1);
    assert_no_secret("error", &msg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_are_granted_once_and_a_per_entry_error_fails_the_step() {
    // GIVEN an applied deployment whose input names an admin user and an admin group
    let admins = json!({"users": [ADMIN_USER], "groups": [ADMIN_GROUP]});
    let env = provision(json!({"version": "10.4", "admins": admins})).await;

    // WHEN the datasource step runs twice
    let (first, _) = env.datasource(&env.state).await.expect("datasource");
    let (second, _) = env.datasource(&env.state).await.expect("again");

    // THEN both got ADMIN in one call (of the first run, or of the engine's apply if it already
    // ran this step), and the second run added nothing
    assert!(
        first.admins_added.is_empty()
            || first.admins_added == vec![format!("SSO_USER:{ADMIN_USER}"), format!("SSO_GROUP:{ADMIN_GROUP}")],
        "{first:#?}"
    );
    assert!(second.admins_added.is_empty());
    assert_eq!(env.emulator_calls("UpdatePermissions"), 1);
    let perms = env.clients.grafana.list_permissions().workspace_id(env.ws_id()).send().await.unwrap();
    let mut got: Vec<(String, String)> = perms
        .permissions()
        .iter()
        .map(|p| (p.user().unwrap().id().to_string(), p.role().as_str().to_string()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![(ADMIN_GROUP.to_string(), "ADMIN".to_string()), (ADMIN_USER.to_string(), "ADMIN".to_string())]
    );

    // WHEN a user Identity Center does not know is added to the input
    let (status, body) = http(
        "POST",
        env.stack.grafana.port,
        "/_emulator/config",
        Some(&json!({"unknownSsoIdPrefix": UNKNOWN_PREFIX}).to_string()),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let unknown = format!("{UNKNOWN_PREFIX}-0000-4000-8000-000000000001");
    let st = env.with_input(
        json!({"grafana": {"version": "10.4", "admins": {"users": [ADMIN_USER, unknown], "groups": [ADMIN_GROUP]}}}),
    );
    let err = env.datasource(&st).await.expect_err("the per-entry error must fail the step");

    // THEN the step fails naming the entry and Grafana's message, after only trying what was missing
    assert_eq!(err.name(), "AwsError", "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("SSO_USER {unknown}")), "{msg}");
    assert!(msg.contains("was not found"), "{msg}");
    assert!(msg.contains("1 of 1 grants failed"), "{msg}");
    assert_eq!(env.live_tokens(), Vec::<Value>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_removed_from_the_input_are_revoked_and_admins_we_did_not_grant_are_kept() {
    use aws_sdk_grafana::types::{Role, UpdateAction, UpdateInstruction, User, UserType};
    const FOREIGN: &str = "aaaaaaaa-0000-4000-8000-00000000f0f0";
    // GIVEN a deployment that granted ADMIN to a user and a group, and an admin granted by hand
    let env = provision(json!({"version": "10.4", "admins": {"users": [ADMIN_USER], "groups": [ADMIN_GROUP]}})).await;
    let hand = UpdateInstruction::builder()
        .action(UpdateAction::Add)
        .role(Role::Admin)
        .users(User::builder().id(FOREIGN).r#type(UserType::SsoUser).build().unwrap())
        .build()
        .unwrap();
    env.clients
        .grafana
        .update_permissions()
        .workspace_id(env.ws_id())
        .update_instruction_batch(hand)
        .send()
        .await
        .unwrap();
    async fn current(env: &Env) -> Vec<String> {
        let perms = env.clients.grafana.list_permissions().workspace_id(env.ws_id()).send().await.unwrap();
        let mut got: Vec<String> = perms
            .permissions()
            .iter()
            .filter(|p| p.role() == &Role::Admin)
            .map(|p| p.user().unwrap().id().to_string())
            .collect();
        got.sort();
        got
    }

    // WHEN the input lists the hand-made admin too, then drops it and the user
    let listed = env.with_input(
        json!({"grafana": {"version": "10.4", "admins": {"users": [ADMIN_USER, FOREIGN], "groups": [ADMIN_GROUP]}}}),
    );
    let (out, _) = env.datasource(&listed).await.expect("listed");
    assert!(out.admins_added.is_empty(), "{out:#?}");
    let dropped = env.with_input(json!({"grafana": {"version": "10.4", "admins": {"groups": [ADMIN_GROUP]}}}));
    let (out, _) = env.datasource(&dropped).await.expect("dropped");

    // THEN only the user we granted is revoked: the hand-made admin and the group stay
    assert_eq!(out.admins_revoked, vec![format!("SSO_USER:{ADMIN_USER}")], "{out:#?}");
    let mut want = vec![ADMIN_GROUP.to_string(), FOREIGN.to_string()];
    want.sort();
    assert_eq!(current(&env).await, want);

    // WHEN run again THEN nothing more is revoked
    let (again, _) = env.datasource(&dropped).await.expect("again");
    assert!(again.admins_revoked.is_empty() && again.admins_added.is_empty(), "{again:#?}");
    assert_eq!(current(&env).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_an_adopted_workspace_delete_removes_our_data_source_and_service_account() {
    use aws_sdk_grafana::types::{AccountAccessType, AuthenticationProviderTypes, PermissionType};
    // GIVEN a Grafana workspace made by hand with the deployment's name, adopted and configured by apply
    let stack = FullStack::start(&StackOptions::default());
    let clients = stack.clients().await.with_grafana_api_url(stack.endpoint());
    seed::seed(&clients, "dr-eks", "dr-core-irsa", NS).await;
    let made = clients
        .grafana
        .create_workspace()
        .workspace_name(DEPLOYMENT)
        .account_access_type(AccountAccessType::CurrentAccount)
        .authentication_providers(AuthenticationProviderTypes::AwsSso)
        .permission_type(PermissionType::CustomerManaged)
        .workspace_role_arn("arn:aws:iam::123456789012:role/someone-elses")
        .grafana_version("10.4")
        .send()
        .await
        .unwrap();
    let ws_id = made.workspace().unwrap().id().to_string();
    let state = engine::run(&clients, input(json!({"version": "10.4"})), &fast_wait()).await.expect("apply");
    assert_eq!(state.grafana_workspace.as_ref().unwrap().workspace_id, ws_id);
    assert!(state.grafana_workspace.as_ref().unwrap().adopted);
    let env = Env { stack, clients, state };
    env.datasource(&env.state).await.expect("datasource");
    assert_eq!(env.datasources().len(), 1);

    // WHEN the deployment's delete runs this step, twice
    let del_state = env.with_input(json!({"action": "delete"}));
    let ctx = Ctx::new(&env.clients, &del_state).await.unwrap();
    let first = datasource::delete(&ctx, &del_state).await.expect("delete");
    let tokens_after_first = env.emulator_calls("CreateWorkspaceServiceAccountToken");
    let second = datasource::delete(&ctx, &del_state).await.expect("delete again");

    // THEN our data source and service account are gone from the kept workspace, no token lives,
    // and the second delete had nothing to do
    let uid = datasource::datasource_uid(DEPLOYMENT);
    let name = grafana_api::service_account_name(DEPLOYMENT);
    assert_eq!(first.deleted, vec![format!("{ws_id}: data source {uid}"), format!("{ws_id}: service account {name}")]);
    assert_eq!(second.deleted, Vec::<String>::new());
    assert_eq!(env.datasources(), Vec::<Value>::new());
    let sas = env.clients.grafana.list_workspace_service_accounts().workspace_id(&ws_id).send().await.unwrap();
    assert!(sas.service_accounts().iter().all(|s| s.name() != name));
    assert_eq!(env.live_tokens(), Vec::<Value>::new());
    assert_eq!(env.emulator_calls("CreateWorkspaceServiceAccountToken"), tokens_after_first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_then_names_what_was_removed_out_of_band_and_warn_only_reports() {
    // GIVEN an applied deployment
    let env = provision(json!({"version": "10.4"})).await;

    // WHEN verify runs
    let out = env.verify(&env.state).await.expect("verify");

    // THEN every check passed, simulated by IAM (the local stack answers it as IAM does, moto
    // lacks it), and the result is in SSM
    assert_eq!(out.status, "passed", "{out:#?}");
    assert_eq!(out.mode, "fail");
    assert_eq!(out.policy_method, verify::METHOD_SIMULATE);
    assert_eq!(out.policy_method_note, None, "{out:#?}");
    let names: Vec<&str> = out.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "irsa-role-policy",
            "grafana-role-policy",
            "irsa-trust-collector",
            "irsa-trust-preserved",
            "remote-write-probe"
        ]
    );
    assert!(out.checks.iter().all(|c| c.passed));
    let (stored, version) = env.ssm("verification").await.expect("verification parameter");
    assert_eq!(serde_json::from_str::<Value>(&stored).unwrap(), serde_json::to_value(&out).unwrap());
    // AND the probe sample is in Prometheus (AMP's data plane)
    let (status, body) = http(
        "GET",
        env.stack.prometheus.server.port,
        &format!("/api/v1/query?query=o11y_provisioner_probe%7Bdeployment%3D%22{DEPLOYMENT}%22%7D"),
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let result: Value = serde_json::from_str(&body).unwrap();
    // one sample per verification run: the apply's own (engine::run ends with verify) and this one
    assert_eq!(result["data"]["result"].as_array().unwrap().len(), 2, "{body}");

    // WHEN it runs again on the unchanged deployment
    let again = env.verify(&env.state).await.expect("verify again");
    // THEN the same result, and the parameter is not rewritten
    assert_eq!(again, out);
    assert_eq!(env.ssm("verification").await.unwrap().1, version);

    // WHEN the write policy is detached out of band
    let wp = env.state.write_policy.as_ref().unwrap().policy_arn.clone();
    env.clients.iam.detach_role_policy().role_name("dr-core-irsa").policy_arn(&wp).send().await.unwrap();
    let err = env.verify(&env.state).await.expect_err("must fail");

    // THEN verify fails saying what is missing, and SSM holds the failed result
    assert_eq!(err.name(), "ResourceFailedError", "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "verification failed: irsa-role-policy: role dr-core-irsa is not allowed aps:RemoteWrite on arn:aws:aps:"
        ),
        "{msg}"
    );
    assert!(msg.contains("logs:PutLogEvents") && msg.contains("xray:PutTraceSegments"), "{msg}");
    assert!(msg.contains("attach the write policy dr-prod-us-east-1-observability-write"), "{msg}");
    assert!(!msg.contains("grafana-role-policy") && !msg.contains("irsa-trust"), "{msg}");
    let stored: Value = serde_json::from_str(&env.ssm("verification").await.unwrap().0).unwrap();
    assert_eq!(stored["status"], "failed");
    env.clients.iam.attach_role_policy().role_name("dr-core-irsa").policy_arn(&wp).send().await.unwrap();

    // WHEN our trust statement is removed out of band
    let with_ours = env.irsa_trust().await;
    let added = env.state.irsa_trust.as_ref().unwrap().added_statement.clone().unwrap();
    env.set_irsa_trust(&trust::remove(&with_ours, &added)).await;
    let err = env.verify(&env.state).await.expect_err("must fail");

    // THEN verify fails naming the collector's service account
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "verification failed: irsa-trust-collector: the trust policy of role dr-core-irsa does not admit \
             system:serviceaccount:{NS}:observability-collector via arn:aws:iam::"
        )),
        "{msg}"
    );

    // WHEN instead only our statement is left (the original principal's statement removed)
    env.set_irsa_trust(&json!({"Version": "2012-10-17", "Statement": [added]})).await;
    let err = env.verify(&env.state).await.expect_err("must fail");

    // THEN verify fails naming the principal that lost its trust
    let msg = err.to_string();
    assert!(msg.contains("irsa-trust-preserved: the trust policy of role dr-core-irsa no longer admits"), "{msg}");
    assert!(msg.contains(&format!("system:serviceaccount:{NS}:app via")), "{msg}");
    assert!(!msg.contains("irsa-trust-collector"), "{msg}");

    // WHEN the same runs with "verify": "warn"
    let warn = env.verify(&env.with_input(json!({"verify": "warn"}))).await.expect("warn succeeds");

    // THEN it succeeds and reports the failure, in the output and in SSM
    assert_eq!(warn.status, "failed");
    assert_eq!(warn.mode, "warn");
    assert_eq!(warn.failures.len(), 1, "{warn:#?}");
    assert!(warn.failures[0].starts_with("irsa-trust-preserved: "), "{warn:#?}");
    let stored: Value = serde_json::from_str(&env.ssm("verification").await.unwrap().0).unwrap();
    assert_eq!(stored, serde_json::to_value(&warn).unwrap());
    env.set_irsa_trust(&with_ours).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_iam_cannot_simulate_verify_evaluates_the_documents_and_says_so() {
    // GIVEN an applied deployment, on an endpoint that lacks iam:SimulatePrincipalPolicy (a bare
    // HTTP 500 with no AWS error code, as moto answers)
    let env = provision(json!({"version": "10.4"})).await;
    let faults =
        json!({"rate": 1.0, "kinds": ["absent"], "services": ["iam"], "operations": ["SimulatePrincipalPolicy"]});
    let (status, body) = env.stack.router_control("POST", "/_router/faults", &faults.to_string());
    assert_eq!(status, 200, "{body}");

    // WHEN verify runs
    let out = env.verify(&env.state).await.expect("verify");

    // THEN it passed by its own evaluation of the roles' documents, and says why
    assert_eq!(out.status, "passed", "{out:#?}");
    assert_eq!(out.policy_method, verify::METHOD_EVALUATE);
    assert!(out.policy_method_note.as_deref().unwrap_or_default().contains("SimulatePrincipalPolicy"), "{out:#?}");

    // AND with the write policy detached, that evaluation fails as the simulation does
    let wp = env.state.write_policy.as_ref().unwrap().policy_arn.clone();
    env.clients.iam.detach_role_policy().role_name("dr-core-irsa").policy_arn(&wp).send().await.unwrap();
    let err = env.verify(&env.state).await.expect_err("must fail");
    env.stack.router_control("DELETE", "/_router/faults", "{}");
    let msg = err.to_string();
    assert!(msg.contains("irsa-role-policy: role dr-core-irsa is not allowed aps:RemoteWrite"), "{msg}");
    env.clients.iam.attach_role_policy().role_name("dr-core-irsa").policy_arn(&wp).send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_appears_in_outputs_parameters_or_the_function_logs() {
    // GIVEN an applied deployment with admins
    let env = provision(json!({"version": "12.4", "admins": {"users": [ADMIN_USER]}})).await;

    // WHEN both steps, and a plan of the data source, run in a separate process with the
    // functions' JSON logging at info level
    let child = serde_json::to_string(&json!({"endpoint": env.stack.endpoint(), "state": env.state})).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process_runs_both_steps", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, child)
        .env("RUST_LOG", "info")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();

    // THEN they succeed, logging what they did (the token's id and name, never its key)
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    // (one token for apply, one for the plan)
    assert_eq!(stdout.matches("Grafana service-account token created").count(), 2, "{stdout}");
    assert_eq!(stdout.matches("Grafana service-account token deleted").count(), 2, "{stdout}");
    let outputs = stdout.lines().find_map(|l| l.strip_prefix("CHILD-OUTPUT ")).expect("the child's outputs");
    let outputs: Value = serde_json::from_str(outputs).unwrap();
    assert_eq!(outputs["verify"]["status"], "passed", "{outputs:#}");
    assert_eq!(outputs["datasource"]["type"], AMP_PLUGIN_TYPE, "{outputs:#}");
    assert_eq!(outputs["plan"]["datasource"]["action"], "none", "{outputs:#}");
    // AND no key, bearer header or signature is in the logs, the outputs or the SSM parameters
    assert_no_secret("child stdout", &stdout);
    assert_no_secret("child stderr", &stderr);
    assert_no_secret("SSM", &env.all_ssm_values().await);
    assert_eq!(env.live_tokens(), Vec::<Value>::new());
    // AND the emulator saw the run's token used, and deleted afterwards
    let all = env.stack.grafana_emulator_control(&format!("/_emulator/tokens?workspaceId={}&all=true", env.ws_id()));
    assert_eq!(all["tokens"], json!([]), "{all:#}");
}

/// Not a test on its own: the child process of
/// [`no_key_appears_in_outputs_parameters_or_the_function_logs`] (does nothing without
/// [`CHILD_ENV`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stdout)]
async fn child_process_runs_both_steps() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let spec: Value = serde_json::from_str(&spec).unwrap();
    o11y_shared::lambda::init_tracing();
    let endpoint = spec["endpoint"].as_str().unwrap().to_string();
    let clients = Clients::new(&sdk_config_for(&endpoint).await).with_grafana_api_url(endpoint);
    let state: ProvisionState = serde_json::from_value(spec["state"].clone()).unwrap();
    let ctx = Ctx::new(&clients, &state).await.unwrap();
    let ds = datasource::run(&ctx, &state).await.unwrap();
    let v = verify::run(&ctx, &state).await.unwrap();
    // and a plan of the data source, which reads it with a token of its own
    let mut plan_state = state.clone();
    plan_state.input["action"] = json!("plan");
    let plan_ctx = Ctx::new(&clients, &plan_state).await.unwrap();
    let planned = datasource::run(&plan_ctx, &plan_state).await.unwrap();
    let plan = plan_ctx.plan.as_ref().unwrap().changes();
    println!(
        "CHILD-OUTPUT {}",
        json!({"datasource": ds, "verify": v, "plan": {"datasource": planned, "changes": plan}})
    );
}

/// The Deny corpus (`shared/tests/fixtures/deny/corpus.json`), on a live deployment: each Deny
/// shape added to the IRSA role's converged trust policy, then verify. Where IAM denies the
/// collector, or where the evaluator cannot decide, verify must fail on `irsa-trust-collector`;
/// where the Deny does not apply to the collector, that check passes. The result says which
/// evaluator decided the policy checks (IAM's simulation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_fails_for_every_deny_shape_iam_would_deny_or_we_cannot_decide() {
    let env = provision(json!({"version": "10.4"})).await;
    let pre = env.state.preflight.clone().unwrap();
    let issuer = o11y_shared::names::issuer_host_path(&pre.oidc_issuer).to_string();
    let other_issuer = "oidc.eks.eu-west-1.amazonaws.com/id/AAAABBBBCCCCDDDDEEEEFFFF00001111";
    let text = std::fs::read_to_string(o11y_tests::repo_root().join("shared/tests/fixtures/deny/corpus.json"))
        .unwrap()
        .replace("{{PROVIDER}}", &pre.oidc_provider_arn)
        .replace("{{OTHER_PROVIDER}}", &format!("arn:aws:iam::{}:oidc-provider/{other_issuer}", pre.account_id))
        .replace("{{ISSUER_UPPER}}", &issuer.to_uppercase())
        .replace("{{OTHER_ISSUER}}", other_issuer)
        .replace("{{ISSUER}}", &issuer)
        .replace("{{NAMESPACE}}", NS);
    let corpus: Value = serde_json::from_str(&text).unwrap();
    let converged = env.irsa_trust().await;
    let mut wrong = Vec::new();
    let (mut exercised, mut refused_by_iam) = (0, 0);
    for case in corpus["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let mut doc = converged.clone();
        doc["Statement"].as_array_mut().unwrap().push(case["statement"].clone());
        // IAM refuses some shapes in a trust policy (an action outside sts:AssumeRole*): then no
        // role can hold them, and the unit corpus test covers the evaluator alone
        let set = env.clients.iam.update_assume_role_policy().role_name("dr-core-irsa");
        if let Err(e) = set.policy_document(doc.to_string()).send().await {
            assert!(format!("{e:?}").contains("MalformedPolicyDocument"), "{name}: {e:?}");
            refused_by_iam += 1;
            continue;
        }
        exercised += 1;
        let got = env.verify(&env.state).await;
        let must_pass = case["expect"] == "passes";
        match (&got, must_pass) {
            (Ok(out), true) => {
                // the policy checks simulated (the local stack answers it as IAM does)
                if out.evaluator != verify::METHOD_SIMULATE {
                    wrong.push(format!("{name}: evaluator {:?}", out.evaluator));
                }
            }
            (Err(e), false) if e.to_string().contains("irsa-trust-collector") => {}
            // the collector is admitted; the Deny may still block another principal (the
            // application's own service account): then irsa-trust-preserved fails, rightly
            (Err(e), true) if !e.to_string().contains("irsa-trust-collector") => {}
            (other, _) => wrong.push(format!("{name} (expect {}): {other:?}", case["expect"])),
        }
    }
    env.set_irsa_trust(&converged).await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(exercised >= 20, "only {exercised} shapes reached verify ({refused_by_iam} refused by IAM)");
}
