//! Property tests: random valid histories pass every checker, and each anomaly, planted by
//! a targeted change to a valid history, is always reported.
//!
//! A valid history comes from a model: one log per partition; producers append batches
//! and get the right offsets (a failed send never lands; an unknown one may or may not);
//! consumers poll contiguous ranges from their positions, with occasional seeks; a final
//! reader reads every partition from the start. Processes interleave: each step either
//! invokes an operation for an idle process or completes the outstanding one.

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::strategy::ValueTree;

use crate::history::{Anomaly, History, Op, OpKind, Phase, Violation};

use super::testkit::{assert_report_well_formed, Case};
use super::{aborted_reads, check, failed_visible};

const TOPIC: &str = "t";
const PARTITIONS: usize = 2;
const PRODUCERS: [&str; 3] = ["p1", "p2", "p3"];
const CONSUMERS: [&str; 2] = ["c1", "c2"];
const FINAL_READER: &str = "final-reader";
/// Records a poll returns at most (the final reader's too).
const POLL_RECORDS_MAX: usize = 4;

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Ok,
    Fail,
    InfoLanded,
    InfoLost,
}

enum Outstanding {
    Send {
        invoke: usize,
        partition: usize,
        values: Vec<String>,
        outcome: Outcome,
    },
    Poll {
        invoke: usize,
        partition: usize,
        records_max: usize,
        times_out: bool,
    },
}

/// One step of the model: which process acts, and three choices it interprets.
type Step = (u8, u8, u8, u8);

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(any::<Step>(), 20..160)
}

/// Runs the model over `steps`: every producer promises order.
fn valid_case(steps: &[Step]) -> Case {
    let mut case = Case::new();
    for producer in PRODUCERS {
        case.ordered(producer);
    }
    let mut logs: Vec<Vec<String>> = vec![Vec::new(); PARTITIONS];
    let mut positions = [[0usize; PARTITIONS]; CONSUMERS.len()];
    let processes = PRODUCERS.len() + CONSUMERS.len();
    let mut outstanding: Vec<Option<Outstanding>> = (0..processes).map(|_| None).collect();
    let mut next_value = 0usize;

    for &(who, a, b, c) in steps {
        let process = who as usize % processes;
        if let Some(op) = outstanding[process].take() {
            complete(&mut case, &mut logs, &mut positions, process, op);
        } else if process < PRODUCERS.len() {
            let partition = a as usize % PARTITIONS;
            let values: Vec<String> = (0..1 + b as usize % 3)
                .map(|_| {
                    next_value += 1;
                    format!("v{next_value}")
                })
                .collect();
            let outcome = match c % 10 {
                0 => Outcome::Fail,
                1 => Outcome::InfoLanded,
                2 => Outcome::InfoLost,
                _ => Outcome::Ok,
            };
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            let invoke = case
                .send(PRODUCERS[process], TOPIC, partition as i32, &refs)
                .pending();
            outstanding[process] = Some(Outstanding::Send {
                invoke,
                partition,
                values,
                outcome,
            });
        } else {
            let consumer = process - PRODUCERS.len();
            let partition = b as usize % PARTITIONS;
            if a % 6 == 0 {
                let to = c as usize % (logs[partition].len() + 1);
                positions[consumer][partition] = to;
                case.seek(CONSUMERS[consumer], TOPIC, partition as i32, to as i64);
            } else {
                let from = positions[consumer][partition] as i64;
                let invoke = case
                    .poll(CONSUMERS[consumer], TOPIC, partition as i32, from)
                    .pending();
                outstanding[process] = Some(Outstanding::Poll {
                    invoke,
                    partition,
                    records_max: c as usize % (POLL_RECORDS_MAX + 1),
                    times_out: a % 11 == 1,
                });
            }
        }
    }
    for (process, op) in outstanding.into_iter().enumerate() {
        if let Some(op) = op {
            complete(&mut case, &mut logs, &mut positions, process, op);
        }
    }

    // The liveness phase: read everything from the start.
    for (partition, log) in logs.iter().enumerate() {
        case.seek(FINAL_READER, TOPIC, partition as i32, 0);
        let mut from = 0;
        loop {
            let records = records(log, from, POLL_RECORDS_MAX);
            let refs: Vec<(i64, &str)> = records.iter().map(|(o, v)| (*o, v.as_str())).collect();
            case.poll(FINAL_READER, TOPIC, partition as i32, from as i64)
                .ok(&refs);
            from += records.len();
            if records.is_empty() {
                break;
            }
        }
    }
    case
}

fn complete(
    case: &mut Case,
    logs: &mut [Vec<String>],
    positions: &mut [[usize; PARTITIONS]],
    process: usize,
    op: Outstanding,
) {
    match op {
        Outstanding::Send {
            invoke,
            partition,
            values,
            outcome,
        } => {
            let offset = logs[partition].len() as i64;
            if matches!(outcome, Outcome::Ok | Outcome::InfoLanded) {
                logs[partition].extend(values);
            }
            match outcome {
                Outcome::Ok => case.complete_send(invoke, Phase::Ok, Some(offset)),
                Outcome::Fail => case.complete_send(invoke, Phase::Fail, None),
                Outcome::InfoLanded | Outcome::InfoLost => {
                    case.complete_send(invoke, Phase::Info, None)
                }
            };
        }
        Outstanding::Poll {
            invoke,
            partition,
            records_max,
            times_out,
        } => {
            let consumer = process - PRODUCERS.len();
            if times_out {
                case.time_out_poll(invoke);
                return;
            }
            let from = positions[consumer][partition];
            let records = records(&logs[partition], from, records_max);
            positions[consumer][partition] += records.len();
            let refs: Vec<(i64, &str)> = records.iter().map(|(o, v)| (*o, v.as_str())).collect();
            case.complete_poll(invoke, &refs);
        }
    }
}

fn records(log: &[String], from: usize, count_max: usize) -> Vec<(i64, String)> {
    log.iter()
        .enumerate()
        .skip(from)
        .take(count_max)
        .map(|(offset, value)| (offset as i64, value.clone()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Looking things up in a generated history, independently of the checkers.

/// (invoke, ok) of every acknowledged send.
fn acked_sends(history: &History) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    for ok in history
        .ops
        .iter()
        .filter(|op| op.kind == OpKind::Send && op.phase == Phase::Ok)
    {
        let invoke = history.ops[..ok.index]
            .iter()
            .rev()
            .find(|op| op.process == ok.process && op.phase == Phase::Invoke)
            .expect("every completion has its invoke");
        pairs.push((invoke.index, ok.index));
    }
    pairs
}

/// (send ok, partition, offset, value) of every acknowledged record.
fn acked_records(history: &History) -> Vec<(usize, i32, i64, String)> {
    let mut out = Vec::new();
    for (_, ok) in acked_sends(history) {
        let op = &history.ops[ok];
        for (i, value) in op.values.iter().enumerate() {
            out.push((
                ok,
                op.partition,
                op.offset.unwrap() + i as i64,
                value.clone(),
            ));
        }
    }
    out
}

fn reads(history: &History) -> impl Iterator<Item = &Op> {
    history
        .ops
        .iter()
        .filter(|op| op.kind == OpKind::Poll && op.phase == Phase::Ok)
}

fn reads_mut(history: &mut History) -> impl Iterator<Item = &mut Op> {
    history
        .ops
        .iter_mut()
        .filter(|op| op.kind == OpKind::Poll && op.phase == Phase::Ok)
}

/// (previous, next) non-empty polls of one process and partition with no seek between.
fn consecutive_polls(history: &History) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    for (i, next) in history.ops.iter().enumerate() {
        if next.kind != OpKind::Poll || next.phase != Phase::Ok || next.records.is_empty() {
            continue;
        }
        let same = |op: &&Op| op.process == next.process && op.partition == next.partition;
        let before = history.ops[..i].iter().rev().filter(same).find(|op| {
            op.kind == OpKind::Seek
                || (op.kind == OpKind::Poll && op.phase == Phase::Ok && !op.records.is_empty())
        });
        if let Some(previous) = before.filter(|op| op.kind == OpKind::Poll) {
            pairs.push((previous.index, next.index));
        }
    }
    pairs
}

fn pick<T: Clone>(items: &[T], choice: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[choice % items.len()].clone())
}

/// Checks `case` and asserts that the report contains a violation of `anomaly` that
/// `shows` accepts, and only anomalies of `allowed`.
fn assert_found(
    case: &Case,
    anomaly: Anomaly,
    allowed: &[Anomaly],
    shows: impl Fn(&Violation) -> bool,
) -> Result<(), TestCaseError> {
    let found = check(&case.history, &case.options);
    assert_report_well_formed(case, &found);
    prop_assert!(
        found.iter().any(|v| v.anomaly == anomaly && shows(v)),
        "{} not reported: {found:#?}",
        anomaly.name()
    );
    prop_assert!(
        found.iter().all(|v| allowed.contains(&v.anomaly)),
        "unexpected anomalies: {found:#?}"
    );
    Ok(())
}

proptest! {
    #[test]
    fn valid_histories_pass(steps in steps()) {
        let case = valid_case(&steps);
        let found = check(&case.history, &case.options);
        prop_assert!(found.is_empty(), "{found:#?}");
    }

    /// Drop an acknowledged record from every read; make a read go past it if none does.
    #[test]
    fn a_record_gone_from_every_read_is_lost(steps in steps(), choice: usize) {
        let mut case = valid_case(&steps);
        let records = acked_records(&case.history);
        let Some((send, partition, offset, value)) = pick(&records, choice) else {
            return Ok(());
        };
        for read in reads_mut(&mut case.history).filter(|op| op.partition == partition) {
            read.records.retain(|(o, v)| (*o, v) != (offset, &value));
        }
        let passed = reads(&case.history)
            .any(|op| op.partition == partition && op.records.iter().any(|(o, _)| *o > offset));
        if !passed {
            let last = reads_mut(&mut case.history)
                .filter(|op| op.partition == partition && op.process == FINAL_READER)
                .last()
                .expect("the final reader polls every partition");
            last.records.push((offset + 1, "planted".to_string()));
        }
        assert_found(&case, Anomaly::LostWrite, &[Anomaly::LostWrite], |v| v.ops[0] == send)?;
    }

    /// Remove an acknowledged record, and every offset after it, from every read.
    #[test]
    fn a_record_no_read_reaches_is_unseen(steps in steps(), choice: usize) {
        let mut case = valid_case(&steps);
        let records = acked_records(&case.history);
        let Some((send, partition, offset, _)) = pick(&records, choice) else {
            return Ok(());
        };
        for read in reads_mut(&mut case.history).filter(|op| op.partition == partition) {
            read.records.retain(|(o, _)| *o < offset);
        }
        assert_found(&case, Anomaly::Unseen, &[Anomaly::Unseen], |v| v.ops[0] == send)?;
    }

    /// Make the final reader see a record again at a new offset past the end.
    #[test]
    fn a_record_at_a_second_offset_is_a_duplicate(steps in steps(), choice: usize) {
        let mut case = valid_case(&steps);
        let seen: Vec<(i32, String)> = reads(&case.history)
            .flat_map(|op| op.records.iter().map(|(_, v)| (op.partition, v.clone())))
            .collect();
        let Some((partition, value)) = pick(&seen, choice) else {
            return Ok(());
        };
        let end = reads(&case.history)
            .filter(|op| op.partition == partition)
            .flat_map(|op| op.records.iter().map(|(o, _)| o + 1))
            .max()
            .unwrap_or(0);
        let last = reads_mut(&mut case.history)
            .filter(|op| op.partition == partition && op.process == FINAL_READER)
            .last()
            .expect("the final reader polls every partition");
        last.records.push((end, value));
        let poll = last.index;
        assert_found(&case, Anomaly::Duplicate, &[Anomaly::Duplicate], |v| v.ops.contains(&poll))?;
    }

    /// Change the value at one offset in one consumer's read (the final reader still has
    /// the original). An acknowledged record replaced there is a lost write too.
    #[test]
    fn another_value_at_a_read_offset_is_inconsistent(steps in steps(), choice: usize) {
        let mut case = valid_case(&steps);
        let candidates: Vec<(usize, usize)> = reads(&case.history)
            .filter(|op| op.process != FINAL_READER)
            .flat_map(|op| (0..op.records.len()).map(move |i| (op.index, i)))
            .collect();
        let Some((poll, at)) = pick(&candidates, choice) else {
            return Ok(());
        };
        case.history.ops[poll].records[at].1 = "planted".to_string();
        assert_found(
            &case,
            Anomaly::InconsistentOffsets,
            &[Anomaly::InconsistentOffsets, Anomaly::LostWrite],
            |v| v.ops.contains(&poll),
        )?;
    }

    /// Swap the batches (values and acknowledged offsets) of two acknowledged sends of one
    /// ordered producer to one partition: the log and the reads stay as they were, and the
    /// earlier send now holds the later offsets.
    #[test]
    fn swapped_acknowledgements_are_nonmonotonic(steps in steps(), choice: usize) {
        let mut case = valid_case(&steps);
        let sends = acked_sends(&case.history);
        let ops = &case.history.ops;
        let pairs: Vec<((usize, usize), (usize, usize))> = sends
            .iter()
            .enumerate()
            .flat_map(|(i, a)| sends[i + 1..].iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| {
                ops[a.1].process == ops[b.1].process && ops[a.1].partition == ops[b.1].partition
            })
            .collect();
        let Some(((earlier_invoke, earlier_ok), (later_invoke, later_ok))) = pick(&pairs, choice) else {
            return Ok(());
        };
        let ops = &mut case.history.ops;
        let earlier = (ops[earlier_ok].values.clone(), ops[earlier_ok].offset);
        let later = (ops[later_ok].values.clone(), ops[later_ok].offset);
        ops[earlier_invoke].values = later.0.clone();
        (ops[earlier_ok].values, ops[earlier_ok].offset) = later;
        ops[later_invoke].values = earlier.0.clone();
        (ops[later_ok].values, ops[later_ok].offset) = earlier;
        assert_found(
            &case,
            Anomaly::NonmonotonicSend,
            &[Anomaly::NonmonotonicSend],
            |v| v.ops[0] == later_ok,
        )?;
        // Without the promise of order, the same history passes.
        case.options.producers_ordered.clear();
        let found = check(&case.history, &case.options);
        prop_assert!(found.is_empty(), "{found:#?}");
    }

    /// Make a poll start with the record its predecessor ended on.
    #[test]
    fn a_poll_repeating_the_last_offset_is_nonmonotonic(steps in steps(), choice: usize) {
        let mut case = valid_case(&steps);
        let Some((previous, next)) = pick(&consecutive_polls(&case.history), choice) else {
            return Ok(());
        };
        let repeated = case.history.ops[previous].records.last().unwrap().clone();
        case.history.ops[next].records.insert(0, repeated);
        assert_found(
            &case,
            Anomaly::NonmonotonicPoll,
            &[Anomaly::NonmonotonicPoll],
            |v| v.ops == [next, previous],
        )?;
    }

    /// Drop the first record of a poll (of two or more) that continued its predecessor,
    /// when another read returned that record.
    #[test]
    fn a_poll_passing_over_an_offset_read_elsewhere_skips(steps in steps(), choice: usize) {
        let mut case = valid_case(&steps);
        let history = &case.history;
        let candidates: Vec<(usize, usize)> = consecutive_polls(history)
            .into_iter()
            .filter(|&(_, next)| {
                let records = &history.ops[next].records;
                records.len() >= 2
                    && reads(history).any(|op| {
                        op.index != next
                            && op.partition == history.ops[next].partition
                            && op.records.contains(&records[0])
                    })
            })
            .collect();
        let Some((previous, next)) = pick(&candidates, choice) else {
            return Ok(());
        };
        case.history.ops[next].records.remove(0);
        assert_found(
            &case,
            Anomaly::PollSkip,
            &[Anomaly::PollSkip],
            |v| v.ops[..2] == [next, previous],
        )?;
    }

    /// Declare the records of one read aborted: every poll that returned one is reported.
    #[test]
    fn reads_of_aborted_records_are_reported(steps in steps(), choice: usize) {
        let case = valid_case(&steps);
        let seen: Vec<String> = reads(&case.history)
            .flat_map(|op| op.records.iter().map(|(_, v)| v.clone()))
            .collect();
        let Some(value) = pick(&seen, choice) else {
            return Ok(());
        };
        let aborted: BTreeSet<String> = [value.clone()].into();
        let expected: Vec<usize> = reads(&case.history)
            .filter(|op| op.records.iter().any(|(_, v)| *v == value))
            .map(|op| op.index)
            .collect();
        let found = aborted_reads(&case.history, &aborted);
        prop_assert!(found.iter().all(|v| v.anomaly == Anomaly::AbortedRead));
        prop_assert_eq!(found.iter().map(|v| v.ops[0]).collect::<Vec<_>>(), expected);
    }
}

proptest! {
    /// Turn the acknowledgement of a send whose records were read into a definite failure:
    /// every poll that returned one of its records is reported as failed-visible, and a
    /// valid history (no failed send read) reports none.
    #[test]
    fn reads_of_definitely_failed_sends_are_reported(steps in steps(), choice: usize) {
        let mut case = valid_case(&steps);
        prop_assert!(failed_visible(&case.history).is_empty());
        let seen: BTreeSet<String> = reads(&case.history)
            .flat_map(|op| op.records.iter().map(|(_, v)| v.clone()))
            .collect();
        let sends: Vec<usize> = case
            .history
            .ops
            .iter()
            .filter(|op| op.kind == OpKind::Send && op.phase == Phase::Ok)
            .filter(|op| op.values.iter().any(|v| seen.contains(v)))
            .map(|op| op.index)
            .collect();
        let Some(send) = pick(&sends, choice) else {
            return Ok(());
        };
        case.history.ops[send].phase = Phase::Fail;
        case.history.ops[send].offset = None;
        let values: BTreeSet<String> = case.history.ops[send].values.iter().cloned().collect();
        let expected: Vec<usize> = reads(&case.history)
            .filter(|op| op.records.iter().any(|(_, v)| values.contains(v)))
            .map(|op| op.index)
            .collect();
        let found = failed_visible(&case.history);
        prop_assert!(found.iter().all(|v| v.anomaly == Anomaly::FailedVisible));
        prop_assert_eq!(found.iter().map(|v| v.ops[0]).collect::<Vec<_>>(), expected);
    }
}

/// The model must give the plantings something to plant in: most histories have
/// acknowledged records, consecutive polls, and two acknowledged sends of one producer to
/// one partition.
#[test]
fn the_model_gives_plantings_material() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = steps();
    let (mut acked, mut consecutive, mut ordered_pairs) = (0, 0, 0);
    let runs = 100;
    for _ in 0..runs {
        let steps = strategy.new_tree(&mut runner).unwrap().current();
        let case = valid_case(&steps);
        acked += usize::from(!acked_records(&case.history).is_empty());
        consecutive += usize::from(
            consecutive_polls(&case.history)
                .iter()
                .any(|&(_, next)| case.history.ops[next].process != FINAL_READER),
        );
        let sends = acked_sends(&case.history);
        let same: BTreeSet<(String, i32)> = sends
            .iter()
            .map(|&(_, ok)| {
                (
                    case.history.ops[ok].process.clone(),
                    case.history.ops[ok].partition,
                )
            })
            .collect();
        ordered_pairs += usize::from(same.len() < sends.len());
    }
    assert!(
        acked >= 90,
        "{acked} of {runs} histories have acknowledged records"
    );
    assert!(
        consecutive >= 70,
        "{consecutive} of {runs} have consumer poll pairs"
    );
    assert!(
        ordered_pairs >= 70,
        "{ordered_pairs} of {runs} have two sends of one producer to one partition"
    );
}
