//! A paginated LIST is one snapshot: pages after the first are served at the first page's
//! revision while objects before and after the page boundary are created, updated and deleted
//! (`apiserver/src/cache.rs`'s `list_at` rebuilds that revision from the watch cache's event
//! history). A `resourceVersionMatch=Exact` LIST gets the same snapshot, and both expire with 410
//! once the store compacts that revision.

mod support;

use support::keel_server::KeelServer;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, ListParams, ObjectList, PostParams, VersionMatch};
use kube::Api;
use serde_json::json;

const NAMESPACE: &str = "pages";

fn config_map(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {"value": value},
    }))
    .unwrap()
}

/// Name, resourceVersion and data of each item: what must match between two snapshots.
fn contents(items: &[ConfigMap]) -> Vec<(String, String, String)> {
    items
        .iter()
        .map(|item| {
            (
                item.metadata.name.clone().unwrap(),
                item.metadata.resource_version.clone().unwrap(),
                item.data.as_ref().unwrap()["value"].clone(),
            )
        })
        .collect()
}

fn status_code(error: kube::Error) -> u16 {
    match error {
        kube::Error::Api(status) => status.code,
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_exact_lists_see_one_revision_while_objects_change() {
    let server = KeelServer::start();
    let client = server.client().await;
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).unwrap();
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    for index in 0..30 {
        api.create(&PostParams::default(), &config_map(&format!("cm-{index:02}"), "v1")).await.unwrap();
    }
    let before: ObjectList<ConfigMap> = api.list(&ListParams::default()).await.unwrap();
    let revision = before.metadata.resource_version.clone().unwrap();
    let snapshot = contents(&before.items);
    assert_eq!(snapshot.len(), 30);

    let mut paged = Vec::new();
    let mut params = ListParams::default().limit(10);
    let mut pages = 0;
    loop {
        let page = api.list(&params).await.unwrap();
        assert_eq!(page.metadata.resource_version.as_deref(), Some(revision.as_str()), "page {pages}");
        paged.extend(page.items);
        pages += 1;
        if pages == 1 {
            // Between pages: changes behind the boundary, ahead of it, and in another namespace.
            api.replace("cm-05", &PostParams::default(), &config_map("cm-05", "v2")).await.unwrap();
            api.replace("cm-15", &PostParams::default(), &config_map("cm-15", "v2")).await.unwrap();
            api.replace("cm-15", &PostParams::default(), &config_map("cm-15", "v3")).await.unwrap();
            api.delete("cm-20", &DeleteParams::default()).await.unwrap();
            api.create(&PostParams::default(), &config_map("cm-25a", "new")).await.unwrap();
            api.create(&PostParams::default(), &config_map("cm-00a", "new")).await.unwrap();
            let elsewhere: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
            let mut other = config_map("elsewhere", "v1");
            other.metadata.namespace = Some("default".into());
            elsewhere.create(&PostParams::default(), &other).await.unwrap();
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(contents(&paged), snapshot, "the pages are the snapshot at {revision}");

    // The same revision, asked for exactly, whole and in pages.
    let exact = ListParams::default().at(&revision).matching(VersionMatch::Exact);
    let whole = api.list(&exact).await.unwrap();
    assert_eq!(whole.metadata.resource_version.as_deref(), Some(revision.as_str()));
    assert_eq!(contents(&whole.items), snapshot);
    let first = api.list(&exact.clone().limit(7)).await.unwrap();
    assert_eq!(contents(&first.items), snapshot[..7]);
    let token = first.metadata.continue_.clone().unwrap();

    // Now: the changes are there.
    let now = contents(&api.list(&ListParams::default()).await.unwrap().items);
    assert_eq!(now.len(), 31);
    assert!(now.iter().any(|(name, _, value)| name == "cm-15" && value == "v3"));
    assert!(!now.iter().any(|(name, _, _)| name == "cm-20"));

    // Once the store compacts past the revision, both expire.
    let mut etcd = etcd_client::Client::connect([server.etcd_url()], None).await.unwrap();
    let current = etcd.get("compaction-probe", None).await.unwrap().header().unwrap().revision();
    etcd.compact(current, None).await.unwrap();
    let expired = api.list(&ListParams::default().limit(7).continue_token(&token)).await.unwrap_err();
    assert_eq!(status_code(expired), 410);
    let expired = api.list(&exact).await.unwrap_err();
    assert_eq!(status_code(expired), 410);
}
