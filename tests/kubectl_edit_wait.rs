//! kubectl 1.33 and 1.32 commands that read objects back or wait on them, against a real
//! `keel server`: `describe` (pod, deployment, namespace), `edit` through a scripted EDITOR (a
//! valid edit and one the server refuses), `wait` (`--for=condition`, `--for=jsonpath`,
//! `--for=delete`, a timeout) and `get -w` (Table watch events).
//!
//! A command that must be waiting before the test changes anything is run with `-v=6`, and the
//! test waits for its watch request in the log (`watch=true`), never for a length of time.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};

use serde_json::Value;
use support::keel_server::{kubectl_binary, KeelServer, WAIT};

const OBJECTS: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: demo
data:
  color: blue
---
apiVersion: v1
kind: Pod
metadata:
  name: app
  namespace: demo
  labels:
    app: web
spec:
  containers:
  - name: nginx
    image: nginx:1.27
    ports:
    - containerPort: 80
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
"#;

/// The lines a process writes, as they come.
fn lines_of(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    lines
}

/// Reads lines until one satisfies `done`; returns every line read.
fn read_until(lines: &Receiver<String>, what: &str, done: impl Fn(&str) -> bool) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(WAIT) {
            Ok(line) => {
                let found = done(&line);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(error) => panic!("no line with {what} ({error}); read:\n{}", seen.join("\n")),
        }
    }
}

/// A kubectl command running in the background with its stdout and stderr read line by line.
struct Background {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl Background {
    fn start(server: &KeelServer, kubectl: &Path, args: &[&str]) -> Background {
        let mut child = server
            .command(kubectl, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kubectl");
        let stdout = lines_of(child.stdout.take().unwrap());
        let stderr = lines_of(child.stderr.take().unwrap());
        Background { child, stdout, stderr }
    }

    /// Waits until the command has its watch open (it runs with `-v=6`, which logs requests).
    fn watching(&self) {
        read_until(&self.stderr, "a watch request", |line| line.contains("watch=true"));
    }

    /// Waits for the command to end; returns its exit success and the rest of its stdout.
    fn finish(mut self) -> (bool, String) {
        let status = self.child.wait().unwrap();
        let stdout: Vec<String> = self.stdout.iter().collect();
        (status.success(), stdout.join("\n"))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill").arg(self.child.id().to_string()).status();
            let _ = self.child.wait();
        }
    }
}

fn resource_version(object: &Value) -> i64 {
    object["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()
}

/// `kubectl edit` with EDITOR set to a script running `sed_expression` on the file it is given;
/// temporary files (kubectl's saved copy of a failed edit) go to the server's directory.
fn edit(server: &KeelServer, kubectl: &Path, sed_expression: &str, args: &[&str]) -> Output {
    let script = server.write_file("editor.sh", &format!("#!/bin/sh\nsed -i '{sed_expression}' \"$1\"\n"));
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut all_args = vec!["edit"];
    all_args.extend(args);
    server
        .command(kubectl, &all_args)
        .env("EDITOR", &script)
        .env("KUBE_EDITOR", &script)
        .env("TMPDIR", server.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `text` has `line` (its words in order, however the columns are padded).
fn assert_has_line(text: &str, line: &str) {
    let words = |line: &str| line.split_whitespace().collect::<Vec<_>>().join(" ");
    let wanted = words(line);
    assert!(text.lines().any(|candidate| words(candidate) == wanted), "no {line:?} in:\n{text}");
}

fn describe(server: &KeelServer, kubectl: &Path) {
    let k = kubectl;
    // An event about the pod, as a scheduler would write it.
    let pod = server.json(k, &["get", "pod", "app", "-n", "demo"]);
    let event = format!(
        r#"{{"apiVersion":"v1","kind":"Event","metadata":{{"name":"app.scheduled","namespace":"demo"}},
            "involvedObject":{{"apiVersion":"v1","kind":"Pod","name":"app","namespace":"demo","uid":"{}"}},
            "reason":"Scheduled","message":"Successfully assigned demo/app to node-1","type":"Normal",
            "source":{{"component":"default-scheduler"}},"count":1,
            "firstTimestamp":"2026-01-01T00:00:00Z","lastTimestamp":"2026-01-01T00:00:00Z"}}"#,
        pod["metadata"]["uid"].as_str().unwrap()
    );
    server.ok_with_input(k, &["create", "-f", "-"], Some(&event));

    let described = server.ok(k, &["describe", "pod", "app", "-n", "demo"]);
    for line in [
        "Name:             app",
        "Namespace:        demo",
        "Labels:           app=web",
        "Status:           Pending",
        "Containers:",
        "  nginx:",
        "    Image:        nginx:1.27",
        "    Port:         80/TCP",
        "QoS Class:        BestEffort",
        "Events:",
    ] {
        assert_has_line(&described, line);
    }
    let event_row = described.lines().find(|line| line.contains("Scheduled")).expect("the event is listed");
    for column in ["Normal", "default-scheduler", "Successfully assigned demo/app to node-1"] {
        assert!(event_row.contains(column), "{event_row}");
    }

    let described = server.ok(k, &["describe", "deployment", "web", "-n", "demo"]);
    for line in [
        "Name:                   web",
        "Namespace:              demo",
        "Labels:                 app=web",
        "Selector:               app=web",
        "StrategyType:           RollingUpdate",
        "RollingUpdateStrategy:  25% max unavailable, 25% max surge",
        "Pod Template:",
        "Events:                 <none>",
    ] {
        assert_has_line(&described, line);
    }

    // The counts after "desired" are the deployment controller's, which keel does not run yet.
    let replicas = described.lines().find(|line| line.starts_with("Replicas:")).expect("a Replicas line");
    assert!(replicas.split_whitespace().collect::<Vec<_>>()[1..3] == ["2", "desired"], "{replicas}");

    let described = server.ok(k, &["describe", "namespace", "demo"]);
    for line in ["Name:         demo", "Labels:       kubernetes.io/metadata.name=demo", "Status:       Active"] {
        assert_has_line(&described, line);
    }
    // Several objects at once, by label.
    let described = server.ok(k, &["describe", "pods,deployments", "-n", "demo", "-l", "app=web"]);
    assert_eq!(described.matches("\nName:").count() + usize::from(described.starts_with("Name:")), 2, "{described}");
    let missing = server.fails(k, &["describe", "pod", "nope", "-n", "demo"], None);
    assert!(missing.contains("pods \"nope\" not found"), "{missing}");
}

fn edit_scenario(server: &KeelServer, kubectl: &Path) {
    let k = kubectl;
    let before = server.json(k, &["get", "cm", "settings", "-n", "demo"]);
    let output = edit(server, k, "s/color: blue/color: red/", &["cm", "settings", "-n", "demo"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("configmap/settings edited"), "{stdout}");
    let after = server.json(k, &["get", "cm", "settings", "-n", "demo", "--show-managed-fields"]);
    assert_eq!(after["data"]["color"], "red");
    assert!(resource_version(&after) > resource_version(&before), "{after}");
    let managers: Vec<&str> = after["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["manager"].as_str().unwrap())
        .collect();
    assert!(managers.contains(&"kubectl-edit"), "{managers:?}");

    // An edit that changes nothing writes nothing.
    let output = edit(server, k, "s/color: blue/color: green/", &["cm", "settings", "-n", "demo"]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("Edit cancelled, no changes made."));
    let unchanged = server.json(k, &["get", "cm", "settings", "-n", "demo"]);
    assert_eq!(resource_version(&unchanged), resource_version(&after));

    // The server refuses an invalid edit: kubectl reports it, reopens the file with the
    // server's causes in its header (the script changes nothing more), and gives up.
    let before = server.json(k, &["get", "deployment", "web", "-n", "demo"]);
    let output = edit(server, k, "s/^  replicas: 2$/  replicas: -3/", &["deployment", "web", "-n", "demo"]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("error: deployments.apps \"web\" is invalid"), "{stderr}");
    assert!(stderr.contains("Edit cancelled, no valid changes were saved."), "{stderr}");
    let saved = stderr
        .split("A copy of your changes has been stored to \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no saved copy in:\n{stderr}"));
    let saved = std::fs::read_to_string(saved).unwrap();
    assert!(saved.contains("# deployments.apps \"web\" was not valid:"), "{saved}");
    assert!(saved.contains("# * spec.replicas: Invalid value: -3: must be greater than or equal to 0"), "{saved}");
    let after = server.json(k, &["get", "deployment", "web", "-n", "demo"]);
    assert_eq!(after["spec"]["replicas"], 2);
    assert_eq!(resource_version(&after), resource_version(&before), "nothing was written");
}

fn wait_scenario(server: &KeelServer, kubectl: &Path) {
    let k = kubectl;
    // --for=condition: the deployment's status gets Available through /status while waiting.
    let waiting = Background::start(
        server,
        k,
        &["wait", "--for=condition=Available", "deployment/web", "-n", "demo", "--timeout=60s", "-v=6"],
    );
    waiting.watching();
    let status = r#"{"status":{"conditions":[{"type":"Available","status":"True","reason":"MinimumReplicasAvailable",
        "message":"Deployment has minimum availability.","lastUpdateTime":"2026-01-01T00:00:00Z",
        "lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#;
    server.ok(k, &["patch", "deployment", "web", "-n", "demo", "--subresource=status", "--type=merge", "-p", status]);
    let (success, stdout) = waiting.finish();
    assert!(success && stdout.contains("deployment.apps/web condition met"), "{stdout}");
    // Already met: answered without watching.
    let met =
        server.ok(k, &["wait", "--for=condition=Available=True", "deployment/web", "-n", "demo", "--timeout=60s"]);
    assert!(met.contains("condition met"), "{met}");

    // --for=jsonpath on the pod's phase.
    let waiting = Background::start(
        server,
        k,
        &["wait", "--for=jsonpath={.status.phase}=Running", "pod/app", "-n", "demo", "--timeout=60s", "-v=6"],
    );
    waiting.watching();
    let phase = r#"{"status":{"phase":"Running"}}"#;
    server.ok(k, &["patch", "pod", "app", "-n", "demo", "--subresource=status", "--type=merge", "-p", phase]);
    let (success, stdout) = waiting.finish();
    assert!(success && stdout.contains("pod/app condition met"), "{stdout}");

    // A condition that never comes: the timeout's error.
    let timed_out = server.fails(k, &["wait", "--for=condition=Ready", "pod/app", "-n", "demo", "--timeout=1s"], None);
    assert!(timed_out.contains("timed out waiting for the condition on pods/app"), "{timed_out}");

    // --for=delete of an object a finalizer holds: it is still there, being deleted, until the
    // finalizer goes.
    server.ok(
        k,
        &[
            "patch",
            "cm",
            "settings",
            "-n",
            "demo",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
        ],
    );
    server.ok(k, &["delete", "cm", "settings", "-n", "demo", "--wait=false"]);
    let held = server.json(k, &["get", "cm", "settings", "-n", "demo"]);
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    let waiting =
        Background::start(server, k, &["wait", "--for=delete", "cm/settings", "-n", "demo", "--timeout=60s", "-v=6"]);
    waiting.watching();
    server.ok(
        k,
        &[
            "patch",
            "cm",
            "settings",
            "-n",
            "demo",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ],
    );
    let (success, stdout) = waiting.finish();
    assert!(success && stdout.contains("configmap/settings condition met"), "{stdout}");
    server.fails(k, &["get", "cm", "settings", "-n", "demo"], None);
    // Deleting what is already gone is met at once.
    server.ok(k, &["wait", "--for=delete", "cm/settings", "-n", "demo", "--timeout=60s"]);
}

fn watch_scenario(server: &KeelServer, kubectl: &Path) {
    let k = kubectl;
    server.ok(k, &["create", "namespace", "watched"]);
    let watching =
        Background::start(server, k, &["get", "pods", "-n", "watched", "-w", "--output-watch-events", "-v=6"]);
    watching.watching();
    server.ok(k, &["run", "first", "-n", "watched", "--image=nginx:1.27"]);
    let added = read_until(&watching.stdout, "the ADDED row", |line| line.starts_with("ADDED"));
    let header: Vec<&str> = added[0].split_whitespace().collect();
    assert_eq!(header, ["EVENT", "NAME", "READY", "STATUS", "RESTARTS", "AGE"], "{added:?}");
    let row: Vec<&str> = added.last().unwrap().split_whitespace().collect();
    assert_eq!(row[..5], ["ADDED", "first", "0/1", "Pending", "0"], "{row:?}");
    // An unscheduled pod goes at once: the next event is its deletion.
    server.ok(k, &["delete", "pod", "first", "-n", "watched"]);
    let deleted = read_until(&watching.stdout, "the DELETED row", |line| line.starts_with("DELETED"));
    let row: Vec<&str> = deleted.last().unwrap().split_whitespace().collect();
    assert_eq!(row[..2], ["DELETED", "first"], "{deleted:?}");
    assert!(deleted.iter().all(|line| line.contains("first")), "only events of the pod: {deleted:?}");
    drop(watching);

    // Without --output-watch-events: the list first, then one row per change.
    server.ok(k, &["create", "configmap", "listed", "-n", "watched"]);
    let watching = Background::start(server, k, &["get", "configmaps", "-n", "watched", "-w"]);
    let listed = read_until(&watching.stdout, "the listed configmap", |line| line.starts_with("listed"));
    assert_eq!(listed[0].split_whitespace().collect::<Vec<_>>(), ["NAME", "DATA", "AGE"], "{listed:?}");
    server.ok(k, &["create", "configmap", "made", "-n", "watched", "--from-literal=a=1"]);
    let made = read_until(&watching.stdout, "the new configmap", |line| line.starts_with("made"));
    let row: Vec<&str> = made.last().unwrap().split_whitespace().collect();
    assert_eq!(row[..2], ["made", "1"], "{row:?}");
}

fn scenario(kubectl: &Path) {
    let server = KeelServer::start();
    let objects = server.write_file("objects.yaml", OBJECTS);
    server.ok(kubectl, &["create", "-f", &objects]);
    describe(&server, kubectl);
    edit_scenario(&server, kubectl);
    wait_scenario(&server, kubectl);
    watch_scenario(&server, kubectl);
}

#[test]
fn kubectl_1_33_describe_edit_wait_watch() {
    scenario(&kubectl_binary("1.33"));
}

#[test]
fn kubectl_1_32_describe_edit_wait_watch() {
    scenario(&kubectl_binary("1.32"));
}
