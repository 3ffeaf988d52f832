//! Deliberate bugs, for the lab's negative tests: a checker is only trusted once it has
//! caught the bug it claims to catch (FoundationDB's practice; the Raft core has its own,
//! test-only set in `raft::node`).
//!
//! A mutation is switched on per thread (the lab runs each seed on a thread of its own; the
//! switch lives in the lab's one per-thread slot, `observe::HOOKS`, whose documentation
//! says why) and only takes effect in builds with the `mutations` feature, which only the
//! lab's own tests enable: everywhere else `is` is the constant `false` and the bug
//! compiles away.

use crate::observe::HOOKS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    /// The leader acknowledges acks=all produces as soon as it has appended them, without
    /// waiting for the ISR (acks=all silently behaving like acks=1).
    AckBeforeReplication,
    /// Replicas stop reporting the batches they write to the lab (an observer gone
    /// blind: what the lab's `observer-sees-commits` check exists for).
    SilentBatchReports,
}

/// Switch `mutation` on (or all off) for code running on this thread.
pub fn set(mutation: Option<Mutation>) {
    HOOKS.with(|h| h.borrow_mut().mutation = mutation);
}

/// Whether `mutation` is on here. Always false without the `mutations` feature.
pub fn is(mutation: Mutation) -> bool {
    cfg!(feature = "mutations") && HOOKS.with(|h| h.borrow().mutation == Some(mutation))
}
