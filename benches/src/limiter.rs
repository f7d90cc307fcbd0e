//! `--rate`: a pacer shared by every client task. Each operation takes the next slot of a
//! fixed schedule (one every 1/rate seconds) and sleeps until it; a run that falls behind does
//! not burst to catch up beyond the slots it missed while every client was busy.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RateLimiter {
    interval: Option<Duration>,
    next: Mutex<Instant>,
}

impl RateLimiter {
    /// `rate` operations per second; 0 (or less) means unlimited.
    pub fn new(rate: f64) -> RateLimiter {
        let interval = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
        RateLimiter { interval, next: Mutex::new(Instant::now()) }
    }

    pub async fn wait(&self) {
        let Some(interval) = self.interval else { return };
        let slot = {
            let mut next = self.next.lock().unwrap();
            let slot = (*next).max(Instant::now());
            *next = slot + interval;
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn paces_to_the_rate() {
        let limiter = RateLimiter::new(200.0);
        let start = Instant::now();
        for _ in 0..21 {
            limiter.wait().await;
        }
        let elapsed = start.elapsed();
        // 20 intervals of 5 ms after the first slot, which is now.
        assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(400), "{elapsed:?}");
    }

    #[tokio::test]
    async fn zero_is_unlimited() {
        let limiter = RateLimiter::new(0.0);
        let start = Instant::now();
        for _ in 0..100_000 {
            limiter.wait().await;
        }
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
