//! duplicate and inconsistent-offsets: one record at two offsets, two records at one
//! offset.
//!
//! Values are unique per produced record, so a value read at two positions (of any
//! partitions) is one record stored twice, and a value that appears in two sends (or
//! twice in one batch) was produced twice. Two values read at one offset of a partition
//! mean the replicas disagree, or committed data was truncated and overwritten.

use crate::history::{Anomaly, History, Violation};

use super::index::{Index, Send, ValueId};
use super::{key_name, list, sort_violations, time, violation};

/// Values read at more than one (partition, offset), and values sent more than once. One
/// violation per value; ops: the first read at each position (in history order), or each
/// send's invoke.
pub fn duplicates(history: &History) -> Vec<Violation> {
    let mut violations = duplicates_in(&Index::new(history));
    sort_violations(&mut violations);
    violations
}

/// Offsets of a partition read with more than one value. One violation per offset; ops:
/// the first read of each value, in history order.
pub fn inconsistent_offsets(history: &History) -> Vec<Violation> {
    let mut violations = inconsistent_offsets_in(&Index::new(history));
    sort_violations(&mut violations);
    violations
}

pub(crate) fn duplicates_in(index: &Index<'_>) -> Vec<Violation> {
    let mut violations = Vec::new();

    // Read at several positions. The order of values does not matter: the caller sorts
    // the violations, and that order is total.
    for (id, value) in index.values.iter().enumerate() {
        let run = index.positions_of_id(id as ValueId);
        if run.len() < 2 {
            continue;
        }
        let mut by_time = run.to_vec();
        by_time.sort_by_key(|p| p.read.index);
        let message = format!(
            "record {} was read at {} positions: {}",
            value,
            run.len(),
            list(by_time.iter().map(|p| format!(
                "{} offset {} ({} at {})",
                key_name(p.key),
                p.offset,
                p.read.process,
                time(p.read.time_ns)
            )))
        );
        let ops = by_time.iter().map(|p| p.read.index).collect();
        violations.push(violation(Anomaly::Duplicate, by_time[0].key, message, ops));
    }

    // Sent several times: every (value, send) pair of a value sent more than once, sorted
    // by value id then send order.
    let mut times = vec![0u32; index.values.len()];
    for send in &index.sends {
        for &id in index.ids_of(send) {
            times[id as usize] += 1;
        }
    }
    let mut sent: Vec<(ValueId, usize)> = index
        .sends
        .iter()
        .enumerate()
        .flat_map(|(at, send)| {
            index
                .ids_of(send)
                .iter()
                .filter(|&&id| times[id as usize] > 1)
                .map(move |&id| (id, at))
        })
        .collect();
    sent.sort_unstable();
    for run in sent.chunk_by(|a, b| a.0 == b.0) {
        if run.len() < 2 {
            continue;
        }
        let sends: Vec<&Send<'_>> = run.iter().map(|&(_, at)| &index.sends[at]).collect();
        let message = format!(
            "value {} was sent {} times: {}; each produced record needs a unique value",
            index.values[run[0].0 as usize],
            run.len(),
            list(sends.iter().map(|send| format!(
                "by {} to {} at {}",
                send.process(),
                key_name(send.key()),
                time(send.first().time_ns)
            )))
        );
        let ops = sends.iter().map(|send| send.first().index).collect();
        violations.push(violation(Anomaly::Duplicate, sends[0].key(), message, ops));
    }
    violations
}

pub(crate) fn inconsistent_offsets_in(index: &Index<'_>) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (&key, reads) in &index.reads {
        for run in reads.seen.chunk_by(|a, b| a.offset == b.offset) {
            if run.len() < 2 {
                continue;
            }
            let mut by_time = run.to_vec();
            by_time.sort_by_key(|s| s.read.index);
            let message = format!(
                "{} offset {} was read with {} different records: {}",
                key_name(key),
                run[0].offset,
                run.len(),
                list(by_time.iter().map(|s| format!(
                    "{} ({} at {})",
                    s.value,
                    s.read.process,
                    time(s.read.time_ns)
                )))
            );
            let ops = by_time.iter().map(|s| s.read.index).collect();
            violations.push(violation(Anomaly::InconsistentOffsets, key, message, ops));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{check_case, Case};
    use super::*;

    #[test]
    fn rereading_the_same_records_is_no_duplicate() {
        let mut h = Case::new();
        h.send("p1", "t", 0, &["a", "b"]).ok(0);
        h.send("p1", "t", 1, &["c"]).ok(0);
        h.poll("c1", "t", 0, 0).ok(&[(0, "a"), (1, "b")]);
        h.seek("c1", "t", 0, 0);
        h.poll("c1", "t", 0, 0).ok(&[(0, "a"), (1, "b")]);
        h.poll("c2", "t", 1, 0).ok(&[(0, "c")]);
        h.poll("final-reader", "t", 0, 0).ok(&[(0, "a"), (1, "b")]);
        h.poll("final-reader", "t", 1, 0).ok(&[(0, "c")]);
        check_case(&h, &[]);
    }

    #[test]
    fn a_retried_batch_appended_twice_is_a_duplicate() {
        let mut h = Case::new();
        h.send("p1", "t", 0, &["a"]).ok(1);
        let first = h.poll("c1", "t", 0, 0).ok(&[(0, "a"), (1, "a")]);
        let found = duplicates(&h.history);
        assert_eq!(
            found[0].message,
            "record a was read at 2 positions: t/0 offset 0 (c1 at t=0.004s) and t/0 offset 1 \
             (c1 at t=0.004s)"
        );
        check_case(&h, &[(Anomaly::Duplicate, &[first.done])]);
    }

    #[test]
    fn a_record_in_two_partitions_is_a_duplicate() {
        let mut h = Case::new();
        h.send("p1", "t", 0, &["a"]).info();
        let r1 = h.poll("c1", "t", 1, 0).ok(&[(4, "a")]);
        let r0 = h.poll("c2", "t", 0, 0).ok(&[(4, "a")]);
        check_case(&h, &[(Anomaly::Duplicate, &[r1.done, r0.done])]);
        assert_eq!(duplicates(&h.history)[0].partition, 1);
    }

    #[test]
    fn a_value_sent_twice_is_a_duplicate() {
        let mut h = Case::new();
        let once = h.send("p1", "t", 0, &["a", "b"]).ok(0);
        let twice = h.send("p2", "t", 1, &["a"]).fail();
        h.poll("c1", "t", 0, 0).ok(&[(0, "a"), (1, "b")]);
        let found = duplicates(&h.history);
        assert_eq!(
            found[0].message,
            "value a was sent 2 times: by p1 to t/0 at t=0.001s and by p2 to t/1 at t=0.003s; \
             each produced record needs a unique value"
        );
        check_case(&h, &[(Anomaly::Duplicate, &[once.invoke, twice.invoke])]);
    }

    #[test]
    fn two_values_at_one_offset_are_inconsistent() {
        let mut h = Case::new();
        let r1 = h.poll("c1", "t", 0, 0).ok(&[(0, "a"), (1, "b")]);
        let r2 = h.poll("c2", "t", 0, 0).ok(&[(0, "a"), (1, "x")]);
        let r3 = h.poll("c3", "t", 0, 1).ok(&[(1, "y")]);
        let found = inconsistent_offsets(&h.history);
        assert_eq!(
            found[0].message,
            "t/0 offset 1 was read with 3 different records: b (c1 at t=0.002s), x (c2 at \
             t=0.004s) and y (c3 at t=0.006s)"
        );
        check_case(
            &h,
            &[(Anomaly::InconsistentOffsets, &[r1.done, r2.done, r3.done])],
        );
    }

    #[test]
    fn one_read_with_two_values_at_one_offset_is_inconsistent() {
        let mut h = Case::new();
        let r = h.poll("c1", "t", 0, 0).ok(&[(0, "a"), (0, "b")]);
        // The poll also goes backwards within itself (0 after 0).
        check_case(
            &h,
            &[
                (Anomaly::InconsistentOffsets, &[r.done]),
                (Anomaly::NonmonotonicPoll, &[r.done]),
            ],
        );
    }
}
