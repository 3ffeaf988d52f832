//! The broker's deciding state: topics, partitions, their logs and producer state.
//!
//! Pure and synchronous: no sockets, no clock, no RNG inside. Time (`now_ms`) and the seed
//! for topic ids come in as arguments; disk goes through the `Storage` trait. The async
//! shell in `server` owns one `BrokerState` behind a mutex and turns Kafka requests into
//! calls on it.

use crate::config::{BrokerConfig, PRODUCER_ID_BLOCK_SIZE, TOPIC_PARTITIONS_MAX};
use crate::log::{LogError, PartitionLog, ReadLimit};
use crate::probe;
use crate::record::batch::BatchError;
use crate::replica::epoch_cache::{EpochEndOffset, LeaderEpochCache};
use crate::storage::{write_file_atomic, Storage};
use crate::topic_config::TopicConfig;
use bytes::Bytes;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A request-level failure: a Kafka error code and a message for the client and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub error: ResponseError,
    pub message: String,
}

impl Refusal {
    pub fn new(error: ResponseError, message: impl Into<String>) -> Refusal {
        Refusal {
            error,
            message: message.into(),
        }
    }

    /// A refusal from a numeric Kafka error code (the controller's and the replica state
    /// machine's form); a code this build does not know stays as it is.
    pub fn from_code(code: i16, message: impl Into<String>) -> Refusal {
        let error = ResponseError::try_from_code(code).unwrap_or(ResponseError::Unknown(code));
        Refusal::new(error, message)
    }
}

impl From<crate::controller::logic::ControllerError> for Refusal {
    fn from(e: crate::controller::logic::ControllerError) -> Refusal {
        Refusal::from_code(e.code, e.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("log {dir}: {source}")]
    Log { dir: PathBuf, source: LogError },
    #[error("metadata file {path}: {message}")]
    Metadata { path: PathBuf, message: String },
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
}

mod partition;
mod persist;
mod replication;

use persist::*;

pub use partition::Partition;
pub use replication::{FetchTarget, FollowerRead, PartitionRole, ProduceWait, ReplicaDigest};

pub struct Topic {
    pub name: String,
    pub id: u128,
    pub replication_factor: i16,
    pub config: TopicConfig,
    pub partitions: Vec<Partition>,
}

/// Result of producing to one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub log_start_offset: i64,
    /// The last offset now in the log (what an acks=all produce waits to see committed).
    pub last_offset: i64,
    /// The leader epoch the records were appended in.
    pub leader_epoch: i32,
    /// The time stamped on the batches (LogAppendTime topics), else -1.
    pub log_append_time_ms: i64,
}

/// Result of reading one partition.
#[derive(Debug, Clone)]
pub struct ReadResult {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

pub struct BrokerState {
    storage: Arc<dyn Storage>,
    config: BrokerConfig,
    /// Set when the broker belongs to a cluster run by a controller quorum.
    cluster: Option<replication::ClusterView>,
    topics: BTreeMap<String, Topic>,
    producer_id_next: i64,
    producer_id_block_end: i64,
    /// Topic ids come from here, seeded by the shell.
    ids: crate::mix::SplitMix64,
}

impl BrokerState {
    /// Open the data directory: load topic metadata, recover every partition log and
    /// rebuild producer state from it.
    pub fn open(
        storage: Arc<dyn Storage>,
        config: BrokerConfig,
        now_ms: i64,
        seed: u64,
    ) -> Result<BrokerState, StateError> {
        crate::storage::create_dir_all_durable(storage.as_ref(), &config.data_dir.join(META_DIR))?;
        // In a cluster, topics come from the controller's metadata image, not from disk.
        let meta = if config.is_clustered() {
            MetadataFile::default()
        } else {
            read_metadata(storage.as_ref(), &config.data_dir)?
        };
        let producer_id_block_end = read_producer_id_block(storage.as_ref(), &config.data_dir)?;
        let cluster = config
            .is_clustered()
            .then(|| replication::ClusterView::new(seed ^ 0x5eed));
        let mut state = BrokerState {
            storage,
            config,
            cluster,
            topics: BTreeMap::new(),
            producer_id_next: producer_id_block_end,
            producer_id_block_end,
            ids: crate::mix::SplitMix64::new(seed),
        };
        for record in meta.topics {
            let id = u128::from_str_radix(&record.id, 16).map_err(|_| StateError::Metadata {
                path: state.meta_path(TOPICS_FILE),
                message: format!("topic {} has a bad id {:?}", record.name, record.id),
            })?;
            let config = TopicConfig::new(
                &state.config.log,
                state.config.message_max_bytes,
                &record.configs,
            )
            .map_err(|message| StateError::Metadata {
                path: state.meta_path(TOPICS_FILE),
                message: format!("topic {}: {message}", record.name),
            })?;
            let topic = state.open_topic(
                record.name,
                id,
                record.partitions,
                record.replication_factor,
                config,
                now_ms,
            )?;
            state.topics.insert(topic.name.clone(), topic);
        }
        Ok(state)
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn topics(&self) -> impl Iterator<Item = &Topic> {
        self.topics.values()
    }

    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    /// The id of the topic named `name`, if this broker holds it.
    pub fn topic_id(&self, name: &str) -> Option<u128> {
        self.topics.get(name).map(|t| t.id)
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Result<&Partition, Refusal> {
        self.topics
            .get(topic)
            .and_then(|t| {
                usize::try_from(partition)
                    .ok()
                    .and_then(|p| t.partitions.get(p))
            })
            .ok_or_else(|| unknown_partition(topic, partition))
    }

    /// A partition this broker leads, for a client that named `current_leader_epoch`
    /// (negative: none): unknown, fenced by epoch (KIP-320) or led elsewhere are refusals.
    pub fn leading_partition(
        &self,
        topic: &str,
        partition: i32,
        current_leader_epoch: i32,
    ) -> Result<&Partition, Refusal> {
        let p = self.partition(topic, partition)?;
        check_leader_epoch(current_leader_epoch, p.leader_epoch)?;
        match p.role {
            PartitionRole::Standalone | PartitionRole::Leader(_) => Ok(p),
            ref other => Err(not_leader(topic, partition, other)),
        }
    }

    fn partition_mut(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<(&mut Partition, &TopicConfig), Refusal> {
        let t = self
            .topics
            .get_mut(topic)
            .ok_or_else(|| unknown_partition(topic, partition))?;
        let p = usize::try_from(partition)
            .ok()
            .and_then(|p| t.partitions.get_mut(p))
            .ok_or_else(|| unknown_partition(topic, partition))?;
        Ok((p, &t.config))
    }

    /// Create a topic. `partitions` and `replication_factor` of -1 mean the broker default.
    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        overrides: &BTreeMap<String, String>,
        validate_only: bool,
        now_ms: i64,
    ) -> Result<(), Refusal> {
        validate_topic_name(name)?;
        if self.topics.contains_key(name) {
            return Err(Refusal::new(
                ResponseError::TopicAlreadyExists,
                format!("topic {name} already exists"),
            ));
        }
        let partitions = if partitions == -1 {
            self.config.num_partitions
        } else {
            partitions
        };
        if !(1..=TOPIC_PARTITIONS_MAX).contains(&partitions) {
            return Err(Refusal::new(
                ResponseError::InvalidPartitions,
                format!("partitions must be in 1..={TOPIC_PARTITIONS_MAX}, got {partitions}"),
            ));
        }
        let replication_factor = if replication_factor == -1 {
            self.config.default_replication_factor
        } else {
            replication_factor
        };
        if replication_factor != 1 {
            return Err(Refusal::new(
                ResponseError::InvalidReplicationFactor,
                format!(
                    "replication factor {replication_factor} is larger than the 1 available broker"
                ),
            ));
        }
        let config = TopicConfig::new(&self.config.log, self.config.message_max_bytes, overrides)
            .map_err(|m| Refusal::new(ResponseError::InvalidConfig, m))?;
        if validate_only {
            return Ok(());
        }
        let id = self.next_topic_id();
        let topic = self
            .open_topic(
                name.to_string(),
                id,
                partitions,
                replication_factor,
                config,
                now_ms,
            )
            .map_err(storage_refusal)?;
        self.topics.insert(name.to_string(), topic);
        self.write_metadata().map_err(storage_refusal)?;
        tracing::info!(topic = name, partitions, "created topic");
        Ok(())
    }

    pub fn delete_topic(&mut self, name: &str) -> Result<(), Refusal> {
        let topic = self.topics.remove(name).ok_or_else(|| {
            Refusal::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic {name} does not exist"),
            )
        })?;
        // Metadata first: a crash between the two steps leaves orphan directories, which
        // are harmless, rather than a topic whose logs are gone.
        self.write_metadata().map_err(storage_refusal)?;
        for partition in topic.partitions {
            partition.log.delete().map_err(|e| {
                storage_refusal(StateError::Log {
                    dir: PathBuf::from(name),
                    source: e,
                })
            })?;
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Append the batches of one produce request to one partition (see
    /// `Partition::produce`).
    pub fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[u8],
        acks: i16,
        now_ms: i64,
    ) -> Result<Appended, Refusal> {
        let node_id = self.config.node_id;
        let (p, config) = self.partition_mut(topic, partition)?;
        p.produce(node_id, config, records, acks, now_ms)
    }

    /// Read from `offset` up to the high watermark, within `limit` (KIP-74).
    pub fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        limit: ReadLimit,
    ) -> Result<ReadResult, Refusal> {
        self.partition(topic, partition)?
            .read(self.config.node_id, offset, limit)
    }

    /// A leader's read past its high watermark, to its log end (see
    /// `Partition::read_to_log_end`): for the group coordinator's load only.
    pub fn read_to_log_end(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        limit: ReadLimit,
    ) -> Result<ReadResult, Refusal> {
        self.partition(topic, partition)?
            .read_to_log_end(offset, limit)
    }

    /// ListOffsets (see `Partition::list_offset`).
    pub fn list_offset(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<(i64, i64), Refusal> {
        self.partition(topic, partition)?.list_offset(timestamp)
    }

    /// InitProducerId for a non-transactional idempotent producer: a fresh id, epoch 0.
    /// Ids are reserved on disk in blocks so a restart never hands out one twice.
    pub fn init_producer_id(&mut self) -> Result<(i64, i16), Refusal> {
        if self.producer_id_next >= self.producer_id_block_end {
            let end = self.producer_id_block_end + PRODUCER_ID_BLOCK_SIZE;
            write_file_atomic(
                self.storage.as_ref(),
                &self.meta_path(PRODUCER_ID_FILE),
                end.to_string().as_bytes(),
                true,
            )
            .map_err(|e| storage_refusal(e.into()))?;
            self.producer_id_block_end = end;
        }
        let mut id = self.producer_id_next;
        self.producer_id_next += 1;
        if self.cluster.is_some() {
            // Every broker hands out ids: each owns a range of 2^40 (Kafka asks the
            // controller for blocks; a range per broker is as unique and needs no round trip).
            id += i64::from(self.config.node_id) << 40;
        }
        Ok((id, 0))
    }

    /// Apply `flush.ms` to every partition.
    pub fn flush_due(&mut self, now_ms: i64) -> Result<(), StateError> {
        for topic in self.topics.values_mut() {
            for (i, p) in topic.partitions.iter_mut().enumerate() {
                p.log
                    .flush_if_due(now_ms)
                    .map_err(|source| StateError::Log {
                        dir: PathBuf::from(format!("{}-{i}", topic.name)),
                        source,
                    })?;
            }
        }
        Ok(())
    }

    /// Sync every log: clean shutdown.
    pub fn sync_all(&mut self) -> Result<(), StateError> {
        for topic in self.topics.values_mut() {
            for (i, p) in topic.partitions.iter_mut().enumerate() {
                p.log.sync().map_err(|source| StateError::Log {
                    dir: PathBuf::from(format!("{}-{i}", topic.name)),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// Clean shutdown: every log synced with its recovery point at its end and its
    /// producer state saved, so the next start re-reads neither.
    pub fn close(&mut self) -> Result<(), StateError> {
        let storage = self.storage.clone();
        for topic in self.topics.values_mut() {
            for (i, p) in topic.partitions.iter_mut().enumerate() {
                let dir = p.log.dir().to_path_buf();
                p.log.close().map_err(|source| StateError::Log {
                    dir: PathBuf::from(format!("{}-{i}", topic.name)),
                    source,
                })?;
                // BUGGIFY: no snapshot, as after a shutdown that died before writing it
                // (the state is then rebuilt from the log).
                if !crate::buggify!() {
                    save_producer_snapshot(storage.as_ref(), &dir, &p.log, &p.producers)?;
                }
            }
        }
        Ok(())
    }

    fn open_topic(
        &self,
        name: String,
        id: u128,
        partitions: i32,
        replication_factor: i16,
        config: TopicConfig,
        now_ms: i64,
    ) -> Result<Topic, StateError> {
        let mut opened = Vec::with_capacity(partitions as usize);
        for index in 0..partitions {
            let dir = self.config.data_dir.join(format!("{name}-{index}"));
            if self.cluster.is_some() {
                self.claim_partition_dir(&dir, id)?;
            }
            let log = PartitionLog::open(
                self.storage.clone(),
                dir.clone(),
                config.log.clone(),
                now_ms,
            )
            .map_err(|source| StateError::Log {
                dir: dir.clone(),
                source,
            })?;
            let producers = load_producers(self.storage.as_ref(), &log)?;
            let (leader_epoch, epochs, role) = if self.cluster.is_some() {
                // The controller decides who leads; until it says, this replica waits.
                let epochs = self.load_epochs(&dir, log.log_end_offset())?;
                let epoch = epochs.latest_epoch().unwrap_or(-1);
                (epoch, epochs, PartitionRole::Offline)
            } else {
                let (epoch, epochs) = self.become_leader(&dir, log.log_end_offset())?;
                (epoch, epochs, PartitionRole::Standalone)
            };
            opened.push(Partition::new(
                (&name, id),
                index,
                log,
                producers,
                leader_epoch,
                epochs,
                role,
            ));
            opened.last().expect("just pushed").check_invariants();
        }
        Ok(Topic {
            name,
            id,
            replication_factor,
            config,
            partitions: opened,
        })
    }

    /// Take leadership of a partition at start: one broker is always the one elected, and
    /// each election is a new leader epoch, one past the last the cache knows, recorded at
    /// the log end (KIP-279). The checkpoint may run ahead of a log that lost its unsynced
    /// tail in a crash, so it is cut back to the log first (the KIP-101 divergence case).
    fn become_leader(
        &self,
        dir: &Path,
        log_end_offset: i64,
    ) -> Result<(i32, LeaderEpochCache), StateError> {
        let path = dir.join(EPOCH_CHECKPOINT_FILE);
        let mut epochs = self.load_epochs(dir, log_end_offset)?;
        let leader_epoch = epochs.latest_epoch().map_or(0, |e| e + 1);
        epochs
            .assign(leader_epoch, log_end_offset)
            .map_err(|e| StateError::Metadata {
                path: path.clone(),
                message: e.to_string(),
            })?;
        save_epochs(self.storage.as_ref(), dir, &epochs)?;
        Ok((leader_epoch, epochs))
    }

    /// Make `dir` the directory of topic `id`'s partition: a directory left by an earlier
    /// topic of the same name (deleted while this broker was down, or deleted and created
    /// again between two metadata images it saw) holds another topic's records and epochs,
    /// which must never be mistaken for this one's. Kafka keeps the topic id in the same
    /// file name for the same reason.
    fn claim_partition_dir(&self, dir: &Path, id: u128) -> Result<(), StateError> {
        let path = dir.join(PARTITION_METADATA_FILE);
        let expected = format!("version: 0\ntopic_id: {id:032x}\n");
        match read_whole(self.storage.as_ref(), &path)? {
            Some(bytes) if bytes == expected.as_bytes() => return Ok(()),
            Some(bytes) => {
                crate::probe!(probe::STALE_PARTITION_DIR);
                tracing::warn!(
                    dir = %dir.display(),
                    found = %String::from_utf8_lossy(&bytes).trim(),
                    topic_id = format!("{id:032x}"),
                    "partition directory belongs to another topic of this name; removing it"
                );
                self.storage.remove_dir_all(dir)?;
            }
            None if self.storage.exists(dir) => {
                // Written before the id was kept (or torn before it was): nothing proves
                // it is this topic's, so it cannot be trusted.
                tracing::warn!(dir = %dir.display(), "partition directory without a topic id; removing it");
                self.storage.remove_dir_all(dir)?;
            }
            None => {}
        }
        crate::storage::create_dir_all_durable(self.storage.as_ref(), dir)?;
        write_file_atomic(self.storage.as_ref(), &path, expected.as_bytes(), true)?;
        Ok(())
    }

    /// The partition's epoch cache from its checkpoint, cut back to the log: the
    /// checkpoint may run ahead of a log that lost its unsynced tail in a crash.
    fn load_epochs(&self, dir: &Path, log_end_offset: i64) -> Result<LeaderEpochCache, StateError> {
        let path = dir.join(EPOCH_CHECKPOINT_FILE);
        let mut epochs = match read_whole(self.storage.as_ref(), &path)? {
            Some(bytes) => LeaderEpochCache::decode(&bytes).map_err(|e| StateError::Metadata {
                path: path.clone(),
                message: e.to_string(),
            })?,
            None => LeaderEpochCache::new(),
        };
        epochs.truncate_from_end(log_end_offset);
        Ok(epochs)
    }

    /// OffsetForLeaderEpoch: where `epoch` ends in this partition's log (KIP-101/279), as
    /// (epoch, end offset); (-1, -1) when the log has no such history.
    pub fn end_offset_for_epoch(
        &self,
        topic: &str,
        partition: i32,
        epoch: i32,
    ) -> Result<(i32, i64), Refusal> {
        let p = self.partition(topic, partition)?;
        Ok(EpochEndOffset::to_wire(
            p.epochs.end_offset_for(epoch, p.log.log_end_offset()),
        ))
    }

    fn next_topic_id(&mut self) -> u128 {
        // splitmix64 over the seed the shell gave us: deterministic under the simulator.
        let id = ((self.ids.next_u64() as u128) << 64) | self.ids.next_u64() as u128;
        // Never the all-zero id, which Kafka reserves for "no id".
        id.max(1)
    }

    fn meta_path(&self, file: &str) -> PathBuf {
        self.config.data_dir.join(META_DIR).join(file)
    }

    fn write_metadata(&self) -> Result<(), StateError> {
        let meta = MetadataFile {
            topics: self
                .topics
                .values()
                .map(|t| TopicRecord {
                    name: t.name.clone(),
                    id: format!("{:032x}", t.id),
                    partitions: t.partitions.len() as i32,
                    replication_factor: t.replication_factor,
                    configs: t.config.overrides.clone(),
                })
                .collect(),
        };
        let text = serde_json::to_vec_pretty(&meta).expect("metadata serializes");
        Ok(write_file_atomic(
            self.storage.as_ref(),
            &self.meta_path(TOPICS_FILE),
            &text,
            true,
        )?)
    }
}

/// KIP-320: a client that knows a newer epoch than ours, or an older one, is told so.
pub fn check_leader_epoch(requested: i32, current: i32) -> Result<(), Refusal> {
    if requested < 0 || requested == current {
        return Ok(());
    }
    crate::probe!(probe::CLIENT_EPOCH_FENCED);
    if requested < current {
        Err(Refusal::new(
            ResponseError::FencedLeaderEpoch,
            format!("epoch {requested} is older than {current}"),
        ))
    } else {
        Err(Refusal::new(
            ResponseError::UnknownLeaderEpoch,
            format!("epoch {requested} is newer than {current}"),
        ))
    }
}

fn not_leader(topic: &str, partition: i32, role: &PartitionRole) -> Refusal {
    Refusal::new(
        ResponseError::NotLeaderOrFollower,
        format!("this broker is not the leader of {topic}-{partition} ({role})"),
    )
}

fn unknown_partition(topic: &str, partition: i32) -> Refusal {
    Refusal::new(
        ResponseError::UnknownTopicOrPartition,
        format!("this broker has no partition {topic}-{partition}"),
    )
}

fn batch_refusal(e: BatchError) -> Refusal {
    let error = match e {
        BatchError::CrcMismatch { .. } => ResponseError::CorruptMessage,
        BatchError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat,
        _ => ResponseError::CorruptMessage,
    };
    Refusal::new(error, e.to_string())
}

fn storage_refusal(e: StateError) -> Refusal {
    tracing::error!(error = %e, "storage failure");
    Refusal::new(ResponseError::KafkaStorageError, e.to_string())
}

pub use crate::kafka_rules::validate_topic_name;

impl From<crate::kafka_rules::InvalidTopicName> for Refusal {
    fn from(e: crate::kafka_rules::InvalidTopicName) -> Refusal {
        Refusal::new(ResponseError::InvalidTopicException, e.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::codec::{encode_batch, BatchOptions, NewRecord};
    use crate::storage::MemStorage;

    fn standalone(storage: &MemStorage) -> BrokerState {
        let config = BrokerConfig {
            data_dir: "/data".into(),
            log: crate::log::LogConfig {
                index_interval_bytes: 0,
                ..Default::default()
            },
            ..Default::default()
        };
        BrokerState::open(Arc::new(storage.clone()), config, 0, 7).unwrap()
    }

    /// Produce `count` one-record batches from idempotent producer `pid`, from `sequence`.
    fn produce(state: &mut BrokerState, pid: i64, sequence: i32, count: i32) {
        for i in 0..count {
            let record = NewRecord {
                timestamp: 0,
                key: None,
                value: Some(bytes::Bytes::from(format!("v{i}"))),
                headers: Vec::new(),
            };
            let options = BatchOptions {
                producer_id: pid,
                producer_epoch: 0,
                base_sequence: sequence + i,
                ..Default::default()
            };
            let batch = encode_batch(&[record], &options);
            state.produce("t", 0, &batch, 1, 0).unwrap();
        }
    }

    fn partition(state: &BrokerState) -> &Partition {
        state.partition("t", 0).unwrap()
    }

    /// After a clean shutdown the next start trusts the recovery point at the log end and
    /// the producer snapshot: it re-reads no batch, yet answers retries as before.
    #[test]
    fn a_clean_shutdown_leaves_nothing_to_rebuild() {
        let storage = MemStorage::default();
        let mut state = standalone(&storage);
        state
            .create_topic("t", 1, 1, &BTreeMap::new(), false, 0)
            .unwrap();
        produce(&mut state, 5, 0, 40);
        produce(&mut state, 6, 0, 3);
        let producers = partition(&state).producers.clone();
        state.close().unwrap();
        drop(state);
        storage.crash(); // only what the shutdown made durable counts

        let state = standalone(&storage);
        let p = partition(&state);
        assert_eq!(p.log.log_end_offset(), 43);
        assert_eq!(p.log.recovery_report().checkpoint, Some(43));
        // Recovery checks only what follows the last index entry: the last batch.
        assert!(
            p.log.recovery_report().batches_scanned <= 1,
            "{:?}",
            p.log.recovery_report()
        );
        assert_eq!(p.producers, producers);
        assert!(
            !storage.exists(&p.log.dir().join(PRODUCER_SNAPSHOT_FILE)),
            "a snapshot is used once"
        );
    }

    /// A snapshot that does not describe the log it finds (here: one brought back after
    /// the log moved on) is refused and the state rebuilt from the log.
    #[test]
    fn a_stale_producer_snapshot_is_refused() {
        let storage = MemStorage::default();
        let mut state = standalone(&storage);
        state
            .create_topic("t", 1, 1, &BTreeMap::new(), false, 0)
            .unwrap();
        produce(&mut state, 5, 0, 3);
        state.close().unwrap();
        let dir = partition(&state).log.dir().to_path_buf();
        let snapshot_path = dir.join(PRODUCER_SNAPSHOT_FILE);
        let stale = read_whole(&storage, &snapshot_path).unwrap().unwrap();
        drop(state);

        let mut state = standalone(&storage);
        produce(&mut state, 5, 3, 2);
        produce(&mut state, 8, 0, 1);
        let producers = partition(&state).producers.clone();
        state.sync_all().unwrap();
        drop(state);
        write_file_atomic(&storage, &snapshot_path, &stale, true).unwrap();

        let state = standalone(&storage);
        assert_eq!(
            partition(&state).producers,
            producers,
            "rebuilt from the log"
        );
        // A damaged snapshot of the right log is refused the same way.
        let mut state = state;
        state.close().unwrap();
        let mut damaged = read_whole(&storage, &snapshot_path).unwrap().unwrap();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 1;
        write_file_atomic(&storage, &snapshot_path, &damaged, true).unwrap();
        drop(state);
        let state = standalone(&storage);
        assert_eq!(partition(&state).producers, producers);
    }
}
