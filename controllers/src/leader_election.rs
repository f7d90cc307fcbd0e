//! Leader election for the control loops, as kube-controller-manager does it with client-go's
//! `leaderelection` package and a Lease lock: every `keel server` member is a candidate, and
//! only the holder of the Lease `kube-system/kube-controller-manager` runs the controllers.
//!
//! The states of one candidate ([`run_elected`]):
//! - *candidate*: every retry period (jittered), read the Lease; take it when it is missing,
//!   released (no holder), or expired. Expired is judged on this process's clock only: the
//!   Lease counts as expired when its record has not changed for `leaseDurationSeconds` since
//!   this candidate first saw that record, so clocks are never compared across members (and a
//!   fresh candidate waits a whole lease duration before taking over from a holder it saw).
//! - *leading*: the controllers run; the Lease is renewed every retry period by an update
//!   carrying the resourceVersion read (a conflict means someone else wrote it). When renewing
//!   has not succeeded for the renew deadline, or another holder is seen, the controllers are
//!   stopped and the candidate starts over. The renew deadline being shorter than the lease
//!   duration is what keeps two members from running the controllers at once.
//! - *stopping*: on shutdown the controllers stop and the Lease is released (holder cleared,
//!   duration 1 s) so another member takes over without waiting the lease out.
//!
//! Identities: `keel server` names its candidate after its store member (`name_memberid`): unique
//! among the members, and one process at a time per member (its data directory is locked), so a
//! member restarted after a crash finds the Lease its own and leads again at once instead of a
//! lease duration later. A process without such an id takes [`unique_identity`] (`name_uuid`,
//! as kube-controller-manager's `hostname_uuid`).
//!
//! kube-controller-manager exits when it loses the Lease and is restarted by its supervisor;
//! here the store and the API share the process, so the candidate goes back to waiting.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use rand::Rng;
use tokio::time::Instant;

use crate::error::{api_code, is_conflict, Result};
use crate::Shutdown;

/// Where and how long the Lease is held (kube-controller-manager's `--leader-elect-*` flags).
#[derive(Debug, Clone)]
pub struct LeaderElectionConfig {
    pub namespace: String,
    pub name: String,
    /// This candidate's holderIdentity: no two live processes may share one.
    pub identity: String,
    /// How long a holder's record stays valid without a renewal (`--leader-elect-lease-duration`).
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before it stops leading (`--leader-elect-renew-deadline`).
    pub renew_deadline: Duration,
    /// Pause between attempts to acquire or renew (`--leader-elect-retry-period`).
    pub retry_period: Duration,
}

/// client-go's `JitterFactor`: candidates wait up to 2.2 retry periods between attempts.
const JITTER_FACTOR: f64 = 1.2;
/// The lease duration a released Lease is left with (client-go's release does the same).
const RELEASED_LEASE_SECONDS: i32 = 1;

impl LeaderElectionConfig {
    /// kube-controller-manager's defaults: `kube-system/kube-controller-manager`, 15 s, 10 s, 2 s.
    pub fn kube_controller_manager(identity: String) -> LeaderElectionConfig {
        LeaderElectionConfig {
            namespace: "kube-system".into(),
            name: "kube-controller-manager".into(),
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// `name` plus a random UUID, as kube-controller-manager's `hostname_uuid`.
pub fn unique_identity(name: &str) -> String {
    let bits: u128 = rand::random();
    // Version 4, variant 1 (RFC 4122).
    let bits = (bits & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!("{name}_{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// The Lease's record as last read, and when this process saw it change.
#[derive(Debug)]
struct Observed {
    spec: LeaseSpec,
    changed_at: Instant,
}

/// Why a leading term ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermEnd {
    /// Renewing failed past the renew deadline, or another candidate holds the Lease.
    Lost,
    /// Shutdown was asked for.
    Stopped,
}

#[derive(Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    observed: Option<Observed>,
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaderElectionConfig) -> LeaderElector {
        LeaderElector { api: Api::namespaced(client, &config.namespace), config, observed: None }
    }

    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// The holder in the record last read, if any.
    pub fn observed_holder(&self) -> Option<&str> {
        self.observed.as_ref().and_then(|observed| observed.spec.holder_identity.as_deref()).filter(|h| !h.is_empty())
    }

    fn observe(&mut self, lease: &Lease) {
        let spec = lease.spec.clone().unwrap_or_default();
        if self.observed.as_ref().is_none_or(|observed| observed.spec != spec) {
            self.observed = Some(Observed { spec, changed_at: Instant::now() });
        }
    }

    /// One attempt (client-go's `tryAcquireOrRenew`): creates the Lease, or takes or renews it
    /// by a conditional update. True when this candidate holds it afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let now = MicroTime(Timestamp::now());
        let lease_seconds = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let mut wanted = LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(lease_seconds),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        };
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(wanted),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created);
                    Ok(true)
                }
                // Another candidate created it first.
                Err(error) if api_code(&error) == Some(409) => Ok(false),
                Err(error) => Err(error.into()),
            };
        };
        self.observe(&lease);
        let observed = self.observed.as_ref().expect("observed just now");
        let held_by_me = self.observed_holder() == Some(self.config.identity.as_str());
        let duration = Duration::from_secs(observed.spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
        let expired = observed.changed_at + duration <= Instant::now();
        if self.observed_holder().is_some() && !held_by_me && !expired {
            return Ok(false);
        }
        if held_by_me {
            wanted.acquire_time = observed.spec.acquire_time.clone();
            wanted.lease_transitions = observed.spec.lease_transitions;
        } else {
            wanted.lease_transitions = Some(observed.spec.lease_transitions.unwrap_or(0) + 1);
        }
        // The resourceVersion read stays in the metadata: the update is conditional on it.
        lease.spec = Some(wanted);
        match self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
            Ok(updated) => {
                self.observe(&updated);
                Ok(true)
            }
            Err(error) if is_conflict(&error) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// One attempt bounded by the renew deadline, errors logged: true when this candidate holds
    /// the Lease afterwards.
    async fn attempt(&mut self) -> bool {
        match tokio::time::timeout(self.config.renew_deadline, self.try_acquire_or_renew()).await {
            Ok(Ok(held)) => held,
            Ok(Err(error)) => {
                tracing::debug!(%error, lease = self.config.name, "acquiring or renewing the lease failed");
                false
            }
            Err(_) => {
                tracing::debug!(lease = self.config.name, "acquiring or renewing the lease timed out");
                false
            }
        }
    }

    fn jittered_retry_period(&self) -> Duration {
        self.config.retry_period.mul_f64(1.0 + rand::thread_rng().gen_range(0.0..JITTER_FACTOR))
    }

    /// Tries until this candidate holds the Lease (true) or shutdown (false).
    pub async fn acquire(&mut self, shutdown: &Shutdown) -> bool {
        loop {
            if shutdown.is_set() {
                return false;
            }
            if self.attempt().await {
                return true;
            }
            tokio::select! {
                _ = shutdown.wait() => return false,
                _ = tokio::time::sleep(self.jittered_retry_period()) => {}
            }
        }
    }

    /// Renews every retry period until renewing fails past the renew deadline, another holder
    /// is seen, or shutdown.
    pub async fn renew(&mut self, shutdown: &Shutdown) -> TermEnd {
        loop {
            tokio::select! {
                _ = shutdown.wait() => return TermEnd::Stopped,
                _ = tokio::time::sleep(self.config.retry_period) => {}
            }
            let deadline = Instant::now() + self.config.renew_deadline;
            loop {
                let renewed = tokio::select! {
                    _ = shutdown.wait() => return TermEnd::Stopped,
                    renewed = tokio::time::timeout_at(deadline, self.attempt()) => renewed.unwrap_or(false),
                };
                if renewed {
                    break;
                }
                if self.observed_holder().is_some_and(|holder| holder != self.config.identity) {
                    tracing::warn!(holder = self.observed_holder(), "the lease is held by another candidate");
                    return TermEnd::Lost;
                }
                if Instant::now() + self.config.retry_period >= deadline {
                    return TermEnd::Lost;
                }
                tokio::select! {
                    _ = shutdown.wait() => return TermEnd::Stopped,
                    _ = tokio::time::sleep(self.config.retry_period) => {}
                }
            }
        }
    }

    /// Gives the Lease up if this candidate holds it, so another takes over at once.
    pub async fn release(&mut self) {
        match tokio::time::timeout(self.config.renew_deadline, self.try_release()).await {
            Ok(Ok(())) => tracing::info!(identity = self.config.identity, "released the controllers' lease"),
            Ok(Err(error)) => tracing::warn!(%error, "releasing the controllers' lease failed"),
            Err(_) => tracing::warn!("releasing the controllers' lease timed out"),
        }
    }

    async fn try_release(&self) -> Result<()> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else { return Ok(()) };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        let now = MicroTime(Timestamp::now());
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(RELEASED_LEASE_SECONDS);
        spec.acquire_time = Some(now.clone());
        spec.renew_time = Some(now);
        lease.spec = Some(spec);
        self.api.replace(&self.config.name, &PostParams::default(), &lease).await?;
        Ok(())
    }
}

/// Runs `lead` for as long as this candidate holds the Lease, again each time it takes it back,
/// until `shutdown` completes. `lead` gets a shutdown set when the term ends and must return
/// soon after (the controllers stop within [`crate::SHUTDOWN_GRACE`]).
pub async fn run_elected<Lead, Leading>(
    elector: LeaderElector,
    shutdown: impl Future<Output = ()> + Send + 'static,
    lead: Lead,
) where
    Lead: Fn(Shutdown) -> Leading,
    Leading: Future<Output = ()> + Send + 'static,
{
    let mut elector = elector;
    let shutdown = Shutdown::on(shutdown);
    loop {
        tracing::info!(identity = elector.identity(), "waiting to acquire the controllers' lease");
        if !elector.acquire(&shutdown).await {
            return;
        }
        tracing::info!(identity = elector.identity(), "acquired the controllers' lease; leading");
        let (end_term, term_ended) = tokio::sync::watch::channel(false);
        let term_shutdown = {
            let shutdown = shutdown.clone();
            Shutdown::on(async move {
                let mut term_ended = term_ended;
                tokio::select! {
                    _ = shutdown.wait() => {}
                    _ = term_ended.wait_for(|ended| *ended) => {}
                }
            })
        };
        let leading = tokio::spawn(lead(term_shutdown));
        let end = elector.renew(&shutdown).await;
        let _ = end_term.send(true);
        if let Err(error) = leading.await {
            tracing::error!(%error, "the controllers' task failed");
        }
        match end {
            TermEnd::Stopped => {
                elector.release().await;
                return;
            }
            TermEnd::Lost => {
                tracing::warn!(identity = elector.identity(), "lost the controllers' lease; stopped leading")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_unique_and_uuid_shaped() {
        let first = unique_identity("n1");
        let second = unique_identity("n1");
        assert_ne!(first, second);
        let uuid = first.strip_prefix("n1_").expect("the member name comes first");
        let groups: Vec<usize> = uuid.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(&uuid[14..15], "4", "version 4: {uuid}");
        assert!(matches!(&uuid[19..20], "8" | "9" | "a" | "b"), "variant 1: {uuid}");
    }

    #[test]
    fn the_renew_deadline_ends_a_term_before_the_lease_expires() {
        let config = LeaderElectionConfig::kube_controller_manager("n1_x".into());
        assert!(config.renew_deadline + config.retry_period + crate::SHUTDOWN_GRACE < config.lease_duration);
    }
}
