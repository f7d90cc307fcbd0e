//! TLS on client and peer URLs, with etcd's flags: real `keel store` processes on loopback,
//! certificates made by the `openssl` CLI, and the clients a user would run (etcdctl 3.4,
//! curl). Every process is killed by its PID when its handle drops.

mod support;

use support::free_port;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Generous bound for a member to start and answer, or a cluster to elect a leader.
const WAIT: Duration = Duration::from_secs(60);

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|error| panic!("{command:?}: {error}"));
    assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

/// A CA, a server certificate (SAN IP:127.0.0.1 and DNS:localhost, usable as a client too, as
/// peer certificates are) and a client certificate, as PEM files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki { dir };
        pki.key("ca");
        run(Command::new("openssl")
            .args(["req", "-x509", "-new", "-key", "ca-key.pem", "-subj", "/CN=keel test CA", "-days", "2"])
            .args(["-out", "ca.pem"])
            .current_dir(pki.dir.path()));
        pki.signed(
            "server",
            "/CN=keel-server",
            "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        );
        pki.signed("client", "/CN=keel-client", "extendedKeyUsage=clientAuth\n");
        pki
    }

    fn key(&self, name: &str) {
        run(Command::new("openssl")
            .args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
            .args(["-out", &format!("{name}-key.pem")])
            .current_dir(self.dir.path()));
    }

    fn signed(&self, name: &str, subject: &str, extensions: &str) {
        self.key(name);
        let extensions_file = self.path(&format!("{name}.ext"));
        std::fs::write(
            &extensions_file,
            format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{extensions}"),
        )
        .unwrap();
        run(Command::new("openssl")
            .args(["req", "-new", "-key", &format!("{name}-key.pem"), "-subj", subject])
            .args(["-out", &format!("{name}.csr")])
            .current_dir(self.dir.path()));
        run(Command::new("openssl")
            .args(["x509", "-req", "-in", &format!("{name}.csr"), "-CA", "ca.pem", "-CAkey", "ca-key.pem"])
            .args(["-CAcreateserial", "-days", "2", "-out", &format!("{name}.pem"), "-extfile"])
            .arg(&extensions_file)
            .current_dir(self.dir.path()));
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn file(&self, file: &str) -> String {
        self.path(file).to_str().unwrap().to_string()
    }

    /// etcd's server flags for the client URL.
    fn server_flags(&self) -> Vec<String> {
        vec!["--cert-file".into(), self.file("server.pem"), "--key-file".into(), self.file("server-key.pem")]
    }

    /// etcd's peer flags, with peer client certificates required.
    fn peer_flags(&self) -> Vec<String> {
        [
            ("--peer-cert-file", "server.pem"),
            ("--peer-key-file", "server-key.pem"),
            ("--peer-trusted-ca-file", "ca.pem"),
        ]
        .into_iter()
        .flat_map(|(flag, file)| [flag.to_string(), self.file(file)])
        .chain(["--peer-client-cert-auth".to_string()])
        .collect()
    }

    /// etcdctl's flags to trust the CA (and, with `client`, to present the client certificate).
    fn etcdctl_flags(&self, client: bool) -> Vec<String> {
        let mut flags = vec![format!("--cacert={}", self.file("ca.pem"))];
        if client {
            flags.push(format!("--cert={}", self.file("client.pem")));
            flags.push(format!("--key={}", self.file("client-key.pem")));
        }
        flags
    }
}

/// One `keel store` process, killed by its PID when dropped; its standard error goes to a file.
struct Member {
    child: Child,
    endpoint: String,
    log: PathBuf,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Member {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Members' names, ports and URLs before they start, so each knows the initial cluster.
struct Plan {
    name: String,
    client_port: u16,
    peer_url: String,
}

impl Plan {
    fn new(name: &str, peer_scheme: &str) -> Plan {
        Plan {
            name: name.into(),
            client_port: free_port(),
            peer_url: format!("{peer_scheme}://127.0.0.1:{}", free_port()),
        }
    }

    fn spawn(&self, dir: &Path, client_scheme: &str, initial_cluster: &str, extra: &[String]) -> Member {
        let endpoint = format!("{client_scheme}://127.0.0.1:{}", self.client_port);
        let log = dir.join(format!("{}.log", self.name));
        // One token per cluster (its directory), the same for every member.
        let token = format!("tls-{}", dir.file_name().unwrap().to_string_lossy());
        let child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["store", "--name", &self.name, "--data-dir"])
            .arg(dir.join(&self.name))
            .args(["--listen-client-urls", &endpoint, "--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &self.peer_url, "--initial-advertise-peer-urls", &self.peer_url])
            .args(["--initial-cluster", initial_cluster, "--initial-cluster-token", &token])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(extra)
            .env_remove("FAILPOINTS")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start keel store");
        Member { child, endpoint, log }
    }
}

/// A lone member with an https client URL (and plain peer URL), started with `extra` flags.
fn single_member(dir: &Path, extra: &[String]) -> Member {
    let plan = Plan::new("solo", "http");
    plan.spawn(dir, "https", &format!("solo={}", plan.peer_url), extra)
}

fn etcdctl(endpoint: &str, tls: &[String], args: &[&str]) -> Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "--dial-timeout", "2s", "--command-timeout", "10s"])
        .args(tls)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("etcdctl is installed by scripts/setup")
}

/// Runs etcdctl, which must fail within a short deadline; returns its standard error, with
/// gRPC's connection errors in it (`--debug`).
fn etcdctl_fails(endpoint: &str, tls: &[String], args: &[&str]) -> String {
    let output = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "--dial-timeout", "2s", "--command-timeout", "3s", "--debug"])
        .args(tls)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("etcdctl is installed by scripts/setup");
    assert!(!output.status.success(), "etcdctl {tls:?} {args:?} on {endpoint} succeeded: {}", stdout(&output));
    stderr(&output)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs etcdctl until it succeeds (the member is starting, or electing); returns its output.
fn etcdctl_eventually(member: &Member, tls: &[String], args: &[&str]) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let output = etcdctl(&member.endpoint, tls, args);
        if output.status.success() {
            return stdout(&output);
        }
        assert!(
            Instant::now() < deadline,
            "etcdctl {args:?} on {}: {}\nmember log:\n{}",
            member.endpoint,
            stderr(&output),
            member.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn etcdctl_puts_and_gets_over_tls_and_needs_the_ca() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let member = single_member(dir.path(), &pki.server_flags());
    let tls = pki.etcdctl_flags(false);
    etcdctl_eventually(&member, &tls, &["endpoint", "status"]);
    assert!(member.log().contains("over TLS"), "{}", member.log());

    assert_eq!(etcdctl_eventually(&member, &tls, &["put", "foo", "bar"]), "OK\n");
    assert_eq!(etcdctl_eventually(&member, &tls, &["get", "foo"]), "foo\nbar\n");

    // Without the CA, the server's certificate is signed by an unknown authority.
    let untrusted = etcdctl_fails(&member.endpoint, &[], &["get", "foo"]);
    assert!(untrusted.contains("certificate signed by unknown authority"), "{untrusted}");
    // Plain gRPC against the TLS port does not get an answer either.
    etcdctl_fails(&member.endpoint.replace("https://", "http://"), &[], &["get", "foo"]);
}

#[test]
fn health_endpoint_answers_over_tls() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    // A trusted CA without --client-cert-auth: client certificates are optional, but checked.
    let mut flags = pki.server_flags();
    flags.extend(["--trusted-ca-file".to_string(), pki.file("ca.pem")]);
    let member = single_member(dir.path(), &flags);
    etcdctl_eventually(&member, &pki.etcdctl_flags(false), &["put", "ready", "1"]);
    let url = format!("{}/health", member.endpoint);
    // HTTP/2 (curl's choice through ALPN) and HTTP/1.1 alike.
    for version in ["--http2", "--http1.1"] {
        let output = Command::new("curl")
            .args(["-sS", "--max-time", "10", version, "--cacert", &pki.file("ca.pem"), &url])
            .output()
            .expect("curl is installed");
        assert!(output.status.success(), "curl {version} {url}: {}", stderr(&output));
        assert!(stdout(&output).contains(r#""health":"true""#), "curl {version}: {}", stdout(&output));
    }
    let untrusted = Command::new("curl").args(["-sS", "--max-time", "10", &url]).output().expect("curl is installed");
    assert!(!untrusted.status.success(), "curl without --cacert succeeded: {}", stdout(&untrusted));
    assert!(stderr(&untrusted).contains("unable to get local issuer certificate"), "{untrusted:?}");
    let other = Pki::new();
    let foreign = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert", &pki.file("ca.pem"), "--cert", &other.file("client.pem")])
        .args(["--key", &other.file("client-key.pem"), &url])
        .output()
        .expect("curl is installed");
    assert!(!foreign.status.success(), "curl with a foreign client certificate was served: {foreign:?}");
}

#[test]
fn client_cert_auth_refuses_clients_without_a_trusted_certificate() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let mut flags = pki.server_flags();
    flags.extend(["--trusted-ca-file".to_string(), pki.file("ca.pem"), "--client-cert-auth".to_string()]);
    let member = single_member(dir.path(), &flags);
    let with_certificate = pki.etcdctl_flags(true);
    etcdctl_eventually(&member, &with_certificate, &["endpoint", "status"]);

    assert_eq!(etcdctl_eventually(&member, &with_certificate, &["put", "foo", "bar"]), "OK\n");
    assert_eq!(etcdctl_eventually(&member, &with_certificate, &["get", "foo"]), "foo\nbar\n");

    // A client without a certificate is refused during the handshake (TLS 1.3's "certificate
    // required" alert, or just the closed connection, depending on which the client reads first).
    etcdctl_fails(&member.endpoint, &pki.etcdctl_flags(false), &["get", "foo"]);
    let url = format!("{}/health", member.endpoint);
    let curl = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert", &pki.file("ca.pem"), &url])
        .output()
        .expect("curl is installed");
    assert!(!curl.status.success(), "curl without a client certificate was served: {curl:?}");
    let curl = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert", &pki.file("ca.pem"), "--cert", &pki.file("client.pem")])
        .args(["--key", &pki.file("client-key.pem"), &url])
        .output()
        .expect("curl is installed");
    assert!(stdout(&curl).contains(r#""health":"true""#), "{curl:?}");
    // A certificate the trusted CA did not sign is refused as well.
    let other = Pki::new();
    let mut foreign = pki.etcdctl_flags(false);
    foreign.push(format!("--cert={}", other.file("client.pem")));
    foreign.push(format!("--key={}", other.file("client-key.pem")));
    etcdctl_fails(&member.endpoint, &foreign, &["get", "foo"]);
}

/// The leader each member reports (etcdctl's `endpoint status -w json`), if it answers.
fn reported_leader(member: &Member, tls: &[String]) -> Option<u64> {
    let output = etcdctl(&member.endpoint, tls, &["endpoint", "status", "-w", "json"]);
    if !output.status.success() {
        return None;
    }
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    status[0]["Status"]["leader"].as_u64().filter(|leader| *leader != 0)
}

#[test]
fn members_with_https_peer_urls_elect_a_leader_and_replicate() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let plans: Vec<Plan> = ["n1", "n2", "n3"].iter().map(|name| Plan::new(name, "https")).collect();
    let initial_cluster =
        plans.iter().map(|plan| format!("{}={}", plan.name, plan.peer_url)).collect::<Vec<_>>().join(",");
    let mut flags = pki.server_flags();
    flags.extend(pki.peer_flags());
    let members: Vec<Member> =
        plans.iter().map(|plan| plan.spawn(dir.path(), "https", &initial_cluster, &flags)).collect();
    let logs =
        || members.iter().map(|member| format!("--- {}:\n{}", member.endpoint, member.log())).collect::<String>();
    let tls = pki.etcdctl_flags(false);

    // Every member names the same leader.
    let deadline = Instant::now() + WAIT;
    loop {
        let leaders: Vec<Option<u64>> = members.iter().map(|member| reported_leader(member, &tls)).collect();
        if leaders[0].is_some() && leaders.iter().all(|leader| *leader == leaders[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}\n{}", logs());
        std::thread::sleep(Duration::from_millis(200));
    }

    // A write through one member is read back, linearizably, through the others.
    assert_eq!(etcdctl_eventually(&members[0], &tls, &["put", "replicated", "over-tls"]), "OK\n");
    for member in &members[1..] {
        assert_eq!(etcdctl_eventually(member, &tls, &["get", "replicated"]), "replicated\nover-tls\n", "{}", logs());
    }
    let listed = etcdctl_eventually(&members[2], &tls, &["member", "list"]);
    for plan in &plans {
        assert!(listed.contains(&plan.peer_url), "member list lacks {}: {listed}", plan.peer_url);
    }
}

#[test]
fn https_urls_without_certificates_are_startup_errors() {
    let dir = tempfile::tempdir().unwrap();
    let client = single_member(dir.path(), &[]);
    let peer_plan = Plan::new("peer", "https");
    let peer = peer_plan.spawn(dir.path(), "http", &format!("peer={}", peer_plan.peer_url), &[]);
    for (mut member, expected) in [(client, "https needs --cert-file and --key-file"), (peer, "--peer-cert-file")] {
        let status = exit_status(&mut member.child).unwrap_or_else(|| panic!("{} did not exit", member.endpoint));
        assert!(!status.success());
        assert!(member.log().contains(expected), "expected {expected:?} in: {}", member.log());
    }
}

#[test]
fn a_member_whose_peer_certificate_is_not_trusted_takes_no_part() {
    let pki = Pki::new();
    let foreign = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let plans: Vec<Plan> = ["n1", "n2", "n3"].iter().map(|name| Plan::new(name, "https")).collect();
    let initial_cluster =
        plans.iter().map(|plan| format!("{}={}", plan.name, plan.peer_url)).collect::<Vec<_>>().join(",");
    let members: Vec<Member> = plans
        .iter()
        .map(|plan| {
            // n3's peer certificate (and the CA it trusts) come from another CA.
            let peer = if plan.name == "n3" { &foreign } else { &pki };
            let mut flags = pki.server_flags();
            flags.extend(peer.peer_flags());
            plan.spawn(dir.path(), "https", &initial_cluster, &flags)
        })
        .collect();
    let logs =
        || members.iter().map(|member| format!("--- {}:\n{}", member.endpoint, member.log())).collect::<String>();
    let tls = pki.etcdctl_flags(false);

    // n1 and n2 are a quorum: they elect a leader and commit without n3.
    let deadline = Instant::now() + WAIT;
    loop {
        let leaders: Vec<Option<u64>> = members[..2].iter().map(|member| reported_leader(member, &tls)).collect();
        if leaders[0].is_some() && leaders[0] == leaders[1] {
            break;
        }
        assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}\n{}", logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(etcdctl_eventually(&members[0], &tls, &["put", "trusted", "only"]), "OK\n");
    assert_eq!(etcdctl_eventually(&members[1], &tls, &["get", "trusted"]), "trusted\nonly\n");
    // n3 never hears from them: no leader, no data (checked a few heartbeats later).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(reported_leader(&members[2], &tls), None, "{}", logs());
    assert_eq!(etcdctl_eventually(&members[2], &tls, &["get", "trusted", "--consistency", "s"]), "", "{}", logs());
}

/// How a process that must exit on its own ended; None if it still runs after `WAIT`.
fn exit_status(child: &mut Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// A real etcd 3.4 serving its client URL over TLS and requiring client certificates.
fn tls_etcd(pki: &Pki, dir: &Path) -> Member {
    let endpoint = format!("https://127.0.0.1:{}", free_port());
    let peer_url = format!("http://127.0.0.1:{}", free_port());
    let log = dir.join("etcd.log");
    let child = Command::new("etcd")
        .args(["--name", "tls-etcd", "--data-dir"])
        .arg(dir.join("etcd"))
        .args(["--listen-client-urls", &endpoint, "--advertise-client-urls", &endpoint])
        .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("tls-etcd={peer_url}")])
        .args(pki.server_flags())
        .args(["--trusted-ca-file", &pki.file("ca.pem"), "--client-cert-auth"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("etcd is installed by scripts/setup");
    Member { child, endpoint, log }
}

/// Starts `keel server` with `args` and waits for it to exit; answers its log.
fn keel_server_exits(dir: &Path, args: &[&str]) -> String {
    let log = dir.join("keel-refused.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("server")
        .args(["--data-dir", dir.join("refused").to_str().unwrap()])
        .args(["--secure-port", &free_port().to_string(), "--advertise-address", "192.0.2.10"])
        .args(["--write-kubeconfig", dir.join("refused.yaml").to_str().unwrap(), "--controllers=false"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start keel server");
    let Some(status) = exit_status(&mut child) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("keel server {args:?} did not exit: {}", std::fs::read_to_string(&log).unwrap_or_default());
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "keel server {args:?} succeeded: {text}");
    text
}

/// kube-apiserver's `--etcd-cafile`, `--etcd-certfile` and `--etcd-keyfile`: the Kubernetes API
/// over an etcd that serves TLS and requires client certificates; kubectl's writes land in that
/// etcd. Without the client certificate etcd refuses keel, and keel says so at start.
#[test]
fn the_apiserver_reaches_an_etcd_that_requires_client_certificates() {
    use support::keel_server::{kubectl_binary, KeelServer};
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let etcd = tls_etcd(&pki, dir.path());
    etcdctl_eventually(&etcd, &pki.etcdctl_flags(true), &["endpoint", "health"]);
    let (ca, cert, key) = (pki.file("ca.pem"), pki.file("client.pem"), pki.file("client-key.pem"));

    let server = KeelServer::start_with(&[
        "--etcd-servers",
        &etcd.endpoint,
        "--etcd-cafile",
        &ca,
        "--etcd-certfile",
        &cert,
        "--etcd-keyfile",
        &key,
        "--controllers=false",
    ]);
    let kubectl = kubectl_binary("1.33");
    server.ok(&kubectl, &["create", "configmap", "over-tls", "--from-literal=greeting=hello"]);
    let configmap = server.json(&kubectl, &["get", "configmap", "over-tls"]);
    assert_eq!(configmap["data"]["greeting"], "hello");
    let stored = etcdctl_eventually(&etcd, &pki.etcdctl_flags(true), &["get", "/registry/configmaps/default/over-tls"]);
    assert!(stored.contains("hello"), "the configmap is not in etcd: {stored}");

    // etcd closes the handshake of a client without a certificate.
    let refused = keel_server_exits(dir.path(), &["--etcd-servers", &etcd.endpoint, "--etcd-cafile", &ca]);
    assert!(refused.contains("--etcd-servers="), "{refused}");
    // The flags are checked before any connection.
    let no_ca = keel_server_exits(dir.path(), &["--etcd-servers", &etcd.endpoint]);
    assert!(no_ca.contains("https:// URLs need --etcd-cafile"), "{no_ca}");
    let lone_cert = keel_server_exits(
        dir.path(),
        &["--etcd-servers", &etcd.endpoint, "--etcd-cafile", &ca, "--etcd-certfile", &cert],
    );
    assert!(lone_cert.contains("--etcd-certfile and --etcd-keyfile go together"), "{lone_cert}");
}
