//! Multi-process clusters of real `keel store` members on loopback ports, driven through the
//! etcd v3 API with the `etcd-client` crate: elections, writes through any member, failover
//! under load, catch-up by snapshot, membership changes under load, whole-cluster crash and
//! restart, reads on a member cut off from the majority, and crash points (failpoints).
//! Timings are printed, never asserted.

mod support;

use std::time::{Duration, Instant};

use etcd_client::GetOptions;
use support::{Cluster, Writer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_and_five_member_clusters_accept_writes_through_every_member() {
    for size in [3, 5] {
        let mut cluster = Cluster::start(size, &[]).await;
        for index in 0..size {
            let mut client = cluster.client(index).await;
            client.put(format!("through-{index}"), format!("{index}"), None).await.unwrap();
        }
        // Linearizable reads on every member see every write.
        for index in 0..size {
            let mut client = cluster.client(index).await;
            let response = client.get("through-", Some(GetOptions::new().with_prefix())).await.unwrap();
            assert_eq!(response.kvs().len(), size, "member {index} of {size}");
        }
        // Every member publishes its name and client URLs once it runs.
        let deadline = Instant::now() + support::WAIT;
        loop {
            let members = cluster.client(0).await.member_list().await.unwrap();
            assert_eq!(members.members().len(), size);
            let published = |member: &etcd_client::Member| {
                cluster.nodes.iter().any(|node| {
                    node.name == member.name() && member.client_urls() == [format!("http://{}", node.endpoint())]
                })
            };
            if members.members().iter().all(published) {
                break;
            }
            assert!(Instant::now() < deadline, "members never published: {:?}", members.members());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        cluster.converged().await;
        cluster.assert_no_panics();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_under_writes_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3, &[]).await;
    let endpoints = cluster.nodes.iter().map(|node| node.endpoint()).collect();
    let writer = Writer::start(endpoints, "failover/");
    writer.wait_for_more(200).await;
    let leader = cluster.wait_for_leader().await;
    let killed_at = Instant::now();
    cluster.kill(leader);
    cluster.wait_for_leader_other_than(Some(leader)).await;
    writer.wait_for_more(1).await;
    println!("failover: first write acknowledged {:?} after SIGKILL of the leader", killed_at.elapsed());
    writer.wait_for_more(200).await;
    cluster.restart(leader);
    writer.wait_for_more(100).await;
    let written = writer.finish().await;
    cluster.converged().await;
    cluster.assert_all_present(&written).await;
    cluster.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_missed_many_writes_catches_up_by_snapshot() {
    // A snapshot every 100 commands, and openraft keeps 1,000 log entries behind the last one.
    // Concurrent writes share entries (at most one per writer each), so with two writers 3,000
    // writes are at least 1,500 entries: a member that missed them all can only catch up from
    // a snapshot. (With eight, faster serving packed them into fewer than 1,000 entries at
    // times, and the follower caught up from the log.)
    let writes: usize = std::env::var("KEEL_CATCH_UP_WRITES").map_or(3000, |value| value.parse().unwrap());
    let mut cluster = Cluster::start(3, &["--snapshot-count", "100"]).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % 3;
    cluster.kill(follower);
    let endpoints = vec![cluster.nodes[leader].endpoint()];
    let writer = Writer::start_many(endpoints, "catch-up/", 2);
    writer.wait_for_more(writes).await;
    let written = writer.finish().await;
    cluster.restart(follower);
    cluster.converged().await;
    cluster.assert_all_present(&written).await;
    let snapshots = cluster.nodes[follower].data_dir.join("snapshots");
    let received = std::fs::read_dir(&snapshots)
        .unwrap()
        .filter_map(Result::ok)
        .any(|entry| entry.path().extension().is_some_and(|extension| extension == "snap"));
    assert!(received, "the follower holds no snapshot in {}", snapshots.display());
    cluster.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_added_promoted_removed_and_replaced_while_writes_continue() {
    let mut cluster = Cluster::start(3, &[]).await;
    let endpoints = cluster.nodes.iter().map(|node| node.endpoint()).collect();
    let writer = Writer::start(endpoints, "membership/");
    writer.wait_for_more(100).await;

    // A learner joins, catches up, and is promoted to voter.
    let learner = cluster.add_member(true).await;
    let learner_id = cluster.nodes[learner].id;
    let deadline = Instant::now() + support::WAIT;
    loop {
        let mut client = cluster.client(0).await;
        match client.member_promote(learner_id).await {
            Ok(_) => break,
            Err(error) => {
                assert!(Instant::now() < deadline, "promotion never succeeded: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    writer.wait_for_more(100).await;

    // A member is removed: it leaves the list and its process exits, as etcd's does.
    cluster.remove_member(0).await;
    let deadline = Instant::now() + support::WAIT;
    while cluster.nodes[0].is_running() {
        assert!(Instant::now() < deadline, "the removed member did not exit; its log:\n{}", cluster.nodes[0].log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cluster.nodes[0].log().contains("permanently removed"), "{}", cluster.nodes[0].log());
    writer.wait_for_more(100).await;

    // A member whose data dir was wiped is removed and added back under a new id.
    let old_id = cluster.nodes[1].id;
    cluster.replace_member(1).await;
    assert_ne!(cluster.nodes[1].id, old_id);
    writer.wait_for_more(100).await;

    let written = writer.finish().await;
    cluster.converged().await;
    cluster.assert_all_present(&written).await;
    let mut client = cluster.client(2).await;
    let members = client.member_list().await.unwrap();
    let mut ids: Vec<u64> = members.members().iter().map(|member| member.id()).collect();
    ids.sort_unstable();
    let mut expected = vec![cluster.nodes[1].id, cluster.nodes[2].id, learner_id];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    assert!(members.members().iter().all(|member| !member.is_learner()));
    cluster.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_killed_comes_back_at_the_same_revision_and_hash() {
    let mut cluster = Cluster::start(3, &[]).await;
    let endpoints = cluster.nodes.iter().map(|node| node.endpoint()).collect();
    let writer = Writer::start(endpoints, "restart/");
    writer.wait_for_more(300).await;
    let written = writer.finish().await;
    let before = cluster.converged().await;
    for index in 0..3 {
        cluster.kill(index);
    }
    for index in 0..3 {
        cluster.restart(index);
    }
    cluster.wait_for_leader().await;
    let after = cluster.converged().await;
    // A new leader appends a blank entry, which is no store revision.
    assert_eq!(after, before);
    cluster.assert_all_present(&written).await;
    cluster.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cut_off_from_the_majority_refuses_linearizable_reads() {
    let mut cluster = Cluster::start(3, &[]).await;
    let mut client = cluster.any_client().await;
    client.put("cut", "before", None).await.unwrap();
    cluster.converged().await;
    // Cut off the leader and, in a second round, a follower, by pausing the other two.
    for round in 0..2 {
        let leader = cluster.wait_for_leader().await;
        let isolated = if round == 0 { leader } else { (leader + 1) % 3 };
        let others: Vec<usize> = (0..3).filter(|index| *index != isolated).collect();
        for other in &others {
            cluster.pause(*other);
        }
        let mut client = cluster.client(isolated).await;
        let linearizable = client.get("cut", None).await;
        assert!(linearizable.is_err(), "round {round}: a cut-off member answered {linearizable:?}");
        let serializable = client.get("cut", Some(GetOptions::new().with_serializable())).await.unwrap();
        assert_eq!(serializable.kvs()[0].value(), b"before");
        for other in &others {
            cluster.resume(*other);
        }
        cluster.wait_for_leader().await;
        let mut client = cluster.client(isolated).await;
        let deadline = Instant::now() + support::WAIT;
        while client.get("cut", None).await.is_err() {
            assert!(Instant::now() < deadline, "round {round}: reads never recovered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    cluster.assert_no_panics();
}

/// A follower that does not serve the append stream (as a member from before it would, in a
/// rolling upgrade) still gets every entry: the leader falls back to unary AppendEntries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_without_the_append_stream_is_replicated_by_unary_calls() {
    let mut cluster = Cluster::start(3, &[]).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % 3;
    cluster.stop(follower);
    cluster.restart_with_env(follower, &[("FAILPOINTS", "raft::peer::no_append_stream=return")]);
    let writer = Writer::start(vec![cluster.nodes[leader].endpoint()], "unary/");
    writer.wait_for_more(300).await;
    let written = writer.finish().await;
    // Without the fallback the follower would stay behind and this would time out.
    cluster.converged().await;
    cluster.assert_all_present(&written).await;
    assert!(cluster.logs().contains("does not serve the append stream"), "{}", cluster.logs());
    cluster.assert_no_panics();
}

/// Each crash point kills one member mid-write; after a restart without it, the cluster has
/// every acknowledged write and one hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_points_in_log_append_and_apply_lose_no_acknowledged_write() {
    let points = [
        "raft::log::before_append",
        "raft::log::after_append",
        "raft::log::before_sync",
        "store::apply::before_write",
        "store::apply::after_write",
    ];
    let mut cluster = Cluster::start(3, &[]).await;
    let endpoints: Vec<String> = cluster.nodes.iter().map(|node| node.endpoint()).collect();
    let writer = Writer::start(endpoints, "crash/");
    for (round, point) in points.iter().enumerate() {
        // Alternate between the leader and a follower.
        let leader = cluster.wait_for_leader().await;
        let victim = if round % 2 == 0 { leader } else { (leader + 1) % 3 };
        cluster.stop(victim);
        let failpoints = format!("{point}=20*off->panic");
        cluster.restart_with_env(victim, &[("FAILPOINTS", failpoints.as_str())]);
        let deadline = Instant::now() + support::WAIT;
        while cluster.nodes[victim].is_running() {
            assert!(Instant::now() < deadline, "{point} never fired");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(cluster.nodes[victim].log().contains("failpoint crash"), "{point}");
        cluster.restart(victim);
        cluster.wait_for_leader().await;
        writer.wait_for_more(50).await;
    }
    let written = writer.finish().await;
    cluster.converged().await;
    cluster.assert_all_present(&written).await;
    cluster.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_snapshot_install_recovers_on_restart() {
    let mut cluster = Cluster::start(3, &["--snapshot-count", "100"]).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % 3;
    cluster.kill(follower);
    let writer = Writer::start(vec![cluster.nodes[leader].endpoint()], "install/");
    // The leader purges its log behind a snapshot only while no replication request to the
    // dead follower is in flight over that range (openraft), so give it many snapshots (one
    // per 100 writes) to find a moment: the follower must come back behind the purge point.
    writer.wait_for_more(3000).await;
    let written = writer.finish().await;
    for point in ["raft::snapshot::before_install", "store::snapshot::after_marker"] {
        cluster.restart_with_env(follower, &[("FAILPOINTS", &format!("{point}=panic"))]);
        let deadline = Instant::now() + support::WAIT;
        while cluster.nodes[follower].is_running() {
            assert!(Instant::now() < deadline, "{point} never fired");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(cluster.nodes[follower].log().contains("failpoint crash"), "{point}");
    }
    cluster.restart(follower);
    cluster.converged().await;
    cluster.assert_all_present(&written).await;
    cluster.assert_no_panics();
}

/// Keep-alives sent to a follower reach the leader's clocks, across a failover; once they
/// stop, the new leader expires the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_kept_alive_through_a_follower_survive_failover_and_then_expire() {
    let mut cluster = Cluster::start(3, &[]).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % 3;
    let mut client = cluster.client(follower).await;
    let lease = client.lease_grant(3, None).await.unwrap().id();
    client.put("leased", "v", Some(etcd_client::PutOptions::new().with_lease(lease))).await.unwrap();
    let (mut keeper, mut answers) = client.lease_keep_alive(lease).await.unwrap();
    let keep_alive = tokio::spawn(async move {
        loop {
            keeper.keep_alive().await.unwrap();
            let answer = answers.message().await.unwrap().unwrap();
            assert!(answer.ttl() > 0, "lease {lease} was lost while kept alive");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    cluster.kill(leader);
    cluster.wait_for_leader_other_than(Some(leader)).await;
    // Twice the TTL, with keep-alives: the key must still be there.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(!keep_alive.is_finished(), "the keep-alive loop failed");
    let held = client.get("leased", None).await.unwrap();
    assert_eq!(held.kvs().len(), 1, "a kept-alive lease expired across failover");
    let ttl = client.lease_time_to_live(lease, None).await.unwrap();
    assert!(ttl.ttl() > 0 && ttl.granted_ttl() == 3, "{ttl:?}");
    keep_alive.abort();
    let deadline = Instant::now() + support::WAIT;
    while !client.get("leased", None).await.unwrap().kvs().is_empty() {
        assert!(Instant::now() < deadline, "the lease never expired after keep-alives stopped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.assert_no_panics();
}

/// With lease checkpoints, a new leader restarts a lease from its recorded remaining TTL,
/// not from the full TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_resumes_leases_from_their_checkpointed_ttl() {
    let flags = ["--experimental-enable-lease-checkpoint", "--experimental-lease-checkpoint-interval", "1s"];
    let mut cluster = Cluster::start(3, &flags).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % 3;
    let mut client = cluster.client(follower).await;
    let lease = client.lease_grant(60, None).await.unwrap().id();
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.kill(leader);
    cluster.wait_for_leader_other_than(Some(leader)).await;
    let ttl = client.lease_time_to_live(lease, None).await.unwrap();
    // At least 3 s were checkpointed away; a restart from the full TTL would give 60 + grace.
    assert!(ttl.ttl() > 0 && ttl.ttl() < 59, "remaining TTL after failover: {}", ttl.ttl());
    cluster.assert_no_panics();
}
