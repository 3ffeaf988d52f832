//! What the checkers look up, built once per history: each send with its invoke and
//! completion, and what the reads saw, per partition and per value, sorted so that every
//! question is a binary search. Building it is O(n log n); it borrows every string from
//! the history.

use std::collections::BTreeMap;

use crate::history::{History, Op, OpKind, Phase};

/// A topic-partition: the unit of order.
pub(crate) type Key<'a> = (&'a str, i32);

pub(crate) fn key_of(op: &Op) -> Key<'_> {
    (op.topic.as_str(), op.partition)
}

/// Everything the checkers share.
#[derive(Debug)]
pub(crate) struct Index<'a> {
    pub history: &'a History,
    /// Every send, in invoke order (completion order for a completion without invoke).
    pub sends: Vec<Send<'a>>,
    /// What the reads of each partition saw; partitions no read returned a record of are
    /// absent.
    pub reads: BTreeMap<Key<'a>, PartitionReads<'a>>,
    /// Every distinct (value, partition, offset) a read returned, sorted by value, then
    /// partition, then offset, with the first read that returned it.
    pub positions: Vec<Position<'a>>,
}

/// One send: its invoke and its completion. Either may be missing: a history cut short
/// leaves an invoke without completion.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Send<'a> {
    pub invoke: Option<&'a Op>,
    pub completion: Option<&'a Op>,
}

/// What the reads of one partition saw.
#[derive(Debug, Default)]
pub(crate) struct PartitionReads<'a> {
    /// Each distinct (offset, value) returned, sorted by offset then value, with the first
    /// read (lowest index) that returned it.
    pub seen: Vec<Seen<'a>>,
    /// Each distinct offset returned, ascending, with the first read that returned it.
    pub offsets: Vec<(i64, &'a Op)>,
    /// The reads, in history order, that raised the highest offset read so far, each with
    /// its highest offset: ascending in both, so "the first read past i" is a search.
    pub reach: Vec<(&'a Op, i64)>,
}

/// One (offset, value) a read returned, and the first read that returned it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen<'a> {
    pub offset: i64,
    pub value: &'a str,
    pub read: &'a Op,
}

/// Where a value was read, and the first read that returned it there.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Position<'a> {
    pub value: &'a str,
    pub key: Key<'a>,
    pub offset: i64,
    pub read: &'a Op,
}

impl<'a> Index<'a> {
    pub fn new(history: &'a History) -> Self {
        let sends = pair_sends(history);

        let mut seen_by_key: BTreeMap<Key<'a>, Vec<Seen<'a>>> = BTreeMap::new();
        let mut reach_by_key: BTreeMap<Key<'a>, Vec<(&'a Op, i64)>> = BTreeMap::new();
        for read in history.ops.iter().filter(|op| is_read(op)) {
            let key = key_of(read);
            let seen = seen_by_key.entry(key).or_default();
            seen.extend(read.records.iter().map(|(offset, value)| Seen {
                offset: *offset,
                value: value.as_str(),
                read,
            }));
            if let Some(highest) = read.records.iter().map(|(offset, _)| *offset).max() {
                let reach = reach_by_key.entry(key).or_default();
                if reach.last().is_none_or(|&(_, before)| highest > before) {
                    reach.push((read, highest));
                }
            }
        }

        let mut reads = BTreeMap::new();
        let mut positions = Vec::new();
        for (key, mut seen) in seen_by_key {
            seen.sort_by(|a, b| {
                (a.offset, a.value, a.read.index).cmp(&(b.offset, b.value, b.read.index))
            });
            // Sorted by read index within an (offset, value), so the first kept is the
            // first read that returned it.
            seen.dedup_by(|later, kept| later.offset == kept.offset && later.value == kept.value);
            let mut offsets: Vec<(i64, &Op)> = Vec::new();
            for s in &seen {
                match offsets.last_mut() {
                    Some((offset, first)) if *offset == s.offset => {
                        if s.read.index < first.index {
                            *first = s.read;
                        }
                    }
                    _ => offsets.push((s.offset, s.read)),
                }
            }
            positions.extend(seen.iter().map(|s| Position {
                value: s.value,
                key,
                offset: s.offset,
                read: s.read,
            }));
            let reach = reach_by_key.remove(&key).unwrap_or_default();
            reads.insert(
                key,
                PartitionReads {
                    seen,
                    offsets,
                    reach,
                },
            );
        }
        positions.sort_by(|a, b| (a.value, a.key, a.offset).cmp(&(b.value, b.key, b.offset)));

        Index {
            history,
            sends,
            reads,
            positions,
        }
    }

    /// Where `value` was read, by partition then offset; empty if no read returned it.
    pub fn positions_of(&self, value: &str) -> &[Position<'a>] {
        let start = self.positions.partition_point(|p| p.value < value);
        let end = start + self.positions[start..].partition_point(|p| p.value == value);
        &self.positions[start..end]
    }
}

impl<'a> Send<'a> {
    /// The invoke, or the completion when there is no invoke.
    pub fn first(&self) -> &'a Op {
        self.invoke
            .or(self.completion)
            .expect("a send has an invoke or a completion")
    }

    pub fn key(&self) -> Key<'a> {
        key_of(self.first())
    }

    pub fn process(&self) -> &'a str {
        self.first().process.as_str()
    }

    /// The batch's values (the completion's, if it carries them).
    pub fn values(&self) -> &'a [String] {
        match self.completion {
            Some(done) if !done.values.is_empty() => &done.values,
            _ => &self.first().values,
        }
    }

    /// The completion, if the broker acknowledged the send.
    pub fn ack(&self) -> Option<&'a Op> {
        self.completion.filter(|op| op.phase == Phase::Ok)
    }

    /// The acknowledged offset of the batch's first record.
    pub fn acked_offset(&self) -> Option<i64> {
        self.ack().and_then(|op| op.offset)
    }

    /// The send's operations, most telling first: completion, then invoke.
    pub fn ops(&self) -> Vec<usize> {
        self.completion
            .into_iter()
            .chain(self.invoke)
            .map(|op| op.index)
            .collect()
    }
}

impl<'a> PartitionReads<'a> {
    /// The distinct values read at `offset`, each with the first read that returned it.
    pub fn at(&self, offset: i64) -> &[Seen<'a>] {
        let start = self.seen.partition_point(|s| s.offset < offset);
        let end = start + self.seen[start..].partition_point(|s| s.offset == offset);
        &self.seen[start..end]
    }

    /// The first read (in history order) that returned an offset above `offset`, with the
    /// highest offset it returned.
    pub fn first_read_past(&self, offset: i64) -> Option<(&'a Op, i64)> {
        let at = self
            .reach
            .partition_point(|&(_, highest)| highest <= offset);
        self.reach.get(at).copied()
    }

    /// The distinct offsets read strictly between `low` and `high`.
    pub fn offsets_between(&self, low: i64, high: i64) -> &[(i64, &'a Op)] {
        let start = self.offsets.partition_point(|&(offset, _)| offset <= low);
        let end = start + self.offsets[start..].partition_point(|&(offset, _)| offset < high);
        &self.offsets[start..end]
    }
}

/// A read that returned something: a poll that completed ok.
pub(crate) fn is_read(op: &Op) -> bool {
    op.kind == OpKind::Poll && op.phase == Phase::Ok
}

/// Pairs each send completion with its process's outstanding send invoke to the same
/// partition. A producer has at most one send outstanding per partition (one round sends
/// one batch to each of several partitions at once); a second invoke before a completion
/// closes the first as unfinished.
fn pair_sends(history: &History) -> Vec<Send<'_>> {
    let mut outstanding: BTreeMap<(&str, &str, i32), &Op> = BTreeMap::new();
    let mut sends = Vec::new();
    for op in history.ops.iter().filter(|op| op.kind == OpKind::Send) {
        if op.phase == Phase::Invoke {
            if let Some(unfinished) =
                outstanding.insert((op.process.as_str(), op.topic.as_str(), op.partition), op)
            {
                sends.push(Send {
                    invoke: Some(unfinished),
                    completion: None,
                });
            }
        } else {
            sends.push(Send {
                invoke: outstanding.remove(&(op.process.as_str(), op.topic.as_str(), op.partition)),
                completion: Some(op),
            });
        }
    }
    sends.extend(outstanding.into_values().map(|invoke| Send {
        invoke: Some(invoke),
        completion: None,
    }));
    sends.sort_by_key(|send| send.first().index);
    sends
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Case;
    use super::*;

    #[test]
    fn sends_pair_by_process_across_interleaving() {
        let mut h = Case::new();
        let a = h.send("p1", "t", 0, &["a"]).pending();
        let b = h.send("p2", "t", 0, &["b"]).pending();
        let b_done = h.complete_send(b, Phase::Ok, Some(0));
        let a_done = h.complete_send(a, Phase::Info, None);
        let c = h.send("p1", "t", 0, &["c"]).pending();
        let index = Index::new(&h.history);
        let pairs: Vec<Vec<usize>> = index.sends.iter().map(Send::ops).collect();
        assert_eq!(pairs, vec![vec![a_done, a], vec![b_done, b], vec![c]]);
        assert_eq!(index.sends[1].acked_offset(), Some(0));
        assert_eq!(index.sends[0].acked_offset(), None);
    }

    #[test]
    fn lookups_find_first_reads() {
        let mut h = Case::new();
        let r1 = h.poll("c1", "t", 0, 0).ok(&[(0, "a"), (2, "c")]);
        let r2 = h.poll("c2", "t", 0, 0).ok(&[(0, "a"), (1, "b")]);
        let r3 = h.poll("c2", "t", 0, 2).ok(&[(2, "x"), (5, "e")]);
        let index = Index::new(&h.history);
        let reads = &index.reads[&("t", 0)];
        let at = |offset| -> Vec<(&str, usize)> {
            reads
                .at(offset)
                .iter()
                .map(|s| (s.value, s.read.index))
                .collect()
        };
        assert_eq!(at(0), vec![("a", r1.done)]);
        assert_eq!(at(2), vec![("c", r1.done), ("x", r3.done)]);
        assert_eq!(at(3), vec![]);
        let past = |offset| reads.first_read_past(offset).map(|(op, o)| (op.index, o));
        assert_eq!(past(-1), Some((r1.done, 2)));
        assert_eq!(past(1), Some((r1.done, 2)));
        assert_eq!(past(2), Some((r3.done, 5)));
        assert_eq!(past(5), None);
        let between: Vec<(i64, usize)> = reads
            .offsets_between(0, 5)
            .iter()
            .map(|(o, op)| (*o, op.index))
            .collect();
        assert_eq!(between, vec![(1, r2.done), (2, r1.done)]);
        let where_a: Vec<i64> = index.positions_of("a").iter().map(|p| p.offset).collect();
        assert_eq!(where_a, vec![0]);
        assert!(index.positions_of("zzz").is_empty());
    }
}
