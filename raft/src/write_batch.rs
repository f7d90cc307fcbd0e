//! Concurrent writes joined into batches: a member queues its clients' commands, and a few
//! rounds at a time each take everything queued (up to a bound) to the leader in one call,
//! which proposes them as one Raft entry. Under load that is one forwarded call, one log entry
//! and one replication item for hundreds of writes instead of one each; a lone write goes alone
//! at once, so it waits for nothing. Each command still applies at its own revision, with its
//! own result (etcd's per-request semantics), and a refusal before proposing (not the leader)
//! is retried for the whole batch, as for one write.
//!
//! Rounds run as spawned tasks, so a client that gives up does not abandon the others' writes.

use std::sync::Mutex;

use store::{Command, Compare, RequestOp, Response, TxnRequest};
use tokio::sync::oneshot;

use crate::member::MemberError;

/// A write's outcome: the store's own result inside the `Ok`.
pub(crate) type WriteResult = Result<store::Result<Response>, MemberError>;

/// Rounds in flight per member: enough to keep the leader's pipeline busy while one batch is
/// being replicated and the next one gathers.
const ROUNDS_MAX: usize = 4;
/// A batch's bounds. Bytes are counted roughly (keys and values); one command above the bound
/// still goes, alone. A Raft entry stays a few MiB, so an append message of
/// `APPEND_ENTRIES_MAX` of them stays below the peer message limit.
const BATCH_COMMANDS_MAX: usize = 512;
const BATCH_BYTES_MAX: usize = 1 << 20;

#[derive(Debug)]
struct Pending {
    command: Command,
    reply: oneshot::Sender<WriteResult>,
}

#[derive(Debug, Default)]
struct Queue {
    pending: std::collections::VecDeque<Pending>,
    rounds: usize,
}

/// The queue of writes waiting for a round.
#[derive(Debug, Default)]
pub(crate) struct WriteBatcher {
    queue: Mutex<Queue>,
}

/// Where the results of a batch's commands go, in the batch's order.
pub(crate) struct Replies(Vec<oneshot::Sender<WriteResult>>);

impl Replies {
    /// Hands each command its result; `results` is in the order of `commands`.
    pub fn answer(self, results: Vec<WriteResult>) {
        debug_assert_eq!(results.len(), self.0.len());
        for (reply, result) in self.0.into_iter().zip(results) {
            // The client may have gone; its write happened or not all the same.
            let _ = reply.send(result);
        }
    }

    /// Every command of the batch failed the same way.
    pub fn fail(self, error: MemberError) {
        for reply in self.0 {
            let _ = reply.send(Err(error.clone()));
        }
    }
}

impl WriteBatcher {
    /// Queues a write. Returns where its result arrives, and whether the caller must start a
    /// round (spawn a task that calls [`WriteBatcher::next_batch`] until it returns None).
    pub fn push(&self, command: Command) -> (oneshot::Receiver<WriteResult>, bool) {
        let (reply, result) = oneshot::channel();
        let mut queue = self.queue.lock().expect("write queue lock");
        queue.pending.push_back(Pending { command, reply });
        let start_round = queue.rounds < ROUNDS_MAX;
        if start_round {
            queue.rounds += 1;
        }
        (result, start_round)
    }

    /// The next batch for a round, or None when nothing is queued (the round then ends).
    pub fn next_batch(&self) -> Option<(Vec<Command>, Replies)> {
        let mut queue = self.queue.lock().expect("write queue lock");
        if queue.pending.is_empty() {
            queue.rounds -= 1;
            return None;
        }
        let (mut commands, mut replies) = (Vec::new(), Vec::new());
        let mut bytes = 0;
        while let Some(next) = queue.pending.front() {
            let size = approximate_bytes(&next.command);
            if !commands.is_empty() && (commands.len() >= BATCH_COMMANDS_MAX || bytes + size > BATCH_BYTES_MAX) {
                break;
            }
            bytes += size;
            let Pending { command, reply } = queue.pending.pop_front().expect("a front entry");
            commands.push(command);
            replies.push(reply);
        }
        Some((commands, Replies(replies)))
    }
}

/// Keys and values a command carries, plus a little for the rest.
fn approximate_bytes(command: &Command) -> usize {
    const OVERHEAD: usize = 32;
    OVERHEAD
        + match command {
            Command::Put(put) => put.key.len() + put.value.len(),
            Command::DeleteRange(delete) => delete.key.len() + delete.range_end.len(),
            Command::Txn(txn) => txn_bytes(txn),
            Command::AsUser { user, command } => user.as_ref().map_or(0, String::len) + approximate_bytes(command),
            Command::Compact { .. }
            | Command::LeaseGrant { .. }
            | Command::LeaseRevoke { .. }
            | Command::LeaseCheckpoint { .. }
            | Command::Auth(_) => 0,
        }
}

fn txn_bytes(txn: &TxnRequest) -> usize {
    let compare: usize =
        txn.compare.iter().map(|Compare { key, range_end, .. }| key.len() + range_end.len() + 16).sum();
    let op_bytes = |op: &RequestOp| match op {
        RequestOp::Range(range) => range.key.len() + range.range_end.len(),
        RequestOp::Put(put) => put.key.len() + put.value.len(),
        RequestOp::DeleteRange(delete) => delete.key.len() + delete.range_end.len(),
        RequestOp::Txn(nested) => txn_bytes(nested),
    };
    compare + txn.success.iter().chain(&txn.failure).map(op_bytes).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::PutRequest;

    fn put(key: &str, value_bytes: usize) -> Command {
        Command::Put(PutRequest {
            key: key.as_bytes().to_vec().into(),
            value: vec![b'v'; value_bytes].into(),
            ..PutRequest::default()
        })
    }

    #[test]
    fn a_lone_write_starts_a_round_and_goes_alone() {
        let batcher = WriteBatcher::default();
        let (_result, start) = batcher.push(put("a", 1));
        assert!(start);
        let (commands, _replies) = batcher.next_batch().expect("the queued write");
        assert_eq!(commands, vec![put("a", 1)]);
        assert!(batcher.next_batch().is_none(), "the round ends when the queue is empty");
        assert_eq!(batcher.queue.lock().unwrap().rounds, 0);
    }

    #[test]
    fn writes_queued_while_rounds_run_are_joined_in_order_within_the_bounds() {
        let batcher = WriteBatcher::default();
        let starts: Vec<bool> = (0..ROUNDS_MAX + 3).map(|i| batcher.push(put(&format!("k{i}"), 1)).1).collect();
        assert_eq!(starts.iter().filter(|start| **start).count(), ROUNDS_MAX, "at most ROUNDS_MAX rounds");
        let (commands, _replies) = batcher.next_batch().unwrap();
        let keys: Vec<String> = commands
            .iter()
            .map(|command| match command {
                Command::Put(put) => String::from_utf8(put.key.to_vec()).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(keys, (0..ROUNDS_MAX + 3).map(|i| format!("k{i}")).collect::<Vec<_>>());

        // Large values: the byte bound splits them, but never leaves one out.
        for i in 0..3 {
            batcher.push(put(&format!("big{i}"), BATCH_BYTES_MAX / 2));
        }
        assert_eq!(batcher.next_batch().unwrap().0.len(), 1);
        assert_eq!(batcher.next_batch().unwrap().0.len(), 1);
        assert_eq!(batcher.next_batch().unwrap().0.len(), 1);
        batcher.push(put("huge", BATCH_BYTES_MAX * 2));
        assert_eq!(batcher.next_batch().unwrap().0.len(), 1, "one command above the bound goes alone");

        for i in 0..BATCH_COMMANDS_MAX + 1 {
            batcher.push(put(&format!("n{i}"), 1));
        }
        assert_eq!(batcher.next_batch().unwrap().0.len(), BATCH_COMMANDS_MAX);
        assert_eq!(batcher.next_batch().unwrap().0.len(), 1);
    }

    #[tokio::test]
    async fn each_write_gets_its_own_result_and_a_failed_round_fails_all() {
        let batcher = WriteBatcher::default();
        let (first, _) = batcher.push(put("a", 1));
        let (second, _) = batcher.push(put("b", 1));
        let (_commands, replies) = batcher.next_batch().unwrap();
        replies.answer(vec![Ok(Err(store::Error::Compacted { compact_revision: 2 })), Err(MemberError::NoSpace)]);
        assert!(matches!(first.await.unwrap(), Ok(Err(store::Error::Compacted { .. }))));
        assert!(matches!(second.await.unwrap(), Err(MemberError::NoSpace)));

        let (third, _) = batcher.push(put("c", 1));
        let (fourth, _) = batcher.push(put("d", 1));
        batcher.next_batch().unwrap().1.fail(MemberError::LeaderChanged);
        assert!(matches!(third.await.unwrap(), Err(MemberError::LeaderChanged)));
        assert!(matches!(fourth.await.unwrap(), Err(MemberError::LeaderChanged)));
    }
}
