//! The member's side of KIP-848 (`group.protocol=consumer`): one ConsumerGroupHeartbeat
//! carries the subscription and what the member owns, and brings back its member epoch
//! and, when it changed, its assignment (topics by id), computed by the broker. The
//! member gives up partitions it is no longer assigned (committing them first with
//! auto-commit), reports that in its next heartbeat, sent at once, and takes new ones.
//!
//! Heartbeats are sent from `poll` (every `heartbeat_interval_ms` the broker names, or at
//! once after a change), not from the heartbeat task: an application that stops polling
//! for longer than the session stops heartbeating (where Java's background thread would
//! go on until `max.poll.interval.ms`).
//!
//! A revocation is carried out at the start of the next `poll`, as Java's consumer runs
//! `onPartitionsRevoked` on the application thread: the records that poll returns, of
//! the revoked partitions too, are processed first, and only then are those partitions
//! committed (auto-commit), given up and the revocation reported. A coordinator that
//! handed them over before that report would have two members processing them at once.

use super::assignor::TopicPartition;
use super::wire::s;
use super::{GroupConsumer, GroupEvent};
use crate::client::ClientError;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;

/// MemberEpoch of a member leaving (KIP-848); -2 for a static member leaving for now.
const LEAVE_EPOCH: i32 = -1;
const STATIC_LEAVE_EPOCH: i32 = -2;

/// Which group protocol a member speaks (`group.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupProtocol {
    /// JoinGroup / SyncGroup / Heartbeat, the client-side assignors.
    #[default]
    Classic,
    /// KIP-848's ConsumerGroupHeartbeat, the broker's assignor.
    Consumer,
}

/// What the consumer protocol keeps beside the member's shared state.
#[derive(Debug, Clone)]
pub(super) struct ConsumerProtocolState {
    pub next_heartbeat: Instant,
    /// Send the next heartbeat now (something changed) and with every field (after a
    /// join or an error).
    pub beat_now: bool,
    pub full: bool,
    pub interval: Duration,
    /// Partitions the coordinator asked back, with the epoch they were owned in: given up
    /// at the start of the next `poll`.
    pub revoking: Option<(i32, Vec<TopicPartition>)>,
}

impl ConsumerProtocolState {
    pub fn new() -> ConsumerProtocolState {
        ConsumerProtocolState {
            next_heartbeat: Instant::now(),
            beat_now: true,
            full: true,
            interval: Duration::from_millis(5_000),
            revoking: None,
        }
    }
}

impl GroupConsumer {
    /// A heartbeat if one is due, and what its answer asks for.
    pub(super) async fn consumer_protocol_round(&mut self) -> Result<(), ClientError> {
        if let Some((epoch, asked)) = self.kip848.revoking.take() {
            let revoked: Vec<TopicPartition> = asked
                .into_iter()
                .filter(|tp| self.owned.contains(tp))
                .collect();
            if !revoked.is_empty() {
                self.revoke(epoch, &revoked).await;
                // Tell the coordinator at once: another member may wait for them.
                self.kip848.beat_now = true;
            }
        }
        let now = Instant::now();
        if !self.kip848.beat_now && now < self.kip848.next_heartbeat {
            return Ok(());
        }
        self.kip848.beat_now = false;
        let epoch = self.generation.max(0);
        let req = self.heartbeat_request(epoch).await?;
        let resp = match self.coordinator_request(&req, None).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::debug!(error = %e, "ConsumerGroupHeartbeat failed; retrying");
                return self.retry_heartbeat_later(false);
            }
        };
        match ResponseError::try_from_code(resp.error_code) {
            None => self.apply_heartbeat(&resp).await,
            Some(ResponseError::UnknownMemberId | ResponseError::FencedMemberEpoch) => {
                self.fenced();
                Ok(())
            }
            Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable) => {
                self.retry_heartbeat_later(true)
            }
            Some(ResponseError::CoordinatorLoadInProgress | ResponseError::RequestTimedOut) => {
                self.retry_heartbeat_later(false)
            }
            Some(_) => {
                let message = resp.error_message.map(|m| m.to_string());
                let e = ClientError::kafka(
                    resp.error_code,
                    message.unwrap_or_else(|| "ConsumerGroupHeartbeat".into()),
                );
                self.fatal = Some(e.clone());
                Err(e)
            }
        }
    }

    fn retry_heartbeat_later(&mut self, rediscover: bool) -> Result<(), ClientError> {
        if rediscover {
            self.coordinator_dead();
        }
        self.kip848.full = true;
        self.kip848.next_heartbeat = Instant::now() + self.backoff();
        Ok(())
    }

    async fn heartbeat_request(
        &mut self,
        epoch: i32,
    ) -> Result<ConsumerGroupHeartbeatRequest, ClientError> {
        let full = self.kip848.full || epoch == 0;
        let mut owned: BTreeMap<u128, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in &self.owned {
            let id = self.consumer.client().topic(topic).await?.id;
            owned.entry(id).or_default().push(*partition);
        }
        let owned = owned
            .into_iter()
            .map(|(id, partitions)| {
                consumer_group_heartbeat_request::TopicPartitions::default()
                    .with_topic_id(uuid::Uuid::from_u128(id))
                    .with_partitions(partitions)
            })
            .collect();
        Ok(ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(&self.config.group_id)))
            .with_member_id(s(&self.member_id))
            .with_member_epoch(epoch)
            .with_instance_id(self.config.group_instance_id.as_deref().map(s))
            .with_rebalance_timeout_ms(if full {
                self.config.max_poll_interval_ms
            } else {
                -1
            })
            .with_subscribed_topic_names(
                full.then(|| self.config.topics.iter().map(|t| TopicName(s(t))).collect()),
            )
            .with_topic_partitions(Some(owned)))
    }

    /// A successful answer: the member's id and epoch, and its new assignment if any.
    async fn apply_heartbeat(
        &mut self,
        resp: &ConsumerGroupHeartbeatResponse,
    ) -> Result<(), ClientError> {
        if let Some(id) = &resp.member_id {
            self.member_id = id.to_string();
        }
        let epoch_before = self.generation;
        self.generation = resp.member_epoch;
        self.kip848.full = false;
        self.kip848.interval = Duration::from_millis(resp.heartbeat_interval_ms.max(1) as u64);
        self.kip848.next_heartbeat = Instant::now() + self.kip848.interval;
        let Some(assignment) = &resp.assignment else {
            return Ok(());
        };
        let target = self.assignment_names(assignment).await?;
        // Given up at the next poll, after the application processed what this one returns.
        let revoked: Vec<TopicPartition> = self.owned.difference(&target).cloned().collect();
        self.kip848.revoking = (!revoked.is_empty()).then_some((self.generation, revoked));
        let added: Vec<TopicPartition> = target.difference(&self.owned).cloned().collect();
        self.owned.extend(added.iter().cloned());
        self.unpositioned.extend(added.iter().cloned());
        if !added.is_empty() || epoch_before != self.generation {
            self.emit(GroupEvent::Assigned {
                generation: self.generation,
                member_id: self.member_id.clone(),
                partitions: target.iter().cloned().collect(),
            });
        }
        if !added.is_empty() {
            // Tell the coordinator at once that they are taken.
            self.kip848.beat_now = true;
        }
        Ok(())
    }

    /// An assignment's topic ids as names, from the metadata of the subscribed topics
    /// (refreshed once if an id is unknown; partitions of still unknown ids wait for
    /// the next assignment).
    async fn assignment_names(
        &mut self,
        assignment: &consumer_group_heartbeat_response::Assignment,
    ) -> Result<BTreeSet<TopicPartition>, ClientError> {
        let mut names: BTreeMap<u128, String> = BTreeMap::new();
        for refresh in [false, true] {
            names.clear();
            for topic in self.config.topics.clone() {
                if refresh {
                    self.consumer.client().forget_topic(&topic);
                }
                if let Ok(info) = self.consumer.client().topic(&topic).await {
                    names.insert(info.id, topic);
                }
            }
            let known = assignment
                .topic_partitions
                .iter()
                .all(|t| names.contains_key(&t.topic_id.as_u128()));
            if known {
                break;
            }
        }
        Ok(assignment
            .topic_partitions
            .iter()
            .filter_map(|t| names.get(&t.topic_id.as_u128()).map(|n| (n, t)))
            .flat_map(|(name, t)| t.partitions.iter().map(move |p| (name.clone(), *p)))
            .collect())
    }

    /// The member is no longer in the group: its partitions are lost; join again.
    pub(super) fn fenced(&mut self) {
        self.kip848.revoking = None;
        self.lose_owned();
        self.generation = -1;
        // Rejoin under the same member id with epoch 0, as Kafka's clients do (KIP-1082):
        // the coordinator restarts that member at once instead of keeping its old entry,
        // and its partitions, until the session times out; a static member's rejoin is not
        // taken for another holder of its instance (UNRELEASED_INSTANCE_ID).
        self.kip848.full = true;
        self.kip848.beat_now = true;
    }

    /// Leave with MemberEpoch -1 (-2 for a static member), best effort.
    pub(super) async fn consumer_protocol_leave(&mut self) {
        if self.generation < 0 || self.member_id.is_empty() {
            return;
        }
        let epoch = if self.config.group_instance_id.is_some() {
            STATIC_LEAVE_EPOCH
        } else {
            LEAVE_EPOCH
        };
        let req = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(&self.config.group_id)))
            .with_member_id(s(&self.member_id))
            .with_member_epoch(epoch)
            .with_instance_id(self.config.group_instance_id.as_deref().map(s));
        if let Err(e) = self.coordinator_request(&req, None).await {
            tracing::debug!(error = %e, "leaving the consumer group failed");
        }
    }
}
