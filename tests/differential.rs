//! The differential suite: scripts of etcdctl commands run against a real etcd 3.4
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
    step(&["get", "", "--from-key", "--keys-only", "--sort-by", "VALUE", "--order", "DESCEND", "-w", "json"]),
    step(&["get", "", "--from-key", "--limit", "1", "--sort-by", "CREATE", "--order", "DESCEND", "-w", "json"]),
    step(&["get", "c/", "--prefix", "--limit", "1", "--keys-only", "--consistency", "s", "-w", "json"]),
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

/// Runs `script` against one server and returns one normalized answer per step.
fn run_script(server: &Server, script: &[Step]) -> Vec<String> {
    let mut leases = Vec::new();
    let mut granted = String::new();
    let mut answers = Vec::new();
    for step in script {
        let args: Vec<String> = step.args.iter().map(|arg| arg.replace("{lease}", &granted)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = etcdctl(&server.endpoint, &args, step.input);
        if step.args.len() >= 2 && step.args[..2] == ["lease", "grant"] {
            let json: Value = serde_json::from_slice(&output.stdout).unwrap();
            granted = format!("{:x}", json["ID"].as_i64().unwrap());
        }
        answers.push(answer(&output, &mut leases));
    }
    answers
}

/// A txn with more operations than the limit, and a value over the request limit.
fn run_limits(server: &Server) -> Vec<String> {
    let mut leases = Vec::new();
    let many: String = (0..129).map(|index| format!("put many{index} v\n")).collect();
    let large = "x".repeat(1_700_000);
    vec![
        answer(&etcdctl(&server.endpoint, &["txn"], &format!("\n{many}\n\n")), &mut leases),
        answer(&etcdctl(&server.endpoint, &["put", "large"], &large), &mut leases),
    ]
}

/// Runs `run` against etcd, then keel, each on a fresh data dir, and lists where they differ.
fn compare(script: &[Step], run: impl Fn(&Server) -> Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let etcd = start("etcd", None, &dir.path().join("etcd"));
    let expected = run(&etcd);
    drop(etcd);
    let keel = start(env!("CARGO_BIN_EXE_keel"), Some("store"), &dir.path().join("keel"));
    let actual = run(&keel);
    let mut differences = Vec::new();
    for (index, (etcd_answer, keel_answer)) in expected.iter().zip(&actual).enumerate() {
        if etcd_answer != keel_answer {
            let args = script.get(index).map_or("(limits)".to_string(), |step| step.args.join(" "));
            differences.push(format!("step {index} `{args}`:\n  etcd: {etcd_answer}\n  keel: {keel_answer}"));
        }
    }
    assert_eq!(expected.len(), actual.len());
    assert!(differences.is_empty(), "{} differences:\n{}", differences.len(), differences.join("\n"));
}

#[test]
fn keel_answers_the_script_exactly_as_etcd_3_4_does() {
    compare(SCRIPT, |server| {
        let mut answers = run_script(server, SCRIPT);
        answers.extend(run_limits(server));
        answers
    });
}

const ROOT: &str = "--user=root:rootpw";
const ALICE: &str = "--user=alice:alicepw";

/// Auth: users, roles, permissions, enable/disable, and what each user may then do. Left out
/// where keel answers as etcd 3.5 and 3.4 differs (COMPAT.md): a reversed permission range
/// (3.5 refuses it), `role get root` (3.5 shows its all-keys permission), and the code of the
/// admin-only maintenance calls (3.4 sends the raw "auth: permission denied" as Unknown; 3.4's
/// MoveLeader needs no root role).
const AUTH_SCRIPT: &[Step] = &[
    step(&["user", "add", "root:rootpw"]),
    // etcdctl creates the root role and grants it to root when enable says it is missing.
    step(&["auth", "enable"]),
    step(&["get", "foo"]),
    step(&[ROOT, "put", "foo", "bar", "-w", "json"]),
    step(&["--user=root:wrong", "get", "foo"]),
    step(&[ROOT, "role", "add", "reader"]),
    step(&[ROOT, "role", "add", "reader"]),
    step(&[ROOT, "role", "grant-permission", "reader", "read", "foo"]),
    step(&[ROOT, "role", "grant-permission", "reader", "readwrite", "app/", "--prefix=true"]),
    step(&[ROOT, "role", "get", "reader"]),
    step(&[ROOT, "role", "get", "missing"]),
    step(&[ROOT, "user", "add", "alice:alicepw"]),
    step(&[ROOT, "user", "add", "alice:again"]),
    step(&[ROOT, "user", "grant-role", "alice", "reader"]),
    step(&[ROOT, "user", "grant-role", "alice", "missing"]),
    step(&[ROOT, "user", "grant-role", "ghost", "reader"]),
    step(&[ROOT, "user", "get", "alice"]),
    step(&[ROOT, "user", "get", "ghost"]),
    step(&[ROOT, "user", "list"]),
    step(&[ROOT, "role", "list"]),
    step(&[ALICE, "get", "foo", "-w", "json"]),
    step(&[ALICE, "put", "foo", "x"]),
    step(&[ALICE, "put", "app/x", "1", "-w", "json"]),
    step(&[ALICE, "put", "app/y", "2", "--prev-kv", "-w", "json"]),
    step(&[ALICE, "get", "app/", "--prefix", "-w", "json"]),
    step(&[ALICE, "get", "", "--from-key"]),
    step(&[ALICE, "get", "fo", "--prefix"]),
    step(&[ALICE, "del", "app/x", "-w", "json"]),
    step(&[ALICE, "del", "foo"]),
    Step {
        args: &[ALICE, "txn", "-w", "json"],
        input: "value(\"foo\") = \"bar\"\n\nput app/t yes\n\nput app/t no\n\n",
    },
    Step { args: &[ALICE, "txn", "-w", "json"], input: "value(\"foo\") = \"bar\"\n\nput foo no\n\n\n" },
    Step { args: &[ALICE, "txn", "-w", "json"], input: "value(\"other\") = \"x\"\n\nget app/t\n\n\n" },
    step(&[ALICE, "user", "list"]),
    step(&[ALICE, "role", "list"]),
    step(&[ALICE, "user", "get", "alice"]),
    step(&[ALICE, "user", "get", "root"]),
    step(&[ALICE, "role", "get", "reader"]),
    step(&[ALICE, "role", "get", "root"]),
    step(&[ALICE, "role", "add", "mine"]),
    step(&[ALICE, "auth", "disable"]),
    step(&[ALICE, "alarm", "list"]),
    step(&[ALICE, "alarm", "disarm"]),
    step(&[ALICE, "member", "remove", "1234"]),
    step(&[ALICE, "defrag"]),
    step(&[ALICE, "lock", "app/mylock", "--", "true"]),
    step(&[ALICE, "lock", "forbidden", "--", "true"]),
    step(&[ROOT, "role", "revoke-permission", "reader", "foo"]),
    step(&[ROOT, "role", "revoke-permission", "reader", "foo"]),
    step(&[ALICE, "get", "foo"]),
    Step { args: &[ROOT, "user", "passwd", "alice", "--interactive=false"], input: "newpw\n" },
    step(&[ALICE, "get", "app/", "--prefix"]),
    step(&["--user=alice:newpw", "get", "app/", "--prefix", "-w", "json"]),
    step(&[ROOT, "user", "revoke-role", "alice", "reader"]),
    step(&[ROOT, "user", "revoke-role", "alice", "reader"]),
    step(&["--user=alice:newpw", "get", "app/", "--prefix"]),
    step(&[ROOT, "user", "delete", "root"]),
    step(&[ROOT, "role", "delete", "root"]),
    step(&[ROOT, "user", "revoke-role", "root", "root"]),
    step(&[ROOT, "user", "delete", "alice"]),
    step(&[ROOT, "user", "delete", "alice"]),
    step(&[ROOT, "role", "delete", "reader"]),
    step(&[ROOT, "role", "delete", "reader"]),
    step(&[ROOT, "auth", "disable"]),
    step(&["get", "foo", "-w", "json"]),
    step(&["user", "list"]),
    step(&["user", "add", "bob", "--no-password"]),
    step(&["user", "get", "bob"]),
    step(&["auth", "enable"]),
    step(&["--user=bob:anything", "get", "foo"]),
    step(&["user", "list"]),
    step(&[ROOT, "user", "list"]),
];

#[test]
fn keel_answers_the_auth_script_exactly_as_etcd_3_4_does() {
    compare(AUTH_SCRIPT, |server| run_script(server, AUTH_SCRIPT));
}
