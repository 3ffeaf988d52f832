//! The messages quorum members exchange: KRaft's shape (Vote with pre-vote,
//! BeginQuorumEpoch, and pull replication through Fetch), with Raft's names for term and
//! index. Every message is bounded: fetch responses carry at most `append_entries_max`
//! entries, everything else is fixed size.

use super::persist::Entry;
use super::NodeId;
use serde::{Deserialize, Serialize};

/// A message with its addresses. The shell delivers `message` to `to` and hands it to
/// `Raft::handle` as it came; `from` must be the sender's real id (authenticated by the
/// transport), as every decision about a message is per sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub from: NodeId,
    pub to: NodeId,
    pub message: Message,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Ask for a vote. A pre-vote (KIP-996) asks "would you vote for me in `term`?" without
    /// either side changing state; `term` is then the candidate's term + 1. `last_index` and
    /// `last_term` describe the candidate's log for the election restriction.
    Vote {
        term: u64,
        last_index: u64,
        last_term: u64,
        pre_vote: bool,
    },
    /// `term` is the voter's term, or the requested term for a granted pre-vote.
    VoteResponse {
        term: u64,
        granted: bool,
        pre_vote: bool,
    },
    /// A new leader announces itself to every voter (and again to voters it does not hear
    /// from), so that they know whom to fetch from.
    BeginQuorumEpoch {
        term: u64,
    },
    /// Sent only to refuse a `BeginQuorumEpoch` of an older term: tells a leader that the
    /// quorum moved on. Without it a leader holding a quorum in an old term and voters stuck
    /// in a newer one (after a failed election) would ignore each other for ever.
    BeginQuorumEpochResponse {
        term: u64,
    },
    /// A follower asks the leader for entries after `last_index`. Its log holds
    /// `1..=last_index` durably and the entry at `last_index` has `last_term` (Kafka:
    /// `fetch_offset` and `last_fetched_epoch`). `commit_index` is the follower's high
    /// watermark; the leader parks a fetch that would return nothing new.
    Fetch {
        term: u64,
        last_index: u64,
        last_term: u64,
        commit_index: u64,
    },
    FetchResponse {
        term: u64,
        result: FetchResult,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchResult {
    /// The fetcher's log matches the leader's through `(prev_index, prev_term)` (echoed from
    /// the fetch); `entries` follow it. `commit_index` is the leader's high watermark.
    Entries {
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit_index: u64,
    },
    /// The fetcher's entry at `prev_index` (term `prev_term`, echoed) is not in the leader's
    /// log. `end_index` is the last leader entry with a term at most `prev_term`, and
    /// `end_term` its term (Kafka: the diverging epoch and its end offset). The fetcher
    /// truncates to the lower of `end_index` and its own last entry with a term at most
    /// `end_term`, then fetches again.
    Diverging {
        prev_index: u64,
        prev_term: u64,
        end_index: u64,
        end_term: u64,
    },
    /// The responder is not the leader of the fetch's term. `leader_hint` is the leader of
    /// the response's `term`, if the responder knows it.
    NotLeader { leader_hint: Option<NodeId> },
}

impl Message {
    /// The sender's term as carried by the message (a pre-vote carries the term it asks for).
    pub fn term(&self) -> u64 {
        match self {
            Message::Vote { term, .. }
            | Message::VoteResponse { term, .. }
            | Message::BeginQuorumEpoch { term }
            | Message::BeginQuorumEpochResponse { term }
            | Message::Fetch { term, .. }
            | Message::FetchResponse { term, .. } => *term,
        }
    }
}
