//! failed-visible: a read returned a record whose send the broker definitively refused.
//! corrupt-read: the broker served a batch that fails its checks.
//!
//! A send fails definitively (phase `fail`) when no attempt can have been appended: every
//! attempt was refused before the append (NOT_ENOUGH_REPLICAS, OUT_OF_ORDER_SEQUENCE_NUMBER,
//! ...) or never sent. A send whose outcome is unknown (a timeout, a lost connection, a
//! leader that lost the partition while waiting for the ISR) is `info` and may
//! legitimately show up later; a `fail` may not: the producer was told the records are not
//! in the log, and it may send them again or give up on them.

use std::collections::BTreeSet;

use crate::history::{Anomaly, History, OpKind, Phase, Violation};

use super::aborted::reads_returning;
use super::index::key_of;
use super::{key_name, sort_violations, time, violation};

/// Every poll that returned, from the partition a definitively failed send went to, one of
/// its records. One violation per poll; ops: the poll.
pub fn failed_visible(history: &History) -> Vec<Violation> {
    let failed: BTreeSet<(&str, i32, &str)> = history
        .ops
        .iter()
        .filter(|op| op.kind == OpKind::Send && op.phase == Phase::Fail)
        .flat_map(|op| {
            op.values
                .iter()
                .map(move |v| (op.topic.as_str(), op.partition, v.as_str()))
        })
        .collect();
    if failed.is_empty() {
        return Vec::new();
    }
    reads_returning(
        history,
        Anomaly::FailedVisible,
        "the broker had refused to append",
        |poll, value| failed.contains(&(poll.topic.as_str(), poll.partition, value)),
    )
}

/// Every partition position at which a consumer was served a corrupt batch (a poll that
/// failed with "corrupt batch"): the broker handed out bytes no producer wrote, which
/// stops every consumer of the partition there. One violation per (process, partition,
/// position); ops: the first such poll.
pub fn corrupt_reads(history: &History) -> Vec<Violation> {
    let mut seen = BTreeSet::new();
    let mut violations = Vec::new();
    for poll in history.ops.iter().filter(|op| {
        op.kind == OpKind::Poll
            && op.phase == Phase::Fail
            && op
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("corrupt batch"))
    }) {
        if !seen.insert((poll.process.as_str(), key_of(poll), poll.offset)) {
            continue;
        }
        let message = format!(
            "{}'s poll of {} from offset {} at {} was served a corrupt batch: {}",
            poll.process,
            key_name(key_of(poll)),
            poll.offset.map_or("?".into(), |o| o.to_string()),
            time(poll.time_ns),
            poll.error.as_deref().unwrap_or_default()
        );
        violations.push(violation(
            Anomaly::CorruptRead,
            key_of(poll),
            message,
            vec![poll.index],
        ));
    }
    sort_violations(&mut violations);
    violations
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{check_case, Case};
    use super::*;

    #[test]
    fn a_refused_send_read_back_is_reported_and_an_unknown_one_is_not() {
        let mut h = Case::new();
        h.send("p1", "t", 0, &["a"]).ok(0);
        let refused = h.send("p1", "t", 0, &["b"]).fail();
        h.send("p1", "t", 0, &["c"]).info();
        let read = h.poll("c1", "t", 0, 0).ok(&[(0, "a"), (1, "b"), (2, "c")]);
        let found = failed_visible(&h.history);
        assert_eq!(
            found[0].message,
            "c1's poll of t/0 at t=0.008s returned a record the broker had refused to append: \
             b at offset 1"
        );
        let _ = refused;
        check_case(&h, &[(Anomaly::FailedVisible, &[read.done])]);
    }

    #[test]
    fn a_corrupt_batch_served_is_reported_once_per_position() {
        let mut h = Case::new();
        h.send("p1", "t", 0, &["a"]).ok(0);
        let first = h.poll("c1", "t", 0, 0).corrupt();
        h.poll("c1", "t", 0, 0).corrupt();
        h.poll("c1", "t", 0, 0).info();
        h.poll("c2", "t", 0, 0).ok(&[(0, "a")]);
        let found = corrupt_reads(&h.history);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].message.contains("was served a corrupt batch"),
            "{}",
            found[0].message
        );
        check_case(&h, &[(Anomaly::CorruptRead, &[first.done])]);
    }
}
