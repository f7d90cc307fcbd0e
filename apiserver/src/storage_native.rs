//! [`NativeStorage`]: the [`Storage`] seam over keel's own replica, in process. Writes go through
//! Raft (`raft::Member::write`), reads are served by the local store after a read barrier, and the
//! change feed is a `watch::WatchStream` with `progress_every_revision`.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use store::{
    Command, Compare, CompareResult, CompareTarget, DeleteRangeRequest, KeyRange, KeyValue, PutRequest, RangeRequest,
    RequestOp, Response, ResponseOp, TxnRequest,
};
use tokio::sync::mpsc;
use watch::{CancelReason, ResponseBody, WatchHub, WatchRequest};

use crate::storage::{Condition, FeedItem, RangePage, Storage, StorageError, StorageResult, Write};

/// Feed items buffered between the watch stream and its consumer.
const FEED_BUFFER_ITEMS: usize = 256;

#[derive(Debug, Clone)]
pub struct NativeStorage {
    member: raft::Member,
    hub: Arc<WatchHub>,
}

impl NativeStorage {
    pub fn new(member: raft::Member, hub: Arc<WatchHub>) -> NativeStorage {
        NativeStorage { member, hub }
    }

    async fn write(&self, command: Command) -> StorageResult<Response> {
        match self.member.write(command).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(store_error(error, 0)),
            Err(error) => Err(member_error(error)),
        }
    }

    /// A txn: `compare`, then `success` or a read of `key` on failure.
    async fn conditional(&self, key: &Bytes, compare: Compare, success: RequestOp) -> StorageResult<i64> {
        let failure = RequestOp::Range(RangeRequest { key: key.clone(), ..RangeRequest::default() });
        let txn = TxnRequest { compare: vec![compare], success: vec![success], failure: vec![failure] };
        let Response::Txn(response) = self.write(Command::Txn(txn)).await? else {
            return Err(StorageError::Internal("a txn answered with another response".into()));
        };
        if response.succeeded {
            return Ok(response.revision);
        }
        match response.responses.into_iter().next() {
            Some(ResponseOp::Range(range)) => match range.kvs.into_iter().next() {
                Some(current) => Err(StorageError::Conflict { current }),
                None => Err(StorageError::KeyNotFound),
            },
            _ => Err(StorageError::Internal("a failed txn did not answer its read".into())),
        }
    }

    async fn read_barrier(&self) -> StorageResult<()> {
        self.member.read_barrier().await.map_err(member_error)
    }

    async fn range_at(&self, start: Bytes, end: Bytes, revision: i64, limit: i64) -> StorageResult<RangePage> {
        let store = self.member.store().clone();
        let at = if revision > 0 { revision } else { store.revision() };
        let request = RangeRequest { key: start, range_end: end, revision: at, limit, ..RangeRequest::default() };
        // RocksDB reads block: keep them off the async workers.
        // Paged: reading on past the limit to count the rest of the range (etcd's count, which
        // the apiserver never uses) would make paging through N keys cost N²/page.
        let response = tokio::task::spawn_blocking(move || store.range_page(&request))
            .await
            .map_err(|error| StorageError::Internal(error.to_string()))?
            .map_err(|error| store_error(error, at))?;
        Ok(RangePage { kvs: response.kvs, more: response.more, revision: at })
    }
}

fn member_error(error: raft::MemberError) -> StorageError {
    match error {
        raft::MemberError::Store(error) => store_error(error, 0),
        other => StorageError::Unavailable(other.to_string()),
    }
}

fn store_error(error: store::Error, revision: i64) -> StorageError {
    match error {
        store::Error::Compacted { compact_revision } => StorageError::Compacted { revision, compact_revision },
        store::Error::KeyNotFound => StorageError::KeyNotFound,
        other => StorageError::Internal(other.to_string()),
    }
}

impl Storage for NativeStorage {
    fn get(&self, key: Bytes) -> BoxFuture<'_, StorageResult<Option<KeyValue>>> {
        async move {
            self.read_barrier().await?;
            let page = self.range_at(key, Bytes::new(), 0, 1).await?;
            Ok(page.kvs.into_iter().next())
        }
        .boxed()
    }

    fn create(&self, key: Bytes, value: Bytes) -> BoxFuture<'_, StorageResult<i64>> {
        async move {
            let compare = Compare {
                result: CompareResult::Equal,
                target: CompareTarget::Create(0),
                key: key.clone(),
                range_end: Bytes::new(),
            };
            let put = RequestOp::Put(PutRequest { key: key.clone(), value, ..PutRequest::default() });
            match self.conditional(&key, compare, put).await {
                Err(StorageError::Conflict { .. }) => Err(StorageError::KeyExists),
                other => other,
            }
        }
        .boxed()
    }

    fn update(&self, key: Bytes, value: Bytes, expected_mod_revision: i64) -> BoxFuture<'_, StorageResult<i64>> {
        async move {
            let compare = mod_revision_is(&key, expected_mod_revision);
            let put = RequestOp::Put(PutRequest { key: key.clone(), value, ..PutRequest::default() });
            self.conditional(&key, compare, put).await
        }
        .boxed()
    }

    fn delete(&self, key: Bytes, expected_mod_revision: i64) -> BoxFuture<'_, StorageResult<i64>> {
        async move {
            let compare = mod_revision_is(&key, expected_mod_revision);
            let delete =
                RequestOp::DeleteRange(DeleteRangeRequest { key: key.clone(), ..DeleteRangeRequest::default() });
            self.conditional(&key, compare, delete).await
        }
        .boxed()
    }

    fn commit(&self, conditions: Vec<Condition>, writes: Vec<Write>) -> BoxFuture<'_, StorageResult<i64>> {
        async move {
            let compare = conditions
                .iter()
                .map(|condition| match condition {
                    Condition::Absent(key) => Compare {
                        result: CompareResult::Equal,
                        target: CompareTarget::Create(0),
                        key: key.clone(),
                        range_end: Bytes::new(),
                    },
                    Condition::ModRevision(key, revision) => mod_revision_is(key, *revision),
                })
                .collect();
            let success = writes
                .into_iter()
                .map(|write| match write {
                    Write::Put(key, value) => RequestOp::Put(PutRequest { key, value, ..PutRequest::default() }),
                    Write::Delete(key) => {
                        RequestOp::DeleteRange(DeleteRangeRequest { key, ..DeleteRangeRequest::default() })
                    }
                    Write::DeleteIfValue(key, value) => RequestOp::Txn(TxnRequest {
                        compare: vec![Compare {
                            result: CompareResult::Equal,
                            target: CompareTarget::Value(value),
                            key: key.clone(),
                            range_end: Bytes::new(),
                        }],
                        success: vec![RequestOp::DeleteRange(DeleteRangeRequest {
                            key,
                            ..DeleteRangeRequest::default()
                        })],
                        failure: Vec::new(),
                    }),
                })
                .collect();
            // On failure, the txn reads back every compared key, so the caller learns which
            // condition failed without another round trip (and at the revision that failed it).
            let failure = conditions
                .iter()
                .map(|condition| {
                    RequestOp::Range(RangeRequest { key: condition.key().clone(), ..RangeRequest::default() })
                })
                .collect();
            let Response::Txn(response) = self.write(Command::Txn(TxnRequest { compare, success, failure })).await?
            else {
                return Err(StorageError::Internal("a txn answered with another response".into()));
            };
            if response.succeeded {
                return Ok(response.revision);
            }
            let mut current = Vec::with_capacity(conditions.len());
            for answer in response.responses {
                match answer {
                    ResponseOp::Range(range) => current.push(range.kvs.into_iter().next()),
                    _ => return Err(StorageError::Internal("a failed txn did not answer its reads".into())),
                }
            }
            if current.len() != conditions.len() {
                return Err(StorageError::Internal("a failed txn answered the wrong number of reads".into()));
            }
            Err(StorageError::ConditionsFailed { current })
        }
        .boxed()
    }

    fn range(&self, start: Bytes, end: Bytes, revision: i64, limit: i64) -> BoxFuture<'_, StorageResult<RangePage>> {
        async move {
            if revision == 0 {
                self.read_barrier().await?;
            }
            self.range_at(start, end, revision, limit).await
        }
        .boxed()
    }

    fn current_revision(&self) -> BoxFuture<'_, StorageResult<i64>> {
        async move {
            self.read_barrier().await?;
            Ok(self.member.store().revision())
        }
        .boxed()
    }

    fn known_compact_revision(&self) -> Option<i64> {
        Some(self.member.store().compact_revision())
    }

    fn compact(&self, revision: i64) -> BoxFuture<'_, StorageResult<()>> {
        async move {
            self.write(Command::Compact { revision }).await?;
            Ok(())
        }
        .boxed()
    }

    fn progress_at_every_revision(&self) -> bool {
        true
    }

    fn watch(
        &self,
        start: Bytes,
        end: Bytes,
        start_revision: i64,
    ) -> BoxFuture<'_, StorageResult<mpsc::Receiver<FeedItem>>> {
        async move {
            let mut stream = self.hub.open_stream();
            let mut request = WatchRequest::new(KeyRange::new(&start, &end));
            request.start_revision = start_revision;
            request.prev_kv = true;
            request.progress_every_revision = true;
            stream.watch(None, request).await.map_err(|error| StorageError::Internal(error.to_string()))?;
            let (sender, receiver) = mpsc::channel(FEED_BUFFER_ITEMS);
            tokio::spawn(async move {
                while let Some(response) = stream.recv().await {
                    let item = match response.body {
                        ResponseBody::Created => continue,
                        ResponseBody::Events(events) => FeedItem::Changes { events, revision: response.revision },
                        ResponseBody::Progress => FeedItem::Changes { events: Vec::new(), revision: response.revision },
                        ResponseBody::Canceled(CancelReason::Compacted { compact_revision }) => {
                            let _ = sender.send(FeedItem::Compacted { compact_revision }).await;
                            return;
                        }
                        ResponseBody::Canceled(CancelReason::Requested) => return,
                    };
                    if sender.send(item).await.is_err() {
                        return;
                    }
                }
            });
            Ok(receiver)
        }
        .boxed()
    }
}

/// The compare of an optimistic-concurrency write: the key is still at `mod_revision`.
fn mod_revision_is(key: &Bytes, mod_revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal,
        target: CompareTarget::Mod(mod_revision),
        key: key.clone(),
        range_end: Bytes::new(),
    }
}
