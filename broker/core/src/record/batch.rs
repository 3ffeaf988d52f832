//! Kafka record batch (magic v2) header: parsing, validation and the two rewrites the
//! broker makes (the base offset and the partition leader epoch).
//!
//! The broker stores batches exactly as producers sent them. The only fields it assigns
//! are `base_offset` and `partition_leader_epoch`, which the batch CRC deliberately does
//! not cover, so rewriting them keeps the batch valid. Compressed batches are never opened
//! here.

use bytes::{Buf, BufMut};

/// Size of the fixed v2 batch header, up to and including `records_count`.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before `partition_leader_epoch`: `base_offset` (8) and `batch_length` (4).
pub const BATCH_LOG_OVERHEAD_BYTES: usize = 12;
/// The only record batch format this broker accepts.
pub const MAGIC_V2: i8 = 2;

const OFFSET_BATCH_LENGTH: usize = 8;
const OFFSET_PARTITION_LEADER_EPOCH: usize = 12;
const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_MAX_TIMESTAMP: usize = 35;

/// Attribute bits of a v2 batch.
pub const ATTR_COMPRESSION_MASK: i16 = 0x07;
pub const ATTR_TIMESTAMP_LOG_APPEND: i16 = 0x08;
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
pub const ATTR_CONTROL: i16 = 0x20;

/// Why a batch was refused. Each maps to a Kafka error code in the request handlers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record batch truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    #[error("unsupported record batch magic {0} (only v2 is accepted)")]
    UnsupportedMagic(i8),
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("invalid record batch: {0}")]
    Invalid(&'static str),
}

/// The fixed header of one v2 record batch, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Length of the batch after the `batch_length` field.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Decode the header at the start of `bytes` without checking the CRC.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated {
                needed: BATCH_HEADER_BYTES,
                available: bytes.len(),
            });
        }
        let mut b = bytes;
        let header = BatchHeader {
            base_offset: b.get_i64(),
            batch_length: b.get_i32(),
            partition_leader_epoch: b.get_i32(),
            magic: b.get_i8(),
            crc: b.get_u32(),
            attributes: b.get_i16(),
            last_offset_delta: b.get_i32(),
            base_timestamp: b.get_i64(),
            max_timestamp: b.get_i64(),
            producer_id: b.get_i64(),
            producer_epoch: b.get_i16(),
            base_sequence: b.get_i32(),
            records_count: b.get_i32(),
        };
        if header.magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic(header.magic));
        }
        if (header.batch_length as i64) < (BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES) as i64 {
            return Err(BatchError::Invalid("batch length shorter than its header"));
        }
        Ok(header)
    }

    /// Total size of the batch on the wire and on disk.
    pub fn total_bytes(&self) -> usize {
        BATCH_LOG_OVERHEAD_BYTES + self.batch_length as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    pub fn compression(&self) -> u8 {
        (self.attributes & ATTR_COMPRESSION_MASK) as u8
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence number of the last record in the batch, wrapping as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        (last % (i32::MAX as i64 + 1)) as i32
    }
}

/// CRC-32C over everything from `attributes` to the end of the batch.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[OFFSET_ATTRIBUTES..])
}

/// Parse and fully validate one batch that must fill `batch` exactly.
pub fn validate(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.total_bytes() != batch.len() {
        return Err(BatchError::Invalid("batch length does not match its bytes"));
    }
    if header.records_count < 0 || header.last_offset_delta < 0 {
        return Err(BatchError::Invalid("negative record count or offset delta"));
    }
    if header.records_count == 0 {
        return Err(BatchError::Invalid("empty record batch"));
    }
    let computed = compute_crc(batch);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// Split a buffer of concatenated batches (a produce request's records, or a log read)
/// into the byte ranges of whole batches. A partial batch at the end is reported as
/// `Truncated`, so callers decide whether a short tail is an error (produce) or normal
/// (a fetch response cut at max_bytes).
pub fn split_batches(buf: &[u8]) -> BatchIter<'_> {
    BatchIter { buf, pos: 0 }
}

pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<(BatchHeader, &'a [u8]), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.buf[self.pos..];
        if rest.is_empty() {
            return None;
        }
        let header = match BatchHeader::parse(rest) {
            Ok(h) => h,
            Err(e) => {
                self.pos = self.buf.len();
                return Some(Err(e));
            }
        };
        let total = header.total_bytes();
        if rest.len() < total {
            self.pos = self.buf.len();
            return Some(Err(BatchError::Truncated {
                needed: total,
                available: rest.len(),
            }));
        }
        self.pos += total;
        Some(Ok((header, &rest[..total])))
    }
}

/// Overwrite the base offset of the batch at the start of `batch`.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    (&mut batch[..8]).put_i64(base_offset);
}

/// Overwrite the partition leader epoch (not covered by the CRC either).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    (&mut batch[OFFSET_PARTITION_LEADER_EPOCH..OFFSET_PARTITION_LEADER_EPOCH + 4]).put_i32(epoch);
}

/// Stamp the batch with the broker's clock, for a topic with
/// `message.timestamp.type=LogAppendTime`: the timestamp-type attribute and the max
/// timestamp are set and the CRC, which covers both, is computed again. Records are not
/// touched: readers take the max timestamp for every record of such a batch (as Kafka).
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let mut attributes = (&batch[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2]).get_i16();
    attributes |= ATTR_TIMESTAMP_LOG_APPEND;
    (&mut batch[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2]).put_i16(attributes);
    (&mut batch[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8]).put_i64(now_ms);
    let crc = compute_crc(batch);
    (&mut batch[OFFSET_CRC..OFFSET_CRC + 4]).put_u32(crc);
}

/// Read `batch_length` from a possibly partial header (at least 12 bytes).
pub fn peek_total_bytes(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < BATCH_LOG_OVERHEAD_BYTES {
        return None;
    }
    let len = (&bytes[OFFSET_BATCH_LENGTH..OFFSET_BATCH_LENGTH + 4]).get_i32();
    if len < (BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES) as i32 {
        return None;
    }
    Some(BATCH_LOG_OVERHEAD_BYTES + len as usize)
}
