//! The closed-loop driver every request/response workload shares: `--clients` tasks, each on
//! connection (task mod `--conns`), each with one operation in flight, claiming operation
//! numbers from a `Budget`, paced by a shared `RateLimiter`. An operation's latency is from
//! the moment its slot came (after the pacer) to its answer; errors and timeouts are counted,
//! not timed.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::budget::Budget;
use crate::histogram::Histogram;
use crate::limiter::RateLimiter;

/// How one operation went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Answered, but did not take effect (a compare-and-swap that lost its race).
    Conflict,
    Error(String),
}

impl<T> From<Result<T, String>> for Outcome {
    fn from(result: Result<T, String>) -> Outcome {
        result.map_or_else(Outcome::Error, |_| Outcome::Ok)
    }
}

impl<T> From<Result<T, etcd_client::Error>> for Outcome {
    fn from(result: Result<T, etcd_client::Error>) -> Outcome {
        match result {
            Ok(_) => Outcome::Ok,
            Err(error) => Outcome::Error(error.to_string()),
        }
    }
}

/// One kind of request, issued over and over.
pub trait Operation: Send + Sync + 'static {
    /// What it is sent over: an `etcd_client::Client` or a lean `UnaryConnection`.
    type Connection: Send + 'static;

    /// Operation number `index` (0, 1, 2, ... across all clients) on `connection`.
    fn run(&self, connection: &mut Self::Connection, index: u64) -> impl Future<Output = Outcome> + Send;
}

/// The connections client tasks share: client task `index` uses `get(index)`.
pub trait Pool {
    type Connection;

    fn get(&self, index: u64) -> Self::Connection;
}

/// How much load to offer.
#[derive(Debug, Clone)]
pub struct Load {
    pub clients: u64,
    pub total: Option<u64>,
    pub duration: Option<Duration>,
    /// Operations per second over all clients; 0 = unlimited.
    pub rate: f64,
    pub request_timeout: Duration,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Tally {
    /// Latencies of answered operations (`Ok` and `Conflict`).
    pub latency: Histogram,
    /// Answered operations, conflicts included.
    pub ops: u64,
    pub conflicts: u64,
    pub errors: u64,
    /// The first few distinct error messages.
    pub error_samples: Vec<String>,
    pub elapsed: Duration,
}

const ERROR_SAMPLES: usize = 5;

impl Tally {
    pub fn count(&mut self, outcome: Outcome, latency: Duration) {
        match outcome {
            Outcome::Ok => {
                self.ops += 1;
                self.latency.record_duration(latency);
            }
            Outcome::Conflict => {
                self.ops += 1;
                self.conflicts += 1;
                self.latency.record_duration(latency);
            }
            Outcome::Error(message) => self.error(message),
        }
    }

    pub fn error(&mut self, message: String) {
        self.errors += 1;
        if self.error_samples.len() < ERROR_SAMPLES && !self.error_samples.contains(&message) {
            self.error_samples.push(message);
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.latency.merge(&other.latency);
        self.ops += other.ops;
        self.conflicts += other.conflicts;
        self.errors += other.errors;
        for message in other.error_samples {
            if self.error_samples.len() < ERROR_SAMPLES && !self.error_samples.contains(&message) {
                self.error_samples.push(message);
            }
        }
        self.elapsed = self.elapsed.max(other.elapsed);
    }
}

/// Runs `operation` under `load` and returns the merged tally; `elapsed` is the wall time
/// from the first client's start to the last one's end.
pub async fn drive<O: Operation>(
    operation: Arc<O>,
    connections: &impl Pool<Connection = O::Connection>,
    load: &Load,
) -> Tally {
    let budget = Arc::new(Budget::new(load.total, load.duration));
    let limiter = Arc::new(RateLimiter::new(load.rate));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client_index in 0..load.clients {
        let mut client = connections.get(client_index);
        let (operation, budget, limiter) = (operation.clone(), budget.clone(), limiter.clone());
        let timeout = load.request_timeout;
        tasks.spawn(async move {
            let mut tally = Tally::default();
            while let Some(index) = budget.next() {
                limiter.wait().await;
                let began = Instant::now();
                let outcome = match tokio::time::timeout(timeout, operation.run(&mut client, index)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Outcome::Error(format!("no answer within {timeout:?}")),
                };
                tally.count(outcome, began.elapsed());
            }
            tally
        });
    }
    let mut total = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(tally) => total.merge(tally),
            Err(error) => total.error(format!("client task failed: {error}")),
        }
    }
    total.elapsed = start.elapsed();
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_merge_and_keep_a_few_distinct_errors() {
        let mut first = Tally::default();
        first.count(Outcome::Ok, Duration::from_millis(1));
        first.count(Outcome::Conflict, Duration::from_millis(2));
        for index in 0..10 {
            first.count(Outcome::Error(format!("e{}", index % 7)), Duration::ZERO);
        }
        let mut second = Tally::default();
        second.count(Outcome::Ok, Duration::from_millis(3));
        second.count(Outcome::Error("e0".to_string()), Duration::ZERO);
        first.merge(second);
        assert_eq!((first.ops, first.conflicts, first.errors), (3, 1, 11));
        assert_eq!(first.latency.count(), 3);
        assert_eq!(first.error_samples, ["e0", "e1", "e2", "e3", "e4"]);
    }
}
