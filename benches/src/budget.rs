//! How many operations a run may issue: a total, a deadline, or both (whichever ends first).
//! Client tasks claim operation numbers from it, so the total is exact however many share it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Budget {
    total: Option<u64>,
    deadline: Option<Instant>,
    issued: AtomicU64,
}

impl Budget {
    /// Starts the clock now. With neither a total nor a duration, the run never ends by itself.
    pub fn new(total: Option<u64>, duration: Option<Duration>) -> Budget {
        Budget { total, deadline: duration.map(|duration| Instant::now() + duration), issued: AtomicU64::new(0) }
    }

    /// The next operation's number (0, 1, 2, ...), or `None` when the run is over.
    pub fn next(&self) -> Option<u64> {
        if self.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return None;
        }
        let index = self.issued.fetch_add(1, Ordering::Relaxed);
        match self.total {
            Some(total) if index >= total => None,
            _ => Some(index),
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_total_is_exact_across_threads() {
        let budget = std::sync::Arc::new(Budget::new(Some(10_000), None));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let budget = budget.clone();
                std::thread::spawn(move || std::iter::from_fn(|| budget.next()).count())
            })
            .collect();
        let claimed: usize = threads.into_iter().map(|thread| thread.join().unwrap()).sum();
        assert_eq!(claimed, 10_000);
    }

    #[test]
    fn a_deadline_ends_the_run() {
        let budget = Budget::new(None, Some(Duration::from_millis(30)));
        assert_eq!(budget.next(), Some(0));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(budget.next(), None);
    }
}
