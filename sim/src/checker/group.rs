//! split-ownership, commit-regression, commit-skip, stale-commit and processed-twice: what
//! a consumer group promises, read from its members' join, assign, commit, process and
//! reset operations (see [`OpKind`](crate::history::OpKind) for what each records).
//!
//! - Ownership is per generation: a member keeping a partition records its assignment
//!   again in the new generation, so two members holding one partition in one generation
//!   is the only overlap the history proves (a revoked member still working on a
//!   partition it lost, after its session expired, is a zombie the protocol allows). A
//!   member is a process: a static member that rejoins gets a new member id in the same
//!   generation, replacing its old one.
//! - Commits are invoked and completed. Only acknowledged (ok) commits count as having
//!   happened; a failed commit did not happen and an unknown one may not have, so neither
//!   is held against the group. "Before" is history order; a commit completion recorded
//!   without its invoke is taken as instantaneous.
//! - A reset (an operator moving the committed offset on purpose) may move it anywhere:
//!   a commit whose window overlaps a reset is not compared with commits before it.
//!
//! Everything is keyed by ordered maps and walked in history order, so the output does not
//! depend on hashing, and each rule is a sort or a binary search per operation.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::history::{Anomaly, History, Op, OpKind, Phase, Violation};

use super::index::{key_of, Index, Key};
use super::{key_name, list, sort_violations, time, violation, MESSAGE_ITEMS_MAX};

/// A group's partition: (group, topic, partition).
type GroupKey<'a> = (&'a str, &'a str, i32);

fn group_key(op: &Op) -> Option<GroupKey<'_>> {
    Some((op.group.as_deref()?, op.topic.as_str(), op.partition))
}

/// One group operation with an invoke (join, commit, reset): its invoke and its
/// completion, either of which may be missing.
#[derive(Debug, Clone, Copy)]
struct Call<'a> {
    invoke: Option<&'a Op>,
    completion: Option<&'a Op>,
}

impl<'a> Call<'a> {
    /// The operation that stands for its start: the invoke, or the completion without one.
    fn first(&self) -> &'a Op {
        self.invoke
            .or(self.completion)
            .expect("a call has an invoke or a completion")
    }

    /// The completion if it is ok.
    fn ok(&self) -> Option<&'a Op> {
        self.completion.filter(|op| op.phase == Phase::Ok)
    }

    /// The ops that show it: completion first, then invoke.
    fn ops(&self) -> Vec<usize> {
        self.completion
            .into_iter()
            .chain(self.invoke)
            .map(|op| op.index)
            .collect()
    }
}

/// The group operations of one kind (that carry a group id), each completion paired with
/// the oldest outstanding invoke of the same process, group and partition; in the order
/// of their first operation.
fn calls(history: &History, kind: OpKind) -> Vec<Call<'_>> {
    let mut calls: Vec<Call<'_>> = Vec::new();
    let mut outstanding: BTreeMap<(&str, GroupKey<'_>), Vec<usize>> = BTreeMap::new();
    for op in history.ops.iter().filter(|op| op.kind == kind) {
        let Some(key) = group_key(op) else {
            continue;
        };
        let waiting = outstanding.entry((op.process.as_str(), key)).or_default();
        if op.phase == Phase::Invoke {
            waiting.push(calls.len());
            calls.push(Call {
                invoke: Some(op),
                completion: None,
            });
        } else if !waiting.is_empty() {
            let at = waiting.remove(0);
            calls[at].completion = Some(op);
        } else {
            calls.push(Call {
                invoke: None,
                completion: Some(op),
            });
        }
    }
    calls
}

/// The group operations the checkers share, found once.
struct GroupOps<'a> {
    commits: Vec<Call<'a>>,
    resets: Vec<Call<'a>>,
}

impl<'a> GroupOps<'a> {
    fn new(history: &'a History) -> Self {
        GroupOps {
            commits: calls(history, OpKind::Commit),
            resets: calls(history, OpKind::Reset),
        }
    }

    /// Resets that may have happened (not refused), with their start and end in history
    /// order (`usize::MAX` when the history ends before it does).
    fn resets(&self) -> impl Iterator<Item = (GroupKey<'a>, usize, usize)> + '_ {
        self.resets.iter().filter_map(|call| {
            if call.completion.is_some_and(|op| op.phase == Phase::Fail) {
                return None;
            }
            let end = call.completion.map_or(usize::MAX, |op| op.index);
            Some((group_key(call.first())?, call.first().index, end))
        })
    }

    /// Acknowledged commits with an offset: (call, its key, the offset).
    fn acked_commits(&self) -> impl Iterator<Item = (&Call<'a>, GroupKey<'a>, i64)> + '_ {
        self.commits.iter().filter_map(|call| {
            let ok = call.ok()?;
            Some((call, group_key(ok)?, ok.offset?))
        })
    }
}

/// A group member as people read it: `c1 (member m1, generation 3)`.
fn who(op: &Op) -> String {
    let mut about = Vec::new();
    if let Some(member) = &op.member {
        about.push(format!("member {member}"));
    }
    if let Some(generation) = op.generation {
        about.push(format!("generation {generation}"));
    }
    if about.is_empty() {
        op.process.clone()
    } else {
        format!("{} ({})", op.process, about.join(", "))
    }
}

/// The member id of a group op, or its process when it names none.
fn member_of(op: &Op) -> &str {
    op.member.as_deref().unwrap_or(&op.process)
}

fn key_part<'a>(key: GroupKey<'a>) -> Key<'a> {
    (key.1, key.2)
}

// ---------------------------------------------------------------------------------------
// split-ownership

/// Per group, generation and partition: Assigns of it by more than one process. A process
/// is one member (one static instance): a static member that rejoins with a new member id
/// keeps its assignment in the same generation and replaces its old id, which is no second
/// owner. One violation per (group, generation, partition); ops: each process's first
/// Assign of it, in history order.
pub fn split_ownership(history: &History) -> Vec<Violation> {
    let mut violations = split_ownership_in(history);
    sort_violations(&mut violations);
    violations
}

fn split_ownership_in(history: &History) -> Vec<Violation> {
    // Per (group, generation, partition): each owning process's first Assign.
    type Owners<'a> = BTreeMap<&'a str, &'a Op>;
    let mut owners: BTreeMap<(&str, i32, Key<'_>), Owners<'_>> = BTreeMap::new();
    for op in history
        .ops
        .iter()
        .filter(|op| op.kind == OpKind::Assign && op.phase == Phase::Ok)
    {
        let (Some(group), Some(generation)) = (op.group.as_deref(), op.generation) else {
            continue;
        };
        owners
            .entry((group, generation, key_of(op)))
            .or_default()
            .entry(op.process.as_str())
            .or_insert(op);
    }
    let mut violations = Vec::new();
    for ((group, generation, key), members) in owners {
        if members.len() < 2 {
            continue;
        }
        let mut firsts: Vec<&Op> = members.into_values().collect();
        firsts.sort_by_key(|op| op.index);
        let message = format!(
            "group {group} generation {generation} assigned {} to {} members: {}",
            key_name(key),
            firsts.len(),
            list(firsts.iter().map(|op| format!(
                "{} ({} at {})",
                member_of(op),
                op.process,
                time(op.time_ns)
            )))
        );
        let ops = firsts.iter().map(|op| op.index).collect();
        violations.push(violation(Anomaly::SplitOwnership, key, message, ops));
    }
    violations
}

// ---------------------------------------------------------------------------------------
// commit-regression

/// Per group and partition: an acknowledged commit invoked after another acknowledged
/// commit completed, with a lower offset, and no reset that may have happened between the
/// earlier one's completion and the later one's completion. Compared with the highest
/// such earlier commit. One violation per regressing commit; ops: its completion, the
/// earlier commit's completion, then their invokes.
pub fn commit_regressions(history: &History) -> Vec<Violation> {
    let mut violations = commit_regressions_in(&GroupOps::new(history));
    sort_violations(&mut violations);
    violations
}

fn commit_regressions_in(groups: &GroupOps<'_>) -> Vec<Violation> {
    #[derive(Clone, Copy)]
    enum Event {
        ResetStart,
        ResetEnd,
        /// An acknowledged commit is invoked (its position in `commits`).
        Invoke(usize),
        Acked(usize),
    }
    let commits: Vec<(&Call<'_>, GroupKey<'_>, i64)> = groups.acked_commits().collect();
    // (history position, order within it, key, event): a commit's invoke is taken before
    // anything else at its position (its own completion, when it has no invoke).
    let mut events: Vec<(usize, u8, GroupKey<'_>, Event)> = Vec::new();
    for (key, start, end) in groups.resets() {
        events.push((start, 1, key, Event::ResetStart));
        if end != usize::MAX {
            events.push((end, 1, key, Event::ResetEnd));
        }
    }
    for (at, (call, key, _)) in commits.iter().enumerate() {
        events.push((call.first().index, 0, *key, Event::Invoke(at)));
        let done = call.completion.expect("acknowledged").index;
        events.push((done, 1, *key, Event::Acked(at)));
    }
    events.sort_by_key(|&(position, order, _, _)| (position, order));

    #[derive(Default)]
    struct State {
        /// Resets started so far, and how many of them have not ended.
        resets_started: usize,
        resets_open: usize,
        /// The highest acknowledged commit since the last reset: (offset, its position).
        highest: Option<(i64, usize)>,
    }
    let mut states: BTreeMap<GroupKey<'_>, State> = BTreeMap::new();
    // Per commit: what its invoke saw (the highest commit before it, resets started).
    let mut at_invoke: Vec<(Option<(i64, usize)>, usize)> = vec![(None, 0); commits.len()];
    let mut violations = Vec::new();
    for (_, _, key, event) in events {
        let state = states.entry(key).or_default();
        match event {
            Event::ResetStart => {
                state.resets_started += 1;
                state.resets_open += 1;
                state.highest = None;
            }
            Event::ResetEnd => state.resets_open -= 1,
            Event::Invoke(at) => at_invoke[at] = (state.highest, state.resets_started),
            Event::Acked(at) => {
                let (call, _, offset) = commits[at];
                let (before, resets) = at_invoke[at];
                let reset_between = state.resets_open > 0 || state.resets_started != resets;
                if let Some((highest, earlier_at)) = before.filter(|_| !reset_between) {
                    if offset < highest {
                        violations.push(regression(key, call, offset, commits[earlier_at]));
                    }
                }
                if state.resets_open == 0 && state.highest.is_none_or(|(h, _)| offset > h) {
                    state.highest = Some((offset, at));
                }
            }
        }
    }
    violations
}

fn regression(
    key: GroupKey<'_>,
    call: &Call<'_>,
    offset: i64,
    (earlier, _, earlier_offset): (&Call<'_>, GroupKey<'_>, i64),
) -> Violation {
    let ok = call.ok().expect("acknowledged");
    let earlier_ok = earlier.ok().expect("acknowledged");
    let message = format!(
        "group {}: {} committed {} offset {offset} at {} (acknowledged at {}) after the commit \
         of offset {earlier_offset} by {} had been acknowledged at {}, with no reset between: \
         the committed offset went back",
        key.0,
        who(ok),
        key_name(key_part(key)),
        time(call.first().time_ns),
        time(ok.time_ns),
        who(earlier_ok),
        time(earlier_ok.time_ns),
    );
    let mut ops = vec![ok.index, earlier_ok.index];
    ops.extend(call.invoke.map(|op| op.index));
    ops.extend(earlier.invoke.map(|op| op.index));
    violation(Anomaly::CommitRegression, key_part(key), message, ops)
}

// ---------------------------------------------------------------------------------------
// commit-skip

/// Per group and partition: an acknowledged commit of offset O while an offset below O
/// that some read returned (the record exists) is in no Process op of the group by the
/// end of the history. Each such offset is reported once, by the first acknowledged
/// commit (in history order) past it; offsets a reset jumped over before any commit
/// passed them are the operator's choice, not a skip. One violation per commit; ops: the
/// commit's completion, its invoke, then the first read of the first unprocessed offset.
pub fn commit_skips(history: &History) -> Vec<Violation> {
    let mut violations = commit_skips_in(history, &Index::new(history), &GroupOps::new(history));
    sort_violations(&mut violations);
    violations
}

fn commit_skips_in(history: &History, index: &Index<'_>, groups: &GroupOps<'_>) -> Vec<Violation> {
    // What each group processed of each partition, sorted.
    let mut processed: BTreeMap<GroupKey<'_>, Vec<i64>> = BTreeMap::new();
    for op in history
        .ops
        .iter()
        .filter(|op| op.kind == OpKind::Process && op.phase == Phase::Ok)
    {
        if let Some(key) = group_key(op) {
            let offsets = processed.entry(key).or_default();
            offsets.extend(op.records.iter().map(|(offset, _)| *offset));
        }
    }
    for offsets in processed.values_mut() {
        offsets.sort_unstable();
        offsets.dedup();
    }

    // Commits and resets in history order: (position, key, what). Resets count from their
    // start, commits from their acknowledgement.
    let mut events: Vec<(usize, GroupKey<'_>, Option<&Call<'_>>, i64)> = Vec::new();
    for call in &groups.resets {
        let moved = call
            .completion
            .filter(|op| op.phase != Phase::Fail)
            .and_then(|op| op.offset);
        if let (Some(key), Some(offset)) = (group_key(call.first()), moved) {
            events.push((call.first().index, key, None, offset));
        }
    }
    for (call, key, offset) in groups.acked_commits() {
        events.push((
            call.completion.expect("acknowledged").index,
            key,
            Some(call),
            offset,
        ));
    }
    events.sort_by_key(|&(position, ..)| position);

    // Per group partition: the offset below which every unprocessed offset is reported
    // or was jumped over by a reset, and the unprocessed offsets, built on first use.
    let mut covered: BTreeMap<GroupKey<'_>, i64> = BTreeMap::new();
    let mut unprocessed: BTreeMap<GroupKey<'_>, Vec<(i64, &Op)>> = BTreeMap::new();
    let mut violations = Vec::new();
    for (_, key, commit, offset) in events {
        let below = covered.entry(key).or_insert(i64::MIN);
        let from = *below;
        *below = from.max(offset);
        let Some(call) = commit.filter(|_| offset > from) else {
            continue;
        };
        let holes = unprocessed.entry(key).or_insert_with(|| {
            let done = processed.get(&key).map_or(&[][..], Vec::as_slice);
            index
                .reads
                .get(&key_part(key))
                .map_or(&[][..], |reads| reads.offsets.as_slice())
                .iter()
                .filter(|(offset, _)| done.binary_search(offset).is_err())
                .copied()
                .collect()
        });
        let start = holes.partition_point(|&(o, _)| o < from);
        let end = holes.partition_point(|&(o, _)| o < offset);
        if start < end {
            violations.push(skip(key, call, offset, &holes[start..end]));
        }
    }
    violations
}

fn skip(key: GroupKey<'_>, call: &Call<'_>, offset: i64, holes: &[(i64, &Op)]) -> Violation {
    let ok = call.ok().expect("acknowledged");
    let (first, witness) = holes[0];
    let message = format!(
        "group {}: {} committed {} offset {offset}, acknowledged at {}, past {} {} that no \
         member of the group processed: {} ({} read offset {first} at {})",
        key.0,
        who(ok),
        key_name(key_part(key)),
        time(ok.time_ns),
        holes.len(),
        if holes.len() == 1 {
            "record"
        } else {
            "records"
        },
        list(holes.iter().map(|(o, _)| o.to_string())),
        witness.process,
        time(witness.time_ns),
    );
    let mut ops = call.ops();
    ops.push(witness.index);
    violation(Anomaly::CommitSkip, key_part(key), message, ops)
}

// ---------------------------------------------------------------------------------------
// stale-commit

/// An acknowledged commit of generation G (G >= 0) although, before it was invoked, a Join
/// ok or an Assign of the group with a generation above G had been recorded (the
/// coordinator had formed a newer generation, so it must refuse G's commits; for a KIP-848
/// member, whose generation is its own member epoch, a Join ok or an Assign of that member
/// with an epoch above G: other members' epochs do not make its epoch stale), or its
/// process had recorded an Assign with another member id after its first Assign as the
/// commit's member (the member was replaced: fenced), or, for a KIP-848 member, the last
/// Assign of the partition before it was invoked is another process's (the partition was
/// handed over: its owner had revoked it or been fenced). One violation per commit; ops:
/// the commit's completion, its invoke, then the op that shows the group had moved on.
pub fn stale_commits(history: &History) -> Vec<Violation> {
    let mut violations = stale_commits_in(history, &GroupOps::new(history));
    sort_violations(&mut violations);
    violations
}

fn stale_commits_in(history: &History, groups: &GroupOps<'_>) -> Vec<Violation> {
    // Per group (per group and member for KIP-848 member epochs): the ops (Join ok,
    // Assign) that raised the highest generation seen, in history order, so both position
    // and generation go up.
    let mut raised: BTreeMap<EpochKey<'_>, Vec<(i32, &Op)>> = BTreeMap::new();
    // Per (group, process): its Assigns in history order.
    let mut assigns: BTreeMap<(&str, &str), Vec<&Op>> = BTreeMap::new();
    // Per KIP-848 group partition: its Assigns in history order (who was given it last).
    let mut given: BTreeMap<GroupKey<'_>, Vec<&Op>> = BTreeMap::new();
    for op in &history.ops {
        let joined = op.kind == OpKind::Join && op.phase == Phase::Ok;
        let assigned = op.kind == OpKind::Assign && op.phase == Phase::Ok;
        if let (true, Some(key)) = (assigned && op.member_epoch, group_key(op)) {
            given.entry(key).or_default().push(op);
        }
        let (true, Some(group)) = (joined || assigned, op.group.as_deref()) else {
            continue;
        };
        if let Some(generation) = op.generation {
            let steps = raised.entry((group, epoch_owner(op))).or_default();
            if steps.last().is_none_or(|&(g, _)| generation > g) {
                steps.push((generation, op));
            }
        }
        if assigned {
            assigns
                .entry((group, op.process.as_str()))
                .or_default()
                .push(op);
        }
    }
    // Per (group, process): for each Assign, the position of the next Assign with another
    // member id, and where each member id's first Assign is.
    let replaced: BTreeMap<(&str, &str), Replaced<'_>> = assigns
        .into_iter()
        .map(|(key, ops)| {
            let mut firsts = BTreeMap::new();
            for (at, op) in ops.iter().enumerate() {
                firsts.entry(member_of(op)).or_insert(at);
            }
            let mut next_other: Vec<Option<&Op>> = vec![None; ops.len()];
            for at in (0..ops.len().saturating_sub(1)).rev() {
                next_other[at] = if member_of(ops[at + 1]) != member_of(ops[at]) {
                    Some(ops[at + 1])
                } else {
                    next_other[at + 1]
                };
            }
            (key, (firsts, next_other))
        })
        .collect();

    let mut violations = Vec::new();
    for (call, key, offset) in groups.acked_commits() {
        let ok = call.ok().expect("acknowledged");
        let Some(generation) = ok.generation.filter(|g| *g >= 0) else {
            continue;
        };
        let invoked = call.first().index;
        let newer = raised.get(&(key.0, epoch_owner(ok))).and_then(|steps| {
            let at = steps.partition_point(|&(g, _)| g <= generation);
            steps.get(at).filter(|(_, op)| op.index < invoked)
        });
        let reason = if let Some(&(newer, op)) = newer {
            let did = if op.kind == OpKind::Join {
                "joined it".to_string()
            } else {
                format!("was assigned {} in it", key_name(key_of(op)))
            };
            Some((
                op,
                format!(
                    "generation {newer} had formed before it was sent ({} {did} at {}): the \
                     coordinator must refuse an older generation's commits",
                    op.process,
                    time(op.time_ns)
                ),
            ))
        } else if let Some(op) = fenced(&replaced, key.0, ok).filter(|op| op.index < invoked) {
            Some((
                op,
                format!(
                    "{} had rejoined as member {} at {}, before it was sent: the coordinator \
                     must refuse a replaced member's commits",
                    op.process,
                    member_of(op),
                    time(op.time_ns)
                ),
            ))
        } else {
            handed_over(&given, key, ok, invoked).map(|op| {
                (
                    op,
                    format!(
                        "{} had been given {} at {}, before it was sent: a consumer group \
                         (KIP-848) gives a partition to another member only once its owner \
                         has revoked it (or was fenced), after which the owner's commits of \
                         it are refused",
                        who(op),
                        key_name(key_part(key)),
                        time(op.time_ns)
                    ),
                )
            })
        };
        let Some((witness, why)) = reason else {
            continue;
        };
        let message = format!(
            "group {}: {} committed {} offset {offset} at {}, acknowledged at {}, although {why}",
            key.0,
            who(ok),
            key_name(key_part(key)),
            time(call.first().time_ns),
            time(ok.time_ns),
        );
        let mut ops = call.ops();
        ops.push(witness.index);
        violations.push(violation(Anomaly::StaleCommit, key_part(key), message, ops));
    }
    violations
}

/// For a KIP-848 member's commit invoked at `invoked`: the latest Assign of its partition
/// before then, if another process holds it (the partition was handed over, so this
/// member had revoked it or been fenced, and its commits of it must be refused).
fn handed_over<'a>(
    given: &BTreeMap<GroupKey<'_>, Vec<&'a Op>>,
    key: GroupKey<'_>,
    commit: &Op,
    invoked: usize,
) -> Option<&'a Op> {
    if !commit.member_epoch {
        return None;
    }
    let assigns = given.get(&key)?;
    let before = assigns.partition_point(|op| op.index < invoked);
    let last = *assigns.get(before.checked_sub(1)?)?;
    (last.process != commit.process).then_some(last)
}

/// A group, and the member whose own epoch a KIP-848 op's generation is (None: classic).
type EpochKey<'a> = (&'a str, Option<&'a str>);

/// Whose generation an op carries: None for a classic group's (group-wide), the member id
/// for a KIP-848 member's epoch.
fn epoch_owner(op: &Op) -> Option<&str> {
    op.member_epoch.then(|| op.member.as_deref().unwrap_or(""))
}

/// Per (group, process): where each member id's first Assign is among the process's
/// Assigns, and for each Assign the next one with another member id.
type Replaced<'a> = (BTreeMap<&'a str, usize>, Vec<Option<&'a Op>>);

/// The first Assign of `commit`'s process with another member id after its first Assign
/// as the commit's member.
fn fenced<'a>(
    replaced: &BTreeMap<(&str, &str), Replaced<'a>>,
    group: &str,
    commit: &Op,
) -> Option<&'a Op> {
    let (firsts, next_other) = replaced.get(&(group, commit.process.as_str()))?;
    let at = *firsts.get(member_of(commit))?;
    next_other[at]
}

// ---------------------------------------------------------------------------------------
// processed-twice

/// Per group and partition: offsets in the group's Process ops more than once (by one
/// member or several). One violation per group partition, counting the offsets; ops: the
/// first two Process ops of each of the first few offsets.
pub fn processed_twice(history: &History) -> Vec<Violation> {
    let mut violations = processed_twice_in(history);
    sort_violations(&mut violations);
    violations
}

fn processed_twice_in(history: &History) -> Vec<Violation> {
    let mut processed: BTreeMap<GroupKey<'_>, Vec<(i64, &Op)>> = BTreeMap::new();
    for op in history
        .ops
        .iter()
        .filter(|op| op.kind == OpKind::Process && op.phase == Phase::Ok)
    {
        if let Some(key) = group_key(op) {
            let entries = processed.entry(key).or_default();
            entries.extend(op.records.iter().map(|(offset, _)| (*offset, op)));
        }
    }
    let mut violations = Vec::new();
    for (key, mut entries) in processed {
        // Stable: each offset's Process ops stay in history order.
        entries.sort_by_key(|&(offset, _)| offset);
        let twice: Vec<&[(i64, &Op)]> = entries
            .chunk_by(|a, b| a.0 == b.0)
            .filter(|run| run.len() > 1)
            .collect();
        if twice.is_empty() {
            continue;
        }
        let message = format!(
            "group {} processed {} {} of {} more than once: {}",
            key.0,
            twice.len(),
            if twice.len() == 1 {
                "record"
            } else {
                "records"
            },
            key_name(key_part(key)),
            list(twice.iter().map(|run| {
                let (offset, first) = run[0];
                let again = run[1].1;
                let how = if run.len() > 2 {
                    format!(", {} times in all", run.len())
                } else {
                    String::new()
                };
                format!(
                    "offset {offset} ({} at {}, again {} at {}{how})",
                    first.process,
                    time(first.time_ns),
                    again.process,
                    time(again.time_ns)
                )
            }))
        );
        let ops = twice
            .iter()
            .take(MESSAGE_ITEMS_MAX)
            .flat_map(|run| [run[0].1.index, run[1].1.index])
            .collect();
        violations.push(violation(
            Anomaly::ProcessedTwice,
            key_part(key),
            message,
            ops,
        ));
    }
    violations
}

/// Every group checker, unsorted, for [`check`](super::check).
pub(crate) fn group_violations_in(history: &History, index: &Index<'_>) -> Vec<Violation> {
    let groups = GroupOps::new(history);
    let mut violations = split_ownership_in(history);
    violations.extend(commit_regressions_in(&groups));
    violations.extend(commit_skips_in(history, index, &groups));
    violations.extend(stale_commits_in(history, &groups));
    violations.extend(processed_twice_in(history));
    violations.extend(absent_members_in(history));
    violations
}

// ---------------------------------------------------------------------------------------
// absent-member

/// Per group: each generation's dynamic members, as its leader recorded them (Join info),
/// must each have asked to join (a Join invoke carrying that member id) after their own
/// previous generation (their last Join ok before it): a JoinGroup is how a member enters
/// a join phase, and Kafka drops a dynamic member that sends none before the phase ends.
/// A new member id must have been sent at least once (KIP-394: every member sends its id
/// before it is put in a generation). One violation per (generation, member); ops: the
/// leader's record, the member's previous Join ok, its last Join invoke.
pub fn absent_members(history: &History) -> Vec<Violation> {
    let mut violations = absent_members_in(history);
    sort_violations(&mut violations);
    violations
}

fn absent_members_in(history: &History) -> Vec<Violation> {
    // Per (group, member id): its last Join invoke, and its last Join ok with generation.
    let mut asked: BTreeMap<(&str, &str), &Op> = BTreeMap::new();
    let mut joined: BTreeMap<(&str, &str), &Op> = BTreeMap::new();
    let mut violations = Vec::new();
    for op in &history.ops {
        let (OpKind::Join, Some(group)) = (op.kind, op.group.as_deref()) else {
            continue;
        };
        match (op.phase, op.member.as_deref()) {
            (Phase::Invoke, Some(member)) => {
                asked.insert((group, member), op);
            }
            (Phase::Ok, Some(member)) => {
                joined.insert((group, member), op);
            }
            (Phase::Info, _) => {
                let Some(generation) = op.generation else {
                    continue;
                };
                for member in &op.members {
                    let key = (group, member.as_str());
                    let previous = joined
                        .get(&key)
                        .copied()
                        .filter(|j| j.generation.is_some_and(|g| g < generation));
                    let last_ask = asked.get(&key).copied();
                    let rejoined = match (last_ask, previous) {
                        (Some(ask), Some(previous)) => ask.index > previous.index,
                        (Some(_), None) => true,
                        (None, _) => false,
                    };
                    if rejoined {
                        continue;
                    }
                    let since = match previous {
                        Some(p) => format!(
                            "since it joined generation {} at {}",
                            p.generation.unwrap_or(-1),
                            time(p.time_ns)
                        ),
                        None => "ever".to_string(),
                    };
                    let message = format!(
                        "group {group} generation {generation} (led by {}, formed by {}) held \
                         member {member}, which had not sent a JoinGroup {since}: a dynamic \
                         member that does not rejoin is removed when the join phase ends",
                        op.process,
                        time(op.time_ns)
                    );
                    let ops = [Some(op), previous, last_ask]
                        .into_iter()
                        .flatten()
                        .map(|o| o.index)
                        .collect();
                    violations.push(violation(Anomaly::AbsentMember, (group, -1), message, ops));
                }
            }
            _ => {}
        }
    }
    violations
}

// ---------------------------------------------------------------------------------------
// Statistics for the report: rebalances and lag.

/// What the history shows of each consumer group, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStats {
    /// One entry per group id, sorted by it.
    pub groups: Vec<GroupSummary>,
}

/// One group's rebalances and lag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSummary {
    pub group: String,
    /// One per generation a member joined or was assigned in, by generation.
    pub rebalances: Vec<Rebalance>,
    /// One per partition the group was assigned, committed, processed or reset, by topic
    /// then partition.
    pub lag: Vec<PartitionLag>,
}

/// How one generation formed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rebalance {
    pub generation: i32,
    /// The first Join invoke of the group recorded after the previous generation settled
    /// (at or before this one settled); this generation's first Join ok or Assign if
    /// there is none (or for the first generation, when the group has no Join invoke).
    pub started_ns: u64,
    /// The last Assign of this generation (its last Join ok if it assigned nothing).
    pub settled_ns: u64,
    /// `settled_ns - started_ns`.
    pub duration_ns: u64,
    /// The member ids that joined or were assigned in it, sorted.
    pub members: Vec<String>,
    /// How many partitions it assigned.
    pub partitions: usize,
}

/// How far one group was behind on one partition, over time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// One point per time either value changed, in time order.
    pub points: Vec<LagPoint>,
}

/// Lag at one time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LagPoint {
    pub time_ns: u64,
    /// The highest acknowledged send offset of the partition + 1 so far (0 before any).
    pub end_offset: i64,
    /// The offset of the group's last acknowledged commit or reset so far.
    pub committed: Option<i64>,
    /// `end_offset - committed` (the committed offset taken as 0 before any commit); may
    /// be negative when the group committed past the acknowledged sends the history has.
    pub lag: i64,
}

/// Rebalances and lag of every group in `history`.
pub fn group_stats(history: &History) -> GroupStats {
    #[derive(Default)]
    struct Generation<'a> {
        first: Option<&'a Op>,
        settled: Option<&'a Op>,
        /// Whether `settled` is an Assign (a later Join ok does not replace one).
        assigned: bool,
        members: BTreeSet<&'a str>,
        partitions: BTreeSet<Key<'a>>,
    }
    #[derive(Default)]
    struct Group<'a> {
        generations: BTreeMap<i32, Generation<'a>>,
        join_invokes: Vec<&'a Op>,
        partitions: BTreeSet<Key<'a>>,
    }
    let mut groups: BTreeMap<&str, Group<'_>> = BTreeMap::new();
    for op in &history.ops {
        let Some(name) = op.group.as_deref() else {
            continue;
        };
        let group = groups.entry(name).or_default();
        match (op.kind, op.phase) {
            (OpKind::Join, Phase::Invoke) => group.join_invokes.push(op),
            (OpKind::Join, Phase::Ok) | (OpKind::Assign, Phase::Ok) => {
                let Some(generation) = op.generation else {
                    continue;
                };
                let assign = op.kind == OpKind::Assign;
                let state = group.generations.entry(generation).or_default();
                state.first.get_or_insert(op);
                if assign || !state.assigned {
                    state.settled = Some(op);
                    state.assigned |= assign;
                }
                state.members.insert(member_of(op));
                if assign {
                    state.partitions.insert(key_of(op));
                    group.partitions.insert(key_of(op));
                }
            }
            (OpKind::Commit | OpKind::Process | OpKind::Reset, _) => {
                group.partitions.insert(key_of(op));
            }
            _ => {}
        }
    }

    // Which groups follow each partition, for the sends.
    let mut followers: BTreeMap<Key<'_>, Vec<&str>> = BTreeMap::new();
    for (name, group) in &groups {
        for &key in &group.partitions {
            followers.entry(key).or_default().push(name);
        }
    }
    // Per (group, partition): the end and committed offsets known so far, and the points.
    type Line = (i64, Option<i64>, Vec<LagPoint>);
    let mut lag: BTreeMap<(&str, Key<'_>), Line> = BTreeMap::new();
    for op in &history.ops {
        let changed: Vec<(&str, Option<i64>, Option<i64>)> = match (op.kind, op.phase) {
            (OpKind::Send, Phase::Ok) => {
                let (Some(first), Some(names)) = (op.offset, followers.get(&key_of(op))) else {
                    continue;
                };
                let end = first + op.values.len() as i64;
                names.iter().map(|name| (*name, Some(end), None)).collect()
            }
            (OpKind::Commit | OpKind::Reset, Phase::Ok) => {
                let (Some(name), Some(offset)) = (op.group.as_deref(), op.offset) else {
                    continue;
                };
                vec![(name, None, Some(offset))]
            }
            _ => continue,
        };
        for (name, end, committed) in changed {
            let (known_end, known_committed, points) =
                lag.entry((name, key_of(op)))
                    .or_insert((0, None, Vec::new()));
            *known_end = (*known_end).max(end.unwrap_or(0));
            if committed.is_some() {
                *known_committed = committed;
            }
            let point = LagPoint {
                time_ns: op.time_ns,
                end_offset: *known_end,
                committed: *known_committed,
                lag: *known_end - known_committed.unwrap_or(0),
            };
            match points.last_mut() {
                Some(last) if last.time_ns == point.time_ns => *last = point,
                Some(last)
                    if (last.end_offset, last.committed) == (point.end_offset, point.committed) => {
                }
                _ => points.push(point),
            }
        }
    }

    let groups = groups
        .into_iter()
        .map(|(name, group)| {
            let mut rebalances = Vec::new();
            let mut previous_settled: Option<usize> = None;
            for (&generation, state) in &group.generations {
                let (Some(first), Some(settled)) = (state.first, state.settled) else {
                    continue;
                };
                let after = group
                    .join_invokes
                    .partition_point(|op| previous_settled.is_some_and(|p| op.index <= p));
                let start = group
                    .join_invokes
                    .get(after)
                    .filter(|op| op.index <= settled.index)
                    .copied()
                    .unwrap_or(first);
                rebalances.push(Rebalance {
                    generation,
                    started_ns: start.time_ns,
                    settled_ns: settled.time_ns,
                    duration_ns: settled.time_ns.saturating_sub(start.time_ns),
                    members: state.members.iter().map(|m| m.to_string()).collect(),
                    partitions: state.partitions.len(),
                });
                previous_settled = Some(settled.index);
            }
            let lag = group
                .partitions
                .iter()
                .map(|&(topic, partition)| PartitionLag {
                    topic: topic.to_string(),
                    partition,
                    points: lag
                        .remove(&(name, (topic, partition)))
                        .map(|(_, _, points)| points)
                        .unwrap_or_default(),
                })
                .collect();
            GroupSummary {
                group: name.to_string(),
                rebalances,
                lag,
            }
        })
        .collect();
    GroupStats { groups }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{check_case, Case, Member};
    use super::*;

    fn a() -> Member<'static> {
        Member::new("c1", "g", "m1")
    }

    fn b() -> Member<'static> {
        Member::new("c2", "g", "m2")
    }

    /// Sends `count` records to t/`partition` from offset 0 and lets the final reader read
    /// them: values `p<partition>-<offset>`.
    fn records(h: &mut Case, partition: i32, count: i64) -> Vec<(i64, String)> {
        let values: Vec<String> = (0..count).map(|o| format!("p{partition}-{o}")).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        h.send("p1", "t", partition, &refs).ok(0);
        values
            .into_iter()
            .enumerate()
            .map(|(o, v)| (o as i64, v))
            .collect()
    }

    fn read_all(h: &mut Case, partition: i32, records: &[(i64, String)]) -> Done {
        let refs: Vec<(i64, &str)> = records.iter().map(|(o, v)| (*o, v.as_str())).collect();
        h.poll("final-reader", "t", partition, 0).ok(&refs)
    }

    fn slice(records: &[(i64, String)], from: i64, to: i64) -> Vec<(i64, &str)> {
        records
            .iter()
            .filter(|(o, _)| (from..to).contains(o))
            .map(|(o, v)| (*o, v.as_str()))
            .collect()
    }

    use super::super::testkit::Done;

    // --- split-ownership

    #[test]
    fn cooperative_hand_over_is_not_split() {
        let mut h = Case::new();
        h.join(a()).ok_in(1);
        h.assign(a(), 1, "t", 0);
        h.assign(a(), 1, "t", 1);
        // B joins: generation 2 keeps t/0 with A and takes t/1 from it; B gets it in 3.
        h.join(b()).pending();
        h.join(a()).ok_in(2);
        h.assign(a(), 2, "t", 0);
        h.revoke(a(), 1, "t", 1);
        h.join(a()).ok_in(3);
        h.assign(a(), 3, "t", 0);
        h.assign(b(), 3, "t", 1);
        // A member recording the same assignment twice is still one owner.
        h.assign(b(), 3, "t", 1);
        check_case(&h, &[]);
    }

    #[test]
    fn eager_rebalance_and_other_groups_are_not_split() {
        let mut h = Case::new();
        h.join(a()).ok_in(1);
        h.assign(a(), 1, "t", 0);
        h.assign(a(), 1, "t", 1);
        h.revoke(a(), 1, "t", 0);
        h.revoke(a(), 1, "t", 1);
        h.join(a()).ok_in(2);
        h.join(b()).ok_in(2);
        h.assign(a(), 2, "t", 0);
        h.assign(b(), 2, "t", 1);
        // Another group's member owning t/1 in its own generation 2.
        h.assign(Member::new("c3", "other", "m3"), 2, "t", 1);
        check_case(&h, &[]);
    }

    #[test]
    fn a_static_member_rejoining_keeps_its_partition() {
        let mut h = Case::new();
        h.join(a()).ok_in(1);
        h.assign(a(), 1, "t", 0);
        // c1 restarts with the same instance id: a new member id, the same generation.
        let again = Member::new("c1", "g", "m1b");
        h.join(again).ok_in(1);
        h.assign(again, 1, "t", 0);
        check_case(&h, &[]);
    }

    #[test]
    fn two_members_owning_a_partition_in_one_generation_is_split() {
        let mut h = Case::new();
        h.join(a()).ok_in(1);
        h.assign(a(), 1, "t", 0);
        h.revoke(a(), 1, "t", 0);
        let first = h.assign(b(), 2, "t", 0);
        let second = h.assign(a(), 2, "t", 0);
        let found = split_ownership(&h.history);
        assert_eq!(
            found[0].message,
            "group g generation 2 assigned t/0 to 2 members: m2 (c2 at t=0.005s) and m1 (c1 \
             at t=0.006s)"
        );
        check_case(&h, &[(Anomaly::SplitOwnership, &[first, second])]);
    }

    // --- commit-regression

    #[test]
    fn a_later_commit_going_back_is_a_regression() {
        let mut h = Case::new();
        let earlier = h.commit(a(), 1, "t", 0, 10).ok();
        let later = h.commit(b(), 1, "t", 0, 5).ok();
        let found = commit_regressions(&h.history);
        assert_eq!(
            found[0].message,
            "group g: c2 (member m2, generation 1) committed t/0 offset 5 at t=0.003s \
             (acknowledged at t=0.004s) after the commit of offset 10 by c1 (member m1, \
             generation 1) had been acknowledged at t=0.002s, with no reset between: the \
             committed offset went back"
        );
        check_case(
            &h,
            &[(
                Anomaly::CommitRegression,
                &[later.done, earlier.done, later.invoke, earlier.invoke],
            )],
        );
    }

    #[test]
    fn refused_unknown_and_overlapping_commits_going_back_are_no_regression() {
        let mut h = Case::new();
        h.commit(a(), 1, "t", 0, 10).ok();
        // Refused, or unknown: they did not move the committed offset back.
        h.commit(b(), 1, "t", 0, 4).fail();
        h.commit(b(), 1, "t", 0, 3).info();
        // An unknown commit higher up is not held against a later lower one.
        h.commit(a(), 1, "t", 0, 20).info();
        h.commit(a(), 1, "t", 0, 12).ok();
        // Two commits in flight together may be acknowledged in either order.
        let slow = h.commit(a(), 1, "t", 0, 13).pending();
        h.commit(b(), 1, "t", 0, 15).ok();
        h.complete_group(slow, Phase::Ok, None);
        // Other partitions and groups have their own offsets.
        h.commit(a(), 1, "t", 1, 1).ok();
        h.commit(Member::new("c3", "other", "m3"), 1, "t", 0, 1)
            .ok();
        check_case(&h, &[]);
    }

    #[test]
    fn a_reset_lets_the_committed_offset_go_back() {
        let mut h = Case::new();
        h.commit(a(), 1, "t", 0, 10).ok();
        h.reset("operator", "g", "t", 0, 2).ok();
        h.commit(a(), 1, "t", 0, 3).ok();
        // A reset still in progress (it may apply before the next commit lands).
        h.commit(a(), 1, "t", 0, 8).ok();
        let open = h.reset("operator", "g", "t", 0, 0).pending();
        h.commit(a(), 1, "t", 0, 1).ok();
        h.complete_group(open, Phase::Ok, None);
        // A reset that landed while a commit was in flight.
        let late = h.commit(a(), 1, "t", 0, 4).pending();
        h.commit(b(), 1, "t", 0, 9).ok();
        h.reset("operator", "g", "t", 0, 0).ok();
        h.complete_group(late, Phase::Ok, None);
        check_case(&h, &[]);
    }

    #[test]
    fn a_refused_reset_does_not_excuse_going_back() {
        let mut h = Case::new();
        let earlier = h.commit(a(), 1, "t", 0, 10).ok();
        h.reset("operator", "g", "t", 0, 2).fail();
        // Another group's or partition's reset does not count either.
        h.reset("operator", "g", "t", 1, 0).ok();
        h.reset("operator", "other", "t", 0, 0).ok();
        let later = h.commit(a(), 1, "t", 0, 3).ok();
        check_case(
            &h,
            &[(
                Anomaly::CommitRegression,
                &[later.done, earlier.done, later.invoke, earlier.invoke],
            )],
        );
    }

    // --- commit-skip

    #[test]
    fn committing_past_an_unprocessed_record_is_a_skip() {
        let mut h = Case::new();
        let log = records(&mut h, 0, 6);
        h.process(a(), 1, "t", 0, &slice(&log, 0, 3));
        h.process(a(), 1, "t", 0, &slice(&log, 4, 5));
        let commit = h.commit(a(), 1, "t", 0, 5).ok();
        // A later commit past the same hole is not reported again.
        h.process(a(), 1, "t", 0, &slice(&log, 5, 6));
        h.commit(a(), 1, "t", 0, 6).ok();
        let read = read_all(&mut h, 0, &log);
        let found = commit_skips(&h.history);
        assert_eq!(
            found[0].message,
            "group g: c1 (member m1, generation 1) committed t/0 offset 5, acknowledged at \
             t=0.006s, past 1 record that no member of the group processed: 3 (final-reader \
             read offset 3 at t=0.011s)"
        );
        check_case(
            &h,
            &[(
                Anomaly::CommitSkip,
                &[commit.done, commit.invoke, read.done],
            )],
        );
    }

    #[test]
    fn at_least_once_redelivery_after_a_crash_is_processed_twice_but_no_skip() {
        let mut h = Case::new();
        let log = records(&mut h, 0, 6);
        h.join(a()).ok_in(1);
        h.assign(a(), 1, "t", 0);
        let first = h.process(a(), 1, "t", 0, &slice(&log, 0, 4));
        h.commit(a(), 1, "t", 0, 2).ok();
        // c1 crashes before committing 4; c2 takes over from the committed offset 2.
        h.lose(a(), 1, "t", 0);
        h.join(b()).ok_in(2);
        h.assign(b(), 2, "t", 0);
        let again = h.process(b(), 2, "t", 0, &slice(&log, 2, 6));
        h.commit(b(), 2, "t", 0, 6).ok();
        read_all(&mut h, 0, &log);
        let found = processed_twice(&h.history);
        assert_eq!(
            found[0].message,
            "group g processed 2 records of t/0 more than once: offset 2 (c1 at t=0.006s, \
             again c2 at t=0.013s) and offset 3 (c1 at t=0.006s, again c2 at t=0.013s)"
        );
        check_case(&h, &[(Anomaly::ProcessedTwice, &[first, again])]);
    }

    #[test]
    fn unprocessed_records_not_committed_past_gaps_and_resets_are_no_skip() {
        let mut h = Case::new();
        let log = records(&mut h, 0, 10);
        // Offset 2 is processed only after a commit passed it: still processed.
        h.process(a(), 1, "t", 0, &slice(&log, 0, 2));
        h.process(a(), 1, "t", 0, &slice(&log, 3, 4));
        h.commit(a(), 1, "t", 0, 4).ok();
        h.process(b(), 2, "t", 0, &slice(&log, 2, 3));
        // A refused or unknown commit past offset 4 is not a skip.
        h.commit(a(), 1, "t", 0, 6).fail();
        h.commit(a(), 1, "t", 0, 6).info();
        // An operator skips 4..7 on purpose; the group carries on from 7.
        h.reset("operator", "g", "t", 0, 7).ok();
        h.process(a(), 1, "t", 0, &slice(&log, 7, 9));
        h.commit(a(), 1, "t", 0, 9).ok();
        // Offsets no read returned (compaction, markers) are no records: 12 and 13.
        h.poll("c9", "t", 0, 14).ok(&[(14, "x")]);
        h.process(a(), 1, "t", 0, &slice(&log, 9, 10));
        h.process(a(), 1, "t", 0, &[(14, "x")]);
        h.commit(a(), 1, "t", 0, 15).ok();
        read_all(&mut h, 0, &log);
        check_case(&h, &[]);
    }

    #[test]
    fn another_groups_processing_does_not_count() {
        let mut h = Case::new();
        let log = records(&mut h, 0, 2);
        h.process(
            Member::new("c3", "other", "m3"),
            1,
            "t",
            0,
            &slice(&log, 0, 2),
        );
        h.process(a(), 1, "t", 0, &slice(&log, 1, 2));
        let commit = h.commit(a(), 1, "t", 0, 2).ok();
        let read = read_all(&mut h, 0, &log);
        check_case(
            &h,
            &[(
                Anomaly::CommitSkip,
                &[commit.done, commit.invoke, read.done],
            )],
        );
    }

    // --- absent-member

    #[test]
    fn a_member_kept_in_a_generation_it_never_rejoined_is_absent() {
        let mut h = Case::new();
        h.join(a()).ok_in(1);
        let previous = h.join(b()).ok_in(1);
        h.led(a(), 1, &["m1", "m2"]);
        // m1 rejoins for generation 2; m2 is frozen and sends nothing, yet is kept.
        h.join(a()).ok_in(2);
        let led = h.led(a(), 2, &["m1", "m2"]);
        let found = absent_members(&h.history);
        assert_eq!(
            found[0].message,
            "group g generation 2 (led by c1, formed by t=0.008s) held member m2, which had \
             not sent a JoinGroup since it joined generation 1 at t=0.004s: a dynamic member \
             that does not rejoin is removed when the join phase ends"
        );
        check_case(
            &h,
            &[(
                Anomaly::AbsentMember,
                &[led, previous.done, previous.invoke],
            )],
        );
    }

    #[test]
    fn members_that_rejoined_or_were_removed_are_not_absent() {
        let mut h = Case::new();
        h.join(a()).ok_in(1);
        h.join(b()).ok_in(1);
        h.led(a(), 1, &["m1", "m2"]);
        // Generation 2: both asked again (m2's join still in flight when the leader hears).
        h.join(a()).ok_in(2);
        let pending = h.join(b()).pending();
        h.led(a(), 2, &["m1", "m2"]);
        h.complete_group(pending, Phase::Ok, Some(2));
        // Generation 3 without m2: it did not rejoin and is not listed.
        h.join(a()).ok_in(3);
        h.led(a(), 3, &["m1"]);
        // A new member is listed after sending its id once.
        let c = Member::new("c3", "g", "m3");
        h.join(c).pending();
        h.join(a()).ok_in(4);
        h.led(a(), 4, &["m1", "m3"]);
        check_case(&h, &[]);
    }

    #[test]
    fn a_member_id_never_sent_is_absent() {
        let mut h = Case::new();
        h.join(a()).ok_in(1);
        let led = h.led(a(), 1, &["m1", "m9"]);
        let found = absent_members(&h.history);
        assert!(found[0]
            .message
            .contains("held member m9, which had not sent a JoinGroup ever"));
        check_case(&h, &[(Anomaly::AbsentMember, &[led])]);
    }

    // --- stale-commit

    #[test]
    fn a_commit_sent_after_a_newer_generation_formed_is_stale() {
        let mut h = Case::new();
        h.join(a()).ok_in(1);
        h.assign(a(), 1, "t", 0);
        let newer = h.join(b()).ok_in(2);
        let commit = h.commit(a(), 1, "t", 0, 3).ok();
        let found = stale_commits(&h.history);
        assert_eq!(
            found[0].message,
            "group g: c1 (member m1, generation 1) committed t/0 offset 3 at t=0.006s, \
             acknowledged at t=0.007s, although generation 2 had formed before it was sent (c2 \
             joined it at t=0.005s): the coordinator must refuse an older generation's commits"
        );
        check_case(
            &h,
            &[(
                Anomaly::StaleCommit,
                &[commit.done, commit.invoke, newer.done],
            )],
        );
    }

    #[test]
    fn a_kip848_member_epoch_is_stale_only_behind_its_own_newer_epoch() {
        // KIP-848: b joining in epoch 2 does not make a's epoch 1 stale...
        let mut h = Case::new();
        h.join(a()).ok_in(1);
        h.assign(a(), 1, "t", 0);
        h.join(b()).ok_in(2);
        h.commit(a(), 1, "t", 0, 3).ok();
        // ...but a commit in epoch 1 after a itself was moved to epoch 3 is.
        h.assign(a(), 3, "t", 0);
        let commit = h.commit(a(), 1, "t", 0, 4).ok();
        h.kip848();
        let found = stale_commits(&h.history);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].ops[..2], [commit.done, commit.invoke]);
    }

    #[test]
    fn a_kip848_commit_of_a_partition_handed_to_another_member_is_stale() {
        let mut h = Case::new();
        h.join(a()).ok_in(1);
        h.assign(a(), 1, "t", 0);
        h.assign(a(), 1, "t", 1);
        h.commit(a(), 1, "t", 0, 2).ok();
        // b is given t/0 while a still commits it in epoch 1: a's revocation was not awaited.
        h.join(b()).ok_in(2);
        let given = h.assign(b(), 2, "t", 0);
        let late = h.commit(a(), 1, "t", 0, 3).ok();
        // a's commits of the partition it kept, and b's of the one it got, are fine; so is
        // one that a sent before b was given t/0, and one the coordinator refused.
        h.commit(a(), 1, "t", 1, 5).ok();
        h.commit(b(), 2, "t", 0, 3).ok();
        h.kip848();
        let found = stale_commits(&h.history);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].ops, [late.done, late.invoke, given]);
        assert!(
            found[0]
                .message
                .contains("c2 (member m2, generation 2) had been given t/0"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn a_kip848_partition_handed_back_or_committed_before_the_hand_over_is_not_stale() {
        let mut h = Case::new();
        h.join(a()).ok_in(1);
        h.assign(a(), 1, "t", 0);
        // Sent before b was given t/0, acknowledged after.
        let in_flight = h.commit(a(), 1, "t", 0, 1).pending();
        h.revoke(a(), 1, "t", 0);
        h.join(b()).ok_in(2);
        h.assign(b(), 2, "t", 0);
        h.complete_group(in_flight, Phase::Ok, None);
        // Refused or unknown after the hand-over.
        h.commit(a(), 1, "t", 0, 2).fail();
        h.commit(a(), 1, "t", 0, 2).info();
        // b gives it back: a owns it again in epoch 3 and commits it.
        h.revoke(b(), 2, "t", 0);
        h.assign(a(), 3, "t", 0);
        h.commit(a(), 3, "t", 0, 4).ok();
        h.kip848();
        assert_eq!(stale_commits(&h.history), []);
    }

    #[test]
    fn a_commit_of_a_replaced_static_member_is_stale() {
        let mut h = Case::new();
        h.join(a()).ok_in(1);
        h.assign(a(), 1, "t", 0);
        // c1's instance rejoins as m1b in the same generation; the old m1 then commits.
        let again = Member::new("c1", "g", "m1b");
        h.join(again).ok_in(1);
        let replaced = h.assign(again, 1, "t", 0);
        let commit = h.commit(a(), 1, "t", 0, 3).ok();
        // The new member id's commits are fine.
        h.commit(again, 1, "t", 0, 4).ok();
        let found = stale_commits(&h.history);
        assert_eq!(
            found[0].message,
            "group g: c1 (member m1, generation 1) committed t/0 offset 3 at t=0.007s, \
             acknowledged at t=0.008s, although c1 had rejoined as member m1b at t=0.006s, \
             before it was sent: the coordinator must refuse a replaced member's commits"
        );
        check_case(
            &h,
            &[(
                Anomaly::StaleCommit,
                &[commit.done, commit.invoke, replaced],
            )],
        );
    }

    #[test]
    fn commits_sent_before_the_group_moved_on_are_not_stale() {
        let mut h = Case::new();
        h.join(a()).ok_in(1);
        h.assign(a(), 1, "t", 0);
        // Acknowledged before any generation 2 op.
        h.commit(a(), 1, "t", 0, 1).ok();
        // Sent before generation 2 formed, acknowledged after.
        let in_flight = h.commit(a(), 1, "t", 0, 2).pending();
        h.join(b()).ok_in(2);
        h.assign(b(), 2, "t", 0);
        h.complete_group(in_flight, Phase::Ok, None);
        // Sent after, but refused or unknown.
        h.commit(a(), 1, "t", 0, 3).fail();
        h.commit(a(), 1, "t", 0, 3).info();
        // The new generation's commits, and commits outside the group protocol.
        h.commit(b(), 2, "t", 0, 3).ok();
        h.commit(Member::new("admin", "g", ""), -1, "t", 0, 3).ok();
        // Another group's newer generation does not matter.
        let other = Member::new("c3", "other", "m3");
        h.join(other).ok_in(7);
        h.commit(b(), 2, "t", 0, 4).ok();
        check_case(&h, &[]);
    }

    // --- processed-twice

    #[test]
    fn records_processed_twice_are_counted_per_partition() {
        let mut h = Case::new();
        let first = h.process(a(), 1, "t", 0, &[(0, "a"), (1, "b"), (2, "c")]);
        let second = h.process(b(), 2, "t", 0, &[(1, "b"), (2, "c")]);
        h.process(b(), 2, "t", 0, &[(2, "c")]);
        // The same offsets of another partition, or by another group, are other records.
        h.process(a(), 1, "t", 1, &[(1, "x")]);
        h.process(Member::new("c3", "other", "m3"), 1, "t", 0, &[(0, "a")]);
        let found = processed_twice(&h.history);
        assert_eq!(
            found[0].message,
            "group g processed 2 records of t/0 more than once: offset 1 (c1 at t=0.001s, \
             again c2 at t=0.002s) and offset 2 (c1 at t=0.001s, again c2 at t=0.002s, 3 \
             times in all)"
        );
        check_case(&h, &[(Anomaly::ProcessedTwice, &[first, second])]);
    }

    // --- statistics

    #[test]
    fn stats_show_rebalances_and_lag() {
        let mut h = Case::new();
        h.join(a()).ok_in(1); // t=1, 2
        h.assign(a(), 1, "t", 0); // t=3
        h.send("p1", "t", 0, &["a", "b"]).ok(0); // t=4, 5
        h.commit(a(), 1, "t", 0, 1).ok(); // t=6, 7
        let rejoin = h.join(a()).pending(); // t=8
        h.join(b()).ok_in(2); // t=9, 10
        h.complete_group(rejoin, Phase::Ok, Some(2)); // t=11
        h.assign(b(), 2, "t", 0); // t=12
        h.send("p1", "t", 0, &["c"]).ok(2); // t=13, 14
        h.reset("operator", "g", "t", 0, 0).ok(); // t=15, 16
        let stats = group_stats(&h.history);
        let ms = |n: u64| n * 1_000_000;
        assert_eq!(stats.groups.len(), 1);
        let g = &stats.groups[0];
        assert_eq!(g.group, "g");
        assert_eq!(
            g.rebalances,
            vec![
                Rebalance {
                    generation: 1,
                    started_ns: ms(1),
                    settled_ns: ms(3),
                    duration_ns: ms(2),
                    members: vec!["m1".into()],
                    partitions: 1,
                },
                Rebalance {
                    generation: 2,
                    started_ns: ms(8),
                    settled_ns: ms(12),
                    duration_ns: ms(4),
                    members: vec!["m1".into(), "m2".into()],
                    partitions: 1,
                },
            ]
        );
        let point = |t: u64, end: i64, committed: Option<i64>, lag: i64| LagPoint {
            time_ns: ms(t),
            end_offset: end,
            committed,
            lag,
        };
        assert_eq!(
            g.lag,
            vec![PartitionLag {
                topic: "t".into(),
                partition: 0,
                points: vec![
                    point(5, 2, None, 2),
                    point(7, 2, Some(1), 1),
                    point(14, 3, Some(1), 2),
                    point(16, 3, Some(0), 3),
                ],
            }]
        );
        assert_eq!(group_stats(&History::default()), GroupStats::default());
    }
}
