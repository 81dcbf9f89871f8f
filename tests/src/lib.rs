//! The local stack the integration tests run on: real moto server, the Managed Grafana emulator
//! and (for the AMP data plane) Prometheus, started on free loopback ports through
//! `localstack/watchdog.py` (so a dying test never leaves a server behind) and stopped when the
//! [`stack::FullStack`] (or [`Prometheus`]) is dropped.
//!
//! Helpers shared by the tests: [`stack::start_deployed`] (a seeded stack with the state machine),
//! [`cfn`] (CloudFormation custom resource requests and their answers) and [`iam`] (trust policies).

// Harness code fails tests by panicking, which is what a test harness is for.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
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
/// A second region, for deployments of one name in two regions (the functions still run in
/// [`REGION`]; the input's `region` selects their clients).
pub const OTHER_REGION: &str = "us-west-2";

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

/// Runs a Python check script of the repository (`script`, relative to the root) that prints
/// `N passed, M failed` last: panics unless it exits 0 with no failure and at least `min_passed`
/// checks ran.
pub fn run_python_checks(script: &str, min_passed: usize) {
    let path = repo_root().join(script);
    let out = std::process::Command::new(python()).arg(&path).output().unwrap_or_else(|e| panic!("run {script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    let summary = stdout.lines().rev().find(|l| l.contains(" passed, ")).unwrap_or_default();
    assert!(summary.ends_with(" passed, 0 failed"), "{summary}");
    let passed: usize = summary.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(passed >= min_passed, "too few checks ran: {summary}");
}

/// A free TCP port on 127.0.0.1, never one handed out before in this process. A stack takes its
/// router's port long before the router binds it; without the memory, a test starting its stack
/// meanwhile (tests of a binary run in parallel) could be given the same port for its Prometheus,
/// and the first stack's requests would reach that Prometheus ("404 page not found").
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<BTreeSet<u16>> = std::sync::Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0);
        if port != 0 && given.insert(port) {
            return port;
        }
    }
    0
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
    http_with_headers(method, port, path, &[], body)
}

/// [`http`] with extra request headers. A `Host` among them replaces the default
/// `127.0.0.1:<port>` (how a request reaches a workspace's Grafana API through the router);
/// `Content-Type` defaults to `application/json`.
pub fn http_with_headers(
    method: &str,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    http_bytes(method, port, path, headers, body.unwrap_or("").as_bytes())
}

/// [`http_with_headers`] with a binary body (a remote-write payload...).
pub fn http_bytes(
    method: &str,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        head.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    if !has("content-type") {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
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

/// The Prometheus binary: `$O11Y_PROMETHEUS`, else `/usr/bin/prometheus` (the Debian package
/// `scripts/setup` installs), else `prometheus` on the `PATH`.
pub fn prometheus_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("O11Y_PROMETHEUS").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let debian = PathBuf::from("/usr/bin/prometheus");
    if debian.exists() {
        return debian;
    }
    PathBuf::from("prometheus")
}

/// Prometheus's configuration for the local stack: no scrape jobs, it only receives remote
/// writes and answers PromQL, as AMP's data plane does.
pub const PROMETHEUS_CONFIG: &str = "# o11y-provisioner local stack: AMP's data plane. No scrape jobs.\nglobal:\n  scrape_interval: 1m\n  evaluation_interval: 1m\nscrape_configs: []\n";

/// Writes [`PROMETHEUS_CONFIG`] into `dir` and returns Prometheus's command line: data in
/// `dir/data`, listening on `127.0.0.1:port`, with the remote-write receiver (`/api/v1/write`).
pub fn prometheus_args(dir: &Path, port: u16) -> std::io::Result<Vec<String>> {
    std::fs::create_dir_all(dir.join("data"))?;
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, PROMETHEUS_CONFIG)?;
    Ok(vec![
        prometheus_binary().display().to_string(),
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--web.enable-remote-write-receiver".into(),
    ])
}

/// A directory removed (recursively) on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Prometheus as AMP's data plane, under the watchdog, with its data in a temporary directory
/// that is removed after it stops.
pub struct Prometheus {
    // Declaration order is drop order: stop the server before removing its directory.
    pub server: Server,
    dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus on a free port and waits for `/-/ready`.
    pub fn start() -> Prometheus {
        let bin = prometheus_binary();
        assert!(
            Command::new(&bin).arg("--version").output().map(|o| o.status.success()).unwrap_or(false),
            "{} not found: run `scripts/setup` (it installs the Debian package prometheus) or set O11Y_PROMETHEUS",
            bin.display()
        );
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("o11y-prometheus-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let dir = TempDir(dir);
        let args = prometheus_args(&dir.0, port).unwrap_or_else(|e| panic!("{}: {e}", dir.0.display()));
        let server = Server::start("prometheus", port, &args, "/-/ready");
        Prometheus { server, dir }
    }

    /// Prometheus's URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// The directory with its configuration and data.
    pub fn dir(&self) -> &Path {
        &self.dir.0
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

pub mod cfn;
pub mod iam;
pub mod seed;
pub mod sfn;
pub mod stack;
