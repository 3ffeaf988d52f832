//! Tests of the partition log against a simple model (the list of batches appended),
//! on the crashable in-memory disk (the shell runs `storage_checks` on the real file system).

use super::storage_checks::*;
use super::*;
use crate::storage::MemStorage;
use proptest::prelude::*;

#[test]
fn append_and_read_round_trip() {
    round_trip(Arc::new(MemStorage::new()), DIR.into());
}

#[test]
fn torn_tail_at_every_byte_is_truncated() {
    torn_tail_at_every_byte(Arc::new(MemStorage::new()), DIR.into());
}

#[test]
fn reads_follow_kafka_fetch_rules() {
    // Five batches of 3 records (offsets 0-2, 3-5, ...), spread over segments.
    let (_storage, mut log) = mem_log(LogConfig {
        segment_bytes: 400,
        index_interval_bytes: 0,
        ..LogConfig::default()
    });
    let mut model = Model::default();
    for _ in 0..5 {
        let mut b = simple_batch(3, 40);
        log.append(&mut b, 0).unwrap();
        model.push(&b);
    }
    let size = model.batches[0].1.len();
    assert!(log.segment_count() >= 2);
    let whole = ReadLimit::first_batch_whole;
    let within = ReadLimit::within;
    // (offset, max_offset, limit, expected batch indexes)
    let cases: &[(i64, i64, ReadLimit, &[usize])] = &[
        (0, 15, whole(usize::MAX), &[0, 1, 2, 3, 4]),
        (1, 15, whole(usize::MAX), &[0, 1, 2, 3, 4]), // mid-batch start: whole batch holding it
        (5, 15, whole(usize::MAX), &[1, 2, 3, 4]),
        (6, 15, whole(usize::MAX), &[2, 3, 4]),
        (14, 15, whole(usize::MAX), &[4]),
        (15, 15, whole(usize::MAX), &[]), // at the log end
        (0, 15, whole(1), &[0]),          // KIP-74: first batch whole even if too big
        (0, 15, whole(0), &[0]),
        (4, 15, whole(size * 2), &[1, 2]),
        (4, 15, whole(size * 2 - 1), &[1]),
        (4, 15, whole(size * 2 + 1), &[1, 2]),
        (0, 6, whole(usize::MAX), &[0, 1]), // high watermark at a batch boundary
        (0, 7, whole(usize::MAX), &[0, 1]), // ... or inside a batch: that batch is withheld
        (0, 2, whole(usize::MAX), &[]),
        (7, 7, whole(usize::MAX), &[]),
        (3, 9, whole(1), &[1]),
        // Without KIP-74's allowance (a later partition of a response), nothing too big.
        (0, 15, within(1), &[]),
        (0, 15, within(0), &[]),
        (0, 15, within(size), &[0]),
        (4, 15, within(size * 2 - 1), &[1]),
        (4, 15, within(size - 1), &[]),
    ];
    for &(offset, max_offset, limit, want) in cases {
        let got = log.read(offset, max_offset, limit).unwrap();
        let expected: Vec<u8> = want
            .iter()
            .flat_map(|&i| model.batches[i].1.clone())
            .collect();
        assert_eq!(
            got.to_vec(),
            expected,
            "read({offset}, {max_offset}, {limit:?})"
        );
    }
    for offset in [-1, 16, 100] {
        assert!(matches!(
            log.read(offset, 15, ReadLimit::first_batch_whole(100)),
            Err(LogError::OffsetOutOfRange { .. })
        ));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Index lookups (through reads of one batch) agree with a linear scan of the model,
    /// before and after a reopen, for random batch sizes, intervals and segment sizes.
    #[test]
    fn index_lookups_match_a_linear_scan(
        shapes in proptest::collection::vec((1usize..8, 0usize..300), 1..60),
        index_interval_bytes in prop_oneof![Just(0u64), 1u64..600, Just(4096)],
        segment_bytes in 150u64..3000,
    ) {
        let config = LogConfig { segment_bytes, index_interval_bytes, ..LogConfig::default() };
        let (storage, mut log) = mem_log(config.clone());
        let mut model = Model::default();
        for (records, value_bytes) in shapes {
            let mut b = simple_batch(records, value_bytes);
            log.append(&mut b, 0).unwrap();
            model.push(&b);
        }
        assert_every_offset_found(&log, &model);
        log.sync().unwrap();
        drop(log);
        let log = reopen(&storage, config);
        prop_assert!(log.recovery_report().is_clean());
        assert_every_offset_found(&log, &model);
        assert_matches(&log, &model);
    }

    /// find_batch_by_timestamp agrees with a linear scan, with timestamps that go up and
    /// down, across segments, after reopen and after truncation.
    #[test]
    fn timestamp_lookup_matches_a_linear_scan(
        stamps in proptest::collection::vec(proptest::collection::vec(0i64..1000, 1..4), 1..40),
        index_interval_bytes in prop_oneof![Just(0u64), 1u64..400],
        cut in any::<prop::sample::Index>(),
    ) {
        let config = LogConfig { segment_bytes: 500, index_interval_bytes, ..LogConfig::default() };
        let (storage, mut log) = mem_log(config.clone());
        let mut model = Model::default();
        for ts in &stamps {
            let mut b = make_batch(ts, 20);
            log.append(&mut b, 0).unwrap();
            model.push(&b);
        }
        let check = |log: &PartitionLog, model: &Model| {
            for target in -1..1002 {
                let want = model.batches.iter().find(|(h, _)| h.max_timestamp >= target);
                let got = log.find_batch_by_timestamp(target).unwrap();
                match (want, got) {
                    (None, None) => {}
                    (Some((wh, wb)), Some((gh, gb))) => {
                        assert_eq!(&gh, wh, "target {}", target);
                        assert_eq!(&gb[..], &wb[..]);
                    }
                    (w, g) => panic!("target {target}: want {:?}, got {:?}", w.map(|x| x.0), g.map(|x| x.0)),
                }
            }
        };
        check(&log, &model);
        log.sync().unwrap();
        drop(log);
        let mut log = reopen(&storage, config);
        check(&log, &model);
        let offset = cut.index(model.end_offset() as usize + 1) as i64;
        log.truncate_to(offset).unwrap();
        model.truncate_to(offset);
        check(&log, &model);
    }
}

#[test]
fn rolls_by_size() {
    let one = simple_batch(1, 100).len() as u64;
    let (storage, mut log) = mem_log(LogConfig {
        segment_bytes: one * 3,
        ..LogConfig::default()
    });
    for i in 0..7 {
        let info = log.append(&mut simple_batch(1, 100), 0).unwrap();
        assert_eq!(info.base_offset, i);
    }
    assert_eq!(log.segment_count(), 3);
    // A batch bigger than a whole segment still goes in, alone.
    log.append(&mut simple_batch(1, 1000), 0).unwrap();
    log.append(&mut simple_batch(1, 100), 0).unwrap();
    assert_eq!(log.segment_count(), 5);
    let names = storage.list_dir(Path::new(DIR)).unwrap();
    let logs: Vec<&str> = names
        .iter()
        .filter(|n| n.ends_with(".log"))
        .map(|n| n.as_str())
        .collect();
    assert_eq!(
        logs,
        [
            "00000000000000000000.log",
            "00000000000000000003.log",
            "00000000000000000006.log",
            "00000000000000000007.log",
            "00000000000000000008.log"
        ]
    );
}

#[test]
fn rolls_by_time() {
    let (_storage, mut log) = mem_log(LogConfig {
        segment_ms: 1000,
        ..LogConfig::default()
    });
    // (append time, expected segment count after it)
    let steps = [
        (5_000, 1),
        (5_999, 1),
        (6_000, 2),
        (6_500, 2),
        (6_999, 2),
        (7_000, 3),
    ];
    for (now_ms, segments) in steps {
        log.append(&mut simple_batch(1, 10), now_ms).unwrap();
        assert_eq!(log.segment_count(), segments, "at {now_ms}");
    }
}

#[test]
fn crash_keeps_the_synced_prefix_with_dense_offsets() {
    for (config_name, config) in [
        ("one segment", LogConfig::default()),
        ("small segments", small_segments()),
    ] {
        for synced_batches in [0, 1, 7, 30] {
            let (storage, mut log) = mem_log(config.clone());
            let mut model = Model::default();
            let mut rng = Lcg(synced_batches as u64);
            fill(&mut log, &mut model, synced_batches, &mut rng);
            log.sync().unwrap();
            let synced = model.clone();
            fill(&mut log, &mut model, 25, &mut rng);
            drop(log);
            storage.crash();

            let mut log = reopen(&storage, config.clone());
            let end = log.log_end_offset();
            assert!(
                end >= synced.end_offset() && end <= model.end_offset(),
                "{config_name}/{synced_batches}: end {end}"
            );
            let mut survived = model.clone();
            survived.truncate_to(end);
            assert_eq!(survived.end_offset(), end, "cut on a batch boundary");
            assert_matches(&log, &survived);
            assert_every_offset_found(&log, &survived);
            let info = log.append(&mut simple_batch(2, 5), 0).unwrap();
            assert_eq!(info.base_offset, end);
        }
    }
}

#[test]
fn torn_crash_of_unsynced_tail_at_every_length() {
    let (storage, mut log) = mem_log(LogConfig::default());
    let mut model = Model::default();
    fill(&mut log, &mut model, 5, &mut Lcg(3));
    log.sync().unwrap();
    let synced = model.clone();
    fill(&mut log, &mut model, 3, &mut Lcg(4));
    drop(log);
    let unsynced: usize = model.batches[5..].iter().map(|(_, b)| b.len()).sum();
    let disk_before = storage.with_disk(|d| d.current_bytes(&log_path(0)).unwrap().to_vec());
    for keep in 0..=unsynced {
        // Rebuild the same pre-crash disk each time, then tear it at `keep` bytes.
        let storage = MemStorage::new();
        crate::storage::create_dir_all_durable(&storage, Path::new(DIR)).unwrap();
        let mut f = crate::storage::open_durable(&storage, &log_path(0)).unwrap();
        f.append(&disk_before[..disk_before.len() - unsynced])
            .unwrap();
        f.sync().unwrap();
        f.append(&disk_before[disk_before.len() - unsynced..])
            .unwrap();
        drop(f);
        storage.with_disk(|d| d.crash_with(&mut |_, _| keep));

        let mut log = reopen(&storage, LogConfig::default());
        let end = log.log_end_offset();
        let mut survived = model.clone();
        survived.truncate_to(end);
        assert!(end >= synced.end_offset());
        assert_matches(&log, &survived);
        let kept_whole: usize = survived.batches.iter().map(|(_, b)| b.len()).sum();
        assert_eq!(
            log.recovery_report().truncation.is_some(),
            kept_whole < disk_before.len() - unsynced + keep,
            "keep {keep}"
        );
        assert_eq!(
            log.append(&mut simple_batch(1, 1), 0).unwrap().base_offset,
            end
        );
    }
}

/// Cuts the last segment file at every byte of its last batch (on both storages): reopen
/// must drop exactly the partial batch and continue appending at its base offset.

#[test]
fn flipped_byte_in_the_tail_is_caught() {
    let (storage, mut log) = mem_log(LogConfig::default());
    let mut model = Model::default();
    fill(&mut log, &mut model, 4, &mut Lcg(5));
    log.sync().unwrap();
    drop(log);
    let total = storage.with_disk(|d| d.current_bytes(&log_path(0)).unwrap().len());
    let last_len = model.batches.last().unwrap().1.len();
    let last_base = model.batches.last().unwrap().0.base_offset;
    for i in 0..last_len {
        let position = (total - last_len + i) as u64;
        storage
            .with_disk(|d| d.corrupt_byte(&log_path(0), position))
            .unwrap();
        let log = reopen(&storage, LogConfig::default());
        // partition_leader_epoch (bytes 12..16) is outside the CRC, as in Kafka.
        let detectable = !(12..16).contains(&i);
        let end = if detectable {
            last_base
        } else {
            model.end_offset()
        };
        assert_eq!(
            log.log_end_offset(),
            end,
            "flipped byte {i} of the last batch"
        );
        drop(log);
        // Put the original bytes back for the next round.
        let mut f = storage.open(&log_path(0), false).unwrap();
        f.truncate((total - last_len) as u64).unwrap();
        f.append(&model.batches.last().unwrap().1).unwrap();
        f.sync().unwrap();
    }
}

#[test]
fn bad_index_files_are_rebuilt() {
    type Mangle = Box<dyn Fn(&[u8]) -> Vec<u8>>;
    let garbage: Vec<(&str, Mangle)> = vec![
        (
            "random bytes",
            Box::new(|_| (0..77u8).map(|i| i.wrapping_mul(37)).collect()),
        ),
        ("odd length", Box::new(|b| b[..b.len() - 3].to_vec())),
        (
            "entries reversed",
            Box::new(|b| b.chunks(8).rev().flatten().copied().collect()),
        ),
        (
            "last entry points mid-batch",
            Box::new(|b| {
                let mut v = b.to_vec();
                let n = v.len();
                v[n - 1] = v[n - 1].wrapping_add(1);
                v
            }),
        ),
        (
            "position past the end",
            Box::new(|b| {
                let mut v = b.to_vec();
                let n = v.len();
                v[n - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
                v
            }),
        ),
        ("empty", Box::new(|_| Vec::new())),
    ];
    for (name, mangle) in garbage {
        let config = LogConfig {
            segment_bytes: 2000,
            index_interval_bytes: 100,
            ..LogConfig::default()
        };
        let (storage, mut log) = mem_log(config.clone());
        let mut model = Model::default();
        fill(&mut log, &mut model, 60, &mut Lcg(6));
        log.sync().unwrap();
        assert!(log.segment_count() > 2);
        drop(log);
        let good = storage.with_disk(|d| d.current_bytes(&index_path(0)).unwrap().to_vec());
        assert!(good.len() >= 16, "test needs a few entries");
        overwrite(&storage, &index_path(0), &mangle(&good));

        let log = reopen(&storage, config.clone());
        let rebuilt = log.recovery_report().indexes_rebuilt;
        // An empty index is valid (just sparse); the scan then covers the whole segment.
        assert_eq!(rebuilt, usize::from(name != "empty"), "{name}");
        assert!(log.recovery_report().is_clean(), "{name}");
        assert_matches(&log, &model);
        assert_every_offset_found(&log, &model);
        let mut log = log;
        log.sync().unwrap();
        assert_eq!(
            storage.with_disk(|d| d.current_bytes(&index_path(0)).unwrap().to_vec()),
            good,
            "{name}: the rebuilt index is written back at the next sync"
        );
    }
    // A missing index is rebuilt too.
    let (storage, mut log) = mem_log(small_segments());
    let mut model = Model::default();
    fill(&mut log, &mut model, 40, &mut Lcg(7));
    log.sync().unwrap();
    drop(log);
    storage.remove_file(&index_path(0)).unwrap();
    let log = reopen(&storage, small_segments());
    assert_eq!(log.recovery_report().indexes_rebuilt, 1);
    assert_matches(&log, &model);
}

#[test]
fn truncate_to_then_append() {
    // Batches of 3 records: offsets 0-2, 3-5, ..., 27-29 over several segments.
    // (truncate offset, expected log end offset after it)
    let cases = [
        (30, 30),
        (40, 30),
        (29, 27),
        (27, 27),
        (26, 24),
        (3, 3),
        (1, 0),
        (0, 0),
    ];
    for (offset, end) in cases {
        let config = LogConfig {
            segment_bytes: 300,
            index_interval_bytes: 0,
            ..LogConfig::default()
        };
        let (storage, mut log) = mem_log(config.clone());
        let mut model = Model::default();
        for _ in 0..10 {
            let mut b = simple_batch(3, 30);
            log.append(&mut b, 0).unwrap();
            model.push(&b);
        }
        log.sync().unwrap();
        log.truncate_to(offset).unwrap();
        model.truncate_to(offset);
        assert_eq!(log.log_end_offset(), end, "truncate_to({offset})");
        assert!(log.recovery_point() <= end);
        assert_matches(&log, &model);
        let mut b = simple_batch(2, 7);
        assert_eq!(log.append(&mut b, 0).unwrap().base_offset, end);
        model.push(&b);
        assert_matches(&log, &model);
        assert_every_offset_found(&log, &model);
        // The truncation is durable: a crash brings back neither the dropped batches
        // nor (unsynced) the new one.
        drop(log);
        storage.crash();
        let log = reopen(&storage, config);
        model.truncate_to(end);
        assert_matches(&log, &model);
    }
}

#[test]
fn truncate_below_log_start_restarts_the_log_there() {
    let (storage, mut log) = mem_log(LogConfig::default());
    log.truncate_to(0).unwrap();
    log.append(&mut simple_batch(3, 1), 0).unwrap();
    // Pretend retention moved the start: restart the log at 100, then below it.
    log.truncate_fully_and_start_at(100).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 100));
    log.append(&mut simple_batch(3, 1), 0).unwrap();
    log.truncate_to(50).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (50, 50));
    assert_eq!(
        log.append(&mut simple_batch(1, 1), 0).unwrap().base_offset,
        50
    );
    log.sync().unwrap();
    drop(log);
    let log = reopen(&storage, LogConfig::default());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (50, 51));
}

#[test]
fn replicated_appends_copy_the_leader_exactly() {
    let (_s1, mut leader) = mem_log(small_segments());
    let (_s2, mut follower) = mem_log(LogConfig::default());
    let mut model = Model::default();
    fill(&mut leader, &mut model, 30, &mut Lcg(8));
    // Replicate in fetch-sized chunks, as a follower would.
    while follower.log_end_offset() < leader.log_end_offset() {
        let chunk = leader
            .read(
                follower.log_end_offset(),
                leader.log_end_offset(),
                ReadLimit::first_batch_whole(500),
            )
            .unwrap();
        let info = follower.append_replicated(&chunk, 0).unwrap();
        assert_eq!(info.last_offset + 1, follower.log_end_offset());
    }
    assert_matches(&follower, &model);
    let end = follower.log_end_offset();
    assert_eq!(
        follower.append_replicated(&[], 0).unwrap(),
        AppendInfo {
            base_offset: end,
            last_offset: end - 1
        }
    );

    // Refusals leave the log unchanged.
    let mut wrong_offset = simple_batch(1, 1);
    batch::set_base_offset(&mut wrong_offset, end + 1);
    assert!(matches!(
        follower.append_replicated(&wrong_offset, 0),
        Err(LogError::UnexpectedAppendOffset { expected, got }) if expected == end && got == end + 1
    ));
    let mut bad_crc = simple_batch(1, 10);
    batch::set_base_offset(&mut bad_crc, end);
    let n = bad_crc.len();
    bad_crc[n - 1] ^= 1;
    assert!(matches!(
        follower.append_replicated(&bad_crc, 0),
        Err(LogError::InvalidBatch(BatchError::CrcMismatch { .. }))
    ));
    let mut partial = simple_batch(1, 10);
    batch::set_base_offset(&mut partial, end);
    assert!(matches!(
        follower.append_replicated(&partial[..n - 4], 0),
        Err(LogError::InvalidBatch(BatchError::Truncated { .. }))
    ));
    assert_matches(&follower, &model);
}

#[test]
fn leader_append_refuses_malformed_batches() {
    let (_storage, mut log) = mem_log(LogConfig::default());
    let mut b = simple_batch(2, 5);
    let n = b.len();
    assert!(matches!(
        log.append(&mut b[..n - 1], 0),
        Err(LogError::InvalidBatch(_))
    ));
    assert!(log.append(&mut [0u8; 10], 0).is_err());
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
}

#[test]
fn scan_headers_visits_every_batch_from_an_offset() {
    let (_storage, mut log) = mem_log(small_segments());
    let mut model = Model::default();
    fill(&mut log, &mut model, 40, &mut Lcg(10));
    for from in [-5, 0, 1, 17, model.end_offset() - 1, model.end_offset()] {
        let mut seen = Vec::new();
        log.scan_headers(from, &mut |h| seen.push(*h)).unwrap();
        let want: Vec<BatchHeader> = model
            .batches
            .iter()
            .map(|(h, _)| *h)
            .filter(|h| h.last_offset() >= from)
            .collect();
        assert_eq!(seen, want, "from {from}");
    }
}

#[test]
fn flush_policies_decide_when_to_fsync() {
    // No policy: appends never fsync.
    let (storage, mut log) = mem_log(small_segments());
    fill(&mut log, &mut Model::default(), 30, &mut Lcg(11));
    assert_eq!(storage.stats().file_syncs, 0);
    assert_eq!(log.recovery_point(), 0);

    // flush.messages = 5: a sync once 5 offsets are unsynced.
    let (storage, mut log) = mem_log(LogConfig {
        flush_messages: Some(5),
        ..LogConfig::default()
    });
    let mut recovery_points = Vec::new();
    for _ in 0..7 {
        log.append(&mut simple_batch(2, 1), 0).unwrap();
        recovery_points.push(log.recovery_point());
    }
    assert_eq!(recovery_points, [0, 0, 6, 6, 6, 12, 12]);
    assert!(storage.stats().file_syncs > 0);

    // flush.ms = 100.
    let (_storage, mut log) = mem_log(LogConfig {
        flush_ms: Some(100),
        ..LogConfig::default()
    });
    log.append(&mut simple_batch(1, 1), 10).unwrap();
    // (now, synced?)
    let steps = [(50, false), (100, true), (150, false), (250, false)];
    for (now_ms, synced) in steps {
        assert_eq!(log.flush_if_due(now_ms).unwrap(), synced, "at {now_ms}");
    }
    log.append(&mut simple_batch(1, 1), 260).unwrap();
    assert!(!log.flush_if_due(300).unwrap());
    assert!(log.flush_if_due(350).unwrap());
    assert_eq!(log.recovery_point(), 2);
}

#[test]
fn disk_full_fails_the_append_and_leaves_the_log_intact() {
    let (storage, mut log) = mem_log(LogConfig::default());
    let mut model = Model::default();
    fill(&mut log, &mut model, 3, &mut Lcg(12));
    let used = storage.with_disk(|d| d.used_bytes());
    storage.with_disk(|d| d.set_capacity_bytes(Some(used + 10)));
    let err = log.append(&mut simple_batch(1, 100), 0).unwrap_err();
    assert!(
        matches!(&err, LogError::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull),
        "{err}"
    );
    assert_matches(&log, &model);
    storage.with_disk(|d| d.set_capacity_bytes(None));
    fill(&mut log, &mut model, 2, &mut Lcg(13));
    assert_matches(&log, &model);
}

#[test]
fn garbage_files_and_checkpoints_do_not_break_open() {
    let (storage, mut log) = mem_log(small_segments());
    let mut model = Model::default();
    fill(&mut log, &mut model, 30, &mut Lcg(14));
    log.sync().unwrap();
    drop(log);
    let dir = Path::new(DIR);
    overwrite(&storage, &dir.join(RECOVERY_POINT_FILE), b"0\n99999999");
    overwrite(&storage, &dir.join("recovery-point.tmp"), b"junk");
    overwrite(&storage, &dir.join("99999999999999999999.index"), b"x");
    overwrite(&storage, &dir.join("00000000000000000777.timeindex"), b"");
    overwrite(&storage, &dir.join("leader-epoch-checkpoint"), b"kept");
    let log = reopen(&storage, small_segments());
    let report = log.recovery_report();
    assert_eq!(report.checkpoint, None);
    assert_eq!(
        report.segments_scanned,
        log.segment_count(),
        "everything rescanned"
    );
    assert_matches(&log, &model);
    assert!(!storage.exists(&dir.join("recovery-point.tmp")));
    assert!(!storage.exists(&dir.join("00000000000000000777.timeindex")));
    assert!(storage.exists(&dir.join("leader-epoch-checkpoint")));
}

#[test]
fn a_segment_after_a_gap_is_dropped() {
    // Roll, then crash before the old segment's tail was synced: the new segment's base
    // no longer continues the old one and must go.
    let one = simple_batch(1, 50).len() as u64;
    let config = LogConfig {
        segment_bytes: one * 4,
        ..LogConfig::default()
    };
    let (storage, mut log) = mem_log(config.clone());
    for _ in 0..2 {
        log.append(&mut simple_batch(1, 50), 0).unwrap();
    }
    log.sync().unwrap();
    for _ in 0..2 {
        log.append(&mut simple_batch(1, 50), 0).unwrap();
    }
    log.append(&mut simple_batch(1, 50), 0).unwrap(); // rolls to segment 4
    assert_eq!(log.segment_count(), 2);
    // Only the new segment reaches the disk (e.g. the kernel wrote it back first, its
    // directory entry included).
    storage.sync_dir(Path::new(DIR)).unwrap();
    storage.with_disk(|d| d.crash_with(&mut |p, n| if p == log_path(4) { n } else { 0 }));
    drop(log);
    let log = reopen(&storage, config);
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(log.recovery_report().segments_deleted, vec![4]);
    assert_eq!(log.segment_count(), 1);
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: usize,
        value_bytes: usize,
    },
    Sync,
    TruncateTo(prop::sample::Index),
    /// Power loss keeping a pseudo-random part of every file's unsynced tail.
    Crash {
        torn_seed: u64,
    },
    Reopen,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..6, 0usize..200).prop_map(|(records, value_bytes)| Op::Append { records, value_bytes }),
        1 => Just(Op::Sync),
        1 => any::<prop::sample::Index>().prop_map(Op::TruncateTo),
        1 => any::<u64>().prop_map(|torn_seed| Op::Crash { torn_seed }),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random appends, syncs, truncations, torn crashes and reopens: the log always
    /// holds a prefix of what was appended, never loses what was synced, and reads back
    /// every offset.
    #[test]
    fn random_operations_with_crashes_keep_a_valid_prefix(
        ops in proptest::collection::vec(arb_op(), 1..60),
        segment_bytes in 300u64..3000,
        index_interval_bytes in 0u64..500,
    ) {
        let config = LogConfig { segment_bytes, index_interval_bytes, ..LogConfig::default() };
        let (storage, mut log) = mem_log(config.clone());
        let mut model = Model::default();
        let mut durable_end = 0;
        for op in ops {
            match op {
                Op::Append { records, value_bytes } => {
                    let mut b = simple_batch(records, value_bytes);
                    log.append(&mut b, 0).unwrap();
                    model.push(&b);
                }
                Op::Sync => {
                    log.sync().unwrap();
                    durable_end = log.log_end_offset();
                }
                Op::TruncateTo(at) => {
                    let offset = at.index(model.end_offset() as usize + 1) as i64;
                    log.truncate_to(offset).unwrap();
                    model.truncate_to(offset);
                    durable_end = durable_end.min(log.log_end_offset());
                }
                Op::Crash { torn_seed } => {
                    drop(log);
                    let mut rng = Lcg(torn_seed);
                    storage.with_disk(|d| {
                        d.crash_with(&mut |_, n| rng.below(n as u64 + 1) as usize)
                    });
                    log = reopen(&storage, config.clone());
                    let end = log.log_end_offset();
                    prop_assert!(end >= durable_end, "lost synced data: end {} < {}", end, durable_end);
                    prop_assert!(end <= model.end_offset());
                    model.truncate_to(end);
                    // What survived a crash is on the platter now.
                    durable_end = end;
                }
                Op::Reopen => {
                    drop(log);
                    log = reopen(&storage, config.clone());
                    prop_assert!(log.recovery_report().is_clean());
                }
            }
            prop_assert!(log.recovery_point() <= log.log_end_offset());
            assert_matches(&log, &model);
        }
        assert_every_offset_found(&log, &model);
    }
}
