//! What a run records, in simulated time: every client operation (the history the checkers
//! read), the timeline of faults, phases and what nodes report (elections, controller
//! changes, truncations), and, through the observer, the invariant checker's input.

use crate::history::{History, Op, OpKind, Phase};
use crate::invariants::{Invariants, CONTROLLER_ID_BASE};
use crate::outcome::Event;
use faultline::observe::{self, Observation, Observer};
use madsim::time::Instant;
use std::sync::{Arc, Mutex};

/// Records everything clients and faults do, in simulated time.
pub(super) struct Recorder {
    pub(super) start: Instant,
    pub(super) history: History,
    pub(super) events: Vec<Event>,
}

pub(super) type Shared = Arc<Mutex<Recorder>>;

/// What the simulation hands back to be judged.
pub(super) struct Recorded {
    pub(super) history: History,
    pub(super) events: Vec<Event>,
    /// Why the liveness phase failed, if it did.
    pub(super) liveness_error: Option<String>,
    pub(super) simulated_ns: u64,
    /// Coverage probe counts of the run.
    pub(super) probes: std::collections::BTreeMap<String, u64>,
    /// BUGGIFY sites reached: (enabled, fired).
    pub(super) buggify: std::collections::BTreeMap<String, (bool, u64)>,
}

/// The run's recorder, and the observer that feeds it and the invariant checker. One
/// observer per run, on the run's own thread: madsim runs every node of this seed here,
/// and no other seed.
pub(super) fn install(invariants: &Arc<Mutex<Invariants>>) -> Shared {
    let rec: Shared = Arc::new(Mutex::new(Recorder {
        start: Instant::now(),
        history: History::default(),
        events: Vec::new(),
    }));
    observe::install(Arc::new(InvariantObserver {
        rec: rec.clone(),
        invariants: invariants.clone(),
    }));
    rec
}

pub(super) fn record(rec: &Shared, mut op: Op) -> usize {
    let mut r = rec.lock().unwrap();
    op.time_ns = Instant::now().duration_since(r.start).as_nanos() as u64;
    r.history.push(op)
}

pub(super) fn event(rec: &Shared, event: &str, what: &str, target: &str, source: &str) {
    let mut r = rec.lock().unwrap();
    let time_ns = Instant::now().duration_since(r.start).as_nanos() as u64;
    r.events.push(Event {
        time_ns,
        event: event.into(),
        what: what.into(),
        target: target.into(),
        source: source.into(),
    });
}

pub(super) fn op(process: &str, kind: OpKind, phase: Phase, topic: &str, partition: i32) -> Op {
    Op {
        index: 0,
        time_ns: 0,
        process: process.into(),
        kind,
        phase,
        topic: topic.into(),
        partition,
        values: Vec::new(),
        offset: None,
        records: Vec::new(),
        error: None,
        group: None,
        generation: None,
        member: None,
        members: Vec::new(),
        member_epoch: false,
    }
}

/// Feeds what nodes report to the run's invariant checker, stamped with simulated time.
struct InvariantObserver {
    rec: Shared,
    invariants: Arc<Mutex<Invariants>>,
}

impl Observer for InvariantObserver {
    fn observe(&self, observation: Observation) {
        let time_ns = {
            let r = self.rec.lock().unwrap();
            Instant::now().duration_since(r.start).as_nanos() as u64
        };
        // Elections, controller changes and truncations go on the run's timeline too: a
        // report reader sees when leadership moved relative to the faults.
        match &observation {
            Observation::BecameLeader {
                broker,
                topic,
                partition,
                leader_epoch,
                ..
            } => event(
                &self.rec,
                "leader",
                &format!("{topic}/{partition} epoch {leader_epoch}"),
                &format!("broker-{broker}"),
                "cluster",
            ),
            Observation::ControllerActive { node, term } => event(
                &self.rec,
                "active-controller",
                &format!("term {term}"),
                &format!("controller-{}", node - CONTROLLER_ID_BASE),
                "cluster",
            ),
            Observation::Truncated {
                broker,
                topic,
                partition,
                offset,
                ..
            } => event(
                &self.rec,
                "truncate",
                &format!("{topic}/{partition} to offset {offset}"),
                &format!("broker-{broker}"),
                "cluster",
            ),
            _ => {}
        }
        self.invariants
            .lock()
            .unwrap()
            .observe(time_ns, &observation);
    }
}
