//! Configuration of one quorum member: identity, voter set, timers and bounds, each with
//! its default and the reason for it, and the checks done before a node starts.

use super::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Kafka's `controller.quorum.election.timeout.ms` default.
pub const ELECTION_TIMEOUT_MS_DEFAULT: u64 = 1_000;
/// Kafka draws the election timeout from `[timeout, 2 * timeout)`; the jitter is what spreads
/// candidates apart so that split votes resolve.
pub const ELECTION_JITTER_MS_DEFAULT: u64 = 1_000;
/// How long the leader parks an empty fetch before answering it: the steady-state
/// heartbeat period in both directions. Kafka's fetch `max_wait_ms` for the quorum is 500;
/// we keep it well under the election timeout (see `Config::validate`).
pub const HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 100;
/// Entries per fetch response: bounds every message the core emits.
pub const APPEND_ENTRIES_MAX_DEFAULT: usize = 64;
/// Entries the leader accepts beyond its commit index before `propose` pushes back. Bounds
/// the memory a leader cut off from its quorum can accumulate and the work of repairing it.
pub const UNCOMMITTED_ENTRIES_MAX_DEFAULT: usize = 1_024;
/// A controller quorum is 3 or 5 voters; 9 leaves room and bounds every per-voter table.
pub const VOTERS_MAX: usize = 9;

/// Configuration of one node. Every node of a quorum must be given the same voter set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// This node's id; must be one of `voters`.
    pub id: NodeId,
    /// Ids of all voters, this node included (Kafka: `controller.quorum.voters`).
    pub voters: Vec<NodeId>,
    /// Base election timeout: a follower that has not heard from a leader for this long (plus
    /// jitter) starts an election; also the window of the leader's quorum check.
    pub election_timeout_ms: u64,
    /// Upper bound of the random part added to each election timeout.
    pub election_jitter_ms: u64,
    /// The leader answers a parked fetch after at most this long; followers retry a fetch
    /// after twice this; the leader re-announces itself to silent voters after twice this.
    pub heartbeat_interval_ms: u64,
    /// Maximum number of entries in one fetch response.
    pub append_entries_max: usize,
    /// Maximum number of entries past the commit index a leader accepts from `propose`.
    pub uncommitted_entries_max: usize,
}

/// Why a node refuses to start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    #[error("invalid config: {0}")]
    Config(&'static str),
    #[error("invalid persisted state: {0}")]
    PersistentState(String),
}

impl Config {
    /// A config with every timer and bound at its default.
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Config {
        Config {
            id,
            voters,
            election_timeout_ms: ELECTION_TIMEOUT_MS_DEFAULT,
            election_jitter_ms: ELECTION_JITTER_MS_DEFAULT,
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS_DEFAULT,
            append_entries_max: APPEND_ENTRIES_MAX_DEFAULT,
            uncommitted_entries_max: UNCOMMITTED_ENTRIES_MAX_DEFAULT,
        }
    }

    /// Check everything the node relies on; returns the voter set.
    pub(crate) fn validate(&self) -> Result<BTreeSet<NodeId>, InitError> {
        let voters: BTreeSet<NodeId> = self.voters.iter().copied().collect();
        if voters.len() != self.voters.len() {
            return Err(InitError::Config("voters contains a duplicate id"));
        }
        if voters.is_empty() || voters.len() > VOTERS_MAX {
            return Err(InitError::Config("voters must have 1 to VOTERS_MAX ids"));
        }
        if !voters.contains(&self.id) {
            return Err(InitError::Config("id must be one of voters"));
        }
        if self.heartbeat_interval_ms == 0 {
            return Err(InitError::Config("heartbeat_interval_ms must be positive"));
        }
        // A follower waits `fetch_retry_ms` (2 heartbeats) for a lost fetch, and the retry is
        // then parked up to one heartbeat: a healthy follower must hear from its leader well
        // within one election timeout, or it would start elections against a live leader.
        if self.heartbeat_interval_ms.saturating_mul(4) > self.election_timeout_ms {
            return Err(InitError::Config(
                "election_timeout_ms must be at least 4 * heartbeat_interval_ms",
            ));
        }
        if self.append_entries_max == 0 {
            return Err(InitError::Config("append_entries_max must be positive"));
        }
        if self.uncommitted_entries_max == 0 {
            return Err(InitError::Config(
                "uncommitted_entries_max must be positive",
            ));
        }
        Ok(voters)
    }

    /// How long the leader parks a fetch that has nothing new to return.
    pub(crate) fn fetch_park_ms(&self) -> u64 {
        self.heartbeat_interval_ms
    }

    /// How long a follower waits for a fetch response before sending the fetch again.
    pub(crate) fn fetch_retry_ms(&self) -> u64 {
        self.heartbeat_interval_ms.saturating_mul(2)
    }

    /// How long the leader waits for a fetch from a voter before announcing itself again.
    pub(crate) fn begin_quorum_epoch_resend_ms(&self) -> u64 {
        self.heartbeat_interval_ms.saturating_mul(2)
    }

    /// Votes needed to win an election or entries needed to commit.
    pub(crate) fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }
}
