//! Judging a run: the end-of-run comparison of replicas (inside the simulation, while the
//! brokers still answer), then, after it, the checkers over the history, the invariants,
//! `must_see`, the liveness result, the verdict, the counters and the trace hash.

use super::cluster::Cluster;
use super::recorder::Recorded;
use crate::checker::{self, CheckOptions};
use crate::history::{History, OpKind, Phase};
use crate::invariants::{self, InvariantViolation, Invariants};
use crate::outcome::{Counters, Event, Outcome, Verdict};
use crate::scenario::{fnv1a, AcksSpec, Expectation, Fnv1a, ProducerSpec, Scenario};
use madsim::time::Instant;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// End of run, before shutdown: every ISR member holds the leader's batches below the
/// leader's high watermark. Breaks go to the invariant checker.
pub(super) fn compare_replicas(
    cluster: &Cluster,
    partitions: &[(String, i32)],
    start: Instant,
    checker: &Mutex<Invariants>,
) {
    let now_ns = Instant::now().duration_since(start).as_nanos() as u64;
    for (topic, partition) in partitions {
        let mut digests = BTreeMap::new();
        for (i, name) in cluster.brokers.iter().enumerate() {
            // A broker still starting has no handle yet: it says nothing either way.
            if let Some(control) = cluster.broker_control(name) {
                digests.insert(i as i32 + 1, control.replica_digest(topic, *partition));
            }
        }
        let mut checker = checker.lock().unwrap();
        for v in invariants::compare_replicas(topic, *partition, &digests, now_ns) {
            checker.push(v);
        }
    }
}

/// The outcome of a run that completed: what the checkers find in the history, what the
/// invariant checker saw, what `must_see` asked for, and whether the run stayed live.
pub(super) fn judge(
    scenario: &Scenario,
    seed: u64,
    run: Recorded,
    checker: &Mutex<Invariants>,
) -> Outcome {
    let Recorded {
        history,
        events,
        liveness_error,
        simulated_ns,
        probes,
        buggify,
    } = run;
    let ordered: BTreeSet<String> = (0..scenario.producers.len())
        .filter(|i| producer_is_ordered(&scenario.producers[*i]))
        .map(|i| scenario.producer_name(i))
        .collect();
    let violations = checker::check(
        &history,
        &CheckOptions {
            producers_ordered: ordered,
        },
    );
    let mut broken = invariant_violations(checker, simulated_ns);
    broken.extend(blind_observer(scenario, &history, checker, simulated_ns));
    let mut failures = Outcome::judge(scenario, &violations);
    failures.extend(Outcome::judge_invariants(scenario, &broken));
    failures.extend(unseen(scenario, &events));
    // A liveness failure the scenario expects (or allows) is no failure; one it expects
    // and did not get is.
    let liveness_error = match (scenario.liveness_expectation, liveness_error) {
        (Expectation::Forbidden, e) => e,
        (Expectation::Expected, None) => {
            failures.push("expected liveness failure not found".into());
            None
        }
        (_, Some(_)) | (Expectation::Allowed, None) => None,
    };
    if let Some(e) = &liveness_error {
        failures.insert(0, format!("liveness: {e}"));
    }
    let verdict = if liveness_error.is_some() {
        Verdict::Liveness
    } else if failures.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Violation
    };
    let counters = count(&history, &events);
    let trace_hash = trace_hash(&history, &events, &broken);
    Outcome {
        scenario: scenario.name.clone(),
        seed,
        verdict,
        failures,
        violations,
        invariants: broken,
        counters,
        history,
        events,
        trace_hash,
        simulated_ns,
        wall_ms: 0,
        probes,
        buggify,
        settings: Vec::new(),
    }
}

/// The outcome of a run that panicked: a crash, hashed by its message.
pub(super) fn crashed(scenario: &Scenario, seed: u64, message: String, wall_ms: u64) -> Outcome {
    Outcome {
        scenario: scenario.name.clone(),
        seed,
        verdict: Verdict::Crash,
        failures: vec![format!("crash: {message}")],
        violations: Vec::new(),
        invariants: Vec::new(),
        counters: Counters::default(),
        history: History::default(),
        events: Vec::new(),
        trace_hash: fnv1a(message.as_bytes()),
        simulated_ns: 0,
        wall_ms,
        probes: Default::default(),
        buggify: Default::default(),
        settings: Vec::new(),
    }
}

/// What the invariant checker kept, and a note of how many more it dropped.
fn invariant_violations(checker: &Mutex<Invariants>, simulated_ns: u64) -> Vec<InvariantViolation> {
    let checker = checker.lock().unwrap();
    let mut broken = checker.violations().to_vec();
    // One note per rule, under the rule's name, so that judging by rule counts them too.
    for (rule, n) in checker.dropped_by_rule() {
        broken.push(InvariantViolation {
            time_ns: simulated_ns,
            rule: rule.clone(),
            message: format!("{n} more violations of this rule not kept"),
        });
    }
    broken
}

/// The continuous checks are only as good as what nodes report: in a cluster run where
/// sends were acknowledged, some leader must have reported a batch its high watermark
/// passed. If none did, the replicas' reports went missing (a broken observation, not a
/// quiet run), and `committed-batches-agree` checked nothing.
fn blind_observer(
    scenario: &Scenario,
    history: &History,
    checker: &Mutex<Invariants>,
    simulated_ns: u64,
) -> Option<InvariantViolation> {
    if scenario.controllers == 0 {
        return None;
    }
    let acknowledged = history
        .ops
        .iter()
        .filter(|o| o.kind == OpKind::Send && o.phase == Phase::Ok)
        .count();
    let reported = checker.lock().unwrap().leader_batch_count();
    (acknowledged > 0 && reported == 0).then(|| InvariantViolation {
        time_ns: simulated_ns,
        rule: "observer-sees-commits".into(),
        message: format!(
            "{acknowledged} sends were acknowledged, but no leader reported a batch it \
             appended: the leaders' reports to the lab went missing, so the continuous \
             checks saw only followers' copies"
        ),
    })
}

/// A failure for every `must_see` entry no event of the run matches.
fn unseen(scenario: &Scenario, events: &[Event]) -> Vec<String> {
    let mut failures = Vec::new();
    for entry in &scenario.must_see {
        let seen = events
            .iter()
            .any(|e| crate::scenario::must_see_matches(entry, &e.event, &e.what, &e.target));
        if !seen {
            failures.push(format!(
                "must_see: the run never recorded a `{entry}` event, so it did not reach the \
                 mechanism the scenario is about"
            ));
        }
    }
    failures
}

/// FNV-1a over the serialized history, events and (only when there are any, so runs
/// without invariant reports keep their old hashes) broken invariants. Streamed into the
/// hash: no second copy of a large history in memory.
fn trace_hash(history: &History, events: &[Event], broken: &[InvariantViolation]) -> u64 {
    let mut hasher = Fnv1a::default();
    serde_json::to_writer(&mut hasher, history).expect("history serializes");
    serde_json::to_writer(&mut hasher, events).expect("events serialize");
    if !broken.is_empty() {
        serde_json::to_writer(&mut hasher, broken).expect("invariants serialize");
    }
    hasher.finish()
}

/// Kafka promises per-partition order to a producer that is idempotent, or that keeps one
/// request in flight.
fn producer_is_ordered(p: &ProducerSpec) -> bool {
    let idempotent = p.idempotence.unwrap_or(p.acks == AcksSpec::All);
    (idempotent || p.in_flight.get_ref().get() == 1) && p.acks != AcksSpec::Zero
}

fn count(history: &History, events: &[Event]) -> Counters {
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
