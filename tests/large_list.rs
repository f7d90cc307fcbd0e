//! A LIST large enough to be sent in many frames (`apiserver/src/list_body.rs` streams a JSON
//! LIST from the cached encodings instead of building the body whole), read whole and in pages
//! by the `kube` crate, by kubectl 1.33 (as JSON and as the Table it prints) and over plain HTTP:
//! every object, in key order, with the list's resourceVersion and continue tokens, and a
//! Content-Length that matches the body.

mod support;

use support::keel_server::{kubectl_binary, KeelServer};

use std::io::{Read, Write};
use std::net::TcpStream;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{ListParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

const NAMESPACE: &str = "bulk";
const OBJECTS: usize = 2000;
/// One object is larger than a frame (64 KiB) and is sent as a frame of its own.
const LARGE_INDEX: usize = 1234;

fn name(index: usize) -> String {
    format!("cm-{index:05}")
}

/// About 1 KB each (2 MB in all, ~30 frames), and one of 200 KB.
fn filler(index: usize) -> String {
    let size = if index == LARGE_INDEX { 200_000 } else { 1000 };
    format!("{index}-").repeat(size / 6)
}

fn config_map(index: usize) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name(index), "namespace": NAMESPACE, "labels": {"index": index.to_string()}},
        "data": {"filler": filler(index)},
    }))
    .unwrap()
}

/// Checks the listed objects are every one created, in key (name) order, each whole.
fn check_items(names: &[String], fillers: &[String]) {
    let expected: Vec<String> = (0..OBJECTS).map(name).collect();
    assert_eq!(names.len(), OBJECTS);
    assert!(names == expected, "the objects are not the created ones in key order");
    for (index, filler_text) in fillers.iter().enumerate() {
        assert!(*filler_text == filler(index), "{}'s data differs", name(index));
    }
}

fn config_map_fields(items: &[ConfigMap]) -> (Vec<String>, Vec<String>) {
    let names = items.iter().map(|item| item.metadata.name.clone().unwrap()).collect();
    let fillers = items.iter().map(|item| item.data.as_ref().unwrap()["filler"].clone()).collect();
    (names, fillers)
}

fn json_fields(list: &Value) -> (Vec<String>, Vec<String>) {
    let items = list["items"].as_array().expect("items");
    let names = items.iter().map(|item| item["metadata"]["name"].as_str().unwrap().to_string()).collect();
    let fillers = items.iter().map(|item| item["data"]["filler"].as_str().unwrap().to_string()).collect();
    (names, fillers)
}

/// A GET over plain HTTP/1.1: the response's headers (lower-cased names) and body.
fn http_get(address: &str, path: &str) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(address).unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|window| window == b"\r\n\r\n").expect("a header block");
    let head = String::from_utf8(response[..split].to_vec()).unwrap().to_ascii_lowercase();
    (head, response[split + 4..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_list_streams_every_object_in_order() {
    let server = KeelServer::start();
    let client = server.client().await;
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).unwrap();
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, NAMESPACE);
    let created: Vec<ConfigMap> = futures::stream::iter(0..OBJECTS)
        .map(|index| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &config_map(index)).await }
        })
        .buffer_unordered(16)
        .try_collect()
        .await
        .unwrap();
    let last_write: i64 = created
        .iter()
        .map(|item| item.metadata.resource_version.as_ref().unwrap().parse::<i64>().unwrap())
        .max()
        .unwrap();

    // The kube crate, whole: a consistent LIST sees every write.
    let list = api.list(&ListParams::default()).await.unwrap();
    let (names, fillers) = config_map_fields(&list.items);
    check_items(&names, &fillers);
    let list_revision: i64 = list.metadata.resource_version.as_ref().unwrap().parse().unwrap();
    assert!(list_revision >= last_write, "list at {list_revision}, last write at {last_write}");
    assert!(list.metadata.continue_.is_none(), "{:?}", list.metadata.continue_);
    for item in &list.items {
        let revision: i64 = item.metadata.resource_version.as_ref().unwrap().parse().unwrap();
        assert!(revision > 0 && revision <= list_revision);
    }

    // The kube crate, in pages of 700: every page but the last has a continue token, all at the
    // first page's revision.
    let mut paged = Vec::new();
    let mut params = ListParams::default().limit(700);
    let mut pages = 0;
    loop {
        let page = api.list(&params).await.unwrap();
        pages += 1;
        assert_eq!(page.metadata.resource_version.as_deref(), Some(list_revision.to_string().as_str()));
        paged.extend(page.items);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(pages, OBJECTS.div_ceil(700));
    let (names, fillers) = config_map_fields(&paged);
    check_items(&names, &fillers);

    // Plain HTTP: a Content-Length that is the body's, and a JSON ConfigMapList.
    let kubeconfig = std::fs::read_to_string(&server.kubeconfig).unwrap();
    let url = kubeconfig.lines().find_map(|line| line.trim().strip_prefix("server: ")).unwrap();
    let address = url.trim_start_matches("http://").to_string();
    let path = format!("/api/v1/namespaces/{NAMESPACE}/configmaps");
    let (head, body) = tokio::task::spawn_blocking(move || http_get(&address, &path)).await.unwrap();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains(&format!("content-length: {}\r\n", body.len())), "{head}\nbody of {} bytes", body.len());
    assert!(!head.contains("transfer-encoding"), "{head}");
    let raw: Value = serde_json::from_slice(&body).expect("the body is JSON");
    assert_eq!((raw["kind"].as_str(), raw["apiVersion"].as_str()), (Some("ConfigMapList"), Some("v1")));
    let (names, fillers) = json_fields(&raw);
    check_items(&names, &fillers);

    // kubectl, whole (--chunk-size=0) and in its default pages of 500.
    let kubectl = kubectl_binary("1.33");
    let server = tokio::task::spawn_blocking(move || {
        for chunk_size in ["0", "500"] {
            let list = server.json(&kubectl, &["get", "configmaps", "-n", NAMESPACE, "--chunk-size", chunk_size]);
            assert_eq!(list["kind"], "List", "chunk size {chunk_size}");
            let (names, fillers) = json_fields(&list);
            check_items(&names, &fillers);
        }
        let names = server.ok(&kubectl, &["get", "configmaps", "-n", NAMESPACE, "-o", "name"]);
        let expected: Vec<String> = (0..OBJECTS).map(|index| format!("configmap/{}", name(index))).collect();
        assert!(names.lines().eq(expected.iter().map(String::as_str)), "kubectl -o name");
        // kubectl's own printing asks for a Table, streamed row by row in many frames.
        let table = server.ok(&kubectl, &["get", "configmaps", "-n", NAMESPACE, "--chunk-size", "0"]);
        let mut lines = table.lines();
        let header: Vec<&str> = lines.next().expect("a header").split_whitespace().collect();
        assert_eq!(header, ["NAME", "DATA", "AGE"]);
        let rows: Vec<(String, String)> = lines
            .map(|line| {
                let cells: Vec<&str> = line.split_whitespace().collect();
                (cells[0].to_string(), cells[1].to_string())
            })
            .collect();
        let expected: Vec<(String, String)> = (0..OBJECTS).map(|index| (name(index), "1".to_string())).collect();
        assert!(rows == expected, "kubectl's table: {} rows, not the objects in key order", rows.len());
        server
    })
    .await
    .unwrap();
    drop(server);
}
