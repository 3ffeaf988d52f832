//! Per-member reconciliation (KIP-848): how a member's current assignment moves toward
//! its target. A partition is handed to a member only once no other member holds it,
//! assigned or still being revoked; a member with partitions to give up keeps its epoch
//! until it reports (in the heartbeat's owned partitions) that it let them go.

use super::{Assignment, ConsumerMember, MemberState, TopicId};
use crate::probe;

/// What reconciling one member changed, for the heartbeat's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Reconciled {
    /// The member's assignment or epoch changed.
    pub changed: bool,
}

/// Moves `member` toward `target` (the group's target for it at `target_epoch`).
/// `held_by_others(topic, partition)` says whether another member holds a partition;
/// `owned` is what the member reported owning (None when the heartbeat did not say).
pub(super) fn reconcile(
    member: &mut ConsumerMember,
    target: &Assignment,
    target_epoch: i32,
    held_by_others: &dyn Fn(TopicId, i32) -> bool,
    owned: Option<&Assignment>,
    now_ms: i64,
) -> Reconciled {
    let before = (
        member.member_epoch,
        member.assigned.clone(),
        member.revoking.clone(),
    );
    if member.state == MemberState::UnrevokedPartitions {
        let released = owned.is_some_and(|o| !intersects(o, &member.revoking));
        if !released {
            return Reconciled::default();
        }
        member.revoking.clear();
        member.revocation_deadline_ms = None;
        member.state = MemberState::Stable;
    }
    if member.member_epoch < target_epoch {
        let revoke = difference(&member.assigned, target);
        if !revoke.is_empty() {
            crate::probe!(probe::GROUP_CONSUMER_REVOCATION_AWAITED);
            member.assigned = intersection(&member.assigned, target);
            member.revoking = revoke;
            member.state = MemberState::UnrevokedPartitions;
            member.revocation_deadline_ms = Some(now_ms + i64::from(member.rebalance_timeout_ms));
            return changed(member, before);
        }
        member.previous_member_epoch = member.member_epoch;
        member.member_epoch = target_epoch;
    }
    // In the target's epoch: take every target partition nobody else holds.
    for (topic, partition) in pairs(&difference(target, &member.assigned)) {
        if !held_by_others(topic, partition) {
            member.assigned.entry(topic).or_default().insert(partition);
        }
    }
    member.state = if &member.assigned == target {
        MemberState::Stable
    } else {
        crate::probe!(probe::GROUP_CONSUMER_PARTITIONS_UNRELEASED);
        MemberState::UnreleasedPartitions
    };
    changed(member, before)
}

fn changed(member: &ConsumerMember, before: (i32, Assignment, Assignment)) -> Reconciled {
    Reconciled {
        changed: (
            member.member_epoch,
            member.assigned.clone(),
            member.revoking.clone(),
        ) != before,
    }
}

/// Every (topic, partition) of an assignment, in order.
pub(super) fn pairs(a: &Assignment) -> Vec<(TopicId, i32)> {
    a.iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
        .collect()
}

pub(super) fn contains(a: &Assignment, topic: TopicId, partition: i32) -> bool {
    a.get(&topic).is_some_and(|ps| ps.contains(&partition))
}

fn intersects(a: &Assignment, b: &Assignment) -> bool {
    pairs(a).into_iter().any(|(t, p)| contains(b, t, p))
}

/// Is every partition of `a` in `b`?
pub(super) fn is_subset(a: &Assignment, b: &Assignment) -> bool {
    pairs(a).into_iter().all(|(t, p)| contains(b, t, p))
}

fn difference(a: &Assignment, b: &Assignment) -> Assignment {
    filter(a, |t, p| !contains(b, t, p))
}

fn intersection(a: &Assignment, b: &Assignment) -> Assignment {
    filter(a, |t, p| contains(b, t, p))
}

fn filter(a: &Assignment, keep: impl Fn(TopicId, i32) -> bool) -> Assignment {
    let mut out = Assignment::new();
    for (t, p) in pairs(a) {
        if keep(t, p) {
            out.entry(t).or_default().insert(p);
        }
    }
    out
}
