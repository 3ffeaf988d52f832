//! A consumer group member speaking Kafka's classic group protocol, as Kafka's Java
//! consumer does: FindCoordinator, JoinGroup (KIP-394's member id round trip), the
//! leader runs the chosen assignor, SyncGroup, OffsetFetch for the positions, a heartbeat
//! task, eager or cooperative rebalances, and commits (sync, async, automatic).
//!
//! Everything that happens to the membership is reported in order as [`GroupEvent`]s,
//! returned by [`GroupConsumer::poll`] next to the records: the simulation lab records
//! them. There is no listener trait; the event stream is the rebalance callback.

pub mod assignor;
mod commit;
mod consumer_protocol;
mod heartbeat;
mod join;
mod wire;

pub use assignor::{Assignor, GroupAssignment, MemberSubscription, TopicPartition};
pub use consumer_protocol::GroupProtocol;
pub use wire::CONSUMER_PROTOCOL_VERSION;

use super::OffsetReset;
use super::{Client, ClientError, Connection, ConsumedRecord, Consumer, ConsumerConfig};
use heartbeat::{lock, Shared};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A group consumer's settings, by Kafka's names, with Kafka's defaults.
#[derive(Debug, Clone)]
pub struct GroupConsumerConfig {
    /// `group.id`
    pub group_id: String,
    /// The topics to subscribe to.
    pub topics: Vec<String>,
    /// `partition.assignment.strategy`, in preference order. Default as Java 3.x and 4.x:
    /// `[range, cooperative-sticky]` (the group settles on `range`; dropping `range` in a
    /// second rolling bounce upgrades to cooperative).
    pub assignors: Vec<Assignor>,
    /// `session.timeout.ms` (45000)
    pub session_timeout_ms: i32,
    /// `heartbeat.interval.ms` (3000)
    pub heartbeat_interval_ms: u64,
    /// `max.poll.interval.ms` (300000), sent as the rebalance timeout.
    pub max_poll_interval_ms: i32,
    /// `group.instance.id`: static membership (KIP-345).
    pub group_instance_id: Option<String>,
    /// `auto.offset.reset` (latest)
    pub auto_offset_reset: OffsetReset,
    /// `enable.auto.commit` (true)
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms` (5000)
    pub auto_commit_interval_ms: u64,
    /// `max.poll.records` (500)
    pub max_poll_records: usize,
    /// `retry.backoff.ms` (100)
    pub retry_backoff_ms: u64,
    /// `default.api.timeout.ms` (60000): how long `commit_sync` and `close` retry.
    pub default_api_timeout_ms: u64,
    /// The fetch settings (its `offset_reset` is ignored: `auto_offset_reset` rules).
    pub fetch: ConsumerConfig,
    /// `group.protocol` (classic): `Consumer` speaks KIP-848; `assignors`,
    /// `session_timeout_ms` and `heartbeat_interval_ms` are then the broker's business.
    pub group_protocol: GroupProtocol,
}

impl GroupConsumerConfig {
    /// Kafka's defaults for `group_id` subscribed to `topics`.
    pub fn new(group_id: &str, topics: &[&str]) -> GroupConsumerConfig {
        GroupConsumerConfig {
            group_id: group_id.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            assignors: vec![Assignor::Range, Assignor::CooperativeSticky],
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 3_000,
            max_poll_interval_ms: 300_000,
            group_instance_id: None,
            auto_offset_reset: OffsetReset::Latest,
            enable_auto_commit: true,
            auto_commit_interval_ms: 5_000,
            max_poll_records: 500,
            retry_backoff_ms: 100,
            default_api_timeout_ms: 60_000,
            fetch: ConsumerConfig::default(),
            group_protocol: GroupProtocol::Classic,
        }
    }
}

/// Where a position came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionSource {
    /// The group's committed offset.
    Committed,
    /// `auto.offset.reset`: no committed offset, or the position was out of range.
    Reset,
}

/// How a commit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitResult {
    Ok,
    /// The coordinator refused it: the first non-zero error code and a message.
    Failed {
        code: i16,
        message: String,
    },
    /// No answer (connection lost, timed out): it may or may not have been applied.
    Unknown {
        message: String,
    },
    /// Not sent: the consumer has no generation or no coordinator.
    NotSent {
        message: String,
    },
}

/// One thing that happened to the member, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEvent {
    /// A JoinGroup is about to be sent: `member_id` as sent (empty for a new member before
    /// KIP-394 gives it one), `generation` the member's last completed one (-1 before).
    JoinSent { member_id: String, generation: i32 },
    /// This member leads `generation`: the members the coordinator put in it, each with
    /// its `group.instance.id` if static (what the leader assigns among).
    Led {
        generation: i32,
        members: Vec<(String, Option<String>)>,
    },
    /// A generation completed: `partitions` is the whole owned set, kept ones included.
    Assigned {
        generation: i32,
        member_id: String,
        partitions: Vec<TopicPartition>,
    },
    /// Partitions given up in an orderly way (eager: before rejoining, with the old
    /// generation; cooperative: after the new generation's SyncGroup, with the new one;
    /// close: with the last one). Auto-commit ran before, when on.
    Revoked {
        generation: i32,
        partitions: Vec<TopicPartition>,
    },
    /// Partitions lost without a chance to commit: the generation is gone (session or
    /// poll interval expired, fenced by a rebalance, unknown member).
    Lost {
        generation: i32,
        partitions: Vec<TopicPartition>,
    },
    /// A position was set from a committed offset or a reset: the next fetch starts there.
    Positioned {
        topic: String,
        partition: i32,
        offset: i64,
        source: PositionSource,
    },
    /// A commit was sent (or refused before sending): offsets are next records to read.
    CommitStarted {
        id: u64,
        generation: i32,
        member_id: String,
        offsets: Vec<(TopicPartition, i64)>,
    },
    /// The end of commit `id`.
    CommitFinished { id: u64, result: CommitResult },
}

/// What one poll returns.
#[derive(Debug, Clone, Default)]
pub struct PollResult {
    /// At most `max.poll.records` records, each partition's in offset order.
    pub records: Vec<ConsumedRecord>,
    /// The group events since the last poll, in order.
    pub events: Vec<GroupEvent>,
}

/// Rebalance and commit callbacks: told of every group event at the moment it happens
/// (an `Assigned` as soon as SyncGroup's answer is applied, a `Revoked` before the member
/// rejoins, a `CommitStarted` as the commit is sent), before `poll` returns it.
pub trait GroupListener: Send {
    fn on_event(&mut self, event: &GroupEvent);
}

/// An async commit written on the coordinator connection, its answer not read yet.
struct PendingCommit {
    id: u64,
}

/// A member of a consumer group.
pub struct GroupConsumer {
    config: GroupConsumerConfig,
    consumer: Consumer,
    coordinator: Option<Connection>,
    pending_commits: VecDeque<PendingCommit>,
    shared: Arc<Mutex<Shared>>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
    member_id: String,
    generation: i32,
    protocol: Option<Assignor>,
    owned: BTreeSet<TopicPartition>,
    /// The generation `owned` was assigned in, sent in the subscription.
    owned_generation: i32,
    /// Owned partitions whose position is not known yet.
    unpositioned: BTreeSet<TopicPartition>,
    /// The application's position per owned partition: the next record `poll` returns.
    positions: BTreeMap<TopicPartition, i64>,
    buffer: VecDeque<ConsumedRecord>,
    events: Vec<GroupEvent>,
    listener: Option<Box<dyn GroupListener>>,
    need_join: bool,
    next_commit_id: u64,
    next_auto_commit: Instant,
    fatal: Option<ClientError>,
    /// The KIP-848 member's timers (unused by the classic protocol).
    kip848: consumer_protocol::ConsumerProtocolState,
}

impl GroupConsumer {
    /// A member of `config.group_id`; it joins on the first `poll`. `client` serves
    /// metadata, fetches and the coordinator lookups; the heartbeat task opens its own
    /// connection.
    pub fn new(client: Client, config: GroupConsumerConfig) -> GroupConsumer {
        let shared = Arc::new(Mutex::new(Shared::new()));
        let settings = heartbeat::Settings {
            group_id: config.group_id.clone(),
            group_instance_id: config.group_instance_id.clone(),
            client_id: client.client_id().to_string(),
            timeout: client.timeout(),
            heartbeat_interval: Duration::from_millis(config.heartbeat_interval_ms),
            max_poll_interval: Duration::from_millis(config.max_poll_interval_ms.max(1) as u64),
        };
        let handle = tokio::spawn(heartbeat::run(shared.clone(), settings));
        let mut fetch = config.fetch.clone();
        fetch.offset_reset = config.auto_offset_reset;
        GroupConsumer {
            next_auto_commit: Instant::now()
                + Duration::from_millis(config.auto_commit_interval_ms),
            consumer: Consumer::new(client, fetch),
            coordinator: None,
            pending_commits: VecDeque::new(),
            shared,
            heartbeat: Some(handle),
            member_id: String::new(),
            generation: -1,
            protocol: None,
            owned: BTreeSet::new(),
            owned_generation: -1,
            unpositioned: BTreeSet::new(),
            positions: BTreeMap::new(),
            buffer: VecDeque::new(),
            events: Vec::new(),
            listener: None,
            // The consumer protocol has no join phase: heartbeats do it all.
            need_join: config.group_protocol == GroupProtocol::Classic,
            next_commit_id: 0,
            fatal: None,
            kip848: consumer_protocol::ConsumerProtocolState::new(),
            config,
        }
    }

    /// Call `listener` with every group event as it happens (Kafka's
    /// ConsumerRebalanceListener and commit callbacks, as one stream).
    pub fn set_listener(&mut self, listener: Box<dyn GroupListener>) {
        self.listener = Some(listener);
    }

    /// Record an event: the listener hears it now, `poll` returns it later.
    fn emit(&mut self, event: GroupEvent) {
        if let Some(listener) = self.listener.as_mut() {
            listener.on_event(&event);
        }
        self.events.push(event);
    }

    /// The generation of the last completed join; -1 before the first.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The member id the coordinator gave; empty before the first join.
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The chosen assignor of the current generation.
    pub fn protocol(&self) -> Option<Assignor> {
        self.protocol
    }

    /// The partitions owned now.
    pub fn assignment(&self) -> &BTreeSet<TopicPartition> {
        &self.owned
    }

    /// The next offset `poll` returns for a partition, once positioned.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.positions.get(&(topic.to_string(), partition)).copied()
    }

    /// Move an owned partition's position (Kafka's `seek`): the next poll returns the
    /// record at `offset`. Ignored for a partition not owned or not positioned yet.
    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) {
        let key = (topic.to_string(), partition);
        if let Some(position) = self.positions.get_mut(&key) {
            *position = offset;
            self.consumer.seek(topic, partition, offset);
            self.buffer
                .retain(|r| !(r.topic == topic && r.partition == partition));
        }
    }

    /// The positions of every owned partition: what auto-commit commits.
    pub fn positions(&self) -> BTreeMap<TopicPartition, i64> {
        self.positions.clone()
    }

    /// Events not returned yet (after an error from `poll`, for instance).
    pub fn take_events(&mut self) -> Vec<GroupEvent> {
        std::mem::take(&mut self.events)
    }

    /// The underlying fetcher's client (metadata, admin calls).
    pub fn client(&mut self) -> &mut Client {
        self.consumer.client()
    }

    /// Join if needed, then fetch: returns when records arrived, when group events are
    /// waiting, or after `timeout`. Errors: fatal ones (fenced, configuration) for good;
    /// others (no committed offset and `auto.offset.reset=none`, a fetch error) for this
    /// call; the events stay for the next poll or `take_events`.
    pub async fn poll(&mut self, timeout: Duration) -> Result<PollResult, ClientError> {
        let deadline = Instant::now() + timeout;
        self.check_fatal()?;
        lock(&self.shared).last_poll = Instant::now();
        loop {
            self.drain_async_commits().await;
            self.absorb_heartbeat_reports().await;
            self.check_fatal()?;
            self.maybe_auto_commit().await;
            if self.config.group_protocol == GroupProtocol::Consumer {
                // No join phase in KIP-848 (a classic error code asking to rejoin means
                // nothing here): the heartbeat does it all.
                self.need_join = false;
                self.consumer_protocol_round().await?;
            } else if self.need_join {
                self.ensure_active_group(deadline).await?;
            }
            if !self.need_join && !self.unpositioned.is_empty() {
                self.position_partitions().await?;
            }
            let records = self.fetch().await?;
            let now = Instant::now();
            if !records.is_empty() || !self.events.is_empty() || now >= deadline {
                return Ok(PollResult {
                    records,
                    events: self.take_events(),
                });
            }
            if self.owned.is_empty() || self.need_join {
                tokio::time::sleep(self.backoff().min(deadline - now)).await;
            }
        }
    }

    fn check_fatal(&mut self) -> Result<(), ClientError> {
        if self.fatal.is_none() {
            self.fatal = lock(&self.shared).fatal.clone();
        }
        match &self.fatal {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn backoff(&self) -> Duration {
        Duration::from_millis(self.config.retry_backoff_ms.max(1))
    }

    /// Act on what the heartbeat task learnt: a poll timeout, a rebalance, a lost
    /// generation, a coordinator that moved.
    async fn absorb_heartbeat_reports(&mut self) {
        let (reaction, expired) = {
            let mut state = lock(&self.shared);
            let expired = std::mem::take(&mut state.poll_expired);
            (state.reaction.take(), expired)
        };
        if expired {
            // Java resets the generation and, for a dynamic member, the member id.
            let reset_member = self.config.group_instance_id.is_none();
            self.lose_partitions(reset_member);
        }
        match reaction {
            Some(wire::Reaction::Rejoin) => self.need_join = true,
            Some(wire::Reaction::Lost { reset_member }) => self.lose_partitions(reset_member),
            Some(wire::Reaction::Rediscover) => self.coordinator_dead(),
            _ => {}
        }
    }

    /// Every owned partition lost without a chance to commit: reported, then dropped.
    pub(super) fn lose_owned(&mut self) {
        if !self.owned.is_empty() {
            self.emit(GroupEvent::Lost {
                generation: self.generation,
                partitions: self.owned.iter().cloned().collect(),
            });
        }
        let all: Vec<TopicPartition> = self.owned.iter().cloned().collect();
        self.drop_partitions(&all);
    }

    /// The generation is gone: every owned partition is lost; rejoin.
    fn lose_partitions(&mut self, reset_member: bool) {
        if self.config.group_protocol == GroupProtocol::Consumer {
            // KIP-848: the member joins again with epoch 0 (under its own member id).
            self.fenced();
            return;
        }
        self.lose_owned();
        self.owned_generation = -1;
        self.generation = -1;
        if reset_member {
            self.member_id.clear();
        }
        self.need_join = true;
        let mut state = lock(&self.shared);
        state.active = false;
        state.generation = -1;
    }

    /// Stop fetching `partitions` and forget their positions and buffered records.
    fn drop_partitions(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            self.owned.remove(tp);
            self.unpositioned.remove(tp);
            self.positions.remove(tp);
            self.consumer.unassign(&tp.0, tp.1);
        }
        self.buffer.retain(|r| {
            !partitions
                .iter()
                .any(|(t, p)| *t == r.topic && *p == r.partition)
        });
    }

    /// Forget the coordinator: the next request finds it again.
    fn coordinator_dead(&mut self) {
        self.coordinator = None;
        for pending in std::mem::take(&mut self.pending_commits) {
            self.emit(GroupEvent::CommitFinished {
                id: pending.id,
                result: CommitResult::Unknown {
                    message: "the coordinator connection was dropped".into(),
                },
            });
        }
        lock(&self.shared).coordinator = None;
    }

    /// Up to `max.poll.records` records from the buffer, fetching when it is empty.
    async fn fetch(&mut self) -> Result<Vec<ConsumedRecord>, ClientError> {
        if self.buffer.is_empty() && !self.need_join && !self.positions.is_empty() {
            match self.consumer.poll().await {
                Ok(records) => self.buffer.extend(records),
                Err(e) if e.is_retriable() => {
                    tracing::debug!(error = %e, "group fetch failed; retrying");
                    tokio::time::sleep(self.backoff()).await;
                }
                Err(e) => return Err(e),
            }
            for (topic, partition, offset) in self.consumer.take_resets() {
                self.positions.insert((topic.clone(), partition), offset);
                self.emit(GroupEvent::Positioned {
                    topic,
                    partition,
                    offset,
                    source: PositionSource::Reset,
                });
            }
        }
        let mut out = Vec::new();
        while out.len() < self.config.max_poll_records.max(1) {
            let Some(record) = self.buffer.pop_front() else {
                break;
            };
            let key = (record.topic.clone(), record.partition);
            match self.positions.get_mut(&key) {
                Some(position) if record.record.offset >= *position => {
                    *position = record.record.offset + 1;
                    out.push(record);
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Leave the group: commit the positions (auto-commit on), report the partitions
    /// revoked, send LeaveGroup (not for a static member: its session keeps its place
    /// until it expires), and stop the heartbeat task. Returns the last events.
    pub async fn close(mut self) -> Vec<GroupEvent> {
        self.drain_async_commits().await;
        self.absorb_heartbeat_reports().await;
        if self.config.enable_auto_commit && self.generation >= 0 && !self.positions.is_empty() {
            let _ = self.commit_sync(self.positions.clone()).await;
        }
        if !self.owned.is_empty() {
            self.emit(GroupEvent::Revoked {
                generation: self.generation,
                partitions: self.owned.iter().cloned().collect(),
            });
        }
        if self.config.group_protocol == GroupProtocol::Consumer {
            self.consumer_protocol_leave().await;
        } else if self.config.group_instance_id.is_none() && !self.member_id.is_empty() {
            self.leave_group().await;
        }
        self.stop_heartbeat();
        self.take_events()
    }

    fn stop_heartbeat(&mut self) {
        lock(&self.shared).closed = true;
        if let Some(handle) = self.heartbeat.take() {
            handle.abort();
        }
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}
