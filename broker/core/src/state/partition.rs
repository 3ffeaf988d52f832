//! One partition on this broker: its local replica (log, producer state, leader epoch
//! history) and the part it plays (standalone, leader, follower, offline), with what a
//! partition decides on its own: whether it may append, the idempotence checks and the
//! append, reads up to the high watermark, ListOffsets.
//!
//! Fields are private to `state`: the shell reads a partition through its accessors and
//! changes one only through `BrokerState`.

use super::{
    batch_refusal, not_leader, storage_refusal, Appended, PartitionRole, ReadResult, Refusal,
    StateError,
};
use crate::log::{LogError, PartitionLog, ReadLimit};
use crate::probe;
use crate::producer_state::{ProducerStateTable, SequenceCheck};
use crate::record::batch::{self, BatchHeader};
use crate::record::codec;
use crate::replica::epoch_cache::LeaderEpochCache;
use crate::topic_config::{TimestampType, TopicConfig};
use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use std::path::PathBuf;

/// A validated batch of a produce request: its header and its bytes.
type Batch<'a> = (BatchHeader, &'a [u8]);

/// The sequence check's decision: the batches to append (offsets assigned) and the
/// original offset of the first duplicate, if any.
type Checked<'a> = (Vec<Batch<'a>>, Option<i64>);

/// One partition on this broker: its local replica and the part it plays.
pub struct Partition {
    topic: String,
    /// The topic's id (a topic created again under its name has another).
    topic_id: u128,
    index: i32,
    pub(super) log: PartitionLog,
    pub(super) producers: ProducerStateTable,
    /// This broker's current leader epoch for the partition, stamped on every batch it
    /// appends.
    pub(super) leader_epoch: i32,
    /// Where each leader epoch began (KIP-101/279), persisted in `leader-epoch-checkpoint`.
    pub(super) epochs: LeaderEpochCache,
    /// Leader, follower, standalone (the only replica of a broker without controllers).
    pub(super) role: PartitionRole,
    /// A follower's high watermark: the leader's, capped at the local log end. Also what a
    /// new leader starts from.
    pub(super) follower_high_watermark: i64,
}

impl Partition {
    /// The topic's id.
    pub(super) fn topic_id(&self) -> u128 {
        self.topic_id
    }

    /// `topic`: the topic's name and id.
    pub(super) fn new(
        (topic, topic_id): (&str, u128),
        index: i32,
        log: PartitionLog,
        producers: ProducerStateTable,
        leader_epoch: i32,
        epochs: LeaderEpochCache,
        role: PartitionRole,
    ) -> Partition {
        Partition {
            topic: topic.to_string(),
            topic_id,
            index,
            log,
            producers,
            leader_epoch,
            epochs,
            role,
            follower_high_watermark: 0,
        }
    }

    /// This broker's current leader epoch for the partition.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// The part this broker plays for the partition.
    pub fn role(&self) -> &PartitionRole {
        &self.role
    }

    /// The local log (read-only).
    pub fn log(&self) -> &PartitionLog {
        &self.log
    }

    /// Standalone, the leader is the whole ISR, so the high watermark is the log end
    /// offset. A leader's comes from its ISR; a follower's from its leader.
    pub fn high_watermark(&self) -> i64 {
        match &self.role {
            PartitionRole::Standalone => self.log.log_end_offset(),
            PartitionRole::Leader(replica) => replica.high_watermark(),
            _ => self.follower_high_watermark.min(self.log.log_end_offset()),
        }
    }

    /// What must hold whenever a partition has changed (checked after every append,
    /// replicated append, truncation and role change): the high watermark within the
    /// log, the epoch cache describing no offset the log lacks, and no cached epoch newer
    /// than the one this replica acts in; a leader acts in its replica state's epoch.
    pub(super) fn check_invariants(&self) {
        let (topic, partition) = (&self.topic, self.index);
        let log_end_offset = self.log.log_end_offset();
        assert!(
            self.high_watermark() <= log_end_offset,
            "{topic}-{partition}: high watermark {} beyond the log end {log_end_offset}",
            self.high_watermark()
        );
        if let Some(latest) = self.epochs.latest_entry() {
            assert!(
                latest.start_offset <= log_end_offset,
                "{topic}-{partition}: epoch cache entry {latest} beyond the log end {log_end_offset}"
            );
            if !matches!(
                self.role,
                PartitionRole::Offline | PartitionRole::NotReplica
            ) {
                assert!(
                    latest.epoch <= self.leader_epoch,
                    "{topic}-{partition}: cached epoch {} newer than the current {}",
                    latest.epoch,
                    self.leader_epoch
                );
            }
        }
        if let PartitionRole::Leader(replica) = &self.role {
            assert_eq!(
                replica.leader_epoch(),
                self.leader_epoch,
                "{topic}-{partition}: the leader's replica state is in another epoch"
            );
        }
    }

    fn log_refusal(&self, e: LogError) -> Refusal {
        storage_refusal(StateError::Log {
            dir: PathBuf::from(format!("{}-{}", self.topic, self.index)),
            source: e,
        })
    }

    /// Append the batches of one produce request. Every batch is validated and
    /// sequence-checked before any is appended, so a refused request leaves the log
    /// untouched.
    pub(super) fn produce(
        &mut self,
        node_id: i32,
        config: &TopicConfig,
        records: &[u8],
        acks: i16,
        now_ms: i64,
    ) -> Result<Appended, Refusal> {
        if records.len() > config.max_message_bytes {
            return Err(Refusal::new(
                ResponseError::MessageTooLarge,
                format!(
                    "{} bytes exceed max.message.bytes {}",
                    records.len(),
                    config.max_message_bytes
                ),
            ));
        }
        self.check_can_append(acks, config)?;
        let batches = client_batches(records)?;
        // Decide about every batch first. A duplicate answers with its original offset.
        let mut producers = self.producers.clone();
        let (to_append, duplicate_offset) = self.sequence_check(&mut producers, &batches)?;
        let mut first_offset = duplicate_offset;
        for (header, bytes) in to_append {
            let base_offset = self.append_checked(&header, bytes, config, now_ms)?;
            first_offset.get_or_insert(base_offset);
            self.report_batch(node_id, base_offset);
        }
        self.producers = producers;
        let log_end_offset = self.log.log_end_offset();
        let mut high_watermark_advanced = false;
        if let PartitionRole::Leader(replica) = &mut self.role {
            high_watermark_advanced = replica.on_leader_append(log_end_offset, now_ms);
        }
        if high_watermark_advanced {
            self.report_high_watermark(node_id, &self.topic, self.index);
        }
        self.check_invariants();
        Ok(Appended {
            base_offset: first_offset.expect("at least one batch"),
            log_append_time_ms: match config.timestamp_type {
                TimestampType::LogAppendTime => now_ms,
                TimestampType::CreateTime => -1,
            },
            log_start_offset: self.log.log_start_offset(),
            last_offset: log_end_offset - 1,
            leader_epoch: self.leader_epoch,
        })
    }

    /// Whether this replica may take a produce with `acks` now: it leads, and an acks=all
    /// produce finds at least min.insync.replicas in the ISR.
    fn check_can_append(&self, acks: i16, config: &TopicConfig) -> Result<(), Refusal> {
        match &self.role {
            PartitionRole::Standalone => {
                // The ISR of a single-replica partition is the leader alone.
                let isr_size = 1;
                if acks == -1 && isr_size < config.min_insync_replicas {
                    crate::probe!(probe::NOT_ENOUGH_REPLICAS);
                    return Err(Refusal::new(
                        ResponseError::NotEnoughReplicas,
                        format!(
                            "ISR has {isr_size} replica, min.insync.replicas is {}",
                            config.min_insync_replicas
                        ),
                    ));
                }
                Ok(())
            }
            PartitionRole::Leader(replica) => replica
                .can_append(acks)
                .map_err(|e| Refusal::new(ResponseError::NotEnoughReplicas, e.to_string())),
            other => Err(not_leader(&self.topic, self.index, other)),
        }
    }

    /// The idempotence decision for every batch, against a copy of the producer state that
    /// records what would be appended: the batches to append with their offsets assigned,
    /// and the original offset of the first duplicate, if any.
    fn sequence_check<'a>(
        &self,
        producers: &mut ProducerStateTable,
        batches: &[Batch<'a>],
    ) -> Result<Checked<'a>, Refusal> {
        let mut first_offset = None;
        let mut to_append: Vec<Batch<'a>> = Vec::with_capacity(batches.len());
        for (header, bytes) in batches {
            match producers.check(header) {
                SequenceCheck::Append => {
                    let mut assigned = *header;
                    assigned.base_offset =
                        self.log.log_end_offset() + to_append_records(&to_append);
                    producers.record(&assigned);
                    to_append.push((assigned, *bytes));
                }
                SequenceCheck::Duplicate { base_offset, .. } => {
                    crate::probe!(probe::IDEMPOTENT_DUPLICATE);
                    tracing::debug!(
                        topic = self.topic,
                        partition = self.index,
                        producer_id = header.producer_id,
                        base_offset,
                        "duplicate batch"
                    );
                    first_offset.get_or_insert(base_offset);
                }
                SequenceCheck::InvalidProducerEpoch => {
                    crate::probe!(probe::PRODUCER_FENCED);
                    return Err(Refusal::new(
                        ResponseError::InvalidProducerEpoch,
                        format!(
                            "producer {} epoch {} is fenced",
                            header.producer_id, header.producer_epoch
                        ),
                    ));
                }
                SequenceCheck::OutOfOrderSequence => {
                    crate::probe!(probe::OUT_OF_ORDER_SEQUENCE);
                    return Err(Refusal::new(
                        ResponseError::OutOfOrderSequenceNumber,
                        format!(
                            "producer {} sequence {} does not follow the last appended batch",
                            header.producer_id, header.base_sequence
                        ),
                    ));
                }
            }
        }
        Ok((to_append, first_offset))
    }

    /// Append one sequence-checked batch as leader (stamped with the leader epoch and, for
    /// LogAppendTime topics, the time) and check the invariants the lab relies on: the
    /// append lands at the log end at the offset the sequence check assigned, offsets stay
    /// dense, the high watermark never moves back. Returns the batch's base offset.
    fn append_checked(
        &mut self,
        header: &BatchHeader,
        bytes: &[u8],
        config: &TopicConfig,
        now_ms: i64,
    ) -> Result<i64, Refusal> {
        let (topic, partition) = (&self.topic, self.index);
        let high_watermark_before = self.high_watermark();
        let log_end_before = self.log.log_end_offset();
        let mut owned = BytesMut::from(bytes);
        // The leader stamps its epoch on what it appends; the field is outside the CRC.
        batch::set_partition_leader_epoch(&mut owned, self.leader_epoch);
        if config.timestamp_type == TimestampType::LogAppendTime {
            batch::set_log_append_time(&mut owned, now_ms);
        }
        let info = match self.log.append(&mut owned, now_ms) {
            Ok(info) => info,
            Err(e) => return Err(self.log_refusal(e)),
        };
        assert_eq!(
            info.base_offset, log_end_before,
            "{topic}-{partition}: append not at the log end"
        );
        assert_eq!(
            info.base_offset, header.base_offset,
            "{topic}-{partition}: offset differs from the one sequence-checked"
        );
        assert_eq!(
            self.log.log_end_offset(),
            log_end_before + header.last_offset_delta as i64 + 1,
            "{topic}-{partition}: offsets are not dense"
        );
        assert!(
            self.high_watermark() >= high_watermark_before,
            "{topic}-{partition}: high watermark moved backwards"
        );
        Ok(info.base_offset)
    }

    /// Read from `offset` up to the high watermark, within `limit` (KIP-74).
    pub(super) fn read(
        &self,
        node_id: i32,
        offset: i64,
        limit: ReadLimit,
    ) -> Result<ReadResult, Refusal> {
        let (topic, partition) = (&self.topic, self.index);
        if !matches!(
            self.role,
            PartitionRole::Standalone | PartitionRole::Leader(_)
        ) {
            return Err(not_leader(topic, partition, &self.role));
        }
        let high_watermark = self.high_watermark();
        let log_start_offset = self.log.log_start_offset();
        // Between the high watermark and the log end there is nothing to serve yet (a new
        // leader's high watermark may lag what a consumer read from the previous one);
        // beyond the log end the offset is out of range.
        let log_end_offset = self.log.log_end_offset();
        if offset < log_start_offset || offset > log_end_offset {
            return Err(Refusal::new(
                ResponseError::OffsetOutOfRange,
                format!("offset {offset} is outside {log_start_offset}..={log_end_offset}"),
            ));
        }
        let records = if offset >= high_watermark || limit.is_nothing() {
            Bytes::new()
        } else {
            self.log
                .read(offset, high_watermark, limit)
                .map_err(|e| self.log_refusal(e))?
        };
        // What clients are told, for the lab's check that it never goes back in an epoch
        // (the field itself is guarded; this checks what is served).
        if crate::observe::active() && matches!(self.role, PartitionRole::Leader(_)) {
            self.report_high_watermark(node_id, topic, partition);
        }
        // Invariant: nothing at or beyond the high watermark is ever served.
        for (header, _) in batch::split_batches(&records).flatten() {
            assert!(
                header.last_offset() < high_watermark,
                "{topic}-{partition}: served offset {} at or beyond the high watermark {high_watermark}",
                header.last_offset()
            );
        }
        Ok(ReadResult {
            records,
            high_watermark,
            log_start_offset,
        })
    }

    /// The leader epoch this replica leads in (standalone: every partition), if it leads.
    pub fn led_epoch(&self) -> Option<i32> {
        match &self.role {
            PartitionRole::Standalone => Some(self.leader_epoch()),
            PartitionRole::Leader(replica) => Some(replica.leader_epoch()),
            _ => None,
        }
    }

    /// A leader's read from `offset` up to its log end, past the high watermark: what a
    /// new group coordinator replays (Kafka loads `__consumer_offsets` to the log end, the
    /// leader's log being what its followers will hold). Never served to clients.
    pub(super) fn read_to_log_end(
        &self,
        offset: i64,
        limit: ReadLimit,
    ) -> Result<ReadResult, Refusal> {
        let (topic, partition) = (&self.topic, self.index);
        if self.led_epoch().is_none() {
            return Err(not_leader(topic, partition, &self.role));
        }
        let log_start_offset = self.log.log_start_offset();
        let log_end_offset = self.log.log_end_offset();
        if offset < log_start_offset || offset > log_end_offset {
            return Err(Refusal::new(
                ResponseError::OffsetOutOfRange,
                format!("offset {offset} is outside {log_start_offset}..={log_end_offset}"),
            ));
        }
        let records = if offset == log_end_offset || limit.is_nothing() {
            Bytes::new()
        } else {
            self.log
                .read(offset, log_end_offset, limit)
                .map_err(|e| self.log_refusal(e))?
        };
        Ok(ReadResult {
            records,
            high_watermark: self.high_watermark(),
            log_start_offset,
        })
    }

    /// ListOffsets: -2 earliest, -1 latest, -3 the record with the largest timestamp,
    /// otherwise the first record whose timestamp is at or after `timestamp`.
    /// Returns (offset, timestamp); (-1, -1) when no record qualifies.
    pub(super) fn list_offset(&self, timestamp: i64) -> Result<(i64, i64), Refusal> {
        let (topic, partition) = (&self.topic, self.index);
        // KIP-207: a new leader's high watermark starts where it knew it, which may be below
        // what the previous leader had committed; until it reaches the start of this leader
        // epoch (where everything committed before lies below), offsets it answers could go
        // back, so it answers OFFSET_NOT_AVAILABLE and the client retries.
        if let PartitionRole::Leader(replica) = &self.role {
            if replica.high_watermark() < replica.leader_epoch_start_offset() {
                crate::probe!(probe::OFFSET_NOT_AVAILABLE);
                return Err(Refusal::new(
                    ResponseError::OffsetNotAvailable,
                    format!(
                        "{topic}-{partition}: the high watermark {} has not reached the start \
                         of leader epoch {} at offset {}",
                        replica.high_watermark(),
                        replica.leader_epoch(),
                        replica.leader_epoch_start_offset()
                    ),
                ));
            }
        }
        let io = |e: LogError| self.log_refusal(e);
        match timestamp {
            -2 => Ok((self.log.log_start_offset(), -1)),
            -1 => Ok((self.high_watermark(), -1)),
            -3 => {
                let mut best: Option<(i64, i64)> = None;
                self.log
                    .scan_headers(self.log.log_start_offset(), &mut |h| {
                        if best.is_none_or(|(_, ts)| h.max_timestamp > ts) {
                            best = Some((h.base_offset, h.max_timestamp));
                        }
                    })
                    .map_err(io)?;
                let Some((base, max_ts)) = best else {
                    return Ok((-1, -1));
                };
                // Find the exact record inside the batch that carries the max timestamp.
                let bytes = self
                    .log
                    .read(base, self.high_watermark(), ReadLimit::first_batch_whole(1))
                    .map_err(io)?;
                let exact = first_record_at_or_after(&bytes, max_ts);
                Ok(exact.unwrap_or((base, max_ts)))
            }
            ts if ts >= 0 => {
                let Some((_, bytes)) = self.log.find_batch_by_timestamp(ts).map_err(io)? else {
                    return Ok((-1, -1));
                };
                Ok(first_record_at_or_after(&bytes, ts).unwrap_or((-1, -1)))
            }
            other => Err(Refusal::new(
                ResponseError::InvalidRequest,
                format!("unknown special timestamp {other}"),
            )),
        }
    }
}

/// The batches of a client's produce, each validated; control and transactional batches
/// are refused (clients may not write the former; transactions are not served yet).
fn client_batches(records: &[u8]) -> Result<Vec<Batch<'_>>, Refusal> {
    let mut batches = Vec::new();
    for item in batch::split_batches(records) {
        let (_, bytes) = item.map_err(batch_refusal)?;
        let header = batch::validate(bytes).map_err(batch_refusal)?;
        if header.is_control() {
            return Err(Refusal::new(
                ResponseError::InvalidRecord,
                "clients may not write control batches",
            ));
        }
        if header.is_transactional() {
            return Err(Refusal::new(
                ResponseError::InvalidRecord,
                "transactional batches are not supported by this broker yet",
            ));
        }
        batches.push((header, bytes));
    }
    if batches.is_empty() {
        return Err(Refusal::new(
            ResponseError::InvalidRecord,
            "produce request carries no record batch",
        ));
    }
    Ok(batches)
}

fn to_append_records(pending: &[Batch<'_>]) -> i64 {
    pending
        .iter()
        .map(|(h, _)| h.last_offset_delta as i64 + 1)
        .sum()
}

fn first_record_at_or_after(batch_bytes: &[u8], timestamp: i64) -> Option<(i64, i64)> {
    let batches = codec::decode_batches(batch_bytes).ok()?;
    batches
        .iter()
        .flat_map(|(_, records)| records.iter())
        .find(|r| r.timestamp >= timestamp)
        .map(|r| (r.offset, r.timestamp))
}

impl Partition {
    /// Tell the lab's observer (if any) about the batch this leader just appended at
    /// `base_offset` (as stored: leader epoch stamped, CRC as the producer sent it).
    fn report_batch(&self, node_id: i32, base_offset: i64) {
        if !crate::observe::active()
            || crate::mutation::is(crate::mutation::Mutation::SilentBatchReports)
        {
            return;
        }
        let Ok(Some(header)) = self.log.last_batch() else {
            return;
        };
        debug_assert_eq!(header.base_offset, base_offset);
        crate::observe::report(crate::observe::Observation::Batch {
            broker: node_id,
            topic: self.topic.clone(),
            topic_id: self.topic_id,
            partition: self.index,
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            crc: header.crc,
            leader_epoch: header.partition_leader_epoch,
        });
    }

    /// Tell the lab's observer (if any) the high watermark this leader now serves.
    pub(super) fn report_high_watermark(&self, broker: i32, topic: &str, partition: i32) {
        if crate::observe::active() {
            crate::observe::report(crate::observe::Observation::HighWatermark {
                broker,
                topic: topic.to_string(),
                topic_id: self.topic_id,
                partition,
                leader_epoch: self.leader_epoch,
                high_watermark: self.high_watermark(),
            });
        }
    }
}
