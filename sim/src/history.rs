//! The history of a run: every client operation, as an invoke followed by its completion
//! (ok, fail, or info = outcome unknown), with the simulated time. The checkers read only
//! this; the runner only writes it.
//!
//! Every produced record carries a value unique within the run, so a record can be traced
//! from the send that made it to every read that saw it.

use serde::{Deserialize, Serialize};

/// What a client did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    /// A producer sent one batch of records to one partition.
    Send,
    /// A consumer fetched from one partition.
    Poll,
    /// A consumer moved its position (assignment, seek, offset reset). The next poll of
    /// that partition by that process may start anywhere.
    Seek,
    /// A group member (re)joined its group: invoke when it sends JoinGroup, ok with the
    /// generation it got (once SyncGroup answered), fail / info when the attempt ended
    /// without one. `topic` is empty and `partition` -1.
    Join,
    /// A group member owns a partition in a generation: one ok entry per owned partition
    /// (kept ones included, so a cooperative member that keeps a partition across
    /// generations records it again), written when SyncGroup's answer is applied.
    Assign,
    /// A group member gave up a partition it owned (`generation` is the one it owned it
    /// in): ok when the application's revoke callback ran, info with `error = "lost"` when
    /// the member found itself out of the group (session expired, fenced) and dropped it
    /// without a clean revoke.
    Revoke,
    /// A group member committed an offset (`offset`: the next record to consume, Kafka's
    /// meaning) for one partition of its group, with its generation and member id:
    /// invoke, then ok (the coordinator acknowledged), fail (refused: stale generation,
    /// unknown member, fenced, rebalance in progress) or info (no answer).
    Commit,
    /// A group member's application finished processing records of one partition:
    /// one ok entry, `records` the (offset, value) pairs processed, in order. Records a
    /// member polled but had not processed when it crashed or lost the partition are not
    /// here.
    Process,
    /// An operator moved a group's committed offset on purpose (`faultline consumer-groups
    /// --reset-offsets`): ok with the new `offset`. A committed offset may go back only
    /// across one of these.
    Reset,
}

/// Where an operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Invoke,
    /// Definitely happened (a send was acknowledged; a poll returned).
    Ok,
    /// Definitely did not happen (the broker refused it with a non-retriable error before
    /// appending).
    Fail,
    /// Unknown: timed out, connection lost. It may or may not have taken effect.
    Info,
}

/// One history entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Position in the history, from 0.
    pub index: usize,
    /// Simulated nanoseconds since the run started.
    pub time_ns: u64,
    /// The client process: a producer or consumer name from the scenario, or
    /// "final-reader" for the liveness phase's read.
    pub process: String,
    pub kind: OpKind,
    pub phase: Phase,
    pub topic: String,
    pub partition: i32,
    /// Send: the values of the batch's records, in order (same on invoke and completion).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Send ok: offset of the batch's first record (records are at offset, offset+1, ...).
    /// Seek: the new position. Poll: the position the fetch started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// Poll ok: the (offset, value) pairs returned, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<(i64, String)>,
    /// Fail / info: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Group operations (join, assign, revoke, commit, process, reset): the group id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Group operations: the generation the member acted in (join ok: the one it got).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i32>,
    /// Group operations: the member id the coordinator gave this member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// Join info (recorded by the generation's leader): the members the coordinator put in
    /// the generation without a `group.instance.id` (static members may stay in one
    /// without rejoining; dynamic ones may not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// Group operations of a KIP-848 member: `generation` is the member's own epoch
    /// (members move to a new epoch one at a time), not a group-wide generation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub member_epoch: bool,
}

/// A whole history, in the order operations were recorded. A consumer process has at most
/// one operation outstanding; a producer may have several sends of one partition
/// outstanding (batches in flight), each completion carrying its invoke's values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub ops: Vec<Op>,
}

impl History {
    /// Append an operation, assigning its index.
    pub fn push(&mut self, mut op: Op) -> usize {
        op.index = self.ops.len();
        self.ops.push(op);
        self.ops.len() - 1
    }

    /// Completions of a kind (ok, fail and info), in history order.
    pub fn completions(&self, kind: OpKind) -> impl Iterator<Item = &Op> {
        self.ops
            .iter()
            .filter(move |o| o.kind == kind && o.phase != Phase::Invoke)
    }
}

/// The anomalies the lab looks for (see `shared/notes/anomalies.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Anomaly {
    /// An acknowledged record is gone: reads went past its offset without seeing it there.
    LostWrite,
    /// An acknowledged record was never read, even by the final read.
    Unseen,
    /// One record (unique value) at more than one offset.
    Duplicate,
    /// One offset of a partition returned with two different records.
    InconsistentOffsets,
    /// One producer's later acknowledged record on a partition at a lower offset.
    NonmonotonicSend,
    /// A consumer's next read of a partition starts at or before where its previous one ended.
    NonmonotonicPoll,
    /// A consumer's consecutive reads of a partition skip offsets that exist.
    PollSkip,
    /// A read_committed consumer saw an aborted record (needs transactions).
    AbortedRead,
    /// A read returned a record whose send the broker definitively refused.
    FailedVisible,
    /// The broker served a batch that fails its checks (CRC, length, magic): bytes no
    /// producer wrote, refused by the consumer.
    CorruptRead,
    /// Two members of one group generation own the same partition.
    SplitOwnership,
    /// A group's acknowledged committed offset for a partition went backwards with no
    /// reset between.
    CommitRegression,
    /// A group acknowledged a commit past records of the partition that no member of the
    /// group ever processed.
    CommitSkip,
    /// A commit acknowledged although the group had moved to a newer generation, or the
    /// member had been replaced, before it was sent.
    StaleCommit,
    /// One record processed more than once by the members of one group.
    ProcessedTwice,
    /// A generation held a dynamic member (no `group.instance.id`) that had not asked to
    /// join since its previous generation: the coordinator kept a member that did not
    /// rejoin during the join phase (Kafka removes it when the phase ends).
    AbsentMember,
}

impl Anomaly {
    pub const ALL: [Anomaly; 16] = [
        Anomaly::LostWrite,
        Anomaly::Unseen,
        Anomaly::Duplicate,
        Anomaly::InconsistentOffsets,
        Anomaly::NonmonotonicSend,
        Anomaly::NonmonotonicPoll,
        Anomaly::PollSkip,
        Anomaly::AbortedRead,
        Anomaly::FailedVisible,
        Anomaly::CorruptRead,
        Anomaly::SplitOwnership,
        Anomaly::CommitRegression,
        Anomaly::CommitSkip,
        Anomaly::StaleCommit,
        Anomaly::ProcessedTwice,
        Anomaly::AbsentMember,
    ];

    /// The kebab-case name used in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Anomaly::LostWrite => "lost-write",
            Anomaly::Unseen => "unseen",
            Anomaly::Duplicate => "duplicate",
            Anomaly::InconsistentOffsets => "inconsistent-offsets",
            Anomaly::NonmonotonicSend => "nonmonotonic-send",
            Anomaly::NonmonotonicPoll => "nonmonotonic-poll",
            Anomaly::PollSkip => "poll-skip",
            Anomaly::AbortedRead => "aborted-read",
            Anomaly::FailedVisible => "failed-visible",
            Anomaly::CorruptRead => "corrupt-read",
            Anomaly::SplitOwnership => "split-ownership",
            Anomaly::CommitRegression => "commit-regression",
            Anomaly::CommitSkip => "commit-skip",
            Anomaly::StaleCommit => "stale-commit",
            Anomaly::ProcessedTwice => "processed-twice",
            Anomaly::AbsentMember => "absent-member",
        }
    }
}

/// One anomaly found, with the operations that show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub anomaly: Anomaly,
    pub topic: String,
    pub partition: i32,
    /// A sentence a person can read: what was expected and what was seen.
    pub message: String,
    /// History indices of the operations that show it, most telling first.
    pub ops: Vec<usize>,
}
