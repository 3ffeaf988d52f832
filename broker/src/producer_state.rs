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
    }

    /// Forget everything (the log was truncated; it is rebuilt by scanning).
    pub fn clear(&mut self) {
        self.producers.clear();
    }

    pub fn producer_count(&self) -> usize {
        self.producers.len()
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
