//! Checks a txn must pass before it runs, as etcd makes them: the number of operations at each
//! level, empty keys, and the rule that no key is written twice (two puts, or a put and a
//! delete) in the branch that can run together.

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::command::{RequestOp, TxnRequest};
use crate::error::{Error, Result};
use crate::key_range::KeyRange;

/// etcd's `checkTxnRequest`: the widest of compare/success/failure must fit in `max_ops`, and a
/// nested txn gets what this level leaves.
pub fn check_shape(txn: &TxnRequest, max_ops: usize) -> Result<()> {
    let ops = txn.compare.len().max(txn.success.len()).max(txn.failure.len());
    if ops > max_ops {
        return Err(Error::TooManyOps { ops, max_txn_ops: max_ops });
    }
    if txn.compare.iter().any(|compare| compare.key.is_empty()) {
        return Err(Error::EmptyKey);
    }
    for op in txn.success.iter().chain(&txn.failure) {
        match op {
            RequestOp::Range(range) if range.key.is_empty() => return Err(Error::EmptyKey),
            RequestOp::Put(put) if put.key.is_empty() => return Err(Error::EmptyKey),
            RequestOp::Put(put) if put.ignore_value && !put.value.is_empty() => return Err(Error::ValueProvided),
            RequestOp::Put(put) if put.ignore_lease && put.lease != 0 => return Err(Error::LeaseProvided),
            RequestOp::DeleteRange(delete) if delete.key.is_empty() => return Err(Error::EmptyKey),
            RequestOp::Txn(nested) => check_shape(nested, max_ops - ops)?,
            _ => {}
        }
    }
    check_writes(&txn.success)?;
    check_writes(&txn.failure)?;
    Ok(())
}

/// etcd's `checkIntervals`: returns the keys put and the ranges deleted by `ops` (nested txns
/// included), failing when one key is written twice. A nested txn's success and failure branches
/// never run together, so they may put the same key.
fn check_writes(ops: &[RequestOp]) -> Result<(BTreeSet<Bytes>, Vec<KeyRange>)> {
    let mut deletes: Vec<KeyRange> = ops
        .iter()
        .filter_map(|op| match op {
            RequestOp::DeleteRange(delete) => Some(KeyRange::new(&delete.key, &delete.range_end)),
            _ => None,
        })
        .collect();
    let deleted = |deletes: &[KeyRange], key: &[u8]| deletes.iter().any(|range| range.contains(key));
    let mut puts = BTreeSet::new();
    for op in ops {
        let RequestOp::Txn(nested) = op else { continue };
        let (puts_then, deletes_then) = check_writes(&nested.success)?;
        let (puts_else, deletes_else) = check_writes(&nested.failure)?;
        for key in &puts_then {
            if puts.contains(key) || deleted(&deletes, key) {
                return Err(Error::DuplicateKey);
            }
        }
        puts.extend(puts_then.iter().cloned());
        for key in puts_else {
            if (puts.contains(&key) && !puts_then.contains(&key)) || deleted(&deletes, &key) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(key);
        }
        deletes.extend(deletes_then);
        deletes.extend(deletes_else);
    }
    for op in ops {
        let RequestOp::Put(put) = op else { continue };
        if puts.contains(&put.key) || deleted(&deletes, &put.key) {
            return Err(Error::DuplicateKey);
        }
        puts.insert(put.key.clone());
    }
    Ok((puts, deletes))
}
