//! etcd's auth on a 3-member keel cluster, through the `etcd-client` crate: the auth state is
//! replicated (a token from one member works at another, a permission change made through one
//! member binds writes sent through another), survives SIGKILL of every member, and covers
//! watches and leases. etcdctl's view of auth is in tests/differential.rs, against etcd itself.

mod support;

use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, Error, Permission, PutOptions};
use support::{Cluster, WAIT};

/// A client of member `index` logged in as `user`, retried until the cluster answers (after
/// a restart it may still be electing a leader).
async fn login(cluster: &Cluster, index: usize, user: &str, password: &str) -> Client {
    let deadline = Instant::now() + WAIT;
    loop {
        let options = ConnectOptions::new()
            .with_user(user, password)
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(10));
        match Client::connect([cluster.nodes[index].endpoint()], Some(options)).await {
            Ok(client) => return client,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(error) => panic!("login as {user} at n{}: {error}\n{}", index + 1, cluster.logs()),
        }
    }
}

/// The gRPC code and message of a refused call.
fn refusal<T: std::fmt::Debug>(result: Result<T, Error>) -> (tonic::Code, String) {
    match result {
        Err(Error::GRpcStatus(status)) => (status.code(), status.message().to_string()),
        other => panic!("expected a gRPC refusal, got {other:?}"),
    }
}

/// Sets up root and alice (read-write on `app/`), and enables auth, through member 0.
async fn enable_auth(cluster: &Cluster) {
    let mut admin = cluster.client(0).await;
    admin.user_add("root", "rootpw", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.role_add("app").await.unwrap();
    admin.role_grant_permission("app", Permission::read_write("app/").with_prefix()).await.unwrap();
    admin.user_add("alice", "alicepw", None).await.unwrap();
    admin.user_grant_role("alice", "app").await.unwrap();
    admin.auth_enable().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_is_replicated_checked_where_writes_apply_and_survives_kill_9() {
    let mut cluster = Cluster::start(3, &["--bcrypt-cost", "4"]).await;
    enable_auth(&cluster).await;

    // Without a token nothing is allowed; with one from any member, what the role grants.
    let mut anonymous = cluster.client(1).await;
    let (code, message) = refusal(anonymous.get("app/k", None).await);
    assert_eq!((code, message.as_str()), (tonic::Code::InvalidArgument, "etcdserver: user name is empty"));
    let mut alice = login(&cluster, 2, "alice", "alicepw").await;
    alice.put("app/k", "v1", None).await.unwrap();
    assert_eq!(alice.get("app/k", None).await.unwrap().kvs()[0].value(), b"v1");
    let (code, message) = refusal(alice.put("other", "x", None).await);
    assert_eq!((code, message.as_str()), (tonic::Code::PermissionDenied, "etcdserver: permission denied"));
    let (code, _) = refusal(alice.get("app/", Some(etcd_client::GetOptions::new().with_from_key())).await);
    assert_eq!(code, tonic::Code::PermissionDenied, "a range past app/ is not granted");
    let (code, _) = refusal(alice.member_remove(cluster.nodes[0].id).await);
    assert_eq!(code, tonic::Code::PermissionDenied, "membership needs the root role");

    // A watch on keys alice may not read is created and canceled at once, with the reason.
    let mut refused = alice.watch("other", None).await.unwrap();
    let first = tokio::time::timeout(WAIT, refused.message()).await.unwrap().unwrap().unwrap();
    assert!(first.canceled(), "{first:?}");
    assert_eq!(first.cancel_reason(), "etcdserver: permission denied");

    // Leases: granted to anyone; kept alive through the keys they hold.
    let lease = alice.lease_grant(60, None).await.unwrap().id();
    alice.put("app/leased", "v", Some(PutOptions::new().with_lease(lease))).await.unwrap();
    let (mut keeper, mut replies) = alice.lease_keep_alive(lease).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let reply = tokio::time::timeout(WAIT, replies.message()).await.unwrap().unwrap().unwrap();
    assert!(reply.ttl() > 0, "{reply:?}");

    // Every member SIGKILLed at once: users, roles and the enabled flag come back from disk.
    for index in 0..3 {
        cluster.kill(index);
    }
    for index in 0..3 {
        cluster.restart(index);
    }
    let mut alice = login(&cluster, 1, "alice", "alicepw").await;
    let deadline = Instant::now() + WAIT;
    while let Err(error) = alice.put("app/after", "restart", None).await {
        assert!(Instant::now() < deadline, "no write after the restart: {error}\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, _) = refusal(alice.put("other", "x", None).await);
    assert_eq!(code, tonic::Code::PermissionDenied);

    // Revoked through member 0, refused to a write sent through member 2.
    let mut root = login(&cluster, 0, "root", "rootpw").await;
    root.role_revoke_permission("app", "app/", Some(etcd_client::RoleRevokePermissionOptions::new().with_prefix()))
        .await
        .unwrap();
    let mut alice = login(&cluster, 2, "alice", "alicepw").await;
    let (code, _) = refusal(alice.put("app/k", "v2", None).await);
    assert_eq!(code, tonic::Code::PermissionDenied);

    // A deleted user's token no longer verifies anywhere.
    root.user_delete("alice").await.unwrap();
    let (code, message) = refusal(alice.get("app/k", None).await);
    assert_eq!((code, message.as_str()), (tonic::Code::Unauthenticated, "etcdserver: invalid auth token"));

    // Disabled again: anyone may read, and root's data is all there.
    root.auth_disable().await.unwrap();
    let mut anonymous = cluster.client(1).await;
    let deadline = Instant::now() + WAIT;
    loop {
        match anonymous.get("app/after", None).await {
            Ok(response) if response.kvs().first().is_some_and(|kv| kv.value() == b"restart") => break,
            other => assert!(Instant::now() < deadline, "read after auth disable: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_change_ends_the_old_tokens() {
    let cluster = Cluster::start(1, &["--bcrypt-cost", "4"]).await;
    enable_auth(&cluster).await;
    let mut alice = login(&cluster, 0, "alice", "alicepw").await;
    alice.put("app/k", "v", None).await.unwrap();
    let mut root = login(&cluster, 0, "root", "rootpw").await;
    root.user_change_password("alice", "newpw").await.unwrap();
    let (code, _) = refusal(alice.get("app/k", None).await);
    assert_eq!(code, tonic::Code::Unauthenticated);
    let options = ConnectOptions::new().with_user("alice", "alicepw");
    let (code, message) = refusal(Client::connect([cluster.nodes[0].endpoint()], Some(options)).await.map(|_| ()));
    assert_eq!(
        (code, message.as_str()),
        (tonic::Code::InvalidArgument, "etcdserver: authentication failed, invalid user ID or password")
    );
    let mut alice = login(&cluster, 0, "alice", "newpw").await;
    assert_eq!(alice.get("app/k", None).await.unwrap().kvs()[0].value(), b"v");
}
