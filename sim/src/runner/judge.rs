//! Judging a run: which producers Kafka promises order to, and the run's counters.

use crate::history::{History, OpKind, Phase};
use crate::outcome::{Counters, Event};
use crate::scenario::AcksSpec;

/// Kafka promises per-partition order to a producer that is idempotent, or that keeps one
/// request in flight.
pub(super) fn producer_is_ordered(p: &crate::scenario::ProducerSpec) -> bool {
    let idempotent = p.idempotence.unwrap_or(p.acks == AcksSpec::All);
    (idempotent || *p.in_flight.get_ref() == 1) && p.acks != AcksSpec::Zero
}

pub(super) fn count(history: &History, events: &[Event]) -> Counters {
    let mut c = Counters::default();
    for op in &history.ops {
        match (op.kind, op.phase) {
            (OpKind::Send, Phase::Ok) => {
                c.sends_ok += 1;
                c.records_acknowledged += op.values.len() as u64;
            }
            (OpKind::Send, Phase::Info | Phase::Fail) => c.sends_unknown += 1,
            (OpKind::Poll, Phase::Ok) => {
                c.polls += 1;
                c.records_read += op.records.len() as u64;
            }
            _ => {}
        }
    }
    c.faults = events.iter().filter(|e| e.event == "fault-start").count() as u64;
    c
}
