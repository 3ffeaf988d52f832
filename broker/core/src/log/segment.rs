//! One log segment: the `.log` file of whole batches starting at a base offset, its two
//! sparse indexes, and the scan that validates and re-indexes it during recovery.

use super::index::{self, Index, OffsetEntry, TimeEntry};
use super::{IoContext, LogError};
use crate::probe;
use crate::record::batch::{self, BatchHeader, BATCH_HEADER_BYTES, BATCH_LOG_OVERHEAD_BYTES};
use crate::storage::{Storage, StorageFile};
use std::io;
use std::path::{Path, PathBuf};

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const OFFSET_INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";

/// "No timestamp seen yet": below every real (and every Kafka sentinel) timestamp.
pub(crate) const NO_TIMESTAMP: i64 = i64::MIN;

/// Recovery reads the log in chunks of this size (more for a bigger batch).
const SCAN_CHUNK_BYTES: u64 = 1 << 20;

/// Kafka's file name: the base offset as 20 zero-padded digits, then the suffix.
pub(crate) fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}.{suffix}")
}

/// Parses `00000000000000000042.log` into (42, "log").
pub(crate) fn parse_file_name(name: &str) -> Option<(i64, &str)> {
    let (stem, suffix) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, suffix))
}

/// Where a scan starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanFrom {
    /// From position 0, rebuilding both indexes from scratch.
    Start,
    /// From the batch of the last offset-index entry, trusting the indexes before it:
    /// checks that entry and indexes what follows.
    LastIndexEntry,
}

#[derive(Debug, Default)]
pub(crate) struct ScanOutcome {
    pub batches: u64,
    /// Position and reason where the scan stopped before the end of the file.
    pub invalid: Option<(u64, String)>,
}

pub(crate) struct Segment {
    pub base_offset: i64,
    /// One past the last offset in the segment (== base_offset when empty).
    pub next_offset: i64,
    pub size_bytes: u64,
    /// Largest batch max timestamp in the segment, or NO_TIMESTAMP.
    pub max_timestamp: i64,
    /// Last offset of the first batch that reached `max_timestamp`.
    offset_of_max_timestamp: i64,
    bytes_since_index_entry: u64,
    /// When the segment got its first batch (or was reopened non-empty): segment.ms
    /// counts from here.
    pub rolling_base_ms: Option<i64>,
    /// Appended or recovered bytes that have not been fsynced by this process.
    pub log_unsynced: bool,
    log: Box<dyn StorageFile>,
    pub log_path: PathBuf,
    offset_index_path: PathBuf,
    time_index_path: PathBuf,
    pub offset_index: Index<OffsetEntry>,
    pub time_index: Index<TimeEntry>,
}

impl Segment {
    fn with_file(dir: &Path, base_offset: i64, log: Box<dyn StorageFile>, size_bytes: u64) -> Self {
        Segment {
            base_offset,
            next_offset: base_offset,
            size_bytes,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: base_offset,
            bytes_since_index_entry: 0,
            rolling_base_ms: None,
            log_unsynced: false,
            log,
            log_path: dir.join(file_name(base_offset, LOG_SUFFIX)),
            offset_index_path: dir.join(file_name(base_offset, OFFSET_INDEX_SUFFIX)),
            time_index_path: dir.join(file_name(base_offset, TIME_INDEX_SUFFIX)),
            offset_index: Index::new(),
            time_index: Index::new(),
        }
    }

    /// A new empty segment. Its index files are written at the first sync.
    pub fn create(storage: &dyn Storage, dir: &Path, base_offset: i64) -> Result<Self, LogError> {
        let path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let mut log = storage.open(&path, true).at(&path)?;
        // A leftover file of the same name can only be stale: its offsets were dropped.
        if log.len().at(&path)? != 0 {
            log.truncate(0).at(&path)?;
        }
        let mut segment = Segment::with_file(dir, base_offset, log, 0);
        segment.log_unsynced = true;
        Ok(segment)
    }

    /// An existing segment, not yet scanned or indexed.
    pub fn open(storage: &dyn Storage, dir: &Path, base_offset: i64) -> Result<Self, LogError> {
        let path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let log = storage.open(&path, false).at(&path)?;
        let size_bytes = log.len().at(&path)?;
        Ok(Segment::with_file(dir, base_offset, log, size_bytes))
    }

    pub fn delete_files(
        storage: &dyn Storage,
        dir: &Path,
        base_offset: i64,
    ) -> Result<(), LogError> {
        for suffix in [LOG_SUFFIX, OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let path = dir.join(file_name(base_offset, suffix));
            match storage.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io(&path, e)),
            }
        }
        Ok(())
    }

    fn corrupt(&self, position: u64, reason: impl Into<String>) -> LogError {
        LogError::Corrupt {
            path: self.log_path.clone(),
            position,
            reason: reason.into(),
        }
    }

    /// Loads and checks the index files of a segment that starts below the recovery
    /// point, then validates the batches after the last usable offset-index entry (which
    /// also yields `next_offset` and the max timestamp). For the segment holding the
    /// recovery point, `synced_below` drops entries at or above it first, so everything
    /// that may not have been synced gets validated.
    ///
    /// `Ok(Err(reason))`: the indexes are unusable and the segment needs a full scan.
    /// `Ok(Ok(outcome))`: as from `scan`; a bad batch it reports lies after the entry.
    pub fn load_synced(
        &mut self,
        storage: &dyn Storage,
        next_base_offset: Option<i64>,
        synced_below: Option<i64>,
        index_interval_bytes: u64,
    ) -> Result<Result<ScanOutcome, String>, LogError> {
        let mut offset_index = match index::load::<OffsetEntry>(storage, &self.offset_index_path)
            .at(&self.offset_index_path)?
        {
            None => return Ok(Err("offset index missing".into())),
            Some(Err(reason)) => return Ok(Err(reason.into())),
            Some(Ok(index)) => index,
        };
        let mut time_index = match index::load::<TimeEntry>(storage, &self.time_index_path)
            .at(&self.time_index_path)?
        {
            None => return Ok(Err("time index missing".into())),
            Some(Err(reason)) => return Ok(Err(reason.into())),
            Some(Ok(index)) => index,
        };
        let relative_offset_end = next_base_offset.map(|n| (n - self.base_offset) as u64);
        if let Err(reason) = offset_index
            .check_offsets(self.size_bytes, relative_offset_end)
            .and_then(|()| time_index.check_timestamps(relative_offset_end))
        {
            return Ok(Err(reason.into()));
        }
        if let Some(synced_below) = synced_below {
            let relative_end = (synced_below - self.base_offset).max(0) as u64;
            offset_index.truncate_below_offset(relative_end);
            time_index.truncate_to_offset(relative_end);
        }
        self.offset_index = offset_index;
        self.time_index = time_index;
        let start = self
            .offset_index
            .entries
            .last()
            .map(|e| u64::from(e.position));
        let outcome = self.scan(ScanFrom::LastIndexEntry, index_interval_bytes)?;
        match &outcome.invalid {
            Some((position, reason)) if Some(*position) == start => {
                return Ok(Err(format!("{reason} (position {position})")));
            }
            Some(_) => {}
            None => {
                if let Some(last) = self.time_index.entries.last() {
                    if self.base_offset + i64::from(last.relative_offset) >= self.next_offset {
                        return Ok(Err("time index entry beyond the segment's offsets".into()));
                    }
                }
            }
        }
        Ok(Ok(outcome))
    }

    /// Reads batches from `from` to the end of the file, checking each one fully (length,
    /// magic, CRC, contiguous offsets within the segment's range) and indexing it. Stops
    /// at the first bad batch and reports where; the caller decides what to cut.
    pub fn scan(
        &mut self,
        from: ScanFrom,
        index_interval_bytes: u64,
    ) -> Result<ScanOutcome, LogError> {
        let end = self.size_bytes;
        let mut position = 0;
        let mut expected_base = Some(self.base_offset);
        let mut expected_last = None;
        match from {
            ScanFrom::Start => {
                self.offset_index.clear();
                self.time_index.clear();
                self.max_timestamp = NO_TIMESTAMP;
                self.offset_of_max_timestamp = self.base_offset;
            }
            ScanFrom::LastIndexEntry => {
                // The last time entry is the running max timestamp up to at least the last
                // offset-index entry, so continuing from it gives the exact segment max.
                (self.max_timestamp, self.offset_of_max_timestamp) =
                    match self.time_index.entries.last() {
                        Some(e) => (
                            e.timestamp_ms,
                            self.base_offset + i64::from(e.relative_offset),
                        ),
                        None => (NO_TIMESTAMP, self.base_offset),
                    };
                if let Some(e) = self.offset_index.entries.last() {
                    position = u64::from(e.position);
                    expected_base = None;
                    expected_last = Some(self.base_offset + i64::from(e.relative_offset));
                }
            }
        }
        self.next_offset = self.base_offset;
        self.bytes_since_index_entry = 0;
        let mut window = Window::default();
        let mut outcome = ScanOutcome::default();
        while position < end {
            let bytes = match window
                .batch_at(&*self.log, end, position)
                .at(&self.log_path)?
            {
                Ok(bytes) => bytes,
                Err(reason) => {
                    outcome.invalid = Some((position, reason.into()));
                    break;
                }
            };
            let header = match batch::validate(bytes) {
                Ok(header) => header,
                Err(e) => {
                    if matches!(e, batch::BatchError::CrcMismatch { .. }) {
                        crate::probe!(probe::RECOVERY_CRC_MISMATCH);
                    }
                    outcome.invalid = Some((position, e.to_string()));
                    break;
                }
            };
            let total = bytes.len() as u64;
            if let Some(reason) =
                self.offset_problem(&header, expected_base, expected_last, position)
            {
                outcome.invalid = Some((position, reason.into()));
                break;
            }
            expected_last = None;
            if let Err(reason) = self.index_batch(&header, position, total, index_interval_bytes) {
                outcome.invalid = Some((position, reason.into()));
                break;
            }
            expected_base = Some(header.last_offset() + 1);
            self.next_offset = header.last_offset() + 1;
            position += total;
            outcome.batches += 1;
        }
        Ok(outcome)
    }

    fn offset_problem(
        &self,
        header: &BatchHeader,
        expected_base: Option<i64>,
        expected_last: Option<i64>,
        position: u64,
    ) -> Option<&'static str> {
        if expected_base.is_some_and(|b| header.base_offset != b) {
            return Some("batch offsets do not continue the previous batch");
        }
        if expected_last.is_some_and(|l| header.last_offset() != l) {
            return Some("offset index entry does not match the batch at its position");
        }
        let relative_last = header.last_offset() - self.base_offset;
        if !(0..=i64::from(i32::MAX)).contains(&relative_last) {
            return Some("batch offsets outside the segment's range");
        }
        if position > u64::from(u32::MAX) {
            return Some("batch position beyond what the index can hold");
        }
        None
    }

    /// Records one batch just written (or found) at `position` in the indexes, every
    /// `index_interval_bytes`, exactly as Kafka's LogSegment.append does. Fails only if
    /// a loaded index contradicts the log.
    pub fn index_batch(
        &mut self,
        header: &BatchHeader,
        position: u64,
        total_bytes: u64,
        index_interval_bytes: u64,
    ) -> Result<(), &'static str> {
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.last_offset();
        }
        if self.bytes_since_index_entry > index_interval_bytes {
            let relative_last = (header.last_offset() - self.base_offset) as u32;
            self.offset_index.append(relative_last, position as u32)?;
            if self.max_timestamp != NO_TIMESTAMP {
                let relative = (self.offset_of_max_timestamp - self.base_offset) as u32;
                self.time_index.maybe_append(self.max_timestamp, relative)?;
            }
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += total_bytes;
        Ok(())
    }

    /// Appends bytes at the end of the file; on failure tries to cut the file back so it
    /// still ends on a batch boundary. Returns the start position, or the error and
    /// whether the file is known to be consistent again.
    pub fn append(&mut self, bytes: &[u8]) -> Result<u64, (LogError, bool)> {
        let position = self.size_bytes;
        if let Err(e) = self.log.append(bytes) {
            let rolled_back = self.log.truncate(position).is_ok();
            return Err((LogError::io(&self.log_path, e), rolled_back));
        }
        self.size_bytes += bytes.len() as u64;
        self.log_unsynced = true;
        Ok(position)
    }

    /// fsyncs the log, then writes and fsyncs what the index files lack.
    pub fn sync(&mut self, storage: &dyn Storage) -> Result<(), LogError> {
        if self.log_unsynced {
            self.log.sync().at(&self.log_path)?;
            self.log_unsynced = false;
        }
        self.offset_index
            .persist(storage, &self.offset_index_path)
            .at(&self.offset_index_path)?;
        self.time_index
            .persist(storage, &self.time_index_path)
            .at(&self.time_index_path)
    }

    pub fn needs_sync(&self) -> bool {
        self.log_unsynced || self.offset_index.needs_persist() || self.time_index.needs_persist()
    }

    /// Cuts the file at `position` durably (a dropped batch must not come back after a
    /// crash) and keeps the indexes and counters consistent.
    pub fn truncate(&mut self, position: u64, index_interval_bytes: u64) -> Result<(), LogError> {
        self.log.truncate(position).at(&self.log_path)?;
        self.log.sync().at(&self.log_path)?;
        self.size_bytes = position;
        self.log_unsynced = false;
        self.offset_index.truncate_to_position(position);
        // Batches before `position` are whole, so the last kept offset-index entry is
        // below every dropped offset; time entries are cut by offset below it.
        let relative_end = self
            .offset_index
            .entries
            .last()
            .map_or(0, |e| u64::from(e.relative_offset) + 1);
        self.time_index.truncate_to_offset(relative_end);
        let outcome = self.scan(ScanFrom::LastIndexEntry, index_interval_bytes)?;
        if let Some((at, reason)) = outcome.invalid {
            return Err(self.corrupt(at, reason));
        }
        if position == 0 {
            self.rolling_base_ms = None;
        }
        Ok(())
    }

    /// The header of the batch at `position`, which must lie inside the file.
    pub fn read_header_at(&self, position: u64) -> Result<BatchHeader, LogError> {
        let mut buf = [0u8; BATCH_HEADER_BYTES];
        if position + BATCH_HEADER_BYTES as u64 > self.size_bytes {
            return Err(self.corrupt(position, "batch header runs past the end of the segment"));
        }
        self.log
            .read_exact_at(&mut buf, position)
            .at(&self.log_path)?;
        let header = BatchHeader::parse(&buf).map_err(|e| self.corrupt(position, e.to_string()))?;
        if header.total_bytes() as u64 > self.size_bytes - position {
            return Err(self.corrupt(position, "batch runs past the end of the segment"));
        }
        Ok(header)
    }

    /// Position and header of the batch holding `offset` (base <= offset < next).
    pub fn find_batch(&self, offset: i64) -> Result<(u64, BatchHeader), LogError> {
        debug_assert!(self.base_offset <= offset && offset < self.next_offset);
        let relative = (offset - self.base_offset) as u32;
        let mut position = u64::from(self.offset_index.lookup(relative));
        while position < self.size_bytes {
            let header = self.read_header_at(position)?;
            if header.last_offset() >= offset {
                return Ok((position, header));
            }
            position += header.total_bytes() as u64;
        }
        Err(self.corrupt(position, format!("offset {offset} not found in segment")))
    }

    /// A position no batch ending below `max_offset` lies beyond: reads stop there.
    pub fn read_limit(&self, max_offset: i64) -> u64 {
        if max_offset >= self.next_offset {
            return self.size_bytes;
        }
        let relative = max_offset - self.base_offset;
        if relative <= 0 {
            return 0;
        }
        self.offset_index
            .first_position_reaching(relative as u32)
            .map_or(self.size_bytes, u64::from)
    }

    /// Start position for a search for the first batch with max timestamp >= `ts`.
    pub fn timestamp_search_start(&self, timestamp_ms: i64) -> u64 {
        match self.time_index.last_below(timestamp_ms) {
            // Every batch up to that entry's offset has a smaller max timestamp; the
            // offset index gives a batch start at or before the one holding it.
            Some(e) => u64::from(self.offset_index.lookup(e.relative_offset)),
            None => 0,
        }
    }

    pub fn read_exact_at(&self, buf: &mut [u8], position: u64) -> Result<(), LogError> {
        self.log.read_exact_at(buf, position).at(&self.log_path)
    }
}

/// A sliding read buffer over a segment file for sequential scans.
#[derive(Default)]
struct Window {
    buf: Vec<u8>,
    start: u64,
}

impl Window {
    /// Bytes [position, position + len) of the file, reading a new chunk if needed.
    fn get(
        &mut self,
        log: &dyn StorageFile,
        end: u64,
        position: u64,
        len: u64,
    ) -> io::Result<&[u8]> {
        let buffered_end = self.start + self.buf.len() as u64;
        if position < self.start || position + len > buffered_end {
            let read_len = len.max(SCAN_CHUNK_BYTES).min(end - position);
            self.buf.resize(read_len as usize, 0);
            log.read_exact_at(&mut self.buf, position)?;
            self.start = position;
        }
        let from = (position - self.start) as usize;
        Ok(&self.buf[from..from + len as usize])
    }

    /// The whole batch at `position`, or why there is no whole batch there.
    fn batch_at(
        &mut self,
        log: &dyn StorageFile,
        end: u64,
        position: u64,
    ) -> io::Result<Result<&[u8], &'static str>> {
        let remaining = end - position;
        if remaining < BATCH_LOG_OVERHEAD_BYTES as u64 {
            return Ok(Err("torn batch: partial length field at the end"));
        }
        let head = self.get(log, end, position, BATCH_LOG_OVERHEAD_BYTES as u64)?;
        let total = match batch::peek_total_bytes(head) {
            Some(total) => total as u64,
            None => return Ok(Err("invalid batch length")),
        };
        if total > remaining {
            return Ok(Err("torn batch: runs past the end of the segment"));
        }
        Ok(Ok(self.get(log, end, position, total)?))
    }
}
