//! `o11y-local`: the local stack's command line, behind `scripts/devstack`, `scripts/run-local`
//! and `scripts/demo`.
//!
//! - `devstack up [--grafana-delay SECONDS]`: starts moto, Prometheus (AMP's data plane; data in
//!   `.local/prometheus/`, wiped by `up` and `down`), the Grafana emulator and the router in the
//!   background (state in `.local/devstack.json`, logs in `.local/logs/`) and prints `export`
//!   lines for a shell to eval. `devstack env` prints them again; `devstack down` stops everything.
//!   `$O11Y_LOCAL_DIR` replaces `.local` (state, logs, Prometheus data), for a second devstack.
//! - `run-local INPUT.json [--name NAME]`: creates or updates the state machine from the real ASL,
//!   runs one execution, prints its output JSON, or the failing state, error and cause (exit 1).
//! - `seed-demo`: creates the sample EKS cluster `dr-eks`, its IAM OIDC provider and the IRSA role
//!   `dr-core-irsa`, as a user would have them before the first run.

// A command-line tool reports on stdout and stderr by design.
#![allow(clippy::print_stdout)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use o11y_tests::stack::{
    authz_args, function_env, functions_dir, grafana_emulator_args, router_routes, timing_args, StackOptions,
};
use o11y_tests::{free_port, http, prometheus_args, python, repo_root, sdk_config_for, ACCOUNT_ID, REGION};
use serde_json::{json, Value};

/// `$O11Y_LOCAL_DIR`, else `.local` at the repository root: where a devstack keeps its state,
/// logs and Prometheus data (a second directory allows a second devstack beside the first).
fn local_dir() -> PathBuf {
    std::env::var_os("O11Y_LOCAL_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".local"))
}

fn state_file() -> PathBuf {
    local_dir().join("devstack.json")
}

fn prometheus_dir() -> PathBuf {
    local_dir().join("prometheus")
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("o11y-local: {msg}");
    std::process::exit(1)
}

/// Starts a server in its own session (it outlives this command); returns its pid.
// Deliberately not waited for: the server outlives this command and `devstack down` stops it.
#[allow(clippy::zombie_processes)]
fn spawn_detached(name: &str, args: &[String], envs: &[(String, String)]) -> u32 {
    let logs = local_dir().join("logs");
    fs::create_dir_all(&logs).unwrap_or_else(|e| fail(format!("{}: {e}", logs.display())));
    let log = fs::File::create(logs.join(format!("{name}.log"))).unwrap_or_else(|e| fail(e));
    let err = log.try_clone().unwrap_or_else(|e| fail(e));
    let child = Command::new("setsid")
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| fail(format!("starting {name}: {e}")));
    child.id()
}

fn wait_ready(name: &str, port: u16, path: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if matches!(http("GET", port, path, None), Ok((s, _)) if s > 0 && s < 500) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{name} did not become ready on port {port} (see {}/logs/{name}.log)", local_dir().display()))
}

fn alive(pid: u64) -> bool {
    // A zombie (state Z) has exited; this sandbox's init may be slow to reap it.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().and_then(|r| r.split_whitespace().next()) != Some("Z"))
        .unwrap_or(false)
}

fn signal_group(signal: &str, pid: u64) {
    // setsid made each server a process-group leader: signal the whole group. procps `kill`
    // needs `--` before a negative pid, or it reads it as an option.
    let _ = Command::new("kill").args(["-s", signal, "--", &format!("-{pid}")]).stderr(Stdio::null()).status();
}

fn stop_pids(state: &Value) {
    let pids: Vec<u64> = state["pids"].as_array().into_iter().flatten().filter_map(Value::as_u64).collect();
    for &pid in &pids {
        signal_group("TERM", pid);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &pid in &pids {
        signal_group("KILL", pid);
    }
}

fn exports(state: &Value) -> String {
    let endpoint = state["endpoint"].as_str().unwrap_or_default();
    [
        format!("export AWS_ENDPOINT_URL={endpoint}"),
        "export AWS_ACCESS_KEY_ID=testing".into(),
        "export AWS_SECRET_ACCESS_KEY=testing".into(),
        format!("export AWS_REGION={REGION}"),
        format!("export AWS_DEFAULT_REGION={REGION}"),
        "export AWS_EC2_METADATA_DISABLED=true".into(),
        format!("export O11Y_MOTO_URL={}", state["motoUrl"].as_str().unwrap_or_default()),
        format!("export O11Y_GRAFANA_EMULATOR_URL={}", state["grafanaUrl"].as_str().unwrap_or_default()),
        format!("export O11Y_PROMETHEUS_URL={}", state["prometheusUrl"].as_str().unwrap_or_default()),
        format!("export O11Y_GRAFANA_API_URL={endpoint}"),
    ]
    .join("\n")
}

fn read_state() -> Value {
    let text =
        fs::read_to_string(state_file()).unwrap_or_else(|_| fail("no devstack is running: `scripts/devstack up`"));
    serde_json::from_str(&text).unwrap_or_else(|e| fail(format!("{}: {e}", state_file().display())))
}

fn devstack_up(grafana_delay: f64) {
    if let Ok(text) = fs::read_to_string(state_file()) {
        if let Ok(old) = serde_json::from_str::<Value>(&text) {
            stop_pids(&old);
        }
    }
    let py = python();
    if !py.exists() {
        fail(format!("{} not found: run scripts/setup", py.display()));
    }
    let (router_port, moto_port, g_port, p_port) = (free_port(), free_port(), free_port(), free_port());
    let _ = fs::remove_dir_all(prometheus_dir());
    let prom_args = prometheus_args(&prometheus_dir(), p_port)
        .unwrap_or_else(|e| fail(format!("{}: {e}", prometheus_dir().display())));
    if !Command::new(&prom_args[0]).arg("--version").output().map(|o| o.status.success()).unwrap_or(false) {
        fail(format!(
            "{} not found: run scripts/setup (Debian package prometheus) or set O11Y_PROMETHEUS",
            prom_args[0]
        ));
    }
    let endpoint = format!("http://127.0.0.1:{router_port}");
    let opts = StackOptions { grafana_active_delay: grafana_delay, ..StackOptions::default() };
    let venv_bin = py.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut pids = Vec::new();
    let mut state = json!({});
    let result = (|| -> Result<(), String> {
        pids.push(spawn_detached(
            "moto",
            &[
                venv_bin.join("moto_server").display().to_string(),
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                moto_port.to_string(),
            ],
            &[("MOTO_PORT".into(), router_port.to_string())],
        ));
        pids.push(spawn_detached("prometheus", &prom_args, &[]));
        pids.push(spawn_detached("grafana-emulator", &grafana_emulator_args(g_port, &opts, moto_port, p_port), &[]));
        let mut args = vec![
            py.display().to_string(),
            repo_root().join("tests/localstack/router/router.py").display().to_string(),
            "--port".into(),
            router_port.to_string(),
            "--default".into(),
            format!("http://127.0.0.1:{moto_port}"),
        ];
        args.extend(router_routes(g_port, p_port));
        args.extend(authz_args(None));
        args.extend(timing_args(&opts));
        args.extend(["--functions-dir".into(), functions_dir().display().to_string()]);
        for (k, v) in function_env(&endpoint, &opts) {
            args.push("--function-env".into());
            args.push(format!("{k}={v}"));
        }
        pids.push(spawn_detached("router", &args, &[]));
        state = json!({
            "endpoint": endpoint,
            "motoUrl": format!("http://127.0.0.1:{moto_port}"),
            "grafanaUrl": format!("http://127.0.0.1:{g_port}"),
            "prometheusUrl": format!("http://127.0.0.1:{p_port}"),
            "pids": pids,
        });
        fs::write(state_file(), state.to_string()).map_err(|e| e.to_string())?;
        wait_ready("moto", moto_port, "/moto-api/")?;
        wait_ready("prometheus", p_port, "/-/ready")?;
        wait_ready("grafana-emulator", g_port, "/_emulator/health")?;
        wait_ready("router", router_port, "/_router/health")?;
        let cfg = r#"{"stepfunctions":{"execute_state_machine":true}}"#;
        match http("POST", moto_port, "/moto-api/config", Some(cfg)) {
            Ok((s, _)) if s < 300 => Ok(()),
            other => Err(format!("configuring moto's Step Functions execution: {other:?}")),
        }
    })();
    if let Err(e) = result {
        stop_pids(&json!({ "pids": pids }));
        let _ = fs::remove_file(state_file());
        let _ = fs::remove_dir_all(prometheus_dir());
        fail(e);
    }
    println!("{}", exports(&state));
}

fn devstack_down() {
    if let Ok(text) = fs::read_to_string(state_file()) {
        if let Ok(state) = serde_json::from_str::<Value>(&text) {
            stop_pids(&state);
        }
        let _ = fs::remove_file(state_file());
        let _ = fs::remove_dir_all(prometheus_dir());
        eprintln!("devstack stopped");
    } else {
        eprintln!("no devstack running");
    }
}

async fn endpoint_config() -> aws_config::SdkConfig {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .or_else(|| {
            fs::read_to_string(state_file())
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|s| s["endpoint"].as_str().map(str::to_string))
        })
        .unwrap_or_else(|| {
            fail("AWS_ENDPOINT_URL is not set and no devstack is running: `eval \"$(scripts/devstack up)\"`")
        });
    sdk_config_for(&endpoint).await
}

async fn run_local(input_path: &str, name: Option<String>) {
    let text = fs::read_to_string(input_path).unwrap_or_else(|e| fail(format!("{input_path}: {e}")));
    let input: Value = serde_json::from_str(&text).unwrap_or_else(|e| fail(format!("{input_path} is not JSON: {e}")));
    let conf = endpoint_config().await;
    let sfn = aws_sdk_sfn::Client::new(&conf);
    let asl = repo_root().join("statemachine/provision.asl.json");
    let sm = o11y_tests::sfn::deploy(&sfn, &asl, REGION, ACCOUNT_ID).await.unwrap_or_else(|e| fail(e));
    let name = name.unwrap_or_else(|| {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        format!("run-{nanos}")
    });
    let out =
        o11y_tests::sfn::execute(&sfn, &sm, &name, &input, Duration::from_secs(3600)).await.unwrap_or_else(|e| fail(e));
    if out.status == "SUCCEEDED" {
        let pretty = serde_json::to_string_pretty(&out.output.unwrap_or(Value::Null)).unwrap_or_default();
        println!("{pretty}");
    } else {
        eprintln!(
            "execution {} {}: state {}: {}: {}",
            out.execution_arn,
            out.status,
            out.failed_state.as_deref().unwrap_or("?"),
            out.error.as_deref().unwrap_or("?"),
            out.cause.as_deref().unwrap_or("")
        );
        std::process::exit(1);
    }
}

async fn seed_demo() {
    let conf = endpoint_config().await;
    let clients = o11y_shared::aws::Clients::new(&conf);
    let s = o11y_tests::seed::seed(&clients, "dr-eks", "dr-core-irsa", "dr-core").await;
    eprintln!(
        "seeded EKS cluster {} (issuer {}), OIDC provider {}, IRSA role {}",
        s.cluster_name, s.oidc_issuer, s.oidc_provider_arn, s.irsa_role_arn
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["devstack", "up", ..] => devstack_up(flag("--grafana-delay").and_then(|d| d.parse().ok()).unwrap_or(0.0)),
        ["devstack", "env"] => println!("{}", exports(&read_state())),
        ["devstack", "down"] => devstack_down(),
        ["run-local", input, ..] => run_local(input, flag("--name")).await,
        ["seed-demo"] => seed_demo().await,
        _ => fail("usage: o11y-local devstack up [--grafana-delay S] | devstack env | devstack down | run-local INPUT.json [--name NAME] | seed-demo"),
    }
}
