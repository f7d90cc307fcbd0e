//! The differential suite: one script of etcdctl commands run against a real etcd 3.4
//! (Debian's etcd-server, started here on loopback) and against `keel store`; every answer,
//! normalized (cluster and member ids, terms, lease ids, versions and hashes masked), must be
//! identical: values, revisions, versions, counts, errors.

mod support;

use support::{etcdctl, free_port};

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A server process, killed by its PID when dropped.
struct Server {
    child: Child,
    endpoint: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(program: &str, subcommand: Option<&str>, data_dir: &Path) -> Server {
    let (client, peer) = (free_port(), free_port());
    let endpoint = format!("127.0.0.1:{client}");
    let client_url = format!("http://{endpoint}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let mut command = Command::new(program);
    command.args(subcommand);
    command
        .args(["--name", "diff", "--data-dir"])
        .arg(data_dir)
        .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("diff={peer_url}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let server = Server { child: command.spawn().unwrap_or_else(|error| panic!("start {program}: {error}")), endpoint };
    for _attempt in 0..100 {
        if etcdctl(&server.endpoint, &["endpoint", "health"], "").status.success() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{program} did not become healthy on {}", server.endpoint);
}

/// Masks what legitimately differs between two servers; leaves everything a client relies on.
fn normalize_json(value: &mut Value, leases: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for masked in ["cluster_id", "member_id", "raft_term", "hash", "Endpoint"] {
                if map.contains_key(masked) {
                    map.insert(masked.to_string(), Value::String("*".into()));
                }
            }
            // Lease ids are the server's choice: number them by first appearance.
            for lease_field in ["ID", "id", "lease"] {
                if let Some(Value::Number(id)) = map.get(lease_field) {
                    if id.as_i64() != Some(0) {
                        let id = id.to_string();
                        let position = leases.iter().position(|seen| *seen == id).unwrap_or_else(|| {
                            leases.push(id.clone());
                            leases.len() - 1
                        });
                        map.insert(lease_field.to_string(), Value::String(format!("lease#{position}")));
                    }
                }
            }
            // A remaining TTL may differ by the second that passed between the two runs.
            if map.get("granted-ttl").and_then(Value::as_i64).is_some_and(|granted| granted > 0) {
                map.insert("ttl".into(), Value::String("*".into()));
            }
            for child in map.values_mut() {
                normalize_json(child, leases);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| normalize_json(item, leases)),
        _ => {}
    }
}

/// What a command answered: its exit status, its stdout (JSON normalized), and its error line.
fn answer(output: &Output, leases: &mut Vec<String>) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stdout = match serde_json::from_str::<Value>(&stdout) {
        Ok(mut json) => {
            normalize_json(&mut json, leases);
            json.to_string()
        }
        Err(_) => {
            // Plain text: lease ids appear as hex; mask them in order of appearance.
            let mut text = stdout.to_string();
            for word in stdout.split_whitespace() {
                if word.len() >= 12 && word.chars().all(|c| c.is_ascii_hexdigit()) {
                    let position = leases.iter().position(|seen| seen == word).unwrap_or_else(|| {
                        leases.push(word.to_string());
                        leases.len() - 1
                    });
                    text = text.replace(word, &format!("lease#{position}"));
                }
            }
            text
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    let error = stderr.lines().filter(|line| line.starts_with("Error:")).collect::<Vec<_>>().join("\n");
    format!("success={} stdout={stdout} error={error}", output.status.success())
}

/// One scripted step: etcdctl arguments (`{lease}` is replaced by the lease id granted earlier
/// on that server) and standard input.
struct Step {
    args: &'static [&'static str],
    input: &'static str,
}

const fn step(args: &'static [&'static str]) -> Step {
    Step { args, input: "" }
}

const SCRIPT: &[Step] = &[
    step(&["put", "a", "1", "-w", "json"]),
    step(&["put", "b", "2", "-w", "json"]),
    step(&["put", "a", "3", "--prev-kv", "-w", "json"]),
    step(&["put", "c/1", "x", "-w", "json"]),
    step(&["put", "c/2", "y", "-w", "json"]),
    step(&["get", "a", "-w", "json"]),
    step(&["get", "c/", "--prefix", "-w", "json"]),
    step(&["get", "c/", "--prefix", "--keys-only", "-w", "json"]),
    step(&["get", "", "--from-key", "--limit", "2", "-w", "json"]),
    step(&["get", "", "--from-key", "--sort-by", "MODIFY", "--order", "DESCEND", "-w", "json"]),
    step(&["get", "a", "--rev", "2", "-w", "json"]),
    step(&["get", "missing", "-w", "json"]),
    step(&["del", "b", "--prev-kv", "-w", "json"]),
    step(&["del", "nothing", "-w", "json"]),
    step(&["del", "c/", "--prefix", "-w", "json"]),
    Step { args: &["txn", "-w", "json"], input: "value(\"a\") = \"3\"\n\nput t yes\n\nput t no\n\n" },
    Step { args: &["txn", "-w", "json"], input: "mod(\"a\") > \"100\"\n\nput t yes\n\nget a\n\n" },
    Step { args: &["txn", "-w", "json"], input: "version(\"missing\") = \"0\"\n\ndel a\n\n\n" },
    step(&["put", "", "empty-key"]),
    step(&["get", "a", "--rev", "1000"]),
    step(&["compaction", "3"]),
    step(&["get", "a", "--rev", "2"]),
    step(&["compaction", "2"]),
    step(&["get", "a", "--rev", "3", "-w", "json"]),
    step(&["lease", "grant", "100", "-w", "json"]),
    step(&["put", "leased", "v", "--lease", "{lease}", "-w", "json"]),
    step(&["lease", "timetolive", "{lease}", "--keys", "-w", "json"]),
    step(&["lease", "list", "-w", "json"]),
    step(&["lease", "revoke", "{lease}", "-w", "json"]),
    step(&["get", "leased", "-w", "json"]),
    step(&["put", "k", "v", "--lease", "{lease}"]),
    step(&["lease", "revoke", "{lease}"]),
    step(&["lease", "timetolive", "{lease}", "-w", "json"]),
    step(&["put", "final", "v", "-w", "json"]),
    step(&["get", "", "--from-key", "-w", "json"]),
    step(&["endpoint", "hashkv", "-w", "json"]),
];

/// Runs the script against one server and returns one normalized answer per step.
fn run_script(server: &Server) -> Vec<String> {
    let mut leases = Vec::new();
    let mut granted = String::new();
    let mut answers = Vec::new();
    for step in SCRIPT {
        let args: Vec<String> = step.args.iter().map(|arg| arg.replace("{lease}", &granted)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = etcdctl(&server.endpoint, &args, step.input);
        if step.args[..2] == ["lease", "grant"] {
            let json: Value = serde_json::from_slice(&output.stdout).unwrap();
            granted = format!("{:x}", json["ID"].as_i64().unwrap());
        }
        answers.push(answer(&output, &mut leases));
    }
    // A txn with more operations than the limit, and a value over the request limit.
    let many: String = (0..129).map(|index| format!("put many{index} v\n")).collect();
    answers.push(answer(&etcdctl(&server.endpoint, &["txn"], &format!("\n{many}\n\n")), &mut leases));
    let large = "x".repeat(1_700_000);
    answers.push(answer(&etcdctl(&server.endpoint, &["put", "large"], &large), &mut leases));
    answers
}

#[test]
fn keel_answers_the_script_exactly_as_etcd_3_4_does() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = start("etcd", None, &dir.path().join("etcd"));
    let expected = run_script(&etcd);
    drop(etcd);
    let keel = start(env!("CARGO_BIN_EXE_keel"), Some("store"), &dir.path().join("keel"));
    let actual = run_script(&keel);
    let mut differences = Vec::new();
    for (index, (etcd_answer, keel_answer)) in expected.iter().zip(&actual).enumerate() {
        if etcd_answer != keel_answer {
            let args = SCRIPT.get(index).map_or("(limits)".to_string(), |step| step.args.join(" "));
            differences.push(format!("step {index} `{args}`:\n  etcd: {etcd_answer}\n  keel: {keel_answer}"));
        }
    }
    assert_eq!(expected.len(), actual.len());
    assert!(differences.is_empty(), "{} differences:\n{}", differences.len(), differences.join("\n"));
}
