//! Terse histories for the checkers' tests, and the one helper every case goes through.
//!
//! ```text
//! let mut h = Case::new();
//! let sent = h.send("p1", "t", 0, &["a", "b"]).ok(5);          // invoke + ok
//! let read = h.poll("c1", "t", 0, 5).ok(&[(5, "a"), (6, "b")]); // invoke + ok
//! let open = h.send("p2", "t", 0, &["c"]).pending();            // invoke only ...
//! h.complete_send(open, Phase::Info, None);                     // ... completed later
//! check_case(&h, &[(Anomaly::LostWrite, &[sent.done, sent.invoke, read.done])]);
//! ```
//! Group members are written with a [`Member`]:
//!
//! ```text
//! let a = Member::new("c1", "g", "m1");
//! h.join(a).ok_in(1);                               // join invoke + ok in generation 1
//! h.assign(a, 1, "t", 0);                           // owns t/0 in generation 1
//! h.process(a, 1, "t", 0, &[(0, "a"), (1, "b")]);   // processed offsets 0 and 1
//! let c = h.commit(a, 1, "t", 0, 2).ok();           // commit invoke + ok
//! ```
//! Every operation advances the clock by one millisecond.

use crate::history::{Anomaly, History, Op, OpKind, Phase};

use super::{check, CheckOptions};

/// A history being written, with the options to check it with.
#[derive(Debug, Clone, Default)]
pub(crate) struct Case {
    pub history: History,
    pub options: CheckOptions,
    /// The time of the last operation; the next one is a millisecond later.
    pub clock_ns: u64,
}

/// An operation written as invoke and completion.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Done {
    pub invoke: usize,
    pub done: usize,
}

pub(crate) struct SendCall<'c> {
    case: &'c mut Case,
    invoke: usize,
}

pub(crate) struct PollCall<'c> {
    case: &'c mut Case,
    invoke: usize,
}

/// A consumer group member: its process, group and member id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Member<'m> {
    pub process: &'m str,
    pub group: &'m str,
    pub id: &'m str,
}

impl<'m> Member<'m> {
    pub fn new(process: &'m str, group: &'m str, id: &'m str) -> Self {
        Member { process, group, id }
    }

    /// A blank group op of this member.
    fn op(
        &self,
        kind: OpKind,
        phase: Phase,
        generation: Option<i32>,
        topic: &str,
        partition: i32,
    ) -> Op {
        let mut op = blank(self.process, kind, phase, topic, partition);
        op.group = Some(self.group.to_string());
        op.member = Some(self.id.to_string());
        op.generation = generation;
        op
    }
}

/// A group operation written as invoke and completion (join, commit, reset).
pub(crate) struct GroupCall<'c> {
    case: &'c mut Case,
    invoke: usize,
}

const TICK_NS: u64 = 1_000_000;

impl Case {
    pub fn new() -> Self {
        Case::default()
    }

    /// Declares that `process` promises per-partition order.
    pub fn ordered(&mut self, process: &str) -> &mut Self {
        self.options.producers_ordered.insert(process.to_string());
        self
    }

    pub fn send(
        &mut self,
        process: &str,
        topic: &str,
        partition: i32,
        values: &[&str],
    ) -> SendCall<'_> {
        let mut op = blank(process, OpKind::Send, Phase::Invoke, topic, partition);
        op.values = values.iter().map(|v| v.to_string()).collect();
        let invoke = self.push(op);
        SendCall { case: self, invoke }
    }

    pub fn poll(&mut self, process: &str, topic: &str, partition: i32, from: i64) -> PollCall<'_> {
        let mut op = blank(process, OpKind::Poll, Phase::Invoke, topic, partition);
        op.offset = Some(from);
        let invoke = self.push(op);
        PollCall { case: self, invoke }
    }

    pub fn seek(&mut self, process: &str, topic: &str, partition: i32, to: i64) -> usize {
        let mut op = blank(process, OpKind::Seek, Phase::Ok, topic, partition);
        op.offset = Some(to);
        self.push(op)
    }

    /// Completes the send invoked at `invoke`: `offset` is the acknowledged first offset.
    pub fn complete_send(&mut self, invoke: usize, phase: Phase, offset: Option<i64>) -> usize {
        let mut op = self.history.ops[invoke].clone();
        assert_eq!(op.kind, OpKind::Send);
        op.phase = phase;
        op.offset = offset;
        op.error = match phase {
            Phase::Fail => Some("NOT_LEADER_OR_FOLLOWER".to_string()),
            Phase::Info => Some("timed out".to_string()),
            _ => None,
        };
        self.push(op)
    }

    /// Completes the poll invoked at `invoke` with the records it returned.
    pub fn complete_poll(&mut self, invoke: usize, records: &[(i64, &str)]) -> usize {
        let mut op = self.history.ops[invoke].clone();
        assert_eq!(op.kind, OpKind::Poll);
        op.phase = Phase::Ok;
        op.records = records.iter().map(|(o, v)| (*o, v.to_string())).collect();
        self.push(op)
    }

    /// Completes the poll invoked at `invoke` as timed out.
    pub fn time_out_poll(&mut self, invoke: usize) -> usize {
        let mut op = self.history.ops[invoke].clone();
        assert_eq!(op.kind, OpKind::Poll);
        op.phase = Phase::Info;
        op.error = Some("timed out".to_string());
        self.push(op)
    }

    /// The poll was served a corrupt batch (a definite failure of the read).
    pub fn corrupt_poll(&mut self, invoke: usize) -> usize {
        let mut op = self.history.ops[invoke].clone();
        assert_eq!(op.kind, OpKind::Poll);
        op.phase = Phase::Fail;
        op.error = Some(format!(
            "corrupt batch from {}-{}: CRC mismatch",
            op.topic, op.partition
        ));
        self.push(op)
    }

    /// `member` sends JoinGroup; complete with the generation it gets.
    pub fn join(&mut self, member: Member<'_>) -> GroupCall<'_> {
        let invoke = self.push(member.op(OpKind::Join, Phase::Invoke, None, "", -1));
        GroupCall { case: self, invoke }
    }

    /// `leader` was given `generation`'s dynamic members (as the lab records a JoinGroup
    /// answer to the leader).
    pub fn led(&mut self, leader: Member<'_>, generation: i32, members: &[&str]) -> usize {
        let mut op = leader.op(OpKind::Join, Phase::Info, Some(generation), "", -1);
        op.members = members.iter().map(|m| m.to_string()).collect();
        self.push(op)
    }

    /// Every group op so far is a KIP-848 member's: its generation is the member's own
    /// epoch.
    pub fn kip848(&mut self) {
        for op in self.history.ops.iter_mut() {
            op.member_epoch = true;
        }
    }

    /// `member` owns `topic`/`partition` in `generation`.
    pub fn assign(
        &mut self,
        member: Member<'_>,
        generation: i32,
        topic: &str,
        partition: i32,
    ) -> usize {
        self.push(member.op(
            OpKind::Assign,
            Phase::Ok,
            Some(generation),
            topic,
            partition,
        ))
    }

    /// `member` gave up `topic`/`partition`, owned in `generation`, cleanly.
    pub fn revoke(
        &mut self,
        member: Member<'_>,
        generation: i32,
        topic: &str,
        partition: i32,
    ) -> usize {
        self.push(member.op(
            OpKind::Revoke,
            Phase::Ok,
            Some(generation),
            topic,
            partition,
        ))
    }

    /// `member` found itself out of the group and dropped `topic`/`partition`.
    pub fn lose(
        &mut self,
        member: Member<'_>,
        generation: i32,
        topic: &str,
        partition: i32,
    ) -> usize {
        let mut op = member.op(
            OpKind::Revoke,
            Phase::Info,
            Some(generation),
            topic,
            partition,
        );
        op.error = Some("lost".to_string());
        self.push(op)
    }

    /// `member` commits `offset` (the next record to consume) of `topic`/`partition`.
    pub fn commit(
        &mut self,
        member: Member<'_>,
        generation: i32,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> GroupCall<'_> {
        let mut op = member.op(
            OpKind::Commit,
            Phase::Invoke,
            Some(generation),
            topic,
            partition,
        );
        op.offset = Some(offset);
        let invoke = self.push(op);
        GroupCall { case: self, invoke }
    }

    /// `member`'s application processed `records` of `topic`/`partition`.
    pub fn process(
        &mut self,
        member: Member<'_>,
        generation: i32,
        topic: &str,
        partition: i32,
        records: &[(i64, &str)],
    ) -> usize {
        let mut op = member.op(
            OpKind::Process,
            Phase::Ok,
            Some(generation),
            topic,
            partition,
        );
        op.records = records.iter().map(|(o, v)| (*o, v.to_string())).collect();
        self.push(op)
    }

    /// An operator moves `group`'s committed offset of `topic`/`partition` to `offset`.
    pub fn reset(
        &mut self,
        process: &str,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> GroupCall<'_> {
        let mut op = blank(process, OpKind::Reset, Phase::Invoke, topic, partition);
        op.group = Some(group.to_string());
        op.offset = Some(offset);
        let invoke = self.push(op);
        GroupCall { case: self, invoke }
    }

    /// Completes the group call (join, commit or reset) invoked at `invoke`; a join ok
    /// gets `generation`.
    pub fn complete_group(
        &mut self,
        invoke: usize,
        phase: Phase,
        generation: Option<i32>,
    ) -> usize {
        let mut op = self.history.ops[invoke].clone();
        assert!(matches!(
            op.kind,
            OpKind::Join | OpKind::Commit | OpKind::Reset
        ));
        op.phase = phase;
        if op.kind == OpKind::Join {
            op.generation = generation;
        }
        op.error = match phase {
            Phase::Fail => Some("ILLEGAL_GENERATION".to_string()),
            Phase::Info => Some("timed out".to_string()),
            _ => None,
        };
        self.push(op)
    }

    fn push(&mut self, mut op: Op) -> usize {
        self.clock_ns += TICK_NS;
        op.time_ns = self.clock_ns;
        self.history.push(op)
    }
}

impl SendCall<'_> {
    pub fn ok(self, offset: i64) -> Done {
        let done = self
            .case
            .complete_send(self.invoke, Phase::Ok, Some(offset));
        Done {
            invoke: self.invoke,
            done,
        }
    }

    pub fn fail(self) -> Done {
        let done = self.case.complete_send(self.invoke, Phase::Fail, None);
        Done {
            invoke: self.invoke,
            done,
        }
    }

    pub fn info(self) -> Done {
        let done = self.case.complete_send(self.invoke, Phase::Info, None);
        Done {
            invoke: self.invoke,
            done,
        }
    }

    /// Leaves the send outstanding; returns its invoke.
    pub fn pending(self) -> usize {
        self.invoke
    }
}

impl PollCall<'_> {
    pub fn ok(self, records: &[(i64, &str)]) -> Done {
        let done = self.case.complete_poll(self.invoke, records);
        Done {
            invoke: self.invoke,
            done,
        }
    }

    /// The poll timed out: nothing returned.
    pub fn info(self) -> Done {
        let done = self.case.time_out_poll(self.invoke);
        Done {
            invoke: self.invoke,
            done,
        }
    }

    /// The poll was served a corrupt batch.
    pub fn corrupt(self) -> Done {
        let done = self.case.corrupt_poll(self.invoke);
        Done {
            invoke: self.invoke,
            done,
        }
    }

    /// Leaves the poll outstanding; returns its invoke.
    pub fn pending(self) -> usize {
        self.invoke
    }
}

impl GroupCall<'_> {
    /// Completes ok: a join gets `generation` (ignored for commits and resets).
    pub fn ok_in(self, generation: i32) -> Done {
        let done = self
            .case
            .complete_group(self.invoke, Phase::Ok, Some(generation));
        Done {
            invoke: self.invoke,
            done,
        }
    }

    /// Completes ok (a commit or a reset).
    pub fn ok(self) -> Done {
        let done = self.case.complete_group(self.invoke, Phase::Ok, None);
        Done {
            invoke: self.invoke,
            done,
        }
    }

    pub fn fail(self) -> Done {
        let done = self.case.complete_group(self.invoke, Phase::Fail, None);
        Done {
            invoke: self.invoke,
            done,
        }
    }

    pub fn info(self) -> Done {
        let done = self.case.complete_group(self.invoke, Phase::Info, None);
        Done {
            invoke: self.invoke,
            done,
        }
    }

    /// Leaves the call outstanding; returns its invoke.
    pub fn pending(self) -> usize {
        self.invoke
    }
}

fn blank(process: &str, kind: OpKind, phase: Phase, topic: &str, partition: i32) -> Op {
    Op {
        index: 0,
        time_ns: 0,
        process: process.to_string(),
        kind,
        phase,
        topic: topic.to_string(),
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

/// Checks `case` and asserts that exactly the `expected` violations are found: each as its
/// anomaly and ops, in any order. Also asserts what holds for every report: readable
/// messages, ops that exist, the documented order, and agreement with the checker's own
/// function.
pub(crate) fn check_case(case: &Case, expected: &[(Anomaly, &[usize])]) {
    let found = check(&case.history, &case.options);
    let mut got: Vec<(Anomaly, Vec<usize>)> =
        found.iter().map(|v| (v.anomaly, v.ops.clone())).collect();
    let mut want: Vec<(Anomaly, Vec<usize>)> =
        expected.iter().map(|(a, ops)| (*a, ops.to_vec())).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "found: {found:#?}");
    assert_report_well_formed(case, &found);
}

/// What every report must satisfy, whatever the history.
pub(crate) fn assert_report_well_formed(case: &Case, found: &[crate::history::Violation]) {
    for v in found {
        assert!(!v.message.is_empty(), "{v:?}");
        assert!(!v.message.contains('\n'), "{v:?}");
        assert!(!v.ops.is_empty(), "{v:?}");
        assert!(v.ops.iter().all(|&op| op < case.history.ops.len()), "{v:?}");
    }
    let mut sorted = found.to_vec();
    super::sort_violations(&mut sorted);
    assert_eq!(sorted, found, "check output is sorted");
    // Each checker's own function finds what check() attributes to it.
    for anomaly in crate::history::Anomaly::ALL {
        let own = match anomaly {
            Anomaly::LostWrite => super::lost_writes(&case.history),
            Anomaly::Unseen => super::unseen(&case.history),
            Anomaly::Duplicate => super::duplicates(&case.history),
            Anomaly::InconsistentOffsets => super::inconsistent_offsets(&case.history),
            Anomaly::NonmonotonicSend => {
                super::nonmonotonic_sends(&case.history, &case.options.producers_ordered)
            }
            Anomaly::NonmonotonicPoll => super::nonmonotonic_polls(&case.history),
            Anomaly::PollSkip => super::poll_skips(&case.history),
            Anomaly::AbortedRead => super::aborted_reads(&case.history, &Default::default()),
            Anomaly::FailedVisible => super::failed_visible(&case.history),
            Anomaly::CorruptRead => super::corrupt_reads(&case.history),
            Anomaly::SplitOwnership => super::split_ownership(&case.history),
            Anomaly::CommitRegression => super::commit_regressions(&case.history),
            Anomaly::CommitSkip => super::commit_skips(&case.history),
            Anomaly::StaleCommit => super::stale_commits(&case.history),
            Anomaly::ProcessedTwice => super::processed_twice(&case.history),
            Anomaly::AbsentMember => super::absent_members(&case.history),
        };
        let from_check: Vec<_> = found
            .iter()
            .filter(|v| v.anomaly == anomaly)
            .cloned()
            .collect();
        assert_eq!(own, from_check, "{}", anomaly.name());
    }
}
