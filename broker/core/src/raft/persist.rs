//! What a node keeps on disk: log entries, the term and vote, the state handed to `Raft::new`
//! on start, and the requests the node emits for the shell to make durable.

use super::NodeId;
use serde::{Deserialize, Serialize};

/// One entry of the replicated metadata log. Indexes start at 1; index 0 with term 0 stands
/// for the empty log. In Kafka terms: `index - 1` is the record offset, `term` the leader
/// epoch that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub index: u64,
    pub term: u64,
    pub kind: EntryKind,
    /// Opaque to consensus (metadata records). Empty for `LeaderChange`.
    pub payload: Vec<u8>,
}

/// Why an entry exists. Consumers of `poll_committed` apply `Command`s and skip the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// The entry a new leader appends at the start of its term so that it can commit it (and
    /// with it every earlier entry) by counting replicas. Kafka: the LeaderChange control
    /// record.
    LeaderChange,
    /// A payload given to `propose`.
    Command,
}

/// The term and vote, written together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HardState {
    pub term: u64,
    pub voted_for: Option<NodeId>,
}

/// Everything a node persisted: what it is started from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PersistentState {
    pub hard_state: HardState,
    /// Contiguous from index 1, terms non-decreasing and at most `hard_state.term`.
    pub log: Vec<Entry>,
}

/// Changes that must be durable before the shell sends any message polled after them or
/// acts on any committed entry polled after them (see the crate docs for the full order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistRequest {
    /// Write first, if present.
    pub hard_state: Option<HardState>,
    /// Then apply to the log, if present.
    pub log_write: Option<LogWrite>,
}

/// Replace every log entry after `after_index` by `entries` (which may be empty: a pure
/// truncation). `entries` are contiguous from `after_index + 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogWrite {
    pub after_index: u64,
    pub entries: Vec<Entry>,
}

impl PersistentState {
    /// Apply a request the way a shell's storage must: hard state first, then the log. A
    /// reference for shells and the model the simulator's disk uses.
    pub fn apply(&mut self, request: &PersistRequest) {
        if let Some(hard_state) = request.hard_state {
            self.hard_state = hard_state;
        }
        if let Some(write) = &request.log_write {
            let keep = usize::try_from(write.after_index).unwrap_or(usize::MAX);
            assert!(
                keep <= self.log.len(),
                "log write after index {} but the log ends at {}",
                write.after_index,
                self.log.len()
            );
            self.log.truncate(keep);
            self.log.extend(write.entries.iter().cloned());
        }
    }

    /// Check the shape `Raft::new` relies on.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let mut previous_term = 0;
        for (position, entry) in self.log.iter().enumerate() {
            let index_expected = position as u64 + 1;
            if entry.index != index_expected {
                return Err(format!(
                    "entry at position {position} has index {} (expected {index_expected})",
                    entry.index
                ));
            }
            if entry.term == 0 || entry.term < previous_term {
                return Err(format!(
                    "entry {} has term {} after term {previous_term}",
                    entry.index, entry.term
                ));
            }
            previous_term = entry.term;
        }
        if previous_term > self.hard_state.term {
            return Err(format!(
                "last log term {previous_term} is above the persisted term {}",
                self.hard_state.term
            ));
        }
        Ok(())
    }
}
