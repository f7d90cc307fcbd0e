//! Applying commands: the only place the store's state changes.
//!
//! An [`Applier`] runs one batch. Every command first passes all its checks against the state
//! before it, and only then writes, so a failed command leaves nothing behind; its writes land in
//! [`PendingWrites`], which later commands of the batch read through, and the whole batch
//! reaches the engine as one atomic write together with the new revision and applied position.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::auth::{Access, AuthState};
use crate::codec::{self, VersionRecord};
use crate::command::{
    Command, Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, LeaseInfo, PutRequest,
    PutResponse, RangeRequest, RequestOp, Response, ResponseOp, TxnRequest, TxnResponse, MAX_LEASE_TTL_SECONDS,
};
use crate::engine::{Engine, Space};
use crate::error::{Error, Result};
use crate::key_range::KeyRange;
use crate::key_value::{Change, Event, EventKind, KeyValue};
use crate::lease;
use crate::meta;
use crate::newest_versions::NewestVersions;
use crate::pending::PendingWrites;
use crate::range;
use crate::read_view::{Flow, ReadView};
use crate::revision::Revision;
use crate::txn_check;

pub struct Applier<'a> {
    engine: &'a dyn Engine,
    max_txn_ops: usize,
    pub pending: PendingWrites,
    /// The revision after the commands applied so far in this batch.
    pub revision: i64,
    pub compact_revision: i64,
    /// One entry per command that changed keys.
    pub changes: Vec<Change>,
    /// The auth state as of the commands applied so far; written back if `auth_changed`.
    pub auth: Arc<AuthState>,
    pub auth_changed: bool,
    /// The newest version of keys, as earlier batches left them.
    newest: &'a NewestVersions,
    /// The newest version of every key this batch read or wrote (`None`: it does not exist).
    /// A conditional write (every apiserver write, an etcd compare-and-swap) reads its key for
    /// the compare and again for the put: the put finds it here.
    batch_newest: RefCell<HashMap<Bytes, Option<KeyValue>>>,
    /// The main revision of the batch's latest write, 0 before any.
    written_main: i64,
}

/// The writes of one command: they all share one main revision.
struct RevisionWriter {
    main: i64,
    next_sub: i64,
    events: Vec<Event>,
}

impl RevisionWriter {
    fn wrote(&self) -> bool {
        self.next_sub > 0
    }

    fn next_revision(&mut self) -> Revision {
        let revision = Revision::new(self.main, self.next_sub);
        self.next_sub += 1;
        revision
    }
}

/// The branch a txn takes, decided before it writes, for it and each nested txn it runs.
struct TxnPlan {
    succeeded: bool,
    nested: Vec<TxnPlan>,
}

impl<'a> Applier<'a> {
    pub fn new(
        engine: &'a dyn Engine,
        max_txn_ops: usize,
        revision: i64,
        compact_revision: i64,
        auth: Arc<AuthState>,
        newest: &'a NewestVersions,
    ) -> Self {
        Applier {
            engine,
            max_txn_ops,
            pending: PendingWrites::default(),
            revision,
            compact_revision,
            changes: Vec::new(),
            auth,
            auth_changed: false,
            newest,
            batch_newest: RefCell::new(HashMap::new()),
            written_main: 0,
        }
    }

    /// Applies one command. An `Err` is the command's own failure (it wrote nothing), except
    /// [`Error::Engine`] and [`Error::Corrupt`], after which the batch must be abandoned.
    pub fn apply(&mut self, command: &Command) -> Result<Response> {
        if let Command::AsUser { user, command } = command {
            if matches!(**command, Command::AsUser { .. }) {
                return Err(Error::Corrupt { what: "a command on behalf of a user nests another".into() });
            }
            self.check_access(user.as_deref(), command)?;
            return self.apply(command);
        }
        let mut writer = RevisionWriter { main: self.revision + 1, next_sub: 0, events: Vec::new() };
        let response = match command {
            Command::Put(put) => {
                check_put_shape(put)?;
                self.check_put(put, self.revision)?;
                Response::Put(self.put(&mut writer, put)?)
            }
            Command::DeleteRange(delete) => {
                if delete.key.is_empty() {
                    return Err(Error::EmptyKey);
                }
                Response::DeleteRange(self.delete_range(&mut writer, delete)?)
            }
            Command::Txn(txn) => {
                txn_check::check_shape(txn, self.max_txn_ops)?;
                let plan = self.plan(txn)?;
                let mut response = self.txn(&mut writer, txn, &plan)?;
                response.revision = self.written_revision(&writer);
                Response::Txn(response)
            }
            Command::Compact { revision } => {
                self.compact(*revision)?;
                Response::Compact { revision: self.revision }
            }
            Command::LeaseGrant { id, ttl_seconds } => {
                self.lease_grant(*id, *ttl_seconds)?;
                Response::LeaseGrant { id: *id, ttl_seconds: *ttl_seconds, revision: self.revision }
            }
            Command::LeaseRevoke { id } => {
                self.lease_revoke(&mut writer, *id)?;
                Response::LeaseRevoke { revision: self.written_revision(&writer) }
            }
            Command::LeaseCheckpoint { id, remaining_ttl_seconds } => {
                let mut info = self.lease(*id)?.ok_or(Error::LeaseNotFound { lease_id: *id })?;
                info.remaining_ttl_seconds = *remaining_ttl_seconds;
                self.pending.put(Space::Lease, codec::lease_key(*id).to_vec(), lease::encode(&info));
                Response::LeaseCheckpoint { revision: self.revision }
            }
            Command::Auth(change) => {
                Arc::make_mut(&mut self.auth).apply(change)?;
                self.auth_changed = true;
                Response::Auth { revision: self.revision }
            }
            Command::AsUser { .. } => unreachable!("handled above"),
        };
        if writer.wrote() {
            self.revision = writer.main;
            self.changes.push(Change { revision: writer.main, events: writer.events });
        }
        Ok(response)
    }

    /// Reads the store as of `revision`, including this batch's earlier writes.
    fn read<T>(&self, revision: i64, read: impl FnOnce(&ReadView) -> Result<T>) -> Result<T> {
        let reader = self.pending.over(self.engine);
        read(&ReadView { reader: &reader, revision })
    }

    /// The revision reads inside a command see: its own writes so far, if any.
    fn visible_revision(&self, writer: &RevisionWriter) -> i64 {
        if writer.wrote() {
            writer.main
        } else {
            self.revision
        }
    }

    /// One key as of `revision`. A read that sees every write so far (the usual case) is of the
    /// key's newest version: it is taken from, or remembered in, the newest versions known.
    fn get(&self, key: &Bytes, revision: i64) -> Result<Option<KeyValue>> {
        let of_newest = revision >= self.revision && revision >= self.written_main;
        if of_newest {
            if let Some(found) = self.batch_newest.borrow().get(&key[..]) {
                return Ok(found.clone());
            }
            if let Some(found) = self.newest.get(key) {
                return Ok(found.clone());
            }
        }
        let found = self.read(revision, |view| view.get(key))?;
        if of_newest {
            self.batch_newest.borrow_mut().insert(key.clone(), found.clone());
        }
        Ok(found)
    }

    fn lease(&self, id: i64) -> Result<Option<LeaseInfo>> {
        lease::get(&self.pending.over(self.engine), id)
    }

    // ---- checks, made before any write ----

    fn check_put(&self, put: &PutRequest, revision: i64) -> Result<()> {
        if put.ignore_value || put.ignore_lease {
            let exists = self.get(&put.key, revision)?.is_some();
            if !exists {
                return Err(Error::KeyNotFound);
            }
        }
        if put.lease != 0 && self.lease(put.lease)?.is_none() {
            return Err(Error::LeaseNotFound { lease_id: put.lease });
        }
        Ok(())
    }

    fn check_range(&self, range: &RangeRequest) -> Result<()> {
        if range.revision > self.revision {
            return Err(Error::FutureRevision { current_revision: self.revision });
        }
        if range.revision > 0 && range.revision < self.compact_revision {
            return Err(Error::Compacted { compact_revision: self.compact_revision });
        }
        Ok(())
    }

    /// Decides every branch of the txn against the state before it (as etcd does, nested
    /// compares included) and checks the operations on the chosen branches.
    fn plan(&self, txn: &TxnRequest) -> Result<TxnPlan> {
        let succeeded = self.compares_hold(&txn.compare)?;
        let ops = if succeeded { &txn.success } else { &txn.failure };
        let mut nested = Vec::new();
        for op in ops {
            match op {
                RequestOp::Range(range) => self.check_range(range)?,
                RequestOp::Put(put) => self.check_put(put, self.revision)?,
                RequestOp::DeleteRange(_) => {}
                RequestOp::Txn(inner) => nested.push(self.plan(inner)?),
            }
        }
        Ok(TxnPlan { succeeded, nested })
    }

    fn compares_hold(&self, compares: &[Compare]) -> Result<bool> {
        for compare in compares {
            if !self.compare_holds(compare)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// etcd's `applyCompare`: every key in the range must satisfy the compare; a range with no
    /// key compares as a zero KeyValue, except on VALUE, which then fails.
    fn compare_holds(&self, compare: &Compare) -> Result<bool> {
        if compare.range_end.is_empty() {
            let found = self.get(&compare.key, self.revision)?;
            return Ok(match found {
                Some(found) => compare_key_value(compare, &found),
                None => {
                    !matches!(compare.target, CompareTarget::Value(_))
                        && compare_key_value(compare, &KeyValue::default())
                }
            });
        }
        let range = KeyRange::new(&compare.key, &compare.range_end);
        let mut any = false;
        let mut holds = true;
        self.read(self.revision, |view| {
            view.scan(&range, |version| {
                any = true;
                holds = compare_key_value(compare, &version.to_key_value()?);
                Ok(if holds { Flow::Continue } else { Flow::Stop })
            })
        })?;
        if any {
            return Ok(holds);
        }
        Ok(!matches!(compare.target, CompareTarget::Value(_)) && compare_key_value(compare, &KeyValue::default()))
    }

    // ---- writes ----

    fn put(&mut self, writer: &mut RevisionWriter, put: &PutRequest) -> Result<PutResponse> {
        let prev = self.get(&put.key, self.visible_revision(writer))?;
        let (value, lease) = match &prev {
            Some(prev) => (
                if put.ignore_value { prev.value.clone() } else { put.value.clone() },
                if put.ignore_lease { prev.lease } else { put.lease },
            ),
            None => (put.value.clone(), put.lease),
        };
        let revision = writer.next_revision();
        let kv = KeyValue {
            key: put.key.clone(),
            value: value.clone(),
            create_revision: prev.as_ref().map_or(revision.main, |prev| prev.create_revision),
            mod_revision: revision.main,
            version: prev.as_ref().map_or(1, |prev| prev.version + 1),
            lease,
        };
        let record = VersionRecord::Live { create_revision: kv.create_revision, version: kv.version, lease, value };
        self.write_version(&put.key, revision, &record);
        self.batch_newest.get_mut().insert(put.key.clone(), Some(kv.clone()));
        if let Some(prev) = prev.as_ref().filter(|prev| prev.lease != 0 && prev.lease != lease) {
            self.pending.delete(Space::LeaseKeys, codec::lease_keys_key(prev.lease, &put.key));
        }
        if lease != 0 {
            let (key, record) = lease::attach_record(lease, &put.key);
            self.pending.put(Space::LeaseKeys, key, record);
        }
        writer.events.push(Event { kind: EventKind::Put, kv, prev_kv: prev.clone(), sub_revision: revision.sub });
        Ok(PutResponse { prev_kv: prev.filter(|_| put.prev_kv), revision: writer.main })
    }

    fn delete_range(
        &mut self,
        writer: &mut RevisionWriter,
        delete: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse> {
        let range = KeyRange::new(&delete.key, &delete.range_end);
        let mut doomed = Vec::new();
        // As etcd, a delete reads the values it removes only when its request asks for them: a
        // prefix of a million keys is not loaded into memory to be deleted. Its events then
        // leave the previous version out; a watcher that wants it reads it back
        // (`Store::deleted_version`).
        self.read(self.visible_revision(writer), |view| {
            view.scan(&range, |version| {
                doomed.push(if delete.prev_kv {
                    version.to_key_value()?
                } else {
                    version.to_key_value_without_value()?
                });
                Ok(Flow::Continue)
            })
        })?;
        let deleted = doomed.len() as i64;
        for prev in &doomed {
            self.delete_key(writer, prev, delete.prev_kv.then(|| prev.clone()));
        }
        let prev_kvs = if delete.prev_kv { doomed } else { Vec::new() };
        Ok(DeleteRangeResponse { deleted, prev_kvs, revision: self.written_revision(writer) })
    }

    /// The revision a command's response names: its own if it wrote, else the current one.
    fn written_revision(&self, writer: &RevisionWriter) -> i64 {
        if writer.wrote() {
            writer.main
        } else {
            self.revision
        }
    }

    /// Deletes `current`'s key; `prev_kv` is what its event carries as the previous version.
    fn delete_key(&mut self, writer: &mut RevisionWriter, current: &KeyValue, prev_kv: Option<KeyValue>) {
        let revision = writer.next_revision();
        self.write_version(&current.key, revision, &VersionRecord::Tombstone);
        self.batch_newest.get_mut().insert(current.key.clone(), None);
        if current.lease != 0 {
            self.pending.delete(Space::LeaseKeys, codec::lease_keys_key(current.lease, &current.key));
        }
        let kv = KeyValue { key: current.key.clone(), mod_revision: revision.main, ..KeyValue::default() };
        writer.events.push(Event { kind: EventKind::Delete, kv, prev_kv, sub_revision: revision.sub });
    }

    /// One version in the Kv space and its entry in the History space.
    fn write_version(&mut self, key: &[u8], revision: Revision, record: &VersionRecord) {
        self.written_main = revision.main;
        let kv_key = codec::kv_key(key, revision);
        let sealed = codec::seal(Space::Kv, &kv_key, record.encode());
        self.pending.put(Space::Kv, kv_key, sealed);
        let history_key = revision.to_bytes().to_vec();
        let sealed = codec::seal(Space::History, &history_key, key.to_vec());
        self.pending.put(Space::History, history_key, sealed);
    }

    fn txn(&mut self, writer: &mut RevisionWriter, txn: &TxnRequest, plan: &TxnPlan) -> Result<TxnResponse> {
        let ops = if plan.succeeded { &txn.success } else { &txn.failure };
        let mut nested_plans = plan.nested.iter();
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match op {
                RequestOp::Range(request) => {
                    let visible = self.visible_revision(writer);
                    let at = if request.revision > 0 { request.revision } else { visible };
                    let mut response = self.read(at, |view| range::range(view, request))?;
                    response.revision = visible;
                    ResponseOp::Range(response)
                }
                RequestOp::Put(put) => ResponseOp::Put(self.put(writer, put)?),
                RequestOp::DeleteRange(delete) => ResponseOp::DeleteRange(self.delete_range(writer, delete)?),
                RequestOp::Txn(inner) => {
                    let inner_plan = nested_plans.next().expect("one plan per nested txn");
                    let mut response = self.txn(writer, inner, inner_plan)?;
                    response.revision = self.visible_revision(writer);
                    ResponseOp::Txn(response)
                }
            };
            responses.push(response);
        }
        Ok(TxnResponse { succeeded: plan.succeeded, responses, revision: 0 })
    }

    fn compact(&mut self, revision: i64) -> Result<()> {
        if revision <= self.compact_revision {
            return Err(Error::Compacted { compact_revision: self.compact_revision });
        }
        if revision > self.revision {
            return Err(Error::FutureRevision { current_revision: self.revision });
        }
        self.compact_revision = revision;
        meta::write_i64(&mut self.pending, meta::COMPACT_REVISION, revision);
        Ok(())
    }

    fn lease_grant(&mut self, id: i64, ttl_seconds: i64) -> Result<()> {
        if id <= 0 {
            return Err(Error::InvalidLeaseId { lease_id: id });
        }
        if ttl_seconds > MAX_LEASE_TTL_SECONDS {
            return Err(Error::LeaseTtlTooLarge { ttl_seconds });
        }
        if self.lease(id)?.is_some() {
            return Err(Error::LeaseExists { lease_id: id });
        }
        let info = LeaseInfo { id, ttl_seconds, remaining_ttl_seconds: 0 };
        self.pending.put(Space::Lease, codec::lease_key(id).to_vec(), lease::encode(&info));
        Ok(())
    }

    fn lease_revoke(&mut self, writer: &mut RevisionWriter, id: i64) -> Result<()> {
        if self.lease(id)?.is_none() {
            return Err(Error::LeaseNotFound { lease_id: id });
        }
        let attached = lease::keys(&self.pending.over(self.engine), id)?;
        for key in attached {
            let current = self.read(self.revision, |view| view.get(&key))?;
            match current {
                Some(kv) if kv.lease == id => self.delete_key(writer, &kv, Some(kv.clone())),
                // The index only ever names keys attached to the lease; anything else is a bug.
                other => panic!("lease {id} indexes key {} whose current version is {other:?}", codec::printable(&key)),
            }
        }
        self.pending.delete(Space::Lease, codec::lease_key(id).to_vec());
        Ok(())
    }

    /// Whether `user` may run `command`, by etcd's rules, while auth is enabled.
    fn check_access(&self, user: Option<&str>, command: &Command) -> Result<()> {
        let auth = &self.auth;
        if !auth.enabled {
            return Ok(());
        }
        match command {
            Command::Put(put) => self.check_put_access(user, put),
            Command::DeleteRange(delete) => self.check_delete_access(user, delete),
            Command::Txn(txn) => self.check_txn_access(user, txn),
            Command::LeaseRevoke { id } => self.check_lease_keys_writable(user, *id),
            Command::Auth(_) => Ok(auth.check_admin(user)?),
            // etcd checks neither: any client may compact and grant leases.
            Command::Compact { .. } | Command::LeaseGrant { .. } | Command::LeaseCheckpoint { .. } => Ok(()),
            Command::AsUser { .. } => {
                Err(Error::Corrupt { what: "a command on behalf of a user nests another".into() })
            }
        }
    }

    fn check_put_access(&self, user: Option<&str>, put: &PutRequest) -> Result<()> {
        self.auth.check(user, &put.key, &[], Access::Write)?;
        if put.prev_kv {
            self.auth.check(user, &put.key, &[], Access::Read)?;
        }
        if put.lease != 0 {
            // A lease whose keys this user could not write is one it could not revoke either,
            // so it may not attach keys to it (etcd's checkLeasePuts).
            self.check_lease_keys_writable(user, put.lease)?;
        }
        Ok(())
    }

    fn check_delete_access(&self, user: Option<&str>, delete: &DeleteRangeRequest) -> Result<()> {
        self.auth.check(user, &delete.key, &delete.range_end, Access::Write)?;
        if delete.prev_kv {
            self.auth.check(user, &delete.key, &delete.range_end, Access::Read)?;
        }
        Ok(())
    }

    fn check_txn_access(&self, user: Option<&str>, txn: &TxnRequest) -> Result<()> {
        for compare in &txn.compare {
            self.auth.check(user, &compare.key, &compare.range_end, Access::Read)?;
        }
        for op in txn.success.iter().chain(&txn.failure) {
            match op {
                RequestOp::Range(range) => self.auth.check(user, &range.key, &range.range_end, Access::Read)?,
                RequestOp::Put(put) => self.check_put_access(user, put)?,
                RequestOp::DeleteRange(delete) => self.check_delete_access(user, delete)?,
                RequestOp::Txn(nested) => self.check_txn_access(user, nested)?,
            }
        }
        Ok(())
    }

    fn check_lease_keys_writable(&self, user: Option<&str>, id: i64) -> Result<()> {
        for key in lease::keys(&self.pending.over(self.engine), id)? {
            self.auth.check(user, &key, &[], Access::Write)?;
        }
        Ok(())
    }

    /// Ends the batch: the writes plus the new revision and applied position, as one batch;
    /// the change feed; and the newest versions of the keys it read or wrote, which become
    /// true once the batch is written.
    pub fn finish(
        mut self,
        position: &[u8],
    ) -> (crate::engine::WriteBatch, Vec<Change>, HashMap<Bytes, Option<KeyValue>>) {
        if self.auth_changed {
            self.auth.write(&mut self.pending);
        }
        meta::write_i64(&mut self.pending, meta::REVISION, self.revision);
        meta::write_bytes(&mut self.pending, meta::APPLIED_POSITION, position);
        (self.pending.into_batch(), self.changes, self.batch_newest.into_inner())
    }
}

/// etcd's PutRequest checks made at the API boundary, repeated here so every caller gets them.
fn check_put_shape(put: &PutRequest) -> Result<()> {
    if put.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if put.ignore_value && !put.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if put.ignore_lease && put.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

fn compare_key_value(compare: &Compare, kv: &KeyValue) -> bool {
    let ordering = match &compare.target {
        CompareTarget::Value(value) => kv.value.as_ref().cmp(value.as_ref()),
        CompareTarget::Version(operand) => kv.version.cmp(operand),
        CompareTarget::Create(operand) => kv.create_revision.cmp(operand),
        CompareTarget::Mod(operand) => kv.mod_revision.cmp(operand),
        CompareTarget::Lease(operand) => kv.lease.cmp(operand),
    };
    match compare.result {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::NotEqual => ordering.is_ne(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
    }
}
