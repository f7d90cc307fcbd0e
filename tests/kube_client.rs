//! The `kube` crate against a real `keel server`: a reflector follows creates, updates and
//! deletes; a watcher whose resourceVersion fell out of the apiserver's cache gets 410 Gone in
//! the stream and lists again.

mod support;

use support::keel_server::{KeelServer, WAIT};

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Api;

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"test": "kube"}},
        "data": {"step": "created"},
    }))
    .unwrap()
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_follows_creates_updates_and_deletes() {
    let server = KeelServer::start();
    let api: Api<ConfigMap> = Api::namespaced(server.client().await, "default");
    api.create(&PostParams::default(), &config_map("existing")).await.unwrap();

    let (reader, writer) = reflector::store();
    let stream =
        reflector(writer, watcher(api.clone(), watcher::Config::default().labels("test=kube"))).default_backoff();
    let task = tokio::spawn(stream.for_each(|_| async {}));
    tokio::time::timeout(WAIT, reader.wait_until_ready()).await.unwrap().unwrap();
    let names = |reader: &reflector::Store<ConfigMap>| {
        let mut names: Vec<String> = reader.state().iter().map(|cm| cm.metadata.name.clone().unwrap()).collect();
        names.sort();
        names
    };
    assert_eq!(names(&reader), vec!["existing".to_string()], "the initial list");

    api.create(&PostParams::default(), &config_map("fresh")).await.unwrap();
    eventually("the reflector to see the create", || names(&reader).len() == 2).await;

    let patch = serde_json::json!({"data": {"step": "updated"}});
    api.patch("fresh", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let updated = || {
        reader
            .state()
            .iter()
            .any(|cm| cm.metadata.name.as_deref() == Some("fresh") && cm.data.as_ref().unwrap()["step"] == "updated")
    };
    eventually("the reflector to see the update", updated).await;

    // Leaving the selector is a delete to this watcher.
    let unlabel = serde_json::json!({"metadata": {"labels": {"test": null}}});
    api.patch("existing", &PatchParams::default(), &Patch::Merge(&unlabel)).await.unwrap();
    eventually("the reflector to drop the unlabelled object", || names(&reader) == vec!["fresh".to_string()]).await;

    api.delete("fresh", &DeleteParams::default()).await.unwrap();
    eventually("the reflector to see the delete", || names(&reader).is_empty()).await;
    task.abort();
}

/// What the test watcher saw, simplified.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Init,
    InitApply(String),
    InitDone,
    Apply(String),
    Delete(String),
}

fn seen(event: watcher::Event<ConfigMap>) -> Seen {
    let name = |cm: &ConfigMap| cm.metadata.name.clone().unwrap();
    match event {
        watcher::Event::Init => Seen::Init,
        watcher::Event::InitApply(cm) => Seen::InitApply(name(&cm)),
        watcher::Event::InitDone => Seen::InitDone,
        watcher::Event::Apply(cm) => Seen::Apply(name(&cm)),
        watcher::Event::Delete(cm) => Seen::Delete(name(&cm)),
    }
}

async fn next_seen(events: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>, wanted: &Seen) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv()).await.unwrap_or_else(|_| panic!("no {wanted:?}"));
        if event.as_ref() == Some(wanted) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_relists_after_410_gone() {
    let mut server = KeelServer::start();
    let client = server.client().await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");

    let (sender, mut events) = tokio::sync::mpsc::unbounded_channel();
    let stream = watcher(config_maps.clone(), watcher::Config::default()).default_backoff();
    let task = tokio::spawn(stream.for_each(move |event| {
        if let Ok(event) = event {
            let _ = sender.send(seen(event));
        }
        async {}
    }));
    next_seen(&mut events, &Seen::InitDone).await;
    let before = config_maps.create(&PostParams::default(), &config_map("before")).await.unwrap();
    let before_revision = before.metadata.resource_version.clone().unwrap();
    next_seen(&mut events, &Seen::Apply("before".into())).await;

    // Other resources move the store past the watcher's last resourceVersion; after a restart
    // the configmaps cache starts there, so the watcher's position is no longer in its history.
    for index in 0..3 {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("s{index}")}}))
        .unwrap();
        secrets.create(&PostParams::default(), &secret).await.unwrap();
    }
    server.stop();
    server.run();

    // 410 in the stream → the watcher lists again, and the list has the object.
    next_seen(&mut events, &Seen::Init).await;
    next_seen(&mut events, &Seen::InitApply("before".into())).await;
    next_seen(&mut events, &Seen::InitDone).await;
    // The same watch by hand: the 410 is an ERROR event in the stream, with an Expired Status.
    let config_maps: Api<ConfigMap> = Api::namespaced(server.client().await, "default");
    let mut stream = config_maps.watch(&WatchParams::default(), &before_revision).await.unwrap().boxed();
    match tokio::time::timeout(WAIT, stream.next()).await.unwrap() {
        Some(Ok(WatchEvent::Error(status))) => {
            assert_eq!(status.code, 410, "{status:?}");
            assert_eq!(status.reason, "Expired", "{status:?}");
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    // And the watcher follows changes after its relist.
    config_maps.delete("before", &DeleteParams::default()).await.unwrap();
    next_seen(&mut events, &Seen::Delete("before".into())).await;
    task.abort();
}

/// The kube crate's metadata API (`as=PartialObjectMetadataList`): a list, a get and a watch
/// that carry each object's metadata and nothing of its data, and a watcher of
/// `PartialObjectMeta` (kube's metadata watcher) that lists the labelled objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_lists_gets_and_watches() {
    use kube::api::{ListParams, ResourceExt};
    use kube::core::PartialObjectMeta;

    let server = KeelServer::start();
    let api: Api<ConfigMap> = Api::namespaced(server.client().await, "default");
    for name in ["meta-a", "meta-b"] {
        api.create(&PostParams::default(), &config_map(name)).await.unwrap();
    }

    let list = api.list_metadata(&ListParams::default().labels("test=kube")).await.unwrap();
    let names: Vec<String> = list.items.iter().map(|item| item.name_any()).collect();
    assert_eq!(names, ["meta-a", "meta-b"]);
    assert_eq!(list.items[0].types.as_ref().map(|types| types.kind.as_str()), Some("PartialObjectMetadata"));
    assert!(list.metadata.resource_version.as_deref().is_some_and(|version| !version.is_empty()));
    let one = api.get_metadata("meta-a").await.unwrap();
    assert_eq!(one.labels().get("test").map(String::as_str), Some("kube"));
    assert!(one.metadata.uid.is_some() && one.metadata.creation_timestamp.is_some());

    // The raw answer has the metadata only: no data. The list kind does not fit one object.
    let port = server.api_port();
    let object_accept = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
    let list_accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
    let (code, raw) = raw_request(port, "GET", "/api/v1/namespaces/default/configmaps/meta-a", object_accept).await;
    assert_eq!(code, 200, "{raw}");
    assert_eq!(raw["kind"], "PartialObjectMetadata");
    assert_eq!(raw["apiVersion"], "meta.k8s.io/v1");
    assert!(raw.get("data").is_none(), "{raw}");
    // Asked in v1beta1, answered in v1beta1, as kube-apiserver does; a LIST streams its items so.
    let beta_accept = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1beta1";
    let (code, raw) = raw_request(port, "GET", "/api/v1/namespaces/default/configmaps/meta-a", beta_accept).await;
    assert_eq!((code, &raw["apiVersion"]), (200, &serde_json::json!("meta.k8s.io/v1beta1")), "{raw}");
    let beta_list_accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1beta1";
    let (code, raw) = raw_request(port, "GET", "/api/v1/namespaces/default/configmaps", beta_list_accept).await;
    assert_eq!((code, &raw["apiVersion"]), (200, &serde_json::json!("meta.k8s.io/v1beta1")), "{raw}");
    assert_eq!(raw["items"][0]["apiVersion"], "meta.k8s.io/v1beta1", "{raw}");
    let (code, raw) = raw_request(port, "GET", "/api/v1/namespaces/default/configmaps/meta-a", list_accept).await;
    assert_eq!((code, &raw["reason"]), (406, &serde_json::json!("NotAcceptable")), "{raw}");
    let (code, raw) = raw_request(port, "GET", "/api/v1/namespaces/default/configmaps", object_accept).await;
    assert_eq!((code, &raw["reason"]), (406, &serde_json::json!("NotAcceptable")), "{raw}");

    // kube's metadata watcher: an `Api` of `PartialObjectMeta` asks for metadata only.
    let metadata_api: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(server.client().await, "default");
    let events = watcher(metadata_api, watcher::Config::default().labels("test=kube")).touched_objects();
    let mut events = Box::pin(events);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 {
        let object = tokio::time::timeout(WAIT, events.next()).await.unwrap().unwrap().unwrap();
        assert!(object.labels().contains_key("test"));
        seen.insert(object.name_any());
    }
    let watch = api.watch_metadata(&WatchParams::default(), &list.metadata.resource_version.unwrap()).await.unwrap();
    let mut watch = Box::pin(watch);
    api.delete("meta-b", &DeleteParams::default()).await.unwrap();
    let deleted = loop {
        match tokio::time::timeout(WAIT, watch.next()).await.unwrap().unwrap().unwrap() {
            WatchEvent::Deleted(object) => break object,
            WatchEvent::Bookmark(_) => continue,
            other => panic!("expected the delete, got {other:?}"),
        }
    };
    assert_eq!(deleted.name_any(), "meta-b");
    assert_eq!(deleted.types.as_ref().map(|types| types.kind.as_str()), Some("PartialObjectMetadata"));

    // DeleteCollection answers the deleted objects as PartialObjectMetadataList.
    let path = "/api/v1/namespaces/default/configmaps?labelSelector=test%3Dkube";
    let (code, raw) = raw_request(port, "DELETE", path, list_accept).await;
    assert_eq!(code, 200, "{raw}");
    assert_eq!(raw["kind"], "PartialObjectMetadataList");
    let items = raw["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{raw}");
    assert_eq!((&items[0]["kind"], &items[0]["metadata"]["name"]), (&"PartialObjectMetadata".into(), &"meta-a".into()));
    assert!(items[0].get("data").is_none(), "{raw}");
    assert!(api.list_metadata(&ListParams::default().labels("test=kube")).await.unwrap().items.is_empty());

    // ... and Table clients with a Table of the deleted objects.
    api.create(&PostParams::default(), &config_map("meta-c")).await.unwrap();
    let table_accept = "application/json;as=Table;g=meta.k8s.io;v=v1";
    let (code, raw) = raw_request(port, "DELETE", path, table_accept).await;
    assert_eq!((code, &raw["kind"]), (200, &serde_json::json!("Table")), "{raw}");
    assert_eq!(raw["rows"].as_array().map(Vec::len), Some(1), "{raw}");
    assert_eq!(raw["rows"][0]["cells"][0], "meta-c", "{raw}");
}

/// One request with an Accept header and no body: the status code and the JSON answer.
async fn raw_request(port: u16, method: &str, path: &str, accept: &str) -> (u16, serde_json::Value) {
    let (method, path, accept) = (method.to_string(), path.to_string(), accept.to_string());
    let answer = tokio::task::spawn_blocking(move || {
        support::raw_http::request(&format!("127.0.0.1:{port}"), &method, &path, &[("Accept", &accept)], b"")
    })
    .await
    .unwrap();
    (answer.code, answer.json())
}
