//! A clustered broker's replicas: what the controller's metadata image makes of each local
//! partition (leader, follower, offline), the leader's side of follower fetches, the
//! follower's appends and epoch-based truncation, ISR changes on their way to the
//! controller, and `acks=all` completion.
//!
//! Pure like the rest of `state`: the shell brings the image, the requests and the time,
//! and carries out the AlterPartition requests queued here.
//!
//! # Rules
//! - A broker leads a partition only when the image names it leader *and* registers this
//!   process (its incarnation) as unfenced: after a restart, the old registration's
//!   leadership is never picked up by a process whose log may have lost its tail.
//! - A new leader epoch means a new [`PartitionReplica`] (KIP-279: the epoch is recorded in
//!   the cache at the log end before anything is written in it).
//! - A follower truncates only by asking the leader where its own latest epoch ends
//!   (OffsetForLeaderEpoch, KIP-101/279), never to its high watermark, and only while the
//!   answer belongs to the leader epoch it is still following (KAFKA-18991): a late answer
//!   from an older epoch is dropped.
//! - Followers fetch with their current leader epoch (KIP-320) and last fetched epoch; a
//!   leader of another epoch refuses with FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH.

use super::{
    check_leader_epoch, not_leader, producers_from, save_epochs, storage_refusal, BrokerState,
    Partition, Refusal, StateError,
};
use crate::controller::logic::{ControllerError, MetadataImage, PartitionState, NO_LEADER};
use crate::log::ReadLimit;
use crate::observe::{self, Observation};
use crate::probe;
use crate::record::batch;
use crate::replica::epoch_cache::EpochEndOffset;
use crate::replica::partition_replica::{
    AckStatus, AlterPartition, FetchDecision, FollowerFetch, LeaderAndIsr, LeaderLog,
    PartitionReplica, ReplicaConfig,
};
use crate::topic_config::TopicConfig;
use bytes::Bytes;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// The part this broker's replica plays in a partition.
pub enum PartitionRole {
    /// A broker without controllers: the only replica, always the leader.
    Standalone,
    Leader(Box<PartitionReplica>),
    /// Replicates from `leader` in `Partition::leader_epoch`. `truncated` once the
    /// OffsetForLeaderEpoch exchange for this epoch is done.
    Follower {
        leader: i32,
        truncated: bool,
    },
    /// A replica with no leader to follow (offline partition, this broker fenced, or no
    /// metadata yet).
    Offline,
    /// Not in the partition's assignment.
    NotReplica,
}

impl fmt::Display for PartitionRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionRole::Standalone => write!(f, "standalone"),
            PartitionRole::Leader(r) => write!(f, "leader in epoch {}", r.leader_epoch()),
            PartitionRole::Follower { leader, .. } => write!(f, "follower of broker {leader}"),
            PartitionRole::Offline => write!(f, "replica without a leader"),
            PartitionRole::NotReplica => write!(f, "not a replica"),
        }
    }
}

/// What a clustered broker knows of the cluster.
pub(crate) struct ClusterView {
    /// Random per process start: tells the controller this is a new process.
    pub incarnation: u64,
    pub image: MetadataImage,
    /// ISR changes waiting to be sent to the controller.
    pub alter_queue: Vec<(String, i32, AlterPartition)>,
}

impl ClusterView {
    pub(crate) fn new(seed: u64) -> ClusterView {
        ClusterView {
            incarnation: crate::mix::SplitMix64::new(seed).next_u64().max(1),
            image: MetadataImage::default(),
            alter_queue: Vec::new(),
        }
    }
}

/// The leader's answer to a follower's fetch of one partition.
#[derive(Debug, Clone)]
pub struct FollowerRead {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Set instead of records when the follower's log diverges from ours.
    pub diverging: Option<EpochEndOffset>,
}

/// Where an `acks=all` produce stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProduceWait {
    Waiting,
    /// Complete with this error code (0: success).
    Done(i16),
}

/// One partition a follower fetches, as the fetcher needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTarget {
    pub topic: String,
    /// The topic's id: what the fetcher learns applies to this topic only, never to one
    /// created again under its name meanwhile (whose leader epochs start over at 0, so an
    /// epoch check alone cannot tell them apart; KIP-516).
    pub topic_id: u128,
    pub partition: i32,
    pub leader_epoch: i32,
    pub fetch_offset: i64,
    /// None when the replica has no epoch yet.
    pub last_fetched_epoch: Option<i32>,
    pub truncated: bool,
}

impl BrokerState {
    /// This process's registration id, when clustered.
    pub fn incarnation(&self) -> Option<u64> {
        self.cluster.as_ref().map(|c| c.incarnation)
    }

    /// The latest metadata image applied, when clustered.
    pub fn image(&self) -> Option<&MetadataImage> {
        self.cluster.as_ref().map(|c| &c.image)
    }

    /// The offset of the latest metadata image applied (0: none yet).
    pub fn metadata_offset(&self) -> u64 {
        self.cluster.as_ref().map_or(0, |c| c.image.offset)
    }

    /// Whether the image registers this process and has it unfenced.
    fn eligible_to_lead(&self) -> bool {
        let Some(cluster) = &self.cluster else {
            return false;
        };
        cluster
            .image
            .brokers
            .get(&self.config.node_id)
            .is_some_and(|b| b.incarnation == cluster.incarnation && !b.fenced)
    }

    /// Apply a newer metadata image: open and delete local logs, and take up the role the
    /// image gives each replica. Returns whether any role changed (wake fetchers and
    /// waiting produces).
    pub fn apply_image(&mut self, image: MetadataImage, now_ms: i64) -> Result<bool, StateError> {
        let Some(cluster) = &mut self.cluster else {
            return Ok(false);
        };
        if image.offset <= cluster.image.offset {
            return Ok(false);
        }
        cluster.image = image;
        let image = cluster.image.clone();
        let node_id = self.config.node_id;
        let mut changed = false;

        // Topics gone from the image: delete their logs.
        let gone: Vec<String> = self
            .topics
            .keys()
            .filter(|name| !image.topics.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            if let Some(topic) = self.topics.remove(&name) {
                changed = true;
                delete_logs(topic);
                tracing::info!(topic = name, "deleted topic (metadata)");
            }
        }
        // New topics: open their logs (recovering what a previous process left).
        for (name, topic) in &image.topics {
            let known = self.topics.get(name).is_some_and(|t| t.id == topic.id);
            if known {
                continue;
            }
            // Same name, another id: the old topic was deleted and a new one created
            // between two images this broker saw. Its logs go first.
            if let Some(old) = self.topics.remove(name) {
                crate::probe!(probe::TOPIC_ID_CHANGED);
                delete_logs(old);
            }
            let config =
                TopicConfig::new(&self.config.log, self.config.message_max_bytes, &topic.configs)
                    .unwrap_or_else(|e| {
                        tracing::error!(topic = name, error = %e, "bad topic config in metadata; using defaults");
                        TopicConfig::new(
                            &self.config.log,
                            self.config.message_max_bytes,
                            &BTreeMap::new(),
                        )
                        .expect("defaults are valid")
                    });
            let replication_factor = topic
                .partitions
                .first()
                .map_or(1, |p| p.replicas.len() as i16);
            // One topic that cannot be opened (a storage error) does not hold up the
            // others; it is tried again with the next image.
            match self.open_topic(
                name.clone(),
                topic.id,
                topic.partitions.len() as i32,
                replication_factor,
                config,
                now_ms,
            ) {
                Ok(opened) => {
                    self.topics.insert(name.clone(), opened);
                    changed = true;
                }
                Err(e) => tracing::error!(topic = name, error = %e, "cannot open topic"),
            }
        }
        let eligible = self.eligible_to_lead();
        let lag_ms = self.config.replica_lag_time_max_ms;
        for (name, topic_image) in &image.topics {
            let Some(topic) = self.topics.get_mut(name) else {
                continue;
            };
            let min_insync_replicas = topic.config.min_insync_replicas;
            for state in &topic_image.partitions {
                let Some(p) = usize::try_from(state.partition)
                    .ok()
                    .and_then(|i| topic.partitions.get_mut(i))
                else {
                    continue;
                };
                let replica_config = ReplicaConfig {
                    replica_lag_time_max_ms: lag_ms,
                    min_insync_replicas,
                };
                match take_role(
                    p,
                    node_id,
                    name,
                    state,
                    eligible,
                    replica_config,
                    &image,
                    now_ms,
                    self.storage.as_ref(),
                    &self.config.data_dir,
                ) {
                    Ok(role_changed) => {
                        p.check_invariants();
                        changed |= role_changed
                    }
                    Err(e) => {
                        // The replica stays as it was; the others still take their roles.
                        tracing::error!(topic = name, partition = state.partition, error = %e, "cannot take the role metadata gives");
                        changed = true;
                    }
                }
            }
        }
        Ok(changed)
    }

    /// The leader's side of a follower fetch for one partition: fence by epoch, detect
    /// divergence, record the follower's position (which may move the high watermark and
    /// queue an ISR expansion), then read up to the log end.
    pub fn follower_fetch(
        &mut self,
        topic: &str,
        partition: i32,
        fetch: &FollowerFetch,
        limit: ReadLimit,
        now_ms: i64,
    ) -> Result<(FollowerRead, bool), Refusal> {
        let node_id = self.config.node_id;
        let (p, _) = self.partition_mut(topic, partition)?;
        let log = LeaderLog {
            log_start_offset: p.log.log_start_offset(),
            log_end_offset: p.log.log_end_offset(),
        };
        let PartitionRole::Leader(replica) = &mut p.role else {
            // A fetcher that knows another epoch is told which way it is off (KIP-320).
            check_leader_epoch(fetch.current_leader_epoch.unwrap_or(-1), p.leader_epoch)?;
            return Err(not_leader(topic, partition, &p.role));
        };
        let decision = replica.on_follower_fetch(fetch, log, &p.epochs, now_ms);
        let (high_watermark, advanced) = match decision {
            FetchDecision::Read {
                high_watermark,
                high_watermark_advanced,
            } => (high_watermark, high_watermark_advanced),
            FetchDecision::Diverging(end) => {
                return Ok((
                    FollowerRead {
                        records: Bytes::new(),
                        high_watermark: replica.high_watermark(),
                        log_start_offset: log.log_start_offset,
                        diverging: Some(end),
                    },
                    false,
                ))
            }
            FetchDecision::Refused(refusal) => {
                return Err(Refusal::from_code(
                    refusal.error_code(),
                    refusal.to_string(),
                ));
            }
        };
        if let Some(expanded) = replica.maybe_expand_isr(fetch.replica_id) {
            if let Ok(request) = replica.propose_isr(&expanded) {
                tracing::info!(topic, partition, isr = ?request.new_isr, "proposing ISR expansion");
                if let Some(cluster) = &mut self.cluster {
                    cluster
                        .alter_queue
                        .push((topic.to_string(), partition, request));
                }
            }
        }
        let (p, _) = self.partition_mut(topic, partition)?;
        if advanced {
            p.report_high_watermark(node_id, topic, partition);
        }
        let records = if fetch.fetch_offset >= log.log_end_offset || limit.is_nothing() {
            Bytes::new()
        } else {
            p.log
                .read(fetch.fetch_offset, log.log_end_offset, limit)
                .map_err(|source| {
                    storage_refusal(StateError::Log {
                        dir: PathBuf::from(format!("{topic}-{partition}")),
                        source,
                    })
                })?
        };
        Ok((
            FollowerRead {
                records,
                high_watermark,
                log_start_offset: log.log_start_offset,
                diverging: None,
            },
            advanced,
        ))
    }

    /// The leaders this broker follows some partition from.
    pub fn followed_leaders(&self) -> std::collections::BTreeSet<i32> {
        self.topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|p| match p.role {
                PartitionRole::Follower { leader, .. } => Some(leader),
                _ => None,
            })
            .collect()
    }

    /// The partitions this broker follows from `leader`.
    pub fn fetch_targets(&self, from: i32) -> Vec<FetchTarget> {
        let mut targets = Vec::new();
        for topic in self.topics.values() {
            for (i, p) in topic.partitions.iter().enumerate() {
                if let PartitionRole::Follower { leader, truncated } = p.role {
                    if leader == from {
                        targets.push(FetchTarget {
                            topic: topic.name.clone(),
                            topic_id: topic.id,
                            partition: i as i32,
                            leader_epoch: p.leader_epoch,
                            fetch_offset: p.log.log_end_offset(),
                            last_fetched_epoch: p.epochs.latest_epoch(),
                            truncated,
                        });
                    }
                }
            }
        }
        targets
    }

    /// Whether the partition is still followed from `leader` in `leader_epoch`, as the
    /// same topic (`topic_id`): anything the fetcher learned under another epoch (KAFKA-18991)
    /// or about an earlier topic of the same name must be dropped.
    fn following(
        &mut self,
        topic: &str,
        topic_id: u128,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
    ) -> Option<&mut Partition> {
        let (p, _) = self.partition_mut(topic, partition).ok()?;
        if p.topic_id() != topic_id {
            crate::probe!(probe::FETCH_FOR_OLD_TOPIC_DROPPED);
            return None;
        }
        match p.role {
            PartitionRole::Follower { leader: l, .. }
                if l == leader && p.leader_epoch == leader_epoch =>
            {
                Some(p)
            }
            _ => None,
        }
    }

    /// Apply the leader's OffsetForLeaderEpoch answer (or a fetch's diverging epoch) for the
    /// epoch this follower asked about. Returns whether truncation is complete; false means
    /// ask again with the (now lower) latest epoch. Ignored (Ok(false)) when the partition
    /// has moved to another leader epoch meanwhile.
    pub fn follower_truncate(
        &mut self,
        topic: &str,
        topic_id: u128,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        answer: Option<EpochEndOffset>,
    ) -> Result<bool, Refusal> {
        let node_id = self.config.node_id;
        let storage = self.storage.clone();
        let Some(p) = self.following(topic, topic_id, partition, leader, leader_epoch) else {
            crate::probe!(probe::LATE_TRUNCATION_ANSWER_DROPPED);
            return Ok(false);
        };
        let log_end_offset = p.log.log_end_offset();
        let (offset, complete) = match answer {
            Some(end) => {
                let truncation = p.epochs.follower_truncation(end, log_end_offset);
                (truncation.offset, truncation.complete)
            }
            // The leader has no history to compare with (an empty cache): keep what is
            // below our high watermark, as Kafka does when the epoch is undefined.
            None => (p.high_watermark().min(log_end_offset), true),
        };
        let cut = offset < log_end_offset;
        let dir = p.log.dir().to_path_buf();
        if cut {
            crate::probe!(probe::FOLLOWER_TRUNCATION);
            p.log.truncate_to(offset).map_err(|source| {
                storage_refusal(StateError::Log {
                    dir: dir.clone(),
                    source,
                })
            })?;
        }
        // The epoch cache describes nothing past the log end, also when no byte was cut:
        // a leader elected here that appended nothing before losing the partition leaves
        // an entry at the log end, and left in place it makes the follower name that
        // epoch as its last fetched one forever, the leader answer with the same
        // diverging epoch, and the follower never fetch again (found by the lab:
        // isr-change-failover, seed 9).
        let new_end = p.log.log_end_offset();
        let epochs_cut = !p.epochs.truncate_from_end(new_end).is_empty();
        if cut || epochs_cut {
            save_epochs(storage.as_ref(), &dir, &p.epochs).map_err(storage_refusal)?;
        }
        if cut {
            // Producer state must describe exactly what is left.
            p.producers = producers_from(&p.log)
                .map_err(|source| storage_refusal(StateError::Log { dir, source }))?;
            p.follower_high_watermark = p.follower_high_watermark.min(new_end);
            tracing::info!(
                topic,
                partition,
                from = log_end_offset,
                to = new_end,
                leader_epoch,
                "follower truncated"
            );
            observe::report(Observation::Truncated {
                broker: node_id,
                topic: topic.to_string(),
                topic_id: p.topic_id(),
                partition,
                offset: new_end,
            });
        }
        if complete {
            if let PartitionRole::Follower { truncated, .. } = &mut p.role {
                *truncated = true;
            }
        }
        p.check_invariants();
        Ok(complete)
    }

    /// Append what the leader sent (already offset-assigned batches) and take its high
    /// watermark. Ignored when the partition moved to another leader epoch meanwhile.
    #[allow(clippy::too_many_arguments)]
    pub fn follower_append(
        &mut self,
        topic: &str,
        topic_id: u128,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        records: &[u8],
        leader_high_watermark: i64,
        now_ms: i64,
    ) -> Result<(), Refusal> {
        let node_id = self.config.node_id;
        let storage = self.storage.clone();
        let Some(p) = self.following(topic, topic_id, partition, leader, leader_epoch) else {
            return Ok(());
        };
        let dir = p.log.dir().to_path_buf();
        let log_refusal = |source| {
            storage_refusal(StateError::Log {
                dir: dir.clone(),
                source,
            })
        };
        // Keep whole batches that continue our log; anything before our end was sent again.
        let mut start = 0usize;
        let mut epochs_changed = false;
        let mut headers = Vec::new();
        for item in batch::split_batches(records) {
            let Ok((header, bytes)) = item else {
                break; // a partial batch at the end of a size-limited read
            };
            if header.last_offset() < p.log.log_end_offset() {
                start += bytes.len();
                continue;
            }
            headers.push(header);
        }
        let end = start + headers.iter().map(|h| h.total_bytes()).sum::<usize>();
        if headers.is_empty() {
            p.follower_high_watermark = leader_high_watermark.min(p.log.log_end_offset());
            return Ok(());
        }
        // Epochs are recorded on a copy that replaces the cache only once the records are
        // in the log: the cache must never describe offsets the log does not have.
        let mut epochs = p.epochs.clone();
        for header in &headers {
            if header.partition_leader_epoch >= 0
                && epochs
                    .latest_epoch()
                    .is_none_or(|e| header.partition_leader_epoch > e)
            {
                epochs
                    .assign(header.partition_leader_epoch, header.base_offset)
                    .map_err(|e| Refusal::new(ResponseError::CorruptMessage, e.to_string()))?;
                epochs_changed = true;
            }
        }
        p.log
            .append_replicated(&records[start..end], now_ms)
            .map_err(log_refusal)?;
        p.epochs = epochs;
        if epochs_changed {
            save_epochs(storage.as_ref(), &dir, &p.epochs).map_err(storage_refusal)?;
        }
        for header in &headers {
            p.producers.record(header);
            if observe::active() {
                observe::report(Observation::Batch {
                    broker: node_id,
                    topic: topic.to_string(),
                    topic_id: p.topic_id(),
                    partition,
                    base_offset: header.base_offset,
                    last_offset: header.last_offset(),
                    crc: header.crc,
                    leader_epoch: header.partition_leader_epoch,
                });
            }
        }
        p.follower_high_watermark = leader_high_watermark.min(p.log.log_end_offset());
        p.check_invariants();
        Ok(())
    }

    /// Where an `acks=all` produce appended in `leader_epoch` up to `last_offset` stands.
    pub fn produce_status(
        &self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        last_offset: i64,
    ) -> ProduceWait {
        let Ok(p) = self.partition(topic, partition) else {
            return ProduceWait::Done(ResponseError::UnknownTopicOrPartition.code());
        };
        match &p.role {
            PartitionRole::Standalone => ProduceWait::Done(0),
            PartitionRole::Leader(replica) if replica.leader_epoch() == leader_epoch => {
                if crate::mutation::is(crate::mutation::Mutation::AckBeforeReplication) {
                    return ProduceWait::Done(0);
                }
                match replica.ack_status(last_offset) {
                    AckStatus::Waiting => ProduceWait::Waiting,
                    status => ProduceWait::Done(status.error_code().unwrap_or(0)),
                }
            }
            _ => ProduceWait::Done(ResponseError::NotLeaderOrFollower.code()),
        }
    }

    /// Kafka's ISR expiration: propose removing members that stopped catching up.
    pub fn shrink_isrs(&mut self, now_ms: i64) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        for topic in self.topics.values_mut() {
            for (i, p) in topic.partitions.iter_mut().enumerate() {
                let PartitionRole::Leader(replica) = &mut p.role else {
                    continue;
                };
                if let Some(shrunk) = replica.maybe_shrink_isr(now_ms) {
                    if let Ok(request) = replica.propose_isr(&shrunk) {
                        tracing::info!(topic = topic.name, partition = i, isr = ?request.new_isr, "proposing ISR shrink");
                        cluster
                            .alter_queue
                            .push((topic.name.clone(), i as i32, request));
                    }
                }
            }
        }
    }

    /// Put back an ISR change that could not reach the controller, if the leader still
    /// waits for it.
    pub fn requeue_alter(&mut self, topic: &str, partition: i32, request: AlterPartition) {
        let still_wanted = self
            .partition(topic, partition)
            .is_ok_and(|p| match &p.role {
                PartitionRole::Leader(r) => {
                    r.leader_epoch() == request.leader_epoch
                        && r.partition_epoch() == request.partition_epoch
                        && r.pending_isr().as_deref() == Some(&request.new_isr[..])
                }
                _ => false,
            });
        if let (true, Some(cluster)) = (still_wanted, &mut self.cluster) {
            cluster
                .alter_queue
                .push((topic.to_string(), partition, request));
        }
    }

    /// Go through epoch-based truncation again (the leader refused our fetch offset).
    pub fn restart_truncation(
        &mut self,
        topic: &str,
        topic_id: u128,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
    ) {
        if let Some(p) = self.following(topic, topic_id, partition, leader, leader_epoch) {
            if let PartitionRole::Follower { truncated, .. } = &mut p.role {
                *truncated = false;
            }
        }
    }

    /// ISR changes to send to the controller.
    pub fn take_alter_requests(&mut self) -> Vec<(String, i32, AlterPartition)> {
        self.cluster
            .as_mut()
            .map(|c| std::mem::take(&mut c.alter_queue))
            .unwrap_or_default()
    }

    /// The controller's answer to an AlterPartition request. Returns whether the high
    /// watermark advanced.
    pub fn alter_partition_done(
        &mut self,
        topic: &str,
        partition: i32,
        request: &AlterPartition,
        result: Result<PartitionState, ControllerError>,
        now_ms: i64,
    ) -> bool {
        let node_id = self.config.node_id;
        let Ok((p, _)) = self.partition_mut(topic, partition) else {
            return false;
        };
        let PartitionRole::Leader(replica) = &mut p.role else {
            return false;
        };
        if replica.leader_epoch() != request.leader_epoch {
            return false;
        }
        let advanced = match result {
            Ok(state) if state.leader_epoch == replica.leader_epoch() => {
                matches!(
                    replica.on_isr_committed(&state.isr, state.partition_epoch, now_ms),
                    Ok(crate::replica::partition_replica::IsrUpdate::Applied {
                        high_watermark_advanced: true
                    })
                )
            }
            Ok(_) => false,
            Err(e) => {
                tracing::info!(topic, partition, code = e.code, error = %e.message, "AlterPartition refused");
                // Refusals that say nothing was applied free the pending change; others
                // wait for the metadata image to settle it (as Kafka).
                use crate::controller::logic::error_code::{
                    INELIGIBLE_REPLICA, OPERATION_NOT_ATTEMPTED,
                };
                if matches!(e.code, OPERATION_NOT_ATTEMPTED | INELIGIBLE_REPLICA) {
                    replica.on_alter_partition_rejected(request);
                }
                false
            }
        };
        if advanced {
            p.report_high_watermark(node_id, topic, partition);
        }
        advanced
    }

    /// This broker's replica of a partition, for comparing replicas.
    pub fn replica_digest(&self, topic: &str, partition: i32) -> Option<ReplicaDigest> {
        let p = self.partition(topic, partition).ok()?;
        if matches!(p.role, PartitionRole::NotReplica) {
            return None;
        }
        let mut batches = Vec::new();
        p.log
            .scan_headers(p.log.log_start_offset(), &mut |h| {
                batches.push((h.base_offset, h.last_offset(), h.crc))
            })
            .ok()?;
        let (is_leader, isr) = match &p.role {
            PartitionRole::Leader(r) => (true, r.isr()),
            PartitionRole::Standalone => (true, vec![self.config.node_id]),
            _ => (false, Vec::new()),
        };
        Some(ReplicaDigest {
            leader_epoch: p.leader_epoch,
            is_leader,
            high_watermark: p.high_watermark(),
            log_end_offset: p.log.log_end_offset(),
            isr,
            batches,
        })
    }
}

/// Delete every partition log of a topic gone from the metadata (a failure is logged: the
/// directory is then only disk space, never read again, since directories carry their
/// topic id).
fn delete_logs(topic: super::Topic) {
    crate::probe!(probe::TOPIC_DELETED);
    for (i, partition) in topic.partitions.into_iter().enumerate() {
        if let Err(e) = partition.log.delete() {
            tracing::error!(topic = topic.name, partition = i, error = %e, "cannot delete a partition log");
        }
    }
}

/// Take up the role the image gives this replica. Returns whether the role changed.
#[allow(clippy::too_many_arguments)]
fn take_role(
    p: &mut Partition,
    node_id: i32,
    topic: &str,
    state: &PartitionState,
    eligible: bool,
    config: ReplicaConfig,
    image: &MetadataImage,
    now_ms: i64,
    storage: &dyn crate::storage::Storage,
    data_dir: &std::path::Path,
) -> Result<bool, StateError> {
    if !state.replicas.contains(&node_id) {
        let changed = !matches!(p.role, PartitionRole::NotReplica);
        p.role = PartitionRole::NotReplica;
        return Ok(changed);
    }
    if state.leader == node_id && eligible {
        if let PartitionRole::Leader(replica) = &mut p.role {
            if replica.leader_epoch() == state.leader_epoch {
                // Same leader epoch: the ISR may have changed (ours or the controller's
                // doing), which a newer partition epoch says. An image that leaves this
                // partition as it was must not touch it: taking its (equal) epoch as an
                // answer would drop a pending expansion whose AlterPartition is still on
                // its way, and the high watermark would stop waiting for a replica the
                // controller is about to add to the ISR.
                let advanced = state.partition_epoch > replica.partition_epoch()
                    && matches!(
                        replica.on_isr_committed(&state.isr, state.partition_epoch, now_ms),
                        Ok(crate::replica::partition_replica::IsrUpdate::Applied {
                            high_watermark_advanced: true
                        })
                    );
                for follower in state.replicas.iter().filter(|r| **r != node_id) {
                    replica.set_isr_eligible(*follower, image.broker_eligible(*follower));
                }
                if advanced {
                    p.report_high_watermark(node_id, topic, state.partition);
                }
                return Ok(advanced);
            }
        }
        if p.leader_epoch > state.leader_epoch {
            // An image older than what this replica already took part in: not for us.
            return Ok(false);
        }
        let leader_and_isr = LeaderAndIsr {
            leader: node_id,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            replicas: state.replicas.clone(),
            isr: state.isr.clone(),
        };
        let log = LeaderLog {
            log_start_offset: p.log.log_start_offset(),
            log_end_offset: p.log.log_end_offset(),
        };
        let high_watermark = p.high_watermark().min(log.log_end_offset);
        match PartitionReplica::become_leader(
            config,
            &leader_and_isr,
            log,
            high_watermark,
            &mut p.epochs,
            now_ms,
        ) {
            Ok((mut replica, assigned)) => {
                if assigned.changed() {
                    save_epochs(storage, p.log.dir(), &p.epochs)?;
                }
                for follower in state.replicas.iter().filter(|r| **r != node_id) {
                    replica.set_isr_eligible(*follower, image.broker_eligible(*follower));
                }
                crate::probe!(probe::BECAME_LEADER);
                p.leader_epoch = state.leader_epoch;
                p.role = PartitionRole::Leader(Box::new(replica));
                tracing::info!(topic, partition = state.partition, leader_epoch = state.leader_epoch, isr = ?state.isr, "became leader");
                observe::report(Observation::BecameLeader {
                    broker: node_id,
                    topic: topic.to_string(),
                    topic_id: p.topic_id(),
                    partition: state.partition,
                    leader_epoch: state.leader_epoch,
                });
                p.report_high_watermark(node_id, topic, state.partition);
            }
            Err(e) => {
                tracing::error!(topic, partition = state.partition, error = %e, dir = %data_dir.display(), "cannot lead");
                p.role = PartitionRole::Offline;
            }
        }
        return Ok(true);
    }
    if state.leader == NO_LEADER || state.leader == node_id {
        // Offline, or ours to lead once this process is registered and unfenced.
        let changed =
            !matches!(p.role, PartitionRole::Offline) || p.leader_epoch != state.leader_epoch;
        if matches!(p.role, PartitionRole::Leader(_)) {
            p.follower_high_watermark = p.high_watermark();
        }
        p.role = PartitionRole::Offline;
        p.leader_epoch = p.leader_epoch.max(state.leader_epoch);
        return Ok(changed);
    }
    let same = matches!(p.role, PartitionRole::Follower { leader, .. } if leader == state.leader)
        && p.leader_epoch == state.leader_epoch;
    if same {
        return Ok(false);
    }
    if matches!(p.role, PartitionRole::Leader(_)) {
        crate::probe!(probe::LEADER_TO_FOLLOWER);
        p.follower_high_watermark = p.high_watermark();
    }
    p.leader_epoch = state.leader_epoch;
    p.role = PartitionRole::Follower {
        leader: state.leader,
        truncated: false,
    };
    tracing::info!(
        topic,
        partition = state.partition,
        leader = state.leader,
        leader_epoch = state.leader_epoch,
        "following"
    );
    Ok(true)
}

/// One replica's log of a partition as the lab compares them at the end of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaDigest {
    pub leader_epoch: i32,
    pub is_leader: bool,
    pub high_watermark: i64,
    pub log_end_offset: i64,
    /// The committed ISR, when this replica is the leader.
    pub isr: Vec<i32>,
    /// Every batch: (base offset, last offset, CRC).
    pub batches: Vec<(i64, i64, u32)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;
    use crate::controller::logic::{BrokerRegistration, TopicImage};
    use crate::record::codec::{encode_batch, BatchOptions, NewRecord};
    use crate::storage::MemStorage;
    use std::sync::Arc;

    const ME: i32 = 1;

    fn clustered(storage: &MemStorage) -> BrokerState {
        let config = BrokerConfig {
            node_id: ME,
            data_dir: "/data".into(),
            controller_quorum_voters: vec![(1001, "127.0.0.1:9093".parse().unwrap())],
            ..Default::default()
        };
        BrokerState::open(Arc::new(storage.clone()), config, 0, 7).unwrap()
    }

    /// An image at `offset` with brokers 1..=3 (this process registered, unfenced unless
    /// `fenced`) and topic `t` with one partition in the given state.
    fn image(
        state: &BrokerState,
        offset: u64,
        leader: i32,
        leader_epoch: i32,
        isr: &[i32],
        fenced: bool,
    ) -> MetadataImage {
        let mut image = MetadataImage {
            offset,
            ..Default::default()
        };
        for id in 1..=3 {
            image.brokers.insert(
                id,
                BrokerRegistration {
                    id,
                    incarnation: if id == ME {
                        state.incarnation().unwrap()
                    } else {
                        99
                    },
                    host: "127.0.0.1".into(),
                    port: 9000 + id as u16,
                    rack: None,
                    fenced: id == ME && fenced,
                    registration_offset: 1,
                },
            );
        }
        image.topics.insert(
            "t".into(),
            TopicImage {
                name: "t".into(),
                id: 42,
                configs: BTreeMap::new(),
                partitions: vec![PartitionState {
                    topic: "t".into(),
                    partition: 0,
                    replicas: vec![1, 2, 3],
                    isr: isr.to_vec(),
                    leader,
                    leader_epoch,
                    partition_epoch: leader_epoch,
                }],
            },
        );
        image
    }

    fn batch(epoch: i32, base_offset: i64, n: usize) -> Vec<u8> {
        let records: Vec<NewRecord> = (0..n)
            .map(|i| NewRecord {
                timestamp: 1,
                key: None,
                value: Some(Bytes::from(format!("e{epoch}-{i}"))),
                headers: Vec::new(),
            })
            .collect();
        let mut bytes = encode_batch(&records, &BatchOptions::default()).to_vec();
        batch::set_base_offset(&mut bytes, base_offset);
        batch::set_partition_leader_epoch(&mut bytes, epoch);
        bytes
    }

    fn role(state: &BrokerState) -> String {
        state.partition("t", 0).unwrap().role.to_string()
    }

    #[test]
    fn a_fenced_or_unregistered_process_never_leads() {
        let disk = MemStorage::default();
        let mut state = clustered(&disk);
        let fenced = image(&state, 5, ME, 3, &[1, 2, 3], true);
        state.apply_image(fenced, 0).unwrap();
        assert_eq!(role(&state), "replica without a leader");
        // Registered under another incarnation (a previous process): still not ours.
        let mut other = image(&state, 6, ME, 3, &[1, 2, 3], false);
        other.brokers.get_mut(&ME).unwrap().incarnation += 1;
        state.apply_image(other, 0).unwrap();
        assert_eq!(role(&state), "replica without a leader");
        let ours = image(&state, 7, ME, 3, &[1, 2, 3], false);
        state.apply_image(ours, 0).unwrap();
        assert_eq!(role(&state), "leader in epoch 3");
        // Producing needs the leader; acks=all waits for the ISR.
        let appended = state.produce("t", 0, &batch(0, 0, 2), -1, 0).unwrap();
        assert_eq!(
            state.produce_status("t", 0, appended.leader_epoch, appended.last_offset),
            ProduceWait::Waiting
        );
    }

    #[test]
    fn followers_append_what_the_leader_sends_and_never_serve_consumers() {
        let disk = MemStorage::default();
        let mut state = clustered(&disk);
        let follower = image(&state, 5, 2, 1, &[1, 2, 3], false);
        state.apply_image(follower, 0).unwrap();
        assert_eq!(role(&state), "follower of broker 2");
        let refused = state
            .read("t", 0, 0, ReadLimit::first_batch_whole(1024))
            .unwrap_err();
        assert_eq!(refused.error, ResponseError::NotLeaderOrFollower);
        let refused = state.produce("t", 0, &batch(0, 0, 1), 1, 0).unwrap_err();
        assert_eq!(refused.error, ResponseError::NotLeaderOrFollower);
        let mut records = batch(0, 0, 3);
        records.extend(batch(1, 3, 2));
        state
            .follower_append("t", state.topic_id("t").unwrap(), 0, 2, 1, &records, 4, 0)
            .unwrap();
        let p = state.partition("t", 0).unwrap();
        assert_eq!(p.log.log_end_offset(), 5);
        assert_eq!(p.high_watermark(), 4);
        assert_eq!(p.epochs.latest_epoch(), Some(1));
        // Sent again (a retried fetch): nothing appended twice.
        state
            .follower_append("t", state.topic_id("t").unwrap(), 0, 2, 1, &records, 5, 0)
            .unwrap();
        assert_eq!(state.partition("t", 0).unwrap().log.log_end_offset(), 5);
    }

    #[test]
    fn truncation_follows_the_leaders_epoch_end_and_ignores_answers_from_an_older_epoch() {
        let disk = MemStorage::default();
        let mut state = clustered(&disk);
        let first = image(&state, 5, 2, 1, &[1, 2, 3], false);
        state.apply_image(first, 0).unwrap();
        let mut records = batch(0, 0, 3);
        records.extend(batch(1, 3, 3));
        state
            .follower_append("t", state.topic_id("t").unwrap(), 0, 2, 1, &records, 2, 0)
            .unwrap();
        // Leader 3 takes over in epoch 2; its history says epoch 1 ended at offset 4.
        let second = image(&state, 6, 3, 2, &[1, 3], false);
        state.apply_image(second, 0).unwrap();
        assert_eq!(role(&state), "follower of broker 3");
        // A late answer meant for epoch 1 (KAFKA-18991) must not cut anything.
        let late = EpochEndOffset {
            epoch: 0,
            end_offset: 1,
        };
        assert!(!state
            .follower_truncate("t", state.topic_id("t").unwrap(), 0, 2, 1, Some(late))
            .unwrap());
        assert_eq!(state.partition("t", 0).unwrap().log.log_end_offset(), 6);
        // The answer for epoch 2 truncates to where the leader's epoch 1 ends, not to the
        // high watermark (2): a batch straddling the cut goes whole.
        let answer = EpochEndOffset {
            epoch: 1,
            end_offset: 4,
        };
        assert!(state
            .follower_truncate("t", state.topic_id("t").unwrap(), 0, 3, 2, Some(answer))
            .unwrap());
        let p = state.partition("t", 0).unwrap();
        assert_eq!(p.log.log_end_offset(), 3);
        // Epoch 1's only batch is gone, and so is its cache entry.
        assert_eq!(p.epochs.latest_epoch(), Some(0));
        assert!(matches!(
            p.role,
            PartitionRole::Follower {
                truncated: true,
                ..
            }
        ));
        // Durable: the epoch checkpoint agrees with the log after a crash.
        disk.crash();
        let mut reopened = clustered(&disk);
        let again = image(&reopened, 6, 3, 2, &[1, 3], false);
        reopened.apply_image(again, 0).unwrap();
        let p = reopened.partition("t", 0).unwrap();
        assert_eq!(p.log.log_end_offset(), 3);
        assert_eq!(p.epochs.latest_epoch(), Some(0));
    }

    /// Found by the lab (isr-change-failover, seed 9): this broker led an epoch in which it
    /// appended nothing, then followed again. Its epoch cache ended with an entry at its
    /// log end; the leader's divergence answer pointed at that same end, the truncation cut
    /// no bytes and left the entry, so every later fetch named the same epoch and got the
    /// same answer: the follower never fetched again and the ISR never grew back.
    #[test]
    fn a_truncation_to_the_log_end_still_cuts_epochs_that_start_there() {
        let disk = MemStorage::default();
        let mut state = clustered(&disk);
        state
            .apply_image(image(&state, 5, 2, 1, &[1, 2, 3], false), 0)
            .unwrap();
        state
            .follower_append(
                "t",
                state.topic_id("t").unwrap(),
                0,
                2,
                1,
                &batch(1, 0, 3),
                3,
                0,
            )
            .unwrap();
        // Elected in epoch 2 at log end 3, deposed before appending anything.
        state
            .apply_image(image(&state, 6, ME, 2, &[1, 2, 3], false), 0)
            .unwrap();
        assert!(role(&state).starts_with("leader"), "{}", role(&state));
        assert_eq!(
            state.partition("t", 0).unwrap().epochs.latest_epoch(),
            Some(2)
        );
        state
            .apply_image(image(&state, 7, 3, 3, &[2, 3], false), 0)
            .unwrap();
        assert_eq!(role(&state), "follower of broker 3");
        let target = |state: &BrokerState| state.fetch_targets(3)[0].last_fetched_epoch;
        assert_eq!(target(&state), Some(2));
        // The leader has no epoch 2: its answer is where epoch 1 ends, our log end.
        let answer = EpochEndOffset {
            epoch: 1,
            end_offset: 3,
        };
        assert!(state
            .follower_truncate("t", state.topic_id("t").unwrap(), 0, 3, 3, Some(answer))
            .unwrap());
        let p = state.partition("t", 0).unwrap();
        assert_eq!(p.log.log_end_offset(), 3, "no bytes to cut");
        assert_eq!(
            p.epochs.latest_epoch(),
            Some(1),
            "epoch 2 described nothing"
        );
        assert_eq!(target(&state), Some(1), "the next fetch names epoch 1");
    }

    #[test]
    fn an_unrelated_image_keeps_a_pending_isr_expansion_and_the_high_watermark_waits() {
        // Leader 1 of replicas [1, 2, 3], ISR {1, 3}, min.insync.replicas=2.
        let disk = MemStorage::default();
        let mut state = clustered(&disk);
        let leading = image(&state, 5, ME, 4, &[1, 3], false);
        state.apply_image(leading, 0).unwrap();
        let appended = state.produce("t", 0, &batch(0, 0, 3), -1, 0).unwrap();
        let fetch = |replica_id, offset| FollowerFetch {
            replica_id,
            fetch_offset: offset,
            current_leader_epoch: Some(4),
            last_fetched_epoch: None,
        };
        // Broker 2 fetches at the high watermark (0): the leader proposes it into the ISR
        // and, while the change is pending, waits for it too.
        state
            .follower_fetch(
                "t",
                0,
                &fetch(2, 0),
                ReadLimit::first_batch_whole(1 << 20),
                0,
            )
            .unwrap();
        assert_eq!(state.take_alter_requests().len(), 1);
        // Metadata about something else: same partition state, a newer image.
        let unrelated = image(&state, 6, ME, 4, &[1, 3], false);
        state.apply_image(unrelated, 0).unwrap();
        // Broker 3 has everything; broker 2 has nothing yet: nothing is committed.
        state
            .follower_fetch(
                "t",
                0,
                &fetch(3, 3),
                ReadLimit::first_batch_whole(1 << 20),
                0,
            )
            .unwrap();
        assert_eq!(state.partition("t", 0).unwrap().high_watermark(), 0);
        assert_eq!(
            state.produce_status("t", 0, 4, appended.last_offset),
            ProduceWait::Waiting
        );
    }

    #[test]
    fn a_topic_created_again_under_the_same_name_never_sees_the_old_ones_records() {
        let disk = MemStorage::default();
        let mut state = clustered(&disk);
        let first = image(&state, 5, 2, 0, &[1, 2, 3], false);
        state.apply_image(first, 0).unwrap();
        state
            .follower_append(
                "t",
                state.topic_id("t").unwrap(),
                0,
                2,
                0,
                &batch(0, 0, 3),
                3,
                0,
            )
            .unwrap();
        // Deleted and created again between two images this broker saw: new id.
        let mut again = image(&state, 9, 2, 0, &[1, 2, 3], false);
        again.topics.get_mut("t").unwrap().id = 43;
        let old_id = state.topic_id("t").unwrap();
        state.apply_image(again, 0).unwrap();
        let p = state.partition("t", 0).unwrap();
        assert_eq!((p.log.log_end_offset(), p.epochs.latest_epoch()), (0, None));
        // A fetch answer the old topic's leader sent, arriving now (same leader, same
        // epoch 0): another topic's records, dropped (found by the lab: controller-churn
        // seed 20 with metadata churn).
        state
            .follower_append("t", old_id, 0, 2, 0, &batch(0, 0, 3), 3, 0)
            .unwrap();
        let answer = EpochEndOffset {
            epoch: 0,
            end_offset: 0,
        };
        assert!(!state
            .follower_truncate("t", old_id, 0, 2, 0, Some(answer))
            .unwrap());
        let p = state.partition("t", 0).unwrap();
        assert_eq!(
            p.log.log_end_offset(),
            0,
            "the old topic's records stay out"
        );
        state
            .follower_append(
                "t",
                state.topic_id("t").unwrap(),
                0,
                2,
                0,
                &batch(0, 0, 2),
                2,
                0,
            )
            .unwrap();
        // Deleted while this broker was down: the directory on disk is the old topic's.
        let mut restarted = clustered(&disk);
        let mut third = image(&restarted, 12, 2, 0, &[1, 2, 3], false);
        third.topics.get_mut("t").unwrap().id = 44;
        restarted.apply_image(third, 0).unwrap();
        assert_eq!(restarted.partition("t", 0).unwrap().log.log_end_offset(), 0);
        restarted
            .follower_append(
                "t",
                restarted.topic_id("t").unwrap(),
                0,
                2,
                0,
                &batch(0, 0, 4),
                4,
                0,
            )
            .unwrap();
        restarted.sync_all().unwrap();
        drop(restarted);
        // The same topic after a restart keeps its records.
        let mut reopened = clustered(&disk);
        let mut same = image(&reopened, 12, 2, 0, &[1, 2, 3], false);
        same.topics.get_mut("t").unwrap().id = 44;
        reopened.apply_image(same, 0).unwrap();
        assert_eq!(reopened.partition("t", 0).unwrap().log.log_end_offset(), 4);
    }

    #[test]
    fn a_new_leader_answers_offset_not_available_until_its_high_watermark_catches_up() {
        let disk = MemStorage::default();
        let mut state = clustered(&disk);
        let following = image(&state, 5, 2, 1, &[1, 2], false);
        state.apply_image(following, 0).unwrap();
        // Three records replicated; the old leader had told us only offset 1 was committed.
        state
            .follower_append(
                "t",
                state.topic_id("t").unwrap(),
                0,
                2,
                1,
                &batch(1, 0, 3),
                1,
                0,
            )
            .unwrap();
        let leading = image(&state, 6, ME, 2, &[1, 2], false);
        state.apply_image(leading, 0).unwrap();
        let refused = state.list_offset("t", 0, -1).unwrap_err();
        assert_eq!(refused.error, ResponseError::OffsetNotAvailable);
        // Broker 2 shows it has all three: the high watermark reaches the epoch start.
        let fetch = FollowerFetch {
            replica_id: 2,
            fetch_offset: 3,
            current_leader_epoch: Some(2),
            last_fetched_epoch: None,
        };
        state
            .follower_fetch("t", 0, &fetch, ReadLimit::first_batch_whole(1 << 20), 0)
            .unwrap();
        assert_eq!(state.list_offset("t", 0, -1).unwrap(), (3, -1));
    }

    #[test]
    fn a_leader_fences_followers_of_other_epochs_and_commits_what_the_isr_has() {
        let disk = MemStorage::default();
        let mut state = clustered(&disk);
        let leading = image(&state, 5, ME, 4, &[1, 2], false);
        state.apply_image(leading, 0).unwrap();
        let appended = state.produce("t", 0, &batch(0, 0, 3), -1, 0).unwrap();
        let fetch = |offset, epoch| FollowerFetch {
            replica_id: 2,
            fetch_offset: offset,
            current_leader_epoch: Some(epoch),
            last_fetched_epoch: None,
        };
        let stale = state
            .follower_fetch(
                "t",
                0,
                &fetch(0, 3),
                ReadLimit::first_batch_whole(1 << 20),
                0,
            )
            .unwrap_err();
        assert_eq!(stale.error, ResponseError::FencedLeaderEpoch);
        let ahead = state
            .follower_fetch(
                "t",
                0,
                &fetch(0, 5),
                ReadLimit::first_batch_whole(1 << 20),
                0,
            )
            .unwrap_err();
        assert_eq!(ahead.error, ResponseError::UnknownLeaderEpoch);
        let (read, _) = state
            .follower_fetch(
                "t",
                0,
                &fetch(0, 4),
                ReadLimit::first_batch_whole(1 << 20),
                0,
            )
            .unwrap();
        assert!(
            !read.records.is_empty(),
            "followers read past the high watermark"
        );
        assert_eq!(
            state.produce_status("t", 0, 4, appended.last_offset),
            ProduceWait::Waiting
        );
        // The follower's next fetch shows it has everything: committed.
        state
            .follower_fetch(
                "t",
                0,
                &fetch(3, 4),
                ReadLimit::first_batch_whole(1 << 20),
                0,
            )
            .unwrap();
        assert_eq!(state.partition("t", 0).unwrap().high_watermark(), 3);
        assert_eq!(
            state.produce_status("t", 0, 4, appended.last_offset),
            ProduceWait::Done(0)
        );
        // A new leader epoch elsewhere: the old produce can no longer be acknowledged.
        let moved = image(&state, 6, 2, 5, &[2, 3], false);
        state.apply_image(moved, 0).unwrap();
        assert_eq!(
            state.produce_status("t", 0, 4, appended.last_offset),
            ProduceWait::Done(ResponseError::NotLeaderOrFollower.code())
        );
    }
}
