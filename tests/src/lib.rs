//! The local stack the integration tests run on: real moto server and the Managed Grafana
//! emulator, started on free loopback ports through `localstack/watchdog.py` (so a dying test
//! never leaves a server behind) and stopped when the [`LocalStack`] is dropped.

// Harness code fails tests by panicking, which is what a test harness is for.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use o11y_shared::aws::Clients;

/// moto's default account.
pub const ACCOUNT_ID: &str = "123456789012";
/// Region of every test.
pub const REGION: &str = "us-east-1";

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The Python of the project's venv (`scripts/setup` makes it), or `$O11Y_PYTHON`.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("O11Y_PYTHON") {
        return PathBuf::from(p);
    }
    repo_root().join(".venv/bin/python")
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// One server process under the watchdog, killed on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    pub name: &'static str,
}

impl Server {
    /// Starts `args` (run by the venv's Python) under the watchdog and waits until `ready_path`
    /// answers HTTP on `port`.
    pub fn start(name: &'static str, port: u16, args: &[String], ready_path: &str) -> Server {
        Self::start_with_env(name, port, args, &[], ready_path)
    }

    /// [`Server::start`] with extra environment variables.
    pub fn start_with_env(
        name: &'static str,
        port: u16,
        args: &[String],
        envs: &[(String, String)],
        ready_path: &str,
    ) -> Server {
        let py = python();
        assert!(
            py.exists(),
            "{} not found: run `scripts/setup` first (it creates .venv with moto and the AWS CLI)",
            py.display()
        );
        let watchdog = repo_root().join("tests/localstack/watchdog.py");
        let child = Command::new(&py)
            .arg(&watchdog)
            .arg("--parent-pid")
            .arg(std::process::id().to_string())
            .arg("--")
            .args(args)
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("O11Y_SERVER_LOGS").is_some() { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let server = Server { child, port, name };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok((status, _)) = http("GET", port, ready_path, None) {
                if status < 500 {
                    return server;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{name} did not become ready on port {port}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL to the watchdog would orphan the server: stop it with SIGTERM and reap it.
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 client for loopback control endpoints: returns status and body.
pub fn http(method: &str, port: u16, path: &str, body: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    if text.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok((status, body))
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// moto server plus the Grafana emulator.
pub struct LocalStack {
    pub moto: Server,
    pub grafana: Server,
}

impl LocalStack {
    /// Starts both servers on free ports.
    pub fn start() -> LocalStack {
        Self::start_with_grafana_delay(0.0)
    }

    /// Starts both servers; Grafana workspaces stay CREATING for `active_delay` seconds.
    pub fn start_with_grafana_delay(active_delay: f64) -> LocalStack {
        let moto_port = free_port();
        let venv_bin = python().parent().map(Path::to_path_buf).unwrap_or_default();
        let moto = Server::start(
            "moto",
            moto_port,
            &[
                venv_bin.join("moto_server").display().to_string(),
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                moto_port.to_string(),
            ],
            "/moto-api/",
        );
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
                active_delay.to_string(),
            ],
            "/_emulator/health",
        );
        LocalStack { moto, grafana }
    }

    /// moto's URL.
    pub fn moto_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.moto.port)
    }

    /// The Grafana emulator's URL.
    pub fn grafana_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grafana.port)
    }

    /// An SDK config pointing every service at moto, with static test credentials.
    pub async fn sdk_config(&self) -> SdkConfig {
        sdk_config_for(&self.moto_url()).await
    }

    /// The engine's clients on this stack (Grafana at the emulator).
    pub async fn clients(&self) -> Clients {
        let conf = self.sdk_config().await;
        let grafana = aws_sdk_grafana::Client::from_conf(
            aws_sdk_grafana::config::Builder::from(&conf).endpoint_url(self.grafana_url()).build(),
        );
        Clients::new(&conf).with_grafana(grafana)
    }
}

/// An SDK config with static test credentials pointing every service at `endpoint`.
pub async fn sdk_config_for(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::from_keys("testing", "testing", None))
        .load()
        .await
}

/// Clients whose every endpoint is a closed port: any AWS call fails with a transport error.
/// Used to prove that validation happens before any call.
pub async fn unreachable_clients() -> Clients {
    let conf = sdk_config_for(&format!("http://127.0.0.1:{}", free_port())).await;
    Clients::new(&conf)
}

pub mod seed;
pub mod sfn;
pub mod stack;
