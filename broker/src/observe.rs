//! What nodes tell an outside observer about the decisions they make, so that the lab can
//! check invariants while a run goes on rather than only from its final state: one leader
//! per partition and leader epoch, leader epochs and high watermarks that never go back, one
//! active controller per term, and a committed metadata log that never diverges.
//!
//! Reporting costs one thread-local lookup when nobody observes (every real deployment).
//! The lab installs an observer on the thread that runs a seed: madsim runs every node of a
//! run on that one thread, and runs of other seeds on threads of their own.

use std::cell::RefCell;
use std::sync::Arc;

/// One fact a node reports at the moment it acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// `broker` starts acting as leader of the partition in `leader_epoch`.
    BecameLeader {
        broker: i32,
        topic: String,
        partition: i32,
        leader_epoch: i32,
    },
    /// The leader's high watermark for the partition is now `high_watermark`.
    HighWatermark {
        broker: i32,
        topic: String,
        partition: i32,
        leader_epoch: i32,
        high_watermark: i64,
    },
    /// The leader appended (or a follower replicated) the batch `base_offset..=last_offset`
    /// with this CRC, written in `leader_epoch`.
    Batch {
        broker: i32,
        topic: String,
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

thread_local! {
    static OBSERVER: RefCell<Option<Arc<dyn Observer>>> = const { RefCell::new(None) };
}

/// Observe everything reported on this thread from now on (replaces any observer).
pub fn install(observer: Arc<dyn Observer>) {
    OBSERVER.with(|o| *o.borrow_mut() = Some(observer));
}

/// Stop observing on this thread.
pub fn uninstall() {
    OBSERVER.with(|o| *o.borrow_mut() = None);
}

/// Whether anyone observes on this thread (skip building costly observations otherwise).
pub fn active() -> bool {
    OBSERVER.with(|o| o.borrow().is_some())
}

/// Report a fact to this thread's observer, if any.
pub fn report(observation: Observation) {
    let observer = OBSERVER.with(|o| o.borrow().clone());
    if let Some(observer) = observer {
        observer.observe(observation);
    }
}
