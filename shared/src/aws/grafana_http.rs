//! The Grafana HTTP API of a Managed Grafana workspace, with short-lived service-account tokens.
//!
//! Credentials: one service account per deployment ([`service_account_name`], role `ADMIN`,
//! which Grafana's RBAC requires to read and write data sources), created once and found by name
//! afterwards, and one token per run ([`TOKEN_SECONDS_TO_LIVE`] seconds, a unique name) that
//! `steps::grafana_access::with_token` deletes after the work, whatever its result. The key exists only in memory,
//! inside [`ApiKey`], whose `Debug` prints no secret and which is neither `Display` nor
//! `Serialize`: it is never stored, logged or returned.
//!
//! Where requests go: `https://<workspace endpoint><path>` on AWS, or, when
//! [`Clients::grafana_api_url`] is set (the local stack), `<that URL><path>` with
//! `Host: <workspace endpoint>`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_grafana::types::Role;
use serde_json::Value;

use crate::aws::http::{HttpClient, Response};
use crate::aws::Clients;
use crate::domain::error::{Error, Result};
use crate::domain::text::clip;

/// Lifetime of the token of one run: long enough for a step, short enough that a token left
/// behind by a killed Lambda is useless within minutes.
pub const TOKEN_SECONDS_TO_LIVE: i32 = 300;

/// Lifetime of the token a `plan` makes to read the live data source (one `GET`): plan's only
/// write, so it lives as short as a single read needs.
pub const PLAN_TOKEN_SECONDS_TO_LIVE: i32 = 60;
/// How long one Grafana HTTP API call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Prefix of our service accounts and tokens.
pub const NAME_PREFIX: &str = "o11y-provisioner";

/// The deployment's service account in its Grafana workspace.
pub fn service_account_name(deployment: &str) -> String {
    format!("{NAME_PREFIX}-{deployment}")
}

/// A Grafana service-account key. The only way to use it is [`GrafanaApi`]; its `Debug` is
/// redacted, and it is neither `Display` nor `Serialize`.
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key the service returned (it is never shown again).
    pub fn new(key: String) -> Self {
        Self(key)
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(** redacted **)")
    }
}

/// A service account of the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub id: String,
    pub name: String,
    /// `ADMIN`, `EDITOR` or `VIEWER`.
    pub role: String,
    pub disabled: bool,
}

/// An error from the Grafana HTTP API: 429 and 5xx are `TransientError`s (except the health
/// check's own answers, see [`GrafanaApi::datasource_health`]), other statuses `AwsError`s with
/// code `HTTP <status>` and Grafana's `message`.
fn api_error(what: &str, resp: &Response) -> Error {
    let message = grafana_message(resp);
    if resp.status == 429 || resp.status >= 500 {
        Error::Transient { operation: what.to_string(), message: format!("HTTP {}: {message}", resp.status) }
    } else {
        Error::Aws { operation: what.to_string(), code: format!("HTTP {}", resp.status), message }
    }
}

/// Grafana's `message` (and `error`, when it has one), or the start of the body.
pub fn grafana_message(resp: &Response) -> String {
    match serde_json::from_slice::<Value>(&resp.body) {
        Ok(v) => {
            let msg = v.get("message").and_then(Value::as_str).unwrap_or_default();
            let detail = v.get("error").and_then(Value::as_str).unwrap_or_default();
            match (msg.is_empty(), detail.is_empty()) {
                (false, false) => format!("{msg}: {detail}"),
                (false, true) => msg.to_string(),
                (true, false) => detail.to_string(),
                (true, true) => clip(&resp.text(), 300),
            }
        }
        Err(_) => clip(&resp.text(), 300),
    }
}

/// The result of a data source health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Grafana answered `status: OK`.
    pub ok: bool,
    /// Grafana's message.
    pub message: String,
    /// The HTTP status.
    pub status: u16,
}

/// The Grafana HTTP API of one workspace, authenticated with one service-account key.
#[derive(Debug)]
pub struct GrafanaApi {
    http: HttpClient,
    base: String,
    host: Option<String>,
    key: ApiKey,
}

/// `(base URL, Host header)` of the workspace `endpoint`'s Grafana HTTP API.
pub fn base_url(clients: &Clients, endpoint: &str) -> (String, Option<String>) {
    match clients.grafana_api_url.as_deref().filter(|u| !u.is_empty()) {
        Some(url) => (url.trim_end_matches('/').to_string(), Some(endpoint.to_string())),
        None => (format!("https://{endpoint}"), None),
    }
}

impl GrafanaApi {
    /// The API of the workspace whose endpoint (host) is `endpoint`, with `key`.
    pub fn new(clients: &Clients, endpoint: &str, key: ApiKey) -> Self {
        let (base, host) = base_url(clients, endpoint);
        Self { http: clients.http.clone(), base, host, key }
    }

    /// One call; returns the response whatever its status.
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Response> {
        let auth = format!("Bearer {}", self.key.0);
        let mut headers: Vec<(&str, &str)> = vec![("Authorization", auth.as_str()), ("Accept", "application/json")];
        if let Some(h) = &self.host {
            headers.push(("Host", h.as_str()));
        }
        let payload = match body {
            Some(b) => {
                headers.push(("Content-Type", "application/json"));
                serde_json::to_vec(b).map_err(|e| Error::Internal(format!("grafana-api {method} {path}: {e}")))?
            }
            None => Vec::new(),
        };
        self.http.send(method, &format!("{}{path}", self.base), &headers, payload, CALL_TIMEOUT).await
    }

    fn parse(what: &str, resp: &Response) -> Result<Value> {
        if resp.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&resp.body)
            .map_err(|e| Error::Internal(format!("{what}: the answer is not JSON ({e}): {}", clip(&resp.text(), 200))))
    }

    /// The data source with `uid`, `None` when there is none.
    pub async fn get_datasource(&self, uid: &str) -> Result<Option<Value>> {
        let path = format!("/api/datasources/uid/{uid}");
        let what = format!("grafana-api:GET {path}");
        let resp = self.call("GET", &path, None).await?;
        match resp.status {
            200 => Self::parse(&what, &resp).map(Some),
            404 => Ok(None),
            _ => Err(api_error(&what, &resp)),
        }
    }

    /// Creates a data source (`POST /api/datasources`); returns Grafana's `datasource`.
    /// A 409 (same name or uid) is a `ConflictError` with Grafana's message.
    pub async fn create_datasource(&self, body: &Value) -> Result<Value> {
        let what = "grafana-api:POST /api/datasources";
        let resp = self.call("POST", "/api/datasources", Some(body)).await?;
        match resp.status {
            200 => Ok(Self::parse(what, &resp)?.get("datasource").cloned().unwrap_or(Value::Null)),
            409 => Err(Error::Conflict(format!(
                "{what}: {} (data source {:?}); rename or delete the other data source, then run again",
                grafana_message(&resp),
                body.get("name").and_then(Value::as_str).unwrap_or_default()
            ))),
            _ => Err(api_error(what, &resp)),
        }
    }

    /// Replaces the data source `uid` (`PUT /api/datasources/uid/{uid}`); returns Grafana's
    /// `datasource`.
    pub async fn update_datasource(&self, uid: &str, body: &Value) -> Result<Value> {
        let path = format!("/api/datasources/uid/{uid}");
        let what = format!("grafana-api:PUT {path}");
        let resp = self.call("PUT", &path, Some(body)).await?;
        match resp.status {
            200 => Ok(Self::parse(&what, &resp)?.get("datasource").cloned().unwrap_or(Value::Null)),
            409 => Err(Error::Conflict(format!("{what}: {}", grafana_message(&resp)))),
            _ => Err(api_error(&what, &resp)),
        }
    }

    /// Deletes the data source `uid`; false when there was none.
    pub async fn delete_datasource(&self, uid: &str) -> Result<bool> {
        let path = format!("/api/datasources/uid/{uid}");
        let what = format!("grafana-api:DELETE {path}");
        let resp = self.call("DELETE", &path, None).await?;
        match resp.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(api_error(&what, &resp)),
        }
    }

    /// `GET /api/datasources/uid/{uid}/health`. Grafana answers a failed check with a 4xx or
    /// 500 and a message (a bad configuration, a plugin that is not installed): that is a
    /// result (`ok: false`), not an error. 401/403 (our token), 404, 429 and 502-504 are errors.
    pub async fn datasource_health(&self, uid: &str) -> Result<Health> {
        let path = format!("/api/datasources/uid/{uid}/health");
        let what = format!("grafana-api:GET {path}");
        let resp = self.call("GET", &path, None).await?;
        match resp.status {
            401 | 403 | 404 | 429 | 502..=504 => Err(api_error(&what, &resp)),
            status => {
                let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
                let ok = status == 200 && v.get("status").and_then(Value::as_str) == Some("OK");
                Ok(Health { ok, message: grafana_message(&resp), status })
            }
        }
    }
}

/// Checks that a found service account can manage data sources (`ADMIN`, enabled).
pub fn check_service_account(workspace_id: &str, sa: &ServiceAccount) -> Result<()> {
    if sa.role != Role::Admin.as_str() || sa.disabled {
        return Err(Error::Conflict(format!(
            "Grafana workspace {workspace_id}: service account {:?} (id {}) is {}{}, but managing data sources needs an \
             enabled ADMIN service account; delete it (it is recreated with role ADMIN on the next run)",
            sa.name,
            sa.id,
            sa.role,
            if sa.disabled { " and disabled" } else { "" }
        )));
    }
    Ok(())
}

/// A token name unique to this run: `o11y-provisioner-<unix ms>-<pid>`.
pub fn token_name() -> String {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default();
    format!("{NAME_PREFIX}-{ms}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_never_shows_in_debug() {
        let api_key = ApiKey("glsa_secret_1234".into());
        assert!(!format!("{api_key:?}").contains("glsa"));
    }

    #[test]
    fn grafana_messages_are_read_from_the_body() {
        let r = |status, body: &str| Response { status, headers: vec![], body: body.as_bytes().to_vec() };
        assert_eq!(grafana_message(&r(404, r#"{"message":"Data source not found"}"#)), "Data source not found");
        assert_eq!(
            grafana_message(&r(500, r#"{"message":"Unable to get plugin context","error":"plugin x not found"}"#)),
            "Unable to get plugin context: plugin x not found"
        );
        assert_eq!(grafana_message(&r(502, "bad gateway")), "bad gateway");
        assert_eq!(api_error("op", &r(503, "{}")).name(), "TransientError");
        assert_eq!(
            api_error("op", &r(401, r#"{"message":"Invalid API key"}"#)).to_string(),
            "op: HTTP 401: Invalid API key"
        );
    }

    #[test]
    fn service_accounts_must_be_enabled_admins() {
        let sa =
            |role: &str, disabled| ServiceAccount { id: "2".into(), name: "n".into(), role: role.into(), disabled };
        assert!(check_service_account("g-1", &sa("ADMIN", false)).is_ok());
        assert_eq!(check_service_account("g-1", &sa("EDITOR", false)).unwrap_err().name(), "ConflictError");
        assert!(check_service_account("g-1", &sa("ADMIN", true)).is_err());
    }

    #[test]
    fn token_names_are_ours_and_within_limits() {
        let n = token_name();
        assert!(n.starts_with("o11y-provisioner-") && n.len() <= 128, "{n}");
        assert_eq!(service_account_name("dr-prod"), "o11y-provisioner-dr-prod");
    }
}
