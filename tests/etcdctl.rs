//! `keel store` driven by the real etcdctl (Debian's etcd-client 3.4), as a user would: the
//! process on a loopback port, etcdctl commands and their printed answers, SIGKILL and restart.

mod support;

use support::free_port;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A `keel store` process, killed by its PID when dropped.
struct KeelStore {
    child: Child,
    endpoint: String,
}

impl Drop for KeelStore {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One peer URL per data dir, kept in it, so a restarted member finds its own again.
fn peer_url_for(data_dir: &Path) -> String {
    let record = data_dir.join("test-peer-url");
    if let Ok(url) = std::fs::read_to_string(&record) {
        return url;
    }
    let url = format!("http://127.0.0.1:{}", free_port());
    std::fs::create_dir_all(data_dir).unwrap();
    std::fs::write(&record, &url).unwrap();
    url
}

impl KeelStore {
    fn start(data_dir: &Path, port: u16) -> KeelStore {
        KeelStore::start_with(data_dir, port, &[])
    }

    fn start_with(data_dir: &Path, port: u16, extra: &[&str]) -> KeelStore {
        KeelStore::start_with_env(data_dir, port, extra, &[])
    }

    fn start_with_env(data_dir: &Path, port: u16, extra: &[&str], env: &[(&str, &str)]) -> KeelStore {
        let endpoint = format!("127.0.0.1:{port}");
        // The peer port is recorded in the data dir's membership, so a restart reuses it.
        let peer_url = peer_url_for(data_dir);
        let child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["store", "--name", "test", "--data-dir"])
            .arg(data_dir)
            .args(["--listen-client-urls", &format!("http://{endpoint}")])
            .args(["--advertise-client-urls", &format!("http://{endpoint}")])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--heartbeat-interval", "50", "--election-timeout", "300"])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start keel store");
        let store = KeelStore { child, endpoint };
        // Ready when etcdctl gets an answer; bounded, so a broken start fails the test.
        for _attempt in 0..100 {
            if store.etcdctl(&["endpoint", "status"]).status.success() {
                return store;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("keel store did not answer on {}", store.endpoint);
    }

    fn etcdctl(&self, args: &[&str]) -> Output {
        self.etcdctl_with_input(args, "")
    }

    fn etcdctl_with_input(&self, args: &[&str], input: &str) -> Output {
        support::etcdctl(&self.endpoint, args, input)
    }

    /// Runs etcdctl and returns its standard output; the command must succeed.
    fn must(&self, args: &[&str]) -> String {
        let output = self.etcdctl(args);
        assert!(output.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs etcdctl, which must fail; returns its standard error.
    fn must_fail(&self, args: &[&str]) -> String {
        let output = self.etcdctl(args);
        assert!(!output.status.success(), "etcdctl {args:?} should fail");
        String::from_utf8(output.stderr).unwrap()
    }
}

#[test]
fn etcdctl_reads_and_writes_and_data_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut keel = KeelStore::start(dir.path(), port);

    assert_eq!(keel.must(&["put", "foo", "bar"]), "OK\n");
    assert_eq!(keel.must(&["put", "foo", "baz", "--prev-kv"]), "OK\nfoo\nbar\n");
    assert_eq!(keel.must(&["put", "fop", "1"]), "OK\n");
    assert_eq!(keel.must(&["get", "foo"]), "foo\nbaz\n");
    assert_eq!(keel.must(&["get", "fo", "--prefix", "--keys-only"]), "foo\n\nfop\n\n");
    assert_eq!(
        keel.must(&["get", "fo", "--prefix", "--limit", "1", "--sort-by", "KEY", "--order", "DESCEND"]),
        "fop\n1\n"
    );
    assert_eq!(keel.must(&["get", "foo", "--rev", "2"]), "foo\nbar\n");
    assert_eq!(keel.must(&["get", "foo", "--consistency", "s"]), "foo\nbaz\n");

    // A txn read from standard input, as etcdctl takes it: compares, success ops, failure ops.
    let txn = keel.etcdctl_with_input(&["txn"], "value(\"foo\") = \"baz\"\n\nput txn yes\n\nput txn no\n\n");
    assert!(txn.status.success(), "{}", String::from_utf8_lossy(&txn.stderr));
    assert_eq!(String::from_utf8_lossy(&txn.stdout), "SUCCESS\n\nOK\n");
    assert_eq!(keel.must(&["get", "txn", "--print-value-only"]), "yes\n");

    assert_eq!(keel.must(&["del", "fop"]), "1\n");
    assert_eq!(keel.must(&["del", "nothing"]), "0\n");
    assert_eq!(keel.must(&["compaction", "3"]), "compacted revision 3\n");
    assert!(keel.must_fail(&["get", "foo", "--rev", "2"]).contains("required revision has been compacted"));
    assert!(keel.must_fail(&["get", "foo", "--rev", "100"]).contains("required revision is a future revision"));
    assert!(keel.must_fail(&["put", "", "x"]).contains("key is not provided"));
    // A value over the 1.5 MiB request limit, given on standard input as etcdctl allows.
    let large = keel.etcdctl_with_input(&["put", "large"], &"x".repeat(1_700_000));
    assert!(!large.status.success());
    assert!(String::from_utf8_lossy(&large.stderr).contains("request is too large"), "{large:?}");
    let txn_ops: String = (0..129).map(|index| format!("put many{index} v\n")).collect();
    let many = keel.etcdctl_with_input(&["txn"], &format!("\n{txn_ops}\n\n"));
    assert!(String::from_utf8_lossy(&many.stderr).contains("too many operations in txn request"), "{many:?}");
    let status = keel.must(&["endpoint", "status", "-w", "json"]);
    assert!(status.contains("\"version\":\"3.5.17\""), "{status}");
    let hash = keel.must(&["endpoint", "hashkv", "-w", "json"]);
    assert!(hash.contains("\"compact_revision\":3"), "{hash}");
    assert_eq!(keel.must(&["alarm", "list"]), "");
    // etcdctl 3.4 prints the health verdict on standard error.
    let health = keel.etcdctl(&["endpoint", "health"]);
    assert!(health.status.success() && String::from_utf8_lossy(&health.stderr).contains("is healthy"));
    let members = keel.must(&["member", "list"]);
    let listed = format!(", started, test, {}, http://{}, false", peer_url_for(dir.path()), keel.endpoint);
    assert!(members.contains(&listed), "{members}");
    assert!(keel.must(&["defrag"]).contains("Finished defragmenting etcd member"));

    // Everything acknowledged survives SIGKILL.
    keel.child.kill().unwrap();
    keel.child.wait().unwrap();
    drop(keel);
    let keel = KeelStore::start(dir.path(), port);
    assert_eq!(keel.must(&["get", "foo"]), "foo\nbaz\n");
    assert_eq!(keel.must(&["get", "txn", "--print-value-only"]), "yes\n");
    assert_eq!(keel.must(&["get", "fop"]), "");
    assert_eq!(keel.must(&["put", "after", "restart"]), "OK\n");
    let revision = keel.must(&["get", "after", "-w", "json"]);
    assert!(revision.contains("\"mod_revision\":7"), "{revision}");
}

/// `etcdctl watch` from a past revision replays history, then sees live writes; a watch below the
/// compact revision is refused with etcd's message.
#[test]
fn etcdctl_watch_replays_history_then_follows_live_writes() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let keel = KeelStore::start(dir.path(), free_port());
    keel.must(&["put", "w/a", "1"]); // 2
    keel.must(&["put", "w/b", "2"]); // 3
    keel.must(&["del", "w/a"]); // 4
    let mut watcher = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &keel.endpoint, "watch", "w/", "--prefix", "--rev", "2", "--prev-kv"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    let stdout = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let next = || received.recv_timeout(Duration::from_secs(20)).expect("a watch line within the hang guard");
    // History. etcdctl prints each event as its type, then the previous key and value when
    // there is one, then the key and value.
    assert_eq!([next(), next(), next()], ["PUT", "w/a", "1"]);
    assert_eq!([next(), next(), next()], ["PUT", "w/b", "2"]);
    assert_eq!([next(), next(), next(), next(), next()], ["DELETE", "w/a", "1", "w/a", ""]);
    // Live: written after the watcher caught up.
    keel.must(&["put", "w/b", "3"]);
    assert_eq!([next(), next(), next(), next(), next()], ["PUT", "w/b", "2", "w/b", "3"]);
    let _ = watcher.kill();
    let _ = watcher.wait();

    keel.must(&["compaction", "4"]);
    let compacted = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &keel.endpoint, "watch", "w/", "--prefix", "--rev", "2"])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&compacted.stderr).to_string() + &String::from_utf8_lossy(&compacted.stdout);
    assert!(printed.contains("required revision has been compacted"), "{printed}");
}

/// Leases with etcdctl: grant, attach, time-to-live, list, keep-alive, revoke, and expiry,
/// which the leader's lessor turns into a revoke through the log.
#[test]
fn etcdctl_leases_attach_keep_alive_revoke_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let keel = KeelStore::start(dir.path(), free_port());
    let granted = keel.must(&["lease", "grant", "60"]);
    // "lease 694d7a0e1b2c3d4e granted with TTL(60s)"
    let id = granted.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(granted, format!("lease {id} granted with TTL(60s)\n"));
    assert_eq!(keel.must(&["put", "leased", "v", "--lease", &id]), "OK\n");
    let ttl = keel.must(&["lease", "timetolive", &id, "--keys"]);
    assert!(ttl.starts_with(&format!("lease {id} granted with TTL(60s), remaining(")), "{ttl}");
    assert!(ttl.contains("attached keys([leased])"), "{ttl}");
    assert_eq!(keel.must(&["lease", "list"]), format!("found 1 leases\n{id}\n"));
    assert_eq!(keel.must(&["lease", "keep-alive", "--once", &id]), format!("lease {id} keepalived with TTL(60)\n"));
    assert_eq!(keel.must(&["lease", "revoke", &id]), format!("lease {id} revoked\n"));
    assert_eq!(keel.must(&["get", "leased"]), "", "revoking deletes the attached keys");
    assert!(keel.must_fail(&["put", "k", "v", "--lease", &id]).contains("requested lease not found"));

    // A short lease expires on its own; its key goes with it.
    let short = keel.must(&["lease", "grant", "1"]);
    let short_id = short.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(keel.must(&["put", "short-lived", "v", "--lease", &short_id]), "OK\n");
    let mut expired = false;
    for _poll in 0..100 {
        if keel.must(&["get", "short-lived"]).is_empty() {
            expired = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(expired, "the lease expired and its key was deleted");
    assert_eq!(keel.must(&["lease", "list"]), "found 0 leases\n");
}

fn keel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel")).args(args).output().expect("run keel")
}

/// `etcdctl snapshot save` gets keel's snapshot with etcd's sha256 trailer; `keel snapshot
/// status` checks it; `keel snapshot restore` builds a data dir a new member starts from, at the
/// saved revision; a corrupted file is refused.
#[test]
fn etcdctl_snapshot_save_then_keel_snapshot_restore() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let keel_store = KeelStore::start(&source, free_port());
    for index in 0..20 {
        keel_store.must(&["put", &format!("snap/{index:02}"), &format!("value {index}")]);
    }
    keel_store.must(&["del", "snap/00"]);
    let file = dir.path().join("backup.db");
    let saved = keel_store.etcdctl(&["snapshot", "save", file.to_str().unwrap()]);
    assert!(saved.status.success(), "{saved:?}");
    assert!(String::from_utf8_lossy(&saved.stdout).contains("Snapshot saved at"), "{saved:?}");
    let listed_before = keel_store.must(&["get", "snap/", "--prefix", "-w", "json"]);
    drop(keel_store);

    let status = keel(&["snapshot", "status", file.to_str().unwrap()]);
    assert!(status.status.success(), "{status:?}");

    let restored_dir = dir.path().join("restored");
    let restored = keel(&["snapshot", "restore", file.to_str().unwrap(), "--data-dir", restored_dir.to_str().unwrap()]);
    assert!(restored.status.success(), "{restored:?}");
    // Restoring over an existing data dir is refused, as etcdctl refuses.
    let again = keel(&["snapshot", "restore", file.to_str().unwrap(), "--data-dir", restored_dir.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"), "{again:?}");

    let restarted = KeelStore::start(&restored_dir, free_port());
    let listed_after = restarted.must(&["get", "snap/", "--prefix", "-w", "json"]);
    // Same keys, values and revisions; only the header (member and cluster ids) differs.
    let kvs = |listing: &str| listing[listing.find("\"kvs\"").unwrap()..].to_string();
    assert_eq!(kvs(&listed_after), kvs(&listed_before));
    let put = restarted.must(&["put", "after", "restore", "-w", "json"]);
    assert!(put.contains("\"revision\":23"), "{put}");

    // One flipped byte: the trailer no longer matches.
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[100] ^= 0xff;
    let corrupt = dir.path().join("corrupt.db");
    std::fs::write(&corrupt, bytes).unwrap();
    let status = keel(&["snapshot", "status", corrupt.to_str().unwrap()]);
    assert!(!status.status.success());
    assert!(String::from_utf8_lossy(&status.stderr).contains("sha256"), "{status:?}");
}

/// A plain HTTP/1.1 GET on the client port; returns (status line, body).
fn http_get(endpoint: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(endpoint).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// etcd's HTTP endpoints beside gRPC on the client URL, and `etcdctl check datascale`, which
/// reads /metrics.
#[test]
fn health_version_and_metrics_are_served_beside_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let keel = KeelStore::start(dir.path(), free_port());
    keel.must(&["put", "k", "v"]);
    let (status, body) = http_get(&keel.endpoint, "/health");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains(r#""health":"true""#), "{body}");
    let (_, body) = http_get(&keel.endpoint, "/version");
    assert!(body.contains(r#""etcdserver":"3.5.17""#), "{body}");
    let (_, body) = http_get(&keel.endpoint, "/metrics");
    for name in ["etcd_server_has_leader 1", "etcd_debugging_mvcc_current_revision 2", "process_resident_memory_bytes "]
    {
        assert!(body.contains(name), "{name} missing from:\n{body}");
    }
    let scale = keel.etcdctl(&["check", "datascale", "--load", "s"]);
    assert!(String::from_utf8_lossy(&scale.stdout).contains("PASS"), "{scale:?}");
}

/// `--auto-compaction-mode periodic` with a short window compacts on its own, as etcd does.
#[test]
fn periodic_auto_compaction_compacts_old_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "2s"];
    let keel = KeelStore::start_with(dir.path(), free_port(), &flags);
    for index in 0..10 {
        keel.must(&["put", "compacted", &index.to_string()]);
    }
    let mut compacted = false;
    for _poll in 0..300 {
        keel.must(&["put", "tick", "t"]);
        let old = keel.etcdctl(&["get", "compacted", "--rev", "2"]);
        if String::from_utf8_lossy(&old.stderr).contains("required revision has been compacted") {
            compacted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(compacted, "revision 2 was never compacted");
    // The newest value is still there.
    assert_eq!(keel.must(&["get", "compacted", "--print-value-only"]), "9\n");
}

/// `--quota-backend-bytes`: a write past the quota gets etcd's "database space exceeded" and
/// raises NOSPACE (alarm list, endpoint status); reads and deletes go on; etcd's recovery
/// (compact, defrag, alarm disarm) makes writes work again.
#[test]
fn the_storage_quota_raises_nospace_and_recovers_as_etcd_does() {
    let dir = tempfile::tempdir().unwrap();
    let keel = KeelStore::start_with(dir.path(), free_port(), &["--quota-backend-bytes", "3000000"]);
    let value = "x".repeat(200_000);
    let mut refused = None;
    for index in 0..100 {
        let output = keel.etcdctl_with_input(&["put", &format!("big/{index:03}")], &value);
        if !output.status.success() {
            refused = Some(String::from_utf8_lossy(&output.stderr).to_string());
            break;
        }
    }
    let refused = refused.expect("the quota never refused a write");
    assert!(refused.contains("etcdserver: mvcc: database space exceeded"), "{refused}");
    assert!(keel.must(&["alarm", "list"]).contains("alarm:NOSPACE"));
    assert!(keel.must(&["endpoint", "status"]).contains("alarm:NOSPACE"));
    // Raised: even a small put is refused, reads and deletes are not.
    assert!(keel.must_fail(&["put", "small", "1"]).contains("database space exceeded"));
    assert!(!keel.must(&["get", "big/000", "--keys-only"]).is_empty());
    keel.must(&["del", "big/", "--prefix"]);
    let revision = keel.must(&["get", "big/000", "-w", "json"]);
    let revision: i64 =
        revision.split("\"revision\":").nth(1).unwrap().split([',', '}']).next().unwrap().parse().unwrap();
    keel.must(&["compaction", &revision.to_string()]);
    keel.must(&["defrag"]);
    keel.must(&["alarm", "disarm"]);
    assert_eq!(keel.must(&["put", "small", "2"]), "OK\n");
    assert_eq!(keel.must(&["alarm", "list"]), "");
}

/// SIGTERM stops a member even while a client holds a watch stream open (the streams get a
/// short grace period, then serving ends).
#[test]
fn sigterm_stops_a_member_with_open_watch_streams() {
    let dir = tempfile::tempdir().unwrap();
    let mut keel = KeelStore::start(dir.path(), free_port());
    let mut watcher = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &keel.endpoint, "watch", "held-open"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let terminated = Command::new("kill").args(["-TERM", &keel.child.id().to_string()]).status().unwrap();
    assert!(terminated.success());
    let mut exited = false;
    for _poll in 0..300 {
        if keel.child.try_wait().unwrap().is_some() {
            exited = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert!(exited, "keel store did not stop on SIGTERM with a watch open");
}

/// `--max-request-bytes` moves the limit: a 100 KiB put passes by default and is refused at 64 KiB.
#[test]
fn max_request_bytes_is_a_flag() {
    let dir = tempfile::tempdir().unwrap();
    let keel = KeelStore::start_with(dir.path(), free_port(), &["--max-request-bytes", "65536"]);
    let large = keel.etcdctl_with_input(&["put", "k"], &"x".repeat(100 * 1024));
    assert!(String::from_utf8_lossy(&large.stderr).contains("request is too large"), "{large:?}");
    let small = keel.etcdctl_with_input(&["put", "k"], &"x".repeat(32 * 1024));
    assert!(small.status.success(), "{small:?}");
}

/// `etcdctl make-mirror` copies one keel's keys into another, then follows live writes (it is
/// a Range then a Watch on the source and Puts on the destination).
#[test]
fn etcdctl_make_mirror_copies_then_follows_into_another_member() {
    let (source_dir, destination_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = KeelStore::start(source_dir.path(), free_port());
    let destination = KeelStore::start(destination_dir.path(), free_port());
    source.must(&["put", "app/before", "1"]);
    source.must(&["put", "other", "not mirrored"]);
    let mut mirror = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &source.endpoint, "make-mirror", "--prefix", "app/", "--dest-prefix", "copy/"])
        .arg(&destination.endpoint)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcdctl is installed by scripts/setup");
    source.must(&["put", "app/after", "2"]);
    let mut mirrored = String::new();
    for _poll in 0..200 {
        mirrored = destination.must(&["get", "", "--from-key"]);
        // The initial copy and the watch run side by side: wait for both keys.
        if mirrored.contains("copy/after") && mirrored.contains("copy/before") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = mirror.kill();
    let _ = mirror.wait();
    assert_eq!(mirrored, "copy/after\n2\ncopy/before\n1\n");
}

/// etcdctl 3.4 sends an endpoint given with its scheme as the HTTP/2 `:authority` verbatim
/// (`http://127.0.0.1:2379`); etcd's grpc-go server ignores that, and so must keel
/// (vendor/README.md).
#[test]
fn etcdctl_accepts_endpoints_with_a_scheme() {
    let dir = tempfile::tempdir().unwrap();
    let keel = KeelStore::start(dir.path(), free_port());
    let with_scheme = format!("http://{}", keel.endpoint);
    let put = support::etcdctl(&with_scheme, &["put", "schemed", "yes"], "");
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
    let status = support::etcdctl(&with_scheme, &["endpoint", "status", "-w", "json"], "");
    assert!(String::from_utf8_lossy(&status.stdout).contains("\"revision\":2"), "{status:?}");
    assert_eq!(keel.must(&["get", "schemed", "--print-value-only"]), "yes\n");
}

/// The environment a process runs with (`/proc/PID/environ`).
fn environment_of(pid: u32) -> Vec<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    bytes.split(|byte| *byte == 0).map(|entry| String::from_utf8_lossy(entry).into_owned()).collect()
}

/// `keel store` re-executes itself once with glibc malloc tunables (src/malloc_tunables.rs),
/// keeping its PID and arguments, and leaves a GLIBC_TUNABLES the user set alone.
#[test]
fn the_store_runs_with_glibc_malloc_tunables_unless_the_user_set_them() {
    let dir = tempfile::tempdir().unwrap();
    let keel = KeelStore::start(dir.path(), free_port());
    let tunables = environment_of(keel.child.id()).into_iter().find(|entry| entry.starts_with("GLIBC_TUNABLES="));
    // glibc cuts the variable at its first tunable while parsing it in place.
    assert!(
        tunables.as_deref().is_some_and(|value| value.starts_with("GLIBC_TUNABLES=glibc.malloc.mmap_threshold=262144")),
        "{tunables:?}"
    );
    assert_eq!(keel.must(&["put", "after-exec", "1"]), "OK\n");
    drop(keel);

    let dir = tempfile::tempdir().unwrap();
    let own = [("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")];
    let keel = KeelStore::start_with_env(dir.path(), free_port(), &[], &own);
    assert!(environment_of(keel.child.id()).contains(&"GLIBC_TUNABLES=glibc.malloc.arena_max=4".to_string()));
}
