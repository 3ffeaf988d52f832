//! Consensus for the controller quorum: a pure, sans-IO Raft state machine in KRaft's shape.
//!
//! 3 or 5 controller nodes replicate one metadata log. This module decides everything and
//! does nothing: no sockets, no clock, no RNG, no threads. The shell around it owns those
//! and drives one [`Raft`] per node.
//!
//! # Protocol
//! Raft (elections, the election restriction, log matching, commit by counting replicas only
//! for entries of the leader's term, a no-op `LeaderChange` entry at the start of each term)
//! with KRaft's messages and its pull replication:
//! - elections: a node whose election timer fires first asks for pre-votes (KIP-996) for
//!   `term + 1` without changing its term; voters refuse while they hear from a live leader.
//!   Only with a quorum of pre-votes does it increment its term and ask for real votes.
//! - a new leader announces itself with `BeginQuorumEpoch`, and again to voters that do not
//!   fetch from it; a voter in a newer term refuses it with `BeginQuorumEpochResponse`, so a
//!   leader left behind by a failed election learns the newer term;
//! - followers pull with `Fetch { last_index, last_term }` (Kafka: fetch offset and last
//!   fetched epoch). The leader answers with entries, or with the diverging point when the
//!   follower's log does not match, or parks the fetch for up to one heartbeat interval when
//!   there is nothing new (a long poll). A follower's fetch is its acknowledgement, and its
//!   arrival at the leader is the heartbeat in both directions;
//! - check-quorum: a leader that no quorum has fetched from for an election timeout resigns.
//!
//! Names: Raft's term and index; Kafka's leader epoch is `term`, a record's offset is
//! `index - 1`, the log end offset is `last_index`, the high watermark is `commit_index`.
//!
//! # Driving a node (the contract)
//! 1. Call [`Raft::handle`] for each message received, [`Raft::tick`] when the clock reaches
//!    [`Raft::tick_deadline_ms`], and [`Raft::propose`] for new commands, in any mix and
//!    number. `now_ms` is the shell's clock (it may stand still; going backwards is ignored);
//!    `random` is a fresh draw from the shell's seeded RNG each call.
//! 2. Drain [`Raft::poll_persist`] and make each request durable, in order: the hard state
//!    (term, vote) first, then the log write (see [`PersistentState::apply`]).
//! 3. Only then send the envelopes from [`Raft::poll_messages`].
//! 4. Only then apply the entries from [`Raft::poll_committed`].
//!
//! Why the order: a vote or a fetch is a promise about durable state (a vote is never given
//! twice in a term; a fetch from `last_index` tells the leader those entries are safe on this
//! node), and a leader counts its own log towards a commit. A crash before step 2 completes
//! loses only what nothing outside the node has seen. On restart, hand [`Raft::new`] exactly
//! what step 2 made durable.
//!
//! # Guarantees the simulator checks
//! Election Safety, Log Matching, Leader Completeness, State Machine Safety, committed
//! entries never removed from a log, in-order exactly-once `poll_committed` per run, and
//! liveness once faults heal (`sim.rs`, over seeded random faults and a scripted figure 8).
//! Internal invariants are asserted after every input and stay on in release builds: a
//! failed one is a bug, never a reaction to message content.
//!
//! # Not here yet
//! Snapshots and log compaction, membership changes, observers (non-voting fetchers),
//! graceful resignation (`EndQuorumEpoch`), a byte bound on fetch responses, and the wire
//! encoding of messages (they derive serde).
//!
//! **Architecture invariant:** the module knows nothing of metadata records (payloads are
//! opaque) nor of how messages travel or how state is stored.

mod config;
mod message;
mod node;
mod persist;
#[cfg(test)]
mod sim;

pub use config::{
    Config, InitError, APPEND_ENTRIES_MAX_DEFAULT, ELECTION_JITTER_MS_DEFAULT,
    ELECTION_TIMEOUT_MS_DEFAULT, HEARTBEAT_INTERVAL_MS_DEFAULT, UNCOMMITTED_ENTRIES_MAX_DEFAULT,
    VOTERS_MAX,
};
pub use message::{Envelope, FetchResult, Message};
pub use node::{ProposeError, Raft, Role};
pub use persist::{Entry, EntryKind, HardState, LogWrite, PersistRequest, PersistentState};

/// A controller's id (Kafka: `node.id`).
pub type NodeId = i32;
