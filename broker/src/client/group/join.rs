//! Finding the coordinator, joining, the leader's assignment, SyncGroup, applying an
//! assignment (eager or cooperative), positions from committed offsets, leaving.

use super::assignor::{Assignor, MemberSubscription, TopicPartition};
use super::heartbeat::lock;
use super::wire::{self, s, Reaction};
use super::{GroupConsumer, GroupEvent, PositionSource};
use crate::client::{ClientError, Connection, OffsetReset};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Request;
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;

/// The embedded protocol's type in JoinGroup and SyncGroup.
const PROTOCOL_TYPE: &str = "consumer";

/// How one join attempt ended.
enum Attempt {
    /// A generation and this member's assignment.
    Joined {
        generation: i32,
        protocol: Assignor,
        assigned: BTreeSet<TopicPartition>,
    },
    /// Try again now (new member id, rebalance in progress).
    Again,
    /// Try again after a backoff.
    Later,
}

impl GroupConsumer {
    /// Send a request to the coordinator, finding it and connecting first when needed.
    /// Pending async commits are answered first (one connection, answers in order).
    pub(super) async fn coordinator_request<R: Request>(
        &mut self,
        req: &R,
        timeout: Option<Duration>,
    ) -> Result<R::Response, ClientError> {
        self.drain_async_commits().await;
        let normal = self.consumer.client().timeout();
        let conn = self.coordinator().await?;
        if let Some(t) = timeout {
            conn.set_timeout(t.max(normal));
        }
        let result = conn.request(req).await;
        conn.set_timeout(normal);
        if result.is_err() {
            self.coordinator_dead();
        }
        result
    }

    /// The coordinator connection, found with FindCoordinator when unknown.
    pub(super) async fn coordinator(&mut self) -> Result<&mut Connection, ClientError> {
        if self.coordinator.as_ref().is_some_and(|c| c.is_broken()) {
            self.coordinator_dead();
        }
        if self.coordinator.is_none() {
            let addr = self.find_coordinator().await?;
            let client = self.consumer.client();
            let mut conn = Connection::connect(&addr, client.client_id(), client.timeout()).await?;
            // KIP-848 v0: the coordinator names a new member (deterministic in the lab,
            // where v1 would need the client to draw a random id).
            conn.pin_version(ApiKey::ConsumerGroupHeartbeat, 0);
            lock(&self.shared).coordinator = Some(addr);
            self.coordinator = Some(conn);
        }
        Ok(self.coordinator.as_mut().expect("set above"))
    }

    async fn find_coordinator(&mut self) -> Result<String, ClientError> {
        let req = FindCoordinatorRequest::default()
            .with_key(s(&self.config.group_id))
            .with_key_type(0);
        let client = self.consumer.client();
        let result = client.any_connection().await?.request(&req).await;
        let resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                client.disconnect_all();
                return Err(e);
            }
        };
        if resp.error_code != 0 {
            let message = resp.error_message.map(|m| m.to_string());
            return Err(ClientError::kafka(
                resp.error_code,
                message.unwrap_or_else(|| "FindCoordinator".into()),
            ));
        }
        Ok(format!("{}:{}", resp.host, resp.port))
    }

    /// Join until a generation is complete, the deadline passes (Ok, no generation yet)
    /// or a fatal error.
    pub(super) async fn ensure_active_group(
        &mut self,
        deadline: Instant,
    ) -> Result<(), ClientError> {
        self.prepare_join().await;
        while self.need_join {
            let attempt = match self.join_once().await {
                Ok(attempt) => attempt,
                Err(e) if self.fatal.is_some() => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, group = self.config.group_id, "join failed");
                    Attempt::Later
                }
            };
            match attempt {
                Attempt::Joined {
                    generation,
                    protocol,
                    assigned,
                } => self.complete_join(generation, protocol, assigned).await,
                Attempt::Again => {}
                Attempt::Later => tokio::time::sleep(self.backoff()).await,
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Ok(())
    }

    /// Before rejoining (Java's onJoinPrepare): commit the positions when auto-commit is
    /// on; eager protocols revoke every partition, cooperative ones keep them.
    async fn prepare_join(&mut self) {
        lock(&self.shared).active = false;
        if self.generation < 0 || self.owned.is_empty() {
            return;
        }
        let cooperative = self.protocol.is_some_and(|p| p.is_cooperative());
        if self.config.enable_auto_commit && !cooperative && !self.positions.is_empty() {
            let _ = self.commit_sync(self.positions.clone()).await;
        }
        if !cooperative && self.generation >= 0 {
            let all: Vec<TopicPartition> = self.owned.iter().cloned().collect();
            self.emit(GroupEvent::Revoked {
                generation: self.generation,
                partitions: all.clone(),
            });
            self.drop_partitions(&all);
        }
    }

    /// One JoinGroup and, if it succeeds, the SyncGroup of its generation.
    async fn join_once(&mut self) -> Result<Attempt, ClientError> {
        let topics: BTreeSet<String> = self.config.topics.iter().cloned().collect();
        let metadata = wire::encode_subscription(&topics, &self.owned, self.owned_generation);
        let req = JoinGroupRequest::default()
            .with_group_id(GroupId(s(&self.config.group_id)))
            .with_session_timeout_ms(self.config.session_timeout_ms)
            .with_rebalance_timeout_ms(self.config.max_poll_interval_ms)
            .with_member_id(s(&self.member_id))
            .with_group_instance_id(self.config.group_instance_id.as_deref().map(s))
            .with_protocol_type(s(PROTOCOL_TYPE))
            .with_protocols(
                self.config
                    .assignors
                    .iter()
                    .map(|a| {
                        join_group_request::JoinGroupRequestProtocol::default()
                            .with_name(s(a.name()))
                            .with_metadata(metadata.clone())
                    })
                    .collect(),
            );
        // The answer waits for every member to rejoin: up to the rebalance timeout.
        let wait = Duration::from_millis(self.config.max_poll_interval_ms.max(0) as u64 + 5_000);
        self.emit(GroupEvent::JoinSent {
            member_id: self.member_id.clone(),
            generation: self.generation,
        });
        let resp = self.coordinator_request(&req, Some(wait)).await?;
        let code = resp.error_code;
        if code == ResponseError::MemberIdRequired.code() {
            self.member_id = resp.member_id.to_string();
            return Ok(Attempt::Again);
        }
        if let Some(attempt) = self.join_error(code, "JoinGroup")? {
            return Ok(attempt);
        }
        self.member_id = resp.member_id.to_string();
        let name = resp
            .protocol_name
            .as_ref()
            .map(|n| n.to_string())
            .unwrap_or_default();
        let protocol = Assignor::from_name(&name).ok_or_else(|| {
            ClientError::Protocol(format!("the coordinator chose unknown protocol {name:?}"))
        })?;
        let assignments = if resp.leader == resp.member_id {
            self.emit(GroupEvent::Led {
                generation: resp.generation_id,
                members: resp
                    .members
                    .iter()
                    .map(|m| {
                        let instance = m.group_instance_id.as_ref().map(|i| i.to_string());
                        (m.member_id.to_string(), instance)
                    })
                    .collect(),
            });
            self.lead(protocol, &resp.members).await?
        } else {
            Vec::new()
        };
        self.sync(resp.generation_id, protocol, assignments).await
    }

    /// The Attempt for a join or sync error code; None for no error.
    fn join_error(&mut self, code: i16, what: &str) -> Result<Option<Attempt>, ClientError> {
        match wire::reaction(code) {
            Reaction::None => Ok(None),
            Reaction::Rejoin => Ok(Some(Attempt::Again)),
            Reaction::Lost { reset_member } => {
                if reset_member {
                    self.member_id.clear();
                }
                Ok(Some(Attempt::Again))
            }
            Reaction::Rediscover => {
                self.coordinator_dead();
                Ok(Some(Attempt::Later))
            }
            Reaction::Retry => Ok(Some(Attempt::Later)),
            Reaction::Fatal => {
                let e = ClientError::kafka(code, what);
                self.fatal = Some(e.clone());
                Err(e)
            }
        }
    }

    /// The leader's work: every member's subscription, metadata for their topics, and
    /// the chosen assignor's result, encoded for SyncGroup.
    async fn lead(
        &mut self,
        protocol: Assignor,
        members: &[join_group_response::JoinGroupResponseMember],
    ) -> Result<Vec<sync_group_request::SyncGroupRequestAssignment>, ClientError> {
        let mut subscriptions = Vec::new();
        for m in members {
            let instance = m.group_instance_id.as_ref().map(|i| i.to_string());
            subscriptions.push(wire::decode_subscription(
                &m.member_id,
                instance,
                &m.metadata,
            )?);
        }
        let partitions = self.partition_counts(&subscriptions).await?;
        let assignment = protocol.assign(&subscriptions, &partitions);
        tracing::debug!(group = self.config.group_id, ?assignment, "leader assigned");
        Ok(assignment
            .into_iter()
            .map(|(member_id, set)| {
                sync_group_request::SyncGroupRequestAssignment::default()
                    .with_member_id(s(&member_id))
                    .with_assignment(wire::encode_assignment(&set))
            })
            .collect())
    }

    /// Partition counts of every topic some member subscribes to (missing topics left out).
    async fn partition_counts(
        &mut self,
        members: &[MemberSubscription],
    ) -> Result<BTreeMap<String, i32>, ClientError> {
        let topics: BTreeSet<&str> = members
            .iter()
            .flat_map(|m| m.topics.iter().map(|t| t.as_str()))
            .collect();
        let mut out = BTreeMap::new();
        for topic in topics {
            self.consumer.client().forget_topic(topic);
            match self.consumer.client().topic(topic).await {
                Ok(info) => {
                    out.insert(topic.to_string(), info.partitions.len() as i32);
                }
                Err(ClientError::Kafka {
                    error: ResponseError::UnknownTopicOrPartition,
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn sync(
        &mut self,
        generation: i32,
        protocol: Assignor,
        assignments: Vec<sync_group_request::SyncGroupRequestAssignment>,
    ) -> Result<Attempt, ClientError> {
        let req = SyncGroupRequest::default()
            .with_group_id(GroupId(s(&self.config.group_id)))
            .with_generation_id(generation)
            .with_member_id(s(&self.member_id))
            .with_group_instance_id(self.config.group_instance_id.as_deref().map(s))
            .with_protocol_type(Some(s(PROTOCOL_TYPE)))
            .with_protocol_name(Some(s(protocol.name())))
            .with_assignments(assignments);
        let wait = Duration::from_millis(self.config.max_poll_interval_ms.max(0) as u64 + 5_000);
        let resp = self.coordinator_request(&req, Some(wait)).await?;
        if let Some(attempt) = self.join_error(resp.error_code, "SyncGroup")? {
            return Ok(attempt);
        }
        Ok(Attempt::Joined {
            generation,
            protocol,
            assigned: wire::decode_assignment(&resp.assignment)?,
        })
    }

    /// Give up `revoked` in an orderly way (owned in `generation`): commit their positions
    /// first when auto-commit is on, then report and drop them.
    pub(super) async fn revoke(&mut self, generation: i32, revoked: &[TopicPartition]) {
        if self.config.enable_auto_commit {
            let offsets = revoked
                .iter()
                .filter_map(|tp| self.positions.get(tp).map(|o| (tp.clone(), *o)))
                .collect::<BTreeMap<_, _>>();
            if !offsets.is_empty() {
                let _ = self.commit_sync(offsets).await;
            }
        }
        self.emit(GroupEvent::Revoked {
            generation,
            partitions: revoked.to_vec(),
        });
        self.drop_partitions(revoked);
    }

    /// Apply a generation's assignment (Java's onJoinComplete). Cooperative: revoke what
    /// is no longer assigned and, if anything was, rejoin at once.
    async fn complete_join(
        &mut self,
        generation: i32,
        protocol: Assignor,
        assigned: BTreeSet<TopicPartition>,
    ) {
        self.generation = generation;
        self.protocol = Some(protocol);
        self.need_join = false;
        {
            let mut state = lock(&self.shared);
            state.member_id = self.member_id.clone();
            state.generation = generation;
            state.active = true;
            state.reaction = None;
        }
        let revoked: Vec<TopicPartition> = self.owned.difference(&assigned).cloned().collect();
        if !revoked.is_empty() {
            self.revoke(generation, &revoked).await;
            self.need_join = true;
        }
        let added: Vec<TopicPartition> = assigned.difference(&self.owned).cloned().collect();
        self.owned.extend(added.iter().cloned());
        self.unpositioned.extend(added);
        self.owned_generation = generation;
        self.emit(GroupEvent::Assigned {
            generation,
            member_id: self.member_id.clone(),
            partitions: self.owned.iter().cloned().collect(),
        });
        tracing::debug!(
            group = self.config.group_id,
            member = self.member_id,
            generation,
            owned = ?self.owned,
            "joined"
        );
    }

    /// Positions of new partitions: the committed offsets (OffsetFetch), else the reset
    /// policy. A failure leaves the rest for the next poll.
    pub(super) async fn position_partitions(&mut self) -> Result<(), ClientError> {
        let wanted: Vec<TopicPartition> = self.unpositioned.iter().cloned().collect();
        let committed = match self.fetch_committed(&wanted).await {
            Ok(c) => c,
            Err(e) if e.is_retriable() => return Ok(()),
            Err(e) => return Err(e),
        };
        for tp in wanted {
            let (offset, source) = match committed.get(&tp) {
                Some(o) if *o >= 0 => (*o, PositionSource::Committed),
                _ => {
                    let timestamp = match self.config.auto_offset_reset {
                        OffsetReset::Earliest => -2,
                        OffsetReset::Latest => -1,
                        OffsetReset::None => {
                            return Err(ClientError::kafka(
                                ResponseError::OffsetOutOfRange.code(),
                                format!("no committed offset for {}-{}", tp.0, tp.1),
                            ))
                        }
                    };
                    match self
                        .consumer
                        .client()
                        .list_offset(&tp.0, tp.1, timestamp)
                        .await
                    {
                        Ok(o) => (o, PositionSource::Reset),
                        Err(e) if e.is_retriable() => return Ok(()),
                        Err(e) => return Err(e),
                    }
                }
            };
            self.unpositioned.remove(&tp);
            self.positions.insert(tp.clone(), offset);
            self.consumer.assign(&tp.0, tp.1, Some(offset));
            self.emit(GroupEvent::Positioned {
                topic: tp.0,
                partition: tp.1,
                offset,
                source,
            });
        }
        Ok(())
    }

    /// The group's committed offsets of `partitions` (-1: none).
    async fn fetch_committed(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in partitions {
            by_topic.entry(t.as_str()).or_default().push(*p);
        }
        let version = self.coordinator().await?.version(ApiKey::OffsetFetch);
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(&self.config.group_id)))
            .with_require_stable(version.unwrap_or(0) >= 7)
            .with_topics(Some(
                by_topic
                    .into_iter()
                    .map(|(t, ps)| {
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partition_indexes(ps)
                    })
                    .collect(),
            ));
        let resp = self.coordinator_request(&req, None).await?;
        let mut codes = vec![resp.error_code];
        let mut out = BTreeMap::new();
        for t in &resp.topics {
            for p in &t.partitions {
                codes.push(p.error_code);
                out.insert((t.name.to_string(), p.partition_index), p.committed_offset);
            }
        }
        if let Some(code) = codes.into_iter().find(|c| *c != 0) {
            if wire::reaction(code) == Reaction::Rediscover {
                self.coordinator_dead();
            }
            return Err(ClientError::kafka(code, "OffsetFetch"));
        }
        Ok(out)
    }

    /// LeaveGroup, best effort.
    pub(super) async fn leave_group(&mut self) {
        let version = match self.coordinator().await {
            Ok(conn) => conn.version(ApiKey::LeaveGroup).unwrap_or(0),
            Err(_) => return,
        };
        let req = wire::leave_request(
            version,
            &self.config.group_id,
            &self.member_id,
            self.config.group_instance_id.as_deref(),
        );
        match self.coordinator_request(&req, None).await {
            Ok(resp) if wire::leave_error(&resp) != 0 => {
                tracing::debug!(code = wire::leave_error(&resp), "LeaveGroup refused")
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "LeaveGroup failed"),
        }
    }
}
