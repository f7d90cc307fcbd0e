//! etcd's `--auto-compaction-mode` / `--auto-compaction-retention`, run by the leader: it
//! proposes `Compact` through the log like any client, so every member compacts at the same
//! revision.
//!
//! - `revision` mode keeps the last `retention` revisions: every five minutes it compacts to
//!   the current revision minus the retention.
//! - `periodic` mode keeps a time window: it samples the revision every tenth of the window and
//!   compacts to the revision sampled one window ago.

use std::collections::VecDeque;
use std::time::Duration;

use store::Command;

use crate::leader_call::LeaderCall;
use crate::member::Member;

/// How revision-mode compaction is paced (etcd checks every five minutes).
const REVISION_MODE_CHECK: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Keep this many revisions.
    Revisions(i64),
    /// Keep this much time.
    Window(Duration),
}

impl Member {
    pub(crate) fn spawn_auto_compaction(&self, policy: AutoCompaction) {
        let member = self.clone();
        tokio::spawn(async move {
            let tick_every = match policy {
                AutoCompaction::Revisions(_) => REVISION_MODE_CHECK,
                AutoCompaction::Window(window) => (window / 10).max(Duration::from_millis(100)),
            };
            let mut tick = tokio::time::interval(tick_every);
            // Periodic mode: revisions sampled each tick, oldest first.
            let mut samples: VecDeque<i64> = VecDeque::new();
            let mut compacted = 0;
            loop {
                tick.tick().await;
                if member.is_stopping() {
                    return;
                }
                let current = member.store.revision();
                let target = match policy {
                    AutoCompaction::Revisions(keep) => current - keep,
                    AutoCompaction::Window(_) => {
                        samples.push_back(current);
                        // Eleven samples span the window: the first is one window old.
                        if samples.len() <= 10 {
                            continue;
                        }
                        samples.pop_front().unwrap_or(0)
                    }
                };
                if target <= compacted.max(member.store.compact_revision()) || !member.raft.is_leader() {
                    continue;
                }
                match member.serve_leader_call(LeaderCall::Write(Command::Compact { revision: target })).await {
                    Ok(_) => {
                        tracing::info!(revision = target, "auto-compaction");
                        compacted = target;
                    }
                    Err(error) => tracing::debug!(%error, "auto-compaction skipped"),
                }
            }
        });
    }
}
