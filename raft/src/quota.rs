//! The storage quota (etcd's `--quota-backend-bytes`) and its NOSPACE alarm, kept by the
//! leader: a write that would grow the store past the quota is refused with etcd's "database
//! space exceeded" and raises the alarm; while it is raised, writes that add data (puts, txns
//! with puts, lease grants) are refused, and deletes, compactions and reads go on. Disarming
//! (`etcdctl alarm disarm`) lowers it once compaction has freed space; a write still over the
//! quota raises it again.

use std::sync::atomic::{AtomicBool, Ordering};

use store::{Command, RequestOp, TxnRequest};

#[derive(Debug, Default)]
pub(crate) struct Quota {
    /// 0: no quota.
    bytes: u64,
    no_space: AtomicBool,
}

impl Quota {
    pub(crate) fn new(bytes: u64) -> Self {
        Quota { bytes, no_space: AtomicBool::new(false) }
    }

    /// Whether `command` may be proposed on a store of `size()` bytes; raises the alarm if not.
    /// The size is asked for only when there is a quota (reading it is not free).
    pub(crate) fn admits(&self, command: &Command, size: impl FnOnce() -> u64) -> bool {
        if self.bytes == 0 {
            return true;
        }
        let Some(added) = added_bytes(command) else { return true };
        if self.no_space.load(Ordering::Acquire) || size() + added > self.bytes {
            self.no_space.store(true, Ordering::Release);
            return false;
        }
        true
    }

    pub(crate) fn alarmed(&self) -> bool {
        self.no_space.load(Ordering::Acquire)
    }

    pub(crate) fn disarm(&self) {
        self.no_space.store(false, Ordering::Release);
    }
}

/// What a command adds to the store, or None if it adds nothing (deletes, compaction, reads).
fn added_bytes(command: &Command) -> Option<u64> {
    match command {
        Command::Put(put) => Some((put.key.len() + put.value.len()) as u64),
        Command::Txn(txn) => txn_put_bytes(txn),
        Command::LeaseGrant { .. } => Some(0),
        Command::AsUser { command, .. } => added_bytes(command),
        _ => None,
    }
}

fn txn_put_bytes(txn: &TxnRequest) -> Option<u64> {
    let mut total = None;
    for op in txn.success.iter().chain(&txn.failure) {
        let added = match op {
            RequestOp::Put(put) => Some((put.key.len() + put.value.len()) as u64),
            RequestOp::Txn(inner) => txn_put_bytes(inner),
            RequestOp::Range(_) | RequestOp::DeleteRange(_) => None,
        };
        if let Some(added) = added {
            total = Some(total.unwrap_or(0) + added);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::PutRequest;

    fn put(bytes: usize) -> Command {
        Command::Put(PutRequest { key: "k".into(), value: vec![b'v'; bytes].into(), ..PutRequest::default() })
    }

    #[test]
    fn a_write_past_the_quota_raises_the_alarm_until_disarmed() {
        let quota = Quota::new(1000);
        assert!(quota.admits(&put(100), || 500));
        assert!(!quota.admits(&put(600), || 500));
        assert!(quota.alarmed());
        // Raised: even a small put is refused; a compaction is not.
        assert!(!quota.admits(&put(1), || 0));
        assert!(quota.admits(&Command::Compact { revision: 5 }, || 2000));
        quota.disarm();
        assert!(quota.admits(&put(1), || 0));
    }

    #[test]
    fn no_quota_admits_everything() {
        assert!(Quota::new(0).admits(&put(1 << 20), || unreachable!("no quota reads no size")));
    }
}
