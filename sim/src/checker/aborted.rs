//! aborted-read: a read returned a record whose transaction aborted.
//!
//! Transactions do not exist yet: the caller passes the values it knows were aborted, and
//! [`check`](super::check) passes none.

use std::collections::BTreeSet;

use crate::history::{Anomaly, History, Op, Violation};

use super::index::{is_read, key_of};
use super::{key_name, list, sort_violations, time, violation};

/// Every poll that returned a value in `aborted`. One violation per poll; ops: the poll.
pub fn aborted_reads(history: &History, aborted: &BTreeSet<String>) -> Vec<Violation> {
    if aborted.is_empty() {
        return Vec::new();
    }
    reads_returning(
        history,
        Anomaly::AbortedRead,
        "of aborted transactions",
        |_, value| aborted.contains(value),
    )
}

/// Every poll that returned records `forbidden(poll, value)` picks, as one violation of
/// `anomaly` per poll: "... returned a record {what}: v at offset o". Ops: the poll.
pub(super) fn reads_returning(
    history: &History,
    anomaly: Anomaly,
    what: &str,
    forbidden: impl Fn(&Op, &str) -> bool,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    for poll in history.ops.iter().filter(|op| is_read(op)) {
        let seen: Vec<&(i64, String)> = poll
            .records
            .iter()
            .filter(|(_, value)| forbidden(poll, value))
            .collect();
        if seen.is_empty() {
            continue;
        }
        let message = format!(
            "{}'s poll of {} at {} returned {} {what}: {}",
            poll.process,
            key_name(key_of(poll)),
            time(poll.time_ns),
            if seen.len() == 1 {
                "a record"
            } else {
                "records"
            },
            list(
                seen.iter()
                    .map(|(offset, value)| format!("{value} at offset {offset}"))
            )
        );
        violations.push(violation(anomaly, key_of(poll), message, vec![poll.index]));
    }
    sort_violations(&mut violations);
    violations
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{check_case, Case};
    use super::*;

    fn aborted(values: &[&str]) -> BTreeSet<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn reads_of_committed_records_pass() {
        let mut h = Case::new();
        h.send("p1", "t", 0, &["a"]).ok(0);
        h.send("p1", "t", 0, &["x"]).info();
        h.poll("c1", "t", 0, 0).ok(&[(0, "a")]);
        assert_eq!(aborted_reads(&h.history, &aborted(&["x"])), vec![]);
        assert_eq!(aborted_reads(&h.history, &aborted(&[])), vec![]);
    }

    #[test]
    fn a_read_of_an_aborted_record_is_reported() {
        let mut h = Case::new();
        h.send("p1", "t", 0, &["x", "y"]).info();
        let poll = h.poll("c1", "t", 0, 0).ok(&[(0, "x"), (1, "y"), (2, "z")]);
        let found = aborted_reads(&h.history, &aborted(&["x", "y"]));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].anomaly, Anomaly::AbortedRead);
        assert_eq!(found[0].ops, vec![poll.done]);
        assert_eq!(
            found[0].message,
            "c1's poll of t/0 at t=0.004s returned records of aborted transactions: x at \
             offset 0 and y at offset 1"
        );
        // check() knows of no aborted transactions yet.
        check_case(&h, &[]);
    }
}
