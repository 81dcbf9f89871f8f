//! AWS's timing where it shapes the product, on the local stack: an AMP workspace stays
//! `CREATING` for a while after its creation (`--amp-creating-seconds`, router), and a new IAM
//! role cannot be assumed for a while (`--iam-propagation-seconds`: STS for the functions, in
//! `authz.py`; Grafana for a data source's health check, in the emulator). The stack's defaults
//! are 0; `scripts/test` also runs the end-to-end suite with both non-zero
//! (`O11Y_AMP_CREATING_SECONDS`, `O11Y_IAM_PROPAGATION_SECONDS`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use std::time::{Duration, Instant};

use o11y_tests::seed;
use o11y_tests::stack::{start_deployed, StackOptions};
use serde_json::{json, Value};

fn minimal() -> Value {
    json!({"deploymentName": "dr-prod", "cluster": {"name": "dr-eks"}, "namespace": "dr-core", "irsaRoleName": "dr-core-irsa"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amp_workspace_is_creating_for_the_configured_time_and_the_run_waits_until_it_is_active() {
    // GIVEN a stack whose AMP workspaces stay CREATING for 3 s
    let opts = StackOptions { amp_creating_seconds: 3.0, ..StackOptions::authorized() };
    let (stack, clients, _, sm) = start_deployed(&opts).await;

    // WHEN a workspace is created THEN create, describe and list answer CREATING
    let started = Instant::now();
    let created = clients.amp.create_workspace().alias("timing-probe").send().await.unwrap();
    let id = created.workspace_id().to_string();
    assert_eq!(created.status().map(|s| s.status_code().as_str()), Some("CREATING"));
    let described = clients.amp.describe_workspace().workspace_id(&id).send().await.unwrap();
    assert_eq!(described.workspace().and_then(|w| w.status()).map(|s| s.status_code().as_str()), Some("CREATING"));
    let listed = clients.amp.list_workspaces().alias("timing-probe").send().await.unwrap();
    assert_eq!(listed.workspaces()[0].status().map(|s| s.status_code().as_str()), Some("CREATING"));
    assert!(started.elapsed() < Duration::from_secs(3), "the probe itself was too slow to see CREATING");
    // AND ACTIVE once the time has passed
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(started.elapsed()) + Duration::from_millis(300)).await;
    let described = clients.amp.describe_workspace().workspace_id(&id).send().await.unwrap();
    assert_eq!(described.workspace().and_then(|w| w.status()).map(|s| s.status_code().as_str()), Some("ACTIVE"));

    // WHEN a deployment is applied
    stack.reset_requests();
    let out = stack.execute(&sm, "timing-amp", &minimal()).await;

    // THEN it succeeds, having polled its new workspace until ACTIVE
    assert_eq!(out.status, "SUCCEEDED", "{out:?}");
    let ws_id = out.output.as_ref().and_then(|o| o["ampWorkspaceId"].as_str()).unwrap().to_string();
    let describes = stack
        .requests()
        .iter()
        .filter(|e| e["operation"] == format!("GET /workspaces/{ws_id}").as_str() && e["principal"].is_string())
        .count();
    assert!(describes >= 2, "the new workspace was described {describes} times: no wait for CREATING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grafana_role_younger_than_iam_propagation_fails_the_health_check_until_it_propagates() {
    // GIVEN a stack where a new role can be assumed only after 6 s
    let opts = StackOptions { iam_propagation_seconds: 6.0, ..StackOptions::default() };
    let (stack, _clients, _, sm) = start_deployed(&opts).await;

    // WHEN a fresh deployment is applied (its Grafana role is created seconds before the data
    // source's health check)
    let out = stack.execute(&sm, "timing-iam", &minimal()).await;

    // THEN it succeeds
    assert_eq!(out.status, "SUCCEEDED", "{out:?}");
    // AND Grafana first refused to assume the role, then the retried check passed
    let log = stack.grafana_emulator_control("/_emulator/requests?plane=grafana");
    let health: Vec<&str> = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operation"] == "checkDatasourceHealthWithUID")
        .filter_map(|e| e["health"].as_str())
        .collect();
    assert_eq!(health.first(), Some(&"ERROR"), "{health:?}");
    assert_eq!(health.last(), Some(&"OK"), "{health:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vended_account_role_younger_than_iam_propagation_cannot_be_assumed_yet() {
    // GIVEN a stack where a new role can be assumed only after 5 s, and an account vended just now
    let opts = StackOptions { iam_propagation_seconds: 5.0, ..StackOptions::authorized() };
    let (stack, hub, _, _sm) = start_deployed(&opts).await;
    seed::vending_defaults(
        &hub,
        &json!({"cluster": {"name": "{accountName}-eks"}, "namespace": "obs", "irsaRoleName": "obs-irsa"}),
    )
    .await;
    let account = "210987654321";
    let vended = Instant::now();
    let target = seed::vended_account(&hub, o11y_tests::ACCOUNT_ID, account).await;
    seed::seed(&target, "t-eks", "obs-irsa", "obs").await;

    // WHEN the account is vended at once THEN STS refuses the young role: the run fails, naming it
    let event = json!({"accountId": account, "region": "us-east-1", "accountName": "t"});
    let out = o11y_tests::cfn::invoke(&stack, "vending-hook", &event);
    assert_eq!(out["outcome"], "started", "{out}");
    let d = o11y_tests::cfn::wait_execution(&stack, out["executionName"].as_str().unwrap(), 600).await;
    assert!(vended.elapsed() < Duration::from_secs(5), "too slow to meet the young role");
    assert_eq!(d.status().as_str(), "FAILED");
    let cause = d.cause().unwrap_or_default();
    assert!(cause.contains("sts:AssumeRole") && cause.contains("AWSControlTowerExecution"), "{cause}");
    assert!(
        stack.requests().iter().any(|e| e["denied"].as_str().is_some_and(|m| m.contains("IAM has not propagated"))),
        "the router's log names the cause"
    );

    // WHEN the same account is vended again once the role has propagated THEN it succeeds
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(vended.elapsed()) + Duration::from_millis(300)).await;
    let again = json!({"accountId": account, "region": "us-east-1", "accountName": "t", "requestId": "second"});
    let out = o11y_tests::cfn::invoke(&stack, "vending-hook", &again);
    assert_eq!(out["outcome"], "started", "{out}");
    let d = o11y_tests::cfn::wait_execution(&stack, out["executionName"].as_str().unwrap(), 600).await;
    assert_eq!(d.status().as_str(), "SUCCEEDED", "{:?}", d.cause());
}
