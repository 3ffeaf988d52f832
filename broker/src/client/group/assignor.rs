//! The partition assignors a consumer group's leader runs, by Kafka's names: `range`,
//! `roundrobin`, `sticky` and `cooperative-sticky`. Pure functions of the members'
//! subscriptions and the partition counts: the same input gives the same output.
//!
//! `range` and `roundrobin` follow Kafka's definitions exactly. The two sticky assignors
//! aim at the same goals as Kafka's (balance first, then keep as many owned partitions
//! as possible) with a simpler algorithm, so their output can differ from Kafka's on
//! the same input. `cooperative-sticky` withholds any partition whose owner changes:
//! the owner revokes it, rejoins, and the next round hands it out (two-phase rebalance).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// A topic and a partition index.
pub type TopicPartition = (String, i32);

/// Partitions per member id.
pub type GroupAssignment = BTreeMap<String, BTreeSet<TopicPartition>>;

/// One member's subscription as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    pub member_id: String,
    /// KIP-345's `group.instance.id`, for static members.
    pub group_instance_id: Option<String>,
    pub topics: BTreeSet<String>,
    /// The partitions the member owns (or, under an eager sticky protocol, last owned).
    pub owned: BTreeSet<TopicPartition>,
    /// The generation in which it owned them; -1 when unknown.
    pub generation: i32,
}

/// A partition assignment strategy (`partition.assignment.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Assignor {
    Range,
    RoundRobin,
    Sticky,
    CooperativeSticky,
}

impl Assignor {
    /// The protocol name in JoinGroup, as Kafka's clients spell it.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
            Assignor::Sticky => "sticky",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// The assignor of a protocol name, if this client has it.
    pub fn from_name(name: &str) -> Option<Assignor> {
        [
            Assignor::Range,
            Assignor::RoundRobin,
            Assignor::Sticky,
            Assignor::CooperativeSticky,
        ]
        .into_iter()
        .find(|a| a.name() == name)
    }

    /// Whether members keep their partitions through a rebalance (incremental protocol).
    pub fn is_cooperative(self) -> bool {
        self == Assignor::CooperativeSticky
    }

    /// The assignment of `partitions` (partition count per topic) to `members`. Every
    /// member gets an entry, possibly empty. Topics absent from `partitions` are skipped.
    pub fn assign(
        self,
        members: &[MemberSubscription],
        partitions: &BTreeMap<String, i32>,
    ) -> GroupAssignment {
        let mut out: GroupAssignment = members
            .iter()
            .map(|m| (m.member_id.clone(), BTreeSet::new()))
            .collect();
        match self {
            Assignor::Range => range(members, partitions, &mut out),
            Assignor::RoundRobin => round_robin(members, partitions, &mut out),
            Assignor::Sticky => sticky(members, partitions, &mut out),
            Assignor::CooperativeSticky => {
                sticky(members, partitions, &mut out);
                withhold_transfers(members, &mut out);
            }
        }
        out
    }
}

/// Kafka's member order: static members first by instance id, then by member id.
fn member_order(a: &MemberSubscription, b: &MemberSubscription) -> Ordering {
    match (&a.group_instance_id, &b.group_instance_id) {
        (Some(x), Some(y)) => x.cmp(y).then_with(|| a.member_id.cmp(&b.member_id)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.member_id.cmp(&b.member_id),
    }
}

fn sorted(members: &[MemberSubscription]) -> Vec<&MemberSubscription> {
    let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
    sorted.sort_by(|a, b| member_order(a, b));
    sorted
}

/// Every partition some member subscribes to, in (topic, partition) order.
fn subscribed_partitions(
    members: &[&MemberSubscription],
    partitions: &BTreeMap<String, i32>,
) -> Vec<TopicPartition> {
    let topics: BTreeSet<&String> = members.iter().flat_map(|m| &m.topics).collect();
    topics
        .into_iter()
        .filter_map(|t| partitions.get(t).map(|n| (t, *n)))
        .flat_map(|(t, n)| (0..n.max(0)).map(move |p| (t.clone(), p)))
        .collect()
}

/// Per topic, the subscribed members in order each take a contiguous range; the first
/// `partitions % members` take one more.
fn range(
    members: &[MemberSubscription],
    partitions: &BTreeMap<String, i32>,
    out: &mut GroupAssignment,
) {
    let members = sorted(members);
    for (topic, count) in partitions {
        let subscribed: Vec<&&MemberSubscription> = members
            .iter()
            .filter(|m| m.topics.contains(topic))
            .collect();
        if subscribed.is_empty() || *count <= 0 {
            continue;
        }
        let n = subscribed.len() as i32;
        let (each, extra) = (count / n, count % n);
        for (i, m) in subscribed.iter().enumerate() {
            let i = i as i32;
            let start = each * i + i.min(extra);
            let len = each + i32::from(i < extra);
            let set = out
                .get_mut(&m.member_id)
                .expect("every member has an entry");
            set.extend((start..start + len).map(|p| (topic.clone(), p)));
        }
    }
}

/// All partitions in order, dealt one by one to the members in a circle, skipping members
/// not subscribed to the partition's topic.
fn round_robin(
    members: &[MemberSubscription],
    partitions: &BTreeMap<String, i32>,
    out: &mut GroupAssignment,
) {
    let members = sorted(members);
    if members.is_empty() {
        return;
    }
    let mut next = 0;
    for tp in subscribed_partitions(&members, partitions) {
        for step in 0..members.len() {
            let m = members[(next + step) % members.len()];
            if m.topics.contains(&tp.0) {
                out.get_mut(&m.member_id).expect("entry").insert(tp);
                next = (next + step + 1) % members.len();
                break;
            }
        }
    }
}

/// The owned partitions that stay valid: the partition exists, the member subscribes to
/// its topic, and no member claiming it has a higher generation (ties: member order).
fn valid_owned(
    members: &[&MemberSubscription],
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<TopicPartition, String> {
    let mut owner: BTreeMap<TopicPartition, (i32, String)> = BTreeMap::new();
    for m in members {
        for tp in &m.owned {
            let exists = partitions
                .get(&tp.0)
                .is_some_and(|n| tp.1 >= 0 && tp.1 < *n);
            if !exists || !m.topics.contains(&tp.0) {
                continue;
            }
            let better = owner.get(tp).is_none_or(|(g, _)| m.generation > *g);
            if better {
                owner.insert(tp.clone(), (m.generation, m.member_id.clone()));
            }
        }
    }
    owner.into_iter().map(|(tp, (_, m))| (tp, m)).collect()
}

/// Balance first, then stickiness: members keep their valid owned partitions, the rest go
/// to the least loaded subscribed member, then partitions move from the most loaded to a
/// member with at least two fewer until no such move exists.
fn sticky(
    members: &[MemberSubscription],
    partitions: &BTreeMap<String, i32>,
    out: &mut GroupAssignment,
) {
    let members = sorted(members);
    let rank: BTreeMap<&str, usize> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.member_id.as_str(), i))
        .collect();
    let owned = valid_owned(&members, partitions);
    for (tp, member) in &owned {
        out.get_mut(member).expect("entry").insert(tp.clone());
    }
    for tp in subscribed_partitions(&members, partitions) {
        if owned.contains_key(&tp) {
            continue;
        }
        let target = members
            .iter()
            .filter(|m| m.topics.contains(&tp.0))
            .min_by_key(|m| (out[&m.member_id].len(), rank[m.member_id.as_str()]));
        if let Some(m) = target {
            out.get_mut(&m.member_id).expect("entry").insert(tp);
        }
    }
    while let Some((from, to, tp)) = one_balancing_move(&members, &rank, out) {
        out.get_mut(&from).expect("entry").remove(&tp);
        out.get_mut(&to).expect("entry").insert(tp);
    }
}

/// A move of one partition from a member to one with at least two fewer partitions that
/// subscribes to its topic: from the most loaded, to the least loaded, the last partition
/// in order. Each move lowers the sum of squared counts, so repeating ends.
fn one_balancing_move(
    members: &[&MemberSubscription],
    rank: &BTreeMap<&str, usize>,
    out: &GroupAssignment,
) -> Option<(String, String, TopicPartition)> {
    let mut by_load: Vec<&MemberSubscription> = members.to_vec();
    by_load.sort_by_key(|m| {
        (
            std::cmp::Reverse(out[&m.member_id].len()),
            rank[m.member_id.as_str()],
        )
    });
    let mut receivers: Vec<&MemberSubscription> = members.to_vec();
    receivers.sort_by_key(|m| (out[&m.member_id].len(), rank[m.member_id.as_str()]));
    for from in &by_load {
        let load = out[&from.member_id].len();
        for to in &receivers {
            if out[&to.member_id].len() + 2 > load {
                break;
            }
            let movable = out[&from.member_id]
                .iter()
                .rev()
                .find(|tp| to.topics.contains(&tp.0));
            if let Some(tp) = movable {
                return Some((from.member_id.clone(), to.member_id.clone(), tp.clone()));
            }
        }
    }
    None
}

/// Cooperative rule: a partition assigned to one member while another still claims it is
/// left out of this round; its owner revokes it and the next round assigns it.
fn withhold_transfers(members: &[MemberSubscription], out: &mut GroupAssignment) {
    for (member_id, set) in out.iter_mut() {
        set.retain(|tp| {
            !members
                .iter()
                .any(|m| &m.member_id != member_id && m.owned.contains(tp))
        });
    }
}

#[cfg(test)]
mod tests;
