//! The whole local stack of the product: moto server behind the router (moto's Step Functions
//! interpreter sends Lambda invokes to `$MOTO_PORT`, which is the router), the Grafana emulator
//! (reached through the router by SigV4 credential scope), and the real function binaries served
//! by the router's Lambda runtime API.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use o11y_shared::aws::Clients;
use serde_json::Value;

use crate::{free_port, http, python, repo_root, sdk_config_for, Server, ACCOUNT_ID, REGION};

/// Options of the stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Seconds Grafana workspaces stay CREATING.
    pub grafana_active_delay: f64,
    /// `O11Y_WAIT_FIRST_SECONDS` for the functions (wait-loop first interval).
    pub wait_first_seconds: u64,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self { grafana_active_delay: 0.0, wait_first_seconds: 1 }
    }
}

/// The directory with the function binaries (`cargo build --workspace --bins`).
pub fn functions_dir() -> PathBuf {
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
}

impl FullStack {
    /// Builds the functions and starts moto, the Grafana emulator and the router.
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
        let g_port = free_port();
        let grafana = Server::start(
            "grafana-emulator",
            g_port,
            &[
                python().display().to_string(),
                repo_root().join("tests/grafana_emulator/emulator.py").display().to_string(),
                "--port".into(),
                g_port.to_string(),
                "--region".into(),
                REGION.into(),
                "--account-id".into(),
                ACCOUNT_ID.into(),
                "--active-delay".into(),
                opts.grafana_active_delay.to_string(),
            ],
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
            "--route".into(),
            format!("grafana=http://127.0.0.1:{g_port}"),
            "--functions-dir".into(),
            functions_dir().display().to_string(),
            "--region".into(),
            REGION.into(),
            "--account-id".into(),
            ACCOUNT_ID.into(),
        ];
        for (k, v) in function_env(&endpoint, opts) {
            args.push("--function-env".into());
            args.push(format!("{k}={v}"));
        }
        let router = Server::start("router", router_port, &args, "/_router/health");
        FullStack { router, moto, grafana }
    }

    /// The single endpoint of the stack (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.router.port)
    }

    /// Engine clients through the router (Grafana routed by credential scope).
    pub async fn clients(&self) -> Clients {
        Clients::new(&sdk_config_for(&self.endpoint()).await)
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
        crate::sfn::execute(&self.sfn().await, sm_arn, name, input, Duration::from_secs(240)).await.expect("execution")
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

    /// AWS write calls (not Lambda invokes, not Step Functions) since the last reset.
    pub fn aws_writes(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["write"] == true && r["service"] != "states" && r["service"] != "lambda")
            .collect()
    }

    /// Sends a control request to the router (faults...).
    pub fn router_control(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        http(method, self.router.port, path, Some(body)).expect("router control")
    }
}

/// The environment of the function processes: everything through the router, fast wait loops.
pub fn function_env(endpoint: &str, opts: &StackOptions) -> Vec<(String, String)> {
    vec![
        ("AWS_ENDPOINT_URL".into(), endpoint.to_string()),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ("AWS_REGION".into(), REGION.into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ("O11Y_WAIT_FIRST_SECONDS".into(), opts.wait_first_seconds.to_string()),
        ("O11Y_WAIT_MAX_SECONDS".into(), "2".into()),
        ("RUST_LOG".into(), "info".into()),
    ]
}
