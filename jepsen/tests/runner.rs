//! The runner end to end: keel with its hidden `--unsafe-local-reads` (linearizable reads served
//! from the local replica) under partitions must be reported as not linearizable. This proves the
//! whole chain (clients, history, fault injection, checker, verdict, exit code) can fail.
//!
//! It needs the keel binary of the same profile (`cargo build` builds it with the workspace).

use std::path::PathBuf;
use std::process::Command;

fn keel_binary() -> PathBuf {
    let jepsen = PathBuf::from(env!("CARGO_BIN_EXE_jepsen"));
    jepsen.parent().expect("the target directory").join("keel")
}

#[test]
fn unsafe_local_reads_under_partitions_are_reported_as_stale_reads() {
    let keel = keel_binary();
    assert!(keel.exists(), "{} is missing: build the workspace (`cargo build`) first", keel.display());
    let out = std::env::temp_dir().join(format!("keel-jepsen-test-stale-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_jepsen"))
        .args(["--target", "keel", "--nodes", "3", "--workload", "register", "--faults", "partition"])
        .args(["--fault-interval", "3", "--time-limit", "30", "--quiet", "2", "--seed", "2"])
        .arg("--keel-bin")
        .arg(&keel)
        .arg("--out")
        .arg(&out)
        .arg("--unsafe-local-reads")
        .output()
        .expect("run the jepsen binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let verdict = stdout.lines().find(|line| line.starts_with("VERDICT linearizable")).unwrap_or_default();
    assert!(
        verdict.contains("FAIL") && verdict.contains("stale read"),
        "expected a stale read; stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert_eq!(output.status.code(), Some(1), "a failed check exits 1; stdout:\n{stdout}");
    assert!(stdout.contains("VERDICT convergence"), "the cluster checks still ran:\n{stdout}");
    let _ = std::fs::remove_dir_all(&out);
}
