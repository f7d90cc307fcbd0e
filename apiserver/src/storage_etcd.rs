//! [`EtcdStorage`]: the [`Storage`] seam over an external etcd v3 (`--etcd-servers`), with
//! kube-apiserver's etcd3 semantics: create is a txn on `create_revision == 0`, update and delete
//! are guarded on `mod_revision`, a commit is one txn, reads are linearizable ranges (at a
//! revision when asked), compaction is etcd's Compact, and the change feed is a watch with
//! `prev_kv` and periodic progress notifications. What that feed reports, and why it is not
//! "progress at every revision", is in [`crate::storage::FeedItem`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::proto::PbKeyValue;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, TlsOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use futures::future::BoxFuture;
use futures::FutureExt;
use store::{Event, EventKind, KeyValue};
use tokio::sync::mpsc;

use crate::storage::{Condition, FeedItem, RangePage, Storage, StorageError, StorageResult, Write};

/// Feed items buffered between the etcd watch and its consumer.
const FEED_BUFFER_ITEMS: usize = 256;
/// A unary call that has not answered by then fails as unavailable (kube-apiserver's etcd
/// request timeout is of this order; etcd itself gives up on a proposal after ~7 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// gRPC keepalive, so a dead etcd ends the watch streams instead of leaving them silent.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response accepted: a range page of big objects can exceed gRPC's 4 MiB default
/// (kube-apiserver accepts up to 2 GiB too).
const MESSAGE_BYTES_MAX: usize = i32::MAX as usize;
/// mvccpb.Event.EventType's DELETE (PUT is 0).
const EVENT_TYPE_DELETE: i32 = 1;

#[derive(Clone)]
pub struct EtcdStorage {
    client: Client,
    servers: String,
}

/// TLS to etcd, from kube-apiserver's flags: `--etcd-cafile` (the CA that signed etcd's
/// serving certificate), and `--etcd-certfile` with `--etcd-keyfile` (the client certificate,
/// for an etcd run with `--client-cert-auth`). PEM files.
#[derive(Debug, Clone, Default)]
pub struct EtcdTls {
    pub ca_file: PathBuf,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl EtcdTls {
    fn options(&self) -> StorageResult<TlsOptions> {
        let read = |flag: &str, path: &Path| {
            std::fs::read(path).map_err(|error| StorageError::Internal(format!("{flag}={}: {error}", path.display())))
        };
        let ca = read("--etcd-cafile", &self.ca_file)?;
        let options = TlsOptions::new().ca_certificate(Certificate::from_pem(ca));
        match (&self.cert_file, &self.key_file) {
            (None, None) => Ok(options),
            (Some(cert), Some(key)) => {
                let identity = Identity::from_pem(read("--etcd-certfile", cert)?, read("--etcd-keyfile", key)?);
                Ok(options.identity(identity))
            }
            _ => Err(StorageError::Internal("--etcd-certfile and --etcd-keyfile go together".into())),
        }
    }
}

impl std::fmt::Debug for EtcdStorage {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("EtcdStorage").field("servers", &self.servers).finish()
    }
}

impl EtcdStorage {
    /// Connects to `servers`, a comma-separated list of `http://` or `https://` URLs
    /// (kube-apiserver's `--etcd-servers`), and checks that etcd answers. `https://` needs `tls`.
    pub async fn connect(servers: &str, tls: Option<&EtcdTls>) -> StorageResult<EtcdStorage> {
        let endpoints: Vec<&str> = servers.split(',').map(str::trim).filter(|url| !url.is_empty()).collect();
        if endpoints.is_empty() {
            return Err(StorageError::Internal("--etcd-servers: no URL given".into()));
        }
        let secure = endpoints.iter().filter(|url| url.starts_with("https://")).count();
        if let Some(url) = endpoints.iter().find(|url| !url.starts_with("http://") && !url.starts_with("https://")) {
            return Err(StorageError::Internal(format!("--etcd-servers: {url}: not an http:// or https:// URL")));
        }
        if secure != 0 && secure != endpoints.len() {
            return Err(StorageError::Internal("--etcd-servers: mixes http:// and https:// URLs".into()));
        }
        let tls = match (secure > 0, tls) {
            (true, Some(tls)) => Some(tls.options()?),
            (true, None) => {
                return Err(StorageError::Internal(
                    "--etcd-servers: https:// URLs need --etcd-cafile (the CA that signed etcd's certificate)".into(),
                ))
            }
            (false, Some(_)) => {
                return Err(StorageError::Internal(
                    "--etcd-cafile, --etcd-certfile and --etcd-keyfile need https:// --etcd-servers".into(),
                ))
            }
            (false, None) => None,
        };
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
            .with_keep_alive_while_idle(true)
            // As kube-apiserver: a member cut off from its leader refuses instead of serving.
            .with_require_leader(true);
        let options = match tls {
            Some(tls) => options.with_tls(tls),
            None => options,
        };
        let client = Client::connect(&endpoints, Some(options)).await.map_err(|error| etcd_error(error, 0))?;
        let storage = EtcdStorage { client, servers: servers.to_string() };
        storage.current_revision().await?;
        Ok(storage)
    }

    async fn txn(&self, txn: Txn) -> StorageResult<etcd_client::TxnResponse> {
        let mut kv = self.client.kv_client().max_decoding_message_size(MESSAGE_BYTES_MAX);
        within_timeout(kv.txn(txn)).await.map_err(|error| etcd_error(error, 0))
    }

    /// A txn: `compare`, then `success`, or a read of `key` on failure.
    async fn conditional(&self, key: &Bytes, compare: Compare, success: TxnOp) -> StorageResult<i64> {
        let txn = Txn::new().when([compare]).and_then([success]).or_else([TxnOp::get(key.to_vec(), None)]);
        let response = self.txn(txn).await?;
        if response.succeeded() {
            return Ok(header_revision(response.header()));
        }
        match response.op_responses().into_iter().next() {
            Some(TxnOpResponse::Get(mut read)) => match read.take_kvs().into_iter().next() {
                Some(current) => Err(StorageError::Conflict { current: key_value(current) }),
                None => Err(StorageError::KeyNotFound),
            },
            _ => Err(StorageError::Internal("a failed txn did not answer its read".into())),
        }
    }
}

/// Runs one unary call under [`REQUEST_TIMEOUT`].
async fn within_timeout<T>(
    call: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, etcd_client::Error> {
    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
        Ok(result) => result,
        Err(_) => Err(etcd_client::Error::GRpcStatus(tonic_status_deadline())),
    }
}

fn tonic_status_deadline() -> tonic::Status {
    tonic::Status::deadline_exceeded(format!("etcd did not answer within {REQUEST_TIMEOUT:?}"))
}

/// etcd's errors as the apiserver's: unreachable or leaderless is Unavailable (try again), a
/// read below the compact revision is Compacted (its compact revision is not in etcd's answer:
/// 0 here).
fn etcd_error(error: etcd_client::Error, revision: i64) -> StorageError {
    use tonic::Code;
    match error {
        etcd_client::Error::GRpcStatus(status) => match status.code() {
            Code::OutOfRange if status.message().contains("compacted") => {
                StorageError::Compacted { revision, compact_revision: 0 }
            }
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown | Code::Aborted => {
                StorageError::Unavailable(format!("etcd: {}", status.message()))
            }
            _ => StorageError::Internal(format!("etcd: {:?}: {}", status.code(), status.message())),
        },
        etcd_client::Error::TransportError(error) => StorageError::Unavailable(format!("etcd: {error}")),
        etcd_client::Error::IoError(error) => StorageError::Unavailable(format!("etcd: {error}")),
        etcd_client::Error::WatchError(error) => StorageError::Unavailable(format!("etcd watch: {error}")),
        other => StorageError::Internal(format!("etcd: {other}")),
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.map_or(0, |header| header.revision())
}

/// etcd's key-value as the store's, without copying key or value.
fn key_value(kv: etcd_client::KeyValue) -> KeyValue {
    from_proto(kv.0)
}

fn from_proto(kv: PbKeyValue) -> KeyValue {
    KeyValue {
        key: Bytes::from(kv.key),
        value: Bytes::from(kv.value),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    }
}

fn compare(condition: &Condition) -> Compare {
    match condition {
        Condition::Absent(key) => Compare::create_revision(key.to_vec(), CompareOp::Equal, 0),
        Condition::ModRevision(key, revision) => Compare::mod_revision(key.to_vec(), CompareOp::Equal, *revision),
    }
}

impl Storage for EtcdStorage {
    fn get(&self, key: Bytes) -> BoxFuture<'_, StorageResult<Option<KeyValue>>> {
        async move {
            let page = self.range(key, Bytes::new(), 0, 1).await?;
            Ok(page.kvs.into_iter().next())
        }
        .boxed()
    }

    fn create(&self, key: Bytes, value: Bytes) -> BoxFuture<'_, StorageResult<i64>> {
        async move {
            let compare = Compare::create_revision(key.to_vec(), CompareOp::Equal, 0);
            let put = TxnOp::put(key.to_vec(), value.to_vec(), None);
            match self.conditional(&key, compare, put).await {
                Err(StorageError::Conflict { .. }) => Err(StorageError::KeyExists),
                other => other,
            }
        }
        .boxed()
    }

    fn update(&self, key: Bytes, value: Bytes, expected_mod_revision: i64) -> BoxFuture<'_, StorageResult<i64>> {
        async move {
            let compare = Compare::mod_revision(key.to_vec(), CompareOp::Equal, expected_mod_revision);
            self.conditional(&key, compare, TxnOp::put(key.to_vec(), value.to_vec(), None)).await
        }
        .boxed()
    }

    fn delete(&self, key: Bytes, expected_mod_revision: i64) -> BoxFuture<'_, StorageResult<i64>> {
        async move {
            let compare = Compare::mod_revision(key.to_vec(), CompareOp::Equal, expected_mod_revision);
            self.conditional(&key, compare, TxnOp::delete(key.to_vec(), None)).await
        }
        .boxed()
    }

    fn commit(&self, conditions: Vec<Condition>, writes: Vec<Write>) -> BoxFuture<'_, StorageResult<i64>> {
        async move {
            let compares: Vec<Compare> = conditions.iter().map(compare).collect();
            let success: Vec<TxnOp> = writes
                .into_iter()
                .map(|write| match write {
                    Write::Put(key, value) => TxnOp::put(key.to_vec(), value.to_vec(), None),
                    Write::Delete(key) => TxnOp::delete(key.to_vec(), None),
                    Write::DeleteIfValue(key, value) => TxnOp::txn(
                        Txn::new()
                            .when([Compare::value(key.to_vec(), CompareOp::Equal, value.to_vec())])
                            .and_then([TxnOp::delete(key.to_vec(), None)]),
                    ),
                })
                .collect();
            // On failure the txn reads back every compared key, so the caller learns which
            // condition failed without another round trip.
            let failure: Vec<TxnOp> =
                conditions.iter().map(|condition| TxnOp::get(condition.key().to_vec(), None)).collect();
            let response = self.txn(Txn::new().when(compares).and_then(success).or_else(failure)).await?;
            if response.succeeded() {
                return Ok(header_revision(response.header()));
            }
            let mut current = Vec::with_capacity(conditions.len());
            for answer in response.op_responses() {
                match answer {
                    TxnOpResponse::Get(mut read) => current.push(read.take_kvs().into_iter().next().map(key_value)),
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
            let mut options = GetOptions::new().with_limit(limit).with_revision(revision);
            if !end.is_empty() {
                options = options.with_range(end.to_vec());
            }
            let mut kv = self.client.kv_client().max_decoding_message_size(MESSAGE_BYTES_MAX);
            let mut response = within_timeout(kv.get(start.to_vec(), Some(options)))
                .await
                .map_err(|error| etcd_error(error, revision))?;
            // etcd's header carries its current revision, not the one read at.
            let at = if revision > 0 { revision } else { header_revision(response.header()) };
            let more = response.more();
            let kvs = response.take_kvs().into_iter().map(key_value).collect();
            Ok(RangePage { kvs, more, revision: at })
        }
        .boxed()
    }

    fn current_revision(&self) -> BoxFuture<'_, StorageResult<i64>> {
        async move {
            // A linearizable read of one key that counts instead of returning: its header carries
            // the revision (kube-apiserver reads the current resource version the same way).
            let mut kv = self.client.kv_client();
            let response = within_timeout(kv.get("/", Some(GetOptions::new().with_count_only())))
                .await
                .map_err(|error| etcd_error(error, 0))?;
            Ok(header_revision(response.header()))
        }
        .boxed()
    }

    fn compact(&self, revision: i64) -> BoxFuture<'_, StorageResult<()>> {
        async move {
            let mut kv = self.client.kv_client();
            within_timeout(kv.compact(revision, None)).await.map_err(|error| etcd_error(error, revision))?;
            Ok(())
        }
        .boxed()
    }

    fn progress_at_every_revision(&self) -> bool {
        false
    }

    fn watch(
        &self,
        start: Bytes,
        end: Bytes,
        start_revision: i64,
    ) -> BoxFuture<'_, StorageResult<mpsc::Receiver<FeedItem>>> {
        async move {
            let mut options =
                WatchOptions::new().with_start_revision(start_revision).with_prev_key().with_progress_notify();
            if !end.is_empty() {
                options = options.with_range(end.to_vec());
            }
            let mut client = self.client.watch_client().max_decoding_message_size(MESSAGE_BYTES_MAX);
            let stream = within_timeout(client.watch(start.to_vec(), Some(options)))
                .await
                .map_err(|error| etcd_error(error, start_revision))?;
            let (sender, receiver) = mpsc::channel(FEED_BUFFER_ITEMS);
            tokio::spawn(forward(stream, sender));
            Ok(receiver)
        }
        .boxed()
    }
}

/// Turns one etcd watch into feed items until etcd cancels it, the stream breaks, or the
/// consumer leaves (dropping the stream cancels the watch).
async fn forward(mut stream: etcd_client::WatchStream, sender: mpsc::Sender<FeedItem>) {
    loop {
        let response = match stream.message().await {
            Ok(Some(response)) => response,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "the etcd watch broke; the consumer lists again");
                return;
            }
        };
        if response.canceled() {
            if response.compact_revision() > 0 {
                let _ = sender.send(FeedItem::Compacted { compact_revision: response.compact_revision() }).await;
            } else {
                tracing::warn!(reason = response.cancel_reason(), "etcd canceled the watch");
            }
            return;
        }
        if response.created() && response.events().is_empty() {
            continue;
        }
        let item = if response.events().is_empty() {
            // A periodic progress notification: etcd sends it only to a synced watcher, after
            // every event up to its revision (never a *requested* progress, see FeedItem).
            FeedItem::Changes { events: Vec::new(), revision: header_revision(response.header()) }
        } else {
            let mut response = response;
            let events: Vec<Event> = std::mem::take(&mut response.0.events)
                .into_iter()
                .enumerate()
                .map(|(index, event)| {
                    let kind = if event.r#type == EVENT_TYPE_DELETE { EventKind::Delete } else { EventKind::Put };
                    Event {
                        kind,
                        kv: event.kv.map(from_proto).unwrap_or_default(),
                        prev_kv: event.prev_kv.map(from_proto),
                        // etcd does not send it; the order within the response is the order.
                        sub_revision: index as i64,
                    }
                })
                .collect();
            // Not the header's revision: it can be ahead of the events while etcd catches the
            // watcher up. Events of one revision always come in one response.
            let revision = events.last().map_or(0, |event| event.kv.mod_revision);
            FeedItem::Changes { events, revision }
        };
        if sender.send(item).await.is_err() {
            return;
        }
    }
}
