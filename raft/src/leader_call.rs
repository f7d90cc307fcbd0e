//! Calls only the leader serves: writes, read indexes, lease clocks, membership changes and
//! leader transfer. [`Member::call_leader`] serves them here when this member leads and sends
//! them on to the leader otherwise (the peer `CallLeader` RPC), so a client may call any member.
//! A call is retried on another leader only when the refusal proves it was not applied.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use openraft::errors::{ChangeMembershipError, ClientWriteError, LinearizableReadError, RaftError};
use openraft::{ChangeMembers, ReadPolicy};
use serde::{Deserialize, Serialize};
use store::Command;

use crate::member::{Member, MemberError, MemberInfo};
use crate::proto::Frame;
use crate::types::{MemberNode, Request, TypeConfig};
use crate::write_batch::WriteResult;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum LeaderCall {
    Write(Command),
    /// A member's batch of client writes (`write_batch.rs`), proposed as one entry.
    Writes(Vec<Command>),
    /// The leader's commit index, confirmed with a quorum (the read index).
    ReadIndex,
    LeaseGrant {
        id: i64,
        ttl_seconds: i64,
    },
    LeaseRevoke {
        id: i64,
    },
    LeaseKeepAlive {
        id: i64,
    },
    LeaseTimeToLive {
        id: i64,
        keys: bool,
    },
    AddMember {
        peer_urls: Vec<String>,
        learner: bool,
        salt: u64,
    },
    RemoveMember {
        id: u64,
    },
    PromoteMember {
        id: u64,
    },
    /// Sets a member's record (a new peer URL, or its name and client URLs once it starts).
    UpdateMember {
        id: u64,
        node: MemberNode,
    },
    TransferLeader {
        to: u64,
    },
    Members,
    Alarms {
        disarm: bool,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum LeaderAnswer {
    Written(store::Result<store::Response>),
    /// One outcome per command of a [`LeaderCall::Writes`], in order.
    WrittenEach(Vec<WriteResult>),
    ReadIndex(u64),
    /// The lease's TTL after a keep-alive, or None for an unknown lease.
    KeepAlive(Option<i64>),
    TimeToLive(Option<LeaseTimeToLive>),
    MemberAdded(u64),
    Members(Vec<MemberInfo>),
    Alarms(Vec<crate::member::Alarm>),
    Done,
}

/// A lease as TimeToLive reports it, read on the leader (which holds the clocks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTimeToLive {
    pub remaining_seconds: i64,
    pub granted_ttl_seconds: i64,
    pub keys: Vec<bytes::Bytes>,
}

/// How far a learner's log may trail the leader's and still be promoted.
const PROMOTABLE_LAG_ENTRIES: u64 = 1000;

impl Member {
    /// Serves `call` on the leader, wherever this member is.
    pub(crate) async fn call_leader(&self, call: LeaderCall) -> Result<LeaderAnswer, MemberError> {
        let deadline = Instant::now() + self.request_timeout();
        loop {
            let attempt = match self.leader_id() {
                Some(leader) if leader == self.config.id => self.serve_leader_call(call.clone()).await,
                Some(leader) => self.send_to_leader(leader, &call).await,
                None => Err(MemberError::NotLeader { leader: None }),
            };
            match attempt {
                // Refused before anything was proposed: safe to try again on the (next) leader.
                Err(MemberError::NotLeader { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(self.config.heartbeat_interval_ms)).await;
                }
                Err(MemberError::NotLeader { leader: None }) => return Err(MemberError::Timeout),
                other => return other,
            }
        }
    }

    async fn send_to_leader(&self, leader: u64, call: &LeaderCall) -> Result<LeaderAnswer, MemberError> {
        let node = self.members().into_iter().find(|member| member.id == leader).map(|member| member.node);
        let Some(node) = node else { return Err(MemberError::NotLeader { leader: None }) };
        let mut client = self.channels.client(&node).map_err(MemberError::Unreachable)?;
        let payload = crate::codec::encode(call)?;
        let mut request = tonic::Request::new(Frame { payload });
        request.set_timeout(self.request_timeout());
        let read_only = matches!(
            call,
            LeaderCall::ReadIndex
                | LeaderCall::Alarms { disarm: false }
                | LeaderCall::LeaseKeepAlive { .. }
                | LeaderCall::LeaseTimeToLive { .. }
                | LeaderCall::Members
        );
        let frame = match client.call_leader(request).await {
            Ok(frame) => frame.into_inner(),
            // Never sent (no connection), or a read: safe to try the next leader. Otherwise a
            // write's fate is unknown, and the client decides.
            Err(status) if read_only || never_sent(&status) => return Err(MemberError::NotLeader { leader: None }),
            Err(status) if status.code() == tonic::Code::DeadlineExceeded => return Err(MemberError::Timeout),
            Err(status) => return Err(MemberError::Unreachable(format!("leader {leader:x}: {}", status.message()))),
        };
        crate::codec::decode::<Result<LeaderAnswer, MemberError>>(&frame.payload, "leader answer")?
    }

    /// Serves a call here, or refuses with `NotLeader` when this member does not lead.
    pub(crate) async fn serve_leader_call(&self, call: LeaderCall) -> Result<LeaderAnswer, MemberError> {
        if !self.raft.is_leader() {
            return Err(MemberError::NotLeader { leader: self.leader_id() });
        }
        match call {
            LeaderCall::Write(command) => {
                if !self.quota.admits(&command, || self.store.size_bytes()) {
                    return Err(MemberError::NoSpace);
                }
                self.propose(command).await.map(LeaderAnswer::Written)
            }
            LeaderCall::Writes(commands) => self.propose_admitted(commands).await.map(LeaderAnswer::WrittenEach),
            LeaderCall::ReadIndex => {
                // Every member's barrier lands here: they share heartbeat rounds as one
                // member's barriers do, so the leader confirms its leadership once per round
                // trip instead of once per member.
                let index = self
                    .leader_read_rounds
                    .read_index(|| async {
                        let linearizer =
                            self.raft.get_read_linearizer(ReadPolicy::ReadIndex).await.map_err(read_error)?;
                        Ok(linearizer.read_log_id().index())
                    })
                    .await?;
                Ok(LeaderAnswer::ReadIndex(index))
            }
            LeaderCall::LeaseGrant { id, ttl_seconds } => {
                if !self.quota.admits(&Command::LeaseGrant { id, ttl_seconds }, || self.store.size_bytes()) {
                    return Err(MemberError::NoSpace);
                }
                let result = self.propose(Command::LeaseGrant { id, ttl_seconds }).await?;
                if result.is_ok() {
                    self.lessor.renew(id, ttl_seconds);
                }
                Ok(LeaderAnswer::Written(result))
            }
            LeaderCall::LeaseRevoke { id } => {
                let result = self.propose(Command::LeaseRevoke { id }).await?;
                if result.is_ok() {
                    self.lessor.forget(id);
                }
                Ok(LeaderAnswer::Written(result))
            }
            LeaderCall::LeaseKeepAlive { id } => {
                self.lessor_ready().await?;
                Ok(LeaderAnswer::KeepAlive(self.lessor.keep_alive(id)))
            }
            LeaderCall::LeaseTimeToLive { id, keys } => {
                self.lessor_ready().await?;
                let lease = self.store.lease(id)?;
                let remaining = self.lessor.remaining_seconds(id);
                let (Some(lease), Some(remaining_seconds)) = (lease, remaining) else {
                    return Ok(LeaderAnswer::TimeToLive(None));
                };
                let keys = if keys { self.store.lease_keys(id)? } else { Vec::new() };
                Ok(LeaderAnswer::TimeToLive(Some(LeaseTimeToLive {
                    remaining_seconds,
                    granted_ttl_seconds: lease.ttl_seconds,
                    keys,
                })))
            }
            LeaderCall::AddMember { peer_urls, learner, salt } => self.add_member_here(peer_urls, learner, salt).await,
            LeaderCall::RemoveMember { id } => self.remove_member_here(id).await,
            LeaderCall::PromoteMember { id } => self.promote_member_here(id).await,
            LeaderCall::UpdateMember { id, node } => {
                if !self.members().iter().any(|member| member.id == id) {
                    return Err(MemberError::MemberNotFound);
                }
                self.change_membership(ChangeMembers::SetNodes(BTreeMap::from([(id, node)]))).await
            }
            LeaderCall::TransferLeader { to } => self.transfer_leader_here(to).await,
            LeaderCall::Members => Ok(LeaderAnswer::Members(self.members())),
            LeaderCall::Alarms { disarm } => {
                if disarm {
                    self.quota.disarm();
                }
                let alarms = if self.quota.alarmed() {
                    vec![crate::member::Alarm::NoSpace { member_id: self.config.id }]
                } else {
                    Vec::new()
                };
                Ok(LeaderAnswer::Alarms(alarms))
            }
        }
    }

    /// Waits until a new leader has restored the lease clocks, so a lease is never reported
    /// lost in the moment between election and restoration.
    async fn lessor_ready(&self) -> Result<(), MemberError> {
        let deadline = Instant::now() + self.request_timeout();
        while !self.lessor.is_ready() {
            if !self.raft.is_leader() {
                return Err(MemberError::NotLeader { leader: self.leader_id() });
            }
            if Instant::now() >= deadline {
                return Err(MemberError::Timeout);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Proposes one command through this member's Raft (which must lead).
    async fn propose(&self, command: Command) -> Result<store::Result<store::Response>, MemberError> {
        let mut results = self.propose_all(vec![command]).await?;
        match (results.pop(), results.is_empty()) {
            (Some(result), true) => Ok(result),
            _ => Err(MemberError::Raft("an entry of one command applied as another count".into())),
        }
    }

    /// Proposes, as one entry, the commands the quota admits; the others are refused with
    /// `NoSpace`, each on its own, as etcd refuses each request past its quota. A failed
    /// proposal fails the call, so a refusal before proposing (not the leader) is retried on the
    /// next leader like a single write, never handed to the clients as their answer.
    async fn propose_admitted(&self, commands: Vec<Command>) -> Result<Vec<WriteResult>, MemberError> {
        let mut outcomes: Vec<Option<WriteResult>> = Vec::with_capacity(commands.len());
        let mut admitted = Vec::with_capacity(commands.len());
        for command in commands {
            if self.quota.admits(&command, || self.store.size_bytes()) {
                admitted.push(command);
                outcomes.push(None);
            } else {
                outcomes.push(Some(Err(MemberError::NoSpace)));
            }
        }
        let proposed = admitted.len();
        let results = if admitted.is_empty() { Vec::new() } else { self.propose_all(admitted).await? };
        if results.len() != proposed {
            return Err(MemberError::Raft("an entry applied with another count of results".into()));
        }
        let mut results = results.into_iter().map(Ok);
        Ok(outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_or_else(|| results.next().expect("one result per admitted command")))
            .collect())
    }

    /// Proposes commands as one entry through this member's Raft (which must lead); one
    /// result per command.
    async fn propose_all(&self, commands: Vec<Command>) -> Result<Vec<store::Result<store::Response>>, MemberError> {
        match self.raft.client_write(Request { commands }).await {
            Ok(response) => match response.data {
                crate::Reply::Applied(results) => Ok(results),
                crate::Reply::NoCommand => Err(MemberError::Raft("a command entry applied as no command".into())),
            },
            Err(error) => Err(write_error(error)),
        }
    }

    /// Changes the membership; a change that collides with another one in flight (a member
    /// publishing its URLs, say) was not applied, so it waits for that one and tries again.
    async fn change_membership(&self, change: ChangeMembers<u64, MemberNode>) -> Result<LeaderAnswer, MemberError> {
        let deadline = Instant::now() + self.request_timeout();
        loop {
            match self.raft.change_membership(change.clone(), false).await {
                Ok(_) => return Ok(LeaderAnswer::Done),
                Err(RaftError::APIError(
                    ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(_))
                    | ClientWriteError::PreconditionFailed(_),
                )) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(self.config.heartbeat_interval_ms)).await;
                }
                Err(error) => return Err(write_error(error)),
            }
        }
    }

    async fn add_member_here(
        &self,
        peer_urls: Vec<String>,
        learner: bool,
        salt: u64,
    ) -> Result<LeaderAnswer, MemberError> {
        let members = self.members();
        if members.iter().any(|member| member.node.peer_urls.iter().any(|url| peer_urls.contains(url))) {
            return Err(MemberError::PeerUrlExists);
        }
        let id = crate::identity::added_member_id(&peer_urls, &self.config.cluster_token, salt);
        let node = MemberNode { name: String::new(), peer_urls, client_urls: Vec::new() };
        let change = if learner {
            ChangeMembers::AddNodes(BTreeMap::from([(id, node)]))
        } else {
            ChangeMembers::AddVoters(BTreeMap::from([(id, node)]))
        };
        self.change_membership(change).await?;
        Ok(LeaderAnswer::MemberAdded(id))
    }

    async fn remove_member_here(&self, id: u64) -> Result<LeaderAnswer, MemberError> {
        let Some(member) = self.members().into_iter().find(|member| member.id == id) else {
            return Err(MemberError::MemberNotFound);
        };
        let change = if member.is_learner {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        };
        self.change_membership(change).await
    }

    async fn promote_member_here(&self, id: u64) -> Result<LeaderAnswer, MemberError> {
        let Some(member) = self.members().into_iter().find(|member| member.id == id) else {
            return Err(MemberError::MemberNotFound);
        };
        if !member.is_learner {
            return Err(MemberError::NotLearner);
        }
        // etcd promotes only a learner whose log is close to the leader's.
        let metrics = self.metrics();
        let last = metrics.last_log_index.unwrap_or(0);
        let matched = metrics
            .replication
            .as_ref()
            .and_then(|replication| replication.get(&id).cloned().flatten())
            .map_or(0, |log_id| log_id.index);
        if last.saturating_sub(matched) > PROMOTABLE_LAG_ENTRIES {
            return Err(MemberError::LearnerNotReady);
        }
        self.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id]))).await
    }

    async fn transfer_leader_here(&self, to: u64) -> Result<LeaderAnswer, MemberError> {
        if to == self.config.id {
            return Ok(LeaderAnswer::Done);
        }
        if !self.members().iter().any(|member| member.id == to && !member.is_learner) {
            return Err(MemberError::BadTransferee);
        }
        self.raft.trigger().transfer_leader(to).await.map_err(|error| MemberError::Raft(error.to_string()))?;
        let wait = self.raft.wait(Some(self.request_timeout()));
        match wait.current_leader(to, "leader transfer").await {
            Ok(_) => Ok(LeaderAnswer::Done),
            Err(_) => Err(MemberError::Timeout),
        }
    }
}

/// A refused or failed proposal; only a refusal before appending may be retried elsewhere.
pub(crate) fn write_error(error: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> MemberError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            MemberError::NotLeader { leader: forward.leader_id }
        }
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => MemberError::LeaderChanged,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(error)) => {
            MemberError::Membership(error.to_string())
        }
        other => MemberError::Raft(other.to_string()),
    }
}

pub(crate) fn read_error(error: RaftError<TypeConfig, LinearizableReadError<TypeConfig>>) -> MemberError {
    match error {
        RaftError::APIError(LinearizableReadError::ForwardToLeader(forward)) => {
            MemberError::NotLeader { leader: forward.leader_id }
        }
        RaftError::APIError(LinearizableReadError::QuorumNotEnough(_)) => MemberError::Timeout,
        other => MemberError::Raft(other.to_string()),
    }
}

/// Whether a failed call certainly never reached the leader: no connection could be made, or
/// hyper gave the request back unsent because the connection closed first ("operation was
/// canceled"; a cached connection to a leader that was just killed ends that way).
fn never_sent(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_canceled) {
            return true;
        }
        source = error.source();
    }
    status.message().contains("connect error")
}
