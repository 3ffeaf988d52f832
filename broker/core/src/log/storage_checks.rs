//! Checks of the partition log that every storage backend must pass, written once: the
//! log's own tests run them on `MemStorage`, the shell's tests on `FileStorage` (the real
//! file system, which this crate may not touch). Compiled for tests and the `testkit`
//! feature only.

use super::*;
use crate::record::batch::split_batches;
use crate::record::codec::{encode_batch, BatchOptions, NewRecord};
use crate::storage::MemStorage;

pub const DIR: &str = "/data/topic-0";

/// A v2 batch with one record per timestamp, `value_bytes` of payload each.
pub fn make_batch(timestamps: &[i64], value_bytes: usize) -> BytesMut {
    let records: Vec<NewRecord> = timestamps
        .iter()
        .enumerate()
        .map(|(i, &timestamp)| NewRecord {
            timestamp,
            key: None,
            value: Some(Bytes::from(vec![i as u8; value_bytes])),
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&records, &BatchOptions::default())
}

pub fn simple_batch(records: usize, value_bytes: usize) -> BytesMut {
    make_batch(&vec![1_000; records], value_bytes)
}

/// Tiny deterministic generator so data-driven tests need no extra dependency.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// What the log should hold: every batch as stored, in order.
#[derive(Default, Clone)]
pub struct Model {
    pub batches: Vec<(BatchHeader, Vec<u8>)>,
}

impl Model {
    pub fn push(&mut self, bytes: &[u8]) {
        let header = batch::validate(bytes).unwrap();
        if let Some((last, _)) = self.batches.last() {
            assert_eq!(header.base_offset, last.last_offset() + 1);
        }
        self.batches.push((header, bytes.to_vec()));
    }

    pub fn end_offset(&self) -> i64 {
        self.batches.last().map_or(0, |(h, _)| h.last_offset() + 1)
    }

    pub fn index_of(&self, offset: i64) -> usize {
        self.batches
            .iter()
            .position(|(h, _)| h.last_offset() >= offset)
            .unwrap()
    }

    pub fn truncate_to(&mut self, offset: i64) {
        self.batches.retain(|(h, _)| h.last_offset() < offset);
    }
}

pub fn mem_log(config: LogConfig) -> (MemStorage, PartitionLog) {
    let storage = MemStorage::new();
    let log = PartitionLog::open(Arc::new(storage.clone()), DIR.into(), config, 0).unwrap();
    (storage, log)
}

pub fn reopen(storage: &MemStorage, config: LogConfig) -> PartitionLog {
    PartitionLog::open(Arc::new(storage.clone()), DIR.into(), config, 0).unwrap()
}

pub fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 1000,
        index_interval_bytes: 150,
        ..LogConfig::default()
    }
}

/// Appends `n` batches of varied shape as leader; returns the model.
pub fn fill(log: &mut PartitionLog, model: &mut Model, n: usize, rng: &mut Lcg) {
    for _ in 0..n {
        let records = 1 + rng.below(5) as usize;
        let mut bytes = simple_batch(records, rng.below(80) as usize);
        let info = log.append(&mut bytes, 0).unwrap();
        assert_eq!(info.base_offset, model.end_offset());
        assert_eq!(info.last_offset, info.base_offset + records as i64 - 1);
        model.push(&bytes);
    }
}

/// Everything the log returns, as stored batches.
pub fn read_all(log: &PartitionLog) -> Vec<(BatchHeader, Vec<u8>)> {
    let bytes = log
        .read(
            log.log_start_offset(),
            i64::MAX,
            ReadLimit::first_batch_whole(usize::MAX),
        )
        .unwrap();
    split_batches(&bytes)
        .map(|item| {
            let (h, b) = item.unwrap();
            batch::validate(b).unwrap();
            (h, b.to_vec())
        })
        .collect()
}

pub fn assert_matches(log: &PartitionLog, model: &Model) {
    assert_eq!(log.log_end_offset(), model.end_offset());
    let got = read_all(log);
    assert_eq!(got.len(), model.batches.len(), "batch count");
    for (i, ((gh, gb), (mh, mb))) in got.iter().zip(&model.batches).enumerate() {
        assert_eq!(gh, mh, "header of batch {i}");
        assert_eq!(gb, mb, "bytes of batch {i}");
    }
}

/// For every offset, a one-byte read returns exactly the batch holding it.
pub fn assert_every_offset_found(log: &PartitionLog, model: &Model) {
    for offset in log.log_start_offset()..log.log_end_offset() {
        let got = log
            .read(offset, i64::MAX, ReadLimit::first_batch_whole(1))
            .unwrap();
        let want = &model.batches[model.index_of(offset)].1;
        assert_eq!(&got[..], &want[..], "read at offset {offset}");
    }
}

pub fn log_path(base: i64) -> PathBuf {
    Path::new(DIR).join(segment::file_name(base, segment::LOG_SUFFIX))
}

pub fn index_path(base: i64) -> PathBuf {
    Path::new(DIR).join(segment::file_name(base, segment::OFFSET_INDEX_SUFFIX))
}

pub fn overwrite(storage: &dyn Storage, path: &Path, bytes: &[u8]) {
    let mut f = storage.open(path, true).unwrap();
    f.truncate(0).unwrap();
    f.append(bytes).unwrap();
    f.sync().unwrap();
}

/// Appends, reads every offset back, reopens cleanly (scanning no segment whole) and
/// deletes the log, on `storage` under `dir`.
pub fn round_trip(storage: Arc<dyn Storage>, dir: PathBuf) {
    let mut log = PartitionLog::open(storage.clone(), dir.clone(), small_segments(), 0).unwrap();
    let mut model = Model::default();
    fill(&mut log, &mut model, 60, &mut Lcg(1));
    assert!(log.segment_count() > 3, "small segments roll");
    assert_matches(&log, &model);
    assert_every_offset_found(&log, &model);
    let total: u64 = model.batches.iter().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(log.size_bytes(), total);

    log.sync().unwrap();
    drop(log);
    let log = PartitionLog::open(storage.clone(), dir.clone(), small_segments(), 0).unwrap();
    let report = log.recovery_report();
    assert!(report.is_clean());
    assert_eq!(
        report.segments_scanned, 0,
        "a clean reopen scans no segment whole"
    );
    // Only the batches from each segment's last index entry on are re-validated.
    assert!(
        report.batches_scanned <= 2 * log.segment_count() as u64,
        "{report:?}"
    );
    assert_matches(&log, &model);
    assert_every_offset_found(&log, &model);
    log.delete().unwrap();
    assert!(!storage.exists(&dir));
}

/// Cuts the last segment file at every byte of its last batch: reopen must drop exactly
/// the partial batch and continue appending at its base offset.
pub fn torn_tail_at_every_byte(storage: Arc<dyn Storage>, dir: PathBuf) {
    let config = small_segments();
    let mut log = PartitionLog::open(storage.clone(), dir.clone(), config.clone(), 0).unwrap();
    let mut model = Model::default();
    fill(&mut log, &mut model, 12, &mut Lcg(9));
    // A small last batch keeps the real-disk loop (fsyncs per cut) quick.
    let mut last = simple_batch(2, 20);
    log.append(&mut last, 0).unwrap();
    model.push(&last);
    let last_base = model.batches.last().unwrap().0.base_offset;
    let active_base = log.segments.last().unwrap().base_offset;
    let path = dir.join(segment::file_name(active_base, segment::LOG_SUFFIX));
    let full = storage::read_to_vec(&*storage.open(&path, false).unwrap()).unwrap();
    let last_len = model.batches.last().unwrap().1.len();
    log.sync().unwrap();
    drop(log);
    let mut before_last = model.clone();
    before_last.truncate_to(last_base);

    for cut in (full.len() - last_len)..full.len() {
        overwrite(&*storage, &path, &full[..cut]);
        let mut log = PartitionLog::open(storage.clone(), dir.clone(), config.clone(), 0).unwrap();
        assert_eq!(log.log_end_offset(), last_base, "cut at {cut}");
        let report = log.recovery_report();
        assert_eq!(report.truncation.is_some(), cut > full.len() - last_len);
        assert_matches(&log, &before_last);
        let mut again = simple_batch(2, 3);
        assert_eq!(log.append(&mut again, 0).unwrap().base_offset, last_base);
        let mut extended = before_last.clone();
        extended.push(&again);
        assert_matches(&log, &extended);
        // Drop it again (and any segment it rolled) for the next cut.
        log.truncate_to(last_base).unwrap();
    }
}
