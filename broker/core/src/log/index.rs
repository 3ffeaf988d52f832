//! The two sparse per-segment indexes, Kafka's `.index` (relative offset -> file
//! position) and `.timeindex` (max timestamp -> relative offset), held in memory for
//! binary search and written to their files at sync points.
//!
//! File formats (big-endian, fixed-size entries, no header), as in Kafka:
//! - `.index`: relative offset u32, position u32. The offset is the LAST offset of the
//!   batch that starts at the position, so every offset above it lies in a later batch.
//! - `.timeindex`: timestamp i64, relative offset u32: the largest timestamp seen so far
//!   in the segment and the last offset of the first batch that reached it.
//!
//! Index files need not be durable for correctness: recovery checks them against the log
//! and any prefix of a valid index is itself a valid (sparser) index.

use crate::storage::{self, Storage};
use std::io;
use std::path::Path;

/// One fixed-size index entry with its file encoding.
pub(crate) trait IndexEntry: Copy {
    const BYTES: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(bytes: &[u8]) -> Self;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp_ms: i64,
    pub relative_offset: u32,
}

impl IndexEntry for OffsetEntry {
    const BYTES: usize = 8;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }

    fn decode(bytes: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_be_bytes(bytes[0..4].try_into().expect("4 bytes")),
            position: u32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes")),
        }
    }
}

impl IndexEntry for TimeEntry {
    const BYTES: usize = 12;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }

    fn decode(bytes: &[u8]) -> Self {
        TimeEntry {
            timestamp_ms: i64::from_be_bytes(bytes[0..8].try_into().expect("8 bytes")),
            relative_offset: u32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes")),
        }
    }
}

/// The entries of one index, and how much of them its file holds.
#[derive(Debug)]
pub(crate) struct Index<E> {
    pub entries: Vec<E>,
    /// Number of leading entries the file is known to hold exactly; None when the file
    /// is missing or stale and must be rewritten whole.
    persisted: Option<usize>,
}

impl<E: IndexEntry> Index<E> {
    /// An index whose file does not exist yet (or is to be replaced).
    pub fn new() -> Index<E> {
        Index {
            entries: Vec::new(),
            persisted: None,
        }
    }

    /// Decodes an index file. Fails if its length is not a whole number of entries.
    pub fn decode_file(bytes: &[u8]) -> Result<Index<E>, &'static str> {
        if !bytes.len().is_multiple_of(E::BYTES) {
            return Err("index file length is not a multiple of its entry size");
        }
        let entries: Vec<E> = bytes.chunks_exact(E::BYTES).map(E::decode).collect();
        let persisted = Some(entries.len());
        Ok(Index { entries, persisted })
    }

    /// Drops every entry and marks the file for rewriting.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.persisted = None;
    }

    /// Keeps the first `len` entries.
    pub fn truncate(&mut self, len: usize) {
        if len < self.entries.len() {
            self.entries.truncate(len);
            if self.persisted.is_some_and(|p| p > len) {
                // Rare (log truncation): rewrite rather than track a file truncation.
                self.persisted = None;
            }
        }
    }

    pub fn needs_persist(&self) -> bool {
        self.persisted != Some(self.entries.len())
    }

    /// Writes entries the file lacks and syncs it. A whole rewrite must be synced or a
    /// crash could bring back stale entries; appends are synced too so the index keeps
    /// up with the recovery point and reopening stays cheap.
    pub fn persist(&mut self, storage: &dyn Storage, path: &Path) -> io::Result<()> {
        if !self.needs_persist() {
            return Ok(());
        }
        let mut file = storage.open(path, true)?;
        let from = match self.persisted {
            Some(n) => n,
            None => {
                file.truncate(0)?;
                0
            }
        };
        let mut buf = Vec::with_capacity((self.entries.len() - from) * E::BYTES);
        for entry in &self.entries[from..] {
            entry.encode(&mut buf);
        }
        file.append(&buf)?;
        file.sync()?;
        self.persisted = Some(self.entries.len());
        Ok(())
    }
}

/// Reads and decodes an index file; Ok(None) if it does not exist.
pub(crate) fn load<E: IndexEntry>(
    storage: &dyn Storage,
    path: &Path,
) -> io::Result<Option<Result<Index<E>, &'static str>>> {
    let file = match storage.open(path, false) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bytes = storage::read_to_vec(&*file)?;
    Ok(Some(Index::decode_file(&bytes)))
}

impl Index<OffsetEntry> {
    /// Position of the last indexed batch whose last offset is <= `relative_offset`
    /// (the batch containing it starts there or later); 0 if none.
    pub fn lookup(&self, relative_offset: u32) -> u32 {
        let i = self
            .entries
            .partition_point(|e| e.relative_offset <= relative_offset);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].position
        }
    }

    /// Position of the first indexed batch whose last offset is >= `relative_offset`:
    /// no batch at or after it lies entirely below that offset.
    pub fn first_position_reaching(&self, relative_offset: u32) -> Option<u32> {
        let i = self
            .entries
            .partition_point(|e| e.relative_offset < relative_offset);
        self.entries.get(i).map(|e| e.position)
    }

    /// Keeps entries whose (last) offset is below `relative_offset_end`.
    pub fn truncate_below_offset(&mut self, relative_offset_end: u64) {
        let keep = self
            .entries
            .partition_point(|e| u64::from(e.relative_offset) < relative_offset_end);
        self.truncate(keep);
    }

    /// Keeps entries of batches that start before `position`.
    pub fn truncate_to_position(&mut self, position: u64) {
        let keep = self
            .entries
            .partition_point(|e| u64::from(e.position) < position);
        self.truncate(keep);
    }

    /// Appends an entry; refuses one that does not increase (which only a corrupt
    /// loaded index can provoke).
    pub fn append(&mut self, relative_offset: u32, position: u32) -> Result<(), &'static str> {
        if let Some(last) = self.entries.last() {
            if relative_offset <= last.relative_offset || position <= last.position {
                return Err("offset index entries not increasing");
            }
        }
        self.entries.push(OffsetEntry {
            relative_offset,
            position,
        });
        Ok(())
    }

    /// Structural checks of a loaded file: strictly increasing entries inside the
    /// segment's bounds.
    pub fn check_offsets(
        &self,
        size_bytes: u64,
        relative_offset_end: Option<u64>,
    ) -> Result<(), &'static str> {
        let mut previous: Option<OffsetEntry> = None;
        for e in &self.entries {
            if u64::from(e.position) >= size_bytes {
                return Err("offset index points past the end of the log");
            }
            if relative_offset_end.is_some_and(|end| u64::from(e.relative_offset) >= end) {
                return Err("offset index entry beyond the segment's offsets");
            }
            if let Some(p) = previous {
                if e.relative_offset <= p.relative_offset || e.position <= p.position {
                    return Err("offset index entries not increasing");
                }
            }
            previous = Some(*e);
        }
        Ok(())
    }
}

impl Index<TimeEntry> {
    /// The last entry whose timestamp is below `timestamp_ms`: every batch up to and
    /// including its offset has a smaller max timestamp.
    pub fn last_below(&self, timestamp_ms: i64) -> Option<TimeEntry> {
        let i = self
            .entries
            .partition_point(|e| e.timestamp_ms < timestamp_ms);
        i.checked_sub(1).map(|i| self.entries[i])
    }

    /// Appends only when the timestamp grows, as Kafka does; refuses an offset that goes
    /// backwards (which only a corrupt loaded index can provoke).
    pub fn maybe_append(
        &mut self,
        timestamp_ms: i64,
        relative_offset: u32,
    ) -> Result<(), &'static str> {
        if let Some(last) = self.entries.last() {
            if timestamp_ms <= last.timestamp_ms {
                return Ok(());
            }
            if relative_offset < last.relative_offset {
                return Err("time index offsets go backwards");
            }
        }
        self.entries.push(TimeEntry {
            timestamp_ms,
            relative_offset,
        });
        Ok(())
    }

    /// Keeps entries whose offset is below `relative_offset_end`.
    pub fn truncate_to_offset(&mut self, relative_offset_end: u64) {
        let keep = self
            .entries
            .partition_point(|e| u64::from(e.relative_offset) < relative_offset_end);
        self.truncate(keep);
    }

    pub fn check_timestamps(&self, relative_offset_end: Option<u64>) -> Result<(), &'static str> {
        let mut previous: Option<TimeEntry> = None;
        for e in &self.entries {
            if relative_offset_end.is_some_and(|end| u64::from(e.relative_offset) >= end) {
                return Err("time index entry beyond the segment's offsets");
            }
            if let Some(p) = previous {
                if e.timestamp_ms <= p.timestamp_ms || e.relative_offset < p.relative_offset {
                    return Err("time index entries not increasing");
                }
            }
            previous = Some(*e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookups() {
        let mut index = Index::<OffsetEntry>::new();
        for (rel, pos) in [(9, 100), (19, 200), (29, 300)] {
            index.append(rel, pos).unwrap();
        }
        // (relative offset, expected lookup position, expected first position reaching)
        let cases = [
            (0, 0, Some(100)),
            (8, 0, Some(100)),
            (9, 100, Some(100)),
            (10, 100, Some(200)),
            (19, 200, Some(200)),
            (25, 200, Some(300)),
            (29, 300, Some(300)),
            (30, 300, None),
        ];
        for (rel, lookup, reaching) in cases {
            assert_eq!(index.lookup(rel), lookup, "lookup {rel}");
            assert_eq!(
                index.first_position_reaching(rel),
                reaching,
                "reaching {rel}"
            );
        }
        index.truncate_to_position(200);
        assert_eq!(index.entries.len(), 1);
        assert!(index.needs_persist());
    }

    #[test]
    fn time_index_only_grows() {
        let mut index = Index::<TimeEntry>::new();
        index.maybe_append(10, 0).unwrap();
        index.maybe_append(10, 5).unwrap();
        index.maybe_append(5, 6).unwrap();
        index.maybe_append(20, 7).unwrap();
        assert!(index.maybe_append(30, 6).is_err());
        assert_eq!(index.entries.len(), 2);
        assert_eq!(index.last_below(10), None);
        assert_eq!(index.last_below(11).unwrap().relative_offset, 0);
        assert_eq!(index.last_below(100).unwrap().relative_offset, 7);
    }

    #[test]
    fn files_round_trip_and_bad_lengths_are_refused() {
        let mut index = Index::<TimeEntry>::new();
        index.maybe_append(-3, 1).unwrap();
        index.maybe_append(1 << 40, 2).unwrap();
        let mut bytes = Vec::new();
        for e in &index.entries {
            e.encode(&mut bytes);
        }
        let back = Index::<TimeEntry>::decode_file(&bytes).unwrap();
        assert_eq!(back.entries, index.entries);
        assert!(!back.needs_persist());
        assert!(Index::<TimeEntry>::decode_file(&bytes[..5]).is_err());
    }
}
