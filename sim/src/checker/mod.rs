//! The anomaly checkers: each reads a [`History`] and reports the [`Violation`]s of one
//! anomaly of `shared/notes/anomalies.md`; [`check`] runs them all.
//!
//! - [`lost_writes`], [`unseen`] (`lost.rs`): what became of each acknowledged record.
//! - [`duplicates`], [`inconsistent_offsets`] (`duplicate.rs`): one record at two offsets,
//!   two records at one offset.
//! - [`nonmonotonic_sends`], [`nonmonotonic_polls`], [`poll_skips`] (`order.rs`): order
//!   of one producer's acknowledgements and of one consumer's reads of a partition.
//! - [`aborted_reads`] (`aborted.rs`): reads of records whose transaction aborted.
//! - [`failed_visible`], [`corrupt_reads`] (`failed.rs`): reads of records the broker
//!   refused, and batches that fail their checks.
//! - [`split_ownership`], [`commit_regressions`], [`commit_skips`], [`stale_commits`],
//!   [`processed_twice`], [`absent_members`] (`group.rs`): consumer groups: two owners of a
//!   partition in one generation, a committed offset going back, a commit past records no
//!   member processed, a commit the coordinator should have refused, a record processed
//!   twice, a generation holding a member that never rejoined.
//!   [`group_stats`] gives the report each group's rebalances and lag over time.
//!
//! Architecture invariant: the checkers know only the history. They do not know the
//! scenario, the faults or the broker's configuration beyond what [`CheckOptions`] says,
//! and whether a found anomaly is forbidden, allowed or expected is decided by the caller.
//!
//! Every checker is O(n log n) in the number of operations and records: the shared
//! `index` sorts what the reads saw once, and each question is then a binary search.
//! Output is deterministic: ordered maps and sorted vectors only, and
//! [`sort_violations`] fixes the order of the report. Operations are named by
//! [`Op::index`](crate::history::Op::index), which the history keeps equal to their position.

mod aborted;
mod duplicate;
mod failed;
mod group;
mod index;
mod lost;
mod order;

#[cfg(test)]
mod group_proptests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod testkit;

use std::collections::{BTreeSet, HashSet};

use crate::history::{Anomaly, History, Violation};

pub use aborted::aborted_reads;
pub use duplicate::{duplicates, inconsistent_offsets};
pub use failed::{corrupt_reads, failed_visible};
pub use group::{
    absent_members, commit_regressions, commit_skips, group_stats, processed_twice,
    split_ownership, stale_commits, GroupStats, GroupSummary, LagPoint, PartitionLag, Rebalance,
};
pub use lost::{lost_writes, unseen};
pub use order::{nonmonotonic_polls, nonmonotonic_sends, poll_skips};

use index::{Index, Key};

/// Which checks a run asks for, and what the configuration permits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// Processes whose configuration promises per-partition order (idempotence, or one
    /// request in flight): nonmonotonic-send is checked only for these.
    pub producers_ordered: BTreeSet<String>,
}

/// Runs every checker. Violations are sorted by (anomaly, topic, partition, first op
/// index); the output is the same for the same history and options.
pub fn check(history: &History, options: &CheckOptions) -> Vec<Violation> {
    let index = Index::new(history);
    let missing = lost::missing_records(&index);
    let mut violations = lost::lost_writes_in(&index, &missing);
    violations.extend(lost::unseen_in(&index, &missing));
    violations.extend(duplicate::duplicates_in(&index));
    violations.extend(duplicate::inconsistent_offsets_in(&index));
    violations.extend(order::nonmonotonic_sends_in(
        &index,
        &options.producers_ordered,
    ));
    let steps = order::consecutive_polls(history, &index.lanes);
    violations.extend(order::nonmonotonic_polls_in(history, &steps));
    violations.extend(order::poll_skips_in(&index, &steps));
    // No transactions yet, so nothing has aborted.
    violations.extend(aborted_reads(history, &BTreeSet::new()));
    violations.extend(failed_visible(history));
    violations.extend(corrupt_reads(history));
    violations.extend(group::group_violations_in(history, &index));
    sort_violations(&mut violations);
    violations
}

/// Orders violations by (anomaly, topic, partition, first op index), then message and ops,
/// so a report is the same from run to run.
pub fn sort_violations(violations: &mut [Violation]) {
    violations.sort_by(|a, b| {
        (
            a.anomaly,
            &a.topic,
            a.partition,
            a.ops.first(),
            &a.message,
            &a.ops,
        )
            .cmp(&(
                b.anomaly,
                &b.topic,
                b.partition,
                b.ops.first(),
                &b.message,
                &b.ops,
            ))
    });
}

// ---------------------------------------------------------------------------------------
// Details shared by the checkers.

fn violation(anomaly: Anomaly, key: Key<'_>, message: String, ops: Vec<usize>) -> Violation {
    Violation {
        anomaly,
        topic: key.0.to_string(),
        partition: key.1,
        message,
        ops: unique(ops),
    }
}

/// Keeps the first occurrence of each op, in order: "most telling first" survives.
fn unique(ops: Vec<usize>) -> Vec<usize> {
    let mut seen = HashSet::with_capacity(ops.len());
    ops.into_iter().filter(|op| seen.insert(*op)).collect()
}

/// Simulated time as people read it: `t=1.204s`.
fn time(time_ns: u64) -> String {
    format!(
        "t={}.{:03}s",
        time_ns / 1_000_000_000,
        time_ns / 1_000_000 % 1000
    )
}

/// A topic-partition as people read it: `orders/0`.
fn key_name(key: Key<'_>) -> String {
    format!("{}/{}", key.0, key.1)
}

/// How many items a message lists before it says "and N more".
const MESSAGE_ITEMS_MAX: usize = 4;

/// "a, b and c", or "a, b, c, d and 7 more" past [`MESSAGE_ITEMS_MAX`].
fn list(items: impl ExactSizeIterator<Item = String>) -> String {
    let count = items.len();
    let shown: Vec<String> = items.take(MESSAGE_ITEMS_MAX).collect();
    match (shown.split_last(), count - shown.len()) {
        (None, _) => String::new(),
        (Some((last, [])), 0) => last.clone(),
        (Some((last, rest)), 0) => format!("{} and {last}", rest.join(", ")),
        (Some(_), more) => format!("{} and {more} more", shown.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::{check_case, Case};
    use super::*;

    #[test]
    fn time_reads_as_seconds() {
        assert_eq!(time(1_204_000_000), "t=1.204s");
        assert_eq!(time(3_100_999_999), "t=3.100s");
        assert_eq!(time(0), "t=0.000s");
    }

    #[test]
    fn lists_cut_after_the_maximum() {
        let words = |n: usize| (0..n).map(|i| format!("w{i}")).collect::<Vec<_>>();
        assert_eq!(list(words(0).into_iter()), "");
        assert_eq!(list(words(1).into_iter()), "w0");
        assert_eq!(list(words(3).into_iter()), "w0, w1 and w2");
        assert_eq!(list(words(4).into_iter()), "w0, w1, w2 and w3");
        assert_eq!(list(words(6).into_iter()), "w0, w1, w2, w3 and 2 more");
    }

    #[test]
    fn empty_history_passes() {
        check_case(&Case::new(), &[]);
    }

    #[test]
    fn violations_come_sorted_by_anomaly_then_partition_then_first_op() {
        let mut h = Case::new();
        // An unseen record on t/1 first, then two lost sends on t/0.
        let unseen_t1 = h.send("p1", "t", 1, &["x"]).ok(0);
        let lost = h.send("p1", "t", 0, &["a"]).ok(0);
        let lost_too = h.send("p1", "t", 0, &["b", "c"]).ok(1);
        let past = h.poll("c1", "t", 0, 3).ok(&[(3, "d")]);
        let found = check(&h.history, &h.options);
        let summary: Vec<(Anomaly, i32, usize)> = found
            .iter()
            .map(|v| (v.anomaly, v.partition, v.ops[0]))
            .collect();
        assert_eq!(
            summary,
            vec![
                (Anomaly::LostWrite, 0, lost.done),
                (Anomaly::LostWrite, 0, lost_too.done),
                (Anomaly::Unseen, 1, unseen_t1.done),
            ],
            "{found:#?}"
        );
        assert_eq!(found[0].ops, vec![lost.done, lost.invoke, past.done]);
    }

    #[test]
    fn the_same_history_gives_the_same_report() {
        let mut h = Case::new();
        h.send("p1", "t", 0, &["a", "b"]).ok(0);
        h.send("p2", "u", 3, &["c"]).ok(7);
        h.poll("c1", "t", 0, 0).ok(&[(1, "b"), (0, "a")]);
        h.poll("c1", "u", 3, 0).ok(&[(7, "c"), (9, "a")]);
        let first = check(&h.history, &h.options);
        assert!(!first.is_empty());
        let json = serde_json::to_string(&h.history).unwrap();
        let again: History = serde_json::from_str(&json).unwrap();
        assert_eq!(check(&again, &h.options), first);
    }
}
