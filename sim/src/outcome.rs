//! What one seed of one scenario produced: verdict, violations, counters, history and
//! fault events. Built by the runner, written out by `report`, compared for determinism.

use crate::history::{Anomaly, History, Violation};
use crate::invariants::InvariantViolation;
use crate::scenario::{Expectation, Scenario};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A fault or node event on the run's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub time_ns: u64,
    /// e.g. "fault-start", "fault-end", "phase".
    pub event: String,
    /// The fault kind or phase name.
    pub what: String,
    /// The nodes or link it touched.
    pub target: String,
    /// "scenario" or "nemesis".
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Every forbidden anomaly absent, every expected one found, liveness held.
    Pass,
    /// A forbidden anomaly was found, or an expected one was not.
    Violation,
    /// After healing, the final read did not complete within the liveness bound.
    Liveness,
    /// A node or the harness panicked (a broken invariant).
    Crash,
}

/// The lab's exit status when a seed ended this way (`cargo lab run` and `repro`); several
/// failing seeds: the highest wins. 2 is bad input, decided before anything runs.
pub const EXIT_NONDETERMINISM: i32 = 5;
/// Exit code when a suite's `must_reach` probe was reached by none of its seeds.
pub const EXIT_COVERAGE: i32 = 6;

impl Verdict {
    /// 0 pass, 1 a violation, 3 a liveness failure, 4 a crash (TigerBeetle's simulator
    /// tells these apart the same way, so a CI script can too).
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Pass => 0,
            Verdict::Violation => 1,
            Verdict::Liveness => 3,
            Verdict::Crash => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Violation => "violation",
            Verdict::Liveness => "liveness",
            Verdict::Crash => "crash",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub sends_ok: u64,
    pub sends_unknown: u64,
    pub records_acknowledged: u64,
    pub polls: u64,
    pub records_read: u64,
    pub faults: u64,
}

/// The result of one seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub scenario: String,
    pub seed: u64,
    pub verdict: Verdict,
    /// Why the verdict is not pass, one line each.
    pub failures: Vec<String>,
    pub violations: Vec<Violation>,
    /// Broken replication or controller invariants (`crate::invariants`): the category
    /// `invariant`, forbidden unless the scenario says otherwise.
    pub invariants: Vec<InvariantViolation>,
    pub counters: Counters,
    pub history: History,
    pub events: Vec<Event>,
    /// FNV-1a over the history and events: equal for equal runs.
    pub trace_hash: u64,
    pub simulated_ns: u64,
    /// Not part of equality in spirit: wall time differs run to run. Kept out of the hash.
    pub wall_ms: u64,
    /// How often each coverage probe was reached (`faultline::probe`); probes never
    /// reached are absent.
    pub probes: BTreeMap<String, u64>,
    /// BUGGIFY sites reached: enabled for the run, and how often each fired.
    pub buggify: BTreeMap<String, (bool, u64)>,
    /// The settings this seed drew from lists in the scenario ("KEY = VALUE").
    pub settings: Vec<String>,
}

impl Outcome {
    /// Judge violations against the scenario's expectations.
    pub fn judge(scenario: &Scenario, violations: &[Violation]) -> Vec<String> {
        let mut failures = Vec::new();
        for anomaly in Anomaly::ALL {
            let found = violations.iter().filter(|v| v.anomaly == anomaly).count();
            match scenario.expectation(anomaly) {
                Expectation::Forbidden if found > 0 => {
                    failures.push(format!("forbidden {} found ({found})", anomaly.name()))
                }
                Expectation::Expected if found == 0 => {
                    failures.push(format!("expected {} not found", anomaly.name()))
                }
                _ => {}
            }
        }
        failures
    }

    /// Judge invariant violations against the scenario's `expect.invariant`.
    pub fn judge_invariants(scenario: &Scenario, invariants: &[InvariantViolation]) -> Vec<String> {
        // Committed batches overwritten are acknowledged records lost: where the scenario
        // allows lost writes, it allows that rule too.
        let loss_allowed = scenario.expectation(Anomaly::LostWrite) != Expectation::Forbidden;
        let invariants: Vec<&InvariantViolation> = invariants
            .iter()
            .filter(|v| !(loss_allowed && v.rule == crate::invariants::COMMITTED_BATCHES_AGREE))
            .collect();
        let found = invariants.len();
        match scenario.invariant_expectation {
            Expectation::Forbidden if found > 0 => vec![format!(
                "forbidden invariant broken ({found}): {}: {}",
                invariants[0].rule, invariants[0].message
            )],
            Expectation::Expected if found == 0 => {
                vec!["expected invariant violation not found".into()]
            }
            _ => Vec::new(),
        }
    }
}

/// An outcome with nothing in it, for tests to fill in.
#[cfg(test)]
pub(crate) fn tests_outcome() -> Outcome {
    Outcome {
        scenario: "s".into(),
        seed: 1,
        verdict: Verdict::Violation,
        failures: Vec::new(),
        violations: Vec::new(),
        invariants: Vec::new(),
        counters: Counters::default(),
        history: History::default(),
        events: Vec::new(),
        trace_hash: 0,
        simulated_ns: 0,
        wall_ms: 0,
        probes: BTreeMap::new(),
        buggify: BTreeMap::new(),
        settings: Vec::new(),
    }
}
