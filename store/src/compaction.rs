//! Physical compaction: removing the versions a Compact command made unreachable, in the
//! background, in bounded batches, while writes go on.
//!
//! A Compact at revision C is applied logically at once (reads below C fail from then on). This
//! module then visits only the keys changed in (last finished compaction, C], found through the
//! History space, and for each deletes every version older than its newest version at or below
//! C, and that newest version too when it is a tombstone older than C. Reads at C or later never
//! see what it deletes, so batches need no coordination with apply or readers. A tombstone goes
//! in the same batch as (or after) the older versions it hides, so an older version never
//! reappears.
//!
//! Revision C itself stays whole, tombstones and History entries included, so a watch may start
//! at the compact revision (etcd's rule: only a start *below* it is compacted) and still see the
//! deletes made at C.
//! Crashing mid-way is harmless: the pass restarts from the History space at the next open.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::codec::{self, VersionRecord};
use crate::engine::{Durability, Engine, Space, WriteBatch};
use crate::error::Result;
use crate::meta;
use crate::revision::Revision;

/// Limits of one compaction pass.
#[derive(Debug, Clone)]
pub struct CompactionOptions {
    /// Keys whose old versions are deleted in one engine write.
    pub batch_keys_max: usize,
    /// Least pause between batches, so compaction leaves the disk to foreground writes.
    pub pause_between_batches_ms: u64,
    /// The share of one core (percent) compaction may keep busy: after a batch that took t, it
    /// pauses at least t × (100 − share) / share. On a small machine every member compacts at
    /// once; unthrottled, their passes over 1M keys doubled put p99 (BENCHMARKS.md).
    pub busy_percent: u32,
    /// Ask the engine to rewrite its files after a pass (see [`Engine::reclaim_space`]);
    /// otherwise the engine's own background compaction returns the space.
    pub reclaim_space_after_pass: bool,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            batch_keys_max: 1000,
            pause_between_batches_ms: 10,
            busy_percent: 10,
            reclaim_space_after_pass: false,
        }
    }
}

impl CompactionOptions {
    /// The pause after a batch that took `worked`.
    fn pause_after(&self, worked: Duration) -> Duration {
        let share = self.busy_percent.clamp(1, 100);
        (worked * (100 - share) / share).max(Duration::from_millis(self.pause_between_batches_ms))
    }
}

/// A key with more old versions than this loses them with one range delete instead of point
/// deletes, which keeps a batch bounded however often one key was written.
const POINT_DELETES_PER_KEY_MAX: usize = 64;

/// Shared between the store and its compaction thread.
#[derive(Debug, Default)]
pub struct CompactionState {
    pub progress: Mutex<Progress>,
    pub changed: Condvar,
    /// Held by the compaction thread while it reads and writes one batch, and by a snapshot
    /// install for its whole length, so a pass never deletes from data installed under it.
    /// Lock order: the store's apply lock, then `pass_lock`, then `progress`.
    pub pass_lock: Mutex<()>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Progress {
    /// Revision of the latest Compact command applied.
    pub target: i64,
    /// Revision up to which old versions are physically gone.
    pub finished: i64,
    pub shutdown: bool,
    /// Set when a pass failed on an engine error; compaction stops until the store reopens.
    pub failed: bool,
    /// Bumped when a snapshot install replaces the data: a pass of an older generation stops.
    pub generation: u64,
}

/// How a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassOutcome {
    Finished,
    /// The store is shutting down.
    Stopped,
    /// A snapshot install replaced the data under the pass.
    Superseded,
}

/// The compaction thread's loop: wait for a target beyond what is finished, run a pass, repeat.
pub fn run(engine: Arc<dyn Engine>, state: Arc<CompactionState>, options: CompactionOptions) {
    loop {
        let (from, to, generation) = {
            let mut progress = state.progress.lock().expect("compaction lock");
            while !progress.shutdown && progress.target <= progress.finished {
                progress = state.changed.wait(progress).expect("compaction lock");
            }
            if progress.shutdown {
                return;
            }
            (progress.finished, progress.target, progress.generation)
        };
        let outcome = compact_pass(engine.as_ref(), from, to, &options, &state, generation);
        if matches!(outcome, Ok(PassOutcome::Finished)) && options.reclaim_space_after_pass {
            for space in [Space::Kv, Space::History] {
                if let Err(error) = engine.reclaim_space(space) {
                    tracing::warn!(%error, "reclaiming space after compaction failed");
                }
            }
        }
        let mut progress = state.progress.lock().expect("compaction lock");
        match outcome {
            Ok(PassOutcome::Finished) if progress.generation == generation => progress.finished = to,
            Ok(PassOutcome::Finished | PassOutcome::Superseded) => {}
            Ok(PassOutcome::Stopped) => return,
            Err(error) => {
                tracing::error!(%error, target = to, "compaction pass failed; stopping compaction");
                progress.failed = true;
                state.changed.notify_all();
                return;
            }
        }
        state.changed.notify_all();
    }
}

impl CompactionState {
    /// Waits `pause` or until shutdown; returns true if the store is shutting down.
    fn pause(&self, pause: Duration) -> bool {
        let progress = self.progress.lock().expect("compaction lock");
        if pause.is_zero() || progress.shutdown {
            return progress.shutdown;
        }
        let (progress, _) =
            self.changed.wait_timeout_while(progress, pause, |progress| !progress.shutdown).expect("compaction lock");
        progress.shutdown
    }
}

/// Removes what compaction at `to` made unreachable, for keys changed after `from`, in batches
/// separated by pauses; stops early on shutdown or when the data's `generation` changes.
pub fn compact_pass(
    engine: &dyn Engine,
    from: i64,
    to: i64,
    options: &CompactionOptions,
    state: &CompactionState,
    generation: u64,
) -> Result<PassOutcome> {
    let history_end = Revision::new(to, 0).to_bytes();
    // From `from` itself: a tombstone written at the last compact revision was kept then and
    // goes now.
    let mut resume = Revision::new(from, 0).to_bytes().to_vec();
    loop {
        let started = std::time::Instant::now();
        let pass_lock = state.pass_lock.lock().expect("compaction pass lock");
        if state.progress.lock().expect("compaction lock").generation != generation {
            return Ok(PassOutcome::Superseded);
        }
        let ChangedKeys { keys, next } = changed_keys(engine, &resume, &history_end, options.batch_keys_max)?;
        let mut batch = WriteBatch::default();
        for key in &keys {
            obsolete_versions(engine, key, to, &mut batch)?;
        }
        if !batch.is_empty() {
            crate::failpoint("store::compaction::before_batch")?;
            engine.write(batch, Durability::Buffered)?;
        }
        drop(pass_lock);
        match next {
            Some(next) => resume = next,
            None => break,
        }
        if state.pause(options.pause_after(started.elapsed())) {
            return Ok(PassOutcome::Stopped);
        }
    }
    let _pass_lock = state.pass_lock.lock().expect("compaction pass lock");
    if state.progress.lock().expect("compaction lock").generation != generation {
        return Ok(PassOutcome::Superseded);
    }
    let mut batch = WriteBatch::default();
    batch.delete_range(Space::History, Revision::new(0, 0).to_bytes().to_vec(), history_end.to_vec());
    batch.put(Space::Meta, meta::COMPACT_FINISHED.to_vec(), meta::sealed_i64(meta::COMPACT_FINISHED, to));
    engine.write(batch, Durability::Sync)?;
    Ok(PassOutcome::Finished)
}

/// A batch of keys to compact, and where the next batch starts in History, if there is more.
struct ChangedKeys {
    keys: Vec<Vec<u8>>,
    next: Option<Vec<u8>>,
}

/// Up to `keys_max` distinct keys changed in history from `from` (inclusive) to `end`
/// (exclusive), and where the next batch starts, if there is more.
fn changed_keys(engine: &dyn Engine, from: &[u8], end: &[u8], keys_max: usize) -> Result<ChangedKeys> {
    let mut keys = std::collections::BTreeSet::new();
    let mut cursor = engine.cursor(Space::History, Some(end));
    cursor.seek(from);
    while let Some(history_key) = cursor.key() {
        if keys.len() >= keys_max {
            return Ok(ChangedKeys { keys: keys.into_iter().collect(), next: Some(history_key.to_vec()) });
        }
        keys.insert(codec::unseal(Space::History, history_key, cursor.value())?.to_vec());
        cursor.next();
    }
    cursor.status()?;
    Ok(ChangedKeys { keys: keys.into_iter().collect(), next: None })
}

/// Adds to `batch` the deletes of `key`'s versions that compaction at `to` made unreachable.
fn obsolete_versions(engine: &dyn Engine, key: &[u8], to: i64, batch: &mut WriteBatch) -> Result<()> {
    let encoded = codec::encoded_key(key);
    let past_key = codec::past_all_versions(&encoded);
    let mut cursor = engine.cursor(Space::Kv, Some(&past_key));
    cursor.seek(&codec::kv_key(key, Revision::last_of(to)));
    let Some(newest) = cursor.key().map(<[u8]>::to_vec) else {
        return cursor.status();
    };
    let (_, newest_revision) = codec::decode_kv_key(&newest)?;
    let payload = codec::unseal(Space::Kv, &newest, cursor.value())?;
    let newest_goes = VersionRecord::is_tombstone(payload) && newest_revision.main < to;
    let mut older = Vec::new();
    cursor.next();
    while let Some(version) = cursor.key() {
        if older.len() == POINT_DELETES_PER_KEY_MAX {
            // Too many to list: one range delete from just after the newest kept version.
            older.clear();
            let mut after_newest = newest.clone();
            after_newest.push(0);
            batch.delete_range(Space::Kv, after_newest, past_key.clone());
            break;
        }
        older.push(version.to_vec());
        cursor.next();
    }
    cursor.status()?;
    for version in older {
        batch.delete(Space::Kv, version);
    }
    if newest_goes {
        batch.delete(Space::Kv, newest);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_keep_compaction_to_its_share_of_a_core() {
        let options = CompactionOptions { busy_percent: 10, pause_between_batches_ms: 10, ..Default::default() };
        assert_eq!(options.pause_after(Duration::from_millis(20)), Duration::from_millis(180));
        assert_eq!(options.pause_after(Duration::from_micros(100)), Duration::from_millis(10), "the least pause");
        let unthrottled = CompactionOptions { busy_percent: 100, pause_between_batches_ms: 0, ..Default::default() };
        assert_eq!(unthrottled.pause_after(Duration::from_millis(20)), Duration::ZERO);
    }
}
