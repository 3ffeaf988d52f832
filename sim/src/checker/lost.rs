//! lost-write and unseen: what became of each acknowledged record.
//!
//! An acknowledged (send ok) record at offset i of a partition is *lost* when a read
//! returned a different record at i, or when some read returned an offset above i and no
//! read ever returned this record at i. It is *unseen* when no read returned its value
//! anywhere and it is not lost. Both are reported once per send, naming the records of
//! its batch that are missing.

use crate::history::{Anomaly, History, Op, Violation};

use super::index::{key_of, Index, PartitionReads, Seen, Send as IndexedSend, ValueId};
use super::{key_name, list, sort_violations, time, violation};

/// Acknowledged records that are gone: another record at their offset, or reads past it
/// and none saw them there. One violation per send; ops: the send's completion and
/// invoke, then the reads that show the loss.
pub fn lost_writes(history: &History) -> Vec<Violation> {
    let index = Index::new(history);
    let mut violations = lost_writes_in(&index, &missing_records(&index));
    sort_violations(&mut violations);
    violations
}

/// Acknowledged records no read ever returned, that are not lost writes. One violation per
/// send; ops: the send's completion and invoke.
pub fn unseen(history: &History) -> Vec<Violation> {
    let index = Index::new(history);
    let mut violations = unseen_in(&index, &missing_records(&index));
    sort_violations(&mut violations);
    violations
}

/// An acknowledged record that no read shows where its acknowledgement put it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Missing<'a> {
    /// Position of its send in [`Index::sends`].
    pub send: usize,
    pub value: &'a str,
    /// The value's id in the index.
    pub id: ValueId,
    /// The acknowledged offset, when the ack carried one.
    pub offset: Option<i64>,
    pub fate: Fate<'a>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Fate<'a> {
    /// Lost: a read returned another record at its offset.
    Overwritten { by: Seen<'a> },
    /// Lost: this read returned offset `offset`, above the record's, and no read ever
    /// returned the record at its offset.
    Passed { read: &'a Op, offset: i64 },
    /// Never read anywhere.
    Unseen,
}

impl Fate<'_> {
    fn is_lost(&self) -> bool {
        !matches!(self, Fate::Unseen)
    }
}

/// Every acknowledged record that is lost or unseen, in send order then batch order.
pub(crate) fn missing_records<'a>(index: &Index<'a>) -> Vec<Missing<'a>> {
    let mut missing = Vec::new();
    // Per lane (a process's sends to one partition): that partition's reads, once looked
    // up, and where the last search in them ended.
    let mut lanes: Vec<Option<(Option<&PartitionReads<'a>>, usize)>> =
        vec![None; index.lanes.len()];
    for (send_at, send) in index.sends.iter().enumerate() {
        if send.ack().is_none() {
            continue;
        }
        let (reads, cursor) = lanes[send.lane as usize]
            .get_or_insert_with(|| (index.reads.get(&index.lanes.lanes[send.lane as usize].1), 0));
        let first_offset = send.acked_offset();
        for (position, &id) in index.ids_of(send).iter().enumerate() {
            let offset = first_offset.map(|first| first + position as i64);
            let mut read_here = false;
            let fate = match (offset, *reads) {
                (Some(offset), Some(reads)) => {
                    let here = reads.at_near(offset, cursor);
                    read_here = here.iter().any(|s| s.id == id);
                    let other = here
                        .iter()
                        .filter(|s| s.id != id)
                        .min_by_key(|s| s.read.index);
                    match other {
                        Some(by) => Some(Fate::Overwritten { by: *by }),
                        None if !read_here => reads
                            .first_read_past(offset)
                            .map(|(read, past)| Fate::Passed { read, offset: past }),
                        None => None,
                    }
                }
                _ => None,
            };
            // A record read where it was acknowledged was read somewhere.
            let fate = fate.or_else(|| {
                (!read_here && index.positions_of_id(id).is_empty()).then_some(Fate::Unseen)
            });
            if let Some(fate) = fate {
                missing.push(Missing {
                    send: send_at,
                    value: index.values[id as usize],
                    id,
                    offset,
                    fate,
                });
            }
        }
    }
    missing
}

pub(crate) fn lost_writes_in(index: &Index<'_>, missing: &[Missing<'_>]) -> Vec<Violation> {
    per_send(missing, |m| m.fate.is_lost())
        .iter()
        .map(|records| {
            let send = &index.sends[records[0].send];
            let ack = send.ack().expect("only acknowledged sends are missing");
            let first = &records[0];
            let what = acknowledged_records(send, ack, records, "is gone", "are gone");
            let why = explain_loss(index, first);
            let message = match records.as_slice() {
                [_] => format!("{what}: {why}"),
                _ => format!("{what}; for {}, {why}", first.value),
            };
            let mut ops = send.ops();
            ops.extend(records.iter().map(|m| match m.fate {
                Fate::Overwritten { by } => by.read.index,
                Fate::Passed { read, .. } => read.index,
                Fate::Unseen => unreachable!("unseen records are not lost"),
            }));
            violation(Anomaly::LostWrite, send.key(), message, ops)
        })
        .collect()
}

pub(crate) fn unseen_in(index: &Index<'_>, missing: &[Missing<'_>]) -> Vec<Violation> {
    per_send(missing, |m| !m.fate.is_lost())
        .iter()
        .map(|records| {
            let send = &index.sends[records[0].send];
            let ack = send.ack().expect("only acknowledged sends are missing");
            let message = acknowledged_records(
                send,
                ack,
                records,
                "was never read by anyone",
                "were never read by anyone",
            );
            violation(Anomaly::Unseen, send.key(), message, send.ops())
        })
        .collect()
}

/// "record v at t/0 offset 5 (t=1.2s) is gone", or for several records of one send
/// "3 records acknowledged to ... are gone: v1 at offset 5, ...".
fn acknowledged_records(
    send: &IndexedSend<'_>,
    ack: &Op,
    records: &[Missing<'_>],
    one_verb: &str,
    many_verb: &str,
) -> String {
    match records {
        [one] => format!(
            "record {} acknowledged to {} at {} {} ({}) {one_verb}",
            one.value,
            send.process(),
            key_name(send.key()),
            offset_phrase(one.offset),
            time(ack.time_ns)
        ),
        many => format!(
            "{} records acknowledged to {} at {} ({}) {many_verb}: {}",
            many.len(),
            send.process(),
            key_name(send.key()),
            time(ack.time_ns),
            record_list(many)
        ),
    }
}

/// The missing records that pass `keep`, in runs of one send each.
fn per_send<'a>(
    missing: &[Missing<'a>],
    keep: impl Fn(&Missing<'a>) -> bool,
) -> Vec<Vec<Missing<'a>>> {
    missing
        .chunk_by(|a, b| a.send == b.send)
        .map(|run| run.iter().filter(|m| keep(m)).copied().collect::<Vec<_>>())
        .filter(|run| !run.is_empty())
        .collect()
}

fn explain_loss(index: &Index<'_>, record: &Missing<'_>) -> String {
    let offset = record
        .offset
        .expect("a lost record has an acknowledged offset");
    match record.fate {
        Fate::Overwritten { by } => {
            let mut why = format!(
                "{} read {} at offset {offset} at {}",
                by.read.process,
                by.value,
                time(by.read.time_ns)
            );
            let here = index
                .positions_of_id(record.id)
                .iter()
                .find(|p| p.offset == offset && p.key == key_of(by.read));
            if let Some(here) = here {
                why += &format!(
                    " (and {} read {} there at {})",
                    here.read.process,
                    record.value,
                    time(here.read.time_ns)
                );
            }
            why
        }
        Fate::Passed { read, offset: past } => {
            let mut why = format!(
                "{} read offset {past} at {} and no read ever saw offset {offset} hold it",
                read.process,
                time(read.time_ns)
            );
            if let Some(elsewhere) = index.positions_of_id(record.id).first() {
                why += &format!(
                    "; it was read at {} offset {} instead ({} at {})",
                    key_name(elsewhere.key),
                    elsewhere.offset,
                    elsewhere.read.process,
                    time(elsewhere.read.time_ns)
                );
            }
            why
        }
        Fate::Unseen => unreachable!("unseen records are not lost"),
    }
}

fn record_list(records: &[Missing<'_>]) -> String {
    list(records.iter().map(|m| match m.offset {
        Some(offset) => format!("{} at offset {offset}", m.value),
        None => format!("{} (offset not reported)", m.value),
    }))
}

/// "offset 12", or "(offset not reported)" for an ack without one.
fn offset_phrase(offset: Option<i64>) -> String {
    offset.map_or_else(
        || "(offset not reported)".to_string(),
        |o| format!("offset {o}"),
    )
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{check_case, Case};
    use super::*;
    use crate::history::Phase;

    #[test]
    fn every_acknowledged_record_read_passes() {
        let mut h = Case::new();
        h.send("p1", "t", 0, &["a", "b"]).ok(0);
        h.send("p2", "t", 0, &["c"]).ok(2);
        h.send("p2", "t", 0, &["lost-in-flight"]).info();
        h.send("p2", "t", 0, &["refused"]).fail();
        h.poll("c1", "t", 0, 0).ok(&[(0, "a"), (1, "b")]);
        h.poll("final-reader", "t", 0, 0)
            .ok(&[(0, "a"), (1, "b"), (2, "c")]);
        check_case(&h, &[]);
    }

    #[test]
    fn a_read_past_an_acknowledged_record_loses_it() {
        let mut h = Case::new();
        h.send("p1", "t", 0, &["a"]).ok(0);
        let lost = h.send("p1", "t", 0, &["b"]).ok(1);
        h.send("p1", "t", 0, &["c"]).ok(2);
        let past = h.poll("c1", "t", 0, 0).ok(&[(0, "a"), (2, "c")]);
        h.poll("final-reader", "t", 0, 0).ok(&[(0, "a"), (2, "c")]);
        check_case(
            &h,
            &[(Anomaly::LostWrite, &[lost.done, lost.invoke, past.done])],
        );
    }

    #[test]
    fn the_message_names_value_offsets_processes_and_times() {
        let mut h = Case::new();
        h.clock_ns = 1_202_000_000;
        h.send("p1", "orders", 0, &["v-17"]).ok(12);
        h.clock_ns = 3_098_000_000;
        h.poll("c1", "orders", 0, 15).ok(&[(15, "v-20")]);
        let found = lost_writes(&h.history);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].message,
            "record v-17 acknowledged to p1 at orders/0 offset 12 (t=1.204s) is gone: \
             c1 read offset 15 at t=3.100s and no read ever saw offset 12 hold it"
        );
    }

    #[test]
    fn another_record_at_the_acknowledged_offset_loses_it() {
        let mut h = Case::new();
        let early = h.poll("c1", "t", 0, 0).pending();
        let lost = h.send("p1", "t", 0, &["a"]).ok(0);
        let early_done = h.complete_poll(early, &[(0, "a")]);
        // A truncation and a new leader: offset 0 now holds x. Both acknowledgements
        // cannot hold, so x, read over by a, counts as lost too.
        let over = h.send("p2", "t", 0, &["x"]).ok(0);
        let late = h.poll("final-reader", "t", 0, 0).ok(&[(0, "x")]);
        let found = lost_writes(&h.history);
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[0].message,
            "record a acknowledged to p1 at t/0 offset 0 (t=0.003s) is gone: final-reader \
             read x at offset 0 at t=0.008s (and c1 read a there at t=0.004s)"
        );
        check_case(
            &h,
            &[
                (Anomaly::LostWrite, &[lost.done, lost.invoke, late.done]),
                (Anomaly::LostWrite, &[over.done, over.invoke, early_done]),
                (Anomaly::InconsistentOffsets, &[early_done, late.done]),
            ],
        );
    }

    #[test]
    fn a_record_read_at_another_offset_is_lost_at_its_own() {
        let mut h = Case::new();
        let lost = h.send("p1", "t", 0, &["a"]).ok(3);
        let read = h.poll("c1", "t", 0, 0).ok(&[(5, "a")]);
        let found = lost_writes(&h.history);
        assert!(found[0].message.ends_with(
            "no read ever saw offset 3 hold it; it was read at t/0 offset 5 instead (c1 at t=0.004s)"
        ));
        check_case(
            &h,
            &[(Anomaly::LostWrite, &[lost.done, lost.invoke, read.done])],
        );
    }

    #[test]
    fn a_batch_reports_once_with_each_lost_record() {
        let mut h = Case::new();
        let lost = h.send("p1", "t", 0, &["a", "b", "c"]).ok(0);
        let past = h.poll("c1", "t", 0, 0).ok(&[(1, "b"), (3, "d")]);
        let found = lost_writes(&h.history);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].message,
            "2 records acknowledged to p1 at t/0 (t=0.002s) are gone: a at offset 0 and c \
             at offset 2; for a, c1 read offset 3 at t=0.004s and no read ever saw offset 0 \
             hold it"
        );
        check_case(
            &h,
            &[(Anomaly::LostWrite, &[lost.done, lost.invoke, past.done])],
        );
    }

    #[test]
    fn records_beyond_every_read_are_unseen_not_lost() {
        let mut h = Case::new();
        h.send("p1", "t", 0, &["a"]).ok(0);
        let unseen_send = h.send("p1", "t", 0, &["b", "c"]).ok(1);
        let no_offset = h.send("p2", "t", 1, &["d"]).pending();
        let no_offset_done = h.complete_send(no_offset, Phase::Ok, None);
        h.poll("final-reader", "t", 0, 0).ok(&[(0, "a")]);
        let found = unseen(&h.history);
        assert_eq!(
            found.iter().map(|v| v.message.as_str()).collect::<Vec<_>>(),
            vec![
                "2 records acknowledged to p1 at t/0 (t=0.004s) were never read by anyone: \
                 b at offset 1 and c at offset 2",
                "record d acknowledged to p2 at t/1 (offset not reported) (t=0.006s) was \
                 never read by anyone",
            ]
        );
        check_case(
            &h,
            &[
                (Anomaly::Unseen, &[unseen_send.done, unseen_send.invoke]),
                (Anomaly::Unseen, &[no_offset_done, no_offset]),
            ],
        );
    }

    #[test]
    fn unacknowledged_records_may_vanish() {
        let mut h = Case::new();
        h.send("p1", "t", 0, &["a"]).info();
        h.send("p1", "t", 0, &["b"]).fail();
        h.send("p1", "t", 0, &["c"]).pending();
        h.poll("final-reader", "t", 0, 0).ok(&[(5, "z")]);
        check_case(&h, &[]);
    }
}
