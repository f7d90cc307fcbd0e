//! A short run of `keel-bench` against a real single-member `keel store` started here on free
//! loopback ports. Ignored by default: it needs the `keel` binary, which this crate cannot
//! depend on; it is taken from `$KEEL_BIN`, else next to `keel-bench` in the same target
//! directory (built by `cargo build -p keel`). Run it with
//! `cargo build -p keel -p benches && cargo test -p benches --test smoke -- --ignored`.
//! `scripts/bench-vs-etcd` makes the same check against every cluster it starts.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn keel_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("KEEL_BIN") {
        return Some(PathBuf::from(path));
    }
    let sibling = Path::new(env!("CARGO_BIN_EXE_keel-bench")).with_file_name("keel");
    sibling.exists().then_some(sibling)
}

/// A `keel store` process, killed by its PID when dropped.
struct Keel {
    child: Child,
    endpoint: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Keel {
    fn start(binary: &Path) -> Keel {
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = dir.path().join("keel.log");
        let child = Command::new(binary)
            .args(["store", "--name", "n1", "--data-dir"])
            .arg(dir.path().join("n1"))
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("n1={peer_url}"), "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &format!("bench-smoke-{client}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start keel store");
        Keel { child, endpoint: format!("127.0.0.1:{client}"), log, _dir: dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Keel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs keel-bench with `args` against `keel` and returns its JSON report.
fn bench(keel: &Keel, args: &[&str]) -> Result<serde_json::Value, String> {
    let json = keel._dir.path().join("report.json");
    let _ = std::fs::remove_file(&json);
    let output = Command::new(env!("CARGO_BIN_EXE_keel-bench"))
        .args(["--endpoints", &keel.endpoint, "--dial-timeout", "2s", "--request-timeout", "5s", "--json"])
        .arg(&json)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("keel-bench {args:?} failed: {stdout}{stderr}"));
    }
    eprintln!("{stdout}");
    let text = std::fs::read_to_string(&json).map_err(|error| format!("{}: {error}", json.display()))?;
    serde_json::from_str(&text).map_err(|error| format!("{text}: {error}"))
}

fn wait_until_serving(keel: &Keel) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match bench(keel, &["put", "--total", "1"]) {
            Ok(report) if report["ops"] == 1 => return,
            outcome => {
                assert!(Instant::now() < deadline, "keel store did not serve: {outcome:?}\n{}", keel.log());
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

#[test]
#[ignore = "needs the keel binary: cargo build -p keel, then --ignored"]
fn put_and_watch_against_a_keel_store() {
    let Some(binary) = keel_binary() else {
        eprintln!("SKIPPED: no keel binary next to keel-bench; build it with `cargo build -p keel` or set KEEL_BIN");
        return;
    };
    let keel = Keel::start(&binary);
    wait_until_serving(&keel);

    let put = bench(&keel, &["put", "--total", "200", "--clients", "4", "--conns", "2", "--key-space", "50"]).unwrap();
    assert_eq!(put["workload"], "put");
    assert_eq!(put["ops"], 200, "{put}");
    assert_eq!(put["errors"], 0, "{put}");
    assert_eq!(put["latency_ms"]["count"], 200, "{put}");
    assert!(put["latency_ms"]["p99"].as_f64().unwrap() > 0.0, "{put}");

    let watch =
        bench(&keel, &["watch", "--watchers", "6", "--watchers-per-stream", "2", "--total", "100", "--rate", "200"])
            .unwrap();
    assert_eq!(watch["ops"], 100, "{watch}");
    assert_eq!(watch["errors"], 0, "{watch}");
    assert_eq!(watch["watch"]["streams"], 3, "{watch}");
    assert_eq!(watch["watch"]["expected_events"], 600, "{watch}");
    assert_eq!(watch["watch"]["received_events"], 600, "{watch}");
    assert_eq!(watch["watch"]["lost_events"], 0, "{watch}");
    assert_eq!(watch["latency_ms"]["count"], 600, "{watch}");

    let cas = bench(&keel, &["txn-cas", "--total", "100", "--clients", "4", "--contended-keys", "2"]).unwrap();
    assert_eq!(cas["ops"], 100, "{cas}");
    assert_eq!(cas["errors"], 0, "{cas}");
    assert!(cas["conflicts"].as_u64().unwrap() < 100, "{cas}");

    let leases =
        bench(&keel, &["leases", "--leases", "4", "--ttl", "5", "--keepalive-interval", "100ms", "--total", "20"])
            .unwrap();
    assert_eq!(leases["ops"], 20, "{leases}");
    assert_eq!(leases["errors"], 0, "{leases}");
    assert!(!keel.log().contains("panicked"), "{}", keel.log());
}
