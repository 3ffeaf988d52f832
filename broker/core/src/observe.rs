//! What nodes tell an outside observer about the decisions they make, so that the lab can
//! check invariants while a run goes on rather than only from its final state: one leader
//! per partition and leader epoch, leader epochs and high watermarks that never go back, one
//! active controller per term, and a committed metadata log that never diverges.
//!
//! # The one thread-local in node code, and why
//!
//! The core crate's rule is that nothing outside a state machine's arguments decides what
//! it does. This module is the one exception, kept to what the lab needs to watch and
//! perturb a run: the observer that receives `Observation`s, the deliberate-bug switch
//! of `crate::mutation` (compiled away without the `mutations` feature), the coverage
//! probe counts of `crate::probe` and BUGGIFY's seeded draws of `crate::buggify` (both
//! compiled away outside the simulated build) share one per-thread slot, [`HOOKS`].
//! BUGGIFY is the one hook that changes what a node does, and only within what the code
//! must tolerate anyway (a perturbation a real system could produce). Why a thread-local rather than a handle passed in:
//! - reports come from deep inside pure state machines (a follower's truncation, a
//!   leader's high watermark); threading a handle through every constructor and call
//!   would widen every signature for something that does nothing outside the lab;
//! - madsim runs every node of a seed on the one thread that runs the seed, and seeds run
//!   on threads of their own, so "this thread" is exactly "this run";
//! - apart from BUGGIFY it is write-only for deciding code: a node can ask `active()` only to skip building
//!   an observation nobody will read; what it reports cannot change what it does.
//!
//! Reporting costs one thread-local lookup when nobody observes (every real deployment).

use std::cell::RefCell;
use std::sync::Arc;

/// One fact a node reports at the moment it acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// `broker` starts acting as leader of the partition in `leader_epoch`.
    BecameLeader {
        broker: i32,
        topic: String,
        /// The topic's id: a topic deleted and created again under its name is another
        /// topic, whose epochs and offsets start over.
        topic_id: u128,
        partition: i32,
        leader_epoch: i32,
    },
    /// The leader's high watermark for the partition is now `high_watermark`.
    HighWatermark {
        broker: i32,
        topic: String,
        /// The topic's id: a topic deleted and created again under its name is another
        /// topic, whose epochs and offsets start over.
        topic_id: u128,
        partition: i32,
        leader_epoch: i32,
        high_watermark: i64,
    },
    /// The leader appended (or a follower replicated) the batch `base_offset..=last_offset`
    /// with this CRC, written in `leader_epoch`.
    Batch {
        broker: i32,
        topic: String,
        /// The topic's id: a topic deleted and created again under its name is another
        /// topic, whose epochs and offsets start over.
        topic_id: u128,
        partition: i32,
        base_offset: i64,
        last_offset: i64,
        crc: u32,
        leader_epoch: i32,
    },
    /// `broker` truncated its log of the partition to `offset` (follower truncation).
    Truncated {
        broker: i32,
        topic: String,
        /// The topic's id: a topic deleted and created again under its name is another
        /// topic, whose epochs and offsets start over.
        topic_id: u128,
        partition: i32,
        offset: i64,
    },
    /// Controller `node` became the active controller of `term`.
    ControllerActive { node: i32, term: u64 },
    /// Controller `node` applied the committed metadata entry `index` of `term`, whose
    /// payload hashes to `digest`.
    MetadataCommitted {
        node: i32,
        index: u64,
        term: u64,
        digest: u64,
    },
    /// A node restarted: facts it reported before are from an earlier incarnation.
    Started { node: String },
}

pub trait Observer {
    fn observe(&self, observation: Observation);
}

/// What the lab has hooked into the nodes running on one thread.
#[derive(Default)]
pub(crate) struct Hooks {
    pub(crate) observer: Option<Arc<dyn Observer>>,
    pub(crate) mutation: Option<crate::mutation::Mutation>,
    /// Coverage probe counts, while the lab counts (`crate::probe`).
    pub(crate) probes: Option<std::collections::BTreeMap<&'static str, u64>>,
    /// BUGGIFY's seeded draws, while the lab has it on (`crate::buggify`).
    pub(crate) buggify: Option<crate::buggify::Buggify>,
}

thread_local! {
    /// The one per-thread slot of node code (see the module documentation).
    pub(crate) static HOOKS: RefCell<Hooks> = RefCell::new(Hooks::default());
}

/// Observe everything reported on this thread from now on (replaces any observer).
pub fn install(observer: Arc<dyn Observer>) {
    HOOKS.with(|h| h.borrow_mut().observer = Some(observer));
}

/// Stop observing on this thread.
pub fn uninstall() {
    HOOKS.with(|h| h.borrow_mut().observer = None);
}

/// Whether anyone observes on this thread (skip building costly observations otherwise).
pub fn active() -> bool {
    HOOKS.with(|h| h.borrow().observer.is_some())
}

/// Report a fact to this thread's observer, if any.
pub fn report(observation: Observation) {
    let observer = HOOKS.with(|h| h.borrow().observer.clone());
    if let Some(observer) = observer {
        observer.observe(observation);
    }
}
