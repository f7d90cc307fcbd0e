//! What the Lock and Election services share: etcd's `clientv3/concurrency` recipe (which
//! etcd's own v3lock and v3election servers run over an in-process client), done here over the
//! member directly.
//!
//! A contender writes an *ownership key* `name/<lease id in hex>` attached to its lease, in a
//! txn that creates it only if absent. The oldest key under `name/` (smallest create revision)
//! holds the lock or leads the election; every other contender waits until no key older than
//! its own is left. Waiting sleeps on the member's watch hub (one watcher on the prefix, woken
//! by deletes), never by polling. A lease that ends deletes its keys through the log, which is
//! how a crashed holder lets the next one in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use store::{
    Command, Compare, CompareResult, CompareTarget, DeleteRangeRequest, KeyRange, KeyValue, PutRequest, RangeRequest,
    RangeResponse, RequestOp, Response, ResponseOp, SortOrder, SortTarget, TxnRequest, TxnResponse,
};
use tonic::Status;
use watch::{ResponseBody, WatchRequest, WatchStream};

use crate::{status, Context};

/// TTL of the lease a Lock or Campaign that names none gets (etcd's concurrency
/// `defaultSessionTTL`). As in etcd, nothing keeps that lease alive: it only bounds how long
/// the lock or leadership can outlive its caller.
pub const SESSION_TTL_SECONDS: i64 = 60;

/// Fresh lease ids tried before giving up; two only collide by accident.
const LEASE_ID_ATTEMPTS: usize = 8;

// etcd's servers return the concurrency package's errors as they are, so clients see gRPC code
// UNKNOWN with these messages.

/// Under auth, the lock and election services act with their caller's rights, as etcd's (which
/// call the KV API with the caller's token): `write` also needs writing the name's keys.
pub fn check_name_access(
    context: &Context,
    metadata: &tonic::metadata::MetadataMap,
    name: &[u8],
    write: bool,
) -> Result<(), Status> {
    let caller = context.caller(metadata)?;
    let auth = context.auth();
    let prefix = prefix(name);
    let end = store::prefix_end(&prefix).unwrap_or_else(|| vec![0]);
    caller.check_read(&auth, &prefix, &end)?;
    if write {
        caller.check_write(&auth, &prefix, &end)?;
    }
    Ok(())
}

/// Under auth, deleting a lock's or leader's key needs writing it.
pub fn check_key_write(context: &Context, metadata: &tonic::metadata::MetadataMap, key: &[u8]) -> Result<(), Status> {
    context.caller(metadata)?.check_write(&context.auth(), key, &[])
}

pub fn not_leader() -> Status {
    Status::unknown("election: not leader")
}

pub fn no_leader() -> Status {
    Status::unknown("election: no leader")
}

pub fn session_expired() -> Status {
    Status::unknown("mutex: session is expired")
}

pub fn missing_leader_key() -> Status {
    Status::unknown("\"leader\" field must be provided")
}

/// The keys of lock or election `name` all start with `name/`.
pub fn prefix(name: &[u8]) -> Bytes {
    let mut prefix = Vec::with_capacity(name.len() + 1);
    prefix.extend_from_slice(name);
    prefix.push(b'/');
    prefix.into()
}

/// A contender's key: the prefix and its lease id in lower-case hex (Go's `%x` of an int64).
pub fn ownership_key(prefix: &[u8], lease: i64) -> Bytes {
    let id = if lease < 0 { format!("-{:x}", lease.unsigned_abs()) } else { format!("{lease:x}") };
    let mut key = prefix.to_vec();
    key.extend_from_slice(id.as_bytes());
    key.into()
}

fn prefix_request(prefix: &[u8]) -> RangeRequest {
    let range_end = store::prefix_end(prefix).unwrap_or_else(|| vec![0]);
    RangeRequest { key: Bytes::copy_from_slice(prefix), range_end: range_end.into(), ..RangeRequest::default() }
}

/// The oldest key under the prefix: the holder or leader (etcd's `WithFirstCreate`).
pub fn first_created(prefix: &[u8]) -> RangeRequest {
    RangeRequest { sort_order: SortOrder::Ascend, sort_target: SortTarget::Create, limit: 1, ..prefix_request(prefix) }
}

/// The youngest key under the prefix created at or before `max_create_revision` (etcd's
/// `WithLastCreate` with `WithMaxCreateRev`): the contender just ahead.
fn last_created_at_most(prefix: &[u8], max_create_revision: i64) -> RangeRequest {
    RangeRequest {
        sort_order: SortOrder::Descend,
        sort_target: SortTarget::Create,
        limit: 1,
        max_create_revision,
        ..prefix_request(prefix)
    }
}

pub fn get(key: &Bytes) -> RangeRequest {
    RangeRequest { key: key.clone(), ..RangeRequest::default() }
}

pub fn put(key: &Bytes, value: Bytes, lease: i64) -> RequestOp {
    RequestOp::Put(PutRequest { key: key.clone(), value, lease, ..PutRequest::default() })
}

pub fn delete(key: &Bytes) -> RequestOp {
    RequestOp::DeleteRange(DeleteRangeRequest { key: key.clone(), ..DeleteRangeRequest::default() })
}

/// `create_revision(key) == revision`; 0 means "the key does not exist".
pub fn created_at(key: &Bytes, revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal,
        target: CompareTarget::Create(revision),
        key: key.clone(),
        range_end: Bytes::new(),
    }
}

/// Deletes `key` only if it is still the incarnation created at `revision`.
pub fn delete_if_created_at(key: &Bytes, revision: i64) -> TxnRequest {
    TxnRequest { compare: vec![created_at(key, revision)], success: vec![delete(key)], failure: vec![] }
}

/// The versions the `index`th op of a txn's taken branch read (empty if it was not a range).
pub fn range_kvs(response: &TxnResponse, index: usize) -> &[KeyValue] {
    match response.responses.get(index) {
        Some(ResponseOp::Range(range)) => &range.kvs,
        _ => &[],
    }
}

pub async fn write(context: &Context, command: Command) -> Result<Response, Status> {
    context.member.write(command).await.map_err(status::from_member)?.map_err(status::from_store)
}

pub async fn txn(context: &Context, txn: TxnRequest) -> Result<TxnResponse, Status> {
    match write(context, Command::Txn(txn)).await? {
        Response::Txn(response) => Ok(response),
        other => Err(Status::internal(format!("txn answered {other:?}"))),
    }
}

/// A linearizable read: the member's read barrier, then the local store.
pub async fn read(context: &Context, request: &RangeRequest) -> Result<RangeResponse, Status> {
    context.member.read_barrier().await.map_err(status::from_member)?;
    context.member.store().range(request).map_err(status::from_store)
}

fn fresh_lease_id() -> i64 {
    static NEXT: OnceLock<AtomicU64> = OnceLock::new();
    let next = NEXT.get_or_init(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        // Apart from the Lease service's ids (the clock shifted left by 16) by construction.
        AtomicU64::new(now.rotate_left(40) | 1)
    });
    ((next.fetch_add(1, Ordering::Relaxed) & (i64::MAX as u64)) as i64).max(1)
}

/// The lease a contender's key is attached to: the caller's, or, when it names none (0), a new
/// one of [`SESSION_TTL_SECONDS`], as etcd's servers open a concurrency session with a fresh
/// lease. A lease that does not exist is refused later, by the put (etcd's "requested lease
/// not found").
pub async fn session_lease(context: &Context, lease: i64) -> Result<i64, Status> {
    if lease != 0 {
        return Ok(lease);
    }
    let ttl = SESSION_TTL_SECONDS.max(context.member.min_lease_ttl_seconds());
    for _attempt in 0..LEASE_ID_ATTEMPTS {
        let id = fresh_lease_id();
        match context.member.lease_grant(id, ttl).await.map_err(status::from_member)? {
            Ok(_) => return Ok(id),
            Err(store::Error::LeaseExists { .. }) => continue,
            Err(error) => return Err(status::from_store(error)),
        }
    }
    Err(status::from_store(store::Error::LeaseExists { lease_id: 0 }))
}

/// How a wait for one's turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// No key older than the contender's is left, and its own still stands, as of this
    /// revision.
    Reached { revision: i64 },
    /// The contender's own key was deleted while it waited: its lease ended, or someone deleted
    /// the key. etcd's Mutex notices this only once its predecessors are gone; this notices at
    /// once.
    KeyLost,
}

/// Waits until no key under `prefix` older than `own` (created at `own_revision`) is left:
/// reads the contender just ahead (linearizably), then sleeps on the watch hub until it or
/// `own` is deleted, and reads again. Keys older than `own` cannot appear later (create
/// revisions only grow), so once none is left the turn has come.
pub async fn wait_for_turn(context: &Context, prefix: &Bytes, own: &Bytes, own_revision: i64) -> Result<Turn, Status> {
    // One watcher for the whole wait, on deletes under the prefix from just after the first
    // read: every delete after any later read reaches it too.
    let mut watcher: Option<WatchStream> = None;
    loop {
        context.member.read_barrier().await.map_err(status::from_member)?;
        let store = context.member.store();
        let ahead = if own_revision > 1 {
            store.range(&last_created_at_most(prefix, own_revision - 1)).map_err(status::from_store)?
        } else {
            RangeResponse::default()
        };
        let mine = store.range(&get(own)).map_err(status::from_store)?;
        if mine.kvs.first().is_none_or(|kv| kv.create_revision != own_revision) {
            return Ok(Turn::KeyLost);
        }
        let Some(ahead_key) = ahead.kvs.first().map(|kv| kv.key.clone()) else {
            return Ok(Turn::Reached { revision: mine.revision });
        };
        let stream = match &mut watcher {
            Some(stream) => stream,
            None => {
                let mut stream = context.hub.open_stream();
                let request = WatchRequest {
                    start_revision: ahead.revision + 1,
                    filter_puts: true,
                    ..WatchRequest::new(KeyRange::prefix(prefix))
                };
                stream
                    .watch(None, request)
                    .await
                    .map_err(|error| Status::unavailable(format!("etcdserver: {error}")))?;
                watcher.insert(stream)
            }
        };
        let mut restart_watcher = false;
        loop {
            let Some(response) = stream.recv().await else {
                return Err(Status::unavailable("etcdserver: watch hub is closed"));
            };
            match response.body {
                ResponseBody::Events(events) => {
                    if events.iter().any(|event| event.kv.key == ahead_key || event.kv.key == own) {
                        break;
                    }
                }
                // Compaction passed the watcher's start: read again and watch from there.
                ResponseBody::Canceled(_) => {
                    restart_watcher = true;
                    break;
                }
                ResponseBody::Created | ResponseBody::Progress => {}
            }
        }
        if restart_watcher {
            watcher = None;
        }
    }
}

/// Deletes a contender's key when dropped armed: a Lock or Campaign that fails or is abandoned
/// while it waits (the client cancelled, or its deadline passed, and tonic dropped the call)
/// must not stay queued, or it would hold up every later contender until its lease ends. etcd
/// does the same (Mutex.Lock unlocks, Election.Campaign resigns on a cancelled context).
#[derive(Debug)]
pub struct Withdrawal {
    context: Option<Arc<Context>>,
    key: Bytes,
    create_revision: i64,
}

impl Withdrawal {
    pub fn arm(context: Arc<Context>, key: Bytes, create_revision: i64) -> Self {
        Withdrawal { context: Some(context), key, create_revision }
    }

    /// The contender got its turn, or its key is gone anyway: nothing to withdraw.
    pub fn disarm(mut self) {
        self.context = None;
    }
}

impl Drop for Withdrawal {
    fn drop(&mut self) {
        let Some(context) = self.context.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let txn = delete_if_created_at(&self.key, self.create_revision);
        runtime.spawn(async move {
            if let Err(error) = write(&context, Command::Txn(txn)).await {
                tracing::warn!(%error, "withdrawing an abandoned lock or campaign key");
            }
        });
    }
}
