//! The whole local stack of the product: moto server behind the router (moto's Step Functions
//! interpreter sends Lambda invokes to `$MOTO_PORT`, which is the router), the Grafana emulator
//! (reached through the router by SigV4 credential scope, and by `Host` for the workspaces'
//! Grafana HTTP API), Prometheus as AMP's data plane (reached through the router by path:
//! `/workspaces/<id>/api/...`), and the real function binaries served by the router's Lambda
//! runtime API.
//!
//! Routes of the router ([`router_routes`]):
//! - `Host: *.grafana-workspace.<region>.amazonaws.com` (the test regions) → the Grafana emulator's data plane;
//! - `/workspaces/*/api/v1/remote_write` → Prometheus `/api/v1/write`;
//! - `/workspaces/*/api/` → Prometheus `/api/` (PromQL: `query`, `query_range`, `labels`...);
//! - SigV4 scope `grafana` → the Grafana emulator's control plane; everything else → moto.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use o11y_shared::aws::Clients;
use serde_json::Value;

use crate::{
    free_port, http, http_with_headers, python, repo_root, sdk_config_for, Prometheus, Server, ACCOUNT_ID,
    OTHER_REGION, REGION,
};

/// The environment variable with the base URL of the Grafana HTTP API for the functions. When
/// set, a function calls `<base><path>` with the `Host` header set to the workspace's endpoint
/// (`g-….grafana-workspace.<region>.amazonaws.com`) instead of `https://<endpoint><path>`.
pub const GRAFANA_API_URL_ENV: &str = "O11Y_GRAFANA_API_URL";

/// The `Host` suffix of every Grafana workspace endpoint in [`REGION`].
pub fn grafana_workspace_host_suffix() -> String {
    format!(".grafana-workspace.{REGION}.amazonaws.com")
}

/// The `Host` suffixes of the Grafana workspace endpoints the router sends to the emulator:
/// [`REGION`]'s and [`OTHER_REGION`]'s (tests of one deployment in two regions).
pub fn grafana_workspace_host_suffixes() -> Vec<String> {
    [REGION, OTHER_REGION].iter().map(|r| format!(".grafana-workspace.{r}.amazonaws.com")).collect()
}

/// The router's routing arguments for the Grafana emulator on `grafana_port` and Prometheus on
/// `prometheus_port` (the module documentation lists them).
pub fn router_routes(grafana_port: u16, prometheus_port: u16) -> Vec<String> {
    let mut routes = vec!["--route".into(), format!("grafana=http://127.0.0.1:{grafana_port}")];
    for suffix in grafana_workspace_host_suffixes() {
        routes.extend(["--host-route".into(), format!("{suffix}=http://127.0.0.1:{grafana_port}")]);
    }
    routes.extend([
        "--path-route".into(),
        format!("/workspaces/*/api/v1/remote_write=http://127.0.0.1:{prometheus_port}/api/v1/write"),
        "--path-route".into(),
        format!("/workspaces/*/api/=http://127.0.0.1:{prometheus_port}/api/"),
    ]);
    routes
}

/// How long a test waits for one execution to end.
const EXECUTION_TIMEOUT: Duration = Duration::from_secs(240);

/// How the names of the stack's own function roles start (the router's `o11y-local` stack:
/// `o11y-local-<Logical>Role`, tests/localstack/authz.py): infrastructure, never a deployment's.
pub const FUNCTION_ROLE_PREFIX: &str = "o11y-local-";

/// The router's authorization arguments: each function runs under its role of `template` (default
/// `infra/template.yaml`), with the template's environment variables, and its requests are
/// authorized against that role (`tests/localstack/authz.py`). Always on; `O11Y_AUTHZ=0` turns it
/// off (to tell a template gap from a product bug).
pub fn authz_args(template: Option<&Path>) -> Vec<String> {
    if std::env::var("O11Y_AUTHZ").as_deref() == Ok("0") {
        return Vec::new();
    }
    let path = template.map(Path::to_path_buf).unwrap_or_else(|| repo_root().join("infra/template.yaml"));
    vec![
        "--template".into(),
        path.display().to_string(),
        "--state-machine-name".into(),
        crate::sfn::STATE_MACHINE_NAME.into(),
    ]
}

/// The environment variable with the seconds an AMP workspace stays CREATING (default 0).
pub const AMP_CREATING_ENV: &str = "O11Y_AMP_CREATING_SECONDS";
/// The environment variable with IAM's propagation delay: a role younger than this many seconds
/// cannot be assumed yet by STS (functions) or Grafana (health checks) (default 0).
pub const IAM_PROPAGATION_ENV: &str = "O11Y_IAM_PROPAGATION_SECONDS";

fn env_seconds(name: &str) -> f64 {
    std::env::var(name).ok().and_then(|v| v.parse::<f64>().ok()).filter(|v| *v >= 0.0).unwrap_or(0.0)
}

/// The router's arguments for AWS's timing (`--amp-creating-seconds`, `--iam-propagation-seconds`).
pub fn timing_args(opts: &StackOptions) -> Vec<String> {
    vec![
        "--amp-creating-seconds".into(),
        opts.amp_creating_seconds.to_string(),
        "--iam-propagation-seconds".into(),
        opts.iam_propagation_seconds.to_string(),
    ]
}

/// The Grafana emulator's command line for the stack: AMP workspaces and workspace roles are
/// looked up in moto and data source health checks query Prometheus.
pub fn grafana_emulator_args(port: u16, opts: &StackOptions, moto_port: u16, prometheus_port: u16) -> Vec<String> {
    vec![
        python().display().to_string(),
        repo_root().join("tests/grafana_emulator/emulator.py").display().to_string(),
        "--port".into(),
        port.to_string(),
        "--region".into(),
        REGION.into(),
        "--account-id".into(),
        ACCOUNT_ID.into(),
        "--active-delay".into(),
        opts.grafana_active_delay.to_string(),
        "--iam-propagation-seconds".into(),
        opts.iam_propagation_seconds.to_string(),
        "--amp-url".into(),
        format!("http://127.0.0.1:{moto_port}"),
        "--prometheus-url".into(),
        format!("http://127.0.0.1:{prometheus_port}"),
    ]
}

/// Options of the stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Seconds Grafana workspaces stay CREATING.
    pub grafana_active_delay: f64,
    /// `O11Y_WAIT_FIRST_SECONDS` for the functions (wait-loop first interval).
    pub wait_first_seconds: u64,
    /// The template whose function roles the functions run under (`None`: `infra/template.yaml`).
    pub template: Option<PathBuf>,
    /// The account's IAM trust policy size quota the stack enforces (`None`: AWS's default, 2,048).
    pub iam_trust_quota: Option<u32>,
    /// Seconds an AMP workspace is answered CREATING after its creation (default
    /// [`AMP_CREATING_ENV`], else 0).
    pub amp_creating_seconds: f64,
    /// Seconds before a new IAM role can be assumed (default [`IAM_PROPAGATION_ENV`], else 0).
    pub iam_propagation_seconds: f64,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            grafana_active_delay: 0.0,
            wait_first_seconds: 1,
            template: None,
            iam_trust_quota: None,
            amp_creating_seconds: env_seconds(AMP_CREATING_ENV),
            iam_propagation_seconds: env_seconds(IAM_PROPAGATION_ENV),
        }
    }
}

impl StackOptions {
    /// The default options, with every function run under its role of `infra/template.yaml`.
    pub fn authorized() -> Self {
        Self { template: Some(repo_root().join("infra/template.yaml")), ..Self::default() }
    }

    /// The default options, but Grafana workspaces stay CREATING for one second.
    pub fn creating_one_second() -> Self {
        Self { grafana_active_delay: 1.0, ..Self::default() }
    }
}

/// A fresh stack started with `opts` and seeded with the sample cluster `dr-eks`, its OIDC
/// provider and the IRSA role `dr-core-irsa` (namespace `dr-core`); the state machine is not
/// deployed yet.
pub async fn start_seeded(opts: &StackOptions) -> (FullStack, Clients, crate::seed::Seeded) {
    let stack = FullStack::start(opts);
    let clients = stack.clients().await;
    let seeded = crate::seed::seed(&clients, "dr-eks", "dr-core-irsa", "dr-core").await;
    (stack, clients, seeded)
}

/// [`start_seeded`], then the state machine deployed: returns its ARN last.
pub async fn start_deployed(opts: &StackOptions) -> (FullStack, Clients, crate::seed::Seeded, String) {
    let (stack, clients, seeded) = start_seeded(opts).await;
    let sm = stack.deploy().await;
    (stack, clients, seeded, sm)
}

/// The directory with the function binaries (`cargo build --workspace --bins`): `$O11Y_FUNCTIONS_DIR`
/// when set (for example `target/release` for the benchmarks' cold starts), else the debug profile
/// of `$CARGO_TARGET_DIR` or `target`.
pub fn functions_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("O11Y_FUNCTIONS_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target")).join("debug")
}

/// Builds the function binaries once per test process, so that `cargo test` alone is enough.
pub fn build_functions() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .current_dir(repo_root())
            .args(["build", "--quiet", "--workspace", "--bins"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the function binaries failed");
    });
}

/// A running stack; everything stops when it is dropped.
pub struct FullStack {
    pub router: Server,
    pub moto: Server,
    pub grafana: Server,
    pub prometheus: Prometheus,
}

impl FullStack {
    /// Builds the functions and starts moto, Prometheus, the Grafana emulator and the router.
    pub fn start(opts: &StackOptions) -> FullStack {
        build_functions();
        let router_port = free_port();
        let moto_port = free_port();
        let venv_bin = python().parent().map(|p| p.to_path_buf()).unwrap_or_default();
        let moto = Server::start_with_env(
            "moto",
            moto_port,
            &[
                venv_bin.join("moto_server").display().to_string(),
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                moto_port.to_string(),
            ],
            &[("MOTO_PORT".into(), router_port.to_string())],
            "/moto-api/",
        );
        let (status, body) =
            http("POST", moto_port, "/moto-api/config", Some(r#"{"stepfunctions":{"execute_state_machine":true}}"#))
                .expect("configure moto");
        assert!(status < 300, "moto config: {status} {body}");
        let prometheus = Prometheus::start();
        let g_port = free_port();
        let grafana = Server::start(
            "grafana-emulator",
            g_port,
            &grafana_emulator_args(g_port, opts, moto_port, prometheus.server.port),
            "/_emulator/health",
        );
        let endpoint = format!("http://127.0.0.1:{router_port}");
        let mut args = vec![
            python().display().to_string(),
            repo_root().join("tests/localstack/router/router.py").display().to_string(),
            "--port".into(),
            router_port.to_string(),
            "--default".into(),
            format!("http://127.0.0.1:{moto_port}"),
        ];
        args.extend(router_routes(g_port, prometheus.server.port));
        args.extend(authz_args(opts.template.as_deref()));
        args.extend(timing_args(opts));
        if let Some(quota) = opts.iam_trust_quota {
            args.extend(["--iam-trust-quota".into(), quota.to_string()]);
        }
        args.extend([
            "--functions-dir".into(),
            functions_dir().display().to_string(),
            "--region".into(),
            REGION.into(),
            "--account-id".into(),
            ACCOUNT_ID.into(),
        ]);
        for (k, v) in function_env(&endpoint, opts) {
            args.push("--function-env".into());
            args.push(format!("{k}={v}"));
        }
        let router = Server::start("router", router_port, &args, "/_router/health");
        FullStack { router, moto, grafana, prometheus }
    }

    /// Prometheus's own URL (AMP's data plane; through the router it is
    /// `<endpoint>/workspaces/<id>/api/...`).
    pub fn prometheus_url(&self) -> String {
        self.prometheus.url()
    }

    /// The Grafana emulator's own URL (control endpoints `/_emulator/...`).
    pub fn grafana_emulator_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grafana.port)
    }

    /// A call to the Grafana HTTP API of the workspace whose endpoint is `workspace_endpoint`
    /// (`g-….grafana-workspace.<region>.amazonaws.com`, as `DescribeWorkspace` returns it), sent
    /// to the router with that `Host`, as the functions do with `O11Y_GRAFANA_API_URL`. `token` is
    /// a service-account key (`Authorization: Bearer`); returns status and body.
    pub fn grafana_api(
        &self,
        method: &str,
        workspace_endpoint: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Host", workspace_endpoint)];
        if let Some(a) = auth.as_deref() {
            headers.push(("Authorization", a));
        }
        http_with_headers(method, self.router.port, path, &headers, body).expect("grafana api through the router")
    }

    /// A GET of a Grafana emulator control endpoint (`/_emulator/datasources?workspaceId=`,
    /// `/_emulator/tokens`, `/_emulator/requests?plane=grafana`...), parsed as JSON.
    pub fn grafana_emulator_control(&self, path: &str) -> Value {
        let (status, body) = http("GET", self.grafana.port, path, None).expect("grafana emulator control");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).expect("control endpoint JSON")
    }

    /// The single endpoint of the stack (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.router.port)
    }

    /// Engine clients through the router (Grafana routed by credential scope).
    pub async fn clients(&self) -> Clients {
        Clients::new(&sdk_config_for(&self.endpoint()).await).with_grafana_api_url(self.endpoint())
    }

    /// A Step Functions client on the stack.
    pub async fn sfn(&self) -> aws_sdk_sfn::Client {
        aws_sdk_sfn::Client::new(&sdk_config_for(&self.endpoint()).await)
    }

    /// Deploys `statemachine/provision.asl.json`; returns its ARN.
    pub async fn deploy(&self) -> String {
        crate::sfn::deploy(&self.sfn().await, &repo_root().join("statemachine/provision.asl.json"), REGION, ACCOUNT_ID)
            .await
            .expect("deploy state machine")
    }

    /// Runs one execution to its end.
    pub async fn execute(&self, sm_arn: &str, name: &str, input: &Value) -> crate::sfn::Outcome {
        crate::sfn::execute(&self.sfn().await, sm_arn, name, input, EXECUTION_TIMEOUT).await.expect("execution")
    }

    /// Waits for the end of an execution started elsewhere (`StartExecution` by the test).
    pub async fn wait(&self, execution_arn: &str) -> crate::sfn::Outcome {
        crate::sfn::wait(&self.sfn().await, execution_arn, EXECUTION_TIMEOUT).await.expect("execution")
    }

    /// The router's log of AWS requests since the last reset.
    pub fn requests(&self) -> Vec<Value> {
        let (_, body) = http("GET", self.router.port, "/_router/requests", None).expect("router requests");
        let v: Value = serde_json::from_str(&body).expect("requests JSON");
        v.as_array().cloned().or_else(|| v["requests"].as_array().cloned()).unwrap_or_default()
    }

    /// Clears the router's request log.
    pub fn reset_requests(&self) {
        http("POST", self.router.port, "/_router/reset", Some("{}")).expect("router reset");
    }

    /// The product's writes since the last reset: every write but Lambda invokes, Step Functions
    /// calls, the harness's own control requests, the deployment lease's put and delete and
    /// cfn-handler's request proofs (by the router's `purpose` tag: tests/localstack/router/README.md).
    pub fn aws_writes(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| {
                r["write"] == true && !["invoke", "execution", "harness", "lease", "cfn-request"].contains(&purpose(r))
            })
            .collect()
    }

    /// Writes that change a provisioned resource (`purpose: resource`): not what every apply does
    /// on purpose (the lease, the per-run Grafana service-account token, created then deleted, and
    /// the verification probe's one remote-written sample), nor CloudFormation responses.
    pub fn resource_writes(&self) -> Vec<Value> {
        self.requests().into_iter().filter(|r| purpose(r) == "resource").collect()
    }

    /// The workspace's Grafana service-account tokens the emulator still holds: the live ones, or
    /// with `include_expired` also those that expired without being deleted (never the key).
    pub fn grafana_tokens(&self, workspace_id: &str, include_expired: bool) -> Vec<Value> {
        let v = self
            .grafana_emulator_control(&format!("/_emulator/tokens?workspaceId={workspace_id}&all={include_expired}"));
        v["tokens"].as_array().cloned().unwrap_or_default()
    }

    /// Edits the data source `uid` by hand, as a person would in Grafana: through the workspace's
    /// Grafana HTTP API (via the router, with the workspace's `Host`), as a service account of
    /// their own (`hand-editor`, ADMIN, created once) with a token made and deleted for the edit,
    /// so that nothing of the deployment's is used. `edit` changes the data source as `GET`
    /// returns it; the result is `PUT` back. Returns the data source as it is after the edit.
    pub async fn edit_datasource_by_hand(
        &self,
        clients: &Clients,
        workspace_id: &str,
        workspace_endpoint: &str,
        uid: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Value {
        use aws_sdk_grafana::types::Role;
        const EDITOR: &str = "hand-editor";
        let g = &clients.grafana;
        let sas = g.list_workspace_service_accounts().workspace_id(workspace_id).send().await.expect("list SAs");
        let sa = match sas.service_accounts().iter().find(|s| s.name() == EDITOR) {
            Some(sa) => sa.id().to_string(),
            None => g
                .create_workspace_service_account()
                .workspace_id(workspace_id)
                .name(EDITOR)
                .grafana_role(Role::Admin)
                .send()
                .await
                .expect("create the editor's service account")
                .id()
                .to_string(),
        };
        let created = g
            .create_workspace_service_account_token()
            .workspace_id(workspace_id)
            .service_account_id(&sa)
            .name(format!("hand-edit-{}", std::process::id()))
            .seconds_to_live(60)
            .send()
            .await
            .expect("the editor's token");
        let token = created.service_account_token().expect("a token");
        let (token_id, key) = (token.id().to_string(), token.key().to_string());
        let path = format!("/api/datasources/uid/{uid}");
        let (status, body) = self.grafana_api("GET", workspace_endpoint, &path, Some(&key), None);
        assert_eq!(status, 200, "GET {path}: {body}");
        let mut ds: Value = serde_json::from_str(&body).expect("data source JSON");
        edit(&mut ds);
        let (status, body) = self.grafana_api("PUT", workspace_endpoint, &path, Some(&key), Some(&ds.to_string()));
        assert_eq!(status, 200, "PUT {path}: {body}");
        let (status, body) = self.grafana_api("GET", workspace_endpoint, &path, Some(&key), None);
        assert_eq!(status, 200, "GET {path}: {body}");
        g.delete_workspace_service_account_token()
            .workspace_id(workspace_id)
            .service_account_id(&sa)
            .token_id(&token_id)
            .send()
            .await
            .expect("delete the editor's token");
        serde_json::from_str(&body).expect("data source JSON")
    }

    /// The lease's own writes since the last reset (put when a run starts, delete when it ends).
    pub fn lease_writes(&self) -> Vec<Value> {
        self.requests().into_iter().filter(|r| purpose(r) == "lease").collect()
    }

    /// Sends a control request to the router (faults...).
    pub fn router_control(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        http(method, self.router.port, path, Some(body)).expect("router control")
    }
}

/// What the router says a logged request is for: its `purpose` (`read`, `resource`, `lease`,
/// `grafana-token`, `verification-probe`, `cfn-response`, `invoke`, `execution`, `harness`; the
/// rule is `purpose_of` in tests/localstack/router/router.py).
pub fn purpose(request: &Value) -> &str {
    request["purpose"].as_str().unwrap_or_default()
}

/// Checks that `writes` ([`FullStack::aws_writes`] of a plan) are nothing but Grafana
/// service-account token create/delete pairs, in order: each successful
/// `POST /workspaces/<ws>/serviceaccounts/<sa>/tokens` followed, before any other write, by a
/// successful `DELETE /workspaces/<ws>/serviceaccounts/<sa>/tokens/<id>` of the same service
/// account. Returns the number of pairs, or what is wrong with the writes.
pub fn token_pairs(writes: &[Value]) -> Result<usize, String> {
    let show = |r: &Value| format!("{} {} (HTTP {})", r["method"], r["path"], r["status"]);
    let mut open: Option<String> = None;
    let mut pairs = 0;
    for r in writes {
        let path = r["path"].as_str().unwrap_or_default();
        let ok = r["status"].as_u64().is_some_and(|s| (200..300).contains(&s));
        let grafana =
            r["service"] == "grafana" && path.starts_with("/workspaces/") && path.contains("/serviceaccounts/");
        match (r["method"].as_str(), open.take()) {
            (Some("POST"), None) if grafana && ok && path.ends_with("/tokens") => open = Some(path.to_string()),
            (Some("DELETE"), Some(tokens))
                if grafana
                    && ok
                    && path
                        .strip_prefix(&format!("{tokens}/"))
                        .is_some_and(|id| !id.is_empty() && !id.contains('/')) =>
            {
                pairs += 1
            }
            (_, Some(tokens)) => return Err(format!("the token made by POST {tokens} is followed by {}", show(r))),
            (_, None) => return Err(format!("a write that is not a token's create: {}", show(r))),
        }
    }
    match open {
        Some(tokens) => Err(format!("the token made by POST {tokens} was not deleted")),
        None => Ok(pairs),
    }
}

/// The environment of the function processes: everything through the router (AWS APIs, AMP's data
/// plane under `/workspaces/<id>/api/`, and the Grafana HTTP API via [`GRAFANA_API_URL_ENV`]),
/// fast wait loops.
pub fn function_env(endpoint: &str, opts: &StackOptions) -> Vec<(String, String)> {
    vec![
        ("AWS_ENDPOINT_URL".into(), endpoint.to_string()),
        (GRAFANA_API_URL_ENV.into(), endpoint.to_string()),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ("AWS_REGION".into(), REGION.into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ("O11Y_WAIT_FIRST_SECONDS".into(), opts.wait_first_seconds.to_string()),
        ("O11Y_WAIT_MAX_SECONDS".into(), "2".into()),
        ("RUST_LOG".into(), "info".into()),
        // The entry points start the one local state machine; CloudFormation's ResponseURL is a
        // presigned URL on the stack itself.
        ("O11Y_STATE_MACHINE_ARN".into(), crate::sfn::local_state_machine_arn()),
        ("O11Y_CFN_RESPONSE_URL_PREFIX".into(), format!("{endpoint}/")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn w(method: &str, service: &str, path: &str, status: u16) -> Value {
        json!({"method": method, "service": service, "path": path, "status": status, "write": true})
    }

    #[test]
    fn only_token_create_delete_pairs_pass() {
        let create = w("POST", "grafana", "/workspaces/g-1/serviceaccounts/2/tokens", 200);
        let delete = w("DELETE", "grafana", "/workspaces/g-1/serviceaccounts/2/tokens/7", 200);
        assert_eq!(token_pairs(&[]), Ok(0));
        assert_eq!(token_pairs(&[create.clone(), delete.clone()]), Ok(1));
        assert_eq!(token_pairs(&[create.clone(), delete.clone(), create.clone(), delete.clone()]), Ok(2));
        // a token never deleted, a delete without a create, another service account's token
        assert!(token_pairs(std::slice::from_ref(&create)).unwrap_err().contains("was not deleted"));
        assert!(token_pairs(std::slice::from_ref(&delete)).is_err());
        let other_sa = w("DELETE", "grafana", "/workspaces/g-1/serviceaccounts/3/tokens/7", 200);
        assert!(token_pairs(&[create.clone(), other_sa]).is_err());
        // a failed delete, and any other write in between or alone
        let failed = w("DELETE", "grafana", "/workspaces/g-1/serviceaccounts/2/tokens/7", 500);
        assert!(token_pairs(&[create.clone(), failed]).is_err());
        let sa = w("POST", "grafana", "/workspaces/g-1/serviceaccounts", 200);
        assert!(token_pairs(&[create.clone(), sa.clone(), delete.clone()]).is_err());
        assert!(token_pairs(&[sa]).is_err());
        let ssm = w("POST", "ssm", "/", 200);
        assert!(token_pairs(&[create, delete, ssm]).unwrap_err().contains("not a token's create"));
    }
}
