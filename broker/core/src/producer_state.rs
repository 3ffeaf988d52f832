//! Idempotent producer state of one partition: producer id, epoch and sequence checks, and
//! the window of recent batches used to answer retries without appending twice.
//!
//! Pure state: the partition feeds it batch headers (on append and, after a restart, from
//! a scan of the log), and asks it what to do with a new batch before appending.

use crate::record::batch::BatchHeader;
use std::collections::{BTreeMap, VecDeque};

/// Kafka keeps the metadata of the last five batches per producer, matching the largest
/// `max.in.flight.requests.per.connection` that still keeps idempotence.
pub const PRODUCER_BATCHES_CACHED_MAX: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CachedBatch {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<CachedBatch>,
}

/// What to do with a batch from an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Append,
    /// A retry of a batch already in the log: answer with its original offsets.
    Duplicate { base_offset: i64, last_offset: i64 },
    /// Kafka error INVALID_PRODUCER_EPOCH: a fenced (older) producer instance.
    InvalidProducerEpoch,
    /// Kafka error OUT_OF_ORDER_SEQUENCE_NUMBER: a gap or a reordering.
    OutOfOrderSequence,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStateTable {
    producers: BTreeMap<i64, ProducerEntry>,
}

impl ProducerStateTable {
    /// Decide about a batch before it is appended. Batches without a producer id always
    /// append.
    pub fn check(&self, batch: &BatchHeader) -> SequenceCheck {
        if !batch.has_producer_id() {
            return SequenceCheck::Append;
        }
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            // No state for this producer (new, or its state was lost with the log): accept
            // whatever sequence it starts from, as Kafka does since KIP-360.
            return SequenceCheck::Append;
        };
        if batch.producer_epoch < entry.epoch {
            return SequenceCheck::InvalidProducerEpoch;
        }
        if batch.producer_epoch > entry.epoch {
            // A new epoch restarts the sequence at zero.
            return if batch.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrderSequence
            };
        }
        let last_sequence = batch.last_sequence();
        if let Some(cached) = entry
            .batches
            .iter()
            .find(|c| c.first_sequence == batch.base_sequence && c.last_sequence == last_sequence)
        {
            return SequenceCheck::Duplicate {
                base_offset: cached.base_offset,
                last_offset: cached.last_offset,
            };
        }
        match entry.batches.back() {
            Some(last) if !in_sequence(last.last_sequence, batch.base_sequence) => {
                SequenceCheck::OutOfOrderSequence
            }
            _ => SequenceCheck::Append,
        }
    }

    /// Record a batch that is now in the log (with its assigned offsets).
    pub fn record(&mut self, batch: &BatchHeader) {
        if !batch.has_producer_id() || batch.is_control() {
            return;
        }
        let entry = self.producers.entry(batch.producer_id).or_default();
        if batch.producer_epoch != entry.epoch {
            entry.epoch = batch.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == PRODUCER_BATCHES_CACHED_MAX {
            entry.batches.pop_front();
        }
        entry.batches.push_back(CachedBatch {
            first_sequence: batch.base_sequence,
            last_sequence: batch.last_sequence(),
            base_offset: batch.base_offset,
            last_offset: batch.last_offset(),
        });
        // The window the duplicate check answers from: at most five batches, recorded in
        // log order, so their offsets rise and never overlap.
        assert!(entry.batches.len() <= PRODUCER_BATCHES_CACHED_MAX);
        let mut cached = entry.batches.iter().rev();
        if let (Some(newest), Some(previous)) = (cached.next(), cached.next()) {
            assert!(
                newest.base_offset > previous.last_offset,
                "producer {} recorded out of log order: offset {} after {}",
                batch.producer_id,
                newest.base_offset,
                previous.last_offset
            );
        }
    }

    /// Forget everything (the log was truncated; it is rebuilt by scanning).
    pub fn clear(&mut self) {
        self.producers.clear();
    }

    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }
}

/// Snapshot encoding: "FLPS", version 1, producer count, then per producer its id, epoch
/// and cached batches. The caller frames it (what log it describes, a CRC).
const SNAPSHOT_MAGIC: &[u8; 4] = b"FLPS";
const SNAPSHOT_VERSION: u8 = 1;

impl ProducerStateTable {
    /// The table as bytes, for a snapshot file (`decode` reads it back).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.producers.len() * 40);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.push(SNAPSHOT_VERSION);
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        for (id, entry) in &self.producers {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&entry.epoch.to_be_bytes());
            out.push(entry.batches.len() as u8);
            for b in &entry.batches {
                out.extend_from_slice(&b.first_sequence.to_be_bytes());
                out.extend_from_slice(&b.last_sequence.to_be_bytes());
                out.extend_from_slice(&b.base_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        out
    }

    /// Reads `encode`'s bytes; anything else (torn, another version, trailing bytes,
    /// more cached batches than Kafka keeps) is refused rather than half-read.
    pub fn decode(bytes: &[u8]) -> Result<ProducerStateTable, String> {
        let mut r = Reader(bytes);
        if r.take(4)? != SNAPSHOT_MAGIC || r.take(1)? != [SNAPSHOT_VERSION] {
            return Err("not a version 1 producer state snapshot".into());
        }
        let count = r.u32()?;
        let mut producers = BTreeMap::new();
        for _ in 0..count {
            let id = r.i64()?;
            let epoch = r.i16()?;
            let cached = r.take(1)?[0] as usize;
            if cached > PRODUCER_BATCHES_CACHED_MAX {
                return Err(format!("{cached} cached batches for producer {id}"));
            }
            let mut batches = VecDeque::with_capacity(cached);
            for _ in 0..cached {
                batches.push_back(CachedBatch {
                    first_sequence: r.i32()?,
                    last_sequence: r.i32()?,
                    base_offset: r.i64()?,
                    last_offset: r.i64()?,
                });
            }
            if producers
                .insert(id, ProducerEntry { epoch, batches })
                .is_some()
            {
                return Err(format!("producer {id} appears twice"));
            }
        }
        if !r.0.is_empty() {
            return Err(format!("{} bytes after the last producer", r.0.len()));
        }
        Ok(ProducerStateTable { producers })
    }
}

/// Big-endian reads from a byte slice that fail, rather than panic, at its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("snapshot ends early".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

/// Sequences wrap from i32::MAX to 0.
fn in_sequence(last: i32, next: i32) -> bool {
    next == last.wrapping_add(1) || (last == i32::MAX && next == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, seq: i32, count: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 49,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    /// Data-driven: feed (batch, expected decision) in order; appended batches are recorded.
    fn check(steps: &[(BatchHeader, SequenceCheck)]) {
        let mut table = ProducerStateTable::default();
        let mut next_offset = 0;
        for (i, (b, want)) in steps.iter().enumerate() {
            let got = table.check(b);
            assert_eq!(got, *want, "step {i}: {b:?}");
            if got == SequenceCheck::Append {
                let mut appended = *b;
                appended.base_offset = next_offset;
                next_offset += b.records_count as i64;
                table.record(&appended);
            }
        }
    }

    use SequenceCheck::*;

    #[test]
    fn snapshots_round_trip_and_refuse_damage() {
        let mut table = ProducerStateTable::default();
        for i in 0..8 {
            table.record(&batch(7, 1, i * 2, 2, i as i64 * 2));
        }
        table.record(&batch(9, 0, 0, 1, 100));
        let bytes = table.encode();
        assert_eq!(ProducerStateTable::decode(&bytes).unwrap(), table);
        assert_eq!(
            ProducerStateTable::decode(&ProducerStateTable::default().encode()).unwrap(),
            ProducerStateTable::default()
        );
        for cut in 0..bytes.len() {
            assert!(
                ProducerStateTable::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(ProducerStateTable::decode(&longer).is_err());
    }

    #[test]
    fn in_order_batches_append_and_retries_are_duplicates() {
        check(&[
            (batch(7, 0, 0, 3, 0), Append),
            (batch(7, 0, 3, 2, 0), Append),
            (
                batch(7, 0, 0, 3, 0),
                Duplicate {
                    base_offset: 0,
                    last_offset: 2,
                },
            ),
            (
                batch(7, 0, 3, 2, 0),
                Duplicate {
                    base_offset: 3,
                    last_offset: 4,
                },
            ),
            (batch(7, 0, 5, 1, 0), Append),
        ]);
    }

    #[test]
    fn gaps_and_old_epochs_are_refused() {
        check(&[
            (batch(7, 1, 0, 1, 0), Append),
            (batch(7, 1, 2, 1, 0), OutOfOrderSequence),
            (batch(7, 0, 1, 1, 0), InvalidProducerEpoch),
            (batch(7, 2, 5, 1, 0), OutOfOrderSequence),
            (batch(7, 2, 0, 1, 0), Append),
            (batch(-1, -1, -1, 1, 0), Append),
            (batch(-1, -1, -1, 1, 0), Append),
        ]);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut steps: Vec<_> = (0..6).map(|i| (batch(1, 0, i, 1, 0), Append)).collect();
        steps.push((
            batch(1, 0, 5, 1, 0),
            Duplicate {
                base_offset: 5,
                last_offset: 5,
            },
        ));
        steps.push((
            batch(1, 0, 1, 1, 0),
            Duplicate {
                base_offset: 1,
                last_offset: 1,
            },
        ));
        // Sequence 0 fell out of the window: it is no longer recognised as a retry.
        steps.push((batch(1, 0, 0, 1, 0), OutOfOrderSequence));
        check(&steps);
    }

    #[test]
    fn sequences_wrap_around() {
        check(&[
            (batch(3, 0, i32::MAX, 1, 0), Append),
            (batch(3, 0, 0, 1, 0), Append),
        ]);
    }
}
