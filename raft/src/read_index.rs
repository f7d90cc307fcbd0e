//! Concurrent read barriers share read-index rounds. A linearizable read needs the leader's
//! commit index as confirmed by a round that *started after the read arrived*; any such round
//! serves every read waiting for it. So one round runs at a time, and a read that finds the
//! latest finished round started after its arrival takes that round's answer instead of asking
//! again (etcd's `linearizableReadLoop` does the same with its notifier). On a follower under
//! load that is one forwarded call per round trip instead of one per read.
//!
//! The rounds are serialized by an async mutex, which is fair and cancel-safe: a caller that
//! gives up while its round runs only hands the next round to the next waiter.
//!
//! A busy member spaces its rounds. Each round costs a forwarded call, a heartbeat to every
//! follower and their answers, whatever the number of reads it serves; run back to back under
//! load, those rounds cost a 5-member cluster a quarter of its CPU (BENCHMARKS.md). So the next
//! round starts [`spacing_after`] the last one started, a pause that grows with the reads the
//! last round served, and gathers the reads that arrive meanwhile. A lone reader's round starts
//! at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The pause before the next round, per read the last round served beyond the first.
const SPACING_PER_READ: Duration = Duration::from_millis(1);
/// The longest pause between the starts of two rounds.
const SPACING_MAX: Duration = Duration::from_millis(2);

/// How long after the last round started the next may start, when the last served `served`
/// reads: at once after a lone read, up to [`SPACING_MAX`] under load.
fn spacing_after(served: u64) -> Duration {
    SPACING_PER_READ.saturating_mul(served.saturating_sub(1).min(u32::MAX as u64) as u32).min(SPACING_MAX)
}

/// A round's answer: the read index, or why there is none.
pub(crate) type RoundResult<E> = Result<u64, E>;

#[derive(Debug)]
pub(crate) struct ReadIndexRounds<E> {
    /// Held while a round runs.
    running: tokio::sync::Mutex<()>,
    /// Rounds started so far; a round's number is this count after it started.
    started: AtomicU64,
    /// The last finished round.
    last: Mutex<Option<Finished<E>>>,
}

#[derive(Debug)]
struct Finished<E> {
    number: u64,
    answer: RoundResult<E>,
    started_at: Instant,
    /// Reads that took this round's answer so far.
    served: u64,
}

impl<E> Default for ReadIndexRounds<E> {
    fn default() -> Self {
        ReadIndexRounds { running: tokio::sync::Mutex::new(()), started: AtomicU64::new(0), last: Mutex::new(None) }
    }
}

impl<E: Clone> ReadIndexRounds<E> {
    /// The answer of a round started after this call: run by this caller with `round`, or by
    /// another caller that started one after this one arrived.
    pub async fn read_index<F, Fut>(&self, round: F) -> RoundResult<E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = RoundResult<E>>,
    {
        let arrived_after = self.started.load(Ordering::SeqCst);
        let _running = self.running.lock().await;
        let not_before = match &mut *self.last.lock().expect("read index lock") {
            Some(last) if last.number > arrived_after => {
                last.served += 1;
                return last.answer.clone();
            }
            Some(last) => Some(last.started_at + spacing_after(last.served)),
            None => None,
        };
        // Only a pause still to come sleeps: the timer rounds a deadline up to the next
        // millisecond, which would delay even a lone reader whose pause is zero.
        if let Some(not_before) = not_before.filter(|not_before| *not_before > Instant::now()) {
            // Reads arriving meanwhile queue behind this one and share its round.
            tokio::time::sleep_until(not_before).await;
        }
        let started_at = Instant::now();
        let number = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let answer = round().await;
        let finished = Finished { number, answer: answer.clone(), started_at, served: 1 };
        *self.last.lock().expect("read index lock") = Some(finished);
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[tokio::test]
    async fn reads_waiting_behind_a_round_share_the_next_one() {
        let rounds: Arc<ReadIndexRounds<String>> = Arc::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        // The first read's round blocks until released; ten reads arrive meanwhile.
        let first = {
            let (rounds, calls, mut released) = (rounds.clone(), calls.clone(), released.clone());
            tokio::spawn(async move {
                rounds
                    .read_index(|| async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        released.wait_for(|released| *released).await.unwrap();
                        Ok(1)
                    })
                    .await
            })
        };
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let waiting: Vec<_> = (0..10)
            .map(|_| {
                let (rounds, calls) = (rounds.clone(), calls.clone());
                tokio::spawn(async move {
                    rounds
                        .read_index(|| async move {
                            let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
                            Ok(call as u64 * 100)
                        })
                        .await
                })
            })
            .collect();
        tokio::task::yield_now().await;
        release.send(true).unwrap();
        assert_eq!(first.await.unwrap(), Ok(1));
        let answers: Vec<_> = futures::future::join_all(waiting).await.into_iter().map(Result::unwrap).collect();
        // None of the ten may use the round that started before it arrived (index 1); all of
        // them share the second round.
        assert_eq!(answers, vec![Ok(200); 10]);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_read_after_a_finished_round_starts_its_own_and_errors_are_shared_too() {
        let rounds: ReadIndexRounds<String> = ReadIndexRounds::default();
        assert_eq!(rounds.read_index(|| async { Ok(5) }).await, Ok(5));
        assert_eq!(rounds.read_index(|| async { Ok(6) }).await, Ok(6), "the finished round started before it");
        assert_eq!(rounds.read_index(|| async { Err("timeout".to_string()) }).await, Err("timeout".to_string()));
    }

    #[test]
    fn the_pause_grows_with_the_reads_served() {
        assert_eq!(spacing_after(1), Duration::ZERO);
        assert_eq!(spacing_after(2), SPACING_PER_READ.min(SPACING_MAX));
        assert_eq!(spacing_after(3), (SPACING_PER_READ * 2).min(SPACING_MAX));
        assert_eq!(spacing_after(1_000_000), SPACING_MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_member_spaces_its_rounds_and_a_lone_reader_waits_for_nothing() {
        // The paused clock moves in whole milliseconds.
        const ROUND: Duration = Duration::from_millis(1);
        let rounds: Arc<ReadIndexRounds<String>> = Arc::default();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let read = |rounds: Arc<ReadIndexRounds<String>>, starts: Arc<Mutex<Vec<Instant>>>| async move {
            rounds
                .read_index(|| async move {
                    starts.lock().unwrap().push(Instant::now());
                    tokio::time::sleep(ROUND).await;
                    Ok(1)
                })
                .await
        };
        // A lone reader, one read after another: every round starts as the last one ends.
        for _ in 0..3 {
            read(rounds.clone(), starts.clone()).await.unwrap();
        }
        let lone = std::mem::take(&mut *starts.lock().unwrap());
        assert!(lone.windows(2).all(|pair| pair[1] - pair[0] == ROUND), "{lone:?}");
        // Eight readers at once: the first round serves one, the second the seven others; the
        // third round waits for the pause after seven reads.
        let readers: Vec<_> = (0..8).map(|_| tokio::spawn(read(rounds.clone(), starts.clone()))).collect();
        for reader in readers {
            reader.await.unwrap().unwrap();
        }
        read(rounds.clone(), starts.clone()).await.unwrap();
        let busy = std::mem::take(&mut *starts.lock().unwrap());
        assert_eq!(busy.len(), 3, "{busy:?}");
        assert_eq!(busy[1] - busy[0], ROUND, "{busy:?}");
        assert!(busy[2] - busy[1] > ROUND && busy[2] - busy[1] >= spacing_after(7), "{busy:?}");
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_mid_round_does_not_stall_the_next() {
        let rounds: Arc<ReadIndexRounds<String>> = Arc::default();
        let abandoned = {
            let rounds = rounds.clone();
            tokio::spawn(async move { rounds.read_index(std::future::pending).await })
        };
        tokio::task::yield_now().await;
        abandoned.abort();
        let _ = abandoned.await;
        assert_eq!(rounds.read_index(|| async { Ok(7) }).await, Ok(7));
    }
}
