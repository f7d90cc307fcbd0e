//! Lease expiry, kept by the leader: the store records leases but never reads a clock, so the
//! member that leads tracks each lease's deadline in memory and proposes a `LeaseRevoke` when it
//! passes. On promotion every lease gets now + its TTL (the
//! checkpointed remainder if there is one) + one election timeout, as etcd's lessor does, so a
//! change of leader never expires a lease early.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// In-memory deadlines of the leases the store holds.
#[derive(Debug, Default)]
pub struct Lessor {
    deadlines: Mutex<HashMap<i64, Deadline>>,
    /// Set once a new leader has restored every lease's clock: before that, an absent lease
    /// may only mean "not restored yet", so keep-alives wait.
    ready: AtomicBool,
}

#[derive(Debug, Clone, Copy)]
struct Deadline {
    expires_at: Instant,
    ttl_seconds: i64,
}

impl Lessor {
    /// On promotion: a deadline for every lease the store holds that has none yet, at its
    /// remaining TTL (the checkpointed one if there is one) plus `grace` (one election timeout).
    pub fn promote(&self, leases: &[store::LeaseInfo], grace: Duration) {
        let now = Instant::now();
        let mut deadlines = self.deadlines.lock().expect("lessor lock");
        for lease in leases {
            let remaining =
                if lease.remaining_ttl_seconds > 0 { lease.remaining_ttl_seconds } else { lease.ttl_seconds };
            let expires_at = now + Duration::from_secs(remaining.max(0) as u64) + grace;
            deadlines.entry(lease.id).or_insert(Deadline { expires_at, ttl_seconds: lease.ttl_seconds });
        }
        self.ready.store(true, Ordering::Release);
    }

    /// Whether this leader's clocks are restored (see `promote`).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// On losing leadership: the next leader keeps the clocks.
    pub fn demote(&self) {
        self.ready.store(false, Ordering::Release);
        self.deadlines.lock().expect("lessor lock").clear();
    }

    /// Starts or restarts a lease's clock; returns its TTL.
    pub fn renew(&self, id: i64, ttl_seconds: i64) -> i64 {
        let expires_at = Instant::now() + Duration::from_secs(ttl_seconds.max(0) as u64);
        self.deadlines.lock().expect("lessor lock").insert(id, Deadline { expires_at, ttl_seconds });
        ttl_seconds
    }

    /// Restarts a known lease's clock (KeepAlive); None if the lessor does not know it.
    pub fn keep_alive(&self, id: i64) -> Option<i64> {
        let mut deadlines = self.deadlines.lock().expect("lessor lock");
        let deadline = deadlines.get_mut(&id)?;
        deadline.expires_at = Instant::now() + Duration::from_secs(deadline.ttl_seconds.max(0) as u64);
        Some(deadline.ttl_seconds)
    }

    /// Seconds left, rounded up, or None for an unknown lease.
    pub fn remaining_seconds(&self, id: i64) -> Option<i64> {
        let deadlines = self.deadlines.lock().expect("lessor lock");
        let left = deadlines.get(&id)?.expires_at.saturating_duration_since(Instant::now());
        Some(left.as_millis().div_ceil(1000) as i64)
    }

    /// Every lease's remaining seconds (rounded up), for checkpoints.
    pub fn remaining_all(&self) -> Vec<(i64, i64)> {
        let now = Instant::now();
        let deadlines = self.deadlines.lock().expect("lessor lock");
        deadlines
            .iter()
            .map(|(id, deadline)| {
                (*id, deadline.expires_at.saturating_duration_since(now).as_millis().div_ceil(1000) as i64)
            })
            .collect()
    }

    pub fn forget(&self, id: i64) {
        self.deadlines.lock().expect("lessor lock").remove(&id);
    }

    /// Leases whose deadline has passed, at most `max` of them.
    pub fn expired(&self, max: usize) -> Vec<i64> {
        let now = Instant::now();
        let deadlines = self.deadlines.lock().expect("lessor lock");
        deadlines.iter().filter(|(_, deadline)| deadline.expires_at <= now).map(|(id, _)| *id).take(max).collect()
    }
}
