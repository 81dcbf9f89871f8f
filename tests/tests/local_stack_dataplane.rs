//! The local stack's data planes, through the router as the functions reach them: the Grafana
//! HTTP API of a workspace (data sources, their health, service-account token auth) at the
//! Grafana emulator by `Host`, and AMP's data plane (`/workspaces/<id>/api/...`) at Prometheus by
//! path, while AMP's control plane under the same `/workspaces/<id>` prefix stays at moto.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use o11y_shared::remote_write::{write_request_body, Sample};
use o11y_tests::stack::{function_env, FullStack, StackOptions, GRAFANA_API_URL_ENV};
use o11y_tests::{http, http_bytes, sdk_config_for, REGION};
use serde_json::{json, Value};

const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/dp-grafana";

/// A Grafana workspace, ACTIVE, with the workspace role set.
struct GrafanaWorkspace {
    id: String,
    endpoint: String,
}

async fn grafana_client(stack: &FullStack) -> aws_sdk_grafana::Client {
    aws_sdk_grafana::Client::new(&sdk_config_for(&stack.endpoint()).await)
}

async fn amp_client(stack: &FullStack) -> aws_sdk_amp::Client {
    aws_sdk_amp::Client::new(&sdk_config_for(&stack.endpoint()).await)
}

async fn active_grafana_workspace(stack: &FullStack, name: &str, version: &str) -> GrafanaWorkspace {
    use aws_sdk_grafana::types::{AccountAccessType, AuthenticationProviderTypes, PermissionType};
    let g = grafana_client(stack).await;
    let ws = g
        .create_workspace()
        .workspace_name(name)
        .account_access_type(AccountAccessType::CurrentAccount)
        .authentication_providers(AuthenticationProviderTypes::AwsSso)
        .permission_type(PermissionType::CustomerManaged)
        .workspace_role_arn(ROLE_ARN)
        .grafana_version(version)
        .send()
        .await
        .unwrap();
    let id = ws.workspace().unwrap().id().to_string();
    // The stack's Grafana delay is 0: the next Describe sees ACTIVE.
    let d = g.describe_workspace().workspace_id(&id).send().await.unwrap();
    let d = d.workspace().unwrap();
    assert_eq!(d.status().as_str(), "ACTIVE");
    GrafanaWorkspace { id, endpoint: d.endpoint().to_string() }
}

/// A service account with `role` and one token; returns (service account id, token id, key).
async fn service_account_token(
    stack: &FullStack,
    ws: &GrafanaWorkspace,
    name: &str,
    role: aws_sdk_grafana::types::Role,
    seconds_to_live: i32,
) -> (String, String, String) {
    let g = grafana_client(stack).await;
    let sa =
        g.create_workspace_service_account().workspace_id(&ws.id).name(name).grafana_role(role).send().await.unwrap();
    let tok = g
        .create_workspace_service_account_token()
        .workspace_id(&ws.id)
        .service_account_id(sa.id())
        .name(format!("{name}-token"))
        .seconds_to_live(seconds_to_live)
        .send()
        .await
        .unwrap();
    let t = tok.service_account_token().unwrap();
    (sa.id().to_string(), t.id().to_string(), t.key().to_string())
}

/// An AMP workspace in moto (through the router); returns (id, prometheusEndpoint).
async fn amp_workspace(stack: &FullStack, alias: &str) -> (String, String) {
    let amp = amp_client(stack).await;
    let id = amp.create_workspace().alias(alias).send().await.unwrap().workspace_id().to_string();
    let d = amp.describe_workspace().workspace_id(&id).send().await.unwrap();
    let endpoint = d.workspace().unwrap().prometheus_endpoint().unwrap().to_string();
    (id, endpoint)
}

/// The data source the product will create for AMP with the workspace IAM role.
fn amp_datasource(name: &str, url: &str, auth_type: &str) -> Value {
    json!({
        "name": name, "type": "prometheus", "access": "proxy", "url": url, "isDefault": true,
        "jsonData": {"httpMethod": "POST", "sigV4Auth": true, "sigV4AuthType": auth_type, "sigV4Region": REGION},
        "secureJsonData": {"httpHeaderValue1": "not-echoed-secret"}
    })
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_datasource_crud_and_health_through_the_router() {
    // GIVEN the stack, an AMP workspace in moto, an ACTIVE Grafana 10.4 workspace with its role,
    // and an ADMIN service-account token
    let stack = FullStack::start(&StackOptions::default());
    let (amp_id, prometheus_endpoint) = amp_workspace(&stack, "dp-amp").await;
    assert!(prometheus_endpoint.ends_with(&format!("/workspaces/{amp_id}/")), "{prometheus_endpoint}");
    let ws = active_grafana_workspace(&stack, "dp-grafana", "10.4").await;
    let (_, _, key) =
        service_account_token(&stack, &ws, "provisioner", aws_sdk_grafana::types::Role::Admin, 3600).await;
    let api = |method: &str, path: &str, body: Option<&Value>| {
        let body = body.map(Value::to_string);
        let (status, text) = stack.grafana_api(method, &ws.endpoint, path, Some(&key), body.as_deref());
        (status, if text.is_empty() { Value::Null } else { json_of(&text) })
    };

    // WHEN a data source for AMP with the workspace IAM role is created through the router
    let (status, created) =
        api("POST", "/api/datasources", Some(&amp_datasource("amp", &prometheus_endpoint, "ec2_iam_role")));

    // THEN Grafana's answer: the data source with a uid, version 1, secrets only as field names
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["message"], "Datasource added");
    assert_eq!(created["name"], "amp");
    let uid = created["datasource"]["uid"].as_str().unwrap().to_string();
    assert_eq!(created["datasource"]["version"], 1);
    assert_eq!(created["datasource"]["secureJsonFields"], json!({"httpHeaderValue1": true}));
    assert!(!created.to_string().contains("not-echoed-secret"), "{created}");

    // WHEN it is read back by uid and in the list
    let (status, got) = api("GET", &format!("/api/datasources/uid/{uid}"), None);
    let (list_status, list) = api("GET", "/api/datasources", None);

    // THEN it is the same data source
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["url"], prometheus_endpoint.as_str());
    assert_eq!(got["jsonData"]["sigV4AuthType"], "ec2_iam_role");
    assert_eq!(list_status, 200);
    assert_eq!(list.as_array().unwrap().iter().map(|d| d["uid"].clone()).collect::<Vec<_>>(), vec![json!(uid)]);

    // WHEN a second data source with the same name is created
    let (status, dup) =
        api("POST", "/api/datasources", Some(&amp_datasource("amp", &prometheus_endpoint, "ec2_iam_role")));
    // THEN Grafana's conflict
    assert_eq!((status, dup), (409, json!({"message": "data source with the same name already exists"})));

    // WHEN its health is checked
    let (status, health) = api("GET", &format!("/api/datasources/uid/{uid}/health"), None);
    // THEN OK: the AMP workspace exists in moto and Prometheus answered Grafana's query
    assert_eq!((status, health), (200, json!({"status": "OK", "message": "Successfully queried the Prometheus API."})));

    // WHEN it is updated with the value people guess for "Workspace IAM Role"
    let mut wrong = amp_datasource("amp", &prometheus_endpoint, "workspace-iam-role");
    wrong["version"] = json!(1);
    let (status, updated) = api("PUT", &format!("/api/datasources/uid/{uid}"), Some(&wrong));
    let (h_status, health) = api("GET", &format!("/api/datasources/uid/{uid}/health"), None);

    // THEN the update saves (version 2) but the health check fails, naming the value
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["message"], "Datasource updated");
    assert_eq!(updated["datasource"]["version"], 2);
    assert_eq!(h_status, 400, "{health}");
    assert_eq!(health["status"], "ERROR");
    assert!(health["message"].as_str().unwrap().contains("workspace-iam-role"), "{health}");

    // WHEN it is put back right, then the AMP workspace is deleted in moto
    let (status, _) = api(
        "PUT",
        &format!("/api/datasources/uid/{uid}"),
        Some(&amp_datasource("amp", &prometheus_endpoint, "ec2_iam_role")),
    );
    assert_eq!(status, 200);
    let (ok_status, _) = api("GET", &format!("/api/datasources/uid/{uid}/health"), None);
    amp_client(&stack).await.delete_workspace().workspace_id(&amp_id).send().await.unwrap();
    let (gone_status, gone) = api("GET", &format!("/api/datasources/uid/{uid}/health"), None);

    // THEN health follows the AMP backend: OK, then ERROR
    assert_eq!(ok_status, 200);
    assert_eq!(gone_status, 400, "{gone}");
    assert_eq!(gone["status"], "ERROR");

    // AND the emulator recorded the calls with their auth result, and keeps no secret in sight
    let log = stack.grafana_emulator_control(&format!("/_emulator/requests?plane=grafana&workspaceId={}", ws.id));
    let entries = log["requests"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["operation"] == "checkDatasourceHealthWithUID"
            && e["uid"] == uid.as_str()
            && e["auth"] == "ok"
            && e["health"] == "OK"),
        "{log:#}"
    );
    assert!(!log.to_string().contains(&key), "the request log must not hold the token");
    let dump = stack.grafana_emulator_control(&format!("/_emulator/datasources?workspaceId={}", ws.id));
    assert_eq!(dump["datasources"].as_array().unwrap().len(), 1, "{dump:#}");
    assert!(!dump.to_string().contains("not-echoed-secret"));

    // WHEN it is deleted
    let (status, deleted) = api("DELETE", &format!("/api/datasources/uid/{uid}"), None);
    let (after, _) = api("GET", &format!("/api/datasources/uid/{uid}"), None);
    // THEN it is gone
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["message"], "Data source deleted");
    assert_eq!(after, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_api_rejects_expired_deleted_and_foreign_tokens() {
    use aws_sdk_grafana::types::Role;
    // GIVEN two workspaces and tokens: a short-lived one, one to delete, one of the other workspace
    let stack = FullStack::start(&StackOptions::default());
    let ws = active_grafana_workspace(&stack, "dp-tokens", "10.4").await;
    let other = active_grafana_workspace(&stack, "dp-other", "10.4").await;
    let (_, _, short) = service_account_token(&stack, &ws, "short", Role::Admin, 1).await;
    let (sa_id, tok_id, doomed) = service_account_token(&stack, &ws, "doomed", Role::Admin, 3600).await;
    let (_, _, foreign) = service_account_token(&stack, &other, "foreign", Role::Admin, 3600).await;
    let list = |key: Option<&str>| stack.grafana_api("GET", &ws.endpoint, "/api/datasources", key, None);

    // WHEN each is used while valid
    // THEN the live ones work and a token of another workspace does not
    assert_eq!(list(Some(&short)).0, 200);
    assert_eq!(list(Some(&doomed)).0, 200);
    assert_eq!(list(Some(&foreign)).0, 401);
    let (status, body) = list(None);
    assert_eq!((status, json_of(&body)), (401, json!({"message": "Unauthorized"})));

    // WHEN the short one outlives its secondsToLive (1 s) and the other is deleted
    tokio::time::sleep(Duration::from_secs(2)).await;
    grafana_client(&stack)
        .await
        .delete_workspace_service_account_token()
        .workspace_id(&ws.id)
        .service_account_id(&sa_id)
        .token_id(&tok_id)
        .send()
        .await
        .unwrap();

    // THEN both get 401 (Grafana's "Expired API key" / "Invalid API key")
    let (status, body) = list(Some(&short));
    assert_eq!(status, 401, "{body}");
    assert_eq!(json_of(&body)["message"], "Expired API key");
    let (status, body) = list(Some(&doomed));
    assert_eq!(status, 401, "{body}");
    assert_eq!(json_of(&body)["message"], "Invalid API key");

    // AND the emulator lists no live token of the workspace (the expired one only with all=true)
    let live = stack.grafana_emulator_control(&format!("/_emulator/tokens?workspaceId={}", ws.id));
    assert_eq!(live["tokens"], json!([]), "{live:#}");
    let all = stack.grafana_emulator_control(&format!("/_emulator/tokens?workspaceId={}&all=true", ws.id));
    let names: Vec<&str> = all["tokens"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, vec!["short-token"], "{all:#}");
    let auth: Vec<Value> = stack
        .grafana_emulator_control(&format!("/_emulator/requests?plane=grafana&workspaceId={}", ws.id))["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["auth"].clone())
        .collect();
    assert_eq!(
        auth,
        vec![json!("ok"), json!("ok"), json!("invalid"), json!("missing"), json!("expired"), json!("invalid")]
    );
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amp_data_plane_paths_reach_prometheus_and_the_control_plane_stays_at_moto() {
    // GIVEN the stack and an AMP workspace (moto)
    let stack = FullStack::start(&StackOptions::default());
    let (amp_id, _) = amp_workspace(&stack, "dp-prom").await;
    let port = stack.router.port;
    stack.reset_requests();

    // WHEN a PromQL query goes to the workspace's query path on the router
    let (status, body) = http("GET", port, &format!("/workspaces/{amp_id}/api/v1/query?query=up"), None).unwrap();

    // THEN Prometheus answers it
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_of(&body)["status"], "success");

    // WHEN a sample is remote-written to the workspace's remote_write path, then queried back
    let metric = "o11y_local_dataplane_test";
    // (the body the verify step's probe sends: shared/src/aws/remote_write.rs)
    let payload = write_request_body(&[Sample {
        labels: vec![("__name__".into(), metric.into()), ("job".into(), "dataplane-test".into())],
        value: 42.0,
        timestamp_ms: now_ms(),
    }]);
    let headers = [
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "snappy"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
    ];
    let (w_status, w_body) =
        http_bytes("POST", port, &format!("/workspaces/{amp_id}/api/v1/remote_write"), &headers, &payload).unwrap();
    let (q_status, q_body) =
        http("GET", port, &format!("/workspaces/{amp_id}/api/v1/query?query={metric}"), None).unwrap();

    // THEN the write is accepted (204) and the sample is there
    assert_eq!(w_status, 204, "{w_body}");
    assert_eq!(q_status, 200, "{q_body}");
    let result = &json_of(&q_body)["data"]["result"];
    assert_eq!(result[0]["metric"]["job"], "dataplane-test", "{q_body}");
    assert_eq!(result[0]["value"][1], "42", "{q_body}");

    // WHEN the AMP control plane is called under the same /workspaces/<id> prefix
    let d = amp_client(&stack).await.describe_workspace().workspace_id(&amp_id).send().await.unwrap();

    // THEN it is answered by moto, and the router log shows which backend served what
    assert_eq!(d.workspace().unwrap().workspace_id(), amp_id);
    let prometheus = stack.prometheus_url();
    let log = stack.requests();
    let backend_of = |path: &str| {
        log.iter().find(|e| e["path"] == path).map(|e| e["backend"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(backend_of(&format!("/workspaces/{amp_id}/api/v1/query")).as_deref(), Some(prometheus.as_str()));
    assert_eq!(backend_of(&format!("/workspaces/{amp_id}/api/v1/remote_write")).as_deref(), Some(prometheus.as_str()));
    assert_ne!(backend_of(&format!("/workspaces/{amp_id}")).as_deref(), Some(prometheus.as_str()), "{log:#?}");
}

#[test]
fn the_functions_get_the_grafana_api_base_url() {
    // GIVEN the router's URL as the stack's endpoint
    let endpoint = "http://127.0.0.1:4566";
    // WHEN the function environment is built
    let env = function_env(endpoint, &StackOptions::default());
    // THEN the Grafana HTTP API base URL is the router, like AWS_ENDPOINT_URL
    let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    assert_eq!(get(GRAFANA_API_URL_ENV), Some(endpoint));
    assert_eq!(get("AWS_ENDPOINT_URL"), Some(endpoint));
}
