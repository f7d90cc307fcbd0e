//! etcd's Lock and Election services on real `keel store` processes, driven by etcd-client's
//! `lock`/`unlock`/`campaign`/`proclaim`/`leader`/`observe`/`resign` and by the real etcdctl
//! (`etcdctl lock`, `etcdctl elect`, which run etcd's concurrency recipes client-side over KV,
//! Watch and Lease: the same keys, so both kinds of contender must exclude each other).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions, LeaderKey, LockOptions, ProclaimOptions, ResignOptions};
use support::{Cluster, WAIT};

/// A client whose calls may wait as long as the tests ever wait (the harness's clients give up
/// after 10 s, which a queued Lock or Campaign may legitimately exceed on a loaded machine).
async fn patient_client(cluster: &Cluster, index: usize) -> Client {
    let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(2)).with_timeout(WAIT);
    Client::connect([cluster.nodes[index].endpoint()], Some(options)).await.unwrap()
}

async fn lease(client: &mut Client, ttl: i64) -> i64 {
    client.lease_grant(ttl, None).await.unwrap().id()
}

/// Waits until `condition` holds, checking every 20 ms, for at most `WAIT`.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut condition: impl FnMut() -> F) {
    let deadline = Instant::now() + WAIT;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn keys_under(client: &mut Client, prefix: &str) -> Vec<String> {
    let response = client.get(prefix, Some(GetOptions::new().with_prefix())).await.unwrap();
    response.kvs().iter().map(|kv| kv.key_str().unwrap().to_string()).collect()
}

/// Asserts that a call is still pending after a while: it is queued, not done.
async fn assert_still_waiting<T>(task: &tokio::task::JoinHandle<T>, what: &str) {
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!task.is_finished(), "{what} finished while it should still wait");
}

/// The next leader an Observe stream reports: (key, value).
async fn next_observed(observe: &mut etcd_client::ObserveStream) -> (String, String) {
    let message = tokio::time::timeout(WAIT, observe.message()).await.expect("an observed leader").unwrap().unwrap();
    let kv = message.kv().unwrap();
    (kv.key_str().unwrap().to_string(), kv.value_str().unwrap().to_string())
}

/// One contender's lock key: the name, '/', its lease in lower-case hex, as etcd writes it.
fn lock_key(name: &str, lease: i64) -> String {
    format!("{name}/{lease:x}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_is_exclusive_and_handed_over_in_order_across_members() {
    let cluster = Cluster::start(3, &[]).await;
    let mut first = patient_client(&cluster, 0).await;
    let mut second = patient_client(&cluster, 1).await;
    let lease_first = lease(&mut first, 60).await;
    let lease_second = lease(&mut second, 60).await;

    let held = first.lock("job", Some(LockOptions::new().with_lease(lease_first))).await.unwrap();
    assert_eq!(held.key(), lock_key("job", lease_first).as_bytes());
    let inside = Arc::new(AtomicBool::new(true));

    // The second contender, on another member, queues behind the first.
    let waiter = {
        let inside = inside.clone();
        tokio::spawn(async move {
            let response = second.lock("job", Some(LockOptions::new().with_lease(lease_second))).await.unwrap();
            // Nobody else may be inside when the lock is granted.
            let overlapped = inside.swap(true, Ordering::SeqCst);
            (response, overlapped, Instant::now())
        })
    };
    let mut observer = cluster.client(2).await;
    let queued = [lock_key("job", lease_first), lock_key("job", lease_second)];
    eventually("the second contender is queued", || {
        let mut observer = observer.clone();
        let queued = queued.clone();
        async move {
            let mut keys = keys_under(&mut observer, "job/").await;
            keys.sort();
            let mut expected = queued.to_vec();
            expected.sort();
            keys == expected
        }
    })
    .await;
    assert_still_waiting(&waiter, "the second Lock").await;

    inside.store(false, Ordering::SeqCst);
    let released_at = Instant::now();
    let unlocked = first.unlock(held.key()).await.unwrap();
    let (granted, overlapped, granted_at) = tokio::time::timeout(WAIT, waiter).await.unwrap().unwrap();
    assert!(!overlapped, "the second contender got the lock while the first held it");
    assert!(granted_at >= released_at);
    assert_eq!(granted.key(), lock_key("job", lease_second).as_bytes());
    // Granted at or after the revision that released it.
    let unlock_revision = unlocked.header().unwrap().revision();
    assert!(granted.header().unwrap().revision() >= unlock_revision, "{granted:?} vs {unlocked:?}");
    assert_eq!(keys_under(&mut observer, "job/").await, vec![lock_key("job", lease_second)]);
    first.unlock(granted.key()).await.unwrap();

    // Several contenders on all members, several rounds each: never two inside at once, and
    // every round completes.
    let inside = Arc::new(AtomicUsize::new(0));
    let rounds_done = Arc::new(AtomicUsize::new(0));
    let mut contenders = Vec::new();
    for index in 0..3 {
        let mut client = patient_client(&cluster, index).await;
        let id = lease(&mut client, 60).await;
        let inside = inside.clone();
        let rounds_done = rounds_done.clone();
        contenders.push(tokio::spawn(async move {
            for _round in 0..3 {
                let held = client.lock("rounds", Some(LockOptions::new().with_lease(id))).await.unwrap();
                assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two contenders inside at once");
                tokio::time::sleep(Duration::from_millis(30)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                rounds_done.fetch_add(1, Ordering::SeqCst);
                client.unlock(held.key()).await.unwrap();
            }
        }));
    }
    for contender in contenders {
        tokio::time::timeout(WAIT, contender).await.unwrap().unwrap();
    }
    assert_eq!(rounds_done.load(Ordering::SeqCst), 9);
    assert!(keys_under(&mut observer, "rounds/").await.is_empty());
    cluster.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_follows_leases_and_abandoned_waiters_leave_the_queue() {
    let cluster = Cluster::start(1, &[]).await;
    let mut client = patient_client(&cluster, 0).await;

    // A lease that does not exist is refused, as etcd refuses it.
    let error = client.lock("gate", Some(LockOptions::new().with_lease(0x7777))).await.unwrap_err();
    assert!(error.to_string().contains("requested lease not found"), "{error}");

    let holder_lease = lease(&mut client, 60).await;
    let next_lease = lease(&mut client, 60).await;
    let doomed_lease = lease(&mut client, 60).await;
    let held = client.lock("gate", Some(LockOptions::new().with_lease(holder_lease))).await.unwrap();

    // Locking again with the same lease is immediate: the lease already holds it.
    let again = client.lock("gate", Some(LockOptions::new().with_lease(holder_lease))).await.unwrap();
    assert_eq!(again.key(), held.key());

    let next = {
        let mut client = client.clone();
        tokio::spawn(async move { client.lock("gate", Some(LockOptions::new().with_lease(next_lease))).await })
    };
    eventually("the next contender is queued", || {
        let mut client = client.clone();
        async move { keys_under(&mut client, "gate/").await.len() == 2 }
    })
    .await;
    let doomed = {
        let mut client = client.clone();
        tokio::spawn(async move { client.lock("gate", Some(LockOptions::new().with_lease(doomed_lease))).await })
    };
    eventually("the third contender is queued", || {
        let mut client = client.clone();
        async move { keys_under(&mut client, "gate/").await.len() == 3 }
    })
    .await;
    assert_still_waiting(&next, "the queued Lock").await;

    // A waiter whose lease ends fails at once, even though it was not its turn yet.
    client.lease_revoke(doomed_lease).await.unwrap();
    let error = tokio::time::timeout(WAIT, doomed).await.unwrap().unwrap().unwrap_err();
    assert!(error.to_string().contains("mutex: session is expired"), "{error}");
    assert!(!next.is_finished(), "revoking a later waiter's lease released the lock");

    // The holder's lease ends: its key goes with it, and the next waiter gets the lock.
    let revoked = client.lease_revoke(holder_lease).await.unwrap();
    let granted = tokio::time::timeout(WAIT, next).await.unwrap().unwrap().unwrap();
    assert_eq!(granted.key(), lock_key("gate", next_lease).as_bytes());
    assert!(granted.header().unwrap().revision() >= revoked.header().unwrap().revision());

    // A waiter whose client gives up (its deadline passes) does not stay in the queue.
    let impatient_options =
        ConnectOptions::new().with_connect_timeout(Duration::from_secs(2)).with_timeout(Duration::from_millis(800));
    let mut impatient = Client::connect([cluster.nodes[0].endpoint()], Some(impatient_options)).await.unwrap();
    let impatient_lease = lease(&mut client, 60).await;
    let error = impatient.lock("gate", Some(LockOptions::new().with_lease(impatient_lease))).await.unwrap_err();
    assert!(!error.to_string().is_empty());
    eventually("the abandoned waiter's key is withdrawn", || {
        let mut client = client.clone();
        async move { keys_under(&mut client, "gate/").await == vec![lock_key("gate", next_lease)] }
    })
    .await;

    // Without a lease, the lock gets one of its own (etcd's 60 s session lease).
    client.unlock(granted.key()).await.unwrap();
    let own = client.lock("gate", None).await.unwrap();
    let key = String::from_utf8(own.key().to_vec()).unwrap();
    let own_lease = i64::from_str_radix(key.strip_prefix("gate/").unwrap(), 16).unwrap();
    let ttl = client.lease_time_to_live(own_lease, None).await.unwrap();
    assert!(ttl.ttl() > 0 && ttl.ttl() <= 60, "{ttl:?}");
    client.unlock(own.key()).await.unwrap();
    assert!(keys_under(&mut client, "gate/").await.is_empty());
    cluster.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_campaign_proclaim_leader_observe_resign() {
    let cluster = Cluster::start(1, &[]).await;
    let mut client = patient_client(&cluster, 0).await;
    let lease_a = lease(&mut client, 60).await;
    let lease_b = lease(&mut client, 60).await;

    let error = client.leader("choice").await.unwrap_err();
    assert!(error.to_string().contains("election: no leader"), "{error}");

    // An observer that starts before there is any leader sees the first one.
    let mut observe = client.observe("choice").await.unwrap();

    let campaign = client.campaign("choice", "a1", lease_a).await.unwrap();
    let leader_a = campaign.leader().unwrap().clone();
    assert_eq!(leader_a.name(), b"choice");
    assert_eq!(leader_a.key(), lock_key("choice", lease_a).as_bytes());
    assert_eq!(leader_a.lease(), lease_a);
    assert_eq!(leader_a.rev(), campaign.header().unwrap().revision());
    let leader = client.leader("choice").await.unwrap();
    assert_eq!(leader.kv().unwrap().value(), b"a1");
    assert_eq!(leader.kv().unwrap().create_revision(), leader_a.rev());

    assert_eq!(next_observed(&mut observe).await, (lock_key("choice", lease_a), "a1".into()));

    // A second candidate waits behind the leader.
    let candidate = {
        let mut client = client.clone();
        tokio::spawn(async move { client.campaign("choice", "b1", lease_b).await })
    };
    eventually("the second candidate is queued", || {
        let mut client = client.clone();
        async move { keys_under(&mut client, "choice/").await.len() == 2 }
    })
    .await;
    assert_still_waiting(&candidate, "the second Campaign").await;

    // The leader proclaims; everyone sees the new value. A stale leader key may not proclaim.
    client.proclaim("a2", Some(ProclaimOptions::new().with_leader(leader_a.clone()))).await.unwrap();
    assert_eq!(next_observed(&mut observe).await, (lock_key("choice", lease_a), "a2".into()));
    assert_eq!(client.leader("choice").await.unwrap().kv().unwrap().value(), b"a2");
    let stale = LeaderKey::new()
        .with_name("choice")
        .with_key(leader_a.key())
        .with_rev(leader_a.rev() + 1000)
        .with_lease(lease_a);
    let error = client.proclaim("forged", Some(ProclaimOptions::new().with_leader(stale))).await.unwrap_err();
    assert!(error.to_string().contains("election: not leader"), "{error}");
    assert_eq!(client.leader("choice").await.unwrap().kv().unwrap().value(), b"a2");

    // Campaigning again on the leading lease keeps the leadership and proclaims the new value.
    let again = client.campaign("choice", "a3", lease_a).await.unwrap();
    assert_eq!(again.leader().unwrap().key(), leader_a.key());
    assert_eq!(again.leader().unwrap().rev(), leader_a.rev());
    assert_eq!(next_observed(&mut observe).await, (lock_key("choice", lease_a), "a3".into()));
    assert!(!candidate.is_finished());

    // The leader resigns: the waiting candidate is elected, and the observer follows.
    client.resign(Some(ResignOptions::new().with_leader(leader_a.clone()))).await.unwrap();
    let elected = tokio::time::timeout(WAIT, candidate).await.unwrap().unwrap().unwrap();
    let leader_b = elected.leader().unwrap().clone();
    assert_eq!(leader_b.key(), lock_key("choice", lease_b).as_bytes());
    assert!(leader_b.rev() > leader_a.rev());
    assert_eq!(next_observed(&mut observe).await, (lock_key("choice", lease_b), "b1".into()));
    assert_eq!(client.leader("choice").await.unwrap().kv().unwrap().value(), b"b1");
    let error = client.proclaim("late", Some(ProclaimOptions::new().with_leader(leader_a))).await.unwrap_err();
    assert!(error.to_string().contains("election: not leader"), "{error}");

    // The leader's lease ends: leadership goes with it.
    client.lease_revoke(lease_b).await.unwrap();
    let error = client.leader("choice").await.unwrap_err();
    assert!(error.to_string().contains("election: no leader"), "{error}");
    cluster.assert_no_panics();
}

/// An etcdctl process, its standard output read line by line; killed by its PID when dropped.
struct Etcdctl {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Etcdctl {
    fn spawn(endpoint: &str, args: &[&str]) -> Etcdctl {
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", endpoint, "--command-timeout", "30s"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcdctl is installed by scripts/setup");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Etcdctl { child, lines }
    }

    fn next_line(&self) -> String {
        self.lines.recv_timeout(WAIT).expect("a line from etcdctl")
    }

    /// Nothing printed for a while.
    fn assert_silent(&self) {
        if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(700)) {
            panic!("etcdctl printed {line:?} too early");
        }
    }

    /// SIGINT by PID: etcdctl lock / elect release what they hold and exit.
    fn interrupt(&mut self) {
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + WAIT;
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "etcdctl did not exit on SIGINT");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_for_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "etcdctl did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Etcdctl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_lock_and_the_lock_service_exclude_each_other() {
    let cluster = Cluster::start(1, &[]).await;
    let endpoint = cluster.nodes[0].endpoint();
    let mut client = patient_client(&cluster, 0).await;

    // `etcdctl lock name` holds the lock and prints its key.
    let mut holder = Etcdctl::spawn(&endpoint, &["lock", "shared"]);
    let key = holder.next_line();
    assert!(key.starts_with("shared/"), "{key}");
    let etcdctl_lease = i64::from_str_radix(key.strip_prefix("shared/").unwrap(), 16).unwrap();
    let stored = client.get(key.as_str(), None).await.unwrap();
    assert_eq!(stored.kvs()[0].lease(), etcdctl_lease);

    // The Lock service queues behind it until etcdctl lets go.
    let our_lease = lease(&mut client, 60).await;
    let waiter = {
        let mut client = client.clone();
        tokio::spawn(async move { client.lock("shared", Some(LockOptions::new().with_lease(our_lease))).await })
    };
    assert_still_waiting(&waiter, "Lock while etcdctl holds the lock").await;
    holder.interrupt();
    let granted = tokio::time::timeout(WAIT, waiter).await.unwrap().unwrap().unwrap();
    assert_eq!(granted.key(), lock_key("shared", our_lease).as_bytes());

    // Now etcdctl queues behind the Lock service; its command runs only once we unlock.
    let mut queued = Etcdctl::spawn(&endpoint, &["lock", "shared", "--", "sh", "-c", "echo ran with $ETCD_LOCK_KEY"]);
    eventually("etcdctl is queued", || {
        let mut client = client.clone();
        async move { keys_under(&mut client, "shared/").await.len() == 2 }
    })
    .await;
    queued.assert_silent();
    client.unlock(granted.key()).await.unwrap();
    let line = queued.next_line();
    assert!(line.starts_with("ran with shared/") && line != "ran with shared/", "{line}");
    assert!(queued.wait_for_exit().success());
    eventually("etcdctl released the lock", || {
        let mut client = client.clone();
        async move { keys_under(&mut client, "shared/").await.is_empty() }
    })
    .await;
    cluster.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_elect_observes_and_campaigns_against_the_election_service() {
    let cluster = Cluster::start(1, &[]).await;
    let endpoint = cluster.nodes[0].endpoint();
    let mut client = patient_client(&cluster, 0).await;
    let our_lease = lease(&mut client, 60).await;

    // `etcdctl elect -l` prints the leader's key and value at every change.
    let listener = Etcdctl::spawn(&endpoint, &["elect", "-l", "pick"]);
    let campaign = client.campaign("pick", "ours-1", our_lease).await.unwrap();
    let ours = campaign.leader().unwrap().clone();
    assert_eq!(listener.next_line(), lock_key("pick", our_lease));
    assert_eq!(listener.next_line(), "ours-1");
    client.proclaim("ours-2", Some(ProclaimOptions::new().with_leader(ours.clone()))).await.unwrap();
    assert_eq!(listener.next_line(), lock_key("pick", our_lease));
    assert_eq!(listener.next_line(), "ours-2");

    // An etcdctl candidate waits while we lead, and wins when we resign.
    let mut candidate = Etcdctl::spawn(&endpoint, &["elect", "pick", "theirs"]);
    eventually("etcdctl is a candidate", || {
        let mut client = client.clone();
        async move { keys_under(&mut client, "pick/").await.len() == 2 }
    })
    .await;
    candidate.assert_silent();
    client.resign(Some(ResignOptions::new().with_leader(ours))).await.unwrap();
    let their_key = candidate.next_line();
    assert!(their_key.starts_with("pick/") && their_key != lock_key("pick", our_lease), "{their_key}");
    assert_eq!(candidate.next_line(), "theirs");
    assert_eq!(listener.next_line(), their_key);
    assert_eq!(listener.next_line(), "theirs");
    let leader = client.leader("pick").await.unwrap();
    assert_eq!(leader.kv().unwrap().key_str().unwrap(), their_key);
    assert_eq!(leader.kv().unwrap().value(), b"theirs");

    // etcdctl resigns on SIGINT: no leader is left.
    candidate.interrupt();
    eventually("etcdctl resigned", || {
        let mut client = client.clone();
        async move { client.leader("pick").await.is_err() }
    })
    .await;
    drop(listener);
    cluster.assert_no_panics();
}
