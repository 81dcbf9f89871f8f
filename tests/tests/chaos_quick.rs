//! Runs `scripts/chaos --quick` (chaos/README.md): on a private local stack, 3 create-then-delete
//! cycles with 20% of AWS calls faulted, a function process killed mid-step, two runs of one
//! deployment at once (console twice, a redelivered CloudFormation request, CloudFormation and the
//! console), 200+ hostile inputs across the three entry points, and a scan for leaked secrets.
//! Asserts that it exits 0 and prints its summary table.
//!
//! Ignored by default: it takes about 5 minutes on 2 cores. Run it with
//! `cargo test -p o11y-tests --test chaos_quick -- --ignored --nocapture`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use std::process::Command;

#[test]
#[ignore = "about 5 minutes; run with --ignored (see chaos/README.md)"]
fn chaos_quick_finds_no_violation() {
    o11y_tests::stack::build_functions();
    let root = o11y_tests::repo_root();
    let out = Command::new(root.join("scripts/chaos"))
        .arg("--quick")
        .current_dir(&root)
        // the binaries were just built by this test process
        .env("O11Y_CHAOS_NO_BUILD", "1")
        .output()
        .expect("run scripts/chaos --quick");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: String =
        stderr.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(stdout.contains("o11y-provisioner chaos summary"), "no summary table:\n{stdout}\n{tail}");
    for row in [
        "| cycles (create, then delete)",
        "| faults injected",
        "| retries",
        "| runs converged",
        "| re-runs",
        "| duplicates",
        "| leaked",
        "| rejected inputs",
        "| writes on bad input",
        "| edits: cases",
        "| edits: orphans / missing",
        "| edits: foreign touched",
        "| secrets found",
    ] {
        assert!(stdout.contains(row), "the summary has no row {row:?}:\n{stdout}");
    }
    assert!(out.status.success(), "scripts/chaos --quick found violations:\n{stdout}\n{tail}");
    assert!(stdout.contains("RESULT: PASS"), "{stdout}");
}
