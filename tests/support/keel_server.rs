//! A real `keel server` process for the Kubernetes API tests (kubectl, the kube crate, the
//! controllers): its own data directory, free loopback ports, a kubeconfig, its log; restartable
//! on the same ports and data; stopped by PID when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::free_port;

/// Generous bound for anything a healthy server does in well under a second.
pub const WAIT: Duration = Duration::from_secs(30);

/// The `--advertise-address` servers get unless a test gives one.
pub const TEST_ADVERTISE_ADDRESS: &str = "192.0.2.10";

/// The Google Cloud SDK's folder of kubectl binaries (`kubectl` picks one by server version).
pub fn kubectl_dir() -> PathBuf {
    let which = Command::new("which").arg("kubectl").output().expect("run which");
    let path = String::from_utf8(which.stdout).unwrap().trim().to_string();
    assert!(!path.is_empty(), "kubectl is not installed: these tests need kubectl 1.32 and 1.33");
    std::fs::canonicalize(path).unwrap().parent().unwrap().to_path_buf()
}

pub fn kubectl_binary(version: &str) -> PathBuf {
    let binary = kubectl_dir().join(format!("kubectl.{version}"));
    assert!(binary.exists(), "{} is missing", binary.display());
    binary
}

pub struct KeelServer {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    args: Vec<String>,
    pub kubeconfig: PathBuf,
}

impl KeelServer {
    pub fn start() -> KeelServer {
        KeelServer::start_with(&[])
    }

    /// Starts a server with `extra` flags after the usual ones. Ports are picked free, but a
    /// parallel test may take one between the pick and the bind: then it starts again on others.
    pub fn start_with(extra: &[&str]) -> KeelServer {
        let mut attempts = 0;
        loop {
            let mut server = KeelServer::configure(extra);
            match server.try_run() {
                Ok(()) => return server,
                Err(log) if log.contains("Address already in use") && attempts < 5 => attempts += 1,
                Err(log) => panic!("keel server did not start:\n{log}"),
            }
        }
    }

    fn configure(extra: &[&str]) -> KeelServer {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        let client = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let mut args: Vec<String> = vec![
            "server".into(),
            "--data-dir".into(),
            dir.path().join("data").to_str().unwrap().into(),
            "--listen-client-urls".into(),
            client.clone(),
            "--advertise-client-urls".into(),
            client,
            "--listen-peer-urls".into(),
            peer.clone(),
            "--initial-advertise-peer-urls".into(),
            peer,
            // A fixed port, so a restart serves where clients already point.
            "--secure-port".into(),
            free_port().to_string(),
            "--write-kubeconfig".into(),
            kubeconfig.to_str().unwrap().into(),
        ];
        // The `kubernetes` Service's endpoints advertise an address of TEST-NET-1 (RFC 5737):
        // valid and not loopback, and nothing in the tests sends traffic to it.
        if !extra.iter().any(|arg| arg.starts_with("--advertise-address")) {
            args.extend(["--advertise-address".to_string(), TEST_ADVERTISE_ADDRESS.to_string()]);
        }
        args.extend(extra.iter().map(|arg| arg.to_string()));
        KeelServer { child: None, dir, args, kubeconfig }
    }

    /// Starts the process (again) with the same flags and waits for its kubeconfig.
    pub fn run(&mut self) {
        if let Err(log) = self.try_run() {
            panic!("keel server exited:\n{log}");
        }
    }

    /// Like `run`, but answers the server's log if it exits before it is up.
    fn try_run(&mut self) -> Result<(), String> {
        let _ = std::fs::remove_file(&self.kubeconfig);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("keel.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(&self.args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start keel server");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while !self.kubeconfig.exists() {
            assert!(Instant::now() < deadline, "keel server did not start:\n{}", self.log());
            if self.child.as_mut().unwrap().try_wait().unwrap().is_some() {
                self.child = None;
                return Err(self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The port the Kubernetes API serves on (`--secure-port`).
    /// The etcd API's URL (`--listen-client-urls`).
    pub fn etcd_url(&self) -> &str {
        let flag = self.args.iter().position(|arg| arg == "--listen-client-urls").expect("a client URL");
        &self.args[flag + 1]
    }

    pub fn api_port(&self) -> u16 {
        let flag = self.args.iter().position(|arg| arg == "--secure-port").expect("the harness sets --secure-port");
        self.args[flag + 1].parse().unwrap()
    }

    /// The running process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("keel.log")).unwrap_or_default()
    }

    /// SIGTERM by PID, then waits for the process.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            super::terminate(child, WAIT);
        }
    }

    pub async fn client(&self) -> kube::Client {
        use kube::config::{KubeConfigOptions, Kubeconfig};
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
        kube::Client::try_from(config).unwrap()
    }

    /// A kubectl command against this server, with its own HOME and cache.
    pub fn command(&self, kubectl: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(kubectl);
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"))
            .args(args);
        command
    }

    pub fn run_kubectl(&self, kubectl: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = self.command(kubectl, args);
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("run kubectl");
        if let Some(input) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    /// Runs kubectl and expects success; returns stdout.
    pub fn ok(&self, kubectl: &Path, args: &[&str]) -> String {
        self.ok_with_input(kubectl, args, None)
    }

    pub fn ok_with_input(&self, kubectl: &Path, args: &[&str], stdin: Option<&str>) -> String {
        let output = self.run_kubectl(kubectl, args, stdin);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "kubectl {args:?} failed:\n{stdout}\n{stderr}\nserver log:\n{}", self.log());
        stdout
    }

    /// Runs kubectl and expects failure; returns stderr.
    pub fn fails(&self, kubectl: &Path, args: &[&str], stdin: Option<&str>) -> String {
        let output = self.run_kubectl(kubectl, args, stdin);
        assert!(
            !output.status.success(),
            "kubectl {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    pub fn json(&self, kubectl: &Path, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(kubectl, &args)).unwrap()
    }

    /// Writes `text` into the server's directory; returns the path.
    pub fn write_file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }
}

impl Drop for KeelServer {
    fn drop(&mut self) {
        self.stop();
    }
}
