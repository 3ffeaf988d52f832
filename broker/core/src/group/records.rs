//! The group coordinator's durable records: what it writes to `__consumer_offsets` and
//! what [`GroupCoordinator::replay`](super::GroupCoordinator::replay) reads back.
//!
//! # Format
//! A record is a key and a value, both bytes.
//! - **Key** ([`GroupRecord::key`]): the JSON array `["offset", group, topic, partition]`
//!   for offset commits and their tombstones, `["group", group]` for group metadata and its
//!   tombstone, `["consumer-group", group]` for a KIP-848 group's state (one record holds
//!   the whole group: epochs, target assignment, members with their subscriptions, epochs
//!   and current assignments; topic ids as 128-bit integers). The `__consumer_offsets` partition is chosen by the group id alone (every
//!   record of a group lives in one partition); the key names the topic-partition too so
//!   that compaction keeps the newest offset of *each* partition, as Kafka's keys do.
//! - **Value** ([`GroupRecord::encode`]): one format byte ([`RECORD_FORMAT`], so the layout
//!   can change later) followed by the record as JSON (`serde_json` of [`GroupRecord`];
//!   byte strings are JSON arrays of numbers). Tombstones are explicit records here, not
//!   null values, so that a value alone says what it is; a shell writing a compacted topic
//!   may also write a null value under the same key.
//!
//! Decoding never panics: a value that is not one of these records is a [`DecodeError`].

use serde::{Deserialize, Serialize};

/// The first byte of every encoded value: the layout of what follows.
pub const RECORD_FORMAT: u8 = 1;

/// One durable change of the coordinator's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupRecord {
    /// A committed offset of one partition.
    OffsetCommit {
        group: String,
        topic: String,
        partition: i32,
        offset: i64,
        /// -1 when the committer did not name one.
        leader_epoch: i32,
        metadata: String,
        commit_timestamp_ms: i64,
    },
    /// The committed offset of one partition was deleted or expired.
    OffsetTombstone {
        group: String,
        topic: String,
        partition: i32,
    },
    /// The group's last completed generation (Kafka's GroupMetadataValue): written when
    /// the leader's assignment arrives, when a static member is replaced in a stable
    /// group, and when a join phase ends with no members (then `members` is empty).
    GroupMetadata {
        group: String,
        protocol_type: Option<String>,
        protocol: Option<String>,
        generation: i32,
        leader: Option<String>,
        /// When the group entered its current state (KIP-211 expiry counts from here).
        state_timestamp_ms: i64,
        members: Vec<MemberRecord>,
    },
    /// The group was deleted (DeleteGroups, or it expired with no offsets left).
    GroupTombstone { group: String },
    /// A consumer group's (KIP-848) whole state after a change (see
    /// `group::consumer`: one full image per write).
    ConsumerGroup {
        group: String,
        state: Box<super::consumer::ConsumerGroup>,
    },
}

/// One member of a [`GroupRecord::GroupMetadata`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// The member's metadata for the group's selected protocol.
    pub subscription: Vec<u8>,
    pub assignment: Vec<u8>,
}

/// A value that is not a group record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty record value")]
    Empty,
    #[error("unknown record format {0}")]
    UnknownFormat(u8),
    #[error("malformed group record: {0}")]
    Malformed(String),
}

impl GroupRecord {
    /// The group this record belongs to (it chooses the `__consumer_offsets` partition).
    pub fn group(&self) -> &str {
        match self {
            GroupRecord::OffsetCommit { group, .. }
            | GroupRecord::OffsetTombstone { group, .. }
            | GroupRecord::GroupMetadata { group, .. }
            | GroupRecord::GroupTombstone { group }
            | GroupRecord::ConsumerGroup { group, .. } => group,
        }
    }

    /// The compaction key (see the module documentation).
    pub fn key(&self) -> Vec<u8> {
        let key = match self {
            GroupRecord::OffsetCommit {
                group,
                topic,
                partition,
                ..
            }
            | GroupRecord::OffsetTombstone {
                group,
                topic,
                partition,
            } => serde_json::json!(["offset", group, topic, partition]),
            GroupRecord::GroupMetadata { group, .. } | GroupRecord::GroupTombstone { group } => {
                serde_json::json!(["group", group])
            }
            GroupRecord::ConsumerGroup { group, .. } => {
                serde_json::json!(["consumer-group", group])
            }
        };
        serde_json::to_vec(&key).expect("a JSON value always encodes")
    }

    /// The record's value bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = vec![RECORD_FORMAT];
        serde_json::to_writer(&mut bytes, self).expect("a group record always encodes");
        bytes
    }

    /// A value written by [`GroupRecord::encode`].
    pub fn decode(bytes: &[u8]) -> Result<GroupRecord, DecodeError> {
        let (&format, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if format != RECORD_FORMAT {
            return Err(DecodeError::UnknownFormat(format));
        }
        serde_json::from_slice(body).map_err(|e| DecodeError::Malformed(e.to_string()))
    }
}

/// The records of one [`Write`](super::Write) as one v2 record batch for
/// `__consumer_offsets`: each record keyed by [`GroupRecord::key`], its value
/// [`GroupRecord::encode`], stamped `timestamp_ms`. Not idempotent (producer id -1): the
/// coordinator is the partition's only writer.
pub fn encode_batch(records: &[GroupRecord], timestamp_ms: i64) -> bytes::Bytes {
    use crate::record::codec::{self, BatchOptions, NewRecord};
    let records: Vec<NewRecord> = records
        .iter()
        .map(|r| NewRecord {
            timestamp: timestamp_ms,
            key: Some(r.key().into()),
            value: Some(r.encode().into()),
            headers: Vec::new(),
        })
        .collect();
    codec::encode_batch(&records, &BatchOptions::default()).freeze()
}

/// Every group record in `batches` (whole v2 batches as the log serves them), in log
/// order, with the offset after the last batch read. Records whose value is not a group
/// record (null values included) are skipped and counted; batches that cannot be decoded
/// end the read (`Err`), since nothing after them can be trusted.
pub fn decode_batches(batches: &[u8]) -> Result<DecodedBatches, DecodeError> {
    let decoded = crate::record::codec::decode_batches(batches)
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let mut out = DecodedBatches::default();
    for (header, records) in decoded {
        out.next_offset = header.base_offset + header.last_offset_delta as i64 + 1;
        for record in records {
            match record.value.as_deref().map(GroupRecord::decode) {
                Some(Ok(r)) => out.records.push(r),
                _ => out.skipped += 1,
            }
        }
    }
    Ok(out)
}

/// What [`decode_batches`] read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DecodedBatches {
    pub records: Vec<GroupRecord>,
    /// Records that were not group records.
    pub skipped: usize,
    /// The offset after the last batch decoded (0 when there was none).
    pub next_offset: i64,
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    #[test]
    fn a_batch_of_group_records_decodes_back_in_order() {
        let records = vec![
            GroupRecord::OffsetCommit {
                group: "g".into(),
                topic: "t".into(),
                partition: 2,
                offset: 42,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp_ms: 7,
            },
            GroupRecord::GroupTombstone { group: "g".into() },
        ];
        let batch = encode_batch(&records, 7);
        let decoded = decode_batches(&batch).unwrap();
        assert_eq!(decoded.records, records);
        assert_eq!(decoded.skipped, 0);
        assert_eq!(decoded.next_offset, 2);
        // A truncated batch is never read as records.
        let truncated = decode_batches(&batch[..batch.len() - 1]);
        assert!(truncated.map_or(true, |d| d.records.is_empty()));
    }
}
