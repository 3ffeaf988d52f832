//! nonmonotonic-send, nonmonotonic-poll and poll-skip: the order of one producer's
//! acknowledgements, and of one consumer's reads, on one partition.
//!
//! Sends are ordered by invoke, then by position in the batch; a producer whose
//! configuration promises order must see strictly increasing acknowledged offsets.
//! Polls are compared with the process's previous non-empty poll of the same partition
//! since its last seek there: the next one must start after the previous one ended, and
//! must not skip an offset that some read returned. Offsets no read returned are not
//! skips: compaction and transaction markers leave real gaps.

use std::collections::BTreeSet;

use crate::history::{Anomaly, History, Op, OpKind, Phase, Violation};

use super::index::{is_read, key_of, Index, Lanes};
use super::{key_name, list, sort_violations, time, violation};

/// For each process in `producers_ordered` and each partition: an acknowledged send whose
/// first offset is at or below the highest offset acknowledged to an earlier send. Sends
/// that failed or are unknown are skipped. One violation per out-of-order send; ops: its
/// completion, the earlier send's completion, then their invokes.
pub fn nonmonotonic_sends(
    history: &History,
    producers_ordered: &BTreeSet<String>,
) -> Vec<Violation> {
    let mut violations = nonmonotonic_sends_in(&Index::new(history), producers_ordered);
    sort_violations(&mut violations);
    violations
}

/// A poll whose records do not go strictly up, and a poll that starts at or before the
/// offset where the same process's previous non-empty poll of that partition ended, with
/// no seek between. Ops: the poll, then the previous poll.
pub fn nonmonotonic_polls(history: &History) -> Vec<Violation> {
    let steps = consecutive_polls(history, &Lanes::new(history));
    let mut violations = nonmonotonic_polls_in(history, &steps);
    sort_violations(&mut violations);
    violations
}

/// [`nonmonotonic_polls`], unsorted, with the [`consecutive_polls`] of `history`.
pub(crate) fn nonmonotonic_polls_in(history: &History, steps: &[PollStep<'_>]) -> Vec<Violation> {
    let mut violations = Vec::new();
    for poll in history.ops.iter().filter(|op| is_read(op)) {
        let backwards = poll.records.windows(2).find(|pair| pair[1].0 <= pair[0].0);
        if let Some([(before, _), (after, _)]) = backwards {
            let message = format!(
                "{}'s poll of {} at {} returned offset {after} after offset {before}",
                poll.process,
                key_name(key_of(poll)),
                time(poll.time_ns)
            );
            violations.push(violation(
                Anomaly::NonmonotonicPoll,
                key_of(poll),
                message,
                vec![poll.index],
            ));
        }
    }
    for step in steps {
        if step.next_first > step.previous_last {
            continue;
        }
        let message = format!(
            "{}, then its next poll at {} started at offset {}, not after it, with no seek \
             between",
            step.previous_phrase(),
            time(step.next.time_ns),
            step.next_first
        );
        violations.push(violation(
            Anomaly::NonmonotonicPoll,
            key_of(step.next),
            message,
            vec![step.next.index, step.previous.index],
        ));
    }
    violations
}

/// Consecutive polls (as for [`nonmonotonic_polls`]) where the next starts more than one
/// offset after the previous ended and some read returned an offset between them. Ops:
/// the poll, the previous poll, and the first read of the first skipped offset.
pub fn poll_skips(history: &History) -> Vec<Violation> {
    let index = Index::new(history);
    let mut violations = poll_skips_in(&index, &consecutive_polls(history, &index.lanes));
    sort_violations(&mut violations);
    violations
}

pub(crate) fn nonmonotonic_sends_in(
    index: &Index<'_>,
    producers_ordered: &BTreeSet<String>,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    // Per lane (process and partition): whether the process promises order, once looked
    // up, and the highest offset acknowledged so far, with its send.
    let mut ordered: Vec<Option<bool>> = vec![None; index.lanes.len()];
    let mut highest: Vec<Option<(i64, usize)>> = vec![None; index.lanes.len()];
    for (at, send) in index.sends.iter().enumerate() {
        let (Some(first), Some(ack)) = (send.acked_offset(), send.ack()) else {
            continue;
        };
        let values = send.values();
        let lane = send.lane as usize;
        let promises = *ordered[lane]
            .get_or_insert_with(|| producers_ordered.contains(index.lanes.lanes[lane].0));
        if values.is_empty() || !promises {
            continue;
        }
        let last = first + values.len() as i64 - 1;
        let slot = &mut highest[lane];
        let Some((before, earlier_at)) = *slot else {
            *slot = Some((last, at));
            continue;
        };
        if last > before {
            *slot = Some((last, at));
        }
        if first > before {
            continue;
        }
        let earlier = &index.sends[earlier_at];
        let earlier_first = earlier
            .acked_offset()
            .expect("only acknowledged sends are kept");
        let earlier_value = &earlier.values()[(before - earlier_first) as usize];
        let message = format!(
            "{} sent {} to {} at {}, after sending {} at {}, but {} was acknowledged at offset \
             {first} ({}), not after {}'s offset {before}",
            send.process(),
            values[0],
            key_name(send.key()),
            time(send.first().time_ns),
            earlier_value,
            time(earlier.first().time_ns),
            values[0],
            time(ack.time_ns),
            earlier_value,
        );
        let mut ops = vec![ack.index];
        ops.extend(earlier.ack().map(|op| op.index));
        ops.extend(send.invoke.map(|op| op.index));
        ops.extend(earlier.invoke.map(|op| op.index));
        violations.push(violation(
            Anomaly::NonmonotonicSend,
            send.key(),
            message,
            ops,
        ));
    }
    violations
}

pub(crate) fn poll_skips_in(index: &Index<'_>, steps: &[PollStep<'_>]) -> Vec<Violation> {
    let mut violations = Vec::new();
    for step in steps {
        if step.next_first <= step.previous_last + 1 {
            continue;
        }
        let key = key_of(step.next);
        let Some(reads) = index.reads.get(&key) else {
            continue;
        };
        let skipped = reads.offsets_between(step.previous_last, step.next_first);
        let Some(&(first_skipped, witness)) = skipped.first() else {
            continue;
        };
        let message = format!(
            "{}, then its next poll at {} started at offset {} with no seek between, skipping \
             offsets that exist: {} ({} read offset {first_skipped} at {})",
            step.previous_phrase(),
            time(step.next.time_ns),
            step.next_first,
            list(skipped.iter().map(|(offset, _)| offset.to_string())),
            witness.process,
            time(witness.time_ns)
        );
        violations.push(violation(
            Anomaly::PollSkip,
            key,
            message,
            vec![step.next.index, step.previous.index, witness.index],
        ));
    }
    violations
}

/// A non-empty poll and the same process's previous non-empty poll of the same partition,
/// with no seek of that partition by that process between them.
pub(crate) struct PollStep<'a> {
    previous: &'a Op,
    /// The last offset the previous poll returned.
    previous_last: i64,
    next: &'a Op,
    /// The first offset the next poll returned.
    next_first: i64,
}

impl PollStep<'_> {
    fn previous_phrase(&self) -> String {
        format!(
            "{} polled {} up to offset {} at {}",
            self.previous.process,
            key_name(key_of(self.previous)),
            self.previous_last,
            time(self.previous.time_ns)
        )
    }
}

/// Every [`PollStep`], in history order. A seek (of any outcome: a failed one may still
/// have moved the client) ends the comparison; polls that returned nothing, failed or
/// timed out do not.
pub(crate) fn consecutive_polls<'a>(history: &'a History, lanes: &Lanes<'a>) -> Vec<PollStep<'a>> {
    // Per lane (process and partition): its previous non-empty poll, and where it ended.
    let mut previous: Vec<Option<(&Op, i64)>> = vec![None; lanes.len()];
    let mut steps = Vec::new();
    for (op, lane) in lanes.ops(history) {
        match (op.kind, op.phase) {
            (OpKind::Seek, phase) if phase != Phase::Invoke => {
                previous[lane] = None;
            }
            (OpKind::Poll, Phase::Ok) => {
                let (Some(&(next_first, _)), Some(&(next_last, _))) =
                    (op.records.first(), op.records.last())
                else {
                    continue;
                };
                if let Some((previous, previous_last)) = previous[lane].replace((op, next_last)) {
                    steps.push(PollStep {
                        previous,
                        previous_last,
                        next: op,
                        next_first,
                    });
                }
            }
            _ => {}
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{check_case, Case};
    use super::*;

    #[test]
    fn ordered_producer_with_increasing_offsets_passes() {
        let mut h = Case::new();
        h.ordered("p1");
        h.send("p1", "t", 0, &["a", "b"]).ok(0);
        h.send("p1", "t", 0, &["c"]).info();
        h.send("p1", "t", 0, &["d"]).fail();
        h.send("p1", "t", 1, &["e"]).ok(0);
        h.send("p1", "t", 0, &["f"]).ok(5);
        h.poll("final-reader", "t", 0, 0)
            .ok(&[(0, "a"), (1, "b"), (5, "f")]);
        h.poll("final-reader", "t", 1, 0).ok(&[(0, "e")]);
        check_case(&h, &[]);
    }

    #[test]
    fn ordered_producer_acknowledged_lower_is_nonmonotonic() {
        let mut h = Case::new();
        h.ordered("p1");
        let earlier = h.send("p1", "t", 0, &["a", "b"]).ok(3);
        let later = h.send("p1", "t", 0, &["c"]).ok(1);
        // A later send above the highest acknowledged offset is back in order.
        h.send("p1", "t", 0, &["d"]).ok(5);
        h.poll("final-reader", "t", 0, 0)
            .ok(&[(1, "c"), (3, "a"), (4, "b"), (5, "d")]);
        let found = nonmonotonic_sends(&h.history, &h.options.producers_ordered);
        assert_eq!(
            found[0].message,
            "p1 sent c to t/0 at t=0.003s, after sending b at t=0.001s, but c was acknowledged \
             at offset 1 (t=0.004s), not after b's offset 4"
        );
        check_case(
            &h,
            &[(
                Anomaly::NonmonotonicSend,
                &[later.done, earlier.done, later.invoke, earlier.invoke],
            )],
        );
    }

    #[test]
    fn producers_not_promising_order_may_reorder() {
        let mut h = Case::new();
        h.ordered("p2");
        h.send("p1", "t", 0, &["a"]).ok(3);
        h.send("p1", "t", 0, &["c"]).ok(1);
        h.poll("final-reader", "t", 0, 0).ok(&[(1, "c"), (3, "a")]);
        check_case(&h, &[]);
    }

    #[test]
    fn the_same_offset_twice_is_not_increasing() {
        let mut h = Case::new();
        h.ordered("p1");
        let earlier = h.send("p1", "t", 0, &["a"]).ok(3);
        let later = h.send("p1", "t", 0, &["b"]).ok(3);
        let read = h.poll("final-reader", "t", 0, 0).ok(&[(3, "a")]);
        check_case(
            &h,
            &[
                (
                    Anomaly::NonmonotonicSend,
                    &[later.done, earlier.done, later.invoke, earlier.invoke],
                ),
                (Anomaly::LostWrite, &[later.done, later.invoke, read.done]),
            ],
        );
    }

    #[test]
    fn contiguous_polls_with_seeks_and_empty_polls_pass() {
        let mut h = Case::new();
        h.poll("c1", "t", 0, 0).ok(&[(0, "a"), (1, "b")]);
        h.poll("c1", "t", 0, 2).ok(&[]);
        h.poll("c1", "t", 0, 2).info();
        h.poll("c1", "t", 1, 0).ok(&[(0, "x")]);
        h.poll("c1", "t", 0, 2).ok(&[(2, "c")]);
        h.seek("c1", "t", 0, 0);
        h.poll("c1", "t", 0, 0).ok(&[(0, "a")]);
        h.seek("c1", "t", 0, 3);
        h.poll("c1", "t", 0, 3).ok(&[(3, "d")]);
        // Another process reading the same offsets is no regression.
        h.poll("c2", "t", 0, 0)
            .ok(&[(0, "a"), (1, "b"), (2, "c"), (3, "d")]);
        check_case(&h, &[]);
    }

    #[test]
    fn a_poll_at_or_before_the_previous_end_is_nonmonotonic() {
        let mut h = Case::new();
        let previous = h.poll("c1", "t", 0, 0).ok(&[(0, "a"), (1, "b")]);
        h.poll("c1", "t", 0, 2).ok(&[]);
        let next = h.poll("c1", "t", 0, 1).ok(&[(1, "b"), (2, "c")]);
        let found = nonmonotonic_polls(&h.history);
        assert_eq!(
            found[0].message,
            "c1 polled t/0 up to offset 1 at t=0.002s, then its next poll at t=0.006s started \
             at offset 1, not after it, with no seek between"
        );
        check_case(
            &h,
            &[(Anomaly::NonmonotonicPoll, &[next.done, previous.done])],
        );
    }

    #[test]
    fn a_poll_going_backwards_within_itself_is_nonmonotonic() {
        let mut h = Case::new();
        let poll = h.poll("c1", "t", 0, 0).ok(&[(0, "a"), (2, "c"), (1, "b")]);
        let found = nonmonotonic_polls(&h.history);
        assert_eq!(
            found[0].message,
            "c1's poll of t/0 at t=0.002s returned offset 1 after offset 2"
        );
        check_case(&h, &[(Anomaly::NonmonotonicPoll, &[poll.done])]);
    }

    #[test]
    fn gaps_no_read_returned_are_not_skips() {
        let mut h = Case::new();
        h.poll("c1", "t", 0, 0).ok(&[(0, "a"), (1, "b")]);
        // Offsets 2 and 3 are a compacted gap or transaction markers: nobody saw them.
        h.poll("c1", "t", 0, 2).ok(&[(4, "e")]);
        // Another partition's offset 2 does not matter.
        h.poll("c2", "t", 1, 0).ok(&[(2, "x")]);
        h.poll("final-reader", "t", 0, 0)
            .ok(&[(0, "a"), (1, "b"), (4, "e")]);
        check_case(&h, &[]);
    }

    #[test]
    fn skipping_an_offset_some_read_returned_is_a_skip() {
        let mut h = Case::new();
        let previous = h.poll("c1", "t", 0, 0).ok(&[(0, "a"), (1, "b")]);
        h.poll("c1", "t", 0, 2).ok(&[]);
        let next = h.poll("c1", "t", 0, 2).ok(&[(4, "e")]);
        let witness = h.poll("c2", "t", 0, 2).ok(&[(3, "d"), (4, "e")]);
        let found = poll_skips(&h.history);
        assert_eq!(
            found[0].message,
            "c1 polled t/0 up to offset 1 at t=0.002s, then its next poll at t=0.006s started \
             at offset 4 with no seek between, skipping offsets that exist: 3 (c2 read offset \
             3 at t=0.008s)"
        );
        check_case(
            &h,
            &[(Anomaly::PollSkip, &[next.done, previous.done, witness.done])],
        );
    }

    #[test]
    fn a_seek_makes_a_jump_no_skip() {
        let mut h = Case::new();
        h.poll("c1", "t", 0, 0).ok(&[(0, "a")]);
        h.seek("c1", "t", 0, 5);
        h.poll("c1", "t", 0, 5).ok(&[(5, "f")]);
        h.seek("c1", "t", 0, 0);
        h.poll("c1", "t", 0, 0).ok(&[(0, "a")]);
        // A seek of another partition, or by another process, does not reset.
        h.seek("c1", "t", 1, 9);
        h.seek("c2", "t", 0, 9);
        let next = h.poll("c1", "t", 0, 3).ok(&[(3, "d")]);
        h.poll("final-reader", "t", 0, 0).ok(&[
            (0, "a"),
            (1, "b"),
            (2, "c"),
            (3, "d"),
            (4, "e"),
            (5, "f"),
        ]);
        let found = check(&h);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].anomaly, Anomaly::PollSkip);
        assert_eq!(found[0].ops[0], next.done);
    }

    fn check(h: &Case) -> Vec<Violation> {
        super::super::check(&h.history, &h.options)
    }
}
