//! The partition log in Kafka's on-disk layout: segments of whole v2 batches named by
//! base offset, sparse offset and time indexes, and a recovery-point checkpoint below
//! which everything is known to be synced.
//!
//! Durability model: appends only reach the OS; `sync` (called by the flush policy or
//! the broker) fsyncs and then advances the recovery point. On open, every batch that
//! may not have been synced is validated (length, magic, CRC, dense offsets) and the log
//! is cut at the first torn or corrupt one: segments after the one holding the recovery
//! point are scanned whole; that segment and earlier ones keep their index files if
//! those are consistent, and only the batches after the last index entry below the
//! recovery point are validated (so a clean reopen reads little). Corruption of synced
//! data before an index entry is not looked for.
//!
//! Offsets are dense: every batch starts at the previous batch's last offset + 1.

mod index;
mod segment;
#[cfg(any(test, feature = "testkit"))]
#[doc(hidden)]
pub mod storage_checks;

#[cfg(test)]
mod tests;

use crate::probe;
use crate::record::batch::{self, BatchError, BatchHeader};
use crate::storage::{self, Storage};
use bytes::{Bytes, BytesMut};
use segment::{ScanFrom, Segment};
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Name of the checkpoint file inside the partition directory.
pub const RECOVERY_POINT_FILE: &str = "recovery-point";
/// First line of the checkpoint file: its format version.
const RECOVERY_POINT_VERSION: &str = "0";

/// Per-partition log settings, with Kafka's topic config names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogConfig {
    /// segment.bytes: roll when the next append would pass this.
    pub segment_bytes: u64,
    /// segment.ms: roll a non-empty segment this long after its first append.
    pub segment_ms: i64,
    /// index.interval.bytes: log bytes between index entries.
    pub index_interval_bytes: u64,
    /// flush.messages: sync once this many messages (offsets) are unsynced; None never.
    pub flush_messages: Option<u64>,
    /// flush.ms: `flush_if_due` syncs when this long passed since the last flush.
    pub flush_ms: Option<i64>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            flush_messages: None,
            flush_ms: None,
        }
    }
}

impl LogConfig {
    pub fn validate(&self) -> Result<(), LogError> {
        // Index positions are u32 and every batch starts below segment_bytes.
        if self.segment_bytes == 0 || self.segment_bytes > i32::MAX as u64 {
            return Err(LogError::InvalidConfig(
                "segment.bytes must be in 1..=2147483647",
            ));
        }
        if self.segment_ms <= 0 {
            return Err(LogError::InvalidConfig("segment.ms must be positive"));
        }
        if self.flush_ms.is_some_and(|ms| ms < 0) {
            return Err(LogError::InvalidConfig("flush.ms must not be negative"));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "offset {offset} is out of range (log start {log_start_offset}, log end {log_end_offset})"
    )]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    #[error("append must start at offset {expected}, got a batch at {got}")]
    UnexpectedAppendOffset { expected: i64, got: i64 },
    #[error("corrupt log segment {path} at position {position}: {reason}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    #[error("invalid log config: {0}")]
    InvalidConfig(&'static str),
    #[error("log refuses writes after a failed write or fsync; reopen it to recover")]
    Failed,
}

impl LogError {
    fn io(path: &Path, source: io::Error) -> LogError {
        LogError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Attaches the path to an I/O error.
trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T, LogError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T, LogError> {
        self.map_err(|e| LogError::io(path, e))
    }
}

/// Offsets assigned to (or carried by) an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
}

/// How much of the log `check_invariants` looks at.
#[derive(Debug, Clone, Copy)]
enum Check {
    Tail,
    Whole,
}

/// How much one read may return (KIP-74). A fetch response gives `min_one_batch` only to
/// its first partition with data, so that a batch larger than every limit still makes
/// progress while the response as a whole stays within one batch of its `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimit {
    /// Bytes of whole batches at most (but see `min_one_batch`).
    pub max_bytes: usize,
    /// Return the first batch whole even when it is larger than `max_bytes`.
    pub min_one_batch: bool,
}

impl ReadLimit {
    /// At most `max_bytes`, but the first batch whole whatever its size.
    pub fn first_batch_whole(max_bytes: usize) -> ReadLimit {
        ReadLimit {
            max_bytes,
            min_one_batch: true,
        }
    }

    /// At most `max_bytes`: nothing when even the first batch is larger.
    pub fn within(max_bytes: usize) -> ReadLimit {
        ReadLimit {
            max_bytes,
            min_one_batch: false,
        }
    }

    /// Whether no batch at all may be read.
    pub fn is_nothing(&self) -> bool {
        self.max_bytes == 0 && !self.min_one_batch
    }
}

/// Where recovery cut a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryTruncation {
    pub segment_base_offset: i64,
    pub position: u64,
    pub bytes_dropped: u64,
    pub reason: String,
}

/// What `PartitionLog::open` found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The checkpointed recovery point, None if the file was missing or unreadable.
    pub checkpoint: Option<i64>,
    /// Segments scanned whole, batch by batch (CRC-checked and re-indexed). Others
    /// are validated only after their last usable index entry.
    pub segments_scanned: usize,
    pub batches_scanned: u64,
    /// Segments whose index files were missing or inconsistent.
    pub indexes_rebuilt: usize,
    pub truncation: Option<RecoveryTruncation>,
    /// Base offsets of segments deleted because they followed a cut or a gap.
    pub segments_deleted: Vec<i64>,
    /// Bytes dropped by the cut plus the sizes of deleted segments.
    pub bytes_dropped: u64,
}

impl RecoveryReport {
    /// True if recovery dropped nothing.
    pub fn is_clean(&self) -> bool {
        self.truncation.is_none() && self.segments_deleted.is_empty()
    }
}

/// One partition's log. Reads take `&self`; writes take `&mut self`. It is `Send` but
/// not `Sync` (`StorageFile` is only `Send`), so share it behind a `Mutex`.
pub struct PartitionLog {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    config: LogConfig,
    /// Sorted by base offset, never empty; the last one is the active segment.
    segments: Vec<Segment>,
    recovery_point: i64,
    /// The offset the `recovery-point` file holds: at or below `recovery_point`.
    checkpoint_written: i64,
    last_flush_ms: i64,
    /// A segment file was created or deleted since the directory was last synced.
    dir_unsynced: bool,
    /// Set when a write or fsync failed in a way that leaves the files uncertain.
    failed: bool,
    report: RecoveryReport,
}

impl PartitionLog {
    /// Opens or creates the log in `dir` and recovers it (see the module docs). Never
    /// serves a torn or corrupt tail: the first bad batch found is cut off together with
    /// everything after it. `recovery_report()` tells what was done.
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<PartitionLog, LogError> {
        config.validate()?;
        let store = &*storage;
        storage::create_dir_all_durable(store, &dir).at(&dir)?;

        let mut report = RecoveryReport::default();
        let mut log_bases = BTreeSet::new();
        let mut index_files = Vec::new();
        for name in store.list_dir(&dir).at(&dir)? {
            match segment::parse_file_name(&name) {
                Some((base, segment::LOG_SUFFIX)) => {
                    log_bases.insert(base);
                }
                Some((base, segment::OFFSET_INDEX_SUFFIX | segment::TIME_INDEX_SUFFIX)) => {
                    index_files.push((base, name));
                }
                _ if name.ends_with(".tmp") => remove_file_if_exists(store, &dir.join(&name))?,
                _ => {}
            }
        }
        for (base, name) in index_files {
            if !log_bases.contains(&base) {
                tracing::warn!(dir = %dir.display(), file = %name, "removing index without a segment");
                remove_file_if_exists(store, &dir.join(&name))?;
            }
        }

        report.checkpoint = read_recovery_point(store, &dir)?;
        let checkpoint = report.checkpoint.unwrap_or(0);
        let bases: Vec<i64> = log_bases.into_iter().collect();
        // Segments holding offsets at or after the recovery point: the last one starting
        // at or below it, and all later ones.
        let first_unsynced = bases
            .partition_point(|&b| b <= checkpoint)
            .saturating_sub(1);
        let interval = config.index_interval_bytes;

        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        let mut delete_from = None;
        for (i, &base) in bases.iter().enumerate() {
            if let Some(previous) = segments.last() {
                if previous.next_offset != base {
                    tracing::warn!(
                        dir = %dir.display(),
                        expected = previous.next_offset,
                        found = base,
                        "offset gap between segments; dropping the later segments"
                    );
                    delete_from = Some(i);
                    break;
                }
            }
            let mut seg = Segment::open(store, &dir, base)?;
            let mut outcome = None;
            if report.checkpoint.is_some() && i <= first_unsynced {
                let synced_below = (i == first_unsynced).then_some(checkpoint);
                let next_base = bases.get(i + 1).copied();
                match seg.load_synced(store, next_base, synced_below, interval)? {
                    Ok(o) => outcome = Some(o),
                    Err(reason) => {
                        tracing::warn!(segment = %seg.log_path.display(), %reason, "rebuilding unusable index");
                        report.indexes_rebuilt += 1;
                    }
                }
            }
            let outcome = match outcome {
                Some(o) => o,
                None => {
                    report.segments_scanned += 1;
                    seg.scan(ScanFrom::Start, interval)?
                }
            };
            report.batches_scanned += outcome.batches;
            if i >= first_unsynced {
                // Data past the recovery point may still sit only in the page cache (the
                // process died, not the machine): the next sync must fsync it.
                seg.log_unsynced = true;
            }
            if let Some((position, reason)) = outcome.invalid {
                let bytes_dropped = seg.size_bytes - position;
                tracing::warn!(
                    segment = %seg.log_path.display(),
                    position,
                    bytes_dropped,
                    %reason,
                    "truncating log at first invalid batch"
                );
                crate::probe!(probe::RECOVERY_CUT_TAIL);
                seg.truncate(position, interval)?;
                report.bytes_dropped += bytes_dropped;
                report.truncation = Some(RecoveryTruncation {
                    segment_base_offset: base,
                    position,
                    bytes_dropped,
                    reason,
                });
                segments.push(seg);
                delete_from = Some(i + 1);
                break;
            }
            segments.push(seg);
        }
        if let Some(from) = delete_from.filter(|&f| f < bases.len()) {
            for &base in &bases[from..] {
                let path = dir.join(segment::file_name(base, segment::LOG_SUFFIX));
                report.bytes_dropped += store.open(&path, false).and_then(|f| f.len()).unwrap_or(0);
                Segment::delete_files(store, &dir, base)?;
                report.segments_deleted.push(base);
            }
            tracing::warn!(dir = %dir.display(), deleted = ?report.segments_deleted, "deleted segments after the recovered end");
            store.sync_dir(&dir).at(&dir)?;
        }
        // The directory's entries are synced at the next sync whatever this open found: a
        // file listed now may have been created by a process that died before syncing the
        // directory, so its name is in the page cache but not yet on the disk (Kafka: the
        // first flush after recovery flushes the directory too).
        let dir_unsynced = true;
        if segments.is_empty() {
            segments.push(Segment::create(store, &dir, 0)?);
        }

        let active = segments.last_mut().expect("at least one segment");
        if active.size_bytes > 0 {
            active.rolling_base_ms = Some(now_ms);
        }
        let log_end_offset = active.next_offset;
        let recovery_point = checkpoint.min(log_end_offset);
        if report.checkpoint.is_some_and(|c| c > log_end_offset) {
            tracing::warn!(
                dir = %dir.display(),
                checkpoint,
                log_end_offset,
                "log ends below its recovery point: synced data was lost or corrupted"
            );
            write_recovery_point(store, &dir, recovery_point, true)?;
        }
        if !report.is_clean() || report.indexes_rebuilt > 0 {
            tracing::warn!(dir = %dir.display(), ?report, "partition log recovered");
        }
        let log = PartitionLog {
            storage,
            dir,
            config,
            segments,
            recovery_point,
            checkpoint_written: recovery_point,
            last_flush_ms: now_ms,
            dir_unsynced,
            failed: false,
            report,
        };
        log.check_invariants(Check::Whole);
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// What the last `open` found and did.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    pub fn log_start_offset(&self) -> i64 {
        self.segments[0].base_offset
    }

    /// The next offset to assign.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    /// Everything below this offset is known to be synced.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size_bytes).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn active(&self) -> &Segment {
        self.segments.last().expect("at least one segment")
    }

    fn check_writable(&self) -> Result<(), LogError> {
        if self.failed {
            return Err(LogError::Failed);
        }
        Ok(())
    }

    /// Leader append of one validated batch: assigns base offset = log end offset
    /// (rewriting it in `batch`), rolls first if due, writes, indexes, applies
    /// flush.messages. The CRC is the caller's job (produce validation); only the header
    /// and length are checked here.
    pub fn append(&mut self, batch: &mut [u8], now_ms: i64) -> Result<AppendInfo, LogError> {
        self.check_writable()?;
        let header = BatchHeader::parse(batch)?;
        if header.total_bytes() != batch.len() {
            return Err(BatchError::Invalid("batch length does not match its bytes").into());
        }
        if header.records_count <= 0 || header.last_offset_delta < 0 {
            return Err(BatchError::Invalid("empty batch or negative offset delta").into());
        }
        let base_offset = self.log_end_offset();
        batch::set_base_offset(batch, base_offset);
        let last_offset = base_offset + i64::from(header.last_offset_delta);
        self.write(batch, last_offset, now_ms)?;
        Ok(AppendInfo {
            base_offset,
            last_offset,
        })
    }

    /// Follower append of batches whose offsets are already assigned: they must be
    /// whole, valid (CRC included) and contiguous from the log end offset. Written as
    /// one write into one segment. An empty buffer appends nothing.
    pub fn append_replicated(
        &mut self,
        batches: &[u8],
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        self.check_writable()?;
        let base_offset = self.log_end_offset();
        let mut next = base_offset;
        for item in batch::split_batches(batches) {
            let (header, bytes) = item?;
            batch::validate(bytes)?;
            if header.base_offset != next {
                return Err(LogError::UnexpectedAppendOffset {
                    expected: next,
                    got: header.base_offset,
                });
            }
            next = header.last_offset() + 1;
        }
        if next == base_offset {
            return Ok(AppendInfo {
                base_offset,
                last_offset: base_offset - 1,
            });
        }
        let last_offset = next - 1;
        if last_offset - base_offset > i64::from(i32::MAX) {
            return Err(BatchError::Invalid("offsets span too wide for one append").into());
        }
        self.write(batches, last_offset, now_ms)?;
        Ok(AppendInfo {
            base_offset,
            last_offset,
        })
    }

    /// Writes whole, checked batches continuing the log, ending at `last_offset`.
    fn write(&mut self, bytes: &[u8], last_offset: i64, now_ms: i64) -> Result<(), LogError> {
        self.maybe_roll(bytes.len() as u64, last_offset, now_ms)?;
        let interval = self.config.index_interval_bytes;
        let active = self.segments.last_mut().expect("at least one segment");
        let mut position = match active.append(bytes) {
            Ok(position) => position,
            Err((e, rolled_back)) => {
                self.failed = !rolled_back;
                return Err(e);
            }
        };
        for item in batch::split_batches(bytes) {
            let (header, batch_bytes) = item.expect("batches were checked before writing");
            let total = batch_bytes.len() as u64;
            active
                .index_batch(&header, position, total, interval)
                .expect("appended offsets and positions increase");
            position += total;
        }
        active.next_offset = last_offset + 1;
        active.rolling_base_ms.get_or_insert(now_ms);

        if let Some(flush_messages) = self.config.flush_messages {
            let unflushed = (self.log_end_offset() - self.recovery_point) as u64;
            if unflushed >= flush_messages {
                crate::probe!(probe::FLUSH_BY_POLICY);
                self.sync()?;
                self.last_flush_ms = now_ms;
            }
        }
        self.check_invariants(Check::Tail);
        Ok(())
    }

    /// Asserts what must hold between every two operations (on in every build: a broken
    /// one means served or synced data can no longer be trusted, so the node must stop
    /// rather than go on). `Check::Tail` looks at the active segment and its neighbour
    /// (after an append), `Check::Whole` at every segment (after open and truncation).
    fn check_invariants(&self, scope: Check) {
        let dir = self.dir.display();
        assert!(!self.segments.is_empty(), "{dir}: a log without a segment");
        let from = match scope {
            Check::Tail => self.segments.len().saturating_sub(2),
            Check::Whole => 0,
        };
        for (i, seg) in self.segments.iter().enumerate().skip(from) {
            assert!(
                seg.base_offset <= seg.next_offset,
                "{dir}: segment {} ends at {} before it starts",
                seg.base_offset,
                seg.next_offset
            );
            assert_eq!(
                seg.size_bytes == 0,
                seg.next_offset == seg.base_offset,
                "{dir}: segment {} holds {} bytes for offsets up to {}",
                seg.base_offset,
                seg.size_bytes,
                seg.next_offset
            );
            if let Some(last) = seg.offset_index.entries.last() {
                assert!(
                    seg.base_offset + i64::from(last.relative_offset) < seg.next_offset
                        && u64::from(last.position) < seg.size_bytes,
                    "{dir}: segment {} indexes offset +{} at {} beyond its end ({} bytes, next offset {})",
                    seg.base_offset,
                    last.relative_offset,
                    last.position,
                    seg.size_bytes,
                    seg.next_offset
                );
            }
            if let Some(next) = self.segments.get(i + 1) {
                assert_eq!(
                    seg.next_offset, next.base_offset,
                    "{dir}: a gap or an overlap between segments {} and {}",
                    seg.base_offset, next.base_offset
                );
            }
        }
        // Recovery trusts everything below the checkpoint file's offset without a check:
        // it may never run ahead of what was synced, nor the synced point past the end.
        assert!(
            self.checkpoint_written <= self.recovery_point
                && self.recovery_point <= self.log_end_offset(),
            "{dir}: checkpoint {} <= recovery point {} <= log end {} does not hold",
            self.checkpoint_written,
            self.recovery_point,
            self.log_end_offset()
        );
    }

    /// Rolls to a new segment before an append of `incoming_bytes` ending at
    /// `last_offset` if segment.bytes or segment.ms say so, or if the segment could not
    /// index it (relative offsets are 31-bit, positions 32-bit).
    fn maybe_roll(
        &mut self,
        incoming_bytes: u64,
        last_offset: i64,
        now_ms: i64,
    ) -> Result<(), LogError> {
        let active = self.active();
        if active.size_bytes == 0 {
            return Ok(());
        }
        let by_size = active.size_bytes + incoming_bytes > self.config.segment_bytes;
        let by_time = active
            .rolling_base_ms
            .is_some_and(|t| now_ms.saturating_sub(t) >= self.config.segment_ms);
        let by_offset = last_offset - active.base_offset > i64::from(i32::MAX);
        let by_position = active.size_bytes + incoming_bytes > u64::from(u32::MAX);
        // BUGGIFY: segments of odd sizes, so rolls happen where tests never put them.
        let by_chance = crate::buggify!(0.05);
        if !(by_size || by_time || by_offset || by_position || by_chance) {
            return Ok(());
        }
        let base_offset = self.log_end_offset();
        tracing::debug!(dir = %self.dir.display(), base_offset, by_size, by_time, "rolling segment");
        let segment = Segment::create(&*self.storage, &self.dir, base_offset)?;
        crate::probe!(probe::SEGMENT_ROLL);
        self.segments.push(segment);
        self.dir_unsynced = true;
        Ok(())
    }

    /// Kafka fetch: whole batches from the one holding `offset`, only those whose last
    /// offset is below `max_offset`, stopping before `limit.max_bytes` would be exceeded
    /// except that with `limit.min_one_batch` the first batch is returned whole (KIP-74).
    /// Crosses segments.
    pub fn read(&self, offset: i64, max_offset: i64, limit: ReadLimit) -> Result<Bytes, LogError> {
        let max_bytes = limit.max_bytes;
        self.check_offset(offset)?;
        if offset == self.log_end_offset() || offset >= max_offset {
            return Ok(Bytes::new());
        }
        let mut out = BytesMut::new();
        let mut k = self.segment_for(offset);
        let (mut position, first) = self.segments[k].find_batch(offset)?;
        loop {
            let seg = &self.segments[k];
            let end = seg.read_limit(max_offset);
            while position < end {
                let budget = max_bytes.saturating_sub(out.len()) as u64;
                let mut want = (end - position).min(budget);
                if out.is_empty() && limit.min_one_batch {
                    // Only at the first batch: KIP-74 returns it whole.
                    want = want.max(first.total_bytes() as u64);
                }
                if want == 0 {
                    return Ok(out.freeze());
                }
                let start = out.len();
                out.resize(start + want as usize, 0);
                seg.read_exact_at(&mut out[start..], position)?;
                let accepted = whole_batches_below(&out[start..], max_offset).map_err(|e| {
                    LogError::Corrupt {
                        path: seg.log_path.clone(),
                        position,
                        reason: e.to_string(),
                    }
                })?;
                out.truncate(start + accepted);
                position += accepted as u64;
                if (accepted as u64) < want {
                    return Ok(out.freeze());
                }
            }
            if end < seg.size_bytes || k + 1 == self.segments.len() {
                return Ok(out.freeze());
            }
            k += 1;
            position = 0;
        }
    }

    /// The first batch whose max timestamp is >= `timestamp_ms`, as its header and bytes.
    pub fn find_batch_by_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(BatchHeader, Bytes)>, LogError> {
        // Timestamps need not grow, so the answer is in the first segment whose max
        // reaches the target; later segments are searched only if that max was stale.
        for seg in &self.segments {
            if seg.size_bytes == 0 || seg.max_timestamp < timestamp_ms {
                continue;
            }
            let mut position = seg.timestamp_search_start(timestamp_ms);
            while position < seg.size_bytes {
                let header = seg.read_header_at(position)?;
                if header.max_timestamp >= timestamp_ms {
                    let mut bytes = vec![0u8; header.total_bytes()];
                    seg.read_exact_at(&mut bytes, position)?;
                    return Ok(Some((header, Bytes::from(bytes))));
                }
                position += header.total_bytes() as u64;
            }
        }
        Ok(None)
    }

    /// Calls `f` with the header of every batch from the one holding `from_offset` on.
    pub fn scan_headers(
        &self,
        from_offset: i64,
        f: &mut dyn FnMut(&BatchHeader),
    ) -> Result<(), LogError> {
        let from_offset = from_offset.max(self.log_start_offset());
        if from_offset >= self.log_end_offset() {
            return Ok(());
        }
        let k = self.segment_for(from_offset);
        let (mut position, _) = self.segments[k].find_batch(from_offset)?;
        for seg in &self.segments[k..] {
            while position < seg.size_bytes {
                let header = seg.read_header_at(position)?;
                f(&header);
                position += header.total_bytes() as u64;
            }
            position = 0;
        }
        Ok(())
    }

    /// Drops every batch holding an offset >= `offset`. A batch straddling `offset` is
    /// dropped whole (batches are never split), so the log end offset may end up below
    /// `offset`. Below the log start the log is emptied and restarts at `offset`. The cut
    /// is made durable before returning.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        self.check_writable()?;
        if offset < 0 {
            return Err(self.out_of_range(offset));
        }
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        let result = if offset < self.log_start_offset() {
            self.truncate_fully_and_start_at(offset)
        } else {
            self.truncate_inside(offset)
        };
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn truncate_inside(&mut self, offset: i64) -> Result<(), LogError> {
        let k = self.segment_for(offset);
        let (position, _) = self.segments[k].find_batch(offset)?;
        for seg in self.segments.drain(k + 1..).rev() {
            let base_offset = seg.base_offset;
            drop(seg);
            Segment::delete_files(&*self.storage, &self.dir, base_offset)?;
            self.dir_unsynced = true;
        }
        self.segments[k].truncate(position, self.config.index_interval_bytes)?;
        self.after_truncation()
    }

    fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), LogError> {
        for seg in self.segments.drain(..).rev() {
            let base_offset = seg.base_offset;
            drop(seg);
            Segment::delete_files(&*self.storage, &self.dir, base_offset)?;
        }
        self.segments
            .push(Segment::create(&*self.storage, &self.dir, offset)?);
        self.dir_unsynced = true;
        self.recovery_point = offset;
        self.after_truncation()
    }

    /// Makes a truncation durable: deleted files gone, recovery point not above the end
    /// (else a crash could make recovery trust appends made after the cut).
    fn after_truncation(&mut self) -> Result<(), LogError> {
        if self.dir_unsynced {
            self.storage.sync_dir(&self.dir).at(&self.dir)?;
            self.dir_unsynced = false;
        }
        let log_end_offset = self.log_end_offset();
        if self.recovery_point > log_end_offset {
            self.recovery_point = log_end_offset;
        }
        // Always rewritten (truncation is rare): the truncate-fully path moves it up.
        write_recovery_point(&*self.storage, &self.dir, self.recovery_point, true)?;
        self.checkpoint_written = self.recovery_point;
        self.check_invariants(Check::Whole);
        Ok(())
    }

    /// The explicit sync point: fsyncs every segment with unsynced data and the index
    /// entries it lacks, the directory if files came or went, then advances the recovery
    /// point to the log end offset.
    pub fn sync(&mut self) -> Result<(), LogError> {
        self.check_writable()?;
        let result = self.sync_inner();
        if result.is_err() {
            // After a failed fsync the page cache state is unknown (the kernel may have
            // dropped the dirty pages): only recovery can tell what is on disk.
            self.failed = true;
        }
        result
    }

    fn sync_inner(&mut self) -> Result<(), LogError> {
        for seg in &mut self.segments {
            if seg.needs_sync() {
                seg.sync(&*self.storage)?;
            }
        }
        if self.dir_unsynced {
            self.storage.sync_dir(&self.dir).at(&self.dir)?;
            self.dir_unsynced = false;
        }
        let log_end_offset = self.log_end_offset();
        self.recovery_point = log_end_offset;
        // The checkpoint file only bounds how much recovery re-validates, and an older,
        // lower one is always safe. Rewriting it on every sync tripled the fsyncs of
        // flush.messages=1, so it is written once the synced point has left the segment
        // the file points into (recovery then re-checks at most the active segment). A
        // lost rename brings back an older value, so the directory is not synced for it.
        let active_base = self.segments.last().map_or(0, |s| s.base_offset);
        // BUGGIFY: skip it (an older checkpoint is always safe; recovery re-checks more).
        if self.checkpoint_written < active_base
            && log_end_offset > self.checkpoint_written
            && !crate::buggify!()
        {
            write_recovery_point(&*self.storage, &self.dir, log_end_offset, false)?;
            self.checkpoint_written = log_end_offset;
        }
        Ok(())
    }

    /// Clean shutdown: everything synced and the recovery point at the log end, durably,
    /// so the next `open` re-validates nothing (a clean shutdown otherwise left the
    /// checkpoint at the active segment's start, and the next start re-read every byte
    /// of every active segment).
    pub fn close(&mut self) -> Result<(), LogError> {
        self.sync()?;
        if self.checkpoint_written != self.recovery_point {
            write_recovery_point(&*self.storage, &self.dir, self.recovery_point, true)?;
            self.checkpoint_written = self.recovery_point;
        }
        Ok(())
    }

    /// The header of the last batch in the log, if there is one.
    pub fn last_batch(&self) -> Result<Option<BatchHeader>, LogError> {
        let log_end_offset = self.log_end_offset();
        if log_end_offset == self.log_start_offset() {
            return Ok(None);
        }
        let k = self.segment_for(log_end_offset - 1);
        let (_, header) = self.segments[k].find_batch(log_end_offset - 1)?;
        Ok(Some(header))
    }

    /// flush.ms: syncs if that long passed since the last flush and anything is unsynced.
    /// Returns whether it synced.
    pub fn flush_if_due(&mut self, now_ms: i64) -> Result<bool, LogError> {
        let Some(flush_ms) = self.config.flush_ms else {
            return Ok(false);
        };
        if now_ms.saturating_sub(self.last_flush_ms) < flush_ms {
            return Ok(false);
        }
        self.last_flush_ms = now_ms;
        if self.log_end_offset() == self.recovery_point {
            return Ok(false);
        }
        crate::probe!(probe::FLUSH_BY_POLICY);
        self.sync()?;
        Ok(true)
    }

    /// Removes the partition directory and everything in it (topic deletion).
    pub fn delete(self) -> Result<(), LogError> {
        let PartitionLog {
            storage,
            dir,
            segments,
            ..
        } = self;
        drop(segments);
        storage.remove_dir_all(&dir).at(&dir)
    }

    fn out_of_range(&self, offset: i64) -> LogError {
        LogError::OffsetOutOfRange {
            offset,
            log_start_offset: self.log_start_offset(),
            log_end_offset: self.log_end_offset(),
        }
    }

    fn check_offset(&self, offset: i64) -> Result<(), LogError> {
        if offset < self.log_start_offset() || offset > self.log_end_offset() {
            return Err(self.out_of_range(offset));
        }
        Ok(())
    }

    /// Index of the segment holding `offset` (log_start <= offset).
    fn segment_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .checked_sub(1)
            .expect("offset is at or above the log start")
    }
}

const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<PartitionLog>();
};

/// Length of the prefix of `buf` made of whole batches whose last offset is below
/// `max_offset`. A partial batch at the end (cut by the byte budget) is not counted.
fn whole_batches_below(buf: &[u8], max_offset: i64) -> Result<usize, BatchError> {
    let mut accepted = 0;
    for item in batch::split_batches(buf) {
        match item {
            Ok((header, bytes)) => {
                if header.last_offset() >= max_offset {
                    break;
                }
                accepted += bytes.len();
            }
            Err(BatchError::Truncated { .. }) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(accepted)
}

fn remove_file_if_exists(storage: &dyn Storage, path: &Path) -> Result<(), LogError> {
    match storage.remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(LogError::io(path, e)),
        _ => Ok(()),
    }
}

/// Reads the checkpoint; a missing or unreadable one means "nothing known synced".
fn read_recovery_point(storage: &dyn Storage, dir: &Path) -> Result<Option<i64>, LogError> {
    let path = dir.join(RECOVERY_POINT_FILE);
    let file = match storage.open(&path, false) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::io(&path, e)),
    };
    let bytes = storage::read_to_vec(&*file).at(&path)?;
    let parsed = std::str::from_utf8(&bytes).ok().and_then(|text| {
        // Exactly "<version>\n<offset>\n": a torn file fails to parse rather than
        // yielding a wrong number.
        let mut lines = text.strip_suffix('\n')?.split('\n');
        let version = lines.next()?;
        let offset: i64 = lines.next()?.parse().ok()?;
        (version == RECOVERY_POINT_VERSION && lines.next().is_none() && offset >= 0)
            .then_some(offset)
    });
    if parsed.is_none() {
        tracing::warn!(path = %path.display(), "unreadable recovery point; recovering the whole log");
    }
    Ok(parsed)
}

fn write_recovery_point(
    storage: &dyn Storage,
    dir: &Path,
    offset: i64,
    durable: bool,
) -> Result<(), LogError> {
    let path = dir.join(RECOVERY_POINT_FILE);
    let text = format!("{RECOVERY_POINT_VERSION}\n{offset}\n");
    storage::write_file_atomic(storage, &path, text.as_bytes(), durable).at(&path)
}
