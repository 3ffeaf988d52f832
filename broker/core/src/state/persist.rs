//! What the broker's state keeps on disk besides the partition logs: the standalone
//! broker's topic metadata (`meta/topics.json`), the reserved producer-id block, each
//! partition's leader-epoch checkpoint and topic-id file, and the producer-state snapshot a
//! clean shutdown leaves. Every write is atomic (`write_file_atomic`) and, where a restart
//! depends on it, durable.

use super::StateError;
use crate::log::{LogError, PartitionLog};
use crate::probe;
use crate::producer_state::ProducerStateTable;
use crate::replica::epoch_cache::LeaderEpochCache;
use crate::storage::{write_file_atomic, Storage};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct TopicRecord {
    pub(super) name: String,
    pub(super) id: String,
    pub(super) partitions: i32,
    pub(super) replication_factor: i16,
    pub(super) configs: BTreeMap<String, String>,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
pub(super) struct MetadataFile {
    pub(super) topics: Vec<TopicRecord>,
}

pub(super) const META_DIR: &str = "meta";
pub(super) const TOPICS_FILE: &str = "topics.json";
pub(super) const PRODUCER_ID_FILE: &str = "producer-id-block";
/// Kafka's name for the per-partition epoch cache checkpoint.
pub(super) const EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// Kafka's name for the file that ties a partition directory to its topic id.
pub(super) const PARTITION_METADATA_FILE: &str = "partition.metadata";
/// Producer state as of a clean shutdown (Kafka keeps `.snapshot` files for the same
/// reason): the next start reads it instead of every batch header of the log.
pub(super) const PRODUCER_SNAPSHOT_FILE: &str = "producer-state.snapshot";

/// What a producer snapshot says about the log it was taken of: its end, and its last
/// batch's base offset and CRC. A snapshot is trusted only for the very log it describes.
pub(super) fn snapshot_fingerprint(log: &PartitionLog) -> Result<[u8; 20], LogError> {
    let (base, crc) = log
        .last_batch()?
        .map_or((-1, 0), |h| (h.base_offset, h.crc));
    let mut out = [0u8; 20];
    out[..8].copy_from_slice(&log.log_end_offset().to_be_bytes());
    out[8..16].copy_from_slice(&base.to_be_bytes());
    out[16..].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// Snapshot file: the fingerprint, the table (`ProducerStateTable::encode`), a CRC-32C of
/// both. Written durably at clean shutdown only.
pub(super) fn save_producer_snapshot(
    storage: &dyn Storage,
    dir: &Path,
    log: &PartitionLog,
    producers: &ProducerStateTable,
) -> Result<(), StateError> {
    let log_error = |source| StateError::Log {
        dir: dir.to_path_buf(),
        source,
    };
    let mut bytes = snapshot_fingerprint(log).map_err(log_error)?.to_vec();
    bytes.extend_from_slice(&producers.encode());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());
    Ok(write_file_atomic(
        storage,
        &dir.join(PRODUCER_SNAPSHOT_FILE),
        &bytes,
        true,
    )?)
}

/// A partition's producer state at open: from the snapshot a clean shutdown left, when it
/// describes exactly this log, else from a scan of every batch header. The snapshot is
/// removed once read, so it never outlives the log it describes (and should the removal
/// itself be lost in a crash, the fingerprint still refuses it for a changed log).
pub(super) fn load_producers(
    storage: &dyn Storage,
    log: &PartitionLog,
) -> Result<ProducerStateTable, StateError> {
    let path = log.dir().join(PRODUCER_SNAPSHOT_FILE);
    let log_error = |source| StateError::Log {
        dir: log.dir().to_path_buf(),
        source,
    };
    if let Some(bytes) = read_whole(storage, &path)? {
        let _ = storage.remove_file(&path);
        let fingerprint = snapshot_fingerprint(log).map_err(log_error)?;
        let usable = bytes.len() >= 24
            && {
                let (body, crc) = bytes.split_at(bytes.len() - 4);
                crc32c::crc32c(body).to_be_bytes() == crc
            }
            && bytes[..20] == fingerprint;
        if usable {
            match ProducerStateTable::decode(&bytes[20..bytes.len() - 4]) {
                Ok(table) => {
                    crate::probe!(probe::PRODUCER_SNAPSHOT_USED);
                    return Ok(table);
                }
                Err(reason) => {
                    tracing::warn!(path = %path.display(), %reason, "unreadable producer snapshot")
                }
            }
        } else {
            tracing::info!(path = %path.display(), "producer snapshot does not describe this log; rebuilding from the log");
        }
    }
    producers_from(log).map_err(log_error)
}

/// Producer state exactly as the log describes it (on open, and after a truncation).
pub(super) fn producers_from(log: &PartitionLog) -> Result<ProducerStateTable, LogError> {
    let mut producers = ProducerStateTable::default();
    log.scan_headers(log.log_start_offset(), &mut |h| producers.record(h))?;
    Ok(producers)
}

pub(super) fn read_metadata(
    storage: &dyn Storage,
    data_dir: &Path,
) -> Result<MetadataFile, StateError> {
    let path = data_dir.join(META_DIR).join(TOPICS_FILE);
    let Some(bytes) = read_whole(storage, &path)? else {
        return Ok(MetadataFile::default());
    };
    serde_json::from_slice(&bytes).map_err(|e| StateError::Metadata {
        path,
        message: e.to_string(),
    })
}

pub(super) fn read_producer_id_block(
    storage: &dyn Storage,
    data_dir: &Path,
) -> Result<i64, StateError> {
    let path = data_dir.join(META_DIR).join(PRODUCER_ID_FILE);
    let Some(bytes) = read_whole(storage, &path)? else {
        return Ok(0);
    };
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .ok_or_else(|| StateError::Metadata {
            path,
            message: "not a producer id".into(),
        })
}

/// Replace a partition's `leader-epoch-checkpoint` with `epochs`, durably.
pub(super) fn save_epochs(
    storage: &dyn Storage,
    dir: &Path,
    epochs: &LeaderEpochCache,
) -> Result<(), StateError> {
    let path = dir.join(EPOCH_CHECKPOINT_FILE);
    Ok(write_file_atomic(storage, &path, &epochs.encode(), true)?)
}

pub(super) fn read_whole(
    storage: &dyn Storage,
    path: &Path,
) -> Result<Option<Vec<u8>>, StateError> {
    if !storage.exists(path) {
        return Ok(None);
    }
    let file = storage.open(path, false)?;
    Ok(Some(crate::storage::read_to_vec(file.as_ref())?))
}
